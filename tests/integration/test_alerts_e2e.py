"""Alerts end to end, real parts: snmpd, pty modems, mosquitto, a real agent and collector, Alertmanager and
webhook receivers.

The zone: one probe (p1) with two modems (Viettel, VinaPhone) polls a fibre switch (snmpd on this machine).
Viettel's route into the park is a redundancy group of two links, the switch's interfaces ``A`` and ``B``:
veth pairs whose far ends live in a network namespace the test creates. Cutting a fibre is taking the far
end down: the switch's side then reads oper down while admin up, as a real cut fibre does.

Receivers: each carrier has a webhook (ZoneWatch sends it directly), the NOC has one, and Alertmanager gets
every alert through its API v2 with the configuration ``render-alertmanager`` makes from the inventory
(routes per carrier, the ServiceOutage-over-RedundancyLost inhibition), delivering to the same webhooks
under its own receiver names.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from agent.sim.modem import SimModem
from collector.alerting import amconfig
from collector.alerting.config import AlertingConfig
from collector.inventory import Inventory
from collector.storage import SqliteStorage
from collector.storage.sqlite import SqliteWriter
from tests import services
from tests.services import WebhookServer
from zonewatch import strict

pytestmark = pytest.mark.integration

WAIT = 30.0
TAG = f"{os.getpid() % 100000}"
NS = f"zwe2e{TAG}"
IF_A, IF_B = f"zwa{TAG}", f"zwb{TAG}"          # the switch's side (this namespace, seen by snmpd)
FAR_A, FAR_B = f"zwfa{TAG}", f"zwfb{TAG}"      # the far ends (the test's namespace)


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def inventory_text(hooks: str) -> str:
    return f"""\
zones:
  e2e: {{name: E2E Park, areas: [gate-a], thresholds: {{default: {{hole_dbm: -110, fair_dbm: -100}}}}}}
carriers:
  viettel: {{plmn: 452-04, name: Viettel, notify: [{{type: webhook, url: "{hooks}/viettel"}}]}}
  vinaphone: {{plmn: 452-02, name: VinaPhone, notify: [{{type: webhook, url: "{hooks}/vinaphone"}}]}}
sites:
  pop-1: {{zone: e2e, area: gate-a, kind: fibre_pop, owners: [viettel]}}
devices:
  edge-sw: {{site: pop-1, kind: switch, owners: [viettel], probe: p1}}
links:
  vt-primary: {{device: edge-sw, ifname: {IF_A}, carriers: [viettel]}}
  vt-backup: {{device: edge-sw, ifname: {IF_B}, carriers: [viettel]}}
redundancy_groups:
  vt-fibre:
    zone: e2e
    carriers: [viettel]
    members: [{{link: vt-primary}}, {{link: vt-backup}}]
probes:
  p1:
    zone: e2e
    area: gate-a
    modems: [{{name: viettel, carrier: viettel}}, {{name: vinaphone, carrier: vinaphone}}]
