"""Automatic compaction: which segments to merge after an append (pure; no I/O).

A ledger written one event at a time would otherwise hold one segment per append, and
every reader would pay for every file. The policy is size-tiered, like an LSM tree's,
inside the aligned blocks of ``TOP`` (= ``segments.SEGMENT_EVENTS``, 65,536) events that
``ledger compact`` builds:

* A segment's *level* is ``floor(log_FANOUT(events))``: 1-3 events are level 0, 4-15
  level 1, 16-63 level 2, … (with the default fanout 4).
* Inside the block still being filled, the segments' levels never increase from the
  oldest to the newest, and no level holds ``FANOUT`` segments: when the newest
  ``FANOUT`` share a level they are merged (one level up), and a segment bigger than
  the ones before it (a batch append) absorbs them.
* A complete block is merged into one segment, exactly as ``ledger compact`` would.

What this bounds (tested in tests/test_compaction.py):

* segments: one per complete block plus at most ``(FANOUT - 1)`` per level in the block
  being filled — :func:`max_segments`, 24 at most with the defaults;
* work: an event is rewritten once per level it climbs (at most ``log_FANOUT(TOP)`` + 1
  times), and a batch at most once more when it absorbs smaller segments, so the
  amortized cost of an append does not grow with the ledger; the largest merge is one
  block.
"""

from __future__ import annotations

from collections.abc import Sequence

#: Segments of one level merge when this many accumulate.
FANOUT = 4
#: Events in a complete block; equals ``segments.SEGMENT_EVENTS`` (checked there).
TOP = 1 << 16


def level(events: int, fanout: int = FANOUT) -> int:
    """``floor(log_fanout(events))`` for ``events >= 1``, in integers."""
    n, size = 0, fanout
    while size <= events:
        n += 1
        size *= fanout
    return n


def plan(
    ranges: Sequence[tuple[int, int]], fanout: int = FANOUT, top: int = TOP
) -> list[tuple[int, int]]:
    """The merges to make: ``(i, j)`` pairs, each meaning "merge ``ranges[i:j]`` into
    one segment", disjoint and in order.

    ``ranges`` are the live segments' ``(first, last)`` seq bounds, in order, tiling the
    ledger (no segment crosses a multiple of ``top``: the writer splits there). From any
    layout it returns the merges that restore the invariants above; after one append to
    a layout that holds them, only the merges that append calls for. Cost:
    O(len(ranges)), cheap enough to plan after every append.
    """
    if fanout < 2:
        raise ValueError("fanout must be at least 2")
    groups: list[tuple[int, int]] = []
    i = 0
    while i < len(ranges):
        # The segments of one top block: ranges[i:j].
        block = ranges[i][0] // top
        j = i
        while j < len(ranges) and ranges[j][0] // top == block:
            j += 1
        if ranges[j - 1][1] + 1 == (block + 1) * top:  # complete: one segment
            if j - i > 1:
                groups.append((i, j))
        else:
            groups.extend(_tiers(ranges, i, j, fanout))
        i = j
    return groups


def full(ranges: Sequence[tuple[int, int]], top: int = TOP) -> list[tuple[int, int]]:
    """The merges ``ledger compact`` makes, as :func:`plan` gives them: every run of two
    or more segments that start in the same block of ``top`` events becomes one segment
    (the last, incomplete block too)."""
    groups: list[tuple[int, int]] = []
    i = 0
    while i < len(ranges):
        j = i + 1
        while j < len(ranges) and ranges[j][0] // top == ranges[i][0] // top:
            j += 1
        if j - i > 1:
            groups.append((i, j))
        i = j
    return groups


def _tiers(
    ranges: Sequence[tuple[int, int]], lo: int, hi: int, fanout: int
) -> list[tuple[int, int]]:
    """Merges within the block being filled (``ranges[lo:hi]``), as a stack of runs:
    each run is a contiguous range of segments that becomes one segment."""
    stack: list[list[int]] = []  # [first index, end index, events, level]
    for k in range(lo, hi):
        n = ranges[k][1] - ranges[k][0] + 1
        stack.append([k, k + 1, n, level(n, fanout)])
        while True:
            top_level = stack[-1][3]
            # A newcomer bigger than the runs before it absorbs them.
            m = len(stack) - 1
            while m > 0 and stack[m - 1][3] < top_level:
                m -= 1
            if m == len(stack) - 1:
                # FANOUT runs of one level become one run, a level up.
                m = len(stack) - fanout
                if m < 0 or any(stack[x][3] != top_level for x in range(m, len(stack))):
                    break
            events = sum(run[2] for run in stack[m:])
            stack[m:] = [[stack[m][0], stack[-1][1], events, level(events, fanout)]]
    return [(a, b) for a, b, _, _ in stack if b - a > 1]


def max_segments(size: int, fanout: int = FANOUT, top: int = TOP) -> int:
    """The most live segments a ledger of ``size`` events can hold once its merges ran,
    however its appends were sized: a segment per complete block, and in the block
    being filled at most ``fanout - 1`` per level up to that block's level."""
    full, partial = divmod(size, top)
    if partial == 0:
        return full
    return full + (fanout - 1) * (level(partial, fanout) + 1)
