"""The MQTT relay: Alertmanager's webhook in, a carrier's (or the NOC's) MQTT topic out.

Why it exists. Alertmanager cannot publish to MQTT, and an HA pair of collectors must not both publish each
MQTT notification. With ``alerting.mqtt_delivery: alertmanager`` the collectors send nothing to MQTT receivers
themselves (``routing``); ``render-alertmanager`` gives each such receiver a ``webhook_config`` in its carrier's
(or the NOC's) Alertmanager receiver, pointing at ``POST /relay/mqtt/<receiver>`` of the collector on the same
host as that Alertmanager peer. Alertmanager then groups, inhibits and silences MQTT notifications as it does
the others, and its cluster sends each once: the first peer sends, the others wait their turn (``--cluster.
peer-timeout`` times their position) and send only what its gossiped notification log does not show as sent.
So when the collector beside the first peer is down, its relay refuses the connection, the first peer's
attempt fails (nothing logged as sent for that integration), and the next peer sends through its own
collector's relay. Delivery is Alertmanager's: at least once. A relay that published but died before
answering, or that comes back while its peer still retries (Alertmanager retries a failed webhook for its
group_interval, at least 10 s), may let a message go out twice; none is lost while one relay is up.

The relay republishes the webhook JSON as Alertmanager sent it (version 4: the same document the collector's
own MQTT notifier publishes), QoS 1, and answers once the broker acknowledged it: 200; 503 when it could not
publish for now (no broker connection, no PUBACK in time: Alertmanager retries); 400 for a body that is not
a webhook document or a message the broker refuses for good (Alertmanager does not retry a 4xx); 404 for a
receiver the inventory does not have; 401 without ``alerting.relay_token`` as its bearer token, when one is set
(``render-alertmanager`` writes it into a secret file the configuration names, so only Alertmanager sends it).
A document over the broker's packet limit is published in parts, split by alerts. Receiver names are the
routing's (``carrier.<key>.mqtt.<n>``, ``noc.mqtt.<n>``), so a request can only reach a topic the inventory
(or ``alerting.noc``) names. The endpoint is served beside ``/metrics`` by the collector's bounded HTTP server
(loopback by default), which reads a body of at most ``MAX_BODY`` bytes.

Threads: the HTTP server calls the application from one thread per connection (at most 16 at once);
``MqttPublisher.publish`` is thread-safe.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from collector.alerting.config import AlertingConfig
from collector.alerting.notify.base import NotifyError
from collector.alerting.notify.mqtt import MAX_MESSAGE, MqttPublisher
from collector.alerting.notify.routing import NOC
from collector.inventory import Inventory, MqttReceiver

__all__ = ["MAX_BODY", "RELAY_PATH", "MqttRelay", "mqtt_receivers", "relay_url", "with_relay"]

log = logging.getLogger(__name__)

RELAY_PATH = "/relay/mqtt/"
MAX_BODY = 4 * MAX_MESSAGE    # Alertmanager sends a whole group in one request; it is published in parts
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def mqtt_receivers(cfg: AlertingConfig, inventory: Inventory) -> dict[str, MqttReceiver]:
    """Return every MQTT receiver by its routing name: the NOC's, then each carrier's in inventory order."""
    out: dict[str, MqttReceiver] = {}
    for i, r in enumerate(cfg.noc):
        if isinstance(r, MqttReceiver):
            out[f"{NOC}.mqtt.{i}"] = r
    for key, carrier in inventory.carriers.items():
        for i, r in enumerate(carrier.notify):
            if isinstance(r, MqttReceiver):
                out[f"carrier.{key}.mqtt.{i}"] = r
    return out


def relay_url(base: str, receiver: str) -> str:
    """Return the URL Alertmanager posts ``receiver``'s notifications to, on the collector at ``base``."""
    return f"{base.rstrip('/')}{RELAY_PATH}{receiver}"


