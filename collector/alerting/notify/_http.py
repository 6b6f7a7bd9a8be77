"""POST JSON with requests and turn every outcome into success or a NotifyError (shared by webhook and
alertmanager)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import requests

from collector.alerting.notify.base import NotifyError, os_reason, redact, short_url, url_secrets

# Answers that mean "not now" rather than "never": a timeout on the receiver's side, rate limiting.
RETRYABLE_4XX = (408, 429)
USER_AGENT = "zonewatch-collector"


def post_json(session: requests.Session, url: str, body: bytes, *, timeout: float, what: str,
              headers: Mapping[str, str] | None = None, secrets: Sequence[str | None] = ()) -> None:
    """POST ``body``; return on 2xx, else raise NotifyError naming ``what`` and the host, never a secret."""
    where = f"{what} ({short_url(url)})"
    sent = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **(headers or {})}
    try:
        resp = session.post(url, data=body, headers=sent, timeout=timeout, allow_redirects=False)
    except requests.Timeout as exc:
        raise NotifyError(f"{where}: no answer within {timeout:g}s ({os_reason(exc)})", retryable=True) from None
    except requests.ConnectionError as exc:
        raise NotifyError(f"{where}: cannot connect: {os_reason(exc)}", retryable=True) from None
    except requests.RequestException as exc:
        raise NotifyError(f"{where}: {type(exc).__name__}", retryable=False) from None
    try:
        status, reason = resp.status_code, resp.reason or ""
        if 200 <= status < 300:
            return
        if status >= 400:
            excerpt = " ".join(resp.text[:200].split())
        else:
            excerpt = f"redirected to {short_url(resp.headers.get('location') or '')}"
    finally:
        resp.close()
    retryable = status >= 500 or status in RETRYABLE_4XX
    excerpt = redact(excerpt, [*secrets, *url_secrets(url)])
    raise NotifyError(f"{where}: HTTP {status} {reason}: {excerpt}".rstrip(": "), retryable=retryable)
