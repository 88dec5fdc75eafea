"""Checking evidence bundles offline, and the bundle's format: :func:`check` takes a
bundle's bytes and nothing else (no ledger folder, no storage, no network).

A bundle (docs/FORMAT.md, "Evidence bundle") is one RFC 8785 canonical JSON object
followed by a newline. It holds a signed checkpoint, the events of one story of the
checkpoint's story map (``version:MODEL:VERSION``, or ``env:MODEL:ENV``) with the key
events their signatures need, each as a DSSE envelope with its RFC 6962 inclusion proof
against the checkpoint, and the story map's proof that these are *all* of that story's
events. :func:`check` verifies the canonical form (so no byte can change unnoticed),
every inclusion proof, the story-map proof, the checkpoint's signature, and each event's
signature under the key the bundle's key events registered, active and holding the right
role at that seq. A bundle speaks for the checkpoint's events: what happened after it
needs a newer checkpoint.

The format's names (:data:`FORMAT`, :data:`FORMAT_V1`, :data:`MAX_BUNDLE`,
:func:`dumps`) live here, so that the builder (:mod:`ledger.evidence`) imports them from
the checker and the checker needs nothing of the builder's storage.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from . import checkpoint as C
from . import events as E
from . import merkle, note, storymap
from .canonical import canonicalize
from .errors import InputError, KeyProblem
from .keys import PAYLOAD_TYPE, VerifierKey, key_id, pae, verify_signature
from .state import State, _public_key

FORMAT = "ledger-evidence/2"
#: Bundles written before story maps: they prove presence only, and say so.
FORMAT_V1 = "ledger-evidence/1"
_HEX64 = re.compile(r"[0-9a-f]{64}")
MAX_BUNDLE = 64 * 1024 * 1024


def dumps(bundle: dict[str, Any]) -> bytes:
    """The bundle's bytes: canonical JSON and a newline."""
    return canonicalize(bundle) + b"\n"


@dataclass
class Verdict:
    """What a bundle proves; :meth:`summary` says it in plain words."""

    model: str
    #: the version a version bundle is about (None for a deployment history)
    version: int | None
    origin: str
    tree_size: int
    signer: str
    steps: list[str] = field(default_factory=list)
    events: int = 0
    key_events: int = 0
    anchored: bool = False
    #: the story map proved the bundle complete (a ledger-evidence/2 bundle)
    complete: bool = False
    policies: list[int] = field(default_factory=list)
    #: the environment a deployment-history bundle is about
    env: str | None = None
    #: a deployment history: (from seq, from ts, until ts or None, version) per stay
    live: list[tuple[int, str, str | None, int]] = field(default_factory=list)

    def summary(self) -> str:
        steps = ", ".join(self.steps)
        trust = (
            ""
            if self.anchored
            else ", a checkpointer key registered by the bundle's own key events"
            " (pass --trusted-key to anchor trust)"
        )
        rules = (
            f", policy seq {', '.join(map(str, self.policies))} in force"
            if self.policies
            else ", no policy in force"
        )
        signed = (
            f"all signatures valid, included in checkpoint of size {self.tree_size} of"
            f" {self.origin} signed by {self.signer}{trust}"
        )
        if self.env is not None:
            return (
                f"{self.model} in {self.env}: {steps}; {self.live_now()}; the complete"
                f" deployment history ({self.events} events{rules}), {signed}"
            )
        if self.complete:
            whole = f"; the complete story ({self.events} events{rules})"
        else:
            whole = (
                f"; {self.events} events (a {FORMAT_V1} bundle: it proves these happened,"
                " not that nothing else did)"
            )
        return f"{self.model}:{self.version} {steps}{whole}, {signed}"

    def live_now(self) -> str:
        now = [v for _, _, until, v in self.live if until is None]
        if not now:
            return f"nothing live in {self.env} at the checkpoint"
        return f"live in {self.env} at the checkpoint: version {now[0]}"

    def live_at(self, ts: str) -> int | None:
        """The version live in the environment at ``ts`` (an RFC 3339 time in the
        ledger's spelling, compared as text: fixed width, UTC), by a deployment-history
        bundle; None if none was."""
        at = None
        for _, since, until, v in self.live:
            if since <= ts and (until is None or ts < until):
                at = v
        return at


def _bad(msg: str) -> InputError:
    return InputError(f"evidence bundle is invalid: {msg}")


