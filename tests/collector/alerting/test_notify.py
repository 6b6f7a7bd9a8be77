"""Notifications without a network: routing, the webhook JSON, the outbox's order and back-off, the shared
notifier contract (retryability, no secret in errors or logs). Fakes only: no sockets, no sleeps."""

from __future__ import annotations

import importlib
import json
import logging
import smtplib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode
from prometheus_client import CollectorRegistry

from collector.alerting.config import AlertingConfig, AlertmanagerTarget, RetryConfig, SmtpConfig
from collector.alerting.model import Notification
from collector.alerting.notify import NOTIFIERS, Dispatcher, NotifyError
from collector.alerting.notify import email as email_mod
from collector.alerting.notify.alertmanager import AlertmanagerNotifier
from collector.alerting.notify.base import Delivery
from collector.alerting.notify.email import EmailNotifier
from collector.alerting.notify.metrics import NotifyMetrics
from collector.alerting.notify.mqtt import MqttNotifier, MqttPublisher
from collector.alerting.notify.outbox import Outbox
from collector.alerting.notify.payload import ZERO_TIME, am_fingerprint, decode, encode, group, rfc3339, webhook_message
from collector.alerting.notify.registry import NotifierType
from collector.alerting.notify.routing import ALERTMANAGER, Router, problems
from collector.alerting.notify.webhook import WebhookNotifier
from collector.inventory import Carrier, EmailReceiver, EscalationStep, Inventory, MqttReceiver, WebhookReceiver
from tests.plugins import PagerReceiver, accepted_types
from zonewatch import strict, wire

S = 1_000_000_000
T0 = 1_764_000_000 * S           # 2025-11-24T16:00:00Z
SECRET = "s3cr3t-Pa55w0rd-xyz"

INVENTORY = """\
zones:
  dinh-vu: {name: Dinh Vu}
carriers:
  viettel:
    plmn: 452-04
    name: Viettel
    notify:
      - {type: webhook, url: "http://viettel.example/hook"}
      - {type: email, to: [noc@viettel.example]}
  vinaphone:
    plmn: 452-02
    name: VinaPhone
    notify:
      - {type: webhook, url: "http://vnpt.example/hook"}
  mobifone: {plmn: 452-01, name: MobiFone}
"""


def inventory(text: str = INVENTORY) -> Inventory:
    return strict.load(Inventory, text, "inventory.yaml")


def alerting(text: str = "") -> AlertingConfig:
    base = ("outbox_dir: /nonexistent\nsmtp: {host: smtp.example, from: zonewatch@zone.example}\n"
            "noc: [{type: webhook, url: 'http://noc.example/hook'}]\n")
    return strict.load(AlertingConfig, base + text, "collector.yaml")


