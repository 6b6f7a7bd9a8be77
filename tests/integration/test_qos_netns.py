"""QosSource with its real backend, in network namespaces: two shaped, delayed carriers, a park LAN, a zone server.

The lab (``tests/integration/qoslab.py``): carrier A at 20 Mbit/s each way and 15 ms each way, carrier B at
5 Mbit/s and 40 ms, each with its own dnsmasq (the bearer's DNS server), the zone test server (Python's HTTP
server and a UDP echo service) behind both and behind the park LAN, which holds the probe's default route.

The sources run in one helper process inside the probe namespace, which answers one JSON line per poll with
the samples and how many bytes each of the probe's interfaces carried during the poll (sysfs counters). Polls
are stamped with a night time (02:00 in Ho Chi Minh City), so the transfers are inside their window.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from collector.alerting.config import RuleSettings
from collector.alerting.facts import Facts
from collector.alerting.rules import evaluate
from collector.inventory import Inventory
from tests.integration import qoslab
from tests.integration.qoslab import ZONE_NAME, Carrier, Lab
from tests.netns import NsProcess
from zonewatch import wire
from zonewatch.strict import load as load_config

pytestmark = pytest.mark.integration

A, B = Carrier("a", 20.0, 15.0), Carrier("b", 5.0, 40.0)
PLMN = {"a": "452-04", "b": "452-02"}
NIGHT_NS = int(dt.datetime(2025, 11, 28, 2, 0, tzinfo=ZoneInfo("Asia/Ho_Chi_Minh")).timestamp()) * 10**9
MB = 10**6

HELPER = r"""
import asyncio, json, sys, time
from zonewatch import strict
from agent.sources.qos import QosConfig, QosSource

sources = {c["name"]: QosSource(strict.load(QosConfig, json.dumps(c), c["name"])) for c in json.loads(sys.argv[1])}
interfaces = json.loads(sys.argv[2])

def counters():
    out = {}
    for name in interfaces:
        total = 0
        for kind in ("rx_bytes", "tx_bytes"):
            with open(f"/sys/class/net/{name}/statistics/{kind}") as f:
                total += int(f.read())
        out[name] = total
    return out

loop = asyncio.new_event_loop()
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    ask = json.loads(line)
    before, started = counters(), time.monotonic()
    try:
        samples, error = loop.run_until_complete(sources[ask["source"]].collect(ask["now_ns"])), None
    except Exception as exc:
        samples, error = [], f"{type(exc).__name__}: {exc}"
    after, quiet = counters(), time.monotonic()
    while time.monotonic() - quiet < 0.3 and time.monotonic() - started < 60:   # the last FIN and ACK of a test
        time.sleep(0.05)                                                       # belong to it: wait until quiet
        now = counters()
        if now != after:
            after, quiet = now, time.monotonic()
    print(json.dumps({"samples": [{"tags": s.tags, "fields": s.fields, "time_ns": s.time_ns} for s in samples],
                      "error": error, "moved": {n: after[n] - before[n] for n in interfaces},
                      "seconds": time.monotonic() - started}), flush=True)
