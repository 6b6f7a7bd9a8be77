"""Alert latency: from the fault to the notification received by a webhook, against the default chain.

    .venv/bin/python tests/benchmarks/bench_alert_latency.py [--rounds 30] [--poll 2]

What it runs (real mosquitto and Alertmanager from tests/services.py, a real collector process, a webhook
receiver in this process, all on free loopback ports):

- **event** (a trap): a probe publishes a ``link_down`` event for a link of a redundancy group, as the agent
  does the moment its trap receiver gets linkDown. Latency: publish -> LinkDown received.
- **last will**: a probe process connected with its last will is killed (SIGKILL). Latency: kill ->
  ProbeDown received (the broker publishes the will as soon as it sees the socket close).
- **polled**: a probe polls the interface every ``--poll`` seconds (a thread publishing what it reads from
  a state the benchmark flips at a random moment inside the interval, as SNMP polls see a cut fibre).
  Latency: flip -> LinkDown received. The goal is one poll interval plus 1 s.
- **event via Alertmanager**: the event path with Alertmanager (API v2, the configuration
  ``render-alertmanager`` writes, group_wait 0s) delivering to the webhook.

The anchor is Prometheus + Alertmanager with their defaults (scrape_interval 1m, evaluation_interval 1m,
group_wait 30s, and the ``for`` of the rule, 0 here): computed, not measured (a single sample would take
minutes). A fault lands at a random phase of the scrape and of the evaluation, so on average it waits half
of each, and at worst all of each.

Prints p50/p99/max for each path, the goals (p99 <= 1 s for events, <= poll + 1 s for polled) with PASS
or FAIL, and each p50 as a fraction of the anchor's mean.
"""

from __future__ import annotations

import argparse
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from collector.alerting import amconfig  # noqa: E402
from collector.alerting.config import AlertingConfig  # noqa: E402
from collector.inventory import Inventory  # noqa: E402
from tests import services  # noqa: E402
from tests.benchmarks import done_with  # noqa: E402
from tests.services import WebhookServer  # noqa: E402
from zonewatch import strict, wire  # noqa: E402

ZONE = "bench"

INVENTORY = """\
zones: {{bench: {{name: Bench Park, areas: [a]}}}}
carriers:
  viettel: {{plmn: 452-04, name: Viettel, notify: [{{type: webhook, url: "{hooks}/viettel"}}]}}
sites: {{pop: {{zone: bench, area: a, kind: fibre_pop, owners: [viettel]}}}}
devices:
  sw-ev: {{site: pop, kind: switch, owners: [viettel], probe: pe}}
  sw-poll: {{site: pop, kind: switch, owners: [viettel], probe: pp}}
links:
  ev-1: {{device: sw-ev, ifname: xe-1, carriers: [viettel]}}
  ev-2: {{device: sw-ev, ifname: xe-2, carriers: [viettel]}}
  poll-1: {{device: sw-poll, ifname: xe-1, carriers: [viettel]}}
redundancy_groups:
  ev: {{zone: bench, carriers: [viettel], members: [{{link: ev-1}}, {{link: ev-2}}]}}
probes:
  pe: {{zone: bench, area: a}}
  pp: {{zone: bench, area: a}}
  pw: {{zone: bench, area: a}}
"""

WILL_PROBE = """
import sys, time
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
port, status = int(sys.argv[1]), sys.argv[2]
c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="pw")
c.will_set(status, b"offline", qos=1, retain=True)
c.connect("127.0.0.1", port, keepalive=30)
c.loop_start()
c.publish(status, b"online", qos=1, retain=True).wait_for_publish(10)
print("online", flush=True)
time.sleep(3600)
"""


