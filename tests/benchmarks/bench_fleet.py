"""A fleet's load through a collector outage: nothing lost, alerts ahead of the backlog, lag back, peak RSS.

Real mosquitto (TLS, the rendered ACL and password file, the queue limits ``render-mosquitto`` sizes for
the fleet), VictoriaMetrics and a collector process with alerting on (a webhook for the carrier and for the
NOC, on this machine). ``--probes`` probes (default 200), each its own MQTT user on its own TLS connection,
publish what the agent publishes, ``--rate`` times its real rate (default 10): per 30 s, 56 source polls
(50 SNMP polls of a device and its 20 interfaces, 4 cellular polls, 2 self-reports), the polls of
``--coalesce`` seconds of the probe's time (its ``spool.coalesce``; default 5, as the agent's: 10 polls) in one
batch, or one batch a poll with ``--coalesce 0``; QoS 1, with consecutive seqs; ``--gap-probes`` of them
(default 5) skip 39 seqs between them on purpose. The load runs
``--seconds`` (default 300); the collector is killed (SIGKILL) at ``--kill-at`` (default 150) and started
again ``--down`` seconds later (default 20). Two seconds after the restart, while the backlog drains, a
separate probe sends a linkDown event and then loses its connection (the broker publishes its last will).

Prints:
- polls published and acknowledged by the broker (and the messages that carried them), and stored (one
  ``device``, ``cellular`` or ``probe`` sample per poll, counted in VictoriaMetrics): every one, once;
- seq gaps: injected, and the sum of the probes' last ``seq_gaps``;
- LinkDown and ProbeDown: webhook arrival minus the event's publish time, and the connection's loss;
- the lag (``zonewatch_ingest_lag_seconds``) at the end of the load, and how long after it it was under 5 s;
- the collector's peak RSS (VmHWM) and CPU seconds, before and after the kill.

Goals (issue: the collector under a real fleet's load): nothing lost; alerts from status and events within
1 s of reaching the broker while the backlog drains; lag under 5 s within a minute of the end of the load.
Usage: ``.venv/bin/python tests/benchmarks/bench_fleet.py [--probes 200 --rate 10 --seconds 300 ... --keep]``
(``--keep``: keep the work directory, logs and all; it is removed otherwise).
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import multiprocessing as mp
import signal
import socket
import ssl
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from collector import mosquitto  # noqa: E402
from collector.inventory import Inventory  # noqa: E402
from collector.mosquitto.limits import QueueSizing  # noqa: E402
from collector.mosquitto.listener import ListenerTls, render_listener_options  # noqa: E402
from collector.mosquitto.passwd import render_passwd  # noqa: E402
from tests import services  # noqa: E402
from tests.benchmarks import done_with  # noqa: E402
from tests.benchmarks.bench_ingest import cpu_seconds, peak_rss_mb  # noqa: E402
from tests.tlsbroker import make_ca, make_server_cert, pem_key  # noqa: E402
from zonewatch import wire  # noqa: E402
from zonewatch.strict import load  # noqa: E402

ZONE = "fleet"
CYCLE = ["snmp"] * 50 + ["cellular"] * 4 + ["self"] * 2   # one probe's batches in 30 s, in order
GAPS = [8, 8, 8, 8, 7]                                       # seqs skipped by each gap probe: 39 in all


def password(user: str) -> str:
    return f"{user}-bench-pw"


def inventory(probes: int, hooks: str) -> str:
    lines = [f"zones: {{{ZONE}: {{name: Fleet, areas: [a]}}}}",
             f"carriers: {{vt: {{plmn: 452-04, name: VT, notify: [{{type: webhook, url: '{hooks}/vt'}}]}}}}",
             f"sites: {{s: {{zone: {ZONE}, area: a, owners: [vt]}}}}", "devices:"]
    lines += [f"  d{p}-{k}: {{site: s, owners: [vt], probe: p{p}}}" for p in range(probes) for k in range(25)]
    lines += ["  sw-alert: {site: s, owners: [vt], probe: palert}", "links:",
              "  l-alert: {device: sw-alert, ifname: ge-0/0/1, carriers: [vt]}", "probes:"]
    lines += [f"  p{p}: {{zone: {ZONE}, area: a, modems: [{{name: m, carrier: vt}}]}}" for p in range(probes)]
    lines += [f"  palert: {{zone: {ZONE}, area: a}}"]
    return "\n".join(lines) + "\n"


def poll(probe: int, seq: int, kind: str, k: int, t: int) -> tuple[wire.Sample, ...]:
    """Return the samples of one source poll."""
    if kind == "snmp":
        dev = f"d{probe}-{k % 25}"
        samples = (wire.Sample("device", {"device": dev, "site": "s"}, {"up": True, "uptime_s": 1e6 + seq}, t),
                   *(wire.Sample("interface", {"device": dev, "ifname": f"GigabitEthernet0/0/{i}"},
                                 {"oper_up": True, "admin_up": True, "in_octets": 10**11 + seq, "out_octets": 10**10,
                                  "in_errors": 0, "out_errors": 0, "speed_mbps": 1000}, t) for i in range(20)))
    elif kind == "cellular":
        samples = (wire.Sample("cellular", {"carrier": "452-04", "modem": "m", "rat": "lte", "cell": "5F1EA15"},
                               {"rsrp_dbm": -95, "rsrq_db": -10.5, "sinr_db": 12.0, "rssi_dbm": -70,
                                "registered": True, "pci": 123}, t),)
    else:
        samples = (wire.Sample("probe", {}, {"up": True, "spool_depth": 0, "rss_mb": 41.0, "cpu_s": 12.5}, t),)
    return samples


def client(port: int, ca: str, user: str, will: bool = False) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=user, protocol=mqtt.MQTTv5)
    c.tls_set(ca_certs=ca, cert_reqs=ssl.CERT_REQUIRED)
    c.username_pw_set(user, password(user))
    c.max_inflight_messages_set(100)
    if will:
        c.will_set(wire.topic(ZONE, user, "status"), wire.STATUS_OFFLINE, qos=1, retain=True)
    c.connect("127.0.0.1", port, keepalive=30)
    c.loop_start()
    return c


def polls_a_batch(coalesce_s: float) -> int:
    """Return how many of a probe's polls (one every 30/56 s of its time) the spool joins in one batch."""
    return max(1, math.ceil(coalesce_s / (30.0 / len(CYCLE))))


