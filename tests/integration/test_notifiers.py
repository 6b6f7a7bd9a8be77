"""Notifications against real receivers: an HTTP webhook server (down, then back), Alertmanager with the
rendered configuration, an SMTP server with STARTTLS and login (aiosmtpd), mosquitto with the rendered ACL,
and a collector killed with SIGKILL whose outbox is delivered by the next one.

Every service binds a free port on 127.0.0.1 and is stopped by PID or closed by the test; every wait polls
with a bound.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import signal
import ssl
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from cryptography.hazmat.primitives import serialization
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import CollectorRegistry

from collector import mosquitto
from collector.alerting import amconfig
from collector.alerting.config import AlertingConfig, SmtpConfig
from collector.alerting.model import Notification
from collector.alerting.notify import Dispatcher, NotifyError
from collector.alerting.notify.email import EmailNotifier
from collector.alerting.notify.payload import am_fingerprint
from collector.inventory import EmailReceiver, Inventory
from collector.mosquitto.passwd import render_passwd
from tests import services
from tests.services import WebhookServer
from tests.tlsbroker import make_ca, make_server_cert
from zonewatch import strict
from zonewatch.mqtt import MqttConfig

pytestmark = pytest.mark.integration

WAIT = 15.0
S = 1_000_000_000
TOKEN = "hook-token-abcdef123456"
SMTP_PASSWORD = "smtp-Pa55-word-778899"
MQTT_PASSWORD = "collector-mqtt-pw-4455"
FAST_RETRY = "retry: {initial: 50ms, max: 200ms}\n"


def note(alertname: str = "ServiceOutage", status: str = "firing", carrier: str | None = "452-04",
         **labels: str) -> Notification:
    now = dt.datetime.now(dt.timezone.utc).timestamp()
    base = {"alertname": alertname, "severity": "critical", "zone": "dinh-vu", "group": "viettel-fibre"}
    if carrier:
        base["carrier"] = carrier
    base.update(labels)
    starts = int((now - 60) * S)
    return Notification(status, base, {"summary": f"{alertname} in dinh-vu"}, starts,  # type: ignore[arg-type]
                        int(now * S) if status == "resolved" else 0)


def alerting(text: str) -> AlertingConfig:
    return strict.load(AlertingConfig, text, "collector.yaml")


def inventory(text: str) -> Inventory:
    return strict.load(Inventory, text, "inventory.yaml")


def metric(registry: CollectorRegistry, name: str, receiver: str) -> float:
    return registry.get_sample_value(name, {"receiver": receiver}) or 0.0


# ---------------------------------------------------------------------------------------------- a webhook server


@pytest.fixture
def hooks() -> Iterator[WebhookServer]:
    server = WebhookServer().start()
    yield server
    server.stop()


def webhook_inventory(url: str) -> str:
    return f"""\
zones:
  dinh-vu: {{name: Dinh Vu}}
carriers:
  viettel:
    plmn: 452-04
    name: Viettel
    notify: [{{type: webhook, url: "{url}/viettel", bearer_token: {TOKEN}}}]
  vinaphone:
    plmn: 452-02
    name: VinaPhone
    notify: [{{type: webhook, url: "{url}/vinaphone"}}]