def _b64(s: Any, what: str) -> bytes:
    if not isinstance(s, str):
        raise _bad(f"{what} is not a string")
    try:
        raw = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        raise _bad(f"{what} is not base64") from None
    if base64.b64encode(raw).decode() != s:
        raise _bad(f"{what} is not canonical base64")
    return raw


def load(data: bytes) -> dict[str, Any]:
    """Parse bundle bytes, refusing anything but the exact canonical form."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise _bad(f"not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise _bad("not a JSON object")
    try:
        canonical = dumps(doc)
    except Exception as exc:  # rfc8785 refuses e.g. floats it cannot round-trip
        raise _bad(f"not canonical JSON ({exc})") from None
    if canonical != data:
        raise _bad("not in RFC 8785 canonical form followed by one newline (altered?)")
    members = {"checkpoint", "events", "format", "model", "origin", "version"}
    if doc.get("format") == FORMAT:
        members |= {"signer_keys", "story"}
        if "env" in doc:  # (a deployment history)
            members = members - {"version"} | {"env"}
    elif doc.get("format") != FORMAT_V1:
        raise _bad(f"format is {doc.get('format')!r}, expected {FORMAT!r}")
    if set(doc) != members:
        raise _bad(f"unexpected members {sorted(doc)}")
    return doc


def _story_part(doc: dict[str, Any], name: str) -> tuple[list[tuple[int, bytes]], list[bytes]]:
    """A bundle's ``story`` or ``keys`` member: the committed (seq, hash) list and its
    story-map proof."""
    part = doc[name]
    if not isinstance(part, dict) or set(part) != {"events", "proof"}:
        raise _bad(f"{name} needs exactly 'events' and 'proof'")
    events, proof = part["events"], part["proof"]
    if not isinstance(events, list) or not isinstance(proof, list):
        raise _bad(f"{name}: events and proof must be lists")
    out: list[tuple[int, bytes]] = []
    for item in events:
        if (
            not isinstance(item, list)
            or len(item) != 2
            or type(item[0]) is not int
            or not isinstance(item[1], str)
            or not _HEX64.fullmatch(item[1])
        ):
            raise _bad(f"{name}: each event must be [seq, 64 lowercase hex digits]")
        if out and item[0] <= out[-1][0]:
            raise _bad(f"{name}: seqs must increase")
        out.append((item[0], bytes.fromhex(item[1])))
    if not all(isinstance(h, str) and _HEX64.fullmatch(h) for h in proof):
        raise _bad(f"{name}: the proof must be a list of 64 lowercase hex digits")
    return out, [bytes.fromhex(h) for h in proof]


class Incomplete(InputError):
    """A bundle that leaves out, adds or swaps events of the story it must hold."""


def _seqs(seqs: list[int]) -> str:
    shown = ", ".join(str(s) for s in seqs[:8])
    more = f" and {len(seqs) - 8} more" if len(seqs) > 8 else ""
    return f"seq{'s' if len(seqs) > 1 else ''} {shown}{more}"


def _complete(what: str, committed: list[tuple[int, bytes]], held: dict[int, bytes]) -> None:
    """Raise ``incomplete`` unless the bundle holds exactly the committed events."""
    want = dict(committed)
    missing = sorted(set(want) - set(held))
    extra = sorted(set(held) - set(want))
    swapped = sorted(s for s in set(want) & set(held) if want[s] != held[s])
    problems = []
    if missing:
        problems.append(f"{_seqs(missing)} of {what} missing from the bundle (events removed)")
    if extra:
        problems.append(f"{_seqs(extra)} in the bundle but not in {what} (events added)")
    if swapped:
        problems.append(f"{_seqs(swapped)} not the events {what} lists (events swapped)")
    if problems:
        raise Incomplete("incomplete: " + "; ".join(problems))


def check(data: bytes, trusted_keys: Sequence[bytes | VerifierKey] = ()) -> Verdict:
    """Verify a bundle's bytes offline; raise InputError / KeyProblem at the first flaw."""
    doc = load(data)
    model, version, origin = doc["model"], doc.get("version"), doc["origin"]
    env = doc.get("env")
    if env is not None:
        if not isinstance(env, str) or not E.ENV_RE.fullmatch(env):
            raise _bad("env is not an environment name")
    elif type(version) is not int:
        raise _bad("version has the wrong type")
    if not isinstance(model, str) or not isinstance(origin, str):
        raise _bad("model or origin has the wrong type")
    if not isinstance(doc["checkpoint"], str) or not isinstance(doc["events"], list):
        raise _bad("checkpoint or events has the wrong type")
    text = doc["checkpoint"]
    try:
        body = note.parse_checkpoint(text[: text.rfind("\n\n") + 1])
    except note.NoteError as exc:
        raise _bad(f"the checkpoint is not a signed checkpoint note: {exc}") from None
    size, root = body.size, body.root
    v2 = doc["format"] == FORMAT

    # Decode every event and check its inclusion in the checkpoint's tree.
    decoded: list[tuple[E.Event, bytes, bytes]] = []
    signer_keys: list[tuple[E.Event, bytes, bytes]] = []
    extra = doc.get("signer_keys", [])
    if not isinstance(extra, list):
        raise _bad("signer_keys has the wrong type")
    for n, item, into in (
        *((n, item, decoded) for n, item in enumerate(doc["events"])),
        *((n, item, signer_keys) for n, item in enumerate(extra)),
    ):
        if n == 0:
            last = -1
        where = f"event {n}" if into is decoded else f"signer key event {n}"
        if not isinstance(item, dict) or set(item) != {"envelope", "proof"}:
            raise _bad(f"{where} needs exactly 'envelope' and 'proof'")
        envelope, proof = item["envelope"], item["proof"]
        if not isinstance(envelope, dict) or set(envelope) != {
            "payload",
            "payloadType",
            "signatures",
        }:
            raise _bad(f"{where}: the envelope needs payload, payloadType and signatures")
        if envelope["payloadType"] != PAYLOAD_TYPE:
            raise _bad(f"{where}: payloadType is not {PAYLOAD_TYPE}")
        sigs = envelope["signatures"]
        if not isinstance(sigs, list) or len(sigs) != 1 or not isinstance(sigs[0], dict):
            raise _bad(f"{where}: the envelope must carry exactly one signature")
        if set(sigs[0]) != {"keyid", "sig"}:
            raise _bad(f"{where}: a signature needs exactly keyid and sig")
        canon = _b64(envelope["payload"], f"{where} payload")
        sig = _b64(sigs[0]["sig"], f"{where} signature")
        try:
            ev = E.event_from_document(json.loads(canon))
        except (ValueError, RecursionError) as exc:
            raise _bad(f"{where} is not a valid event: {exc}") from None
        if canonicalize(json.loads(canon)) != canon:
            raise _bad(f"{where} (seq {ev.seq}) is not in canonical form")
        if sigs[0]["keyid"] != ev.key_id:
            raise _bad(f"seq {ev.seq}: the envelope's keyid is not the event's key_id")
        if ev.origin != origin:
            raise _bad(f"seq {ev.seq} belongs to ledger {ev.origin!r}, not {origin!r}")
        if ev.seq <= last:
            raise _bad(f"seq {ev.seq} is out of order (events must be in increasing seq)")
        last = ev.seq
        is_key = ev.action in E.KEY_ACTIONS
        # (a story also holds the deploys that ended this version's deployments, the
        # grants naming it and the policies in force: the story map decides, below)
        if not v2 and not is_key and (ev.model != model or ev.version != version):
            raise _bad(f"seq {ev.seq} is about {ev.model}:{ev.version}, not {model}:{version}")
        if not v2 and not is_key and ev.action not in E.MODEL_ACTIONS:
            raise _bad(f"seq {ev.seq}: unexpected action {ev.action!r}")
        if not isinstance(proof, list) or not all(
            isinstance(h, str) and _HEX64.fullmatch(h) for h in proof
        ):
            raise _bad(f"seq {ev.seq}: the proof must be a list of 64 lowercase hex digits")
        if ev.seq >= size:
            raise _bad(f"seq {ev.seq} lies beyond the checkpoint's {size} events")
        try:
            merkle.verify_inclusion(
                ev.seq, size, merkle.leaf_hash(canon), [bytes.fromhex(h) for h in proof], root
            )
        except merkle.MerkleProofError as exc:
            raise _bad(f"seq {ev.seq} is not included in the checkpoint: {exc}") from None
        if into is signer_keys and not is_key:
            raise _bad(f"seq {ev.seq}: signer_keys may hold key events only")
        into.append((ev, canon, sig))

    if v2:
        if env is not None:
            key, what = storymap.env_key(model, env), f"the deployment history of {model} in {env}"
        else:
            assert version is not None  # (checked above: a version bundle has an int version)
            key, what = storymap.version_key(model, version), f"the story of {model}:{version}"
        _check_story(doc, body, key, what, decoded)
    # The checkpoint signer's key events (outside the story) join the registry replay.
    if {ev.seq for ev, _, _ in decoded} & {ev.seq for ev, _, _ in signer_keys}:
        raise _bad("signer_keys repeats an event of events")
    decoded = sorted([*decoded, *signer_keys], key=lambda d: d[0].seq)

    # Replay the key registry and check every signature, role and revocation.
    state = State()
    steps: list[str] = []
    registered = False
    n_keys = 0
    grants: dict[int, str] = {}
    policies: list[int] = []
    history = _History(model, env) if env is not None else None
    for ev, canon, sig in decoded:
        try:
            rec = state.authorize(ev)
        except KeyProblem as exc:
            raise KeyProblem(f"evidence bundle: seq {ev.seq}: {exc}") from None
        public = _public_key(ev.payload) if rec is None else rec.public_key
        if not verify_signature(public, pae(canon), sig):
            raise KeyProblem(f"evidence bundle: seq {ev.seq}: signature does not verify")
        if ev.action in E.KEY_ACTIONS:
            n_keys += 1
            if ev.action == E.GENESIS:
                if ev.seq != 0 or key_id(public) != ev.key_id:
                    raise _bad("the genesis event is not seq 0 or not self-signed")
            elif not state.keys:
                raise _bad("key events must start with the genesis event")
            try:
                state.apply(ev)
            except (KeyError, ValueError) as exc:
                raise _bad(f"seq {ev.seq}: malformed key event ({exc})") from None
            continue
        if ev.action == E.BREAK_GLASS:
            grants[ev.seq] = str(ev.payload.get("justification", ""))
            continue
        if ev.action == E.POLICY_SET:
            policies.append(ev.seq)
            continue
        if history is not None:
            history.step(ev, _overrides(ev, grants))
            continue
        if ev.model != model or ev.version != version:  # (v2: it ended a deployment)
            steps.append(
                f"replaced in {ev.payload.get('env', '?')} by {ev.model}:{ev.version}"
                f" (deployed by {ev.actor} at {E.format_ts(ev.ts)})"
            )
            continue
        if ev.action == E.REGISTER:
            registered = True
        elif not registered:
            raise _bad(f"seq {ev.seq}: {ev.action} before the version was registered")
        steps.append(_step(ev) + _overrides(ev, grants))
    if history is None and not registered:
        raise _bad(f"the bundle holds no register event of {model}:{version}")

    # Finally the checkpoint: signed by a trusted key, or by a checkpointer of the bundle.
    cp = C.open_checkpoint(
        text,
        origin,
        [] if trusted_keys else list(state.keys.values()),
        trusted_keys,
        "the bundle's checkpoint",
        registry="the bundle",
    )
    return Verdict(
        model,
        version,
        origin,
        size,
        cp.signer,
        history.steps if history else steps,
        len(decoded) - n_keys,
        n_keys,
        anchored=bool(trusted_keys),
        complete=v2,
        policies=policies,
        env=env,
        live=history.live if history else [],
    )


