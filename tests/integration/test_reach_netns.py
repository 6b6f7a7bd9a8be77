"""ReachSource with the real scapy backend, in network namespaces: a probe, a primary and a backup router, a core.

Topology (built fresh for each test, with namespace and interface names unique to this run)::

    probe (10.250.1.2) -- (10.250.1.1) rA (10.250.3.1) -- (10.250.3.2) core [lo 10.250.9.1/32]
    probe (10.250.2.2) -- (10.250.2.1) rB (10.250.4.1) -- (10.250.4.2) core

The probe reaches 10.250.9.1 through rA (metric 10) and, when that route is withdrawn, through rB (metric 20).
Nothing here fails over by itself: after rA's core-side link goes down, the probe's route through rA stays
and the traffic is blackholed until the test withdraws the route, as an operator or a routing daemon would.

The source runs in a helper process started with ``ip netns exec <probe ns>``, which lives for the whole
test so that the source keeps its previous path between polls (as in the agent). A namespace is a
property of a thread, and the backend sends from asyncio's worker threads: a helper process that is wholly
inside the namespace is simpler and more reliable than ``setns`` on the right threads. Only the 10.250.x
addresses inside these namespaces are used: no packet leaves the machine.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.netns import NsProcess, ip, namespaces, require_root, run_in, run_tag, veth

pytestmark = pytest.mark.integration

TARGET = "10.250.9.1"
PATHS = {"primary": ["10.250.1.1", TARGET], "backup": ["10.250.2.1", TARGET]}
OPEN_PORT, CLOSED_PORT = 8080, 8081  # inside the fresh core namespace nothing else listens

# Polls each source named on stdin and prints its sample, and what it logged, as one JSON line.
HELPER = r"""
import asyncio, json, logging, sys, time
from zonewatch import strict
from agent.sources.reach import ReachConfig, ReachSource