"""


# ---------------------------------------------------------------------------------------------- webhook


def test_a_webhook_that_is_down_gets_everything_later_in_order_once(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="collector.alerting.notify")
    server = WebhookServer()          # not started: connections are refused
    registry = CollectorRegistry()
    cfg = alerting(FAST_RETRY + f"noc: [{{type: webhook, url: '{server.url}/noc'}}]\n"
                   "external_url: https://grafana.zone.example/d/zw-alerts\n")
    d = Dispatcher(cfg, inventory(webhook_inventory(server.url)), None, registry, outbox_dir=tmp_path / "outbox")
    d.start()
    try:
        d.submit([note("ServiceOutage")])
        d.submit([note("LinkDown", device="sw-core", link="uplink-1")])
        d.submit([note("ServiceOutage", "resolved")])
        failures = "zonewatch_notify_failures_total"
        services.wait_for(lambda: metric(registry, failures, "carrier.viettel.webhook.0") >= 3, WAIT,
                          "three failed attempts")
        assert d.depth("carrier.viettel.webhook.0") == 3
        server.start()
        server.wait("/viettel", 3, "after the receiver came back")
        d.submit([note("DeviceDown", device="bts-01")])      # a marker: whatever was to come came before it
        server.wait("/viettel", 4, "the marker")
        server.wait("/noc", 4, "the NOC")
    finally:
        d.stop()
        server.stop()
    assert server.alerts("/viettel") == [("firing", "ServiceOutage"), ("firing", "LinkDown"),
                                         ("resolved", "ServiceOutage"), ("firing", "DeviceDown")]
    assert server.alerts("/noc") == server.alerts("/viettel")
    assert server.alerts("/vinaphone") == []
    first = server.at("/viettel")[0]
    assert first.headers["Authorization"] == f"Bearer {TOKEN}"
    assert first.body["version"] == "4" and first.body["receiver"] == "viettel"
    assert first.body["externalURL"] == "https://grafana.zone.example/d/zw-alerts"  # where to see more
    assert first.body["alerts"][0]["endsAt"] == "0001-01-01T00:00:00Z"
    assert server.at("/noc")[0].body["receiver"] == "noc" and "Authorization" not in server.at("/noc")[0].headers
    assert metric(registry, "zonewatch_notify_sent_total", "carrier.viettel.webhook.0") == 4
    assert metric(registry, "zonewatch_notify_queue_depth", "carrier.viettel.webhook.0") == 0
    assert "receiver carrier.viettel.webhook.0 is not taking notifications (webhook (http://127.0.0.1:" in caplog.text
    assert "Connection refused" in caplog.text and "is back" in caplog.text
    assert TOKEN not in caplog.text


def test_a_message_the_webhook_refuses_is_dropped_and_the_next_delivered(
        tmp_path: Path, hooks: WebhookServer, caplog: pytest.LogCaptureFixture) -> None:
    hooks.status["WeakSignal"] = 400
    registry = CollectorRegistry()
    d = Dispatcher(alerting(FAST_RETRY), inventory(webhook_inventory(hooks.url)), None, registry,
                   outbox_dir=tmp_path)
    d.start()
    try:
        d.submit([note("WeakSignal"), note("NoService")])
        hooks.wait("/viettel", 1, "the message after the refused one")
    finally:
        d.stop()
    assert hooks.alerts("/viettel") == [("firing", "NoService")]
    assert registry.get_sample_value("zonewatch_notify_dropped_total",
                                     {"receiver": "carrier.viettel.webhook.0", "reason": "refused"}) == 1
    assert ("receiver carrier.viettel.webhook.0 refused firing WeakSignal for good, dropped: webhook "
            f"(http://127.0.0.1:{hooks.port}): HTTP 400") in caplog.text


RESTART_SCRIPT = """
import sys, time
from prometheus_client import CollectorRegistry
from zonewatch import strict
from collector.alerting.config import AlertingConfig
from collector.alerting.model import Notification
from collector.alerting.notify import Dispatcher
from collector.inventory import Inventory
cfg = strict.load(AlertingConfig, open(sys.argv[1]).read(), "collector.yaml")
inv = strict.load(Inventory, open(sys.argv[2]).read(), "inventory.yaml")
d = Dispatcher(cfg, inv, None, CollectorRegistry())
d.start()
for i in range(3):
    labels = {"alertname": "DeviceDown", "zone": "dinh-vu", "carrier": "452-04", "device": f"bts-0{i}"}
    d.submit([Notification("firing", labels, {}, 1_764_000_000 * 10**9 + i)])
