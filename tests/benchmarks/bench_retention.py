"""SQLite retention: how long one pruning step holds the store, against one ingest write in the same run.

    .venv/bin/python tests/benchmarks/bench_retention.py [--series 2000] [--points 1000]

What it does (no services; a file in a temporary folder):

1. Fills a store with ``series`` interface series of two fields, ``points`` points each a minute apart (4
   million points by default), through ``SqliteWriter.write`` as the collector writes them.
2. Baseline: the time of one ingest write of an agent-shaped batch (20 interface samples, 7 fields) into that
   file, the median of 50.
3. Runs a pruning pass that deletes the older half (``Pruner.run_pass``, the collector's default step sizes),
   then a pass that finds nothing to delete (what every later hourly pass costs), timing every step.

A write waits behind at most one step (the writer's lock is taken per step), so the goal is a step's worst case
within a few ingest writes. Prints the steps' median and maximum, and their ratio to the baseline write.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from collector.storage import SqliteStorage  # noqa: E402
from collector.storage.retention import Pruner  # noqa: E402
from collector.storage.sqlite import SqliteWriter  # noqa: E402
from zonewatch import wire  # noqa: E402

T0 = 1_764_289_990_000_000_000
MINUTE = 60_000_000_000


def fill(writer: SqliteWriter, series: int, points: int) -> None:
    devices = max(1, series // 50)
    for i in range(points):
        samples = tuple(wire.Sample("interface", {"device": f"d{d}", "ifname": f"p{p}"},
                                    {"in_octets": i * 1000 + p, "oper_up": True}, T0 + i * MINUTE)
                        for d in range(devices) for p in range(50))
        writer.write([wire.Batch(zone="z", probe="p1", seq=i + 1, sent_ns=T0, samples=samples)])


def timed_pass(pruner: Pruner, now_ns: int) -> tuple[int, list[float]]:
    """Run one pass step by step, as run_pass does, timing each step."""
    cutoff = now_ns - pruner.retention_ns
    start: tuple[int, str] | None = None
    steps: list[float] = []
    deleted = 0
    while True:
        began = time.perf_counter()
        n, start = pruner.writer.prune(cutoff, start, pruner.step_rows, pruner.step_pairs)
        steps.append(time.perf_counter() - began)
        deleted += n
        if start is None:
            return deleted, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=2000)
    parser.add_argument("--points", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="zw-bench-retention-") as tmp:
        writer = SqliteWriter(SqliteStorage(type="sqlite", path=str(Path(tmp) / "zw.db")))
        began = time.perf_counter()
        fill(writer, args.series, args.points)
        total = (args.series // 50) * 50 * args.points * 2
        print(f"store: {total:,} points in {args.series // 50 * 50:,} series x 2 fields, "
              f"filled in {time.perf_counter() - began:.1f} s")
        writes = []
        for i in range(50):
            batch = wire.Batch(zone="z", probe="p2", seq=i + 1, sent_ns=T0, samples=tuple(
                wire.Sample("interface", {"device": "w", "ifname": f"p{p}"},
                            {"in_octets": i, "out_octets": i, "in_errors": 0, "out_errors": 0, "in_discards": 0,
                             "oper_up": True, "admin_up": True}, T0 + i * MINUTE) for p in range(20)))
            w0 = time.perf_counter()
            writer.write([batch])
            writes.append(time.perf_counter() - w0)
        base = statistics.median(writes)
        print(f"baseline, one agent-shaped ingest write (20 samples):  {base * 1e3:6.2f} ms (median of 50)")
        pruner = Pruner(writer, retention_s=(args.points // 2) * 60, every_s=3600)
        now = T0 + args.points * MINUTE
        for label in ("pass deleting the older half", "pass with nothing to delete"):
            began = time.perf_counter()
            deleted, steps = timed_pass(pruner, now)
            wall = time.perf_counter() - began
            print(f"{label}: {deleted:,} points in {wall:.2f} s, {len(steps):,} steps; step median "
                  f"{statistics.median(steps) * 1e3:.2f} ms ({statistics.median(steps) / base:.1f}x the write), "
                  f"max {max(steps) * 1e3:.2f} ms ({max(steps) / base:.1f}x the write)")
        writer.close()


if __name__ == "__main__":
    main()