class Keep(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []
    def emit(self, record):
        self.lines.append(record.getMessage())

keep = Keep()
logging.getLogger("agent.sources.reach").addHandler(keep)
sources = {c["name"]: ReachSource(strict.load(ReachConfig, json.dumps(c), c["name"])) for c in json.loads(sys.argv[1])}
loop = asyncio.new_event_loop()
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    keep.lines.clear()
    started = time.monotonic()
    (sample,) = loop.run_until_complete(sources[line.strip()].collect(time.time_ns()))
    print(json.dumps({"tags": sample.tags, "fields": sample.fields, "logs": keep.lines,
                      "seconds": time.monotonic() - started}), flush=True)
"""

# Listens on TARGET:OPEN_PORT until its stdin closes.
LISTENER = r"""
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(16)
print("ready", flush=True)
sys.stdin.read()
"""


@dataclass
class Topology:
    probe: str
    ra: str
    rb: str
    core: str
    vac: str  # rA's core-side interface

    def cut_primary_link(self) -> None:
        ip("-n", self.ra, "link", "set", self.vac, "down")

    def withdraw_primary_route(self) -> None:
        ip("-n", self.probe, "route", "del", f"{TARGET}/32", "via", "10.250.1.1", "metric", "10")

    def restore_primary(self) -> None:
        ip("-n", self.ra, "link", "set", self.vac, "up")
        # The kernel deleted rA's routes through vac when it went down; they come back only by hand.
        ip("-n", self.ra, "route", "replace", f"{TARGET}/32", "via", "10.250.3.2")
        ip("-n", self.ra, "route", "replace", "10.250.2.0/24", "via", "10.250.3.2")
        ip("-n", self.probe, "route", "add", f"{TARGET}/32", "via", "10.250.1.1", "metric", "10")


@pytest.fixture
def topology() -> Iterator[Topology]:
    require_root()
    tag = run_tag("zwt")  # 8 characters: interface names below stay within 15
    t = Topology(probe=f"{tag}-probe", ra=f"{tag}-rA", rb=f"{tag}-rB", core=f"{tag}-core", vac=f"{tag}ac")
    with namespaces() as make:
        for ns in (t.probe, t.ra, t.rb, t.core):
            make(ns)
        veth(f"{tag}pa", t.probe, "10.250.1.2/24", f"{tag}ap", t.ra, "10.250.1.1/24")
        veth(f"{tag}pb", t.probe, "10.250.2.2/24", f"{tag}bp", t.rb, "10.250.2.1/24")
        veth(t.vac, t.ra, "10.250.3.1/24", f"{tag}ca", t.core, "10.250.3.2/24")
        veth(f"{tag}bc", t.rb, "10.250.4.1/24", f"{tag}cb", t.core, "10.250.4.2/24")
        ip("-n", t.core, "addr", "add", f"{TARGET}/32", "dev", "lo")
        for router in (t.ra, t.rb):
            run_in(router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        ip("-n", t.probe, "route", "add", f"{TARGET}/32", "via", "10.250.1.1", "metric", "10")
        ip("-n", t.probe, "route", "add", f"{TARGET}/32", "via", "10.250.2.1", "metric", "20")
        ip("-n", t.core, "route", "add", "10.250.1.0/24", "via", "10.250.3.1", "metric", "10")
        ip("-n", t.core, "route", "add", "10.250.1.0/24", "via", "10.250.4.1", "metric", "20")
        ip("-n", t.core, "route", "add", "10.250.2.0/24", "via", "10.250.4.1", "metric", "10")
        ip("-n", t.core, "route", "add", "10.250.2.0/24", "via", "10.250.3.1", "metric", "20")
        ip("-n", t.ra, "route", "add", f"{TARGET}/32", "via", "10.250.3.2")
        ip("-n", t.rb, "route", "add", f"{TARGET}/32", "via", "10.250.4.2")
        ip("-n", t.ra, "route", "add", "10.250.2.0/24", "via", "10.250.3.2")
        ip("-n", t.rb, "route", "add", "10.250.1.0/24", "via", "10.250.4.2")
        yield t


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Any]:
    helpers: list[NsProcess] = []

    def run(ns: str, code: str, args: list[str]) -> NsProcess:
        helper = NsProcess(ns, [sys.executable, "-W", "error", "-c", code, *args],
                           tmp_path / f"helper-{len(helpers)}.log")
        helpers.append(helper)
        return helper

    yield run
    for helper in helpers:
        helper.stop()


class Probe:
    """The reach sources, running in the probe namespace."""

    def __init__(self, helper: NsProcess) -> None:
        self.helper = helper
        assert json.loads(helper.read(timeout=30)) == {"ready": True}

    def poll(self, name: str) -> dict[str, Any]:
        self.helper.send(name)
        return dict(json.loads(self.helper.read(timeout=30)))

    def poll_until(self, name: str, want: Any, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Poll until ``want(sample)``; return every sample seen, the wanted one last."""
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while not seen or not want(seen[-1]):
            assert time.monotonic() < deadline, f"condition not met within {timeout:g}s; samples: {seen}"
            seen.append(self.poll(name))
        return seen


def reach_config(name: str, **extra: Any) -> dict[str, Any]:
    return {"type": "reach", "name": name, "target": TARGET, "count": 3, "timeout": "1s", "max_hops": 8,
            "paths": PATHS, "interval": "10s", **extra}


def test_failover_to_backup_and_back(topology: Topology, start: Any) -> None:
    probe = Probe(start(topology.probe, HELPER, [json.dumps([reach_config("core")])]))

    first = probe.poll("core")
    assert first["tags"] == {"target": "core", "path": "primary"}
    assert first["fields"]["loss_pct"] == 0
    assert first["fields"]["hops"] == 2
    assert first["fields"]["path_changed"] is False
    assert 0 < first["fields"]["rtt_ms"] < 1000
    assert first["logs"] == []
    again = probe.poll("core")
    assert (again["tags"]["path"], again["fields"]["path_changed"]) == ("primary", False)

    # rA loses its core-side link: the probe's route through rA stays, so the target is blackholed. rA answers
    # with unreachables, if at all (the kernel rate-limits them per host), so the path is "none" or the
    # fingerprint of a route that ends at rA.
    topology.cut_primary_link()
    dark = probe.poll("core")
    assert dark["fields"]["loss_pct"] == 100
    assert "rtt_ms" not in dark["fields"] and "hops" not in dark["fields"]
    assert dark["tags"]["path"] == "none" or dark["tags"]["path"].startswith("unknown:")
    assert dark["fields"]["path_changed"] is True

    # The primary route is withdrawn: the metric-20 route through rB carries the traffic.
    topology.withdraw_primary_route()
    seen = probe.poll_until("core", lambda s: s["tags"]["path"] == "backup")
    backup = seen[-1]
    assert backup["fields"]["path_changed"] is True
    assert backup["fields"]["loss_pct"] == 0 and backup["fields"]["hops"] == 2
    assert len(backup["logs"]) == 1 and "to backup" in backup["logs"][0]
    steady = probe.poll("core")
    assert (steady["tags"]["path"], steady["fields"]["path_changed"], steady["logs"]) == ("backup", False, [])

    # Restored: link up, rA's routes and the probe's primary route back.
    topology.restore_primary()
    seen = probe.poll_until("core", lambda s: s["tags"]["path"] == "primary")
    restored = seen[-1]
    assert restored["fields"]["path_changed"] is True
    assert len(restored["logs"]) == 1 and "to primary" in restored["logs"][0]
    assert restored["fields"]["loss_pct"] == 0
    steady = probe.poll("core")
    assert (steady["tags"]["path"], steady["fields"]["path_changed"], steady["logs"]) == ("primary", False, [])


def test_tcp_open_and_closed_port(topology: Topology, start: Any) -> None:
    listener = start(topology.core, LISTENER, [TARGET, str(OPEN_PORT)])
    assert listener.read(timeout=30).strip() == "ready"
    configs = [
        reach_config("web", method="tcp", port=OPEN_PORT),
        reach_config("closed", method="tcp", port=CLOSED_PORT, traceroute=False),
    ]
    probe = Probe(start(topology.probe, HELPER, [json.dumps(configs)]))

    web = probe.poll("web")
    assert web["tags"] == {"target": "web", "path": "primary"}
    assert web["fields"]["loss_pct"] == 0
    assert 0 < web["fields"]["rtt_ms"] < 1000

    # A RST proves the host is reachable: it counts as an answer, and comes back well within the timeout.
    closed = probe.poll("closed")
    assert closed["tags"] == {"target": "closed"}
    assert closed["fields"]["loss_pct"] == 0
    assert 0 < closed["fields"]["rtt_ms"] < 1000
    assert closed["seconds"] < 0.9  # all answered: nothing waited for the 1 s timeout
