"""Delivery for an HA pair, without a network: every Alertmanager peer a receiver of its own, MQTT receivers given
to Alertmanager (rendered as webhooks to the collectors' relays), and the relay itself (Alertmanager's webhook in,
the receiver's MQTT topic out), with a fake publisher. The engine of an HA collector holds its judgement until it
has caught up after a start."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from collector.alerting import amconfig
from collector.alerting.config import AlertingConfig
from collector.alerting.engine import AlertEngine
from collector.alerting.notify import Dispatcher, NotifyError
from collector.alerting.notify.mqtt import MAX_MESSAGE
from collector.alerting.notify.relay import RELAY_PATH, MqttRelay, mqtt_receivers, with_relay
from collector.alerting.notify.routing import Router
from collector.inventory import Inventory
from collector.mosquitto import TICK_ROOT
from tests.collector.alerting.test_engine import INVENTORY, T0, FakeDispatcher
from tests.collector.alerting.test_notify import FakeClock, FakeNotifier, alerting, drain, inventory, names, note
from zonewatch import strict

S = 1_000_000_000
MQTT_INVENTORY = """\
zones:
  dinh-vu: {name: Dinh Vu}
carriers:
  viettel:
    plmn: 452-04
    name: Viettel
    notify: [{type: webhook, url: "http://viettel.example/hook"}, {type: mqtt, topic: carriers/viettel}]
  vinaphone: {plmn: 452-02, name: VinaPhone, notify: [{type: mqtt, topic: carriers/vinaphone}]}
