"""Sequence bookkeeping: the cost of ``SeqTracker.first_time`` and of the persisted state, with and without a hole.

    .venv/bin/python tests/benchmarks/bench_seq.py [--calls 1000] [--repeats 5] [--later 5000 20000 60000]

For one (probe, origin), in the state of each case:

- no hole: every seq so far arrived in order;
- one hole, then N later seqs (seq 2 never came; 1 and 3 .. N + 2 did), for each N of ``--later``;

it times ``--calls`` more ``first_time`` calls, each the next seq in order (the common case: live data keep
coming while the hole stays open; N + calls stays under the 65,536 window, so nothing is given up), best of
``--repeats``, and prints µs per call. It also prints the bytes of the persisted ``above`` column of that
probe's row (what ``snapshot()`` writes for every probe with new data, every round) and the µs to make it.

Each figure is given for the collector's tracker (ranges: ``collector.ingest.SeqTracker``) and for a baseline
measured in the same run: the set-based bookkeeping it replaced (``SetSeqTracker`` below, copied from
collector/ingest.py before the change), with the ratio new/old. The baseline's state with a hole is built
directly (the set of the seqs above the watermark): through its own ``first_time`` it would take minutes.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from collector.ingest import SeqTracker  # noqa: E402

PROBE, ORIGIN, WINDOW = "z1/p1", 1, 65536


# ------------------------------------------------------------------ baseline: the set-based bookkeeping, as it was
@dataclass
class SetProbeSeq:
    """Baseline: the seqs seen above the watermark as a set (collector/ingest.py's ProbeSeq before ranges)."""

    watermark: int = 0
    lost: int = 0
    above: set[int] = field(default_factory=set)


def _set_advance(st: SetProbeSeq) -> None:
    while st.watermark + 1 in st.above:
        st.watermark += 1
        st.above.discard(st.watermark)


class SetSeqTracker:
    """Baseline: ``first_time`` and the persisted ``above`` of the set-based SeqTracker, unchanged."""

    def __init__(self, window: int = WINDOW) -> None:
        self.window = window
        self.state: dict[tuple[str, int], SetProbeSeq] = {}
        self._dirty: set[tuple[str, int]] = set()

    def first_time(self, probe: str, origin: int, seq: int) -> bool:
        key = (probe, origin)
        st = self.state.get(key)
        if st is None:
            st = self.state[key] = SetProbeSeq()
        if seq <= st.watermark or seq in st.above:
            return False
        self._dirty.add(key)
        st.above.add(seq)
        _set_advance(st)
        top = max(st.above) if st.above else st.watermark
        if top - st.watermark > self.window:
            floor = top - self.window
            missing = floor - st.watermark - sum(1 for s in st.above if s <= floor)
            st.lost += missing
            st.above = {s for s in st.above if s > floor}
            st.watermark = floor
            _set_advance(st)
        return True

    def above_json(self, probe: str, origin: int) -> str:
        return json.dumps(sorted(self.state[(probe, origin)].above))  # what its snapshot() wrote per row


# ------------------------------------------------------------------------------------------------ the cases
def new_tracker(later: int | None) -> tuple[SeqTracker, int]:
    """Return the tracker in the case's state (``later`` None: no hole), and the next seq."""
    t = SeqTracker(sqlite3.connect(":memory:"), window=WINDOW)
    seqs = range(1, 1001) if later is None else [1, *range(3, later + 3)]
    for s in seqs:
        t.first_time(PROBE, ORIGIN, s)
    return t, seqs[-1] + 1


def old_tracker(later: int | None) -> tuple[SetSeqTracker, int]:
    t = SetSeqTracker(WINDOW)
    if later is None:
        t.state[(PROBE, ORIGIN)] = SetProbeSeq(watermark=1000)
        return t, 1001
    t.state[(PROBE, ORIGIN)] = SetProbeSeq(watermark=1, above=set(range(3, later + 3)))
    return t, later + 3


def per_call_us(first_time: Callable[[str, int, int], bool], start: int, calls: int) -> float:
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter()
        for s in range(start, start + calls):
            first_time(PROBE, ORIGIN, s)
        return (time.perf_counter() - t0) / calls * 1e6
    finally:
        gc.enable()


def timed_us(fn: Callable[[], object], runs: int = 20) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000, help="first_time calls timed per case")
    parser.add_argument("--repeats", type=int, default=5, help="best of this many runs, each from a fresh state")
    parser.add_argument("--later", type=int, nargs="+", default=[5000, 20_000, 60_000],
                        help="seqs that arrive after the hole")
    args = parser.parse_args()
    if max(args.later) + args.calls > WINDOW:
        parser.error(f"--later + --calls must stay under the window ({WINDOW}), else seqs are given up")

    print(f"old: the set-based bookkeeping; new: ranges (collector.ingest.SeqTracker). first_time: best of "
          f"{args.repeats} x {args.calls:,} calls in order")
    print(f"{'':<28}{'first_time, µs per call':^30}   {'above column, bytes':^25}   {'µs to make it':^18}")
    print(f"{'case':<28}{'old':>11}{'new':>10}{'new/old':>9}   {'old':>10}{'new':>6}{'new/old':>9}"
          f"   {'old':>11}{'new':>7}")
    for later in [None, *args.later]:
        old_us = new_us = float("inf")
        for _ in range(args.repeats):
            old, start = old_tracker(later)
            old_us = min(old_us, per_call_us(old.first_time, start, args.calls))
            new, start = new_tracker(later)
            new_us = min(new_us, per_call_us(new.first_time, start, args.calls))
        old, _ = old_tracker(later)  # the state of the case, not the one after the timed calls
        new, _ = new_tracker(later)
        old_json = old.above_json(PROBE, ORIGIN)
        (row,), _ = new.snapshot()  # the row this probe's state is written as
        new_json = row[4]
        old_row_us = timed_us(functools.partial(old.above_json, PROBE, ORIGIN))
        new_row_us = timed_us(new.state[(PROBE, ORIGIN)].above.to_json)
        case = "no hole" if later is None else f"one hole, then {later:,} seqs"
        print(f"{case:<28}{old_us:>11.2f}{new_us:>10.2f}{new_us / old_us:>9.2g}   {len(old_json):>10,}"
              f"{len(new_json):>6,}{len(new_json) / len(old_json):>9.2g}   {old_row_us:>11.1f}{new_row_us:>7.1f}")


if __name__ == "__main__":
    main()
