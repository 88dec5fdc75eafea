"""Anchored patterns for policies: a small regular-expression subset, matched in linear
time (pure, no I/O).

A policy names patterns that tag values and model names must match
(``ticket = "^MRM-[0-9]+$"``). A regular expression from a policy author must not be able
to stall the write path, so patterns are not handed to :mod:`re` (whose backtracking is
exponential on e.g. ``^(a+)+$``): :func:`compile_pattern` accepts only the subset below
and builds an automaton whose simulation costs at most one step per position of the
automaton per character of the text, whatever the pattern.

The subset, chosen so that a pattern means the same to Python's ``re.fullmatch`` (with
``re.ASCII``) and to RE2 (DuckDB's ``regexp_full_match``, which the SQL audit uses):

- the pattern starts with ``^`` and ends with ``$``, and the whole text must match;
- literal characters (printable; the metacharacters ``\\ . [ ] ( ) { } * + ? | ^ $``
  escaped with a backslash, as may be any ASCII punctuation);
- ``.`` (any character but a newline), ``\\d`` (``[0-9]``), ``\\w`` (``[A-Za-z0-9_]``);
- classes ``[a-z0-9_]`` and ``[^…]``: characters, ranges and ``\\d``/``\\w``; a literal
  ``[`` or ``]`` inside one is escaped, ``-`` is literal first or last;
- groups ``( … )`` with alternatives ``a|b``;
- quantifiers ``*``, ``+``, ``?``, ``{m}``, ``{m,}``, ``{m,n}`` (m, n at most 100), one per
  atom (no lazy or possessive forms: they change nothing in a whole-text match).

Limits: at most :data:`MAX_LENGTH` characters and :data:`MAX_STATES` character positions
once counted repetitions are expanded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import InputError

MAX_LENGTH = 256
MAX_STATES = 256
MAX_REPEAT = 100
_META = set("\\.[](){}*+?|^$")
_PUNCT = {chr(c) for c in range(33, 127) if not chr(c).isalnum()}
_DIGIT = ((48, 57),)
_WORD = ((48, 57), (65, 90), (95, 95), (97, 122))

# A character set: (ranges of code points, negated).
_Set = tuple[tuple[tuple[int, int], ...], bool]


@dataclass(frozen=True)
class _Char:
    ranges: tuple[tuple[int, int], ...]
    negated: bool = False


@dataclass(frozen=True)
class _Seq:
    items: tuple[object, ...]


@dataclass(frozen=True)
class _Alt:
    options: tuple[object, ...]


@dataclass(frozen=True)
class _Repeat:
    node: object
    low: int
    high: int | None  # None: unbounded


class _Parser:
    """Recursive descent over the body of ``^BODY$`` (positions count from the ``^``)."""

    def __init__(self, source: str) -> None:
        self.source, self.text, self.i = source, source[:-1], 1

    def fail(self, msg: str) -> InputError:
        return InputError(f"pattern {self.source!r}: {msg}")

    def peek(self) -> str | None:
        return self.text[self.i] if self.i < len(self.text) else None

    def alt(self, depth: int) -> object:
        options = [self.seq(depth)]
        while self.peek() == "|":
            self.i += 1
            options.append(self.seq(depth))
        return options[0] if len(options) == 1 else _Alt(tuple(options))

    def seq(self, depth: int) -> object:
        items: list[object] = []
        while (c := self.peek()) is not None and c not in "|)":
            if c in "*+?{":
                raise self.fail(f"{c!r} at position {self.i} follows nothing it could repeat")
            atom = self.atom(depth)
            items.append(self.quantified(atom))
        return _Seq(tuple(items))

    def quantified(self, atom: object) -> object:
        c = self.peek()
        if c is None or c not in "*+?{":
            return atom
        at = self.i
        self.i += 1
        if c == "*":
            low, high = 0, None
        elif c == "+":
            low, high = 1, None
        elif c == "?":
            low, high = 0, 1
        else:
            low, high = self.counts(at)
        nxt = self.peek()
        if nxt is not None and nxt in "*+?{":
            raise self.fail(
                f"{nxt!r} at position {self.i} repeats a repetition (lazy and possessive"
                " quantifiers are not part of the subset)"
            )
        return _Repeat(atom, low, high)

    def counts(self, at: int) -> tuple[int, int | None]:
        end = self.text.find("}", self.i)
        body = self.text[self.i : end] if end >= 0 else ""
        low_s, comma, high_s = body.partition(",")
        ok = end >= 0 and low_s.isdigit() and (not high_s or high_s.isdigit())
        if not ok or not low_s.isascii() or not high_s.isascii():
            raise self.fail(
                f"'{{' at position {at} is not {{m}}, {{m,}} or {{m,n}} (a literal {{ is \\{{)"
            )
        low = int(low_s)
        high = None if comma and not high_s else int(high_s) if comma else low
        if low > MAX_REPEAT or (high is not None and (high > MAX_REPEAT or high < low)):
            raise self.fail(f"counts {{{body}}} must satisfy m <= n <= {MAX_REPEAT}")
        self.i = end + 1
        return low, high

    def atom(self, depth: int) -> object:
        c = self.text[self.i]
        self.i += 1
        if c == "(":
            if self.peek() == "?":
                raise self.fail("(? … ) groups are not part of the subset; write ( … )")
            if depth >= 10:
                raise self.fail("groups nest more than 10 deep")
            opened = self.i - 1
            inner = self.alt(depth + 1)
            if self.peek() != ")":
                raise self.fail(f"the group opened at position {opened} is not closed")
            self.i += 1
            return inner
        if c == "[":
            return self.char_class()
        if c == ".":
            return _Char(((10, 10),), negated=True)
        if c == "\\":
            return _Char(self.escape()[0])
        if c in "^$":
            raise self.fail(f"{c!r} may only begin (^) or end ($) the pattern")
        if c in _META:  # ) ] }
            raise self.fail(f"{c!r} at position {self.i - 1} must be escaped as \\{c}")
        return _Char(((ord(c), ord(c)),))

    def escape(self) -> tuple[tuple[tuple[int, int], ...], bool]:
        """After a backslash: (the ranges it stands for, whether it is \\d or \\w)."""
        c = self.peek()
        if c is None:
            raise self.fail("it ends with a lone backslash")
        self.i += 1
        if c == "d":
            return _DIGIT, True
        if c == "w":
            return _WORD, True
        if c in _PUNCT:
            return ((ord(c), ord(c)),), False
        raise self.fail(f"\\{c} is not part of the subset (\\d, \\w or \\ before punctuation)")

    def char_class(self) -> _Char:
        start = self.i - 1
        negated = self.peek() == "^"
        if negated:
            self.i += 1
        ranges: list[tuple[int, int]] = []
        first = True
        while True:
            c = self.peek()
            if c is None:
                raise self.fail(f"the class opened at position {start} is not closed")
            if c == "]" and not first:
                self.i += 1
                break
            last = self.i + 1 < len(self.text) and self.text[self.i + 1] == "]"
            if c == "-" and not first and not last:
                raise self.fail(
                    f"a literal '-' in the class at position {start} goes first or last,"
                    " or is escaped as \\-"
                )
            lo = self.class_char()
            if isinstance(lo, tuple):
                ranges += lo
            elif (
                self.peek() == "-" and self.i + 1 < len(self.text) and self.text[self.i + 1] != "]"
            ):
                self.i += 1
                hi = self.class_char()
                if isinstance(hi, tuple) or hi < lo:
                    raise self.fail(f"a range in the class at position {start} is not low-high")
                ranges.append((lo, hi))
            else:
                ranges.append((lo, lo))
            first = False
        return _Char(tuple(ranges), negated)

    def class_char(self) -> int | tuple[tuple[int, int], ...]:
        """One member of a class: a character's code, or the ranges of \\d / \\w."""
        c = self.text[self.i]
        self.i += 1
        if c == "\\":
            ranges, shorthand = self.escape()
            return ranges if shorthand else ranges[0][0]
        if c in "[]":
            raise self.fail(f"a literal {c!r} inside a class must be escaped as \\{c}")
        return ord(c)


