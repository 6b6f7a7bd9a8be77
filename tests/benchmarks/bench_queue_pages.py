"""The collector's intake queue with SQLite's default pages against ``LARGE_PAGES``, in the same run.

    .venv/bin/python tests/benchmarks/bench_queue_pages.py [--messages 4000] [--rounds 5] [--round 500]

What the intake does with every message, on agent-shaped batches (``bench_ingest.agent_batches``: about 19 samples,
4.8 KiB a message): ``put_many`` of a round (one durable transaction, fsync, as the intake thread commits what
arrived at once), the preparer's read of those entries (``QueueReader.between``) and the committer's delete
(``ack_within``, one transaction). Each page size gets its own new file in a temporary folder; the runs alternate so
that both see the same machine. Prints µs a message for each step and the ratio of the totals.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.benchmarks.bench_ingest import agent_batches  # noqa: E402
from zonewatch import wire  # noqa: E402
from zonewatch.queue import LARGE_PAGES, DiskQueue  # noqa: E402


def one_run(folder: Path, page_size: int | None, payloads: list[tuple[str, bytes]], round_size: int,
            now: int) -> tuple[float, float, float]:
    """Return the seconds spent putting, reading and deleting ``payloads`` in rounds, on a new queue file."""
    name = f"q-{page_size or 'default'}-{time.monotonic_ns()}.db"
    queue = DiskQueue(folder / name, 2**40, 0, page_size=page_size)
    reader = queue.reader()
    put = read = delete = 0.0
    try:
        for start in range(0, len(payloads), round_size):
            chunk = payloads[start:start + round_size]
            t0 = time.perf_counter()
            ids = queue.put_many(chunk, now)
            t1 = time.perf_counter()
            entries = reader.between(None, ids[0] - 1, ids[-1])
            t2 = time.perf_counter()
            queue.begin()
            queue.ack_within([e.id for e in entries])
            queue.commit()
            t3 = time.perf_counter()
            put, read, delete = put + t1 - t0, read + t2 - t1, delete + t3 - t2
    finally:
        reader.close()
        queue.close()
    return put, read, delete


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=5, help="runs of each page size, alternating")
    parser.add_argument("--round", type=int, default=500, help="messages a transaction")
    args = parser.parse_args()
    now = time.time_ns()
    payloads = [(wire.topic(b.zone, b.probe, "data"), wire.encode(b)) for b in agent_batches(args.messages, now)]
    print(f"{len(payloads)} agent-shaped messages, {sum(len(p) for _, p in payloads) / len(payloads):.0f} bytes "
          f"each on average, {args.round} a transaction, {args.rounds} runs of each page size")
    sizes: list[int | None] = [None, LARGE_PAGES]
    totals: dict[int | None, list[float]] = {size: [0.0, 0.0, 0.0] for size in sizes}
    with tempfile.TemporaryDirectory(prefix="zw-queue-pages-") as tmp:
        for _ in range(args.rounds):
            for size in sizes:
                for i, seconds in enumerate(one_run(Path(tmp), size, payloads, args.round, now)):
                    totals[size][i] += seconds
    n = len(payloads) * args.rounds
    for size in sizes:
        put, read, delete = (s / n * 1e6 for s in totals[size])
        label = "SQLite's default (4 KiB)" if size is None else f"LARGE_PAGES ({size // 1024} KiB)"
        print(f"  {label:<26} put {put:5.1f}  read {read:5.1f}  delete {delete:5.1f}  "
              f"total {put + read + delete:5.1f} µs a message")
    base, large = sum(totals[None]), sum(totals[LARGE_PAGES])
    print(f"  large pages cost {large / base:.2f}x the default")


if __name__ == "__main__":
    main()