"""


def alerting_text(hooks: str, am_url: str) -> str:
    return (f"alerting:\n  interval: 500ms\n  restart_grace: 0s\n"
            f"  settings: {{probe_timeout: 15s, device_down_polls: 2}}\n"
            f"  rules: {{CoverageHole: {{for: 2s}}}}\n"
            f"  alertmanager: {{url: '{am_url}', resend_interval: 5s}}\n"
            f"  delivery: direct\n"
            f"  noc: [{{type: webhook, url: '{hooks}/noc'}}]\n")


class Zone:
    """Everything the test runs; ``close()`` stops it all and deletes the namespace."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started_at = datetime.now(timezone.utc)
        self.started: list[Any] = []
        self.hooks = WebhookServer().start()
        self.started.append(self.hooks)
        ip("netns", "add", NS)
        for near, far in ((IF_A, FAR_A), (IF_B, FAR_B)):
            ip("link", "add", near, "type", "veth", "peer", "name", far, "netns", NS)
            ip("link", "set", near, "up")
            ip("-n", NS, "link", "set", far, "up")
        self.modems = {"viettel": SimModem(), "vinaphone": SimModem()}
        for name, plmn in (("viettel", "45204"), ("vinaphone", "45202")):
            self.modems[name].set_registered(True, plmn=plmn)
            self.modems[name].set_signal(-85, -9)
            self.modems[name].start()
        self.snmpd = services.start_snmpd(tmp / "snmpd")
        self.started.append(self.snmpd)
        self.broker = services.start_mosquitto(tmp / "mosquitto")
        self.started.append(self.broker)
        inv_path = tmp / "inventory.yaml"
        inv_path.write_text(inventory_text(self.hooks.url))
        collector_yaml = (f"mqtt: {{host: 127.0.0.1, port: {self.broker.port}, client_id: zw-e2e}}\n"
                          f"storage: {{type: sqlite, path: '{tmp / 'store.db'}'}}\n"
                          f"queue: {{path: '{tmp / 'intake.db'}'}}\nhttp: {{enabled: false}}\n"
                          f"inventory: inventory.yaml\n")
        # Alertmanager, configured from the inventory as an operator would (group_wait 0: a test, not a NOC).
        inventory = strict.load(Inventory, inv_path.read_text(), "inventory.yaml")
        placeholder = strict.load(AlertingConfig, f"noc: [{{type: webhook, url: '{self.hooks.url}/noc'}}]\n")
        timing = amconfig.Timing(group_wait="0s", group_interval="100ms", repeat_interval="1h")
        written = amconfig.write(inventory, placeholder, tmp / "am-config" / "alertmanager.yml", timing=timing)
        self.am = services.start_alertmanager(tmp / "am", written[-1][0].read_text())
        self.started.append(self.am)
        (tmp / "collector.yaml").write_text(collector_yaml + alerting_text(self.hooks.url, self.am.url))
        self.collector = self.start_collector()
        self.started.append(self.collector)
        (tmp / "agent.yaml").write_text(
            "probe: {id: p1, zone: e2e, area: gate-a}\n"
            f"mqtt: {{host: 127.0.0.1, port: {self.broker.port}, keepalive: 5s}}\n"
            f"spool: {{path: '{tmp / 'spool.db'}'}}\nmetrics: {{enabled: false}}\nself_interval: 5s\nsources:\n"
            f"  - {{type: snmp, name: edge-sw, host: 127.0.0.1, port: {self.snmpd.port}, version: v2c, "
            f"community: public, interval: 1s, timeout: 1s, retries: 0, site: pop-1, "
            f"links: {{{IF_A}: vt-primary, {IF_B}: vt-backup}}}}\n"
            + "".join(f"  - {{type: cellular, name: {name}, port: {m.port}, interval: 1s, timeout: 1s}}\n"
                      for name, m in self.modems.items()))
        agent_log = tmp / "agent" / "agent.log"
        self.agent = services.start_zonewatch("agent", ["-c", str(tmp / "agent.yaml"), "run"], tmp / "agent",
                                              ready=lambda: " running " in agent_log.read_text())
        self.started.append(self.agent)
        self.store = SqliteWriter(SqliteStorage(type="sqlite", path=str(tmp / "store.db")))

    def start_collector(self) -> services.Service:
        return services.start_collector(self.tmp / "collector.yaml", self.tmp / "collector")

    def restart_collector(self) -> None:
        self.collector.stop()
        index = self.started.index(self.collector)
        self.collector = self.start_collector()
        self.started[index] = self.collector

    def cut(self, far: str) -> None:
        ip("-n", NS, "link", "set", far, "down")

    def restore(self, *fars: str) -> None:
        for far in fars:
            ip("-n", NS, "link", "set", far, "up")

    def latest(self, measurement: str, field: str, **tags: str) -> float | None:
        """Return the newest stored value of ``field`` in the one series matching ``tags``."""
        try:
            points = self.store.latest(measurement, field, tags)
        except Exception:  # the collector has not created its tables yet
            return None
        assert len(points) <= 1, points
        return float(points[0].value) if points else None

    def members_up(self) -> float | None:
        return self.latest("redundancy", "members_up", group="vt-fibre")

    def direct(self, path: str) -> list[tuple[str, str]]:
        """(status, alertname) that ZoneWatch itself sent to the webhook at ``/path``, in arrival order.

        Both senders name the receiver alike (``viettel``, ``noc``); Alertmanager sets ``externalURL`` to its
        own address, the collector (with no ``external_url`` configured here) leaves it empty.
        """
        return [(a["status"], a["labels"]["alertname"]) for h in self.hooks.at(f"/{path}")
                if not h.body["externalURL"] for a in h.body["alerts"]]

    def via_alertmanager(self, path: str) -> list[tuple[str, str]]:
        """(status, alertname) that Alertmanager delivered to the webhook at ``/path``."""
        return [(a["status"], a["labels"]["alertname"]) for h in self.hooks.at(f"/{path}")
                if h.body["externalURL"] for a in h.body["alerts"]]

    def wait_direct(self, carrier: str, expected: tuple[str, str], what: str) -> None:
        services.wait_for(lambda: expected in self.direct(carrier), WAIT, f"{what}; {carrier} got "
                          f"{self.direct(carrier)}")

    def close(self) -> None:
        for part in reversed(self.started):
            part.stop()
        for m in self.modems.values():
            m.stop()
        subprocess.run(["ip", "netns", "del", NS], capture_output=True, timeout=10)
        for near in (IF_A, IF_B):
            subprocess.run(["ip", "link", "del", near], capture_output=True, timeout=10)