"""
PEERS = "alertmanager: {url: 'http://am-a:9093', peers: ['http://am-b:9093']}\n"


def test_every_alertmanager_peer_is_a_receiver_of_its_own_and_gets_every_alert_and_resend(tmp_path: Path) -> None:
    cfg = alerting(PEERS)
    assert [s.config.url for s in Router(cfg, inventory()).receivers.values() if s.owner == "alertmanager"] == [  # type: ignore[union-attr]
        "http://am-a:9093", "http://am-b:9093"]
    clock = FakeClock()
    fakes = {name: FakeNotifier() for name in Router(cfg, inventory()).receivers}
    assert {"alertmanager", "alertmanager.1"} <= fakes.keys()
    d = Dispatcher(cfg, inventory(), None, CollectorRegistry(), clock=clock, notifiers=fakes, outbox_dir=tmp_path)
    d.open()
    fakes["alertmanager.1"].mode = "down"   # one peer down delays none of the others
    d.submit([note("A"), note("B")])
    d.sync_alertmanager([note("A")], clock.time_ns())
    for box in d.outboxes.values():
        drain(box, clock)
    assert names(fakes["alertmanager"].sent) == [[("firing", "A"), ("firing", "B")], [("firing", "A")]]
    assert fakes["alertmanager.1"].sent == [] and d.depth("alertmanager.1") == 1
    fakes["alertmanager.1"].mode = "ok"
    clock.advance(2)
    drain(d.outboxes["alertmanager.1"], clock)
    assert names(fakes["alertmanager.1"].sent) == [[("firing", "A"), ("firing", "B")], [("firing", "A")]]
    d.stop()


def test_mqtt_receivers_go_to_alertmanager_as_webhooks_to_the_collectors_relay() -> None:
    inv = inventory(MQTT_INVENTORY)
    cfg = alerting(PEERS + "mqtt_delivery: alertmanager\n")
    assert all(s.type == "alertmanager" or s.owner == "noc" for s in Router(cfg, inv).receivers.values())
    assert list(mqtt_receivers(cfg, inv)) == ["carrier.viettel.mqtt.1", "carrier.vinaphone.mqtt.0"]
    with pytest.raises(ValueError, match="give the URL of the collector beside this Alertmanager"):
        amconfig.render(inv, cfg)
    doc = yaml.safe_load(amconfig.render(inv, cfg, relay="http://127.0.0.1:9109").text)
    hooks = {r["name"]: [h["url"] for h in r.get("webhook_configs", [])] for r in doc["receivers"]}
    assert hooks["viettel"] == ["http://viettel.example/hook",
                                "http://127.0.0.1:9109/relay/mqtt/carrier.viettel.mqtt.1"]
    assert hooks["vinaphone"] == ["http://127.0.0.1:9109/relay/mqtt/carrier.vinaphone.mqtt.0"]
    assert {"receiver": "vinaphone", "matchers": ['carrier="452-02"'], "continue": True} in doc["route"]["routes"]
    direct = yaml.safe_load(amconfig.render(inv, alerting(PEERS)).text)   # mqtt_delivery direct: the collector's
    assert "vinaphone" not in {r["name"] for r in direct["receivers"]}


def test_mqtt_delivery_through_alertmanager_needs_alertmanager_to_deliver() -> None:
    with pytest.raises(Exception, match="mqtt_delivery: alertmanager needs Alertmanager to deliver"):
        alerting(PEERS + "delivery: direct\nmqtt_delivery: alertmanager\n")


class FakePublisher:
    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []
        self.error: NotifyError | None = None

    def publish(self, topic: str, payload: bytes, timeout: float) -> None:
        if self.error is not None:
            raise self.error
        self.published.append((topic, payload))


def call(app: Callable[..., Iterable[bytes]], path: str, body: bytes, method: str = "POST",
         authorization: str = "") -> tuple[int, str]:
    got: list[str] = []
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "wsgi.input": io.BytesIO(body),
               "HTTP_AUTHORIZATION": authorization}
    out = b"".join(app(environ, lambda status, headers: got.append(status)))
    return int(got[0].split()[0]), out.decode()


def relay(token: str | None = None) -> tuple[MqttRelay, FakePublisher, CollectorRegistry]:
    registry = CollectorRegistry()
    publisher = FakePublisher()
    receivers = mqtt_receivers(alerting(), inventory(MQTT_INVENTORY))
    return MqttRelay(receivers, publisher, registry, token=token), publisher, registry  # type: ignore[arg-type]


def webhook(alerts: int, size: int = 10) -> bytes:
    return json.dumps({"version": "4", "status": "firing", "receiver": "viettel", "commonLabels": {"alertname": "X"},
                       "alerts": [{"status": "firing", "labels": {"alertname": "X", "n": str(i)},
                                   "annotations": {"description": "d" * size}} for i in range(alerts)]}).encode()


def test_the_relay_republishes_alertmanagers_webhook_on_the_receivers_topic() -> None:
    app, publisher, registry = relay()
    body = webhook(2)
    assert call(app, f"{RELAY_PATH}carrier.viettel.mqtt.1", body)[0] == 200
    ((topic, payload),) = publisher.published
    assert topic == "carriers/viettel" and json.loads(payload) == json.loads(body)
    assert registry.get_sample_value("zonewatch_relay_messages_total",
                                     {"receiver": "carrier.viettel.mqtt.1", "result": "sent"}) == 1


@pytest.mark.parametrize(("path", "body", "method", "code"), [
    (f"{RELAY_PATH}carrier.viettel.webhook.0", webhook(1), "POST", 404),   # not an MQTT receiver: no topic
    (f"{RELAY_PATH}../../zw/v1/dv/p1/config", webhook(1), "POST", 404),    # a topic it was not given
    (f"{RELAY_PATH}carrier.viettel.mqtt.1", b"not json", "POST", 400),
    (f"{RELAY_PATH}carrier.viettel.mqtt.1", b'{"no": "alerts"}', "POST", 400),
    (f"{RELAY_PATH}carrier.viettel.mqtt.1", webhook(1), "GET", 405),
])
def test_the_relay_refuses_what_is_not_a_webhook_for_one_of_its_receivers(path: str, body: bytes, method: str,
                                                                           code: int) -> None:
    app, publisher, _ = relay()
    assert call(app, path, body, method)[0] == code
    assert publisher.published == []


def test_with_a_token_the_relay_takes_only_alertmanagers_requests() -> None:
    app, publisher, _ = relay(token="t0k3n-for-the-relay")
    path = f"{RELAY_PATH}carrier.viettel.mqtt.1"
    assert call(app, path, webhook(1))[0] == 401
    assert call(app, path, webhook(1), authorization="Bearer not-the-token")[0] == 401
    assert publisher.published == []
    assert call(app, path, webhook(1), authorization="Bearer t0k3n-for-the-relay")[0] == 200
    cfg = alerting(PEERS + "mqtt_delivery: alertmanager\nrelay_token: t0k3n-for-the-relay\n")
    rendered = amconfig.render(inventory(MQTT_INVENTORY), cfg, secrets_dir="/etc/am-secrets", relay="http://c:9109")
    assert rendered.secrets == {"relay-token": "t0k3n-for-the-relay"}
    hooks = [h for r in yaml.safe_load(rendered.text)["receivers"] for h in r.get("webhook_configs", [])
             if RELAY_PATH in h["url"]]
    assert len(hooks) == 2 and all(h["http_config"] == {"authorization": {
        "type": "Bearer", "credentials_file": "/etc/am-secrets/relay-token"}} for h in hooks)
    assert "t0k3n" not in rendered.text


def test_the_relay_tells_alertmanager_to_retry_or_to_give_up() -> None:
    app, publisher, registry = relay()
    publisher.error = NotifyError("not connected", retryable=True)
    assert call(app, f"{RELAY_PATH}carrier.viettel.mqtt.1", webhook(1))[0] == 503   # Alertmanager retries a 5xx
    publisher.error = NotifyError("the broker refused the message: Not authorized", retryable=False)
    assert call(app, f"{RELAY_PATH}carrier.viettel.mqtt.1", webhook(1))[0] == 400   # and gives a 4xx up
    assert registry.get_sample_value("zonewatch_relay_messages_total",
                                     {"receiver": "carrier.viettel.mqtt.1", "result": "retry"}) == 1


def test_a_document_over_the_brokers_limit_is_published_in_parts_by_alerts() -> None:
    app, publisher, _ = relay()
    body = webhook(8, MAX_MESSAGE // 6)
    assert call(app, f"{RELAY_PATH}carrier.viettel.mqtt.1", body)[0] == 200
    parts = [json.loads(p) for _, p in publisher.published]
    assert len(parts) > 1 and all(len(p) <= MAX_MESSAGE for _, p in publisher.published)
    assert [a["labels"]["n"] for part in parts for a in part["alerts"]] == [str(i) for i in range(8)]


def test_the_relay_shares_the_metrics_endpoint_by_path() -> None:
    app, _, _ = relay()

    def metrics(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [])
        return [b"metrics"]

    both = with_relay(app, metrics)
    assert call(both, "/metrics", b"", "GET") == (200, "metrics")
    assert call(both, f"{RELAY_PATH}nobody", webhook(1))[0] == 404


def engine(tmp: Path) -> AlertEngine:
    cfg = strict.load(AlertingConfig, f"state_path: '{tmp / 'alerts.db'}'\nrestart_grace: 2m\n")
    return AlertEngine(cfg, strict.load(Inventory, INVENTORY, "inventory.yaml"), FakeDispatcher(), lambda b: None,
                       CollectorRegistry(), clock=lambda: T0, hold_until_caught_up=True)


def test_an_ha_collector_judges_nothing_until_its_first_tick_after_the_start_is_back(tmp_path: Path) -> None:
    caught = engine(tmp_path)
    assert caught._held(T0 + 10 * S)
    caught.ingest([(f"{TICK_ROOT}collector", str(T0 - S).encode(), T0)])   # published before the start
    assert caught._held(T0 + 10 * S)
    caught.ingest([(f"{TICK_ROOT}collector", str(T0 + S).encode(), T0 + S)])
    assert not caught._held(T0 + 10 * S) and not caught.holding
    (tmp_path / "late").mkdir()
    late = engine(tmp_path / "late")   # no tick back: restart_grace at most
    assert late._held(T0 + 119 * S) and not late._held(T0 + 120 * S)
