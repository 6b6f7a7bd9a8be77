"""Collector ingest throughput, end to end, against the direct-write limit measured in the same run.

    .venv/bin/python tests/benchmarks/bench_ingest.py [--messages 4000] [--samples-per-message 100] [--alerting]

What it does (real mosquitto and VictoriaMetrics from tests/services.py, on free loopback ports):

1. Builds the batches a busy zone sends: ``interface`` samples (4 tags, 7 fields), ``samples-per-message``
   per MQTT message.
2. Baseline: encodes the same samples as Influx line protocol and POSTs them straight to VictoriaMetrics in
   5,000-line requests with the standard library's HTTP client: the limit of this machine and this VM,
   independent of any client library.
3. Queues every message at the broker for the collector's persistent session (collector not running),
   then starts ``zonewatch-collector run`` and measures, until its /metrics says every sample is written:
   wall time, and the collector process's own CPU time (so "samples per collector CPU-second" is what one
   collector core sustains). /metrics is polled rarely while far from done (each scrape is CPU of the
   collector's, not ingest), every 20 ms near the end.

Prints samples/s for each, and the ratios against the goals: at least 100,000 samples/s on one collector
core, and at least half the direct-write rate.

``--alerting`` gives the collector an inventory of the benchmark's zone (its 20 probes, 500 devices, one
carrier that is notified over MQTT on the local broker only), so the alert engine runs beside the ingest and
decodes every message again in its own thread: the cost of ingest in a collector that also alerts.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from agent import wire  # noqa: E402
from collector.storage.lineproto import Encoder  # noqa: E402
from tests import services  # noqa: E402


def make_batches(messages: int, per_message: int, base_ns: int) -> list[wire.Batch]:
    """Return ``messages`` batches of interface samples with distinct series and times."""
    out = []
    for m in range(messages):
        samples = []
        for i in range(per_message):
            n = m * per_message + i
            samples.append(wire.Sample(
                "interface", {"device": f"dev-{n % 500:03d}", "ifname": f"ge-0/0/{n % 48}", "site": "site-a",
                              "link": f"link-{n % 48}"},
                {"oper_up": True, "admin_up": True, "in_octets": 10**12 + n, "out_octets": 5 * 10**11 + n,
                 "in_errors": n % 7, "out_errors": 0, "speed_mbps": 1000},
                base_ns + (n // 24000) * 10**9))  # 500 devices x 48 ports: a new second every 24,000 samples
        out.append(wire.Batch("bench-zone", f"p{m % 20}", m // 20 + 1, base_ns, tuple(samples)))
    return out


def bench_inventory(probes: int, devices: int) -> str:
    """Return an inventory of the benchmark's zone; its one carrier hears over MQTT (this machine's broker)."""
    lines = ["zones:", "  bench-zone: {name: Benchmark zone, areas: [a]}",
             "carriers:", "  bench-carrier: {plmn: 452-04, name: Bench, notify: [{type: mqtt, topic: bench/alerts}]}",
             "sites:", "  site-a: {zone: bench-zone, area: a, kind: bts, owners: [bench-carrier]}", "devices:"]
    lines += [f"  dev-{n:03d}: {{site: site-a, kind: switch, owners: [bench-carrier], probe: p{n % probes}}}"
              for n in range(devices)]
    lines += ["probes:"] + [f"  p{n}: {{zone: bench-zone, area: a}}" for n in range(probes)]
    return "\n".join(lines) + "\n"


def cpu_seconds(pid: int) -> float:
    """Return user+system CPU seconds of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[str, float]:
    """Return CPU seconds per thread name of a process (the collector names its threads: collector.threads)."""
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        name = name if name.startswith("zw-") else "other (paho, main, /metrics)"
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def direct_write(url: str, batches: list[wire.Batch]) -> float:
    """POST the batches' line protocol straight to VictoriaMetrics; return samples/s."""
    lines = Encoder().encode(batches)
    bodies = ["\n".join(lines[i:i + 5000]).encode() for i in range(0, len(lines), 5000)]
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    start = time.perf_counter()
    for body in bodies:
        conn.request("POST", "/api/v2/write?precision=ns", body)
        resp = conn.getresponse()
        resp.read()
        if resp.status >= 300:
            raise SystemExit(f"direct write failed: HTTP {resp.status}")
    elapsed = time.perf_counter() - start
    conn.close()
    return len(lines) / elapsed


