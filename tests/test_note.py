"""Tests for ledger.note: C2SP signed notes and tlog checkpoints, against the published
C2SP example and real Tessera checkpoints, plus round-trip, tamper and malformed cases."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import merkle, note
from ledger.note import Checkpoint, NoteError

#: Published test vectors, copied from ../shared/vectors with their sources (tests/vectors/README.md).
VECTORS = Path(__file__).resolve().parent / "vectors"


def _load(name: str) -> dict:
    return json.loads((VECTORS / name).read_text())  # (committed: missing fails, never skips)


@pytest.fixture
def note_vec() -> dict:
    return _load("signed_note_vectors.json")["vectors"][0]


@pytest.fixture
def tlog_vec() -> dict:
    return _load("tlog_checkpoint_vectors.json")


def _key(seed: int) -> tuple[nacl.signing.SigningKey, bytes]:
    sk = nacl.signing.SigningKey(bytes([seed]) * 32)
    return sk, bytes(sk.verify_key)


def _signer(sk: nacl.signing.SigningKey):
    return lambda msg: sk.sign(msg).signature


SK_A, PK_A = _key(1)
SK_B, PK_B = _key(2)
TEXT = "example.com/log\n42\n" + base64.b64encode(b"\x07" * 32).decode() + "\n"


def _sig_line(n: str, sk: nacl.signing.SigningKey, pk: bytes, text: str = TEXT) -> str:
    """The signature line sign_note would produce (the note minus text and blank line)."""
    return note.sign_note(text, n, _signer(sk), pk)[len(text) + 1 :]


# --- published vectors ---


def test_c2sp_example(note_vec: dict) -> None:
    name, kid, pub = note.parse_vkey(note_vec["vkey"])
    assert kid.hex() == note_vec["expected_key_id_hex"]
    assert note.key_id(name, pub) == kid
    assert note.vkey(name, pub) == note_vec["vkey"]
    text, names = note.open_note(note_vec["signed_note"], {name: pub})
    assert (text, names) == (note_vec["signed_text"], [name])
    assert note_vec["expect_valid"]


def test_c2sp_example_any_byte_tampered_fails(note_vec: dict) -> None:
    name, _, pub = note.parse_vkey(note_vec["vkey"])
    raw = note_vec["signed_note"].encode()
    for i in range(len(raw)):
        for mask in (0x01, 0x02, 0x20, 0x80):
            bad = bytearray(raw)
            bad[i] ^= mask
            with pytest.raises(NoteError):
                note.open_note(bytes(bad), [(name, pub)])


def test_tessera_checkpoints(tlog_vec: dict) -> None:
    name, _, pub = note.parse_vkey(tlog_vec["vkey"])
    assert name == tlog_vec["origin"]
    assert note.vkey(name, pub) == tlog_vec["vkey"]
    leaves = [merkle.leaf_hash(w.encode()) for w in tlog_vec["leaf_inputs_ascii"]]
    roots = {}
    for c in tlog_vec["checkpoints"]:
        text, names = note.open_note(c["checkpoint_note"], {name: pub})
        assert names == [name]
        cp = note.parse_checkpoint(text)
        assert (cp.origin, cp.size, cp.extensions) == (tlog_vec["origin"], c["tree_size"], ())
        assert cp.root == merkle.root(leaves[: cp.size])
        assert cp.format() == text == note.format_checkpoint(cp.origin, cp.size, cp.root)
        roots[cp.size] = cp.root
    assert sorted(roots) == list(range(16))
    assert roots[0] == merkle.EMPTY_ROOT
    for n in range(16):
        for m in range(1, n + 1):
            proof = merkle.consistency_proof(m, leaves[:n])
            merkle.verify_consistency(m, n, proof, roots[m], roots[n])
        # transparency-dev semantics: no consistency "proof" from the empty tree
        with pytest.raises(merkle.MerkleProofError):
            merkle.verify_consistency(0, n, [], roots[0], roots[n])


def test_tessera_checkpoint_wrong_key_or_tamper(tlog_vec: dict) -> None:
    name, _, pub = note.parse_vkey(tlog_vec["vkey"])
    signed = tlog_vec["checkpoints"][5]["checkpoint_note"]
    with pytest.raises(NoteError, match="not signed by any known key"):
        note.open_note(signed, {name: PK_A})  # same name, different key ID: ignored
    with pytest.raises(NoteError, match="invalid signature"):
        note.open_note(signed.replace("\n5\n", "\n6\n", 1), {name: pub})


# --- round trips ---


def test_sign_open_round_trip() -> None:
    signed = note.sign_note(TEXT, "example.com/log", _signer(SK_A), PK_A)
    assert signed.startswith(TEXT + "\n\u2014 example.com/log ")
    blob = base64.b64decode(signed.splitlines()[-1].split(" ")[-1])
    assert blob[:4] == note.key_id("example.com/log", PK_A) and len(blob) == 68
    assert note.open_note(signed, {"example.com/log": PK_A}) == (TEXT, ["example.com/log"])
    assert note.open_note(signed.encode(), [("example.com/log", PK_A)])[1] == ["example.com/log"]


_line_chars = st.characters(blacklist_categories=("Cs",), min_codepoint=0x20)
_text = st.lists(st.text(_line_chars, max_size=30), min_size=1, max_size=6).map(
    lambda lines: "".join(line + "\n" for line in lines)
)


@settings(max_examples=60, deadline=None)
@given(text=_text, data=st.data())
def test_round_trip_and_text_tamper(text: str, data: st.DataObject) -> None:
    signed = note.sign_note(text, "k", _signer(SK_A), PK_A)
    assert note.open_note(signed, {"k": PK_A}) == (text, ["k"])
    i = data.draw(st.integers(0, len(text) - 1), label="position")
    c = data.draw(st.sampled_from("a\u00e9\u2014 \n"), label="replacement")
    if text[i] != c:
        with pytest.raises(NoteError):
            note.open_note(signed[:i] + c + signed[i + 1 :], {"k": PK_A})


def test_multiple_signers_and_unknown_keys_ignored() -> None:
    signed = note.sign_note(TEXT, "a.example", _signer(SK_A), PK_A)
    signed += _sig_line("b.example", SK_B, PK_B)
    signed += "\u2014 c.example AAAAAAAA\n"  # unknown key, junk signature: ignored
    both = {"a.example": PK_A, "b.example": PK_B}
    assert note.open_note(signed, both)[1] == ["a.example", "b.example"]
    assert note.open_note(signed, {"b.example": PK_B})[1] == ["b.example"]
    # several keys under one name (rotation)
    assert note.open_note(signed, [("a.example", PK_B), ("a.example", PK_A)])[1] == ["a.example"]
    with pytest.raises(NoteError, match=r"not signed by any known key \(signed by: a.example"):
        note.open_note(signed, {"z.example": PK_A})
    with pytest.raises(NoteError, match="not signed by any known key"):
        note.open_note(signed, {"b.example": PK_A})  # known name, other key: other ID


def test_known_key_with_bad_signature_rejects_whole_note() -> None:
    good = note.sign_note(TEXT, "a.example", _signer(SK_A), PK_A)
    kid = note.key_id("b.example", PK_B)
    forged = "\u2014 b.example " + base64.b64encode(kid + b"\0" * 64).decode() + "\n"
    with pytest.raises(NoteError, match=f"invalid signature by b.example \\(key ID {kid.hex()}"):
        note.open_note(good + forged, {"a.example": PK_A, "b.example": PK_B})
    assert note.open_note(good + forged, {"a.example": PK_A})[1] == ["a.example"]
    short = "\u2014 a.example " + base64.b64encode(note.key_id("a.example", PK_A) + b"x").decode()
    with pytest.raises(NoteError, match="invalid signature"):
        note.open_note(good + short + "\n", {"a.example": PK_A})


def test_signature_bytes_tampered_fails() -> None:
    signed = note.sign_note(TEXT, "a.example", _signer(SK_A), PK_A)
    start = signed.rindex(" ") + 1
    for i in range(start, len(signed) - 1):
        for c in "AB+/=a9":
            if signed[i] != c:
                with pytest.raises(NoteError):
                    note.open_note(signed[:i] + c + signed[i + 1 :], {"a.example": PK_A})


# --- malformed notes ---

GOOD = note.sign_note(TEXT, "a.example", _signer(SK_A), PK_A)
SIG = GOOD[len(TEXT) + 1 :]


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (TEXT + SIG, "blank line"),  # no blank line before signatures
        (TEXT + "\n", "end with a newline"),  # no signature lines
        (GOOD[:-1], "end with a newline"),
        (GOOD + "trailer", "end with a newline"),
        (GOOD + "\n", "end with a newline"),  # trailing blank line: empty signature block
        (GOOD + "x\n", "does not start with an em dash"),
        (TEXT + "\n- a.example " + SIG.split(" ")[-1], "em dash"),
        (TEXT + "\n\u2014a.example " + SIG.split(" ")[-1], "em dash"),
        (TEXT + "\n\u2014 a.example\n", "not '\u2014 <name> <base64>'"),
        (TEXT + "\n\u2014 a.example \n", "not '\u2014 <name> <base64>'"),
        (TEXT + "\n\u2014 a+b AAAAAAAA\n", "invalid key name"),
        (TEXT + "\n\u2014 a.example AAAA\n", "too short"),
        (TEXT + "\n\u2014 a.example AAAAAA!A\n", "not valid base64"),
        (TEXT + "\n\u2014 a.example AAAAAAA\n", "not valid base64"),
        (TEXT + "\n\u2014 a.example AAAAAAB=\n", "not canonical"),
        (GOOD.replace("42", "4\r2", 1), "control character"),
        (GOOD.replace("42", "4\t2", 1), "control character"),
        (TEXT + "\n" + SIG * (note.MAX_SIGNATURES + 1), "more than"),
        ("\n\n" + SIG, "invalid signature"),  # text "\n" is allowed but was not signed
    ],
)
def test_malformed_notes_rejected(bad: str, why: str) -> None:
    with pytest.raises(NoteError, match=why.replace("(", r"\(").replace("+", r"\+")):
        note.open_note(bad, {"a.example": PK_A})


def test_invalid_utf8_and_oversize_rejected() -> None:
    with pytest.raises(NoteError, match="UTF-8"):
        note.open_note(GOOD.encode().replace(b"42", b"4\xff", 1), {"a.example": PK_A})
    with pytest.raises(NoteError, match="UTF-8"):
        note.open_note(GOOD.replace("42", "4\ud800", 1), {"a.example": PK_A})
    with pytest.raises(NoteError, match="larger than"):
        note.open_note("x" * note.MAX_NOTE_BYTES + GOOD, {"a.example": PK_A})


def test_sixteen_signatures_accepted() -> None:
    assert note.open_note(GOOD + SIG * 15, {"a.example": PK_A})[1] == ["a.example"]


def test_sign_note_validation() -> None:
    sign = _signer(SK_A)
    for text in ("", "no newline", "bad\x00char\n", "lone \ud800 surrogate\n"):
        with pytest.raises(NoteError):
            note.sign_note(text, "a", sign, PK_A)
    for name in ("", "a+b", "a b", "a\u00a0b", "a\nb"):
        with pytest.raises(NoteError, match="invalid key name"):
            note.sign_note(TEXT, name, sign, PK_A)
    with pytest.raises(NoteError, match="32 bytes"):
        note.sign_note(TEXT, "a", sign, PK_A[:31])
    with pytest.raises(NoteError, match="64-byte"):
        note.sign_note(TEXT, "a", lambda m: b"\0" * 63, PK_A)
    with pytest.raises(NoteError, match="does not verify"):
        note.sign_note(TEXT, "a", sign, PK_B)  # key pair mismatch caught at signing time


# --- verifier keys ---


def test_vkey_round_trip_and_errors() -> None:
    vk = note.vkey("example.com/k", PK_A)
    assert note.parse_vkey(vk) == ("example.com/k", note.key_id("example.com/k", PK_A), PK_A)
    name, kid_hex, key_b64 = vk.split("+")
    wrong_alg = base64.b64encode(b"\x02" + PK_A).decode()
    short_key = base64.b64encode(b"\x01" + PK_A[:31]).decode()
    cases = [
        ("example.com/k+" + kid_hex, "form"),
        (vk + "+x", "base64"),
        (f"+{kid_hex}+{key_b64}", "invalid key name"),
        (f"a b+{kid_hex}+{key_b64}", "invalid key name"),
        (f"{name}+{kid_hex[:7]}+{key_b64}", "8 hex digits"),
        (f"{name}+0x{kid_hex[:6]}+{key_b64}", "8 hex digits"),
        (f"{name}+{kid_hex}+{key_b64[:-2]}", "base64"),
        (f"{name}+{kid_hex}+{wrong_alg}", "not an Ed25519 key"),
        (f"{name}+{kid_hex}+{short_key}", "Ed25519"),
        (f"{name}+00000000+{key_b64}", "does not match"),
        (f"other+{kid_hex}+{key_b64}", "does not match"),
    ]
    for s, why in cases:
        with pytest.raises(NoteError, match=why):
            note.parse_vkey(s)
    assert note.parse_vkey(f"{name}+{kid_hex.upper()}+{key_b64}")[2] == PK_A


# --- checkpoints ---


@settings(max_examples=80, deadline=None)
@given(
    origin=st.text(_line_chars.filter(lambda c: c != "\n"), min_size=1, max_size=20),
    size=st.integers(0, 2**64 - 1),
    root=st.binary(min_size=32, max_size=32),
    exts=st.lists(st.text(_line_chars.filter(lambda c: c != "\n"), min_size=1), max_size=3),
)
def test_checkpoint_round_trip(origin: str, size: int, root: bytes, exts: list[str]) -> None:
    text = note.format_checkpoint(origin, size, root, exts)
    cp = note.parse_checkpoint(text)
    assert cp == Checkpoint(origin, size, root, tuple(exts))
    assert cp.format() == text
    assert text.split("\n")[1] == str(size)


def test_checkpoint_format_validation() -> None:
    root = b"\1" * 32
    bad_args = [
        ("", 1, root, ()),
        ("a\nb", 1, root, ()),
        ("o", -1, root, ()),
        ("o", 2**64, root, ()),
        ("o", True, root, ()),
        ("o", 1, root[:31], ()),
        ("o", 1, root, ("",)),
        ("o", 1, root, ("a\nb",)),
    ]
    for args in bad_args:
        with pytest.raises(NoteError):
            note.format_checkpoint(*args)


ROOT_B64 = base64.b64encode(b"\1" * 32).decode()


@pytest.mark.parametrize(
    "text",
    [
        f"o\n1\n{ROOT_B64}",  # no final newline
        f"o\n1\n{ROOT_B64}\n\n",  # empty extension line
        "o\n1\n",
        f"\n1\n{ROOT_B64}\n",
        f"o\n01\n{ROOT_B64}\n",
        f"o\n00\n{ROOT_B64}\n",
        f"o\n+1\n{ROOT_B64}\n",
        f"o\n-1\n{ROOT_B64}\n",
        f"o\n 1\n{ROOT_B64}\n",
        f"o\n1_0\n{ROOT_B64}\n",
        f"o\n\uff11\n{ROOT_B64}\n",  # fullwidth digit one
        f"o\n{2**64}\n{ROOT_B64}\n",
        f"o\n\n{ROOT_B64}\n",
        f"o\n1\n{base64.b64encode(b'x' * 31).decode()}\n",
        f"o\n1\n{base64.b64encode(b'x' * 33).decode()}\n",
        f"o\n1\n{ROOT_B64[:-2]}B=\n",  # non-canonical padding bits
        f"o\n1\n{ROOT_B64.rstrip('=')}\n",
        f"o\r\n1\n{ROOT_B64}\n",
    ],
)
def test_parse_checkpoint_rejects(text: str) -> None:
    with pytest.raises(NoteError):
        note.parse_checkpoint(text)


def test_parse_checkpoint_accepts_edge_values() -> None:
    cp = note.parse_checkpoint(f"a b+c\n0\n{ROOT_B64}\next 1\n")
    assert cp == Checkpoint("a b+c", 0, b"\1" * 32, ("ext 1",))
    assert note.parse_checkpoint(f"o\n{2**64 - 1}\n{ROOT_B64}\n").size == 2**64 - 1
    with pytest.raises(AttributeError):
        cp.size = 3  # type: ignore[misc]
    assert issubclass(NoteError, ValueError)


# --- verify_note: every known key's line judged, for callers that count signatures ---


def test_verify_note_reports_each_known_key() -> None:
    signed = note.sign_note(TEXT, "a.example", _signer(SK_A), PK_A)
    signed += _sig_line("a.example", SK_B, PK_B)  # a second key under the same name
    signed += "\u2014 c.example AAAAAAAA\n"  # unknown: ignored
    found = note.verify_note(
        signed, [("z.example", PK_A), ("a.example", PK_B), ("a.example", PK_A)]
    )
    assert found.text == TEXT
    assert found.verified == (2, 1)  # in line order, as indices into the verifiers
    assert found.invalid == ()
    kid_a, kid_b = note.key_id("a.example", PK_A).hex(), note.key_id("a.example", PK_B).hex()
    assert found.signers == (f"a.example+{kid_a}", f"a.example+{kid_b}", "c.example+00000000")
    assert note.verify_note(signed, {"z.example": PK_A}).verified == ()  # no raise


def test_verify_note_lists_bad_lines_and_open_note_still_refuses() -> None:
    good = note.sign_note(TEXT, "a.example", _signer(SK_A), PK_A)
    kid = note.key_id("b.example", PK_B)
    forged = "\u2014 b.example " + base64.b64encode(kid + b"\0" * 64).decode() + "\n"
    found = note.verify_note(good + forged, {"a.example": PK_A, "b.example": PK_B})
    assert (found.verified, found.invalid) == ((0,), (("b.example", kid.hex()),))
    with pytest.raises(NoteError, match=f"invalid signature by b.example \\(key ID {kid.hex()}"):
        note.open_note(good + forged, {"a.example": PK_A, "b.example": PK_B})
    with pytest.raises(NoteError, match="no blank line"):
        note.verify_note(TEXT, {"a.example": PK_A})