class _History:
    """A model's deployment history in one environment, replayed from its deploys and
    undeploys in seq order."""

    def __init__(self, model: str, env: str) -> None:
        self.model, self.env = model, env
        self.steps: list[str] = []
        self.live: list[tuple[int, str, str | None, int]] = []  # (from seq, ts, until, version)

    def step(self, ev: E.Event, overrides: str) -> None:
        if (
            ev.model != self.model
            or ev.action not in (E.DEPLOY, E.UNDEPLOY)
            or ev.payload.get("env") != self.env
        ):
            raise _bad(f"seq {ev.seq} is not a deploy or undeploy of {self.model} to {self.env}")
        ts = E.format_ts(ev.ts)
        now = self.live[-1] if self.live and self.live[-1][2] is None else None
        who = f"by {ev.actor} at {ts}{overrides}"
        if ev.action == E.DEPLOY:
            if now is not None and now[3] == ev.version:
                self.steps.append(f"version {ev.version} deployed again {who}")
                return
            if now is not None:
                self.live[-1] = (*now[:2], ts, now[3])
            self.live.append((ev.seq, ts, None, cast(int, ev.version)))
            replacing = f" (replacing version {now[3]})" if now is not None else ""
            self.steps.append(f"version {ev.version} deployed {who}{replacing}")
        elif now is not None and now[3] == ev.version:
            self.live[-1] = (*now[:2], ts, now[3])
            self.steps.append(f"version {ev.version} undeployed {who}")
        else:
            self.steps.append(f"version {ev.version} undeployed {who} (it was not live)")