def note(alertname: str = "ServiceOutage", status: str = "firing", carrier: str | None = "452-04",
         at: int = 0, **labels: str) -> Notification:
    base = {"alertname": alertname, "severity": "critical", "zone": "dinh-vu", "group": "viettel-fibre"}
    if carrier is not None:
        base["carrier"] = carrier
    base.update(labels)
    return Notification(status, base, {"summary": f"{alertname} in dinh-vu"}, starts_ns=T0 + at * S,  # type: ignore[arg-type]
                        ends_ns=T0 + (at + 60) * S if status == "resolved" else 0)


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def monotonic(self) -> float:
        return self.t

    def time_ns(self) -> int:
        return T0 + int((self.t - 1000.0) * S)

    def advance(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class FakeNotifier:
    """Records what it was sent; fails as told: ``down`` (retryable) or ``refuse`` (not)."""

    mode: str = "ok"
    sent: list[list[Notification]] = field(default_factory=list)
    attempts: int = 0
    closed: bool = False

    def notify(self, notifications: Sequence[Notification]) -> None:
        self.attempts += 1
        if self.mode == "down":
            raise NotifyError("webhook (http://viettel.example): cannot connect: Connection refused", retryable=True)
        if self.mode == "refuse":
            raise NotifyError("webhook (http://viettel.example): HTTP 400 Bad Request: bad payload", retryable=False)
        if self.mode == "bug":
            raise KeyError("oops")
        self.sent.append(list(notifications))

    def close(self) -> None:
        self.closed = True


def names(messages: list[list[Notification]]) -> list[list[tuple[str, str]]]:
    return [[(n.status, n.labels["alertname"]) for n in m] for m in messages]


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


# ---------------------------------------------------------------------------------------------- payload


def test_times_are_rfc3339_in_utc_and_firing_alerts_end_at_alertmanagers_zero_time() -> None:
    assert rfc3339(T0) == "2025-11-24T16:00:00Z"
    assert rfc3339(T0 + 250_000_000) == "2025-11-24T16:00:00.25Z"
    assert rfc3339(T0 + 1) == "2025-11-24T16:00:00.000000001Z"
    assert rfc3339(0) == ZERO_TIME == "0001-01-01T00:00:00Z"


def test_fingerprint_is_alertmanagers() -> None:
    assert am_fingerprint({}) == "cbf29ce484222325"          # FNV-1a 64 offset basis: Alertmanager's empty set
    labels = {"alertname": "ServiceOutage", "zone": "dinh-vu"}
    assert am_fingerprint(labels) == am_fingerprint(dict(reversed(labels.items())))
    assert am_fingerprint(labels) != am_fingerprint({**labels, "zone": "other"})
    assert len(am_fingerprint(labels)) == 16
    # The separator keeps names and values apart: a=bc and ab=c differ.
    assert am_fingerprint({"a": "bc"}) != am_fingerprint({"ab": "c"})


def test_webhook_message_is_alertmanagers_version_4() -> None:
    firing = note(at=0, device="sw-core")
    resolved = note(status="resolved", at=-120, device="sw-core", severity="warning")
    msg = webhook_message([firing, resolved], "viettel", external_url="http://collector.zone:9109")
    assert msg == {
        "version": "4",
        "groupKey": '{}:{alertname="ServiceOutage", carrier="452-04", device="sw-core", group="viettel-fibre", '
                    'zone="dinh-vu"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "viettel",
        "groupLabels": {"alertname": "ServiceOutage", "zone": "dinh-vu", "carrier": "452-04",
                        "group": "viettel-fibre", "device": "sw-core"},
        "commonLabels": {"alertname": "ServiceOutage", "zone": "dinh-vu", "group": "viettel-fibre",
                         "carrier": "452-04", "device": "sw-core"},
        "commonAnnotations": {"summary": "ServiceOutage in dinh-vu"},
        "externalURL": "http://collector.zone:9109",
        "alerts": [
            {"status": "firing", "labels": dict(firing.labels), "annotations": {"summary": "ServiceOutage in dinh-vu"},
             "startsAt": "2025-11-24T16:00:00Z", "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "",
             "fingerprint": am_fingerprint(firing.labels)},
            {"status": "resolved", "labels": dict(resolved.labels),
             "annotations": {"summary": "ServiceOutage in dinh-vu"},
             "startsAt": "2025-11-24T15:58:00Z", "endsAt": "2025-11-24T15:59:00Z", "generatorURL": "",
             "fingerprint": am_fingerprint(resolved.labels)},
        ],
    }
    assert webhook_message([resolved], "noc")["status"] == "resolved"
    json.dumps(msg)  # serialisable as is


def test_a_flapping_notice_says_so_in_its_annotations() -> None:
    n = Notification("firing", {"alertname": "LinkDown"}, {"summary": "x"}, T0, flapping=True)
    assert webhook_message([n], "noc")["alerts"][0]["annotations"] == {"summary": "x", "flapping": "true"}


def test_grouping_keeps_first_appearance_order_and_order_within() -> None:
    a1, b1, a2 = note(device="a"), note(device="b"), note("ServiceOutage", "resolved", device="a")
    assert group([a1, b1, a2]) == [[a1, a2], [b1]]


def test_outbox_encoding_round_trips_and_refuses_garbage() -> None:
    ns = [note(), note(status="resolved"), Notification("firing", {"alertname": "X"}, {}, T0, flapping=True)]
    assert decode(encode(ns)) == ns
    for bad in (b"not json", b'{"v": 2}', b'{"v": 1, "notifications": []}',
                b'{"v": 1, "notifications": [{"status": "maybe"}]}'):
        with pytest.raises(ValueError):
            decode(bad)


# ---------------------------------------------------------------------------------------------- routing


def test_a_carriers_alert_goes_to_that_carrier_the_noc_and_alertmanager_only() -> None:
    router = Router(alerting("alertmanager: {url: 'http://am:9093'}\ndelivery: direct\n"), inventory())
    assert router.route(note(carrier="452-04")) == [
        "carrier.viettel.webhook.0", "carrier.viettel.email.1", "alertmanager", "noc.webhook.0"]
    assert router.route(note(carrier="452-02")) == ["carrier.vinaphone.webhook.0", "alertmanager", "noc.webhook.0"]


def test_with_alertmanager_delivering_zonewatch_sends_no_webhook_or_email_itself() -> None:
    router = Router(alerting("alertmanager: {url: 'http://am:9093'}\n"), inventory())
    assert router.route(note(carrier="452-04")) == ["alertmanager"]


def test_an_alert_without_owner_or_with_an_unknown_one_goes_to_the_noc_only() -> None:
    router = Router(alerting(), inventory())
    assert router.route(note(carrier=None)) == ["noc.webhook.0"]
    assert router.route(note(carrier="452-99")) == ["noc.webhook.0"]
    assert not router.known_carrier(note(carrier="452-99"))
    assert router.route(note(carrier="452-01")) == ["noc.webhook.0"]    # mobifone has no receivers


def test_split_gives_each_receiver_its_share_in_order() -> None:
    router = Router(alerting(), inventory())
    v1, p1, v2, none = note(carrier="452-04"), note(carrier="452-02"), note("LinkDown", carrier="452-04"), note(
        carrier=None)
    shares = router.split([v1, p1, v2, none])
    assert shares["carrier.viettel.webhook.0"] == [v1, v2]
    assert shares["carrier.vinaphone.webhook.0"] == [p1]
    assert shares["noc.webhook.0"] == [v1, p1, v2, none]


def test_receivers_that_cannot_work_are_named_with_their_key() -> None:
    inv = inventory(INVENTORY.replace('{type: webhook, url: "http://vnpt.example/hook"}', "{type: mqtt, topic: a/b}"))
    cfg = strict.load(AlertingConfig, "outbox_dir: /x\n", "c.yaml")
    assert problems(cfg, inv, has_mqtt=False) == [
        (("carriers", "viettel", "notify", 1), "an email receiver needs alerting.smtp (the relay to send through)"),
        (("carriers", "vinaphone", "notify", 0), "an mqtt receiver needs the collector's broker connection"),
    ]
    with pytest.raises(ValueError, match=r"carriers\.viettel\.notify\[1\]: an email receiver needs alerting\.smtp"):
        Dispatcher(cfg, inv, None, CollectorRegistry())


def test_what_a_receiver_needs_is_needed_only_where_the_collector_delivers_it() -> None:
    inv = inventory(INVENTORY.replace('{type: webhook, url: "http://vnpt.example/hook"}', "{type: mqtt, topic: a/b}"))
    cfg = strict.load(AlertingConfig, "alertmanager: {url: 'http://am:9093'}\nmqtt_delivery: alertmanager\n", "c.yaml")
    assert problems(cfg, inv, has_mqtt=False) == []   # Alertmanager sends the email, the relay publishes


# A receiver type the configuration does not ship (``pager``), in the NOC's list after its webhook.

def with_pager(cfg: AlertingConfig) -> AlertingConfig:
    return cfg.model_copy(update={"noc": [*cfg.noc, PagerReceiver(type="pager", number="+84900000000")]})


def pager_config(cfg: PagerReceiver, ref: str, secret: Callable[[str, str], str]) -> tuple[str, dict[str, Any]]:
    return "pagerduty_configs", {"routing_key_file": secret(f"{ref}-key", cfg.number)}


def registered(delivery: Delivery) -> dict[str, NotifierType]:
    """Return the shipped registry plus ``pager``, declared as ``delivery``."""
    return {**NOTIFIERS, "pager": NotifierType(delivery, (lambda spec, ctx: FakeNotifier()) if delivery.collector
                                               else None)}


AM = "alertmanager: {url: 'http://am:9093'}\n"


def test_a_receiver_type_without_a_declaration_is_refused_naming_the_receiver_and_the_fix() -> None:
    cfg = with_pager(alerting(AM))
    fix = ("receiver type 'pager' declares no delivery: register it in NOTIFIERS "
           "(collector/alerting/notify/registry.py) with its Delivery (who can deliver it: the collector, "
           "Alertmanager natively, the relay), or remove the receiver")
    assert problems(cfg, inventory(), has_mqtt=True) == [(("alerting", "noc", 1), fix)]
    with pytest.raises(ValueError, match=r"^alerting\.noc\[1\]: receiver type 'pager' declares no delivery"):
        Dispatcher(cfg, inventory(), None, CollectorRegistry())
    with pytest.raises(ValueError, match=r"^alerting\.noc\[1\]: receiver type 'pager' declares no delivery"):
        Router(cfg, inventory())


def test_a_type_is_registered_with_a_declaration_that_matches_its_factory() -> None:
    with pytest.raises(TypeError, match="expected the type's Delivery declaration"):
        NotifierType(None, lambda spec, ctx: FakeNotifier())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="a notifier factory exactly when the Delivery says the collector"):
        NotifierType(Delivery(collector=False, alertmanager=pager_config), lambda spec, ctx: FakeNotifier())


