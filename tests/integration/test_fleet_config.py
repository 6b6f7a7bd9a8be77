"""Configuration from the centre, end to end with real parts.

Real mosquitto behind TLS with the ACL and password file ``render-mosquitto`` writes, a real collector process
(SQLite store, alerting with a NOC webhook), two real agent processes (probes ``p1`` and ``p2``, each reading a
simulated modem on a pty) and a real snmpd. The agents' local files hold only who they are, their broker and
``remote_config`` (a dead-man time of a few seconds); every source comes from the centre (the inventory's
``probes.<id>.config``), changed by editing the inventory and running ``zonewatch-collector fleet push``:

1. at start both probes apply what the collector publishes, report its hash, and their modems' readings arrive;
2. p1 gets a new SNMP device (snmpd): applied, hash reported, the device's readings stored; at the same time p2
   gets a broker that does not exist: applied, the broker never reached, rolled back by the probe within the
   dead-man time, and not one of its batches lost (its seq continuous at the collector);
3. p1 gets a configuration with a typo: rejected, the error with key and line at the collector (``fleet status``
   and ProbeConfigRejected at the NOC), and its running configuration goes on (its readings keep arriving).

It prints the times measured: publish to applied report, and publish to rolled_back report.
"""

from __future__ import annotations

import functools
import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.sim.modem import SimModem
from tests import services
from tests.centre import Centre
from tests.tlsbroker import PASSWORDS

pytestmark = pytest.mark.integration

WAIT = 30.0
ZONE = "fz"
DEADMAN_S = 4


def inventory_text(ports: dict[str, str], p1_sources: str = "", p2_extra: str = "") -> str:
    return f"""\
zones:
  {ZONE}: {{name: Fleet Park, areas: [a]}}
carriers:
  viettel: {{plmn: 452-04, name: Viettel}}
  vinaphone: {{plmn: 452-02, name: VinaPhone}}
sites:
  pop: {{zone: {ZONE}, area: a, kind: fibre_pop, owners: [viettel]}}
devices:
  sw-new: {{site: pop, kind: switch, owners: [viettel], probe: p1, address: 127.0.0.1}}
probe_defaults:
  self_interval: 2s
probes:
  p1:
    zone: {ZONE}
    area: a
    modems: [{{name: vt, carrier: viettel}}]
    config:
      sources:
        - {{type: cellular, name: vt, port: {ports['p1']}, interval: 500ms, timeout: 1s}}
{p1_sources}  p2:
    zone: {ZONE}
    area: a
    modems: [{{name: vn, carrier: vinaphone}}]
    config:
{p2_extra}      sources:
        - {{type: cellular, name: vn, port: {ports['p2']}, interval: 500ms, timeout: 1s}}
"""


