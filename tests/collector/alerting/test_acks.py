"""Acknowledgement and escalation: the store, the pure escalation rule, the responder between the engine and the
dispatcher, the HTTP API (called as a WSGI application) and the ``alerts``/``ack`` commands.

Time is always an argument (``T0`` plus minutes); receivers are recording fakes behind real outboxes, stepped by
hand: no sockets, no sleeps.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from collector import cli
from collector.alerting.ackapi import API_PATH, AckApi
from collector.alerting.ackconfig import AckConfig
from collector.alerting.acks import AckError, AckStore, Incident
from collector.alerting.config import AlertingConfig
from collector.alerting.escalation import Step, due, policies
from collector.alerting.model import Notification
from collector.alerting.notify.payload import am_fingerprint
from collector.alerting.responder import Responder
from collector.inventory import Inventory
from collector.report.response import rows, table
from zonewatch import strict

S = 1_000_000_000
M = 60 * S
T0 = 1_764_288_000 * S
VT, VN = "452-04", "452-02"

INVENTORY = """
zones: {dv: {name: Dinh Vu}}
contacts:
  authority: [{type: webhook, url: "http://authority.example/hook"}]
carriers:
  viettel:
    plmn: 452-04
    name: Viettel
    notify: [{type: webhook, url: "http://viettel.example/first"}]
    escalation:
      - {after: 15m, notify: [{type: webhook, url: "http://viettel.example/noc"}]}
      - {after: 45m, notify: [authority]}
  vinaphone: {plmn: 452-02, name: VinaPhone}