@pytest.mark.parametrize(("delivery", "settings", "expected"), [
    # The collector's own type: the collector delivers it, Alertmanager delivering the others or not.
    (Delivery(collector=True), AM, ["alertmanager", "noc.pager.1"]),
    (Delivery(collector=True), "", ["noc.webhook.0", "noc.pager.1"]),
    # Native in Alertmanager: Alertmanager's under its delivery, the collector's when delivery is direct.
    (Delivery(collector=True, alertmanager=pager_config), AM, ["alertmanager"]),
    (Delivery(collector=True, alertmanager=pager_config), AM + "delivery: direct\n",
     ["alertmanager", "noc.webhook.0", "noc.pager.1"]),
    (Delivery(collector=False, alertmanager=pager_config), AM, ["alertmanager"]),
    # Through the relay: the collector's, unless mqtt_delivery gives it to Alertmanager.
    (Delivery(collector=True, relay=True), AM, ["alertmanager", "noc.pager.1"]),
    (Delivery(collector=True, relay=True), AM + "mqtt_delivery: alertmanager\n", ["alertmanager"]),
])
def test_routing_follows_what_each_type_declares(delivery: Delivery, settings: str, expected: list[str]) -> None:
    cfg, types = with_pager(alerting(settings)), registered(delivery)
    assert problems(cfg, inventory(), has_mqtt=True, types=types) == []
    assert Router(cfg, inventory(), types).route(note(carrier=None)) == expected


@pytest.mark.parametrize(("delivery", "settings", "fix"), [
    (Delivery(collector=False, alertmanager=pager_config), "",
     "only Alertmanager delivers pager receivers: configure alerting.alertmanager with delivery: alertmanager"),
    (Delivery(collector=False, alertmanager=pager_config), AM + "delivery: direct\n",
     "only Alertmanager delivers pager receivers: configure alerting.alertmanager with delivery: alertmanager"),
    (Delivery(collector=False, relay=True), AM,
     "pager receivers are delivered only through Alertmanager and the collectors' relay: set "
     "alerting.mqtt_delivery: alertmanager"),
    (Delivery(collector=False), AM, "nobody can deliver pager receivers"),
])
def test_a_receiver_nobody_would_deliver_under_the_configured_delivery_is_refused(
        delivery: Delivery, settings: str, fix: str) -> None:
    cfg, types = with_pager(alerting(settings)), registered(delivery)
    [(where, message)] = problems(cfg, inventory(), has_mqtt=True, types=types)
    assert where == ("alerting", "noc", 1)
    assert message.startswith(fix)
    with pytest.raises(ValueError, match=r"^alerting\.noc\[1\]: "):
        Router(cfg, inventory(), types)


def test_what_a_declared_type_needs_is_checked_from_its_declaration() -> None:
    cfg = with_pager(strict.load(AlertingConfig, "noc: [{type: webhook, url: 'http://noc.example/hook'}]\n", "c.yaml"))
    types = registered(Delivery(collector=True, needs=frozenset({"smtp", "broker"})))
    assert problems(cfg, inventory("zones: {}\n"), has_mqtt=False, types=types) == [
        (("alerting", "noc", 1), "a pager receiver needs alerting.smtp (the relay to send through)"),
        (("alerting", "noc", 1), "a pager receiver needs the collector's broker connection"),
    ]