@dataclass(frozen=True, eq=False)
class Pattern:
    """A compiled pattern; :meth:`matches` is True when the whole text matches."""

    source: str
    #: per character position: the set it accepts, and (as a bit mask over positions,
    #: bit ``len(_sets)`` meaning "the end") the positions that may come next
    _sets: tuple[_Set, ...] = field(repr=False)
    _follow: tuple[int, ...] = field(repr=False)
    _start: int = field(repr=False)
    _cache: dict[tuple[int, str], int] = field(default_factory=dict, repr=False)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pattern) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)

    def __str__(self) -> str:
        return self.source

    def matches(self, text: str) -> bool:
        """Whether ``text`` matches as a whole: at most one pass over the positions per
        character (each (positions, character) step is remembered)."""
        current, cache, sets, follow = self._start, self._cache, self._sets, self._follow
        for ch in text:
            got = cache.get((current, ch))
            if got is None:
                code, got, bits = ord(ch), 0, current & ~(1 << len(sets))
                while bits:  # each position in the current set, lowest first
                    low = bits & -bits
                    bits ^= low
                    i = low.bit_length() - 1
                    if _contains(sets[i], code):
                        got |= follow[i]
                if len(cache) > 4096:  # (a bound on memory, not on time)
                    cache.clear()
                cache[(current, ch)] = got
            if not got:
                return False
            current = got
        return bool(current >> len(sets) & 1)


