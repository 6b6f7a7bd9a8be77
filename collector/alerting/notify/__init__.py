"""Notifications: route by owner carrier, store durably per receiver, deliver with retries.

::

    base.py          Notifier (the contract: one method, one receiver), NotifyError(retryable), Clock, Delivery
    payload.py       Alertmanager's webhook JSON (version 4), grouping, the outbox encoding
    routing.py       who gets what: the carrier's receivers, the NOC's, Alertmanager (pure)
    outbox.py        one receiver's durable queue and delivery thread: in order, back-off, once
    dispatcher.py    Dispatcher: the public entry the alert engine calls
    registry.py      NOTIFIERS: receiver type -> its Delivery (who can deliver it) and factory; a module per type:
      webhook.py       POST the webhook JSON (bearer token optional)
      alertmanager.py  Alertmanager API v2, with endsAt ahead and periodic resend
      email.py         SMTP, plain text, STARTTLS and login optional
      mqtt.py          publish the webhook JSON, QoS 1, wait for the PUBACK
    metrics.py       zonewatch_notify_* per receiver
    relay.py         Alertmanager's webhook in, an MQTT receiver's topic out (an HA pair's MQTT receivers)
"""

from collector.alerting.notify.base import Clock, Notifier, NotifyError, SystemClock
from collector.alerting.notify.dispatcher import Dispatcher
from collector.alerting.notify.registry import NOTIFIERS
from collector.alerting.notify.routing import Router, receivers

__all__ = ["NOTIFIERS", "Clock", "Dispatcher", "Notifier", "NotifyError", "Router", "SystemClock", "receivers"]