# ---------------------------------------------------------------------------------------------- outbox


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_outbox(path: Path, notifier: FakeNotifier, clock: FakeClock,
                registry: CollectorRegistry | None = None) -> Outbox:
    retry = RetryConfig.model_validate({"initial": "1s", "max": "8s"})
    return Outbox("carrier.viettel.webhook.0", notifier, path / "viettel.db", retry,
                  NotifyMetrics(registry or CollectorRegistry()), clock, max_bytes=10**7, max_age_ns=86400 * S)


def drain(box: Outbox, clock: FakeClock, limit: int = 100) -> list[float | None]:
    """Step until idle or until a back-off; return what each step returned."""
    waits: list[float | None] = []
    for _ in range(limit):
        wait = box.step(clock.monotonic())
        waits.append(wait)
        if wait != 0:
            break
    return waits


def test_a_receiver_that_is_down_gets_everything_later_in_order_once(tmp_path: Path, clock: FakeClock) -> None:
    fake = FakeNotifier(mode="down")
    registry = CollectorRegistry()
    box = make_outbox(tmp_path, fake, clock, registry)
    box.put([[note("A")], [note("B")]], clock.time_ns())
    delays = []
    for i in range(6):                   # back-off doubles from 1 s up to 8 s
        delays.append(box.step(clock.monotonic()))
        if i == 3:
            box.put([[note("C")]], clock.time_ns())  # a new message does not cut the back-off short
        clock.advance(0.5)
        assert box.step(clock.monotonic()) == (delays[-1] or 0) - 0.5   # not due yet: no new attempt
        clock.advance((delays[-1] or 0) - 0.5)
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert fake.attempts == 6
    fake.mode = "ok"
    assert drain(box, clock) == [0, 0, 0, None]
    assert names(fake.sent) == [[("firing", "A")], [("firing", "B")], [("firing", "C")]]
    assert box.depth() == 0
    assert sample(registry, "zonewatch_notify_sent_total", receiver=box.name) == 3
    assert sample(registry, "zonewatch_notify_failures_total", receiver=box.name) == 6
    assert sample(registry, "zonewatch_notify_queue_depth", receiver=box.name) == 0
    assert sample(registry, "zonewatch_notify_receiver_up", receiver=box.name) == 1
    # after a success the back-off starts again from the beginning
    fake.mode = "down"
    box.put([[note("D")]], clock.time_ns())
    assert box.step(clock.monotonic()) == 1.0


def test_failures_are_logged_when_they_start_and_end_not_at_every_attempt(
        tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeNotifier(mode="down")
    box = make_outbox(tmp_path, fake, clock)
    box.put([[note("A")]], clock.time_ns())
    with caplog.at_level(logging.INFO, logger="collector.alerting.notify"):
        for _ in range(5):
            clock.advance(box.step(clock.monotonic()) or 0)
        fake.mode = "ok"
        drain(box, clock)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "receiver carrier.viettel.webhook.0 is not taking notifications (webhook (http://viettel.example): cannot "
        "connect: Connection refused); retrying with back-off, 1 waiting",
        "receiver carrier.viettel.webhook.0 is back: delivered firing A after 5 failed attempts",
    ]