def written(metrics_url: str) -> float:
    with urllib.request.urlopen(metrics_url, timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("zonewatch_storage_written_samples_total"):
                return float(line.split()[-1])
    return 0.0


def wait_written(metrics_url: str, total: int, start: float, timeout: float = 600) -> float:
    """Return the time at which /metrics first says ``total`` samples are written.

    A scrape costs the collector CPU (the whole exposition, in its process), so it is polled rarely while
    far from done: the next poll comes after half the time the rate so far says is left, at least 20 ms
    and at most 1 s later. About a dozen scrapes in all; the end is seen within about 20 ms.
    """
    while True:
        done = written(metrics_url)
        now = time.perf_counter()
        if done >= total:
            return now
        if now - start > timeout:
            raise SystemExit(f"the collector wrote {done:.0f} of {total} samples in {timeout:.0f} s")
        left = (total - done) * (now - start) / done if done else 0.5
        time.sleep(min(max(left / 2, 0.02), 1.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--samples-per-message", type=int, default=100)
    parser.add_argument("--alerting", action="store_true", help="run the alert engine beside the ingest")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, queue, VM data)")
    args = parser.parse_args()
    total = args.messages * args.samples_per_message
    work = Path(tempfile.mkdtemp(prefix="zw-bench-ingest-"))
    broker = services.start_mosquitto(work / "mosquitto")   # the queue limits render-mosquitto writes
    vm_direct = services.start_victoriametrics(work / "vm-direct")
    vm = services.start_victoriametrics(work / "vm")
    collector = None
    try:
        base = (time.time_ns() // 10**9 - 3600) * 10**9
        batches = make_batches(args.messages, args.samples_per_message, base)
        payloads = [(wire.topic(b.zone, b.probe, "data"), wire.encode(b)) for b in batches]
        print(f"{args.messages} messages x {args.samples_per_message} samples = {total} samples "
              f"({sum(len(p) for _, p in payloads) / 2**20:.1f} MiB of payload)")

        direct = direct_write(vm_direct.url, batches)
        print(f"direct line-protocol POST to VictoriaMetrics: {direct:12,.0f} samples/s  (the limit)")

        http_port = services.free_port()
        cfg = work / "collector.yaml"
        cfg.write_text(f"mqtt: {{port: {broker.port}, client_id: zw-bench}}\n"
                       f"storage: {{type: victoriametrics, url: '{vm.url}'}}\n"
                       f"queue: {{path: '{work / 'intake.db'}'}}\nhttp: {{listen: '127.0.0.1:{http_port}'}}\n")
        if args.alerting:
            (work / "inventory.yaml").write_text(bench_inventory(20, 500))
            with cfg.open("a") as fh:
                fh.write(f"inventory: '{work / 'inventory.yaml'}'\n")
        log = work / "collector" / "collector.log"
        collector = services.start_zonewatch("collector", ["--log-level", "info", "-c", str(cfg), "run"],
                                             work / "collector",
                                             ready=lambda: "collector subscribed" in log.read_text())
        collector.stop()  # the session exists now; the broker queues for it while the collector is away

        pub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="bench-pub",
                          protocol=mqtt.MQTTv5)
        pub.max_inflight_messages_set(1000)
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        infos = [pub.publish(topic, body, qos=1) for topic, body in payloads]
        for info in infos:
            info.wait_for_publish(60)
        pub.disconnect()
        pub.loop_stop()

        # Timed from the moment the collector has subscribed (its start-up, imports included, is not ingest).
        seen = log.read_text().count("collector subscribed")
        collector = services.start_zonewatch("collector", ["--log-level", "info", "-c", str(cfg), "run"],
                                             work / "collector", ready=lambda: log.read_text().count(
                                                 "collector subscribed") > seen)
        start = time.perf_counter()
        cpu0 = cpu_seconds(collector.pid)
        threads0 = thread_cpu(collector.pid)
        metrics_url = f"http://127.0.0.1:{http_port}/metrics"
        elapsed = wait_written(metrics_url, total, start) - start
        cpu = cpu_seconds(collector.pid) - cpu0
        threads = thread_cpu(collector.pid)
        wall_rate, cpu_rate = total / elapsed, total / cpu
        print(f"collector, MQTT in -> VictoriaMetrics written: {wall_rate:12,.0f} samples/s wall ({elapsed:.2f} s)")
        print(f"collector per CPU-second of its process:      {cpu_rate:12,.0f} samples/s ({cpu:.2f} CPU-s)")
        used = {name: seconds - threads0.get(name, 0.0) for name, seconds in threads.items()}
        for name, seconds in sorted(used.items(), key=lambda kv: -kv[1]):
            print(f"    {name:<30} {seconds:5.2f} CPU-s  {seconds / total * 1e6:4.1f} µs a sample")
        print(f"ratio to the direct-write limit: {wall_rate / direct:.2f} (goal >= 0.5: "
              f"{'PASS' if wall_rate / direct >= 0.5 else 'FAIL'})")
        print(f"one collector core: {cpu_rate:,.0f} samples/s (goal >= 100,000: "
              f"{'PASS' if cpu_rate >= 100_000 else 'FAIL'})")
    finally:
        for svc in (collector, broker, vm, vm_direct):
            if svc is not None:
                svc.stop()
        if args.keep:
            print(f"kept {work} (logs, queue, VictoriaMetrics data)")
        else:
            shutil.rmtree(work, ignore_errors=True)  # a run leaves some 400 MB of queues and VM data


if __name__ == "__main__":
    main()