print("submitted", flush=True)
time.sleep(600)
"""


def test_what_a_killed_collector_left_undelivered_is_sent_by_the_next_one(tmp_path: Path) -> None:
    server = WebhookServer()          # down while the first collector runs
    (tmp_path / "collector.yaml").write_text(FAST_RETRY + f"outbox_dir: {tmp_path / 'outbox'}\n")
    (tmp_path / "inventory.yaml").write_text(webhook_inventory(server.url))
    proc = subprocess.Popen([sys.executable, "-c", RESTART_SCRIPT, str(tmp_path / "collector.yaml"),
                             str(tmp_path / "inventory.yaml")], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()   # bounded: the script prints at once or dies (pytest-timeout as the bound)
        assert line == "submitted\n"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    server.start()
    registry = CollectorRegistry()
    cfg = alerting((tmp_path / "collector.yaml").read_text())
    d = Dispatcher(cfg, inventory(webhook_inventory(server.url)), None, registry)
    d.start()
    try:
        server.wait("/viettel", 3, "the undelivered messages from before the kill")
        d.submit([note("ProbeDown", probe="p1")])
        server.wait("/viettel", 4, "the marker")
    finally:
        d.stop()
        server.stop()
    devices = [a["labels"].get("device") for h in server.at("/viettel") for a in h.body["alerts"]]
    assert devices == ["bts-00", "bts-01", "bts-02", None]


# ---------------------------------------------------------------------------------------------- Alertmanager


@pytest.fixture
def alertmanager(tmp_path: Path, hooks: WebhookServer) -> Iterator[services.Service]:
    """Alertmanager with the configuration rendered from the inventory, delivering to ``hooks``."""
    inv = inventory(webhook_inventory(hooks.url))
    cfg = alerting(f"noc: [{{type: webhook, url: '{hooks.url}/noc'}}]\n")
    timing = amconfig.Timing(group_wait="0s", group_interval="100ms", repeat_interval="1h")
    written = amconfig.write(inv, cfg, tmp_path / "am-config" / "alertmanager.yml", timing=timing)
    svc = services.start_alertmanager(tmp_path / "am", written[-1][0].read_text())
    yield svc
    svc.stop()


def am_alerts(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/api/v2/alerts?active=true&inhibited=true&silenced=true", timeout=5) as r:
        return list(json.load(r))


def test_alertmanager_gets_alerts_by_api_v2_and_routes_each_carrier_to_its_own_webhook_and_the_noc(
        tmp_path: Path, hooks: WebhookServer, alertmanager: services.Service) -> None:
    # Alertmanager does the routing here: the collector's inventory has no receivers of its own.
    inv = inventory("zones:\n  dinh-vu: {name: D}\ncarriers:\n  viettel: {plmn: 452-04, name: V}\n"
                    "  vinaphone: {plmn: 452-02, name: P}\n")
    cfg = alerting(FAST_RETRY + f"alertmanager: {{url: '{alertmanager.url}', resend_interval: 60s}}\n"
                   "external_url: http://collector.test:9109\n")
    d = Dispatcher(cfg, inv, None, CollectorRegistry(), outbox_dir=tmp_path / "outbox")
    d.start()
    try:
        outage = note("ServiceOutage")
        d.submit([outage])
        hooks.wait("/viettel", 1, "the outage, routed by Alertmanager")
        hooks.wait("/noc", 1, "the outage at the NOC")
        (held,) = [a for a in am_alerts(alertmanager.url) if a["labels"]["alertname"] == "ServiceOutage"]
        ends = dt.datetime.fromisoformat(held["endsAt"].replace("Z", "+00:00"))
        ahead = (ends - dt.datetime.now(dt.timezone.utc)).total_seconds()
        assert 200 < ahead <= 240       # 4 x resend_interval ahead: it would resolve by itself if we stopped
        # RedundancyLost of the same group is inhibited by the outage; a vinaphone alert goes to vinaphone.
        d.submit([note("RedundancyLost", severity="warning"), note("CoverageHole", carrier="452-02", area="gate-a")])
        hooks.wait("/vinaphone", 1, "vinaphone's own alert")
        services.wait_for(lambda: any(a["labels"]["alertname"] == "RedundancyLost" and a["status"]["inhibitedBy"]
                                      for a in am_alerts(alertmanager.url)), WAIT, "RedundancyLost inhibited")
        d.sync_alertmanager([outage], 0)       # the periodic resend pushes the alert's end further ahead
        services.wait_for(lambda: any(a["labels"]["alertname"] == "ServiceOutage" and a["endsAt"] > held["endsAt"]
                                      for a in am_alerts(alertmanager.url)), WAIT, "the resend's later endsAt")
        d.submit([note("ServiceOutage", "resolved")])
        services.wait_for(lambda: ("resolved", "ServiceOutage") in hooks.alerts("/viettel"), WAIT,
                          "the resolved outage")
        hooks.wait("/noc", 3, "every alert at the NOC")
    finally:
        d.stop()
    viettel = hooks.alerts("/viettel")
    assert viettel[0] == ("firing", "ServiceOutage") and ("resolved", "ServiceOutage") in viettel
    assert ("firing", "CoverageHole") not in viettel        # another carrier's alert never reaches viettel
    assert hooks.alerts("/vinaphone") == [("firing", "CoverageHole")]
    assert ("firing", "CoverageHole") in hooks.alerts("/noc")
    first = hooks.at("/viettel")[0]
    assert first.headers["Authorization"] == f"Bearer {TOKEN}"     # the token file the renderer wrote
    sent = first.body["alerts"][0]
    assert sent["fingerprint"] == am_fingerprint(outage.labels)    # our fingerprint is Alertmanager's
    assert sent["generatorURL"] == "http://collector.test:9109"
    assert first.body["groupLabels"] == {"alertname": "ServiceOutage", "zone": "dinh-vu", "carrier": "452-04",
                                         "group": "viettel-fibre"}
    # the webhook notifier's own JSON has the keys Alertmanager sends
    from collector.alerting.notify.payload import webhook_message
    assert set(webhook_message([outage], "viettel")) == set(first.body)


# ---------------------------------------------------------------------------------------------- email


@dataclass
class Mailbox:
    port: int
    messages: list[tuple[Envelope, Message]]
    logins: list[str]


class _Handler:
    def __init__(self, box: list[tuple[Envelope, Message]]) -> None:
        self.box = box

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:  # noqa: N802
        content = envelope.original_content or b""
        self.box.append((envelope, message_from_bytes(content)))
        return "250 OK"


@pytest.fixture
def smtp_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Mailbox]:
    """aiosmtpd on 127.0.0.1 requiring STARTTLS (a certificate from a test CA) before AUTH LOGIN/PLAIN."""
    ca, ca_key = make_ca("zonewatch smtp test CA")
    now = dt.datetime.now(dt.timezone.utc)
    cert, key = make_server_cert(ca, ca_key, now - dt.timedelta(hours=1), now + dt.timedelta(days=1))
    (tmp_path / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "server.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                            serialization.PrivateFormat.PKCS8,
                                                            serialization.NoEncryption()))
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(tmp_path / "server.crt", tmp_path / "server.key")
    # The notifier verifies the relay with the system's trust store: point it at the test CA.
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.crt"))
    box: list[tuple[Envelope, Message]] = []
    logins: list[str] = []

    def authenticator(server: Any, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.login == b"zonewatch" and data.password == SMTP_PASSWORD.encode()
        if ok:
            logins.append(mechanism)
        return AuthResult(success=ok, handled=False)   # handled=False: aiosmtpd answers 535 itself

    port = services.free_port()
    controller = Controller(_Handler(box), hostname="127.0.0.1", port=port, tls_context=tls, require_starttls=True,
                            authenticator=authenticator, auth_require_tls=True, auth_required=True)
    controller.start()
    yield Mailbox(port, box, logins)
    controller.stop()


def smtp_config(port: int, password: str = SMTP_PASSWORD) -> str:
    return (f"smtp: {{host: 127.0.0.1, port: {port}, from: zonewatch@zone.example, username: zonewatch, "
            f"password: '{password}', starttls: true, timeout: 5s}}\n")


def test_email_goes_through_starttls_and_login_with_a_readable_subject(tmp_path: Path, smtp_server: Mailbox) -> None:
    inv = inventory("zones:\n  dinh-vu: {name: D}\ncarriers:\n  viettel:\n    plmn: 452-04\n    name: V\n"
                    "    notify: [{type: email, to: [noc@viettel.example, fibre@viettel.example]}]\n")
    d = Dispatcher(alerting(FAST_RETRY + smtp_config(smtp_server.port)), inv, None, CollectorRegistry(),
                   outbox_dir=tmp_path)
    d.start()
    try:
        d.submit([note("ServiceOutage")])
        d.submit([note("ServiceOutage", "resolved")])
        services.wait_for(lambda: len(smtp_server.messages) >= 2, WAIT, "two emails")
    finally:
        d.stop()
    (env1, first), (_, second) = smtp_server.messages
    assert smtp_server.logins and env1.rcpt_tos == ["noc@viettel.example", "fibre@viettel.example"]
    assert first["Subject"] == "[FIRING] ServiceOutage viettel-fibre (452-04)"
    assert second["Subject"] == "[RESOLVED] ServiceOutage viettel-fibre (452-04)"
    assert first["From"] == "zonewatch@zone.example"
    body = first.get_payload(decode=True)
    assert isinstance(body, bytes)
    assert "FIRING: ServiceOutage\n  summary: ServiceOutage in dinh-vu\n" in body.decode().replace("\r\n", "\n")


def test_a_wrong_smtp_password_is_retried_and_never_shown(smtp_server: Mailbox) -> None:
    smtp = SmtpConfig.model_validate({"host": "127.0.0.1", "port": smtp_server.port, "from": "zonewatch@zone.example",
                                      "username": "zonewatch", "password": "wrong-Secret-112233", "starttls": True,
                                      "timeout": "5s"})
    notifier = EmailNotifier(EmailReceiver(type="email", to=["noc@viettel.example"]), smtp)
    with pytest.raises(NotifyError) as err:
        notifier.notify([note()])
    assert err.value.retryable
    assert "login as 'zonewatch' refused: 535" in str(err.value)
    assert "wrong-Secret-112233" not in str(err.value)
    assert smtp_server.messages == []


# ---------------------------------------------------------------------------------------------- MQTT


MQTT_INVENTORY = """\
zones:
  dinh-vu: {name: D}