def publisher(probes: list[int], port: int, ca: str, rate: float, seconds: float, start: float,
              gap_probes: int, joined: int, out: Any) -> None:
    """One process: publish for ``probes`` until ``start + seconds``, ``joined`` polls a batch; put (polls
    published, polls acknowledged, seqs skipped, messages) on ``out``."""
    clients = {p: client(port, ca, f"p{p}") for p in probes}
    every = 30.0 / len(CYCLE) / rate            # seconds between two polls of one probe
    seqs = dict.fromkeys(probes, 0)
    skips = {p: GAPS[p] for p in probes if p < gap_probes}
    held: dict[int, list[wire.Sample]] = {p: [] for p in probes}
    published = skipped = acked = messages = 0
    pending: list[tuple[mqtt.MQTTMessageInfo, int]] = []
    n = 0
    while True:
        due = start + n * every
        now = time.time()
        last = due > start + seconds
        if not last and due > now:
            time.sleep(due - now)
        # The poll's own time, as the agent stamps a poll: a publisher running late sends at once what was due, and
        # two polls of one series stamped in the same millisecond would be one point to VictoriaMetrics
        # (-dedup.minScrapeInterval=1ms), counted here as lost.
        t = int(due * 1e9)
        for p in probes:
            if not last:
                held[p].extend(poll(p, seqs[p] + 1, CYCLE[n % len(CYCLE)], n, t))
            if held[p] and (last or (n + 1) % joined == 0):
                batches = (n + 1) // joined
                if p in skips and batches % 13 == 7 and skips[p] > 0:   # now and then a seq lost, as a dropped
                    seqs[p] += 1                                          # batch would be
                    skips[p] -= 1
                    skipped += 1
                seqs[p] += 1
                b = wire.Batch(ZONE, f"p{p}", seqs[p], t, tuple(held[p]))
                polls = sum(s.measurement != "interface" for s in held[p])   # one device, cellular or probe a poll
                pending.append((clients[p].publish(wire.topic(ZONE, f"p{p}", "data"), wire.encode(b), qos=1), polls))
                published += polls
                messages += 1
                held[p] = []
        if last:
            break
        n += 1
        if len(pending) > 2000:
            acked += settle(pending)
    acked += settle(pending)
    for c in clients.values():
        c.disconnect()
        c.loop_stop()
    out.put((published, acked, skipped, messages))


def settle(pending: list[tuple[mqtt.MQTTMessageInfo, int]]) -> int:
    """Wait for the broker's acknowledgements; return how many polls they carried (a client that lost its
    connection loses its messages in flight: the agent's spool would send them again, this publisher counts
    them)."""
    acked = 0
    for info, polls in pending:
        try:
            info.wait_for_publish(60)
        except (RuntimeError, ValueError):
            continue
        acked += polls if info.is_published() else 0
    pending.clear()
    return acked


