"""Maintenance windows end to end, real parts: mosquitto behind TLS with the rendered ACL and passwords, the
collector (its own process, SQLite store), a real Alertmanager configured from the inventory, and a webhook per
carrier and for the NOC. A scripted probe publishes real wire batches (polls of switch sw-1 and its link
vt-primary) through the broker.

The windows are declared with the command line while the collector runs (no restart):

- fibre works on vt-primary (Viettel's): the link goes down inside the window: nobody is paged, directly or through
  Alertmanager, and the store holds the LinkDown firing, muted, tagged with the window;
- the link is still down when the window ends: LinkDown pages Viettel as itself, and MaintenanceOverrun too, both
  directly and through Alertmanager; when the link is back, both resolves reach the webhook and Alertmanager;
- Viettel declares works on the BTS site it shares with VinaPhone: VinaPhone (and only it, besides the NOC) gets
  MaintenanceActive when the window opens, and its resolve when it closes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from collector.alerting import amconfig
from collector.alerting.config import AlertingConfig
from collector.inventory import Inventory
from collector.storage import SqliteStorage
from collector.storage.sqlite import SqliteWriter
from tests import services
from tests.centre import Centre
from zonewatch import strict, wire

pytestmark = pytest.mark.integration

WAIT = 30.0
ZONE = "mw"
VT, VN = "452-04", "452-02"
WINDOW_S = 25   # how long the windows stay open after they are declared


def inventory_text(hooks: str) -> str:
    return f"""\
zones:
  {ZONE}: {{name: Maintenance Park, areas: [gate-a]}}
carriers:
  viettel: {{plmn: {VT}, name: Viettel, notify: [{{type: webhook, url: "{hooks}/viettel"}}]}}
  vinaphone: {{plmn: {VN}, name: VinaPhone, notify: [{{type: webhook, url: "{hooks}/vinaphone"}}]}}
sites:
  pop-1: {{zone: {ZONE}, area: gate-a, kind: fibre_pop, owners: [viettel]}}
  bts-site: {{zone: {ZONE}, area: gate-a, kind: bts, owners: [viettel, vinaphone]}}
devices:
  sw-1: {{site: pop-1, kind: switch, owners: [viettel], probe: p1}}
  bts-7: {{site: bts-site, kind: bts, owners: [viettel, vinaphone], probe: p1}}
links:
  vt-primary: {{device: sw-1, ifname: xe-0/0/1, carriers: [viettel]}}
probes:
  p1: {{zone: {ZONE}, area: gate-a}}
"""


class Probe:
    """Publishes p1's polls every 500 ms: both devices answer; vt-primary is up while ``link_up`` is set."""

    def __init__(self, port: int, ca: Path, password: str) -> None:
        self.link_up = True
        self.seq = 0
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="p1",
                                  protocol=mqtt.MQTTv5)
        self.client.tls_set(ca_certs=str(ca))
        self.client.username_pw_set("p1", password)
        self.client.will_set(wire.topic(ZONE, "p1", "status"), wire.STATUS_OFFLINE, qos=1, retain=True)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        status = wire.topic(ZONE, "p1", "status")
        self.client.publish(status, wire.STATUS_ONLINE, qos=1, retain=True).wait_for_publish(5)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.time_ns()
            self.seq += 1
            samples = (
                wire.Sample("device", {"device": "sw-1", "site": "pop-1"}, {"up": True}, now),
                wire.Sample("device", {"device": "bts-7", "site": "bts-site"}, {"up": True}, now),
                wire.Sample("interface", {"device": "sw-1", "ifname": "xe-0/0/1", "link": "vt-primary"},
                            {"oper_up": self.link_up, "admin_up": True}, now),
            )
            batch = wire.Batch(ZONE, "p1", self.seq, now, samples)
            self.client.publish(wire.topic(ZONE, "p1", "data"), wire.encode(batch), qos=1)
            self._stop.wait(0.5)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.client.disconnect()
        self.client.loop_stop()