def _parts(doc: dict[str, Any]) -> list[bytes]:
    """Return ``doc`` as one message, or split by its alerts into messages within ``MAX_MESSAGE``."""
    body = json.dumps(doc, separators=(",", ":")).encode()
    alerts = doc.get("alerts", [])
    if len(body) <= MAX_MESSAGE:
        return [body]
    if len(alerts) <= 1:
        raise NotifyError(f"one alert makes a {len(body)}-byte message, over the {MAX_MESSAGE}-byte limit",
                          retryable=False)
    half = len(alerts) // 2
    return [*_parts({**doc, "alerts": alerts[:half]}), *_parts({**doc, "alerts": alerts[half:]})]


class MqttRelay:
    """The WSGI application behind ``POST /relay/mqtt/<receiver>`` (see the module docstring)."""

    def __init__(self, receivers: Mapping[str, MqttReceiver], publisher: MqttPublisher, registry: CollectorRegistry,
                 timeout: float = 10.0, token: str | None = None) -> None:
        self.receivers = dict(receivers)
        self._expected = f"Bearer {token}".encode() if token else None
        self.publisher = publisher
        self.timeout = timeout
        self.relayed = Counter("zonewatch_relay_messages", "Alertmanager webhook messages relayed to MQTT receivers, "
                               "by receiver and result (sent, retry, refused, unauthorized)", ["receiver", "result"],
                               registry=registry)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        name = str(environ.get("PATH_INFO", ""))[len(RELAY_PATH):]
        if environ.get("REQUEST_METHOD") != "POST":
            return _answer(start_response, 405, "POST the webhook JSON")
        given = str(environ.get("HTTP_AUTHORIZATION", "")).encode()
        if self._expected is not None and not hmac.compare_digest(given, self._expected):
            self.relayed.labels("", "unauthorized").inc()
            return _answer(start_response, 401, "the relay takes Alertmanager's requests only (alerting.relay_token)")
        receiver = self.receivers.get(name)
        if receiver is None:
            return _answer(start_response, 404, f"no mqtt receiver {name!r}")
        try:
            doc = json.loads(environ["wsgi.input"].read())
            if not isinstance(doc, dict) or not isinstance(doc.get("alerts"), list):
                raise ValueError("not a webhook document (no alerts list)")
            parts = _parts(doc)
            for part in parts:
                self.publisher.publish(receiver.topic, part, self.timeout)
        except (ValueError, UnicodeDecodeError) as exc:
            self.relayed.labels(name, "refused").inc()
            log.warning("relay %s: refused a request: %s", name, exc)
            return _answer(start_response, 400, str(exc))
        except NotifyError as exc:
            result = "retry" if exc.retryable else "refused"
            self.relayed.labels(name, result).inc()
            log.warning("relay %s: %s (%s)", name, exc, "Alertmanager retries" if exc.retryable else "dropped")
            return _answer(start_response, 503 if exc.retryable else 400, str(exc))
        self.relayed.labels(name, "sent").inc()
        log.info("relay %s: published %s %s (%d alerts) on %s", name, doc.get("status"),
                 doc.get("commonLabels", {}).get("alertname", ""), len(doc["alerts"]), receiver.topic)
        return _answer(start_response, 200, "published")


def _answer(start_response: Callable[..., Any], code: int, text: str) -> list[bytes]:
    reasons = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
               503: "Service Unavailable"}
    body = (text + "\n").encode()
    start_response(f"{code} {reasons[code]}", [("Content-Type", "text/plain; charset=utf-8"),
                                               ("Content-Length", str(len(body)))])
    return [body]


def with_relay(relay: WsgiApp, other: WsgiApp) -> WsgiApp:
    """Return one application: ``relay`` for paths under ``RELAY_PATH``, ``other`` (``/metrics``) for the rest."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if str(environ.get("PATH_INFO", "")).startswith(RELAY_PATH):
            return relay(environ, start_response)
        return other(environ, start_response)

    return app