carriers:
  viettel:
    plmn: 452-04
    name: V
    notify: [{type: mqtt, topic: carriers/viettel/alerts}]
probes:
  p1: {zone: dinh-vu}
"""


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[services.Service]:
    """mosquitto with the rendered ACL and passwords, and the production listener's use_username_as_clientid."""
    workdir = tmp_path / "mosquitto"
    workdir.mkdir()
    acl = mosquitto.render_acl(inventory(MQTT_INVENTORY))
    acl += "\n# the carrier's subscriber (not rendered: carriers have no broker users yet)\nuser viettel\n" \
           "topic read carriers/viettel/alerts\n"
    (workdir / "acl").write_text(acl)
    (workdir / "passwd").write_text(render_passwd(
        {"collector": MQTT_PASSWORD, "collector-urgent": MQTT_PASSWORD, "viettel": "viettel-pw", "p1": "p1-pw"}))
    options = (f"allow_anonymous false\npassword_file {workdir / 'passwd'}\nacl_file {workdir / 'acl'}\n"
               "use_username_as_clientid true")
    svc = services.start_mosquitto(workdir, listener_options=options)
    yield svc
    svc.stop()


class Subscriber:
    """The carrier's MQTT client, subscribed QoS 1 to its alert topic."""

    def __init__(self, port: int) -> None:
        self.messages: list[dict[str, Any]] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.username_pw_set("viettel", "viettel-pw")
        self.client.on_connect = lambda c, *a: c.subscribe("carriers/viettel/alerts", qos=1)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = lambda c, u, msg: self.messages.append(json.loads(msg.payload))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.subscribed.wait(WAIT), "the carrier's subscriber did not get its SUBACK"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def collector_mqtt(port: int) -> MqttConfig:
    return MqttConfig.model_validate({"host": "127.0.0.1", "port": port, "username": "collector",
                                      "password": MQTT_PASSWORD, "client_id": "zonewatch-collector"})