"""
NOC_RX = "carrier.viettel.escalation.0.webhook.0"
AUTHORITY_RX = "contact.authority.webhook.0"


def labels(link: str, carrier: str | None = VT, alertname: str = "LinkDown") -> dict[str, str]:
    out = {"alertname": alertname, "severity": "warning", "zone": "dv", "link": link}
    if carrier:
        out["carrier"] = carrier
    return out


def firing(link: str, carrier: str | None = VT, starts: int = T0) -> Notification:
    return Notification("firing", labels(link, carrier), {"summary": f"link {link} down"}, starts)


def resolved(link: str, carrier: str | None = VT, starts: int = T0, ends: int = T0) -> Notification:
    return Notification("resolved", labels(link, carrier), {"summary": f"link {link} down"}, starts, ends)


# ------------------------------------------------------------------------------------------------ the store


def test_an_alert_is_acknowledged_by_a_prefix_of_its_fingerprint_once_and_it_survives_a_restart(
        tmp_path: Path) -> None:
    store = AckStore(tmp_path / "acks.db")
    incident = store.paged(labels("vt-1"), T0, T0 + 5 * S)
    assert incident is not None and incident.fingerprint == am_fingerprint(labels("vt-1"))
    assert store.paged(labels("vt-1"), T0, T0 + 9 * S) is None          # noted once
    acked = store.acknowledge(incident.ref[:5].upper(), "Lan", "cli", T0 + 3 * M, comment="truck on the way")
    assert (acked.acked_by, acked.acked_ns, acked.comment) == ("Lan", T0 + 3 * M, "truck on the way")
    with pytest.raises(AckError, match=r"acknowledged already, by Lan at 2025-11-28T00:03:00Z") as again:
        store.acknowledge(incident.ref, "Minh", "cli", T0 + 4 * M)
    assert again.value.reason == "acked"
    store.close()

    reopened = AckStore(tmp_path / "acks.db")
    (still,) = reopened.open_incidents()
    assert still.annotations() == {"acknowledged_by": "Lan", "acknowledged_at": "2025-11-28T00:03:00Z",
                                   "acknowledged_comment": "truck on the way"}
    assert [k for k, _, _ in reopened.events(incident.fingerprint)] == ["paged", "acknowledged"]
    reopened.close()


def test_a_reference_that_is_short_ambiguous_unknown_or_resolved_is_refused_with_the_reason(tmp_path: Path) -> None:
    store = AckStore(tmp_path / "acks.db")
    found = [store.paged(labels(f"vt-{n}"), T0, T0) for n in range(40)]
    refs = [i.fingerprint for i in found if i is not None]
    shared = next(r[:1] for r in refs if sum(x.startswith(r[:1]) for x in refs) > 1)
    with pytest.raises(AckError, match="at least 4 hex digits") as short:
        store.acknowledge(shared, "Lan", "cli", T0)
    assert short.value.reason == "invalid"
    first = next(r for r in refs if sum(x.startswith(r[:4]) for x in refs) == 1)
    with pytest.raises(AckError, match="not an alert reference"):
        store.acknowledge("zzzz", "Lan", "cli", T0)
    with pytest.raises(AckError, match="the name .--by. is empty"):
        store.acknowledge(first[:4], "  ", "cli", T0)
    incident = store.find(first[:4])
    store.resolved(incident, T0 + M, T0 + M)
    with pytest.raises(AckError, match="no firing alert has the reference") as gone:
        store.acknowledge(first[:4], "Lan", "cli", T0 + 2 * M)
    assert gone.value.reason == "unknown"
    store.close()


def test_a_carrier_cannot_find_another_carriers_alert(tmp_path: Path) -> None:
    store = AckStore(tmp_path / "acks.db")
    theirs = store.paged(labels("vn-1", VN), T0, T0)
    assert theirs is not None
    with pytest.raises(AckError, match="no firing alert of carrier 452-04"):
        store.acknowledge(theirs.ref, "Lan", "api:viettel", T0, carrier=VT)
    assert store.open_incidents()[0].acked_ns is None
    store.close()


# ------------------------------------------------------------------------------------------------ escalation


STEPS = {VT: [Step(15 * M, ("noc",)), Step(45 * M, ("authority",))]}


def incident(**kw: Any) -> Incident:
    return Incident(**{"fingerprint": "f" * 16, "starts_ns": T0, "labels": labels("vt-1"), "paged_ns": T0, **kw})


@pytest.mark.parametrize(("case", "now", "expected"), [
    (incident(), T0 + 15 * M - 1, []),
    (incident(), T0 + 15 * M, [0]),
    (incident(steps=1), T0 + 30 * M, []),
    (incident(steps=1), T0 + 45 * M, [1]),
    (incident(), T0 + 2 * 60 * M, [0, 1]),                       # both missed while the collector was down
    (incident(steps=2), T0 + 10 * 60 * M, []),                  # nothing after the last step
    (incident(acked_ns=T0 + M), T0 + 60 * M, []),               # an ack stops it
    (incident(resolved_ns=T0 + M, ends_ns=T0 + M), T0 + 60 * M, []),
    (incident(labels=labels("vt-1", None)), T0 + 60 * M, []),    # the NOC's own alert
    (incident(labels=labels("vn-1", VN)), T0 + 60 * M, []),      # a carrier without steps
])
def test_escalation_steps_fall_due_by_time_unacknowledged(case: Incident, now: int, expected: list[int]) -> None:
    assert [index for _, index, _ in due([case], STEPS, now)] == expected


def test_steps_name_their_receivers_and_a_contact_is_one_receiver_for_every_carrier() -> None:
    inventory = strict.load(Inventory, INVENTORY, "inventory.yaml")
    found = policies(inventory)
    assert found.steps == {VT: [Step(15 * M, (NOC_RX,)), Step(45 * M, (AUTHORITY_RX,))]}
    assert sorted(found.receivers) == [NOC_RX, AUTHORITY_RX]


def test_an_escalation_step_naming_an_unknown_contact_or_out_of_order_is_refused_with_its_line() -> None:
    bad = INVENTORY.replace("notify: [authority]", "notify: [authorty]")
    with pytest.raises(strict.ConfigError, match=r"inventory.yaml:12: carriers.viettel.escalation\[1\].notify\[0\]: "
                       r"unknown contact 'authorty' \(known: authority\)"):
        strict.load(Inventory, bad, "inventory.yaml")
    bad = INVENTORY.replace("after: 45m", "after: 10m")
    with pytest.raises(strict.ConfigError, match=r"inventory.yaml:12: carriers.viettel.escalation\[1\].after: each "
                       "step comes later than the one before"):
        strict.load(Inventory, bad, "inventory.yaml")


# ------------------------------------------------------------------------------------------------ the responder


class Forward:
    def __init__(self) -> None:
        self.sent: list[Notification] = []
        self.synced: list[list[Notification]] = []

    def submit(self, notifications: Sequence[Notification]) -> None:
        self.sent.extend(notifications)

    def sync_alertmanager(self, firing: Sequence[Notification], now_ns: int) -> None:
        self.synced.append(list(firing))


class Recorder:
    def __init__(self) -> None:
        self.got: list[tuple[str, str, dict[str, str]]] = []

    def notify(self, notifications: Sequence[Notification]) -> None:
        self.got += [(n.status, n.labels["link"], dict(n.annotations)) for n in notifications]

    def close(self) -> None:
        pass


class Rig:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.forward = Forward()
        self.rx = {NOC_RX: Recorder(), AUTHORITY_RX: Recorder()}
        self.responder = self.make()

    def make(self) -> Responder:
        cfg = strict.load(AlertingConfig, f"outbox_dir: '{self.tmp / 'outbox'}'")
        inventory = strict.load(Inventory, INVENTORY, "inventory.yaml")
        r = Responder(self.forward, AckStore(self.tmp / "acks.db"), inventory, cfg, CollectorRegistry(),
                      notifiers=self.rx)
        r.open()
        return r

    def deliver(self) -> None:
        for box in self.responder.outboxes.values():
            while box.step(0.0) is not None:
                pass

    def got(self, receiver: str) -> list[tuple[str, str]]:
        return [(status, link) for status, link, _ in self.rx[receiver].got]


def test_unacknowledged_alerts_escalate_step_by_step_an_acked_one_does_not_and_every_receiver_hears_the_end(
        tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    r = rig.responder
    r.submit([firing("vt-1"), firing("vt-2")])
    r.tick(T0, [firing("vt-1"), firing("vt-2")])
    (acked,) = [i for i in r.store.open_incidents() if i.labels["link"] == "vt-2"]
    r.store.acknowledge(acked.ref, "Minh", "cli", T0 + 5 * M)

    assert r.tick(T0 + 14 * M, [firing("vt-1"), firing("vt-2")]) == []
    taken = r.tick(T0 + 15 * M, [firing("vt-1"), firing("vt-2")])
    assert [(i.labels["link"], step) for i, step in taken] == [("vt-1", 0)]
    r.tick(T0 + 46 * M, [firing("vt-1"), firing("vt-2")])
    rig.deliver()
    assert rig.got(NOC_RX) == [("firing", "vt-1")]
    assert rig.got(AUTHORITY_RX) == [("firing", "vt-1")]
    assert rig.rx[NOC_RX].got[0][2] == {"summary": "link vt-1 down",
                                        "escalation": "step 1: unacknowledged for 15 min since it paged"}

    # The Alertmanager resend carries the ack; the resolves go on annotated, and to every escalated receiver.
    r.sync_alertmanager([firing("vt-1"), firing("vt-2")], T0 + 47 * M)
    by_link = {n.labels["link"]: dict(n.annotations) for n in rig.forward.synced[-1]}
    assert by_link["vt-2"]["acknowledged_by"] == "Minh" and "acknowledged_by" not in by_link["vt-1"]
    r.submit([resolved("vt-1", ends=T0 + 59 * M), resolved("vt-2", ends=T0 + 59 * M)])
    r.tick(T0 + 60 * M, [])
    rig.deliver()
    assert rig.got(NOC_RX) == [("firing", "vt-1"), ("resolved", "vt-1")]
    assert rig.got(AUTHORITY_RX) == [("firing", "vt-1"), ("resolved", "vt-1")]
    ends = {n.labels["link"]: dict(n.annotations) for n in rig.forward.sent if n.status == "resolved"}
    assert ends["vt-2"]["acknowledged_at"] == "2025-11-28T00:05:00Z" and "acknowledged_by" not in ends["vt-1"]
    assert r.store.open_incidents() == []


def test_a_restarted_collector_neither_escalates_again_nor_forgets_an_ack(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.responder.tick(T0, [firing("vt-1"), firing("vt-2")])
    rig.responder.tick(T0 + 15 * M, [firing("vt-1"), firing("vt-2")])
    (vt2,) = [i for i in rig.responder.store.open_incidents() if i.labels["link"] == "vt-2"]
    rig.responder.store.acknowledge(vt2.ref, "Minh", "cli", T0 + 16 * M)
    rig.deliver()
    rig.responder.stop()

    rig.responder = rig.make()
    assert rig.responder.tick(T0 + 20 * M, [firing("vt-1"), firing("vt-2")]) == []
    taken = rig.responder.tick(T0 + 45 * M, [firing("vt-1"), firing("vt-2")])
    assert [(i.labels["link"], step) for i, step in taken] == [("vt-1", 1)]
    rig.deliver()
    assert sorted(rig.got(NOC_RX)) == [("firing", "vt-1"), ("firing", "vt-2")]   # vt-2 escalated before its ack
    assert rig.got(AUTHORITY_RX) == [("firing", "vt-1")]


def test_an_alert_gone_from_the_tracker_without_a_resolve_still_ends_for_its_escalated_receivers(
        tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.responder.tick(T0, [firing("vt-1")])
    rig.responder.tick(T0 + 15 * M, [firing("vt-1")])
    rig.responder.tick(T0 + 20 * M, [])          # its resolve was handed on before a crash, say
    rig.deliver()
    assert rig.got(NOC_RX) == [("firing", "vt-1"), ("resolved", "vt-1")]
    assert rig.responder.store.open_incidents() == []


# ------------------------------------------------------------------------------------------------ the HTTP API


TOKENS = """
tokens:
  noc: {token: noc-token-0123456789}
  viettel: {token: viettel-token-0123456789, carrier: 452-04}
  vinaphone: {token: vinaphone-token-0123456789, carrier: 452-02}
