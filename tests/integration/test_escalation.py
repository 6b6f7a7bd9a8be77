"""Acknowledgement and escalation against real receivers: two webhook servers (the carrier's first line, and
its NOC and the zone authority behind it), the real dispatcher and escalation outboxes delivering over HTTP, the
alert engine judging real link polls at injected times, and the acknowledgement API on the collector's bounded
HTTP server on a free loopback port.

Two Viettel links are cut. One is acknowledged through the API by the carrier (after the API refused a request
without a token, one with a wrong token, and VinaPhone's token); the other is not and escalates to the carrier's
NOC after 15 minutes and to the zone authority after 45. When the links come back, the resolve reaches everyone
who was notified, and the acknowledged alert's resolve says who took it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from collector.alerting.ackapi import API_PATH, AckApi, with_acks
from collector.alerting.acks import AckStore
from collector.alerting.config import AlertingConfig
from collector.alerting.engine import AlertEngine
from collector.alerting.notify import Dispatcher
from collector.alerting.responder import Responder
from collector.inventory import Inventory
from tests.services import WebhookServer, wait_for
from zonewatch import strict, wire
from zonewatch.httpd import BoundedHttpServer, HttpLimits

pytestmark = pytest.mark.integration

S = 1_000_000_000
M = 60 * S
T0 = 1_764_288_000 * S
VIETTEL_TOKEN = "viettel-ack-token-5566778899"
VINAPHONE_TOKEN = "vinaphone-ack-token-1122334455"


def inventory_text(first: str, behind: str) -> str:
    return f"""
zones: {{dv: {{name: Dinh Vu}}}}
contacts:
  authority: [{{type: webhook, url: "{behind}/authority"}}]
carriers:
  viettel:
    plmn: 452-04
    name: Viettel
    notify: [{{type: webhook, url: "{first}/viettel"}}]
    escalation:
      - {{after: 15m, notify: [{{type: webhook, url: "{behind}/viettel-noc"}}]}}
      - {{after: 45m, notify: [authority]}}
  vinaphone:
    plmn: 452-02
    name: VinaPhone
    notify: [{{type: webhook, url: "{first}/vinaphone"}}]
sites: {{pop: {{zone: dv, kind: fibre_pop, owners: [viettel, vinaphone]}}}}
devices: {{sw: {{site: pop, kind: switch, probe: p1}}}}
links:
  vt-1: {{device: sw, ifname: xe-1, carriers: [viettel]}}
  vt-2: {{device: sw, ifname: xe-2, carriers: [viettel]}}
  vn-1: {{device: sw, ifname: xe-3, carriers: [vinaphone]}}
probes: {{p1: {{zone: dv}}}}
"""


class Zone:
    """The engine, dispatcher and responder of one collector, and the acknowledgement API, driven at given times."""

    def __init__(self, tmp: Path, first: WebhookServer, behind: WebhookServer) -> None:
        self.cfg = strict.load(AlertingConfig, f"""
state_path: '{tmp / "alerts.db"}'
outbox_dir: '{tmp / "outbox"}'
restart_grace: 0s
retry: {{initial: 50ms, max: 200ms}}
acks:
  tokens:
    viettel: {{token: {VIETTEL_TOKEN}, carrier: 452-04}}
    vinaphone: {{token: {VINAPHONE_TOKEN}, carrier: 452-02}}