def test_mqtt_receiver_gets_the_webhook_json_on_its_topic_and_other_topics_are_refused(
        tmp_path: Path, broker: services.Service) -> None:
    sub = Subscriber(broker.port)
    d = Dispatcher(alerting(FAST_RETRY), inventory(MQTT_INVENTORY), collector_mqtt(broker.port), CollectorRegistry(),
                   outbox_dir=tmp_path)
    d.start()
    try:
        d.submit([note("ServiceOutage")])
        services.wait_for(lambda: len(sub.messages) >= 1, WAIT, "the alert on the carrier's topic")
        assert d.publisher is not None
        with pytest.raises(NotifyError) as err:          # the ACL lets the collector write its receivers' topics only
            d.publisher.publish("carriers/vinaphone/alerts", b"{}", 5.0)
        assert not err.value.retryable and "Not authorized" in str(err.value)
    finally:
        d.stop()
        sub.close()
    (msg,) = sub.messages
    assert msg["version"] == "4" and msg["receiver"] == "viettel"
    assert [a["labels"]["alertname"] for a in msg["alerts"]] == ["ServiceOutage"]


def test_mqtt_through_the_ingests_connection_leaves_that_connection_alone(tmp_path: Path,
                                                                          broker: services.Service) -> None:
    # The broker names clients by username: a second "collector" connection would take the first one's place.
    sub = Subscriber(broker.port)
    ingest = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="zonewatch-collector",
                         protocol=mqtt.MQTTv5)
    ingest.username_pw_set("collector", MQTT_PASSWORD)
    drops: list[object] = []
    connected = threading.Event()
    ingest.on_connect = lambda *a: connected.set()
    ingest.on_disconnect = lambda *a: drops.append(a[3])
    ingest.connect("127.0.0.1", broker.port)
    ingest.loop_start()
    assert connected.wait(WAIT)
    d = Dispatcher(alerting(FAST_RETRY), inventory(MQTT_INVENTORY), None, CollectorRegistry(), mqtt_client=ingest,
                   outbox_dir=tmp_path)
    d.start()
    try:
        d.submit([note("ServiceOutage")])
        d.submit([note("ServiceOutage", "resolved")])
        services.wait_for(lambda: len(sub.messages) >= 2, WAIT, "both alerts on the carrier's topic")
        assert drops == [] and ingest.is_connected()      # the ingest's connection was never taken over
    finally:
        d.stop()
        ingest.disconnect()
        ingest.loop_stop()
        sub.close()
    assert [m["status"] for m in sub.messages] == ["firing", "resolved"]
