"""The policy pattern subset (ledger/pattern.py): it means what Python's re.fullmatch and
DuckDB's regexp_full_match (RE2) mean, it refuses what is outside the subset by name, and
no pattern makes matching slow."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import InputError
from ledger.pattern import MAX_LENGTH, compile_pattern

# Patterns built from the subset's grammar over a small alphabet, so that random texts
# over the same alphabet often match.
ATOMS = st.sampled_from(["a", "b", "-", r"\.", ".", r"\d", r"\w", "[ab]", "[^a]", "[a-c0-9]", "1"])


_UNBOUNDED = re.compile(r"[*+]|\{\d+,\}")


def _node(children):
    quant = st.sampled_from(["", "", "*", "+", "?", "{2}", "{0,2}", "{1,}"])
    bounded = st.sampled_from(["", "", "?", "{2}", "{0,2}"])
    # An unbounded quantifier over a group that holds one, like (a*)*, makes Python's
    # backtracking re (the reference here) take exponential time on a text that does not
    # match: one such example ran for over 20 minutes. The ledger's own matcher is held to
    # linear time on those by test_no_pattern_backtracks below.
    group = children.flatmap(
        lambda c: st.tuples(st.just(f"({c})"), bounded if _UNBOUNDED.search(c) else quant)
    )
    item = st.tuples(ATOMS, quant).map("".join) | group.map("".join)
    seq = st.lists(item, min_size=1, max_size=4).map("".join)
    return seq | st.lists(seq, min_size=2, max_size=3).map("|".join)


BODIES = st.recursive(ATOMS, _node, max_leaves=8)
TEXTS = st.text(alphabet="ab-.1\nxZ_", max_size=12)


@settings(max_examples=300, deadline=None)
@given(body=BODIES, texts=st.lists(TEXTS, min_size=1, max_size=8))
def test_the_subset_means_what_python_re_means(body, texts):
    pattern = f"^{body}$"
    compiled = compile_pattern(pattern)
    for text in texts:
        assert compiled.matches(text) == bool(re.fullmatch(pattern, text, re.ASCII)), (
            pattern,
            text,
        )


def test_the_subset_means_what_duckdb_means():
    duckdb = pytest.importorskip("duckdb")
    cases = [
        (r"^[a-z]+\.[a-z]+\.[a-z0-9]+$", ["fraud.detector.xgb", "fraud.xgb", "Fraud.a.b"]),
        (r"^MRM-[0-9]+$", ["MRM-7", "MRM-", "MRM-7\n", "mrm-7"]),
        (r"^(public|internal)(-[a-z]{2,3})?$", ["public", "internal-eu", "internal-e", "x"]),
        (r"^a.b$", ["axb", "a\nb"]),
        (r"^a[^x]b$", ["a\nb", "axb"]),
        (r"^\w+\d?$", ["a_1", "é1"]),
    ]
    con = duckdb.connect()
    for pattern, texts in cases:
        compiled = compile_pattern(pattern)
        for text in texts:
            (got,) = con.execute("SELECT regexp_full_match(?, ?)", [text, pattern]).fetchone()
            assert compiled.matches(text) == got, (pattern, text)


@pytest.mark.parametrize(
    ("pattern", "error"),
    [
        ("MRM-[0-9]+", "pattern 'MRM-[0-9]+' must be anchored: start with ^ and end with $"
         " (e.g. '^MRM-[0-9]+$')"),
        ("^a\\$", "pattern '^a\\\\$' must be anchored: start with ^ and end with $"
         " (e.g. '^MRM-[0-9]+$')"),
        ("^(?:a)$", "pattern '^(?:a)$': (? … ) groups are not part of the subset; write ( … )"),
        ("^a+?$", "pattern '^a+?$': '?' at position 3 repeats a repetition (lazy and possessive"
         " quantifiers are not part of the subset)"),
        ("^*a$", "pattern '^*a$': '*' at position 1 follows nothing it could repeat"),
        ("^a{2,1}$", "pattern '^a{2,1}$': counts {2,1} must satisfy m <= n <= 100"),
        ("^a{$", "pattern '^a{$': '{' at position 2 is not {m}, {m,} or {m,n} (a literal { is \\{)"),
        ("^\\s$", "pattern '^\\\\s$': \\s is not part of the subset (\\d, \\w or \\ before"
         " punctuation)"),
        ("^a$|^b$", "pattern '^a$|^b$': '$' may only begin (^) or end ($) the pattern"),
        ("^(a$", "pattern '^(a$': the group opened at position 1 is not closed"),
        ("^a)$", "pattern '^a)$': ')' at position 2 closes no group (a literal one is \\))"),
        ("^[a-z-0]$", "pattern '^[a-z-0]$': a literal '-' in the class at position 1 goes first"
         " or last, or is escaped as \\-"),
        ("^[z-a]$", "pattern '^[z-a]$': a range in the class at position 1 is not low-high"),
        ("^[[]$", "pattern '^[[]$': a literal '[' inside a class must be escaped as \\["),
        ("^" + "(a{100})" * 3 + "$", "pattern '^(a{100})(a{100})(a{100})$': too large once"
         " repetitions are counted out (more than 256 character positions)"),
        ("^" + "a" * MAX_LENGTH + "$", "pattern is 258 characters; the limit is 256"),
    ],
)  # fmt: skip
def test_what_is_outside_the_subset_is_named(pattern, error):
    with pytest.raises(InputError) as exc:
        compile_pattern(pattern)
    assert str(exc.value) == error


def test_no_pattern_backtracks():
    """The classic catastrophic patterns, on the longest text a tag may hold."""
    text = "a" * 4096 + "!"
    start = time.perf_counter()
    for pattern in (r"^(a+)+$", r"^(a|a)*$", r"^(a*)*b$", r"^(a|aa){1,80}$", "^" + "a?" * 60 + "a" * 60 + "$"):  # fmt: skip
        assert not compile_pattern(pattern).matches(text)
    assert time.perf_counter() - start < 2.0
