"""Governance on the facade: setting the policy, reading it as of an instant, break-glass
grants and the policy audit (docs/policy.md). A part of :class:`ledger.Ledger` (a mixin,
as :mod:`ledger.registry` is); what the rules decide is :mod:`ledger.policy`.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from . import actions, reads
from .errors import RuleViolation
from .keys import SigningKey
from .readgate import checked as _checked
from .segments import STATE_COLUMNS

if TYPE_CHECKING:
    from . import events as E
    from .state import State
    from .store import Store
    from .writer import Receipt


class GovernanceMethods:
    """The governance policy and its overrides, each a signed event."""

    # (provided by Ledger)
    store: Store
    origin: str

    def append(self, draft: E.Draft, key: SigningKey) -> Receipt:
        raise NotImplementedError

    def state(self, models: set[str] | None = None, at_seq: int | None = None) -> State:
        raise NotImplementedError

    def _unchecked(self) -> contextlib.AbstractContextManager[None]:
        raise NotImplementedError

    def set_policy(
        self,
        policy: Any,
        *,
        key: SigningKey,
        comment: str | None = None,
    ) -> Receipt:
        """Record ``policy`` as the governance policy in force from this event on. It is a
        ``Policy``, a parsed document (dict) or the path of a TOML/YAML/JSON policy file.
        Signed by an admin key; an empty policy switches every rule off."""
        return self.append(actions.policy_set(policy, comment), key)

    @_checked
    def policy(self, as_of: int | str | None = None, at_seq: int | None = None) -> Any:
        """The policy in force now, ``as_of`` an instant (µs or text such as
        2026-03-01T09:00Z) or after event ``at_seq``: a ``ledger.policy.PolicyRecord``, or
        None when no policy was set by then."""
        return reads.policy_at(self.store, as_of, at_seq)

    def break_glass(
        self,
        action: str,
        model: str | None = None,
        version: int | None = None,
        env: str | None = None,
        *,
        rule: str,
        justification: str,
        key: SigningKey,
    ) -> Receipt:
        """Let the next ``action`` on ``model:version`` (in ``env``) bypass ``rule`` once,
        with a mandatory ``justification``; signed by an admin key, listed by every audit."""
        draft = actions.break_glass(action, model, version, env, rule, justification)
        with self._unchecked():
            now = self.state(models=set())
        if now.policy is None:
            raise RuleViolation("no policy is in force, so there is no rule to bypass")
        if rule not in now.policy.rules:
            on = ", ".join(now.policy.rules) or "none"
            raise RuleViolation(
                f"the policy in force (seq {now.policy_seq}) does not switch on rule {rule}"
                f" (its rules: {on}); there is nothing to bypass"
            )
        return self.append(draft, key)

    @_checked
    def policy_audit(self) -> Any:
        """Check every event against the policy in force at its time; a
        ``ledger.policy.PolicyAudit`` (falsy when a violation has no break-glass override).
        Run it on a verified ledger (``verify --policy`` does both)."""
        from . import policy as P
        from .store import typed_events

        table = self.store.read(STATE_COLUMNS)
        return P.audit(typed_events(table, self.origin))