"""


def call(app: AckApi, method: str, path: str, token: str | None = None, body: object = None) -> tuple[int, Any]:
    raw = b"" if body is None else json.dumps(body).encode()
    environ: dict[str, Any] = {"REQUEST_METHOD": method, "PATH_INFO": path, "wsgi.input": io.BytesIO(raw)}
    if token is not None:
        environ["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    status: list[str] = []
    out = b"".join(app(environ, lambda s, h: status.append(s)))
    return int(status[0].split()[0]), json.loads(out)


@pytest.fixture
def api(tmp_path: Path) -> AckApi:
    store = AckStore(tmp_path / "acks.db")
    store.paged(labels("vt-1"), T0, T0)
    store.paged(labels("vn-1", VN), T0, T0)
    cfg = strict.load(AckConfig, TOKENS, "collector.yaml")
    return AckApi(store, cfg.tokens, CollectorRegistry(), clock=lambda: T0 + 7 * M)


def test_the_api_refuses_without_a_token_with_a_wrong_one_and_a_carrier_acking_anothers_alert(api: AckApi) -> None:
    vt = am_fingerprint(labels("vt-1"))[:8]
    assert call(api, "GET", API_PATH)[0] == 401
    assert call(api, "POST", f"{API_PATH}/{vt}/ack", "viettel-token-01234567890", {"by": "x"})[0] == 401
    code, answer = call(api, "POST", f"{API_PATH}/{vt}/ack", "vinaphone-token-0123456789", {"by": "Hoa"})
    assert code == 404 and "of carrier 452-02" in answer["error"]
    assert all(a["acknowledged"] is None for a in call(api, "GET", API_PATH, "noc-token-0123456789")[1]["alerts"])


def test_a_carrier_sees_and_acknowledges_its_own_alerts_only(api: AckApi) -> None:
    code, listed = call(api, "GET", API_PATH, "viettel-token-0123456789")
    assert code == 200 and [a["labels"]["link"] for a in listed["alerts"]] == ["vt-1"]
    vt = listed["alerts"][0]["ref"]
    code, answer = call(api, "POST", f"{API_PATH}/{vt}/ack", "viettel-token-0123456789",
                        {"by": "Minh", "comment": "fibre crew sent"})
    assert code == 200
    assert answer["acknowledged"] == {"by": "Minh", "via": "api:viettel", "at": "2025-11-28T00:07:00Z",
                                      "comment": "fibre crew sent"}
    code, again = call(api, "POST", f"{API_PATH}/{vt}/ack", "noc-token-0123456789", {})
    assert code == 409 and "by Minh" in again["error"]
    assert call(api, "POST", f"{API_PATH}/{vt}/ack", "noc-token-0123456789", {"who": "x"})[0] == 400
    assert call(api, "GET", f"{API_PATH}/{vt}/ack", "noc-token-0123456789")[0] == 405


def test_tokens_must_be_long_and_distinct() -> None:
    with pytest.raises(strict.ConfigError, match=r"collector.yaml:3: tokens.b.token: the same token as tokens.a"):
        strict.load(AckConfig, "tokens:\n  a: {token: same-token-0123456789}\n  b: {token: same-token-0123456789}\n",
                    "collector.yaml")
    with pytest.raises(strict.ConfigError, match="at least 16 characters"):
        strict.load(AckConfig, "tokens:\n  a: {token: short}\n", "collector.yaml")


# ------------------------------------------------------------------------------------------------ the commands


def test_alerts_lists_firing_alerts_with_their_ref_and_ack_then_ack_takes_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "inventory.yaml").write_text(INVENTORY)
    config = tmp_path / "collector.yaml"
    config.write_text(f"inventory: inventory.yaml\nqueue: {{path: '{tmp_path / 'intake.db'}'}}\n")
    store = AckStore(tmp_path / "acks.db")
    incident = store.paged(labels("vt-1"), T0, T0)
    store.close()
    assert incident is not None

    assert cli.main(["-c", str(config), "alerts"]) == 0
    out = capsys.readouterr().out
    assert incident.ref in out and "LinkDown" in out and "link=vt-1" in out and "UNACKNOWLEDGED" in out
    assert cli.main(["-c", str(config), "ack", incident.ref, "--by", "Lan", "--comment", "ticket 4711"]) == 0
    capsys.readouterr()
    assert cli.main(["-c", str(config), "alerts"]) == 0
    assert "acked by Lan (cli)" in capsys.readouterr().out
    assert cli.main(["-c", str(config), "ack", incident.ref, "--by", "Minh"]) == 1
    assert "acknowledged already, by Lan" in capsys.readouterr().err
    assert cli.main(["-c", str(config), "alerts", "--json"]) == 0
    (shown,) = json.loads(capsys.readouterr().out)["alerts"]
    assert shown["acknowledged"]["comment"] == "ticket 4711"


# ------------------------------------------------------------------------------------------------ the report


def test_time_to_acknowledge_and_to_resolve_per_carrier() -> None:
    found = [
        incident(fingerprint="a" * 16, acked_ns=T0 + 4 * M, resolved_ns=T0 + 30 * M, ends_ns=T0 + 30 * M),
        incident(fingerprint="b" * 16, acked_ns=T0 + 10 * M, steps=1),
        incident(fingerprint="c" * 16, steps=2, resolved_ns=T0 + 90 * M, ends_ns=T0 + 90 * M),
        incident(fingerprint="d" * 16, labels=labels("vn-1", VN), acked_ns=T0 + 99 * M),   # after the report
        incident(fingerprint="e" * 16, labels=labels("p1", None, "ProbeDown")),
    ]
    header, text = table("dv", rows(found, T0 + 95 * M), {VT: "Viettel"})
    got = [dict(zip(header, row, strict=True)) for row in text]
    assert [(r["carrier"], r["paged"], r["acknowledged"], r["unacknowledged"], r["escalated"]) for r in got] == [
        (VN, "1", "0", "1", "0"), (VT, "3", "2", "1", "2"), ("noc", "1", "0", "1", "0")]
    vt = got[1]
    assert (vt["carrier_name"], vt["ack_median_min"], vt["ack_p90_min"]) == ("Viettel", "4.0", "10.0")
    assert (vt["resolved"], vt["still_firing"], vt["resolve_median_min"], vt["resolve_p90_min"]) == (
        "2", "1", "30.0", "90.0")


def test_the_report_reads_the_alerts_of_its_zone_that_paged_in_its_period(tmp_path: Path) -> None:
    from collector.report.response import read

    store = AckStore(tmp_path / "acks.db")
    store.paged(labels("vt-1"), T0, T0 - S)                                   # before the period
    store.paged(labels("vt-2"), T0, T0)
    store.paged({**labels("vt-3"), "zone": "other"}, T0, T0 + M)              # another zone
    store.paged(labels("vt-4"), T0, T0 + 60 * M)                              # at its end: excluded
    store.close()
    assert [i.labels["link"] for i in read(tmp_path / "acks.db", "dv", T0, T0 + 60 * M)] == ["vt-2"]
    assert read(tmp_path / "missing.db", "dv", T0, T0 + 60 * M) == []


def test_the_monthly_report_has_each_carriers_response_times(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    import csv

    from tests.collector import test_report
    from tests.integration import zone_scenario as scn

    paged = test_report.T0 + 3600 * S
    acks = AckStore(tmp_path / "acks.db")
    incident = acks.paged({**labels("vt-1"), "zone": scn.ZONE}, paged - M, paged)
    assert incident is not None
    acks.acknowledge(incident.ref, "Lan", "cli", paged + 6 * M)
    acks.resolved(incident, paged + 40 * M, paged + 40 * M)
    acks.close()
    out = tmp_path / "out"
    assert cli.main([*test_report.report_args(tmp_path, out), "--acks", str(tmp_path / "acks.db")]) == 0, \
        capsys.readouterr().err
    with open(out / "response.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert (row["carrier"], row["paged"], row["ack_median_min"], row["resolve_median_min"]) == (VT, "1", "6.0", "40.0")
    assert "Response to alerts" in (out / "report.html").read_text()
