"""Alertmanager's API v2 (``POST /api/v2/alerts``): Alertmanager then routes, groups, inhibits and silences.

Alertmanager forgets a firing alert whose ``endsAt`` has passed, so, as Prometheus does, a firing alert is
sent with ``endsAt`` = now + ``HOLD_FACTOR`` x ``resend_interval`` and sent again every ``resend_interval``
(the dispatcher's ``sync_alertmanager``); if the collector stops, its alerts resolve there by themselves.
A resolved alert is sent with ``endsAt`` = the time it resolved.

Known limit of Alertmanager itself: an alert that is inhibited or silenced when it resolves gets no
resolved notification from Alertmanager (alertmanager#2754, #226). The collector's own receivers (webhook,
email, MQTT) always get the resolved notification.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import requests

from collector.alerting.config import AlertmanagerTarget
from collector.alerting.model import Notification
from collector.alerting.notify._http import post_json
from collector.alerting.notify.base import Clock, Delivery, SystemClock
from collector.alerting.notify.payload import alert_annotations, rfc3339

HOLD_FACTOR = 4  # Prometheus: endsAt = now + 4 x max(resend delay, evaluation interval)


class AlertmanagerNotifier:
    """One Alertmanager (or the address of a cluster's load balancer)."""

    def __init__(self, target: AlertmanagerTarget, *, clock: Clock | None = None, generator_url: str = "",
                 session: requests.Session | None = None) -> None:
        self.url = f"{target.url}/api/v2/alerts"
        self.timeout = target.timeout
        self.hold_ns = int(HOLD_FACTOR * target.resend_interval * 1e9)
        self.generator_url = generator_url
        self.clock: Clock = clock or SystemClock()
        self._session = session or requests.Session()

    def alerts(self, notifications: Sequence[Notification]) -> list[dict[str, Any]]:
        """Return the API v2 body: postable alerts with ``endsAt`` as described in the module docstring."""
        now_ns = self.clock.time_ns()
        out = []
        for n in notifications:
            ends = (n.ends_ns or now_ns) if n.status == "resolved" else now_ns + self.hold_ns
            out.append({"labels": dict(n.labels), "annotations": alert_annotations(n), "startsAt": rfc3339(n.starts_ns),
                        "endsAt": rfc3339(ends), "generatorURL": self.generator_url})
        return out

    def notify(self, notifications: Sequence[Notification]) -> None:
        """POST the alerts in one request; see ``Notifier.notify``."""
        body = json.dumps(self.alerts(notifications)).encode()
        post_json(self._session, self.url, body, timeout=self.timeout, what="alertmanager")

    def close(self) -> None:
        """Close the HTTP session."""
        self._session.close()


DELIVERY = Delivery(collector=True)   # the target itself (alerting.alertmanager): the collector posts to its API
