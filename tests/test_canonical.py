"""RFC 8785 canonical JSON: published vectors and equality with the reference encoder."""

from __future__ import annotations

import json
import math
import struct

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from ledger.canonical import MAX_DEPTH, canonicalize, loads
from ledger.errors import InputError

from .conftest import vectors


def test_jcs_document_pairs():
    doc = vectors("jcs_vectors.json")
    assert doc["document_pairs"], "no document pairs in the vector file"
    for pair in doc["document_pairs"]:
        out = canonicalize(json.loads(pair["input"]))
        assert out == pair["expected_output"].encode("utf-8"), pair["name"]
        assert out.hex() == pair["expected_output_hex"], pair["name"]


def test_jcs_number_vectors():
    doc = vectors("jcs_vectors.json")
    for vec in doc["number_vectors"]:
        value = struct.unpack(">d", bytes.fromhex(vec["ieee754_hex"]))[0]
        if vec["expected"] is None:
            with pytest.raises(InputError, match="NaN or infinity"):
                canonicalize(value)
        elif 2.0**53 <= abs(value) < 1e21:
            # RFC 8785 writes it as an integer beyond ±(2^53−1): the ledger's limit (I-JSON,
            # FORMAT.md §3.5) refuses what a reader could not take back exactly.
            assert vec["expected"].lstrip("-").isdigit(), vec["comment"]
            with pytest.raises(InputError, match="integer beyond the exact JSON range"):
                canonicalize(value)
        else:
            assert canonicalize(value) == vec["expected"].encode(), vec["comment"]


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False).filter(
        lambda x: not 2.0**53 <= abs(x) < 1e21
    )
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(json_values)
def test_equals_reference_encoder(value):
    assert canonicalize(value) == rfc8785.dumps(value)


@given(
    st.dictionaries(
        st.text(
            alphabet=st.characters(min_codepoint=0xD000, exclude_categories=("Cs",)), max_size=3
        ),
        st.integers(0, 9),
    )
)
def test_key_order_is_utf16(value):
    # Keys above U+D7FF sort differently by UTF-16 code units than by code points.
    assert canonicalize(value) == rfc8785.dumps(value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (math.nan, "NaN or infinity"),
        ({"a": [math.inf]}, r"number at \$\.a\[0\] is inf"),
        (2**53, "outside the exact JSON range"),
        ({1: "x"}, "is not a string"),
        ("\ud800", "lone surrogate"),
        ({"b": b"x"}, "type bytes"),
    ],
)
def test_rejects_values_json_cannot_carry(value, message):
    with pytest.raises(InputError, match=message):
        canonicalize(value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"\n": 2**53}, "integer at $.\\n is outside the exact JSON range ±(2**53-1)"),
        ({"a\tb": [math.nan]}, "number at $.a\\tb[0] is nan; JSON has no NaN or infinity"),
        (
            {"x": {"\u2028\x00": b""}},
            "value at $.x.\\u2028\\x00 has type bytes, which JSON cannot represent",
        ),
        (
            {"k" * 100: 2**60},
            "integer at $." + "k" * 77 + "… is outside the exact JSON range ±(2**53-1)",
        ),
    ],
    ids=["newline", "tab", "line separator and NUL", "long key"],
)
def test_error_paths_stay_on_one_line(value, message):
    """Keys are user text: the path that names one in an error is escaped and cut."""
    with pytest.raises(InputError) as exc:
        canonicalize(value)
    assert str(exc.value) == message


def test_nesting_limit():
    deep: object = 0
    for _ in range(MAX_DEPTH):
        deep = [deep]
    canonicalize(deep)
    with pytest.raises(InputError, match="nested deeper than 32"):
        canonicalize([deep])


def test_loads_rejects_duplicates_and_constants():
    with pytest.raises(InputError, match="duplicate key 'a'"):
        loads('{"a": 1, "a": 2}')
    with pytest.raises(InputError, match="NaN is not valid JSON"):
        loads('{"a": NaN}')
    assert loads('{"a": [1, 2.5]}') == {"a": [1, 2.5]}


@pytest.mark.parametrize("value", [2.0**53, -(2.0**53), 1e16, 1e20, 123456789012345678.0])
def test_a_whole_float_rfc8785_writes_as_an_unsafe_integer_is_refused(value):
    """RFC 8785 writes 1e16 as 10000000000000000: read back, an integer beyond ±(2^53−1),
    which verify refuses. So the writer refuses it (found by test_hostile.py)."""
    with pytest.raises(InputError, match="writes it as an integer beyond the exact JSON range"):
        canonicalize({"m": value})


@pytest.mark.parametrize("value", [2.0**53 - 1, 1e21, 1.5e300, -1e21, 0.5])
def test_floats_rfc8785_writes_exactly_are_kept(value):
    assert json.loads(canonicalize({"m": value})) == {"m": value}