class Publishers:
    """The publisher processes, stopped (by PID) with the rest on every way out."""

    def __init__(self, procs: list[Any]) -> None:
        self.procs = procs

    def stop(self) -> None:
        for p in self.procs:
            if p.is_alive():
                p.terminate()
            p.join(10)


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--rate", type=float, default=10.0, help="times the agent's real rate")
    parser.add_argument("--coalesce", type=float, default=5.0, help="seconds of a probe's polls in one batch (the "
                        "agent's spool.coalesce, 5 by default; 0: one batch a poll)")
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--kill-at", type=float, default=150.0)
    parser.add_argument("--down", type=float, default=20.0)
    parser.add_argument("--gap-probes", type=int, default=5)
    parser.add_argument("--processes", type=int, default=4, help="publisher processes")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, queues, VM data)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="zw-bench-fleet-"))
    started: list[Any] = []
    try:
        run(args, work, started)
    finally:
        for part in reversed(started):
            part.stop()
        done_with(work, args.keep)   # a 300 s run leaves some 300 MB of queues and VM data


def run(args: argparse.Namespace, work: Path, started: list[Any]) -> None:
    ca, ca_key = make_ca("bench CA")
    now = dt.datetime.now(dt.timezone.utc)
    cert, key = make_server_cert(ca, ca_key, now - dt.timedelta(hours=1), now + dt.timedelta(days=1))
    pki = work / "pki"
    pki.mkdir()
    (pki / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (pki / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (pki / "server.key").write_bytes(pem_key(key))
    hooks = services.WebhookServer().start()
    started.append(hooks)
    text = inventory(args.probes, hooks.url)
    inv = load(Inventory, text)
    broker_dir = work / "mosquitto"
    broker_dir.mkdir()
    (broker_dir / "acl").write_text(mosquitto.render_acl(inv))
    users = ["collector", "collector-urgent", "palert", *(f"p{p}" for p in range(args.probes))]
    passwords = {u: password("collector" if u.startswith("collector") else u) for u in users}
    (broker_dir / "passwd").write_text(render_passwd(passwords))
    tls = ListenerTls(str(pki / "ca.crt"), str(pki / "server.crt"), str(pki / "server.key"))
    options = render_listener_options(str(broker_dir / "passwd"), str(broker_dir / "acl"), tls)
    joined = polls_a_batch(args.coalesce)
    real_rate = len(CYCLE) / 30.0 / joined   # messages a second of one probe
    sizing = QueueSizing(probes=args.probes, rate=real_rate * args.rate, hold_s=max(args.down * 3, 120),
                         message_bytes=4608 * joined)
    broker = services.start_mosquitto(broker_dir, listener_options=options, limits=sizing, autosave_s=1800)
    started.append(broker)
    vm = services.start_victoriametrics(work / "vm")
    started.append(vm)
    (work / "inventory.yaml").write_text(text)
    http_port = services.free_port()
    cfg = work / "collector.yaml"
    cfg.write_text(
        f"mqtt: {{host: 127.0.0.1, port: {broker.port}, username: collector, password: {password('collector')},\n"
        f"       client_id: collector, tls: {{ca_file: '{pki / 'ca.crt'}'}}}}\n"
        f"storage: {{type: victoriametrics, url: '{vm.url}'}}\n"
        f"queue: {{path: '{work / 'intake.db'}'}}\nhttp: {{listen: '127.0.0.1:{http_port}'}}\n"
        "inventory: inventory.yaml\n"
        "alerting:\n  restart_grace: 0s\n  settings: {probe_timeout: 10m}\n"
        f"  delivery: direct\n  noc: [{{type: webhook, url: '{hooks.url}/noc'}}]\n")
    collector = services.start_collector(cfg, work / "collector")
    started.append(collector)
    alert = client(broker.port, str(pki / "ca.crt"), "palert", will=True)
    alert.publish(wire.topic(ZONE, "palert", "status"), wire.STATUS_ONLINE, qos=1, retain=True).wait_for_publish(10)

    out: Any = mp.Queue()
    start = time.time() + 3
    groups = [list(range(args.probes))[i::args.processes] for i in range(args.processes)]
    procs = [mp.Process(target=publisher, args=(g, broker.port, str(pki / "ca.crt"), args.rate, args.seconds,
                                                start, args.gap_probes, joined, out), daemon=True) for g in groups]
    for p in procs:
        p.start()
    started.append(Publishers(procs))
    print(f"{args.probes} probes at {args.rate:g}x their real rate ({args.probes * real_rate * args.rate:,.0f} "
          f"messages/s of {joined} polls) for {args.seconds:.0f} s; collector killed at {args.kill_at:.0f} s for "
          f"{args.down:.0f} s")
    time.sleep(max(0.0, start + args.kill_at - time.time()))
    cpu_before, rss_before = cpu_seconds(collector.pid), peak_rss_mb(collector.pid)
    collector.proc.send_signal(signal.SIGKILL)
    collector.proc.wait()
    time.sleep(args.down)
    collector = services.start_collector(cfg, work / "collector", timeout=300)   # subscribed behind the backlog
    started.append(collector)
    restarted = time.time()
    time.sleep(2)
    event_at = time.time()
    event = wire.Event("link_down", {"device": "sw-alert", "ifname": "ge-0/0/1"}, {"oper_up": False,
                                                                                    "admin_up": True}, time.time_ns())
    alert.publish(wire.topic(ZONE, "palert", "events"),
                  wire.encode(wire.Batch(ZONE, "palert", 1, time.time_ns(), events=(event,))), qos=1)
    time.sleep(2)
    lost_at = time.time()
    alert.socket().shutdown(socket.SHUT_RDWR)   # no DISCONNECT: the broker publishes the last will
    alert.loop_stop()
    totals = [out.get(timeout=args.seconds + 600) for _ in procs]
    for p in procs:
        p.join()
    load_end = time.time()
    lag_at_end = metric(http_port, "zonewatch_ingest_lag_seconds")
    while not metric(http_port, "zonewatch_ingest_lag_seconds") < 5 and time.time() - load_end < 600:
        time.sleep(0.5)
    caught_up = time.time() - load_end
    published = sum(t[0] for t in totals)
    acked = sum(t[1] for t in totals)
    skipped = sum(t[2] for t in totals)
    messages = sum(t[3] for t in totals)
    while metric(http_port, "zonewatch_ingest_queue_depth") > 0:
        time.sleep(0.5)
    time.sleep(2)
    window = f"{int(args.seconds + 600)}s"
    stored = 0
    for name in ("device_up", "cellular_rsrp_dbm", "probe_spool_depth"):
        result = services.vm_query(vm.url, f'sum(count_over_time({name}{{zone="{ZONE}",probe!="palert"}}[{window}]))')
        stored += int(float(result[0]["value"][1])) if result else 0  # type: ignore[index]
    gaps = services.vm_query(vm.url, f'sum(last_over_time(probe_seq_gaps{{zone="{ZONE}"}}[{window}]))')
    reported = int(float(gaps[0]["value"][1])) if gaps else 0  # type: ignore[index]

    def latency(path: str, name: str, since: float) -> str:
        hits = [h for h in hooks.at(path) for a in h.body["alerts"] if a["labels"]["alertname"] == name]
        if not hits:
            return "never"
        wall = hits[0].received - time.monotonic() + time.time()   # the hook's monotonic time as wall time
        return f"{(wall - since) * 1000:.0f} ms"

    print(f"  published {published:,} polls in {messages:,} messages ({acked:,} polls acknowledged by the broker), "
          f"stored {stored:,} "
          f"({stored - published:+,}); seq gaps injected {skipped}, reported {reported}")
    print(f"  LinkDown at the carrier {latency('/vt', 'LinkDown', event_at)} after the event was published; "
          f"ProbeDown at the NOC {latency('/noc', 'ProbeDown', lost_at)} after the probe's connection was lost "
          f"(both {event_at - restarted:.0f}-{lost_at - restarted:.0f} s after the restart, the backlog draining)")
    print(f"  lag at the end of the load {lag_at_end:.1f} s; under 5 s {caught_up:.0f} s after it")
    print(f"  collector before the kill: peak RSS {rss_before:.0f} MiB, {cpu_before:.0f} CPU-s; after the restart: "
          f"peak RSS {peak_rss_mb(collector.pid):.0f} MiB, {cpu_seconds(collector.pid):.0f} CPU-s")
    verdicts = [("nothing acknowledged lost", acked <= stored <= published),
                ("gaps counted exactly", reported == skipped), ("lag under 5 s within a minute", caught_up <= 60)]
    print("  " + "; ".join(f"{what}: {'PASS' if ok else 'FAIL'}" for what, ok in verdicts))


if __name__ == "__main__":
    main()
