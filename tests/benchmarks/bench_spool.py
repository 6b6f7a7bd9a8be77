"""Probe spool: write rate, and how fast a day's backlog drains to the broker once the uplink is back.

    .venv/bin/python tests/benchmarks/bench_spool.py [--hours 24] [--devices 50] [--modems 4] [--interval 30]

1. Write rate: ``Spool.append`` of a 20-interface SNMP poll, each its own durable transaction (fsync), as
   the agent does it; and the same through a baseline of plain SQLite inserts of the same bytes in one
   transaction each, measured in the same run.
   Then the same appends to a spool at its bound (the oldest dropped at every put) against a spool holding as
   much below its bound, in the same run. Goal: a put at the bound within 2x of a put below it.
2. A day's backlog of one probe (by default 50 devices and 4 modems every 30 s = 155,520 batches) is
   built in the spool file (bulk inserts of the real payloads), then the real ``Uplink`` drains it to a real
   mosquitto (QoS 1, deleted from the spool on PUBACK), timed until the spool is empty. Goal: under a minute.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from agent.spool import Spool  # noqa: E402
from agent.uplink import Uplink  # noqa: E402
from tests import services  # noqa: E402
from tests.benchmarks import done_with  # noqa: E402
from zonewatch import wire  # noqa: E402
from zonewatch.mqtt import MqttConfig  # noqa: E402


def device_poll(device: int, t_ns: int) -> tuple[wire.Sample, ...]:
    """Return what one SNMP poll of a 20-port device gives."""
    dev = f"dev-{device:02d}"
    samples = [wire.Sample("device", {"device": dev, "site": "site-a"}, {"up": True, "uptime_s": 12345.6}, t_ns)]
    for port in range(20):
        samples.append(wire.Sample("interface", {"device": dev, "ifname": f"ge-0/0/{port}"},
                                   {"oper_up": True, "admin_up": True, "in_octets": 10**11 + port,
                                    "out_octets": 10**10 + port, "in_errors": 0, "out_errors": 0,
                                    "speed_mbps": 1000}, t_ns))
    return tuple(samples)


def modem_poll(modem: int, t_ns: int) -> tuple[wire.Sample, ...]:
    return (wire.Sample("cellular", {"carrier": "452-04", "modem": f"m{modem}", "rat": "lte", "cell": "5F1EA15"},
                        {"rsrp_dbm": -95, "rsrq_db": -10.5, "rssi_dbm": -77, "registered": True}, t_ns),)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=24)
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--modems", type=int, default=4)
    parser.add_argument("--interval", type=float, default=30)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="zw-bench-spool-"))
    now = time.time_ns()

    # 1. write rate, against plain SQLite inserts of the same payloads
    spool = Spool(work / "rate.db", "bench", "p1", max_bytes=2**40)
    n = 2000
    start = time.perf_counter()
    for i in range(n):
        spool.append("data", now, samples=device_poll(i % 50, now))
    spool_rate = n / (time.perf_counter() - start)
    payload = spool.pending(1)[0].payload
    spool.close()
    raw = sqlite3.connect(work / "raw.db", isolation_level=None)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("PRAGMA synchronous=FULL")
    raw.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, payload BLOB)")
    start = time.perf_counter()
    for _ in range(n):
        raw.execute("BEGIN")
        raw.execute("INSERT INTO t(payload) VALUES (?)", (payload,))
        raw.execute("COMMIT")
    raw_rate = n / (time.perf_counter() - start)
    raw.close()
    print(f"spool append (encode + durable commit), {len(payload)} B batches: {spool_rate:8,.0f} batches/s")
    print(f"baseline: plain SQLite insert + commit of the same bytes:       {raw_rate:8,.0f} batches/s "
          f"(spool at {spool_rate / raw_rate:.2f} of it)")
    # 1b. the same appends at the spool's bound (an outage longer than it holds: the oldest go at every put),
    # against appends below it, in the same run; the spool is filled to its bound first with the real payloads
    bound = 64 * 2**20
    rates = {}
    for limit in (2**40, bound):   # below its bound, then at it
        spool = Spool(work / f"bound-{limit}.db", "bench", "p1", max_bytes=limit)
        fill = [("data", payload)] * (bound // len(payload))
        spool.queue.put_many(fill, now, range(1, len(fill) + 1))
        spool.queue.set_meta("seq", len(fill))
        start = time.perf_counter()
        for i in range(n):
            spool.append("data", now, samples=device_poll(i % 50, now))
        rates[limit] = n / (time.perf_counter() - start)
        dropped = spool.dropped()
        spool.close()
    below, at = rates[2**40], rates[bound]
    print(f"spool append below its bound ({bound >> 20} MiB held): {below:8,.0f} batches/s, {1e3 / below:.2f} ms a put")
    print(f"spool append at its bound ({bound >> 20} MiB, {dropped:,} oldest dropped): {at:8,.0f} batches/s, "
          f"{1e3 / at:.2f} ms a put: {below / at:.2f}x the cost of a put below it "
          f"(goal <= 2x: {'PASS' if below / at <= 2 else 'FAIL'})")
    polls_per_s = (args.devices + args.modems) / args.interval
    print(f"a probe polling {args.devices} devices and {args.modems} modems every {args.interval:g} s appends "
          f"{polls_per_s:.1f} batches/s: {spool_rate / polls_per_s:,.0f}x headroom")

    # 2. a day's backlog, drained through the real uplink
    rounds = int(args.hours * 3600 / args.interval)
    spool = Spool(work / "day.db", "bench", "p1", max_bytes=2**40, max_age_s=30 * 86400)
    q = spool.queue
    start = time.perf_counter()
    seq = 0
    for r in range(rounds):
        t = now - int((rounds - r) * args.interval * 1e9)
        items, ids = [], []
        for source in range(args.devices + args.modems):
            seq += 1
            samples = device_poll(source, t) if source < args.devices else modem_poll(source - args.devices, t)
            items.append(("data", wire.encode(wire.Batch("bench", "p1", seq, t, samples, origin=spool.origin))))
            ids.append(seq)
        q.put_many(items, t, ids)
    q.set_meta("seq", seq)
    depth, size = spool.depth(), spool.size_bytes()
    print(f"backlog of {args.hours:g} h: {depth:,} batches, {size / 2**20:,.0f} MiB "
          f"(built in {time.perf_counter() - start:.0f} s)")

    broker = services.start_mosquitto(work / "mosquitto")
    try:
        uplink = Uplink(MqttConfig(port=broker.port), spool, "bench", "p1", max_inflight=500)
        uplink.start()
        services.wait_for(lambda: uplink.connected, 10, "the uplink to connect")
        start = time.perf_counter()
        cpu0 = time.process_time()
        while spool.depth():
            if not uplink.pump(time.time_ns()):
                time.sleep(0.001)
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu0
        uplink.stop()
        print(f"drained {depth:,} batches ({size / 2**20:,.0f} MiB) to mosquitto in {elapsed:.1f} s: "
              f"{depth / elapsed:,.0f} batches/s, {size / 2**20 / elapsed:.0f} MiB/s, agent CPU {cpu:.1f} s")
        print(f"goal: a day's backlog in under 60 s: {'PASS' if elapsed < 60 else 'FAIL'} ({elapsed:.1f} s)")
    finally:
        broker.stop()
        spool.close()
        done_with(work)   # a day's spool: some 160 MB


if __name__ == "__main__":
    main()