@pytest.fixture(scope="module")
def zone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zone]:
    z = Zone(tmp_path_factory.mktemp("e2e"))
    try:
        services.wait_for(lambda: z.members_up() == 2, 60, "the collector to see both of Viettel's links up")
        yield z
    finally:
        z.close()


def test_1_a_healthy_zone_pages_nobody(zone: Zone) -> None:
    # The fixture waited until the collector judged the group with data from the switch.
    assert zone.hooks.hooks == []


def test_2_cutting_the_primary_tells_viettel_redundancy_is_lost_and_nobody_else(zone: Zone) -> None:
    zone.cut(FAR_A)
    zone.wait_direct("viettel", ("firing", "RedundancyLost"), "RedundancyLost to Viettel")
    zone.wait_direct("viettel", ("firing", "LinkDown"), "LinkDown of the primary to Viettel")
    services.wait_for(lambda: ("firing", "RedundancyLost") in zone.via_alertmanager("viettel"), WAIT,
                      "Alertmanager to deliver RedundancyLost to Viettel")
    assert zone.hooks.at("/vinaphone") == []
    assert ("firing", "ServiceOutage") not in zone.direct("viettel")


def test_3_cutting_the_backup_is_an_outage_and_mutes_redundancy_lost(zone: Zone) -> None:
    before = zone.direct("viettel").count(("firing", "RedundancyLost"))
    zone.cut(FAR_B)
    zone.wait_direct("viettel", ("firing", "ServiceOutage"), "ServiceOutage to Viettel")
    # The NOC's copy comes through its own outbox, maybe a little later: the next test compares everything
    # each receiver has against what it had before a restart, so all of this cut's pages must be in by then.
    zone.wait_direct("noc", ("firing", "ServiceOutage"), "ServiceOutage to the NOC")
    services.wait_for(lambda: zone.latest("alert", "muted", alertname="RedundancyLost") == 1, WAIT,
                      "RedundancyLost stored as muted")
    assert zone.direct("viettel").count(("firing", "RedundancyLost")) == before
    assert ("resolved", "RedundancyLost") not in zone.direct("viettel")
    assert zone.hooks.at("/vinaphone") == []


def test_3b_a_collector_restart_neither_pages_again_nor_forgets(zone: Zone) -> None:
    before = {path: list(zone.direct(path)) for path in ("noc", "viettel", "vinaphone")}
    # The restarted collector judges the group again (both links still cut) and says nothing new. The time is
    # taken once the old collector is gone: the new one may judge within milliseconds of subscribing, before
    # the test sees it ready.
    zone.collector.stop()
    restarted = time.time_ns()
    zone.restart_collector()
    services.wait_for(lambda: zone.latest("redundancy", "members_up", group="vt-fibre") == 0
                      and (zone.store.latest("redundancy", "members_up", {"group": "vt-fibre"})[0].time_ns
                           > restarted), WAIT, "the restarted collector to judge the group")
    time.sleep(2)  # a few evaluations after that: any repeat page would have been sent by now
    assert {path: zone.direct(path) for path in before} == before