class Probe:
    """A fake probe publishing what the agent would, on its own paho connection."""

    def __init__(self, port: int, name: str) -> None:
        self.name = name
        self.seq = 0
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"bench-{name}")
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.lock = threading.Lock()

    def publish(self, kind: str, samples: tuple[wire.Sample, ...] = (), events: tuple[wire.Event, ...] = ()) -> None:
        with self.lock:
            self.seq += 1
            batch = wire.Batch(ZONE, self.name, self.seq, time.time_ns(), samples, events)
            self.client.publish(wire.topic(ZONE, self.name, kind), wire.encode(batch), qos=1).wait_for_publish(10)

    def interfaces(self, device: str, states: dict[str, bool]) -> None:
        now = time.time_ns()
        self.publish("data", tuple(wire.Sample("interface", {"device": device, "ifname": name}, {
            "oper_up": up, "admin_up": True}, now) for name, up in states.items()))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def first(hooks: WebhookServer, path: str | None, status: str, alertname: str, after: int,
          via_am: bool | None = None, timeout: float = 30.0) -> float:
    """Wait for the first hook (``path``, or any path when None; index >= ``after`` in that list) carrying
    ``alertname`` in ``status``; return when it arrived (time.monotonic())."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = hooks.at(path) if path is not None else list(hooks.hooks)
        for hook in found[after:]:
            if via_am is not None and bool(hook.body["externalURL"]) != via_am:
                continue
            if any(a["status"] == status and a["labels"]["alertname"] == alertname for a in hook.body["alerts"]):
                return hook.received
        time.sleep(0.005)
    raise TimeoutError(f"no {status} {alertname} at {path or 'any path'} within {timeout} s")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def report(name: str, values: list[float], goal: float | None, anchor_mean: float) -> None:
    p50, p99, top = statistics.median(values), percentile(values, 99), max(values)
    verdict = "" if goal is None else f"  goal p99 <= {goal:.2f} s: {'PASS' if p99 <= goal else 'FAIL'}"
    print(f"{name:34s} n={len(values):3d}  p50 {p50 * 1000:7.1f} ms  p99 {p99 * 1000:7.1f} ms  "
          f"max {top * 1000:7.1f} ms  p50/anchor {p50 / anchor_mean:.4f}{verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--poll", type=float, default=2.0, help="the polled probe's interval, seconds")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="zw-alert-bench-"))
    hooks = WebhookServer().start()
    started: list[services.Service] = []
    probes: list[Probe] = []
    try:
        broker = services.start_mosquitto(work / "mosquitto")
        started.append(broker)
        inv_text = INVENTORY.format(hooks=hooks.url)
        inventory = strict.load(Inventory, inv_text, "inventory.yaml")
        placeholder = strict.load(AlertingConfig, "{}\n")
        timing = amconfig.Timing(group_wait="0s", group_interval="1s", repeat_interval="4h")
        written = amconfig.write(inventory, placeholder, work / "am-config" / "alertmanager.yml", timing=timing)
        am = services.start_alertmanager(work / "am", written[-1][0].read_text())
        started.append(am)
        (work / "inventory.yaml").write_text(inv_text)
        (work / "collector.yaml").write_text(
            f"mqtt: {{host: 127.0.0.1, port: {broker.port}, client_id: bench-collector}}\n"
            f"storage: {{type: sqlite, path: '{work / 'store.db'}'}}\n"
            f"queue: {{path: '{work / 'intake.db'}'}}\nhttp: {{enabled: false}}\ninventory: inventory.yaml\n"
            "alerting:\n  interval: 5s\n  restart_grace: 0s\n  delivery: direct\n"
            "  flap: {changes: 1000}\n"          # the benchmark flaps on purpose
            f"  alertmanager: {{url: '{am.url}'}}\n"
            f"  noc: [{{type: webhook, url: '{hooks.url}/noc'}}]\n")
        log = work / "collector" / "collector.log"
        started.append(services.start_zonewatch(
            "collector", ["-c", str(work / "collector.yaml"), "run"], work / "collector",
            ready=lambda: "collector subscribed" in log.read_text()))
        pe, pp = Probe(broker.port, "pe"), Probe(broker.port, "pp")
        probes += [pe, pp]
        pe.interfaces("sw-ev", {"xe-1": True, "xe-2": True})
        pp.interfaces("sw-poll", {"xe-1": True})
        time.sleep(1.0)   # the collector's first evaluation with data

        event, event_am = [], []
        for _ in range(args.rounds):
            n = len(hooks.at("/viettel"))
            sent = time.monotonic()
            pe.publish("events", events=(wire.Event("link_down", {"device": "sw-ev", "ifname": "xe-1"},
                                                    {"oper_up": False, "admin_up": True}, time.time_ns()),))
            event.append(first(hooks, "/viettel", "firing", "LinkDown", n, via_am=False) - sent)
            event_am.append(first(hooks, "/viettel", "firing", "LinkDown", n, via_am=True) - sent)
            n = len(hooks.at("/viettel"))
            pe.publish("events", events=(wire.Event("link_up", {"device": "sw-ev", "ifname": "xe-1"},
                                                    {"oper_up": True, "admin_up": True}, time.time_ns()),))
            first(hooks, "/viettel", "resolved", "LinkDown", n, via_am=False)
            first(hooks, "/viettel", "resolved", "LinkDown", n, via_am=True)

        will = []
        status = wire.topic(ZONE, "pw", "status")
        for _ in range(args.rounds):
            proc = subprocess.Popen([sys.executable, "-c", WILL_PROBE, str(broker.port), status],
                                    stdout=subprocess.PIPE, text=True)
            assert proc.stdout is not None and proc.stdout.readline().strip() == "online"
            if will:  # the previous round's ProbeDown resolves when the probe is back
                first(hooks, None, "resolved", "ProbeDown", n, via_am=False)
            n = len(hooks.hooks)
            killed = time.monotonic()
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            will.append(first(hooks, None, "firing", "ProbeDown", n, via_am=False) - killed)

        polled = []
        state = {"up": True}
        stop = threading.Event()

        def poller() -> None:
            next_poll = time.monotonic()
            while not stop.is_set():
                pp.interfaces("sw-poll", {"xe-1": state["up"]})
                next_poll += args.poll
                stop.wait(max(0.0, next_poll - time.monotonic()))

        thread = threading.Thread(target=poller, daemon=True)
        thread.start()
        for _ in range(args.rounds):
            time.sleep(random.uniform(0, args.poll))
            n = len(hooks.at("/viettel"))
            flipped = time.monotonic()
            state["up"] = False
            polled.append(first(hooks, "/viettel", "firing", "LinkDown", n, via_am=False) - flipped)
            n = len(hooks.at("/viettel"))
            state["up"] = True
            first(hooks, "/viettel", "resolved", "LinkDown", n, via_am=False)
        stop.set()
        thread.join()

        scrape, evaluation, group_wait, hold = 60.0, 60.0, 30.0, 0.0
        anchor_mean = scrape / 2 + evaluation / 2 + hold + group_wait
        anchor_worst = scrape + evaluation + hold + group_wait
        print(f"rounds {args.rounds}; polled probe interval {args.poll:g} s; collector evaluation tick 5 s "
              "(data and events trigger evaluations themselves)")
        print(f"anchor (Prometheus + Alertmanager defaults: scrape 1m, evaluation 1m, for 0, group_wait 30s): "
              f"mean {anchor_mean:.0f} s, worst {anchor_worst:.0f} s (computed)")
        report("event (trap) -> webhook", event, 1.0, anchor_mean)
        report("last will -> webhook", will, 1.0, anchor_mean)
        report(f"polled ({args.poll:g} s) -> webhook", polled, args.poll + 1.0, anchor_mean)
        report("event -> Alertmanager -> webhook", event_am, None, anchor_mean)
    finally:
        for p in probes:
            p.close()
        hooks.stop()
        for svc in reversed(started):
            svc.stop()
        done_with(work)


if __name__ == "__main__":
    main()