def _overrides(ev: E.Event, grants: dict[int, str]) -> str:
    """`` under break-glass grant seq N: "why"`` for each grant the event used."""
    cited = ev.payload.get("break_glass")
    out = ""
    for g in cited if isinstance(cited, list) else ():
        why = grants.get(g) if type(g) is int else None
        out += f" under break-glass grant seq {g}" + (f": {json.dumps(why)}" if why else "")
    return out


def _check_story(
    doc: dict[str, Any],
    body: note.Checkpoint,
    key: str,
    what: str,
    decoded: list[tuple[E.Event, bytes, bytes]],
) -> None:
    """The bundle holds exactly the story ``key`` (its key events included) that the
    checkpoint's story map commits to (docs/proofs.md, "Complete evidence")."""
    import hashlib

    try:
        line = storymap.story_line(body.extensions)
    except storymap.StoryMapError as exc:
        raise _bad(f"the checkpoint's story map line is malformed: {exc}") from None
    if line is None:
        raise _bad(f"the checkpoint commits to no story map ({storymap.EXTENSION} line)")
    if key.startswith("env:") and line[0] == 1:
        raise _bad(f"the checkpoint's {storymap.EXTENSION_V1} map holds no deployment histories")
    map_root = line[1]
    committed, proof = _story_part(doc, "story")
    try:
        storymap.verify(map_root, key, storymap.value_hash(committed), proof)
    except storymap.StoryMapError:
        raise Incomplete(
            f"incomplete: the bundle's list of {what} is not the one the checkpoint's story"
            " map commits to (events removed from it or added)"
        ) from None
    held = {ev.seq: hashlib.sha256(canon).digest() for ev, canon, _ in decoded}
    _complete(what, committed, held)


