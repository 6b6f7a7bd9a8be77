"""The notifier contract: one method, one receiver, and an error that says whether to try again.

::

    Notifier        notify(notifications) sends them to one receiver as one message; close()
    NotifyError     raised by notify; ``retryable`` tells the outbox to try again later or to give up
    Clock           monotonic() and time_ns(): the only clock the outbox and the notifiers read
    Delivery        what a receiver type declares beside its notifier: who can deliver it (the collector,
                    Alertmanager natively, Alertmanager through the collectors' relay) and what it needs
    redact(text, secrets)   the text with every secret (and its base64 forms) replaced by **********
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from collector.alerting.model import Notification

MASK = "**********"


class NotifyError(Exception):
    """A receiver did not take a message.

    ``retryable``: the same message may succeed later (receiver down, timeout, 5xx, SMTP 4xx); otherwise
    it never will (the receiver refused it: 4xx, SMTP 5xx) and the outbox drops it. The message names
    the receiver and the reason, and never holds a secret.
    """

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class Notifier(Protocol):
    """Sends notifications to one receiver (one webhook URL, one email list, one MQTT topic, Alertmanager).

    Construction validates and does no I/O. The outbox owns the notifier; see each method for its contract.
    """

    def notify(self, notifications: Sequence[Notification]) -> None:
        """Send ``notifications`` to the receiver as one message; return once the receiver accepted it.

        Called by the receiver's delivery thread only, one call at a time: never concurrently with itself,
        but concurrently with other receivers' notifiers. ``notifications`` is non-empty and, except for
        Alertmanager, one group (same ``alertname``, ``zone``, ``carrier``, ``group``, ``device``).

        Raises ``NotifyError`` on failure, with ``retryable`` set as the receiver's answer implies.
        Must not retry, sleep or queue on its own (the outbox does that, durably); must not block longer
        than its configured timeout; must not log or raise anything that contains a secret (password,
        token, a URL's credentials); must not change ``notifications``.
        """
        ...

    def close(self) -> None:
        """Release connections. Called once, after the delivery thread stopped; must not raise."""
        ...


Need = Literal["smtp", "broker"]   # alerting.smtp; the collector's broker connection
SecretFile = Callable[[str, str], str]   # (file name, content) -> the path Alertmanager's configuration names
# (receiver settings, a prefix for its secret files, SecretFile) -> (key in Alertmanager's receiver, one entry)
AlertmanagerConfig = Callable[[Any, str, SecretFile], tuple[str, dict[str, Any]]]


@dataclass(frozen=True)
class Delivery:
    """Who can deliver a receiver type: declared in the type's module, registered with it (``registry.py``).

    Routing (``routing.py``) and ``render-alertmanager`` (``collector/alerting/amconfig.py``) decide from this
    alone; a configured receiver that no one would deliver under the configured ``alerting.delivery`` is a
    configuration error, never skipped.

    ``collector``     this collector delivers it with the type's notifier (``alerting.delivery: direct``, or
                      under Alertmanager when neither of the next two applies)
    ``alertmanager``  Alertmanager delivers it natively: how ``render-alertmanager`` writes one (a function
                      returning its receiver key, such as ``webhook_configs``, and the entry); None: it cannot
    ``relay``         with ``alerting.mqtt_delivery: alertmanager``, Alertmanager delivers it as a webhook to
                      the collectors' MQTT relay (``relay.py``), which publishes it
    ``needs``         what the collector needs to deliver it itself, or Alertmanager natively (``smtp``)
    """

    collector: bool
    alertmanager: AlertmanagerConfig | None = None
    relay: bool = False
    needs: frozenset[Need] = frozenset()


class Clock(Protocol):
    """Where the outbox and the notifiers read time; tests pass a fake one that they advance."""

    def monotonic(self) -> float:
        """Return seconds on a clock that never goes back (for back-off)."""
        ...

    def time_ns(self) -> int:
        """Return nanoseconds since the epoch (for timestamps sent to receivers)."""
        ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        """Return ``time.monotonic()``."""
        return time.monotonic()

    def time_ns(self) -> int:
        """Return ``time.time_ns()``."""
        return time.time_ns()


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Return ``text`` with every secret, plain or base64-encoded (as in HTTP basic or SMTP AUTH), masked."""
    for secret in secrets:
        if not secret:
            continue
        forms = {secret, base64.b64encode(secret.encode()).decode(), base64.b64encode(secret.encode()).decode()
                 .rstrip("=")}
        for form in sorted(forms, key=len, reverse=True):
            if len(form) >= 4:
                text = text.replace(form, MASK)
    return text


def short_url(url: str) -> str:
    """Return ``scheme://host[:port]`` of a URL: enough to name a receiver, never its path, query or login."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def url_secrets(url: str) -> list[str]:
    """Return the parts of a URL that may be secret (login, path, query, and their longer pieces), for redact."""
    from urllib.parse import parse_qsl, urlsplit

    parts = urlsplit(url)
    out = [url, parts.password or "", parts.path, parts.query]
    out += [seg for seg in parts.path.split("/") if len(seg) >= 8]
    out += [value for _, value in parse_qsl(parts.query) if len(value) >= 8]
    return [p for p in out if p and p != "/"]


def os_reason(exc: BaseException) -> str:
    """Return the operating system's reason inside an exception chain (``Connection refused``), else its type."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        cur = todo.pop(0)
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, OSError) and cur.strerror:
            return str(cur.strerror)
        todo += [a for a in cur.args if isinstance(a, BaseException)]
        todo += [e for e in (cur.__cause__, cur.__context__) if e is not None]
        reason = getattr(cur, "reason", None)
        if isinstance(reason, BaseException):
            todo.append(reason)
    return type(exc).__name__
