"""Evidence bundles: one model version's history, checkable offline by an auditor.

A bundle (docs/FORMAT.md, "Evidence bundle") is one RFC 8785 canonical JSON object
followed by a newline. It holds a signed checkpoint, the version's lifecycle events
(register, approve, reject, deploy, undeploy, deprecate) and every key-registry event
(genesis, key_add, key_revoke) up to the checkpoint, each as a DSSE envelope with its
RFC 6962 inclusion proof against the checkpoint. :func:`check` needs nothing else: it
verifies the canonical form (so no byte can change unnoticed), every inclusion proof,
the checkpoint's signature, and each event's signature under the key the bundle's key
events registered, active and holding the right role at that seq.

What a bundle cannot show: that no *other* event exists (e.g. a later undeploy), since
inclusion proofs prove presence, not absence. It states what happened up to its
checkpoint, which the auditor can compare with a checkpoint obtained independently.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from . import checkpoint as C
from . import events as E
from . import merkle, note
from .canonical import canonicalize
from .errors import InputError, KeyProblem, NotFoundError
from .keys import PAYLOAD_TYPE, VerifierKey, key_id, pae, verify_signature
from .state import State, _public_key

FORMAT = "ledger-evidence/1"
_HEX64 = re.compile(r"[0-9a-f]{64}")
MAX_BUNDLE = 64 * 1024 * 1024


# --- building ------------------------------------------------------------------------------


def _envelope(canon: bytes, kid: str, sig: bytes) -> dict[str, Any]:
    return {
        "payload": base64.b64encode(canon).decode(),
        "payloadType": PAYLOAD_TYPE,
        "signatures": [{"keyid": kid, "sig": base64.b64encode(sig).decode()}],
    }


def build(
    led: Any, model: str, version: int, checkpoint: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """The bundle for ``model:version`` against a checkpoint file (default: latest)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from .tree import Tree

    E.check_model_name(model)
    cp = led.open_checkpoint(checkpoint) if checkpoint is not None else C.latest(led)
    table = led.events(columns=["seq", "action", "model", "version", "key_id", "sig", "canonical"])
    table = table.slice(0, cp.size)
    mine = pc.and_(pc.equal(table["model"], model), pc.equal(table["version"], version))
    keys = pc.is_in(table["action"], pa.array(sorted(E.KEY_ACTIONS)))
    rows = table.filter(pc.or_(pc.fill_null(mine, False), keys)).to_pylist()
    if not any(r["model"] == model and r["action"] == E.REGISTER for r in rows):
        raise NotFoundError(
            f"{model}:{version} is not registered in the {cp.describe()}", kind="unknown_version"
        )
    tree = Tree(led.store, cp.size)
    if tree.root() != cp.root:
        tree = Tree(led.store, cp.size, use_cache=False)
    out = []
    for r in rows:
        proof = tree.inclusion(r["seq"])
        merkle.verify_inclusion(r["seq"], cp.size, merkle.leaf_hash(r["canonical"]), proof, cp.root)
        out.append(
            {
                "envelope": _envelope(r["canonical"], r["key_id"], r["sig"]),
                "proof": [h.hex() for h in proof],
            }
        )
    return {
        "checkpoint": cp.note,
        "events": out,
        "format": FORMAT,
        "model": model,
        "origin": led.origin,
        "version": version,
    }


def dumps(bundle: dict[str, Any]) -> bytes:
    """The bundle's bytes: canonical JSON and a newline."""
    return canonicalize(bundle) + b"\n"


# --- checking -------------------------------------------------------------------------------


@dataclass
class Verdict:
    """What a bundle proves; ``lines()`` says it in plain words."""

    model: str
    version: int
    origin: str
    tree_size: int
    signer: str
    steps: list[str] = field(default_factory=list)
    events: int = 0
    key_events: int = 0
    anchored: bool = False

    def summary(self) -> str:
        steps = ", ".join(self.steps)
        trust = (
            ""
            if self.anchored
            else ", a checkpointer key registered by the bundle's own key events"
            " (pass --trusted-key to anchor trust)"
        )
        return (
            f"{self.model}:{self.version} {steps}; {self.events} events, all signatures valid,"
            f" included in checkpoint of size {self.tree_size} of {self.origin} signed by"
            f" {self.signer}{trust}"
        )


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
    if doc.get("format") != FORMAT:
        raise _bad(f"format is {doc.get('format')!r}, expected {FORMAT!r}")
    if set(doc) != {"checkpoint", "events", "format", "model", "origin", "version"}:
        raise _bad(f"unexpected members {sorted(doc)}")
    return doc