_VERBS = {
    E.REGISTER: "registered",
    E.APPROVE: "approved for {env}",
    E.REJECT: "rejected",
    E.DEPLOY: "deployed to {env}",
    E.UNDEPLOY: "undeployed from {env}",
    E.DEPRECATE: "deprecated",
    E.ALIAS_SET: "named {alias}",
    E.ALIAS_DELETE: "no longer named {alias}",
    E.TAG_SET: "tagged {tags}",
    E.TAG_DELETE: "untagged {keys}",
    E.DESCRIBE: "described",
    E.MODEL_CREATE: "created",
}


def _step(ev: E.Event) -> str:
    p = ev.payload
    tags = p.get("tags")
    keys = p.get("keys")
    verb = _VERBS.get(ev.action, ev.action).format(
        env=p.get("env", "?"),
        alias=p.get("alias", "?"),
        tags=", ".join(f"{k}={v}" for k, v in tags.items()) if isinstance(tags, dict) else "?",
        keys=", ".join(map(str, keys)) if isinstance(keys, list) else "?",
    )
    return f"{verb} by {ev.actor} at {E.format_ts(ev.ts)}"


@dataclass
class EvidenceReport:
    """Outcome of checking a bundle file; truthy when it verified."""

    verdict: Verdict | None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.verdict is not None

    def __bool__(self) -> bool:
        return self.ok

    def summary(self) -> str:
        return f"OK: {self.verdict.summary()}" if self.verdict else f"FAIL: {self.problem}"


def verify_file(
    path: str | os.PathLike[str], trusted_keys: Sequence[bytes | VerifierKey] = ()
) -> EvidenceReport:
    """Check a bundle file. A missing file raises; a bundle that fails is a FAIL report."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BUNDLE + 1)
    except FileNotFoundError:
        raise InputError(f"evidence bundle {path} does not exist") from None
    except OSError as exc:
        raise InputError(f"cannot read evidence bundle {path}: {exc.strerror}") from None
    if len(data) > MAX_BUNDLE:
        return EvidenceReport(None, f"{path} is larger than {MAX_BUNDLE} bytes")
    try:
        return EvidenceReport(check(data, trusted_keys))
    except (InputError, KeyProblem) as exc:
        return EvidenceReport(None, str(exc))


__all__ = [
    "FORMAT",
    "FORMAT_V1",
    "MAX_BUNDLE",
    "EvidenceReport",
    "Incomplete",
    "Verdict",
    "check",
    "dumps",
    "load",
    "verify_file",
]