class Fleet:
    """The centre (broker, collector with a NOC webhook), snmpd and two agents reading the modems on ``ports``; all
    of it stopped with the centre."""

    def __init__(self, centre: Centre, ports: dict[str, str]) -> None:
        self.centre = centre
        self.tmp = centre.tmp
        self.ports = ports
        self.hooks = centre.hooks
        self.inventory = centre.inventory
        self.config = centre.write_config(alerting={"interval": "500ms", "settings": {"probe_timeout": "1h"}})
        self.state = centre.data / "fleet" / "config-state.json"
        self.snmpd = centre.keep(services.start_snmpd(self.tmp / "snmpd"))
        centre.start_collector()
        self.agents: dict[str, services.Service] = {}
        for name in ("p1", "p2"):
            folder = self.tmp / name
            folder.mkdir()
            (folder / "agent.yaml").write_text(
                f"probe: {{id: {name}, zone: {ZONE}}}\n"
                f"mqtt: {{host: 127.0.0.1, port: {centre.broker.port}, username: {name}, "
                f"password: {{env: ZW_MQTT_PASSWORD}}, keepalive: 5s, tls: {{ca_file: '{centre.ca}'}}}}\n"
                f"spool: {{path: '{folder / 'spool.db'}'}}\nmetrics: {{enabled: false}}\n"
                f"remote_config: {{deadman: {DEADMAN_S}s}}\n")
            log = folder / "agent.log"
            self.agents[name] = centre.keep(services.start_zonewatch(
                "agent", ["-c", str(folder / "agent.yaml"), "run"], folder,
                env={"ZW_MQTT_PASSWORD": PASSWORDS[name], "ZW_SNMP_COMMUNITY": "public"},
                ready=functools.partial(_logged, log, "running")))

    # ---------------------------------------------------------------------------------------------- the centre

    def push(self, text: str, by: str) -> None:
        """Write the inventory and ask the running collector to publish it (the operator's two steps)."""
        self.inventory.write_text(text)
        out = self.centre.cli("fleet", "push", "--by", by)
        assert out.returncode == 0, out.stderr

    def probe_state(self, probe: str) -> dict[str, Any]:
        try:
            probes: dict[str, dict[str, Any]] = json.loads(self.state.read_text())["probes"]
            return probes.get(probe, {})
        except (OSError, ValueError):
            return {}

    def desired(self, probe: str, version: int) -> dict[str, Any]:
        """Wait until ``version`` is published to ``probe``; return it."""
        services.wait_for(lambda: (self.probe_state(probe).get("desired") or {}).get("version") == version, WAIT,
                          f"v{version} published to {probe}")
        desired: dict[str, Any] = self.probe_state(probe)["desired"]
        return desired

    def report(self, probe: str, version: int, result: str) -> dict[str, Any]:
        """Wait for ``probe``'s report ``result`` about ``version``; return it."""
        def got() -> bool:
            r = self.probe_state(probe).get("report") or {}
            return bool(r.get("version") == version and r.get("result") == result)
        services.wait_for(got, WAIT, f"{probe} to report v{version} {result}")
        report: dict[str, Any] = self.probe_state(probe)["report"]
        return report

    def points(self, measurement: str, probe: str, tags: str = "", after_ns: int = 0) -> int:
        try:
            with sqlite3.connect(f"file:{self.tmp / 'store.db'}?mode=ro", uri=True) as db:
                row = db.execute("SELECT count(*) FROM (SELECT DISTINCT series_id, time_ns FROM points JOIN series ON "
                                 "series.id = series_id WHERE measurement = ? AND tags LIKE ? AND tags LIKE ? AND "
                                 "time_ns > ?)", (measurement, f'%"probe":"{probe}"%', f"%{tags}%", after_ns))
                return int(row.fetchone()[0])
        except sqlite3.Error:
            return -1

    def stored(self, measurement: str, probe: str, tags: str) -> bool:
        return self.points(measurement, probe, tags) > 0

    def metric(self, name: str) -> float:
        return self.centre.metric(name)

    def noc(self, alertname: str, probe: str) -> list[dict[str, Any]]:
        return [a for h in self.hooks.at("/noc") for a in h.body["alerts"]
                if a["labels"]["alertname"] == alertname and a["labels"].get("probe") == probe]

    def spool_left(self, probe: str, upto: int) -> int:
        """Return how many of the probe's batches up to seq ``upto`` are still in its spool (a running probe
        always has the batch it joins its polls in: ``spool.coalesce``)."""
        with sqlite3.connect(f"file:{self.tmp / probe / 'spool.db'}?mode=ro", uri=True) as db:
            return int(db.execute("SELECT count(*) FROM entries WHERE id <= ?", (upto,)).fetchone()[0])

    def spool_seq(self, probe: str) -> int:
        """Return the last seq the probe's spool handed out."""
        with sqlite3.connect(f"file:{self.tmp / probe / 'spool.db'}?mode=ro", uri=True) as db:
            return int(db.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()[0])


def _logged(log: Path, text: str) -> bool:
    return log.exists() and text in log.read_text()


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    with SimModem() as p1, SimModem() as p2:
        for modem, plmn in ((p1, "45204"), (p2, "45202")):
            modem.set_registered(True, plmn=plmn)
        ports = {"p1": p1.port, "p2": p2.port}
        with Centre(tmp_path, inventory_text(ports), ca_name="fleet test CA") as centre:
            yield Fleet(centre, ports)


def seconds(report: dict[str, Any], desired: dict[str, Any]) -> float:
    return (int(report["at_ns"]) - int(desired["issued_ns"])) / 1e9