""", "collector.yaml")
        self.inventory = strict.load(Inventory, inventory_text(first.url, behind.url), "inventory.yaml")
        registry = CollectorRegistry()
        self.dispatcher = Dispatcher(self.cfg, self.inventory, None, registry)
        self.responder = Responder(self.dispatcher, AckStore(tmp / "acks.db"), self.inventory, self.cfg, registry,
                                   notify_metrics=self.dispatcher.metrics)
        self.engine = AlertEngine(self.cfg, self.inventory, self.responder, lambda batches: None, registry,
                                  clock=lambda: T0)
        self.engine.on_tick = self.responder.tick
        self.now = T0
        api = AckApi(self.responder.store, self.cfg.acks.tokens, registry, clock=lambda: self.now)
        self.http = BoundedHttpServer("127.0.0.1:0", with_acks(api, _not_found), HttpLimits(max_body=4096))
        self.seq = 0

    def start(self) -> None:
        self.dispatcher.start()
        self.responder.start()
        self.http.start()

    def stop(self) -> None:
        self.http.stop()
        self.responder.stop()
        self.dispatcher.stop()
        self.engine.tracker.close()

    def run(self, until_min: int, down: set[str]) -> None:
        """Poll every minute up to ``until_min`` with the links in ``down`` cut, evaluating after each poll."""
        while self.now < T0 + until_min * M:
            self.now += M
            self.seq += 1
            samples = tuple(wire.Sample("interface", {"device": "sw", "ifname": ifname, "link": link},
                                        {"oper_up": link not in down, "admin_up": True}, self.now)
                            for ifname, link in (("xe-1", "vt-1"), ("xe-2", "vt-2"), ("xe-3", "vn-1")))
            samples += (wire.Sample("device", {"device": "sw", "site": "pop"}, {"up": True}, self.now),)
            batch = wire.Batch("dv", "p1", self.seq, self.now, samples)
            self.engine.ingest([(wire.topic("dv", "p1", "data"), wire.encode(batch), self.now)])
            self.engine.step(self.now)

    def api(self, method: str, path: str, token: str | None = None, body: object = None) -> tuple[int, Any]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.http.port}{path}", method=method,
                                         data=None if body is None else json.dumps(body).encode())
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as err:
            with err:
                return err.code, json.loads(err.read())


def _not_found(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("404 Not Found", [("Content-Length", "0")])
    return []


@pytest.fixture
def zone(tmp_path: Path) -> Iterator[tuple[Zone, WebhookServer, WebhookServer]]:
    first, behind = WebhookServer().start(), WebhookServer().start()
    z = Zone(tmp_path, first, behind)
    try:
        z.start()
        yield z, first, behind
    finally:
        z.stop()
        first.stop()
        behind.stop()


def links(server: WebhookServer, path: str) -> list[tuple[str, str]]:
    return [(a["status"], a["labels"]["link"]) for h in server.at(path) for a in h.body["alerts"]
            if a["labels"]["alertname"] == "LinkDown"]


def test_unacked_escalates_acked_does_not_the_ack_shows_who_and_the_resolve_reaches_everyone(
        zone: tuple[Zone, WebhookServer, WebhookServer]) -> None:
    z, first, behind = zone
    z.run(2, down=set())
    z.run(5, down={"vt-1", "vt-2", "vn-1"})
    wait_for(lambda: len(links(first, "/viettel")) == 2, 20, "both Viettel LinkDowns at the first line")
    code, listed = z.api("GET", API_PATH, VIETTEL_TOKEN)
    assert code == 200
    refs = {a["labels"]["link"]: a["ref"] for a in listed["alerts"]}
    assert sorted(refs) == ["vt-1", "vt-2"]      # VinaPhone's alert is not Viettel's to see

    ack = f"{API_PATH}/{refs['vt-2']}/ack"
    assert z.api("POST", ack, None, {"by": "intruder"})[0] == 401
    assert z.api("POST", ack, "viettel-ack-token-wrong-0000", {"by": "intruder"})[0] == 401
    assert z.api("POST", ack, VINAPHONE_TOKEN, {"by": "competitor"})[0] == 404
    code, taken = z.api("POST", ack, VIETTEL_TOKEN, {"by": "Minh (Viettel NOC)", "comment": "splicing crew sent"})
    assert code == 200 and taken["acknowledged"]["at"] == "2025-11-28T00:05:00Z"

    z.run(25, down={"vt-1", "vt-2", "vn-1"})
    wait_for(lambda: links(behind, "/viettel-noc") == [("firing", "vt-1")], 20, "vt-1 escalated to the carrier's NOC")
    (hook,) = behind.at("/viettel-noc")
    assert hook.body["alerts"][0]["annotations"]["escalation"] == "step 1: unacknowledged for 15 min since it paged"
    assert behind.at("/authority") == []

    z.run(55, down={"vt-1", "vt-2", "vn-1"})
    wait_for(lambda: links(behind, "/authority") == [("firing", "vt-1")], 20, "vt-1 escalated to the authority")
    z.run(60, down=set())
    wait_for(lambda: len(links(first, "/viettel")) == 4, 20, "both resolves at the first line")
    wait_for(lambda: len(links(behind, "/authority")) == 2, 20, "the resolve at the authority")
    assert links(behind, "/viettel-noc") == [("firing", "vt-1"), ("resolved", "vt-1")]
    assert links(behind, "/authority") == [("firing", "vt-1"), ("resolved", "vt-1")]
    ends = {a["labels"]["link"]: a["annotations"] for h in first.at("/viettel") for a in h.body["alerts"]
            if a["status"] == "resolved"}
    assert ends["vt-2"]["acknowledged_by"] == "Minh (Viettel NOC)"
    assert ends["vt-2"]["acknowledged_comment"] == "splicing crew sent"
    assert "acknowledged_by" not in ends["vt-1"]
    assert [(s, link) for s, link in links(first, "/vinaphone")] == [("firing", "vn-1"), ("resolved", "vn-1")]
    assert z.responder.store.open_incidents() == []
