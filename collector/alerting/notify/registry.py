"""Notifier types: the ``type`` of a receiver, the module that implements it, its factory and its ``Delivery``.

Each type's module declares its ``DELIVERY`` (``base.Delivery``: who can deliver it) beside its notifier;
``NOTIFIERS`` registers both under the type. Routing and ``render-alertmanager`` read the declarations, so a
type that is not registered here is refused by the configuration check, not dropped. A meta-test keeps
``NOTIFIERS`` equal to the receiver types the configuration accepts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from collector.alerting.config import AlertmanagerTarget, SmtpConfig
from collector.alerting.notify import alertmanager, email, mqtt, webhook
from collector.alerting.notify.alertmanager import AlertmanagerNotifier
from collector.alerting.notify.base import Clock, Delivery, Notifier
from collector.alerting.notify.email import EmailNotifier
from collector.alerting.notify.mqtt import MqttNotifier, MqttPublisher
from collector.alerting.notify.webhook import WebhookNotifier
from collector.inventory import EmailReceiver, MqttReceiver, WebhookReceiver

if TYPE_CHECKING:   # routing reads NOTIFIERS
    from collector.alerting.notify.routing import ReceiverSpec


@dataclass(frozen=True)
class Context:
    """What notifiers share: the SMTP relay, the MQTT connection, the clock, the collector's URL."""

    clock: Clock
    smtp: SmtpConfig | None = None
    publisher: MqttPublisher | None = None
    external_url: str = ""
    timeout: float = 10.0


def _webhook(spec: ReceiverSpec, ctx: Context) -> Notifier:
    assert isinstance(spec.config, WebhookReceiver)
    return WebhookNotifier(spec.config, receiver=spec.owner, timeout=ctx.timeout, external_url=ctx.external_url)


def _email(spec: ReceiverSpec, ctx: Context) -> Notifier:
    assert isinstance(spec.config, EmailReceiver)
    if ctx.smtp is None:
        raise ValueError(f"{spec.name}: an email receiver needs alerting.smtp")
    return EmailNotifier(spec.config, ctx.smtp)


def _mqtt(spec: ReceiverSpec, ctx: Context) -> Notifier:
    assert isinstance(spec.config, MqttReceiver)
    if ctx.publisher is None:
        raise ValueError(f"{spec.name}: an mqtt receiver needs the collector's broker connection")
    return MqttNotifier(spec.config, ctx.publisher, receiver=spec.owner, timeout=ctx.timeout,
                        external_url=ctx.external_url)


def _alertmanager(spec: ReceiverSpec, ctx: Context) -> Notifier:
    assert isinstance(spec.config, AlertmanagerTarget)
    return AlertmanagerNotifier(spec.config, clock=ctx.clock, generator_url=ctx.external_url)


Factory = Callable[["ReceiverSpec", Context], Notifier]


@dataclass(frozen=True)
class NotifierType:
    """One receiver type: what it declares (``delivery``) and its notifier's factory (None when the collector
    cannot deliver it itself, as ``delivery.collector`` then says)."""

    delivery: Delivery
    factory: Factory | None

    def __post_init__(self) -> None:
        if not isinstance(self.delivery, Delivery):
            raise TypeError(f"expected the type's Delivery declaration, got {self.delivery!r}")
        if self.delivery.collector != (self.factory is not None):
            raise TypeError("a notifier factory exactly when the Delivery says the collector delivers it "
                            f"(collector={self.delivery.collector}, factory={self.factory!r})")


NOTIFIERS: dict[str, NotifierType] = {
    "webhook": NotifierType(webhook.DELIVERY, _webhook),
    "email": NotifierType(email.DELIVERY, _email),
    "mqtt": NotifierType(mqtt.DELIVERY, _mqtt),
    "alertmanager": NotifierType(alertmanager.DELIVERY, _alertmanager),
}


def make_notifier(spec: ReceiverSpec, ctx: Context) -> Notifier:
    """Return the notifier for one receiver; raise ValueError if the collector cannot deliver its type."""
    kind = NOTIFIERS.get(spec.type)
    if kind is None or kind.factory is None:
        raise ValueError(f"{spec.name}: the collector cannot deliver {spec.type!r} receivers itself (no notifier "
                         "registered for the type in collector/alerting/notify/registry.py)")
    return kind.factory(spec, ctx)
