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
from . import merkle, note, storymap, storyread
from .canonical import canonicalize
from .errors import CorruptLedgerError, InputError, KeyProblem, NotFoundError
from .gcpause import collector_paused
from .keys import PAYLOAD_TYPE, VerifierKey, key_id, pae, verify_signature
from .state import State, _public_key

FORMAT = "ledger-evidence/2"
#: Bundles written before story maps: they prove presence only, and say so.
FORMAT_V1 = "ledger-evidence/1"
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
    """The bundle for ``model:version`` against a checkpoint file (default: latest):
    every event of the version's story among the checkpoint's events, every key event,
    each with its inclusion proof, and the story map's proofs that these are all."""
    from .tree import Tree

    E.check_model_name(model)
    cp = led.open_checkpoint(checkpoint) if checkpoint is not None else C.latest(led)
    committed = cp.story_root
    if committed is None:
        raise InputError(
            f"the {cp.describe()} commits to no story map (issued before story maps), so a"
            " bundle against it could not prove it is complete; issue a new checkpoint"
            " (ledger checkpoint) and build the bundle against that"
        )
    table = led.events(columns=[*storyread.STORY_COLUMNS, "sig", "canonical"])
    table = table.slice(0, cp.size)
    st = storyread.stories_of(table)
    with collector_paused():
        leaves = st.leaves()
    vkey = storymap.version_key(model, version)
    story = st.story(vkey)
    seqs = {s for s, _ in story}
    if not any(table["action"][s].as_py() == E.REGISTER and table["model"][s].as_py() == model
               for s in seqs):  # fmt: skip
        raise NotFoundError(
            f"{model}:{version} is not registered in the {cp.describe()}", kind="unknown_version"
        )
    if storymap.root(leaves) != committed:
        raise CorruptLedgerError(
            f"the story map of the {cp.describe()} does not match the events (run ledger verify)"
        )
    tree = Tree(led.store, cp.size)
    if tree.root() != cp.root:
        tree = Tree(led.store, cp.size, use_cache=False)
    out = []
    for seq in sorted(seqs):
        canon = table["canonical"][seq].as_py()
        proof = tree.inclusion(seq)
        merkle.verify_inclusion(seq, cp.size, merkle.leaf_hash(canon), proof, cp.root)
        out.append(
            {
                "envelope": _envelope(
                    canon, table["key_id"][seq].as_py(), table["sig"][seq].as_py()
                ),
                "proof": [h.hex() for h in proof],
            }
        )

    # The key events of the checkpoint's signer that the story lacks: with them a reader
    # without --trusted-key can authenticate the checkpoint from the bundle's registry.
    signer = st.signer_keys(cp.signer_key_id, cp.size) if cp.signer_key_id else []
    extra = []
    for seq in sorted({s for s, _ in signer} - seqs):
        canon = table["canonical"][seq].as_py()
        proof = tree.inclusion(seq)
        extra.append(
            {
                "envelope": _envelope(
                    canon, table["key_id"][seq].as_py(), table["sig"][seq].as_py()
                ),
                "proof": [h.hex() for h in proof],
            }
        )

    def part(key: str, events: list[tuple[int, bytes]]) -> dict[str, Any]:
        return {
            "events": [[s, h.hex()] for s, h in events],
            "proof": [h.hex() for h in storymap.prove(leaves, key)],
        }

    return {
        "checkpoint": cp.note,
        "events": out,
        "format": FORMAT,
        "model": model,
        "origin": led.origin,
        "signer_keys": extra,
        "story": part(vkey, story),
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
    #: the story map proved the bundle complete (a ledger-evidence/2 bundle)
    complete: bool = False
    policies: list[int] = field(default_factory=list)

    def summary(self) -> str:
        steps = ", ".join(self.steps)
        trust = (
            ""
            if self.anchored
            else ", a checkpointer key registered by the bundle's own key events"
            " (pass --trusted-key to anchor trust)"
        )
        if self.complete:
            rules = (
                f", policy seq {', '.join(map(str, self.policies))} in force"
                if self.policies
                else ", no policy in force"
            )
            whole = f"; the complete story ({self.events} events{rules})"
        else:
            whole = (
                f"; {self.events} events (a {FORMAT_V1} bundle: it proves these happened,"
                " not that nothing else did)"
            )
        return (
            f"{self.model}:{self.version} {steps}{whole}, all signatures valid,"
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
    members = {"checkpoint", "events", "format", "model", "origin", "version"}
    if doc.get("format") == FORMAT:
        members |= {"signer_keys", "story"}
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
        _check_story(doc, body, model, version, decoded)
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
        complete=v2,
        policies=policies,
    )


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
    model: str,
    version: int,
    decoded: list[tuple[E.Event, bytes, bytes]],
) -> None:
    """The bundle holds exactly the story of ``model:version`` (its key events included)
    that the checkpoint's story map commits to (docs/proofs.md, "Complete evidence")."""
    import hashlib

    try:
        map_root = storymap.root_from_extensions(body.extensions)
    except storymap.StoryMapError as exc:
        raise _bad(f"the checkpoint's story map line is malformed: {exc}") from None
    if map_root is None:
        raise _bad(f"the checkpoint commits to no story map ({storymap.EXTENSION} line)")
    what = f"the story of {model}:{version}"
    committed, proof = _story_part(doc, "story")
    try:
        storymap.verify(
            map_root, storymap.version_key(model, version), storymap.value_hash(committed), proof
        )
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
