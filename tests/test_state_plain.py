"""``State.step_plain``, verify's fast path for env-only approve / deploy / undeploy
events, against ``State.step``, the rules themselves: it may decline anything, but what
it accepts ``step`` must accept, with exactly the same resulting state."""

from __future__ import annotations

import base64
import copy
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from ledger import LedgerError, SigningKey
from ledger import events as E
from ledger.keys import key_id
from ledger.state import State

ORIGIN = "00000000-0000-4000-8000-000000000000"
# Fixed seeds: the strategies pick among these keys by index.
KEYS = [SigningKey(bytes([i + 1]) * 32) for i in range(4)]
ACTORS = ["root", "bob", "carol", "dave"]
ROLES = [[E.ADMIN], [E.APPROVER, E.REGISTRAR], [E.DEPLOYER], [E.APPROVER, E.DEPLOYER]]
MODELS = ["m.a", "m.b"]
ENVS = ["staging", "production"]


def _key_event(seq: int, ts: int, i: int, signer: int) -> E.Event:
    pub = KEYS[i].public_key
    payload = {
        "actor": ACTORS[i],
        "key_id": key_id(pub),
        "public_key": base64.b64encode(pub).decode(),
        "roles": ROLES[i],
    }
    action = E.GENESIS if seq == 0 else E.KEY_ADD
    if action == E.GENESIS:
        payload["format"] = E.FORMAT
    return E.Event(
        seq, ts, ORIGIN, action, ACTORS[signer], KEYS[signer].key_id, payload, "", None, None
    )


def _start() -> State:
    """Keys registered, and each model name and environment name seen once."""
    state = State()
    for i in range(len(KEYS)):
        state.step(_key_event(i, i, i, 0))
    bob = KEYS[1].key_id
    for model in MODELS:
        seq = len(state.versions) + len(KEYS)
        state.step(E.Event(seq, seq, ORIGIN, E.REGISTER, "bob", bob, {}, "", model, 1))
    for env in ENVS:
        seq = state.next_seq
        ev = E.Event(seq, seq, ORIGIN, E.APPROVE, "bob", bob, {"env": env}, "", MODELS[0], 1)
        state.step(ev)
    return state


def _mostly(value: Any, other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.just(value), st.just(value), st.just(value), other)


# One step: (action, key index or None for one holding the action's role, actor index or
# None for the key's own, model index, version, env index, seq skew, ts step).
steps = st.tuples(
    st.sampled_from(
        [E.REGISTER, E.APPROVE, E.DEPLOY, E.UNDEPLOY, E.REJECT, E.DEPRECATE, E.KEY_REVOKE]
        + [E.ALIAS_SET, E.ALIAS_DELETE, E.TAG_SET, E.TAG_DELETE]
        + [E.APPROVE, E.DEPLOY, E.UNDEPLOY] * 3  # mostly what step_plain takes
    ),
    _mostly(None, st.integers(0, len(KEYS) - 1)),
    _mostly(None, st.integers(0, len(KEYS) - 1)),
    st.integers(0, len(MODELS) - 1),
    st.integers(1, 2),
    st.integers(0, len(ENVS) - 1),
    _mostly(0, st.sampled_from([-1, 1])),
    st.sampled_from([0, 1, 1, 1, -1]),
)


def _event(state: State, seq: int, ts: int, step: tuple[Any, ...]) -> E.Event:
    action, k, actor, m, version, env, skew, _ = step
    if k is None:
        k = next(i for i, roles in enumerate(ROLES) if E.ACTION_ROLE[action] in roles)
    actor = k if actor is None else actor
    seq += skew
    model: str | None = MODELS[m]
    v: int | None = version
    payload: dict[str, Any] = {"env": ENVS[env]}
    if action == E.REGISTER:
        payload, v = {}, state.latest.get(MODELS[m], 0) + 1
    elif action in (E.REJECT, E.DEPRECATE):
        payload = {}
    elif action == E.KEY_REVOKE:  # (version 1 or 2: bob or carol)
        payload, model, v = {"key_id": KEYS[version].key_id}, None, None
    elif action in E.ALIAS_ACTIONS:
        payload = {"alias": ("champion", "challenger")[env]}
    elif action in (E.TAG_SET, E.TAG_DELETE):  # (env 0: the version's tag, 1: the model's)
        payload = {"tags": {"t": "x"}} if action == E.TAG_SET else {"keys": ["t"]}
        v = None if env else v
    return E.Event(seq, ts, ORIGIN, action, ACTORS[actor], KEYS[k].key_id, payload, "", model, v)


def _reference(state: State, ev: E.Event) -> State | None:
    after = copy.deepcopy(state)
    try:
        after.step(ev)
    except LedgerError:
        return None
    return after


@settings(max_examples=300, deadline=None)
@given(st.lists(steps, min_size=1, max_size=60), st.integers(0, 3))
def test_step_plain_accepts_only_what_step_accepts_and_applies_it_alike(history, bad_key):
    state = _start()
    seq = ts = state.next_seq
    for step in history:
        ts += step[-1]
        ev = _event(state, seq, ts, step)
        want = _reference(state, ev)
        if ev.action in E.ENV_ACTIONS:
            signer = next(i for i, key in enumerate(KEYS) if key.key_id == ev.key_id)
            for pub in (KEYS[signer].public_key, KEYS[bad_key].public_key):
                fast = copy.deepcopy(state)
                args = (ev.seq, ev.ts, ev.action, ev.actor, ev.key_id, pub)
                took = fast.step_plain(*args, ev.model, ev.version, ev.payload["env"])
                event("taken" if took else "declined")
                if not took:
                    assert vars(fast) == vars(state)  # declined: nothing changed
                else:
                    assert want is not None, f"step refuses what step_plain took: {ev}"
                    assert pub == state.keys[ev.key_id].public_key
                    assert vars(fast) == vars(want)
        if want is not None:
            state = want
            seq = state.next_seq


def test_step_plain_takes_the_plain_cases():
    """What makes it worth having: the ordinary approve, deploy, deploy elsewhere,
    replace and undeploy all go through it once the names have been seen."""
    state = _start()
    bob, carol = KEYS[1], KEYS[2]
    seq = state.next_seq
    state.step(E.Event(seq, seq, ORIGIN, E.REGISTER, "bob", bob.key_id, {}, "", "m.b", 2))
    plain = [
        (E.APPROVE, "bob", bob, "m.b", 1, "staging"),
        (E.DEPLOY, "carol", carol, "m.b", 1, "staging"),
        (E.DEPLOY, "carol", carol, "m.b", 1, "production"),
        (E.DEPLOY, "carol", carol, "m.b", 2, "production"),  # replaces version 1 there
        (E.UNDEPLOY, "carol", carol, "m.b", 1, "staging"),
    ]
    first = state.next_seq
    for seq, (action, actor, key, model, version, env) in enumerate(plain, first):
        args = (seq, seq, action, actor, key.key_id, key.public_key, model, version, env)
        assert state.step_plain(*args), action
    assert state.next_seq == first + len(plain)
    assert state.live == {("m.b", "production"): 2}
    assert state.versions[("m.b", 1)].live == {}
    assert state.versions[("m.b", 1)].deployed_to == {"staging": first + 1, "production": first + 2}
    assert [a.seq for a in state.versions[("m.b", 1)].approvals["staging"]] == [first]
