"""POST Alertmanager's webhook JSON to a URL: receivers written for Alertmanager work unchanged.

5xx, 408, 429, timeouts and refused connections are retried; other 4xx and redirects are not (the
receiver will not take this message however often it is sent). The bearer token and the URL's path and
query (which often hold a token of their own) never appear in errors or logs: only scheme, host and port.

Delivery: by the collector, or natively by Alertmanager (``webhook_configs``, the token in a secret file).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import requests

from collector.alerting.model import Notification
from collector.alerting.notify._http import post_json
from collector.alerting.notify.base import Delivery, SecretFile
from collector.alerting.notify.payload import webhook_message
from collector.inventory import WebhookReceiver


class WebhookNotifier:
    """One webhook URL."""

    def __init__(self, cfg: WebhookReceiver, *, receiver: str, timeout: float = 10.0, external_url: str = "",
                 session: requests.Session | None = None) -> None:
        self.url = cfg.url
        self.receiver = receiver
        self.timeout = timeout
        self.external_url = external_url
        self._token = cfg.bearer_token.get_secret_value() if cfg.bearer_token else None
        self._session = session or requests.Session()

    def notify(self, notifications: Sequence[Notification]) -> None:
        """POST one webhook message; see ``Notifier.notify``."""
        body = json.dumps(webhook_message(notifications, self.receiver, self.external_url)).encode()
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        post_json(self._session, self.url, body, timeout=self.timeout, what="webhook",
                  headers=headers, secrets=[self._token])

    def close(self) -> None:
        """Close the HTTP session."""
        self._session.close()


def alertmanager_config(cfg: WebhookReceiver, ref: str, secret: SecretFile) -> tuple[str, dict[str, Any]]:
    """Return the receiver as Alertmanager writes it: a webhook config, its token in the file ``<ref>-token``."""
    hook: dict[str, Any] = {"url": cfg.url, "send_resolved": True}
    if cfg.bearer_token is not None:
        path = secret(f"{ref}-token", cfg.bearer_token.get_secret_value())
        hook["http_config"] = {"authorization": {"type": "Bearer", "credentials_file": path}}
    return "webhook_configs", hook


DELIVERY = Delivery(collector=True, alertmanager=alertmanager_config)
