"""Notifier types: the ``type`` of a receiver, the module that implements it, and its factory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from collector.alerting.config import AlertmanagerTarget, SmtpConfig
from collector.alerting.notify.alertmanager import AlertmanagerNotifier
from collector.alerting.notify.base import Clock, Notifier
from collector.alerting.notify.email import EmailNotifier
from collector.alerting.notify.mqtt import MqttNotifier, MqttPublisher
from collector.alerting.notify.routing import ReceiverSpec
from collector.alerting.notify.webhook import WebhookNotifier
from collector.inventory import EmailReceiver, MqttReceiver, WebhookReceiver


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


NOTIFIERS: dict[str, Callable[[ReceiverSpec, Context], Notifier]] = {
    "webhook": _webhook,
    "email": _email,
    "mqtt": _mqtt,
    "alertmanager": _alertmanager,
}


def make_notifier(spec: ReceiverSpec, ctx: Context) -> Notifier:
    """Return the notifier for one receiver."""
    return NOTIFIERS[spec.type](spec, ctx)