def test_a_refused_message_is_logged_counted_and_dropped_and_the_next_goes_on(
        tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeNotifier(mode="refuse")
    registry = CollectorRegistry()
    box = make_outbox(tmp_path, fake, clock, registry)
    box.put([[note("A"), note("A", device="x")]], clock.time_ns())
    with caplog.at_level(logging.ERROR):
        assert box.step(clock.monotonic()) == 0
    assert caplog.messages == ["receiver carrier.viettel.webhook.0 refused firing A (+1 more) for good, dropped: "
                               "webhook (http://viettel.example): HTTP 400 Bad Request: bad payload"]
    assert sample(registry, "zonewatch_notify_dropped_total", receiver=box.name, reason="refused") == 2
    fake.mode = "ok"
    box.put([[note("B")]], clock.time_ns())
    assert drain(box, clock) == [0, None]
    assert names(fake.sent) == [[("firing", "B")]]


def test_a_notifier_bug_is_retried_not_lost(tmp_path: Path, clock: FakeClock,
                                            caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeNotifier(mode="bug")
    box = make_outbox(tmp_path, fake, clock)
    box.put([[note("A")]], clock.time_ns())
    with caplog.at_level(logging.ERROR):
        assert box.step(clock.monotonic()) == 1.0
    assert "the notifier failed unexpectedly on firing A" in caplog.text
    fake.mode = "ok"
    clock.advance(1.0)
    drain(box, clock)
    assert names(fake.sent) == [[("firing", "A")]]


def test_undelivered_messages_survive_a_restart(tmp_path: Path, clock: FakeClock) -> None:
    first = FakeNotifier(mode="down")
    box = make_outbox(tmp_path, first, clock)
    box.put([[note("A")], [note("A", "resolved")]], clock.time_ns())
    box.step(clock.monotonic())
    box.signal_stop()
    assert box.join(1.0)
    assert first.closed
    again = FakeNotifier()
    box = make_outbox(tmp_path, again, clock)
    assert box.depth() == 2
    drain(box, clock)
    assert names(again.sent) == [[("firing", "A")], [("resolved", "A")]]
    box.join(1.0)


def test_a_message_acknowledged_is_not_sent_again_after_a_restart(tmp_path: Path, clock: FakeClock) -> None:
    fake = FakeNotifier()
    box = make_outbox(tmp_path, fake, clock)
    box.put([[note("A")]], clock.time_ns())
    drain(box, clock)
    box.join(1.0)
    again = FakeNotifier()
    box = make_outbox(tmp_path, again, clock)
    assert drain(box, clock) == [None]
    assert again.sent == []
    box.join(1.0)


def test_the_resend_list_goes_after_the_queue_and_never_revives_a_resolved_alert(
        tmp_path: Path, clock: FakeClock) -> None:
    fake = FakeNotifier()
    box = make_outbox(tmp_path, fake, clock)
    a, b = note("A"), note("B")
    box.resend([a, b])                                    # taken while A and B fire
    box.put([[note("A", "resolved")]], clock.time_ns())   # then A resolves
    assert drain(box, clock) == [0, 0, None]
    assert names(fake.sent) == [[("resolved", "A")], [("firing", "B")]]
    box.join(1.0)


# ---------------------------------------------------------------------------------------------- dispatcher


def test_dispatcher_groups_per_receiver_and_sends_alertmanager_one_message(tmp_path: Path, clock: FakeClock) -> None:
    cfg = alerting("alertmanager: {url: 'http://am:9093'}\ndelivery: direct\n")
    registry = CollectorRegistry()
    fakes = {name: FakeNotifier() for name in Router(cfg, inventory()).receivers}
    d = Dispatcher(cfg, inventory(), None, registry, clock=clock, notifiers=fakes, outbox_dir=tmp_path / "outbox")
    d.open()
    v_a, v_b, p_a = note(device="a"), note(device="b"), note(carrier="452-02", device="a")
    d.submit([v_a, v_b, p_a, note("ServiceOutage", "resolved", device="a")])
    for box in d.outboxes.values():
        drain(box, clock)
    assert [len(m) for m in fakes["carrier.viettel.webhook.0"].sent] == [2, 1]   # groups: device a, device b
    assert fakes["carrier.vinaphone.webhook.0"].sent == [[p_a]]
    assert len(fakes["alertmanager"].sent) == 1 and len(fakes["alertmanager"].sent[0]) == 4
    assert sorted(len(m) for m in fakes["noc.webhook.0"].sent) == [1, 1, 2]
    assert sample(registry, "zonewatch_notify_sent_total", receiver="carrier.viettel.webhook.0") == 3
    assert sample(registry, "zonewatch_notify_queued_total", receiver="noc.webhook.0") == 4
    assert sorted(p.name for p in (tmp_path / "outbox").iterdir() if p.suffix == ".db") == sorted(
        f"{name}.db" for name in fakes)
    d.stop()


def test_dispatcher_resends_firing_alerts_to_alertmanager_only(tmp_path: Path, clock: FakeClock) -> None:
    cfg = alerting("alertmanager: {url: 'http://am:9093'}\n")
    fakes = {name: FakeNotifier() for name in Router(cfg, inventory()).receivers}
    d = Dispatcher(cfg, inventory(), None, CollectorRegistry(), clock=clock, notifiers=fakes, outbox_dir=tmp_path)
    d.open()
    d.sync_alertmanager([note("A"), note("B", "resolved")], clock.time_ns())
    for box in d.outboxes.values():
        drain(box, clock)
    assert names(fakes["alertmanager"].sent) == [[("firing", "A")]]
    assert all(f.sent == [] for name, f in fakes.items() if name != "alertmanager")
    d.stop()


def test_dispatcher_needs_a_folder_and_start_before_submit(tmp_path: Path) -> None:
    cfg = strict.load(AlertingConfig, "noc: [{type: webhook, url: 'http://noc.example/x'}]\n", "c.yaml")
    with pytest.raises(ValueError, match="alerting.outbox_dir"):
        Dispatcher(cfg, inventory("zones: {}\n"), None, CollectorRegistry())
    d = Dispatcher(cfg, inventory("zones: {}\n"), None, CollectorRegistry(), outbox_dir=tmp_path)
    with pytest.raises(RuntimeError, match="before start"):
        d.submit([note()])


def test_an_outbox_of_a_receiver_no_longer_configured_is_reported(tmp_path: Path, clock: FakeClock,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    old = make_outbox(tmp_path, FakeNotifier(mode="down"), clock)
    old.put([[note()]], clock.time_ns())
    old.join(1.0)
    cfg = alerting()
    fakes = {name: FakeNotifier() for name in Router(cfg, inventory("zones: {}\n")).receivers}
    d = Dispatcher(cfg, inventory("zones: {}\n"), None, CollectorRegistry(), clock=clock, notifiers=fakes,
                   outbox_dir=tmp_path)
    with caplog.at_level(logging.WARNING):
        d.open()
    assert f"outbox {tmp_path / 'viettel.db'} holds 1 undelivered messages for a receiver that is no longer " \
           "configured" in caplog.text
    d.stop()


# ---------------------------------------------------------------------------------------------- notifiers


def test_every_receiver_type_the_configuration_accepts_is_registered_with_its_module_and_declaration() -> None:
    root = Path(__file__).resolve().parents[3] / "collector" / "alerting" / "notify"
    accepted = (accepted_types(AlertingConfig, "noc") | accepted_types(Carrier, "notify")
                | accepted_types(EscalationStep, "notify") | accepted_types(Inventory, "contacts"))
    assert "webhook" in accepted   # the unions were found
    assert set(NOTIFIERS) == accepted | {ALERTMANAGER}   # alerting.alertmanager: the target itself
    for name, registration in NOTIFIERS.items():
        assert (root / f"{name}.py").exists(), name
        module = importlib.import_module(f"collector.alerting.notify.{name}")
        assert registration.delivery is module.DELIVERY, name   # declared beside its notifier


class FakeHttp(requests.adapters.BaseAdapter):
    """A requests transport answering from ``status``/``body``; ``down``/``slow`` raise as requests does."""

    def __init__(self) -> None:
        super().__init__()
        self.mode, self.status, self.body = "ok", 200, ""
        self.requests: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        self.requests.append(request)
        if self.mode == "down":
            raise requests.ConnectionError(
                f"HTTPConnectionPool(host='h', port=1): Max retries exceeded with url: {request.path_url} "
                "(Caused by NewConnectionError('Failed to establish a new connection: [Errno 111] "
                "Connection refused'))",
                request=request)
        if self.mode == "slow":
            raise requests.ReadTimeout(f"read timed out: {request.url}", request=request)
        resp = requests.Response()
        resp.status_code, resp.reason, resp.url, resp.request = self.status, "Reason", str(request.url), request
        resp._content = self.body.encode()
        return resp

    def close(self) -> None:
        pass


def session_with(adapter: FakeHttp) -> requests.Session:
    s = requests.Session()
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    return s


HOOK_URL = f"https://hooks.example:8443/services/{SECRET}/x?token={SECRET}"


@pytest.mark.parametrize(("status", "retryable"), [
    (500, True), (502, True), (503, True), (429, True), (408, True),
    (400, False), (401, False), (403, False), (404, False), (413, False), (301, False),
])
def test_webhook_retries_5xx_and_rate_limits_not_other_4xx(status: int, retryable: bool) -> None:
    http = FakeHttp()
    http.status, http.body = status, "nope"
    hook = WebhookNotifier(WebhookReceiver(type="webhook", url="http://viettel.example/hook"), receiver="viettel",
                           session=session_with(http))
    with pytest.raises(NotifyError) as err:
        hook.notify([note()])
    assert err.value.retryable is retryable
    assert str(err.value).startswith(f"webhook (http://viettel.example): HTTP {status} Reason")


def test_webhook_posts_the_json_with_the_bearer_token() -> None:
    http = FakeHttp()
    cfg = WebhookReceiver.model_validate({"type": "webhook", "url": "http://viettel.example/hook",
                                          "bearer_token": SECRET})
    WebhookNotifier(cfg, receiver="viettel", session=session_with(http)).notify([note()])
    (req,) = http.requests
    assert req.method == "POST" and req.url == "http://viettel.example/hook"
    assert req.headers["Authorization"] == f"Bearer {SECRET}"
    assert req.headers["Content-Type"] == "application/json"
    assert json.loads(req.body or b"")["receiver"] == "viettel"


def test_alertmanager_gets_firing_alerts_ending_ahead_and_resolved_ones_ending_when_they_did() -> None:
    http = FakeHttp()
    clock = FakeClock()
    clock.advance(30)
    target = AlertmanagerTarget.model_validate({"url": "http://am.example:9093", "resend_interval": "60s"})
    am = AlertmanagerNotifier(target, clock=clock,
                              session=session_with(http))
    am.notify([note("A", at=-300), note("B", "resolved", at=-300)])
    (req,) = http.requests
    assert req.url == "http://am.example:9093/api/v2/alerts"
    body = json.loads(req.body or b"")
    assert [(a["labels"]["alertname"], a["startsAt"], a["endsAt"]) for a in body] == [
        ("A", "2025-11-24T15:55:00Z", "2025-11-24T16:04:30Z"),     # now (16:00:30) + 4 x 60 s
        ("B", "2025-11-24T15:55:00Z", "2025-11-24T15:56:00Z"),
    ]
    assert set(body[0]) == {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}


def test_email_subject_names_status_alert_object_and_carrier() -> None:
    assert email_mod.subject([note()]) == "[FIRING] ServiceOutage viettel-fibre (452-04)"
    assert email_mod.subject([note(), note(area="x")]) == "[FIRING:2] ServiceOutage viettel-fibre (452-04)"
    assert email_mod.subject([note("LinkDown", device="sw", link="uplink-1")]) == "[FIRING] LinkDown uplink-1 (452-04)"
    assert email_mod.subject([note(status="resolved")]) == "[RESOLVED] ServiceOutage viettel-fibre (452-04)"
    assert email_mod.subject([note("ProbeDown", carrier=None, probe="p1")]) == "[FIRING] ProbeDown viettel-fibre"
    msg = email_mod.message([note(status="resolved")], "zw@zone.example", ["a@x.example", "b@x.example"])
    assert msg["To"] == "a@x.example, b@x.example"
    text = msg.get_content()
    assert "RESOLVED: ServiceOutage\n  summary: ServiceOutage in dinh-vu\n  started: 2025-11-24T16:00:00Z\n" \
           "  ended: 2025-11-24T16:01:00Z\n" in text
    assert msg["Message-ID"] == email_mod.message([note(status="resolved")], "z@z.z", ["a@b.c"])["Message-ID"]


class FakeSmtp:
    """smtplib.SMTP's surface as the notifier uses it; ``mode`` picks the failure."""

    sent: list[Any] = []

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.calls: list[str] = []

    def __enter__(self) -> FakeSmtp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.calls.append("quit")

    def starttls(self, context: Any = None) -> None:
        self.calls.append("starttls")

    def login(self, user: str, password: str) -> None:
        self.calls.append(f"login {user}")
        if self.mode == "auth":
            raise smtplib.SMTPAuthenticationError(535, f"5.7.8 bad credentials for {user}:{password}".encode())

    def send_message(self, msg: Any) -> dict[str, tuple[int, bytes]]:
        if self.mode == "rcpt5":
            raise smtplib.SMTPRecipientsRefused({"noc@viettel.example": (550, b"5.1.1 no such user")})
        if self.mode == "rcpt4":
            raise smtplib.SMTPRecipientsRefused({"noc@viettel.example": (451, b"4.3.0 try later")})
        if self.mode == "data5":
            raise smtplib.SMTPDataError(554, b"5.7.1 message refused")
        if self.mode == "drop":
            raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
        self.calls.append("send")
        FakeSmtp.sent.append(msg)
        return {}


def smtp_config(**extra: Any) -> SmtpConfig:
    return SmtpConfig.model_validate({"host": "smtp.example", "port": 587, "from": "zw@zone.example",
                                      "username": "zonewatch", "password": SECRET, "starttls": True, **extra})


def emailer(mode: str, smtp: SmtpConfig | None = None) -> tuple[EmailNotifier, list[FakeSmtp]]:
    made: list[FakeSmtp] = []

    def connect(cfg: SmtpConfig) -> Any:
        if mode == "down":
            raise ConnectionRefusedError(111, "Connection refused")
        made.append(FakeSmtp(mode))
        return made[-1]

    cfg = EmailReceiver(type="email", to=["noc@viettel.example"])
    return EmailNotifier(cfg, smtp or smtp_config(), connect=connect), made


@pytest.mark.parametrize(("mode", "retryable", "says"), [
    ("down", True, "smtp smtp.example:587: ConnectionRefusedError: Connection refused"),
    ("drop", True, "smtp smtp.example:587: SMTPServerDisconnected: Connection unexpectedly closed"),
    ("auth", True, "smtp smtp.example:587: login as 'zonewatch' refused: 535 5.7.8 bad credentials for zonewatch:"),
    ("rcpt4", True, "every recipient refused: noc@viettel.example (451 4.3.0 try later)"),
    ("rcpt5", False, "every recipient refused: noc@viettel.example (550 5.1.1 no such user)"),
    ("data5", False, "smtp smtp.example:587: 554 5.7.1 message refused"),
])
def test_email_failures_say_why_and_whether_to_retry(mode: str, retryable: bool, says: str) -> None:
    notifier, _ = emailer(mode)
    with pytest.raises(NotifyError) as err:
        notifier.notify([note()])
    assert err.value.retryable is retryable
    assert says in str(err.value)
    assert SECRET not in str(err.value)


def test_email_uses_starttls_and_login_when_configured() -> None:
    notifier, made = emailer("ok")
    notifier.notify([note()])
    assert made[0].calls == ["starttls", "login zonewatch", "send", "quit"]
    notifier, made = emailer("ok", SmtpConfig.model_validate({"host": "h", "from": "zw@zone.example"}))
    notifier.notify([note()])
    assert made[0].calls == ["send", "quit"]


class FakePahoClient:
    """The few paho calls MqttPublisher makes on a shared client; the broker answers with ``reason``."""

    def __init__(self, reason: str = "Success", connected: bool = True) -> None:
        self.reason, self.connected = reason, connected
        self.on_publish: Any = None
        self.published: list[tuple[str, bytes]] = []

    def is_connected(self) -> bool:
        return self.connected

    def publish(self, topic: str, payload: bytes, qos: int = 0) -> Any:
        self.published.append((topic, payload))
        mid = len(self.published)
        self.on_publish(self, None, mid, ReasonCode(PacketTypes.PUBACK, self.reason), None)

        class Info:
            def __init__(self) -> None:
                self.mid = mid

            def wait_for_publish(self, timeout: float) -> None:
                pass

            def is_published(self) -> bool:
                return True

        return Info()


@pytest.mark.parametrize(("reason", "connected", "retryable"), [
    ("Success", True, None), ("No matching subscribers", True, None),
    ("Not authorized", True, False), ("Success", False, True)])
def test_mqtt_waits_for_the_puback_and_treats_a_refusal_as_final(reason: str, connected: bool,
                                                                 retryable: bool | None) -> None:
    client = FakePahoClient(reason, connected)
    notifier = MqttNotifier(MqttReceiver(type="mqtt", topic="carriers/viettel/alerts"),
                            MqttPublisher(client=client), receiver="viettel")  # type: ignore[arg-type]
    if retryable is None:
        notifier.notify([note()])
        ((topic, payload),) = client.published
        assert topic == "carriers/viettel/alerts" and json.loads(payload)["receiver"] == "viettel"
        return
    with pytest.raises(NotifyError) as err:
        notifier.notify([note()])
    assert err.value.retryable is retryable
    assert client.published == ([] if not connected else client.published)  # never queued while disconnected


def test_mqtt_splits_a_message_the_broker_would_refuse_and_loses_no_alert() -> None:
    """A broker cuts a connection that sends it a packet over its max_packet_size, and the notifier may share
    the ingest's connection: 3,000 alerts at once (a whole park down) go as several messages, each in bounds."""
    client = FakePahoClient("Success", True)
    notifier = MqttNotifier(MqttReceiver(type="mqtt", topic="carriers/viettel/alerts"),
                            MqttPublisher(client=client), receiver="viettel")  # type: ignore[arg-type]
    notes = [note(device=f"onu-{i:05d}", description="x" * 300) for i in range(3000)]
    notifier.notify(notes)
    assert len(client.published) > 1
    assert all(len(payload) <= wire.Limits().max_bytes for _, payload in client.published)
    got = [a["labels"]["device"] for _, payload in client.published for a in json.loads(payload)["alerts"]]
    assert got == [n.labels["device"] for n in notes]


# ---------------------------------------------------------------------------------------------- the shared contract

# Each case: (notifier, how to make its peer "ok" / "down" (retry) / "refuse" (final) and leak the secret
# in its answer, what the peer received). The notifier must map the answer and never repeat the secret.


@dataclass
class Case:
    notifier: Any
    set_mode: Callable[[str], None]
    received: Callable[[], int]


def _webhook_case() -> Case:
    http = FakeHttp()
    cfg = WebhookReceiver.model_validate({"type": "webhook", "url": HOOK_URL, "bearer_token": SECRET})

    def mode(m: str) -> None:
        http.mode = "down" if m == "down" else "ok"
        http.status, http.body = {"ok": (200, ""), "down": (200, ""), "refuse": (
            400, f"invalid token Bearer {SECRET} for /services/{SECRET}")}[m]
    return Case(WebhookNotifier(cfg, receiver="viettel", session=session_with(http)), mode,
                lambda: sum(1 for r in http.requests if http.status == 200))


def _alertmanager_case() -> Case:
    http = FakeHttp()

    def mode(m: str) -> None:
        http.mode = "slow" if m == "down" else "ok"
        http.status, http.body = (400, f"bad alert {SECRET}") if m == "refuse" else (200, "")
    target = AlertmanagerTarget(url=f"http://am.example:9093/{SECRET}")
    return Case(AlertmanagerNotifier(target, session=session_with(http)), mode, lambda: len(http.requests))


def _email_case() -> Case:
    state = {"mode": "ok"}
    made: list[FakeSmtp] = []

    def connect(cfg: SmtpConfig) -> Any:
        if state["mode"] == "down":
            raise smtplib.SMTPConnectError(421, f"4.7.0 try later {SECRET}".encode())
        made.append(FakeSmtp({"ok": "ok", "refuse": "data5"}[state["mode"]]))
        return made[-1]

    notifier = EmailNotifier(EmailReceiver(type="email", to=["a@b.example"]), smtp_config(), connect=connect)
    return Case(notifier, lambda m: state.update(mode=m), lambda: sum("send" in s.calls for s in made))


def _mqtt_case() -> Case:
    client = FakePahoClient()

    def mode(m: str) -> None:
        client.connected = m != "down"
        client.reason = "Not authorized" if m == "refuse" else "Success"
    publisher = MqttPublisher(client=client)  # type: ignore[arg-type]
    return Case(MqttNotifier(MqttReceiver(type="mqtt", topic="c/v"), publisher, receiver="v"), mode,
                lambda: len(client.published))


@pytest.fixture(params=["webhook", "alertmanager", "email", "mqtt"])
def case(request: pytest.FixtureRequest) -> Iterator[Case]:
    c = {"webhook": _webhook_case, "alertmanager": _alertmanager_case, "email": _email_case,
         "mqtt": _mqtt_case}[request.param]()
    yield c
    c.notifier.close()


def test_contract_success_reaches_the_peer_once(case: Case) -> None:
    case.set_mode("ok")
    case.notifier.notify([note(), note(device="x")])
    assert case.received() == 1


@pytest.mark.parametrize(("mode", "retryable"), [("down", True), ("refuse", False)])
def test_contract_failures_are_classified_and_never_show_a_secret(
        case: Case, mode: str, retryable: bool, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    case.set_mode(mode)
    with pytest.raises(NotifyError) as err:
        case.notifier.notify([note()])
    assert err.value.retryable is retryable
    assert SECRET not in str(err.value) and SECRET not in repr(err.value)
    # and through the outbox, into the logs
    clock = FakeClock()
    box = Outbox("r", case.notifier, tmp_path / "r.db", RetryConfig(), NotifyMetrics(CollectorRegistry()), clock,
                 max_bytes=10**6, max_age_ns=10**12)
    box.put([[note()]], clock.time_ns())
    with caplog.at_level(logging.DEBUG):
        box.step(clock.monotonic())
        clock.advance(1)
        box.step(clock.monotonic())
    assert caplog.records and SECRET not in caplog.text
    box.queue.close()


def test_external_url_must_be_a_web_address() -> None:
    assert alerting("external_url: https://grafana.zone.example/d/zw-alerts\n").external_url.endswith("zw-alerts")
    with pytest.raises(strict.ConfigError, match=r"external_url: .*expected an http:// or https:// URL"):
        alerting("external_url: grafana.zone.example/alerts\n")


def test_the_outbox_bounds_come_from_the_configuration(tmp_path: Path, clock: FakeClock) -> None:
    cfg = alerting("outbox_max_age: 60s\n")
    registry = CollectorRegistry()
    fakes = {name: FakeNotifier(mode="down") for name in Router(cfg, inventory()).receivers}
    d = Dispatcher(cfg, inventory(), None, registry, clock=clock, notifiers=fakes, outbox_dir=tmp_path)
    d.open()
    d.submit([note("A")])
    clock.advance(120)  # the receivers stay down past outbox_max_age
    d.submit([note("B")])
    for fake in fakes.values():
        fake.mode = "ok"
    box = d.outboxes["carrier.viettel.webhook.0"]
    clock.advance(600)  # past any back-off
    drain(box, clock)
    assert names(fakes["carrier.viettel.webhook.0"].sent) == [[("firing", "B")]]  # A was too old: dropped
    assert sample(registry, "zonewatch_notify_dropped_total", receiver=box.name, reason="bounds") == 1
    d.stop()
    with pytest.raises(strict.ConfigError, match=r"outbox_max_bytes: .*greater than or equal to 4096"):
        alerting("outbox_max_bytes: 100\n")