class Zone:
    """The centre (broker, collector, webhooks), Alertmanager and the probe; all of it stopped with the centre."""

    def __init__(self, centre: Centre) -> None:
        self.centre = centre
        tmp = centre.tmp
        self.hooks = centre.hooks
        inventory = strict.load(Inventory, centre.inventory.read_text(), "inventory.yaml")
        placeholder = strict.load(AlertingConfig, f"noc: [{{type: webhook, url: '{self.hooks.url}/noc'}}]\n")
        timing = amconfig.Timing(group_wait="0s", group_interval="100ms", repeat_interval="1h")
        written = amconfig.write(inventory, placeholder, tmp / "am-config" / "alertmanager.yml", timing=timing)
        self.am = centre.keep(services.start_alertmanager(tmp / "am", written[-1][0].read_text()))
        centre.write_config(alerting={"interval": "500ms", "restart_grace": "0s",
                                      "alertmanager": {"url": self.am.url, "resend_interval": "5s"}})
        centre.start_collector()
        self.probe = centre.keep(Probe(centre.broker.port, centre.ca, centre.passwords["p1"]))
        self.store = SqliteWriter(SqliteStorage(type="sqlite", path=str(centre.store)))

    def maintenance(self, *args: str) -> str:
        """Run ``zonewatch-collector maintenance ...`` as an operator would; return its output."""
        done = self.centre.cli("maintenance", *args)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def direct(self, path: str) -> list[tuple[str, str]]:
        """(status, alertname) the collector itself sent to ``/path`` (Alertmanager sets externalURL)."""
        return [(a["status"], a["labels"]["alertname"]) for h in self.hooks.at(f"/{path}")
                if not h.body["externalURL"] for a in h.body["alerts"]]

    def via_alertmanager(self, path: str) -> list[tuple[str, str]]:
        return [(a["status"], a["labels"]["alertname"]) for h in self.hooks.at(f"/{path}")
                if h.body["externalURL"] for a in h.body["alerts"]]

    def everywhere(self, path: str) -> list[tuple[str, str]]:
        return self.direct(path) + self.via_alertmanager(path)

    def wait(self, condition: Any, what: str) -> None:
        services.wait_for(condition, WAIT, f"{what}; viettel got {self.everywhere('viettel')}, vinaphone got "
                          f"{self.everywhere('vinaphone')}, noc got {self.everywhere('noc')}")

    def polled(self) -> bool:
        try:
            return self.store.latest("interface", "oper_up", {"link": "vt-primary"}) != []
        except Exception:  # the collector has not created its tables yet
            return False

    def link_down_points(self) -> list[tuple[dict[str, str], float, float]]:
        """(tags, firing, muted) of the newest stored LinkDown point of each series."""
        try:
            firing = self.store.latest("alert", "firing", {"alertname": "LinkDown"})
            muted = {tuple(sorted(p.tags.items())): p.value
                     for p in self.store.latest("alert", "muted", {"alertname": "LinkDown"})}
        except Exception:  # the collector has not created its tables yet
            return []
        return [(dict(p.tags), float(p.value), float(muted.get(tuple(sorted(p.tags.items())), -1))) for p in firing]


@pytest.fixture(scope="module")
def zone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zone]:
    with Centre(tmp_path_factory.mktemp("maintenance"), inventory_text, ca_name="maintenance test CA") as centre:
        yield Zone(centre)


def test_a_window_mutes_the_outage_pages_its_overrun_and_alertmanager_gets_every_resolve(zone: Zone) -> None:
    zone.wait(zone.polled, "the probe's polls in the store")
    now = datetime.now(timezone.utc)
    start, end = (now - timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M:%S"), \
        (now + timedelta(seconds=WINDOW_S)).strftime("%Y-%m-%d %H:%M:%S")
    out = zone.maintenance("add", "--link", "vt-primary", "--start", start, "--end", end, "--tz", "UTC",
                           "--ticket", "VT-CHG-1001", "--by", "noc.duty", "--carrier", "viettel", "--id", "fibre")
    assert "declared fibre: link vt-primary" in out
    out = zone.maintenance("add", "--site", "bts-site", "--start", start, "--end", end, "--tz", "UTC",
                           "--ticket", "VT-CHG-1002", "--by", "nguyen.van.a", "--carrier", "viettel", "--id", "bts")
    assert "VinaPhone (452-02)" in out

    # The co-owner of the shared site hears of Viettel's window as it opens; Viettel, who declared both, does not.
    zone.wait(lambda: ("firing", "MaintenanceActive") in zone.direct("vinaphone")
              and ("firing", "MaintenanceActive") in zone.via_alertmanager("vinaphone"),
              "MaintenanceActive to VinaPhone, directly and through Alertmanager")

    zone.probe.link_up = False
    zone.wait(lambda: any(t.get("maintenance") == "fibre" and f == 1 and m == 1 for t, f, m in zone.link_down_points()),
              "LinkDown stored firing, muted, tagged with the window")
    time.sleep(2)   # a second evaluation and a resend to Alertmanager: still nobody paged
    for path in ("viettel", "vinaphone", "noc"):
        assert not [n for n in zone.everywhere(path) if n[1] == "LinkDown"], (path, zone.everywhere(path))

    # The window ends with the link still down: LinkDown pages as itself, MaintenanceOverrun too.
    zone.wait(lambda: {("firing", "LinkDown"), ("firing", "MaintenanceOverrun")} <= set(zone.direct("viettel"))
              and {("firing", "LinkDown"), ("firing", "MaintenanceOverrun")} <= set(zone.via_alertmanager("viettel")),
              "LinkDown and MaintenanceOverrun to Viettel after the window, directly and through Alertmanager")
    # Each receiver has its own outbox: VinaPhone's resolve of the same evaluation may come after Viettel's pages.
    zone.wait(lambda: ("resolved", "MaintenanceActive") in zone.direct("vinaphone"),
              "MaintenanceActive resolved to VinaPhone directly")
    assert not [n for n in zone.everywhere("vinaphone") if n[1] in ("LinkDown", "MaintenanceOverrun")]
    zone.wait(lambda: any("maintenance" not in t and f == 1 and m == 0 for t, f, m in zone.link_down_points()),
              "LinkDown stored firing, unmuted, after the window")

    zone.probe.link_up = True
    expected = {("resolved", "LinkDown"), ("resolved", "MaintenanceOverrun")}
    zone.wait(lambda: expected <= set(zone.direct("viettel")) and expected <= set(zone.via_alertmanager("viettel"))
              and expected <= set(zone.via_alertmanager("noc")),
              "both resolves, directly and through Alertmanager")
    zone.wait(lambda: ("resolved", "MaintenanceActive") in zone.via_alertmanager("vinaphone"),
              "MaintenanceActive resolved through Alertmanager")
    # Every LinkDown series ended in the store (its points go through the intake queue after the notifications).
    zone.wait(lambda: all(f == 0 for _, f, _ in zone.link_down_points()), "every LinkDown series stored as ended")
    assert "fibre" in zone.maintenance("list", "--all")
