"""Collector ingest throughput, end to end, against the direct-write limit measured in the same run.

    .venv/bin/python tests/benchmarks/bench_ingest.py [--shape agent|large|both] [--alerting] [--messages N]
                                                      [--coalesce SECONDS]

What it does (real mosquitto and VictoriaMetrics from tests/services.py, on free loopback ports):

1. Builds the batches a busy zone sends. ``--shape agent`` (what real probes send): per probe and 30 s poll
   round, 56 source polls spread over the round: 50 SNMP polls of one ``device`` sample and 20 ``interface``
   samples, 4 ``cellular`` polls of one sample, 2 self-reports (``probe``); about 19 samples a poll. The agent's
   spool joins a probe's polls of ``--coalesce`` seconds (its ``spool.coalesce``, 5 s by default) in one batch:
   about 170 samples a message; ``--coalesce 0`` sends one batch a poll, as the agent did before.
   ``--shape large``: ``interface`` samples (4 tags, 7 fields), ``--samples-per-message`` (100) a message.
   ``both`` (the default) runs both, and from the two solves the collector's CPU into a cost per message
   and a cost per sample.
2. Baseline: encodes the same samples as Influx line protocol and POSTs them straight to VictoriaMetrics in
   5,000-line requests with the standard library's HTTP client: the limit of this machine and this VM,
   independent of any client library.
3. Queues every message at the broker for the collector's persistent session (collector not running),
   then starts ``zonewatch-collector run`` and measures, until its /metrics says every sample is written:
   wall time, and the collector process's own CPU time (so "samples per collector CPU-second" is what one
   collector core sustains). /metrics is polled rarely while far from done (each scrape is CPU of the
   collector's, not ingest), every 20 ms near the end.

Prints samples/s for each, and the ratios against the goals: at least 100,000 samples/s on one collector
core, and at least half the direct-write rate (large messages); at least 80,000 samples per collector
CPU-second and at most 80 µs of CPU a message beyond the per-sample work (agent-shaped, alerting on). The
floor of the same run: a bare paho subscriber taking the same messages from the broker (QoS 1), its CPU a
message. And the collector's peak RSS (VmHWM).

``--alerting`` gives the collector an inventory of the benchmark's zone (its 20 probes, 500 devices, one
carrier that is notified over MQTT on the local broker only), so the alert engine runs beside the ingest and
judges every message, as the preparer decoded it (or decoded in its own thread while the preparer is held up;
the run says how many each): the cost of ingest in a collector that also alerts.
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from agent.spool import COALESCE_BYTES, COALESCE_ROWS  # noqa: E402
from collector.storage.lineproto import Encoder  # noqa: E402
from tests import services  # noqa: E402
from tests.benchmarks import done_with  # noqa: E402
from zonewatch import wire  # noqa: E402


def make_batches(messages: int, per_message: int, base_ns: int) -> list[wire.Batch]:
    """Return ``messages`` batches of interface samples with distinct series and times."""
    out = []
    for m in range(messages):
        samples = []
        for i in range(per_message):
            n = m * per_message + i
            dev = (m % 20) * 25 + n % 25   # one of its probe's 25 devices (the inventory assigns them so)
            samples.append(wire.Sample(
                "interface", {"device": f"dev-{dev:03d}", "ifname": f"ge-0/0/{n % 48}", "site": "site-a",
                              "link": f"link-{n % 48}"},
                {"oper_up": True, "admin_up": True, "in_octets": 10**12 + n, "out_octets": 5 * 10**11 + n,
                 "in_errors": n % 7, "out_errors": 0, "speed_mbps": 1000},
                base_ns + (n // 24000) * 10**9))  # 500 devices x 48 ports: a new second every 24,000 samples
        out.append(wire.Batch("bench-zone", f"p{m % 20}", m // 20 + 1, base_ns, tuple(samples)))
    return out


def agent_batches(polls: int, base_ns: int, probes: int = 20, coalesce_s: float = 0.0) -> list[wire.Batch]:
    """Return the batches of ``polls`` source polls shaped as the agent sends them (see the module docstring),
    round-robin over ``probes`` probes, each with consecutive seqs. A probe's 56 polls of a round are spread over
    its 30 s. With ``coalesce_s`` (the agent's ``spool.coalesce``), a probe's polls within that long of the first
    of a batch join it, up to the spool's bounds (``agent.spool``): one message every ``coalesce_s``."""
    out: list[wire.Batch] = []
    seqs = [0] * probes
    kinds = ["snmp"] * 50 + ["cellular"] * 4 + ["self"] * 2
    step = 30 * 10**9 // len(kinds)
    for m in range(polls):
        probe, k = m % probes, (m // probes) % len(kinds)
        t = base_ns + (m // (probes * len(kinds))) * 30 * 10**9 + k * step
        if kinds[k] == "snmp":
            dev = f"dev-{probe * 25 + k % 25:03d}"   # one of its 25 devices, each polled every 15 s
            samples = (wire.Sample("device", {"device": dev, "site": "site-a"}, {"up": True, "uptime_s": 1e6 + m}, t),
                       *(wire.Sample("interface", {"device": dev, "ifname": f"GigabitEthernet0/0/{i}"},
                                     {"oper_up": True, "admin_up": True, "in_octets": 10**11 + m, "out_octets": 10**10,
                                      "in_errors": 0, "out_errors": 0, "speed_mbps": 1000}, t) for i in range(20)))
        elif kinds[k] == "cellular":
            samples = (wire.Sample("cellular", {"carrier": "452-04", "modem": f"m{k}", "rat": "lte", "cell": "5F1EA15"},
                                   {"rsrp_dbm": -95, "rsrq_db": -10.5, "sinr_db": 12.0, "rssi_dbm": -70,
                                    "registered": True, "pci": 123}, t),)
        else:
            samples = (wire.Sample("probe", {}, {"up": True, "spool_depth": 0, "rss_mb": 41.0, "cpu_s": 12.5}, t),)
        seqs[probe] += 1
        out.append(wire.Batch("bench-zone", f"p{probe}", seqs[probe], t, samples))
    return coalesced(out, coalesce_s) if coalesce_s else out


def coalesced(batches: list[wire.Batch], coalesce_s: float) -> list[wire.Batch]:
    """Return ``batches`` joined as the agent's spool joins polled data (``agent.spool``): per probe, each batch
    within ``coalesce_s`` of the first of the open one joins it, up to ``COALESCE_ROWS`` samples and
    ``COALESCE_BYTES``; the joined batches get consecutive seqs and go in the order they were opened."""
    window = int(coalesce_s * 1e9)
    groups: dict[str, list[list[wire.Batch]]] = {}
    for batch in batches:
        mine = groups.setdefault(batch.probe, [])
        if mine:
            first, rows = mine[-1][0], sum(len(b.samples) for b in mine[-1])
            if batch.sent_ns - first.sent_ns < window and rows + len(batch.samples) <= COALESCE_ROWS:
                mine[-1].append(batch)
                continue
        mine.append([batch])
    out: list[tuple[int, int, wire.Batch]] = []
    for number, (probe, opened) in enumerate(groups.items()):
        for seq, group in enumerate(opened, 1):
            joined = wire.Batch(group[0].zone, probe, seq, group[0].sent_ns, tuple(s for b in group for s in b.samples))
            assert len(wire.encode(joined)) <= COALESCE_BYTES
            out.append((group[0].sent_ns, number, joined))
    return [batch for _, _, batch in sorted(out, key=lambda o: o[:2])]


FLOOR = """
import sys, time
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
port, mode, want = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
n = 0
def on_message(client, userdata, message):
    global n
    n += 1
props = Properties(PacketTypes.CONNECT)
props.SessionExpiryInterval = 3600
c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="bench-floor", protocol=mqtt.MQTTv5)
c.on_message = on_message
c.connect("127.0.0.1", port, clean_start=False, properties=props)
c.subscribe("zw/v1/+/+/data", 1)
if mode == "subscribe":
    c.loop(2)
    c.disconnect()
    sys.exit(0)
t0 = time.process_time()
while n < want:
    c.loop(1)
print(time.process_time() - t0)
"""


def floor(broker: services.Service, payloads: list[tuple[str, bytes]], work: Path) -> float:
    """Return a bare paho subscriber's CPU seconds a message, taking ``payloads`` queued at the broker (QoS 1)."""
    import subprocess

    script = work / "floor.py"
    script.write_text(FLOOR)
    subprocess.run([sys.executable, str(script), str(broker.port), "subscribe", "0"], check=True, timeout=60)
    publish(broker, payloads, "bench-pub-floor")
    out = subprocess.run([sys.executable, str(script), str(broker.port), "take", str(len(payloads))], check=True,
                         timeout=600, capture_output=True, text=True)
    return float(out.stdout.strip()) / len(payloads)


def publish(broker: services.Service, payloads: list[tuple[str, bytes]], client_id: str) -> None:
    """Publish ``payloads`` at QoS 1 and wait until the broker has every one."""
    pub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    pub.max_inflight_messages_set(1000)
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    infos = [pub.publish(topic, body, qos=1) for topic, body in payloads]
    for info in infos:
        info.wait_for_publish(60)
    pub.disconnect()
    pub.loop_stop()


def peak_rss_mb(pid: int) -> float:
    """Return a process's peak resident set (VmHWM) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def bench_inventory(probes: int, devices: int) -> str:
    """Return an inventory of the benchmark's zone; its one carrier hears over MQTT (this machine's broker)."""
    lines = ["zones:", "  bench-zone: {name: Benchmark zone, areas: [a]}",
             "carriers:", "  bench-carrier: {plmn: 452-04, name: Bench, notify: [{type: mqtt, topic: bench/alerts}]}",
             "sites:", "  site-a: {zone: bench-zone, area: a, kind: bts, owners: [bench-carrier]}", "devices:"]
    per_probe = devices // probes
    lines += [f"  dev-{n:03d}: {{site: site-a, kind: switch, owners: [bench-carrier], probe: p{n // per_probe}}}"
              for n in range(devices)]
    lines += ["probes:"] + [f"  p{n}: {{zone: bench-zone, area: a, modems: [{{name: m50, carrier: bench-carrier}}]}}"
                            for n in range(probes)]
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


def scrape(metrics_url: str, prefix: str) -> dict[str, float]:
    """Return the values of the series in the collector's /metrics whose line starts with ``prefix``, by line."""
    with urllib.request.urlopen(metrics_url, timeout=5) as r:
        return {line.rpartition(" ")[0]: float(line.rpartition(" ")[2])
                for line in r.read().decode().splitlines() if line.startswith(prefix)}


def first_scrape(metrics_url: str, prefix: str, timeout: float = 30) -> dict[str, float]:
    """Return ``scrape`` once /metrics answers (within ``timeout`` seconds)."""
    got: dict[str, float] = {}

    def answered() -> bool:
        got.update(scrape(metrics_url, prefix))
        return True

    services.wait_for(answered, timeout, f"{metrics_url} to answer")
    return got


def written(metrics_url: str) -> float:
    return sum(scrape(metrics_url, "zonewatch_storage_written_samples_total").values())


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


class Run:
    """What one collector run measured."""

    def __init__(self, messages: int, samples: int, wall: float, cpu: float, rss_mb: float,
                 threads: dict[str, float], decoded: dict[str, float], evaluations: tuple[float, float]) -> None:
        self.messages, self.samples, self.wall, self.cpu, self.rss_mb = messages, samples, wall, cpu, rss_mb
        self.threads = threads
        self.decoded = decoded   # data messages the alert engine judged, by who decoded them
        self.evaluations = evaluations   # the alert engine's rule evaluations meanwhile: how many, seconds in all


def run_collector(work: Path, broker: services.Service, vm: services.Service, batches: list[wire.Batch],
                  alerting: bool, name: str) -> Run:
    """Queue ``batches`` for a fresh collector session, start the collector and time it until all is written."""
    total = sum(len(b.samples) for b in batches)
    payloads = [(wire.topic(b.zone, b.probe, "data"), wire.encode(b)) for b in batches]
    http_port = services.free_port()
    cfg = work / f"collector-{name}.yaml"
    cfg.write_text(f"mqtt: {{port: {broker.port}, client_id: zw-bench-{name}}}\n"
                   f"storage: {{type: victoriametrics, url: '{vm.url}'}}\n"
                   f"queue: {{path: '{work / f'intake-{name}.db'}'}}\nhttp: {{listen: '127.0.0.1:{http_port}'}}\n")
    if alerting:
        (work / "inventory.yaml").write_text(bench_inventory(20, 500))
        with cfg.open("a") as fh:
            fh.write(f"inventory: '{work / 'inventory.yaml'}'\n")
    log = work / f"collector-{name}" / "collector.log"
    collector = services.start_zonewatch("collector", ["--log-level", "info", "-c", str(cfg), "run"],
                                         work / f"collector-{name}",
                                         ready=lambda: "collector subscribed" in log.read_text())
    try:
        collector.stop()  # the session exists now; the broker queues for it while the collector is away
        publish(broker, payloads, f"bench-pub-{name}")
        # Timed from the moment the collector has subscribed (its start-up, imports included, is not ingest).
        seen = log.read_text().count("collector subscribed")
        collector = services.start_zonewatch("collector", ["--log-level", "info", "-c", str(cfg), "run"],
                                             work / f"collector-{name}", ready=lambda: log.read_text().count(
                                                 "collector subscribed") > seen)
        # /metrics may start listening just after "collector subscribed"
        before = first_scrape(f"http://127.0.0.1:{http_port}/metrics", "zonewatch_alert_evaluation_seconds_")
        evaluated0 = (before.get("zonewatch_alert_evaluation_seconds_count", 0.0),
                      before.get("zonewatch_alert_evaluation_seconds_sum", 0.0))
        start = time.perf_counter()
        cpu0 = cpu_seconds(collector.pid)
        threads0 = thread_cpu(collector.pid)
        elapsed = wait_written(f"http://127.0.0.1:{http_port}/metrics", total, start) - start
        cpu = cpu_seconds(collector.pid) - cpu0
        threads = {k: v - threads0.get(k, 0.0) for k, v in thread_cpu(collector.pid).items()}
        metrics = f"http://127.0.0.1:{http_port}/metrics"
        decoded = {line.partition('by="')[2].partition('"')[0]: value for line, value in scrape(
            metrics, "zonewatch_alert_decoded_messages_total{").items()}
        evaluated = scrape(metrics, "zonewatch_alert_evaluation_seconds_")
        evaluations = (evaluated.get("zonewatch_alert_evaluation_seconds_count", 0.0) - evaluated0[0],
                       evaluated.get("zonewatch_alert_evaluation_seconds_sum", 0.0) - evaluated0[1])
        return Run(len(batches), total, elapsed, cpu, peak_rss_mb(collector.pid), threads, decoded, evaluations)
    finally:
        collector.stop()


def report(name: str, run: Run, floor_s: float | None = None) -> None:
    print(f"[{name}] {run.messages} messages, {run.samples} samples ({run.samples / run.messages:.1f} a message)")
    print(f"  collector, MQTT in -> VictoriaMetrics written: {run.samples / run.wall:10,.0f} samples/s wall "
          f"({run.wall:.2f} s)")
    print(f"  per CPU-second of the collector process:       {run.samples / run.cpu:10,.0f} samples/s "
          f"({run.cpu:.2f} CPU-s; {run.cpu / run.messages * 1e6:.0f} µs a message)")
    if floor_s is not None:
        print(f"  floor, a bare paho subscriber:                 {floor_s * 1e6:10.0f} µs a message "
              f"(the collector: {run.cpu / run.messages / floor_s:.1f}x)")
    print(f"  peak RSS (VmHWM): {run.rss_mb:.0f} MiB")
    if run.decoded:   # the engine decodes data itself only while the preparer is held up (collector.alerting.engine)
        print("  data the alert engine judged, by who decoded it: "
              + ", ".join(f"{by} {n:,.0f}" for by, n in sorted(run.decoded.items())))
        count, seconds = run.evaluations
        print(f"  rule evaluations meanwhile: {count:.0f}, {seconds:.2f} s of wall time in all, waits for the GIL "
              "included (a rate a second whatever the traffic: part of the alert engine's CPU below)")
    for thread, seconds in sorted(run.threads.items(), key=lambda kv: -kv[1]):
        print(f"      {thread:<30} {seconds:5.2f} CPU-s  {seconds / run.messages * 1e6:6.1f} µs a message")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=["agent", "large", "both"], default="both")
    parser.add_argument("--messages", type=int, default=0, help="messages a run (default: the batches of 20,000 "
                        "polls agent-shaped, 4,000 large)")
    parser.add_argument("--coalesce", type=float, default=5.0, help="seconds of polled data a probe joins in one "
                        "batch (the agent's spool.coalesce; default 5, as the agent's; 0: one batch a poll)")
    parser.add_argument("--samples-per-message", type=int, default=100, help="of the large messages")
    parser.add_argument("--alerting", action="store_true", help="run the alert engine beside the ingest")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, queue, VM data)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="zw-bench-ingest-"))
    broker = services.start_mosquitto(work / "mosquitto")   # the queue limits render-mosquitto writes
    vm_direct = services.start_victoriametrics(work / "vm-direct")
    vm = services.start_victoriametrics(work / "vm")
    try:
        base = (time.time_ns() // 10**9 - 3600) * 10**9
        runs: dict[str, Run] = {}
        if args.shape in ("agent", "both"):
            batches = agent_batches(args.messages or 20_000, base, coalesce_s=args.coalesce)
            payloads = [(wire.topic(b.zone, b.probe, "data"), wire.encode(b)) for b in batches]
            floor_s = floor(broker, payloads, work)
            runs["agent"] = run_collector(work, broker, vm, batches, args.alerting, "agent")
            report(f"agent-shaped, spool.coalesce {args.coalesce:g}s", runs["agent"], floor_s)
            cpu_rate = runs["agent"].samples / runs["agent"].cpu
            print(f"  goal >= 80,000 samples per collector CPU-second: {cpu_rate:,.0f} "
                  f"{'PASS' if cpu_rate >= 80_000 else 'FAIL'}")
        if args.shape in ("large", "both"):
            batches = make_batches(args.messages or 4000, args.samples_per_message, base - 7200 * 10**9)
            direct = direct_write(vm_direct.url, batches)
            runs["large"] = run_collector(work, broker, vm, batches, args.alerting, "large")
            report("large messages", runs["large"])
            run = runs["large"]
            wall_rate, cpu_rate = run.samples / run.wall, run.samples / run.cpu
            print(f"  direct line-protocol POST to VictoriaMetrics: {direct:10,.0f} samples/s (the limit); ratio "
                  f"{wall_rate / direct:.2f} (goal >= 0.5: {'PASS' if wall_rate / direct >= 0.5 else 'FAIL'})")
            print(f"  one collector core: {cpu_rate:,.0f} samples/s (goal >= 100,000: "
                  f"{'PASS' if cpu_rate >= 100_000 else 'FAIL'})")
        if len(runs) == 2:   # cpu = per_message * messages + per_sample * samples, solved from the two runs
            a, b = runs["agent"], runs["large"]
            det = a.messages * b.samples - b.messages * a.samples
            per_message = (a.cpu * b.samples - b.cpu * a.samples) / det
            per_sample = (a.messages * b.cpu - b.messages * a.cpu) / det
            print(f"collector CPU = {per_message * 1e6:.0f} µs a message + {per_sample * 1e6:.2f} µs a sample "
                  f"(goal <= 80 µs a message beyond the per-sample work: "
                  f"{'PASS' if per_message <= 80e-6 else 'FAIL'})")
    finally:
        for svc in (broker, vm, vm_direct):
            svc.stop()
        done_with(work, args.keep)  # a run leaves some 400 MB of queues and VM data


if __name__ == "__main__":
    main()