def _contains(cs: _Set, code: int) -> bool:
    ranges, negated = cs
    return any(lo <= code <= hi for lo, hi in ranges) != negated


class _Builder:
    """Thompson's construction: each node becomes states wired to a continuation."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sets: list[_Set | None] = []
        self.next: list[list[int]] = []
        self.chars = 0

    def state(self, cs: _Set | None, nxt: list[int]) -> int:
        if cs is not None:
            self.chars += 1
            if self.chars > MAX_STATES:
                raise InputError(
                    f"pattern {self.source!r}: too large once repetitions are counted out"
                    f" (more than {MAX_STATES} character positions)"
                )
        self.sets.append(cs)
        self.next.append(nxt)
        return len(self.sets) - 1

    def build(self, node: object, cont: int) -> int:
        """States for ``node`` followed by state ``cont``; returns the entry state."""
        if isinstance(node, _Char):
            return self.state((node.ranges, node.negated), [cont])
        if isinstance(node, _Seq):
            entry = cont
            for item in reversed(node.items):
                entry = self.build(item, entry)
            return entry
        if isinstance(node, _Alt):
            return self.state(None, [self.build(o, cont) for o in node.options])
        assert isinstance(node, _Repeat)
        entry = cont
        if node.high is None:  # X* : a branch that loops back through X
            loop = self.state(None, [])
            self.next[loop] = [self.build(node.node, loop), cont]
            entry = loop
        else:
            for _ in range(node.high - node.low):  # optional copies: X? nested
                entry = self.state(None, [self.build(node.node, entry), cont])
                cont = entry
        for _ in range(node.low):
            entry = self.build(node.node, entry)
        return entry


def compile_pattern(text: str) -> Pattern:
    """Check ``text`` against the subset and compile it; InputError names what is wrong."""
    if not isinstance(text, str):
        raise InputError(f"a pattern must be text, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise InputError(f"pattern is {len(text)} characters; the limit is {MAX_LENGTH}")
    if any(not c.isprintable() for c in text):
        raise InputError(f"pattern {text!r}: control characters are not allowed")
    escaped_end = (len(text) - 1 - len(text[:-1].rstrip("\\"))) % 2 == 1  # ... \\$
    if len(text) < 2 or not text.startswith("^") or not text.endswith("$") or escaped_end:
        raise InputError(
            f"pattern {text!r} must be anchored: start with ^ and end with $ (e.g. '^MRM-[0-9]+$')"
        )
    p = _Parser(text)
    tree = p.alt(0)
    if p.i != len(p.text):  # a ')' with no group open
        raise p.fail(f"')' at position {p.i} closes no group (a literal one is \\))")
    b = _Builder(text)
    entry = b.build(tree, -1)
    # Number the character states 0..n-1 (n is "the end"); a branch state is replaced
    # by the character states reachable from it without consuming a character.
    chars = [s for s, cs in enumerate(b.sets) if cs is not None]
    index = {s: i for i, s in enumerate(chars)} | {-1: len(chars)}

    def closure(states: list[int]) -> int:
        mask, seen, todo = 0, set(), list(states)
        while todo:
            s = todo.pop()
            if s in seen:
                continue
            seen.add(s)
            if s >= 0 and b.sets[s] is None:
                todo.extend(b.next[s])
            else:
                mask |= 1 << index[s]
        return mask

    sets = tuple(cs for cs in b.sets if cs is not None)
    follow = tuple(closure(b.next[s]) for s in chars)
    return Pattern(text, sets, follow, closure([entry]))


__all__ = ["MAX_LENGTH", "MAX_STATES", "Pattern", "compile_pattern"]