def check(data: bytes, trusted_keys: Sequence[bytes | VerifierKey] = ()) -> Verdict:
    """Verify a bundle's bytes offline; raise InputError / KeyProblem at the first flaw."""
    doc = load(data)
    model, version, origin = doc["model"], doc["version"], doc["origin"]
    if not isinstance(model, str) or type(version) is not int or not isinstance(origin, str):
        raise _bad("model, version or origin has the wrong type")
    if not isinstance(doc["checkpoint"], str) or not isinstance(doc["events"], list):
        raise _bad("checkpoint or events has the wrong type")
    text = doc["checkpoint"]
    try:
        body = note.parse_checkpoint(text[: text.rfind("\n\n") + 1])
    except note.NoteError as exc:
        raise _bad(f"the checkpoint is not a signed checkpoint note: {exc}") from None
    size, root = body.size, body.root

    # Decode every event and check its inclusion in the checkpoint's tree.
    decoded: list[tuple[E.Event, bytes, bytes]] = []
    last = -1
    for n, item in enumerate(doc["events"]):
        where = f"event {n}"
        if not isinstance(item, dict) or set(item) != {"envelope", "proof"}:
            raise _bad(f"{where} needs exactly 'envelope' and 'proof'")
        env, proof = item["envelope"], item["proof"]
        if not isinstance(env, dict) or set(env) != {"payload", "payloadType", "signatures"}:
            raise _bad(f"{where}: the envelope needs payload, payloadType and signatures")
        if env["payloadType"] != PAYLOAD_TYPE:
            raise _bad(f"{where}: payloadType is not {PAYLOAD_TYPE}")
        sigs = env["signatures"]
        if not isinstance(sigs, list) or len(sigs) != 1 or not isinstance(sigs[0], dict):
            raise _bad(f"{where}: the envelope must carry exactly one signature")
        if set(sigs[0]) != {"keyid", "sig"}:
            raise _bad(f"{where}: a signature needs exactly keyid and sig")
        canon = _b64(env["payload"], f"{where} payload")
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
        if not is_key and (ev.model != model or ev.version != version):
            raise _bad(f"seq {ev.seq} is about {ev.model}:{ev.version}, not {model}:{version}")
        if not is_key and ev.action not in E.MODEL_ACTIONS:
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
        decoded.append((ev, canon, sig))

    # Replay the key registry and check every signature, role and revocation.
    state = State()
    steps: list[str] = []
    registered = False
    n_keys = 0
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
        if ev.action == E.REGISTER:
            registered = True
        elif not registered:
            raise _bad(f"seq {ev.seq}: {ev.action} before the version was registered")
        steps.append(_step(ev))
    if not registered:
        raise _bad(f"the bundle holds no register event of {model}:{version}")

    # Finally the checkpoint: signed by a trusted key, or by a checkpointer of the bundle.
    cp = C.open_checkpoint(
        text,
        origin,
        [] if trusted_keys else list(state.keys.values()),
        trusted_keys,
        "the bundle's checkpoint",
    )
    return Verdict(
        model,
        version,
        origin,
        size,
        cp.signer,
        steps,
        len(decoded) - n_keys,
        n_keys,
        anchored=bool(trusted_keys),
    )


_VERBS = {
    E.REGISTER: "registered",
    E.APPROVE: "approved for {env}",
    E.REJECT: "rejected",
    E.DEPLOY: "deployed to {env}",
    E.UNDEPLOY: "undeployed from {env}",
    E.DEPRECATE: "deprecated",
}


def _step(ev: E.Event) -> str:
    verb = _VERBS[ev.action].format(env=ev.payload.get("env", "?"))
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