def test_configuration_from_the_centre(fleet: Fleet) -> None:
    # 1. at start: both probes take what the collector publishes and report its hash
    for probe, carrier in (("p1", "452-04"), ("p2", "452-02")):
        desired = fleet.desired(probe, 1)
        report = fleet.report(probe, 1, "applied")
        assert report["hash"] == report["running"] == desired["hash"]
        services.wait_for(functools.partial(fleet.stored, "cellular", probe, f'"carrier":"{carrier}"'), WAIT,
                          f"{probe}'s modem readings stored")

    # 2. p1: a new SNMP device; p2: a broker that does not exist (one push, both at once)
    dead = services.free_port()
    snmp = (f"        - {{type: snmp, device: sw-new, port: {fleet.snmpd.port}, version: v2c, "
            "community: {env: ZW_SNMP_COMMUNITY}, profiles: [system], interval: 1s, timeout: 500ms}\n")
    fleet.push(inventory_text(fleet.ports, p1_sources=snmp,
                              p2_extra=f"      mqtt: {{host: 127.0.0.1, port: {dead}, keepalive: 5s}}\n"), "alice")
    desired_p1, desired_p2 = fleet.desired("p1", 2), fleet.desired("p2", 2)
    applied = fleet.report("p1", 2, "applied")
    assert applied["hash"] == applied["running"] == desired_p1["hash"]
    services.wait_for(lambda: fleet.points("device", "p1", '"device":"sw-new"') > 0, WAIT, "sw-new's readings stored")
    rolled = fleet.report("p2", 2, "rolled_back")
    assert rolled["hash"] == desired_p2["hash"] and rolled["running"] == fleet.probe_state("p2")["report"]["running"]
    assert rolled["error"] == f"the broker was not reached within {DEADMAN_S}s of applying it"
    assert rolled["running_version"] == 1
    rollback_s = seconds(rolled, desired_p2)
    assert DEADMAN_S <= rollback_s < DEADMAN_S + 10
    # nothing p2 spooled while it pointed at the dead broker was lost: its spool drains, its seq has no gap
    spooled = fleet.spool_seq("p2")
    services.wait_for(lambda: fleet.spool_left("p2", spooled) == 0, WAIT, "p2's spool to drain")
    services.wait_for(lambda: fleet.metric("zonewatch_ingest_queue_depth") == 0, WAIT, "the intake queue to drain")
    assert fleet.metric('zonewatch_probe_seq_gaps{probe="fz/p2"}') == 0
    outage = [e for e in map(json.loads, (fleet.centre.data / "fleet" / "audit.jsonl").read_text().splitlines())
              if e["probe"] == "p2"]
    assert [(e["by"], e["action"], e.get("version")) for e in outage] == [
        ("inventory change", "publish", 1), ("probe p2", "applied", 1),
        ("alice", "publish", 2), ("probe p2", "applied", 2), ("probe p2", "rolled_back", 2)]
    services.wait_for(lambda: bool(fleet.noc("ProbeConfigRejected", "p2")), WAIT, "ProbeConfigRejected for p2")

    # 3. p1: a typo; rejected with key and line, and what ran goes on
    typo = snmp.replace("timeout: 500ms", "timout: 500ms")
    fleet.push(inventory_text(fleet.ports, p1_sources=typo,
                              p2_extra=f"      mqtt: {{host: 127.0.0.1, port: {dead}, keepalive: 5s}}\n"), "bob")
    fleet.desired("p1", 3)
    rejected = fleet.report("p1", 3, "rejected")
    assert re.fullmatch(r"desired config v3:\d+: sources\[1\]\.timout: unknown key 'timout' \(did you mean "
                        r"'timeout'\?\)", str(rejected["error"])), rejected["error"]
    assert rejected["running"] == desired_p1["hash"]
    services.wait_for(lambda: bool(fleet.noc("ProbeConfigRejected", "p1")), WAIT, "ProbeConfigRejected for p1")
    (alert,) = fleet.noc("ProbeConfigRejected", "p1")
    assert "sources[1].timout: unknown key 'timout'" in alert["annotations"]["description"]
    after = int(rejected["at_ns"])
    services.wait_for(lambda: fleet.points("cellular", "p1", after_ns=after) >= 3
                      and fleet.points("device", "p1", '"device":"sw-new"', after_ns=after) >= 2, WAIT,
                      "p1's readings after the rejection (its v2 still runs)")
    status = fleet.centre.cli("fleet", "status")
    assert status.returncode == 0, status.stderr
    line = next(x for x in status.stdout.splitlines() if x.startswith("p1 "))
    assert line.startswith("p1 (fz): rejected, drift;") and "sources[1].timout: unknown key 'timout'" in line
    for agent in fleet.agents.values():
        assert agent.alive(), agent.log_tail(30)
    print(f"\nfleet config timings: p1 v2 publish -> applied report {seconds(applied, desired_p1):.3f} s "
          f"(the agent's switch {applied['seconds']} s); p2 v2 publish -> rolled_back report {rollback_s:.3f} s "
          f"(dead-man {DEADMAN_S} s)")