def test_4_restoring_both_resolves_both_outage_first(zone: Zone) -> None:
    zone.restore(FAR_A, FAR_B)
    zone.wait_direct("viettel", ("resolved", "RedundancyLost"), "RedundancyLost resolved")
    zone.wait_direct("viettel", ("resolved", "ServiceOutage"), "ServiceOutage resolved")
    sent = zone.direct("viettel")
    assert sent.index(("resolved", "ServiceOutage")) < sent.index(("resolved", "RedundancyLost"))
    assert sent.count(("resolved", "RedundancyLost")) == 1 and sent.count(("resolved", "ServiceOutage")) == 1
    services.wait_for(lambda: ("resolved", "ServiceOutage") in zone.via_alertmanager("viettel"), WAIT,
                      "Alertmanager to deliver the outage's resolve")
    assert zone.hooks.at("/vinaphone") == []


def test_5_a_coverage_hole_for_one_carrier_in_one_area(zone: Zone) -> None:
    zone.modems["viettel"].set_signal(-118, -16)
    zone.wait_direct("viettel", ("firing", "CoverageHole"), "CoverageHole to Viettel")
    (labels,) = [a["labels"] for h in zone.hooks.at("/viettel") if not h.body["externalURL"]
                 for a in h.body["alerts"] if a["labels"]["alertname"] == "CoverageHole"]
    assert (labels["carrier"], labels["area"], labels["zone"]) == ("452-04", "gate-a", "e2e")
    zone.modems["viettel"].set_signal(-85, -9)
    zone.wait_direct("viettel", ("resolved", "CoverageHole"), "CoverageHole resolved")
    # The NOC's copy comes through its own outbox, maybe a little later: the next test counts what each
    # receiver gets after the probe is killed, so this resolve must be in by then.
    zone.wait_direct("noc", ("resolved", "CoverageHole"), "CoverageHole resolved to the NOC")
    assert zone.hooks.at("/vinaphone") == []


def test_6_a_killed_probe_is_probe_down_and_no_device_down_storm(zone: Zone) -> None:
    seen = {path: len(zone.direct(path)) for path in ("noc", "viettel", "vinaphone")}
    zone.agent.proc.send_signal(signal.SIGKILL)
    zone.agent.proc.wait(10)
    services.wait_for(lambda: ("firing", "ProbeDown") in zone.direct("noc")[seen["noc"]:], WAIT,
                      "ProbeDown to the NOC (the probe's last will)")
    # Watch long enough for DeviceDown to have fired several times over had the switch been judged down
    # (2 polls of 1 s), and for the probe's silence to pass probe_timeout (15 s).
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        new = {path: zone.direct(path)[n:] for path, n in seen.items()}
        assert new["noc"] == [("firing", "ProbeDown")], new
        assert new["viettel"] == [] and new["vinaphone"] == [], new
        time.sleep(0.5)


def test_7_the_zone_report_counts_the_outage_and_the_lost_redundancy(zone: Zone) -> None:
    # The zone authority's report, from what this run's collector stored (its SQLite store): the group was
    # degraded from the primary's cut to the restore, and in outage while both were cut.
    out = zone.tmp / "report"
    end = datetime.now(timezone.utc) + timedelta(seconds=1)
    proc = subprocess.run([sys.executable, "-m", "collector", "-c", str(zone.tmp / "collector.yaml"), "report",
                           "--zone", "e2e", "--from", zone.started_at.isoformat(), "--to", end.isoformat(),
                           "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    (group,) = csv.DictReader((out / "redundancy.csv").read_text().splitlines())
    assert (group["group"], group["carrier"]) == ("vt-fibre", "452-04")
    assert float(group["outage_min"]) > 0 and float(group["degraded_min"]) > 0, group
    outages = list(csv.DictReader((out / "outages.csv").read_text().splitlines()))
    kinds = {(o["kind"], o["name"]) for o in outages}
    assert {("service_outage", "vt-fibre"), ("link_down", "vt-primary"), ("link_down", "vt-backup")} <= kinds, kinds
    assert all(o["ongoing"] == "no" for o in outages if o["kind"] != "no_service"), outages