"""


def source(lab: Lab, carrier: Carrier, name: str, tmp: Path, tests: list[dict[str, Any]],
           budget: str = "1GB") -> dict[str, Any]:
    return {"type": "qos", "name": name, "modem": carrier.name, "carrier": PLMN[carrier.name],
            "interface": lab.modems[carrier.name], "dns": [lab.gateways[carrier.name]], "interval": "60s",
            "timeout": "2s", "budget": {"monthly": budget}, "state_path": str(tmp / f"{name}.json"),
            "tests": tests}


SHORT: list[dict[str, Any]] = [
    {"test": "dns", "name": ZONE_NAME},
    {"test": "tcp", "host": ZONE_NAME, "port": 80},
    {"test": "http", "url": f"http://{ZONE_NAME}/bytes/2000"},
    {"test": "icmp", "host": "core", "count": 5, "spacing": "50ms"},
    {"test": "icmp", "host": ZONE_NAME, "count": 10, "spacing": "50ms"},
    {"test": "udp", "host": ZONE_NAME, "port": 7, "count": 20, "spacing": "20ms"},
]


class Probe:
    """The sources in the probe namespace."""

    def __init__(self, proc: NsProcess) -> None:
        self.proc = proc
        assert json.loads(proc.read(30)) == {"ready": True}
        self.ticks = 0

    def poll(self, name: str) -> dict[str, Any]:
        self.ticks += 1
        self.proc.send(json.dumps({"source": name, "now_ns": NIGHT_NS + self.ticks * 60 * 10**9}))
        answer: dict[str, Any] = json.loads(self.proc.read(60))
        answer["by"] = {f"{s['tags']['test']}:{s['tags']['target']}": s["fields"] for s in answer["samples"]}
        return answer


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, Probe]]:
    tmp = tmp_path_factory.mktemp("qos")
    with qoslab.lab([A, B], tmp) as lab:
        configs = [
            source(lab, A, "qa", tmp, [*SHORT, {"test": "upload", "url": f"http://{ZONE_NAME}/upload",
                                                "bytes": "4MB", "timeout": "20s"}]),
            source(lab, B, "qb", tmp, [*SHORT,
                                       {"test": "download", "url": f"http://{ZONE_NAME}/bytes/3000000",
                                        "bytes": "3MB", "timeout": "20s"},
                                       {"test": "upload", "url": f"http://{ZONE_NAME}/upload", "bytes": "2MB",
                                        "timeout": "20s"}]),
            source(lab, A, "qa-budget", tmp, [{"test": "download", "url": f"http://{ZONE_NAME}/bytes/10000000",
                                               "bytes": "10MB", "every": "1m", "timeout": "20s"}], budget="25MB"),
        ]
        interfaces = [lab.modems["a"], lab.modems["b"], lab.park_if]
        proc = NsProcess(lab.probe, [sys.executable, "-W", "error", "-c", HELPER, json.dumps(configs),
                                json.dumps(interfaces)], tmp / "probe.log")
        lab.procs.append(proc)
        yield lab, Probe(proc)


def only_on(answer: dict[str, Any], lab: Lab, carrier: str) -> None:
    """Assert the poll's traffic went through ``carrier``'s modem and nowhere else (not a byte elsewhere)."""
    moved = answer["moved"]
    others = {k: v for k, v in moved.items() if k != lab.modems[carrier]}
    assert moved[lab.modems[carrier]] > 0 and all(v == 0 for v in others.values()), moved


def test_short_tests_through_each_modem_with_the_carriers_delay(world: tuple[Lab, Probe]) -> None:
    lab, probe = world
    for carrier, name in ((A, "qa"), (B, "qb")):
        got = probe.poll(name)
        assert got["error"] is None, got
        by = got["by"]
        assert {k: by[k]["success"] for k in by if k != "budget:sim"} == {
            f"dns:{ZONE_NAME}": True, f"tcp:{ZONE_NAME}:80": True, f"http:{ZONE_NAME}": True, "icmp:core": True,
            f"icmp:{ZONE_NAME}": True, f"udp:{ZONE_NAME}:7": True}
        rtt = 2 * carrier.delay_ms
        for key in (f"icmp:{ZONE_NAME}", f"udp:{ZONE_NAME}:7"):
            f = by[key]
            assert f["loss_pct"] == 0 and rtt <= f["rtt_ms"] <= rtt * 1.1 + 3, (key, f, rtt)
            assert 0 <= f["jitter_ms"] < 5
        assert by["icmp:core"]["rtt_ms"] < 5      # the carrier's own address: not behind its delay line
        assert rtt <= by[f"tcp:{ZONE_NAME}:80"]["time_ms"] <= rtt * 1.5 + 20
        assert by[f"http:{ZONE_NAME}"]["status"] == 200 and by[f"http:{ZONE_NAME}"]["bytes"] == 2000
        only_on(got, lab, carrier.name)
        print(f"\n{name}: added delay {rtt:g} ms round trip; icmp {by[f'icmp:{ZONE_NAME}']['rtt_ms']:.1f} ms, "
              f"udp {by[f'udp:{ZONE_NAME}:7']['rtt_ms']:.1f} ms, tcp connect "
              f"{by[f'tcp:{ZONE_NAME}:80']['time_ms']:.1f} ms (with the lookup), "
              f"http {by[f'http:{ZONE_NAME}']['time_ms']:.1f} ms")


def test_transfers_run_at_the_shaped_rate_on_their_own_modem_only(world: tuple[Lab, Probe]) -> None:
    lab, probe = world
    figures = []
    got = probe.poll("qa")     # the short tests ran in the previous test: now the upload
    up = got["by"][f"upload:{ZONE_NAME}"]
    assert up["success"] is True and up["dropped"] is False and up["bytes"] == 4 * MB
    assert A.rate_mbit * 0.9 <= up["up_mbps"] <= A.rate_mbit * 1.1, up
    only_on(got, lab, "a")
    figures.append(("a up", A.rate_mbit, up["up_mbps"]))
    for test, size, speed in (("download", 3 * MB, "down_mbps"), ("upload", 2 * MB, "up_mbps")):
        got = probe.poll("qb")
        f = got["by"][f"{test}:{ZONE_NAME}"]
        assert f["success"] is True and f["bytes"] == size, f
        assert B.rate_mbit * 0.9 <= f[speed] <= B.rate_mbit * 1.1, f
        only_on(got, lab, "b")
        figures.append((f"b {test[:2]}", B.rate_mbit, f[speed]))
    print("\n" + "; ".join(f"{what}: shaped {rate:g} Mbit/s, measured {got_:.2f}" for what, rate, got_ in figures))


def test_a_25_mb_budget_refuses_the_third_10_mb_download(world: tuple[Lab, Probe]) -> None:
    lab, probe = world
    ran = [probe.poll("qa-budget") for _ in range(3)]
    for got in ran[:2]:
        f = got["by"][f"download:{ZONE_NAME}"]
        assert f["success"] is True and A.rate_mbit * 0.9 <= f["down_mbps"] <= A.rate_mbit * 1.1, f
        only_on(got, lab, "a")
        print(f"\na down: shaped {A.rate_mbit:g} Mbit/s, measured {f['down_mbps']:.2f}; the modem carried "
              f"{got['moved'][lab.modems['a']]:,} bytes for 10,000,000 of payload")
    third = ran[2]
    assert f"download:{ZONE_NAME}" not in third["by"]          # refused: no number
    budget = third["by"]["budget:sim"]
    assert budget["refused"] == 1
    # the budget is what the modem's interface counted during the tests (the connections' last FIN and ACK,
    # a few hundred bytes after the test returned, are not charged)
    used = sum(got["moved"][lab.modems["a"]] for got in ran[:2])
    assert used - 1000 < budget["budget_used_bytes"] <= used
    assert budget["budget_left_bytes"] == 25 * MB - budget["budget_used_bytes"]
    assert all(v == 0 for v in third["moved"].values()), third["moved"]   # nothing went out


def test_a_cut_link_fails_that_carrier_only_and_pages_it(world: tuple[Lab, Probe]) -> None:
    lab, probe = world
    facts = Facts(RuleSettings())
    inventory = load_config(Inventory, json.dumps({
        "zones": {"dv": {"name": "Dinh Vu", "areas": ["gate-a"]}},
        "carriers": {"viettel": {"plmn": PLMN["a"], "name": "Viettel"},
                     "vinaphone": {"plmn": PLMN["b"], "name": "VinaPhone"}},
        "probes": {"p1": {"zone": "dv", "area": "gate-a", "modems": [{"name": "a", "carrier": PLMN["a"]},
                                                                     {"name": "b", "carrier": PLMN["b"]}]}}}))
    lab.cut("a")
    try:
        for round_ in range(2):
            for carrier, name in ((A, "qa"), (B, "qb")):
                got = probe.poll(name)
                by = got["by"]
                now = NIGHT_NS + probe.ticks * 60 * 10**9
                if carrier is A:
                    assert {k: v["success"] for k, v in by.items() if k != "budget:sim"} == {
                        f"dns:{ZONE_NAME}": False, f"tcp:{ZONE_NAME}:80": False, f"http:{ZONE_NAME}": False,
                        "icmp:core": False}, by   # no echo test to a name that did not resolve: no number
                    assert by["icmp:core"]["loss_pct"] == 100
                    assert got["moved"][lab.park_if] == 0 and got["moved"][lab.modems["b"]] == 0, got["moved"]
                else:
                    assert all(v["success"] for k, v in by.items() if k != "budget:sim"), by
                    only_on(got, lab, "b")
                # what the collector would get: the samples, and the cellular source saying the modem is registered
                rows = [wire.Sample("cellular", {"carrier": PLMN[carrier.name], "modem": carrier.name},
                                    {"registered": True, "rsrp_dbm": -85.0}, now)]
                rows += [wire.Sample("qos", s["tags"], s["fields"], now) for s in got["samples"]]
                facts.observe(wire.Batch("dv", "p1", probe.ticks, now, tuple(rows)), now)
            if round_ == 0:   # the short tests are due again 5 minutes later
                probe.ticks += 5
    finally:
        lab.mend("a")
    ev = evaluate(facts, inventory, RuleSettings(), NIGHT_NS + probe.ticks * 60 * 10**9)
    alerts = [(f.alertname, f.labels.get("carrier")) for f in ev.findings if f.alertname == "DataAccessFailure"]
    assert alerts == [("DataAccessFailure", PLMN["a"])]
