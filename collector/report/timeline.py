"""Pure time accounting: stored points become held intervals, which combine and add up.

A point holds its value from its own time until the next point of the series. The series' usual spacing
(the median gap between its points) bounds that: across a gap longer than twice the usual spacing (the
probe went quiet, the modem lost the cell and stopped reporting RSRP) a point holds for the usual spacing
only, and so does the last point, so a series that stops is "no data" from then on, not its last value
forever. No point holds longer than ``max_gap``. Intervals are half-open [start, end) in nanoseconds and
clipped to the period.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

__all__ = ["Interval", "hold", "combine", "durations", "episodes", "total"]


class Interval(NamedTuple):
    """A value held over [start_ns, end_ns)."""

    start_ns: int
    end_ns: int
    value: float


def hold(points: Iterable[tuple[int, float]], start_ns: int, end_ns: int, max_gap_ns: int,
         min_hold_ns: int = 0) -> list[Interval]:
    """Return the intervals over which each point's value holds, within [start_ns, end_ns).

    ``points`` are (time_ns, value) in any order; two points at the same time keep the larger value (the
    worse state for levels and states, which is what a report must not hide). ``min_hold_ns``: the usual
    spacing is at least this (series written on change and refreshed every so often, as the collector's
    ``coverage`` and ``redundancy`` are, have short gaps around changes and long ones in between).
    """
    merged: dict[int, float] = {}
    for t, v in points:
        merged[t] = max(v, merged[t]) if t in merged else v
    times = sorted(merged)
    if not times:
        return []
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    usual = min(max(int(statistics.median(gaps)), min_hold_ns), max_gap_ns) if gaps else max_gap_ns
    out: list[Interval] = []
    for i, t in enumerate(times):
        gap = times[i + 1] - t if i + 1 < len(times) else None
        until = t + (gap if gap is not None and gap <= 2 * usual and gap <= max_gap_ns else usual)
        lo, hi = max(t, start_ns), min(until, end_ns)
        if lo < hi:
            value = merged[t]
            if out and out[-1].end_ns == lo and out[-1].value == value:
                out[-1] = Interval(out[-1].start_ns, hi, value)
            else:
                out.append(Interval(lo, hi, value))
    return out


def _value_at(timeline: Sequence[Interval], index: int, t: int) -> tuple[float | None, int]:
    """Return the value of ``timeline`` at ``t`` (None: no data) and the index to resume from."""
    while index < len(timeline) and timeline[index].end_ns <= t:
        index += 1
    if index < len(timeline) and timeline[index].start_ns <= t:
        return timeline[index].value, index
    return None, index


def combine(timelines: Sequence[Sequence[Interval]],
            rule: Callable[[list[float | None]], float | None]) -> list[Interval]:
    """Return the timeline whose value at each moment is ``rule`` of the others' values (None: no data)."""
    edges = sorted({t for tl in timelines for iv in tl for t in (iv.start_ns, iv.end_ns)})
    positions = [0] * len(timelines)
    out: list[Interval] = []
    for lo, hi in zip(edges, edges[1:], strict=False):
        values: list[float | None] = []
        for k, tl in enumerate(timelines):
            value, positions[k] = _value_at(tl, positions[k], lo)
            values.append(value)
        result = rule(values)
        if result is None:
            continue
        if out and out[-1].end_ns == lo and out[-1].value == result:
            out[-1] = Interval(out[-1].start_ns, hi, result)
        else:
            out.append(Interval(lo, hi, result))
    return out


def durations(timeline: Iterable[Interval]) -> dict[float, int]:
    """Return how long (ns) the timeline held each value."""
    out: dict[float, int] = {}
    for iv in timeline:
        out[iv.value] = out.get(iv.value, 0) + iv.end_ns - iv.start_ns
    return out


def total(timeline: Iterable[Interval], when: Callable[[float], bool] = lambda v: True) -> int:
    """Return how long (ns) the timeline held a value for which ``when`` is true."""
    return sum(iv.end_ns - iv.start_ns for iv in timeline if when(iv.value))


def episodes(timeline: Iterable[Interval], when: Callable[[float], bool]) -> list[tuple[int, int]]:
    """Return the [start, end) spans over which ``when`` held without a break (no data is a break)."""
    out: list[tuple[int, int]] = []
    for iv in timeline:
        if not when(iv.value):
            continue
        if out and out[-1][1] == iv.start_ns:
            out[-1] = (out[-1][0], iv.end_ns)
        else:
            out.append((iv.start_ns, iv.end_ns))
    return out
