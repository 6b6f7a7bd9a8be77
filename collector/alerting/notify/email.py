"""Plain-text email through the collector's SMTP relay (``alerting.smtp``), one email per group.

Subject: ``[FIRING] ServiceOutage viettel-fibre (452-04)``: status (``FIRING:3`` for a group of three),
alert name, the object (link, device, group, site, probe, area or zone: the first it has) and the
carrier's PLMN. The body lists each alert's summary, description, labels and times.

STARTTLS and login are optional; port 465 means TLS from the start (SMTPS), as in Alertmanager. The
password never appears in errors or logs, in plain or base64 (as AUTH sends it). SMTP's own answer decides
retrying: 4xx and every connection, TLS or login failure are retried (a relay that is down, or
credentials being fixed: the mail goes out once they are); 5xx for the sender, the recipients or the
message is not.

Delivery: by the collector, or natively by Alertmanager (``email_configs``, through the same relay).
"""

from __future__ import annotations

import hashlib
import smtplib
import ssl
from collections.abc import Callable, Sequence
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any, NoReturn

from collector.alerting.config import SmtpConfig
from collector.alerting.model import Notification
from collector.alerting.notify.base import Delivery, NotifyError, SecretFile, os_reason, redact
from collector.alerting.notify.payload import alert_annotations, rfc3339
from collector.inventory import EmailReceiver

OBJECT_LABELS = ("link", "device", "group", "site", "probe", "area", "zone")
SMTPS_PORT = 465

SmtpFactory = Callable[[SmtpConfig], smtplib.SMTP]


def _connect(cfg: SmtpConfig) -> smtplib.SMTP:
    """Open the SMTP connection (SMTPS on port 465)."""
    if cfg.port == SMTPS_PORT:
        return smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout, context=ssl.create_default_context())
    return smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)


def subject(notifications: Sequence[Notification]) -> str:
    """Return the subject for one group, e.g. ``[FIRING] ServiceOutage viettel-fibre (452-04)``."""
    firing = [n for n in notifications if n.status == "firing"]
    status = "FIRING" if firing else "RESOLVED"
    count = len(firing) if firing else len(notifications)
    tag = f"[{status}:{count}]" if count > 1 else f"[{status}]"
    if any(n.flapping for n in notifications):
        tag += " [FLAPPING]"
    first = notifications[0].labels
    parts = [first.get("alertname", "alert")]
    obj = next((first[k] for k in OBJECT_LABELS if k in first), None)
    if obj is not None:
        parts.append(obj)
    if "carrier" in first:
        parts.append(f"({first['carrier']})")
    return " ".join([tag, *parts])


def body(notifications: Sequence[Notification]) -> str:
    """Return the plain-text body: one block per alert."""
    blocks = []
    for n in notifications:
        notes = alert_annotations(n)
        lines = [f"{n.status.upper()}: {n.labels.get('alertname', 'alert')}"]
        for key in ("summary", "description"):
            if key in notes:
                lines.append(f"  {key}: {notes[key]}")
        lines.append(f"  started: {rfc3339(n.starts_ns)}")
        if n.status == "resolved":
            lines.append(f"  ended: {rfc3339(n.ends_ns)}")
        if n.flapping:
            lines.append("  flapping: it will not page again until it has been stable for a while")
        lines.append("  labels: " + " ".join(f"{k}={v}" for k, v in sorted(n.labels.items())))
        extra = {k: v for k, v in sorted(notes.items()) if k not in ("summary", "description", "flapping")}
        if extra:
            lines.append("  annotations: " + " ".join(f"{k}={v}" for k, v in extra.items()))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n\n-- \nZoneWatch\n"


def message(notifications: Sequence[Notification], sender: str, to: Sequence[str]) -> EmailMessage:
    """Return the email for one group; its Message-ID is the same for the same notifications (a resend of
    a message whose delivery was unclear is recognisable as the same message)."""
    msg = EmailMessage()
    msg["Subject"] = subject(notifications)
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    ident = hashlib.blake2b(repr([(n.status, sorted(n.labels.items()), n.starts_ns, n.ends_ns)
                                  for n in notifications]).encode(), digest_size=12).hexdigest()
    msg["Message-ID"] = f"<{ident}@zonewatch>"
    msg.set_content(body(notifications))
    return msg


def _retryable(code: int) -> bool:
    return 400 <= code < 500


class EmailNotifier:
    """One list of recipients, through one relay."""

    def __init__(self, cfg: EmailReceiver, smtp: SmtpConfig, *, connect: SmtpFactory = _connect) -> None:
        self.to = list(cfg.to)
        self.smtp = smtp
        self._connect = connect
        self._password = smtp.password.get_secret_value() if smtp.password else None
        if self._password is not None and not smtp.username:
            raise ValueError("alerting.smtp: a password needs a username")
        self._secrets = [self._password, smtp.username and self._password and f"\0{smtp.username}\0{self._password}"]

    def notify(self, notifications: Sequence[Notification]) -> None:
        """Send one email; see ``Notifier.notify``."""
        msg = message(notifications, self.smtp.from_, self.to)
        where = f"smtp {self.smtp.host}:{self.smtp.port}"
        try:
            with self._connect(self.smtp) as client:
                if self.smtp.starttls and self.smtp.port != SMTPS_PORT:
                    client.starttls(context=ssl.create_default_context())
                if self.smtp.username:
                    client.login(self.smtp.username, self._password or "")
                refused = client.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            self._fail(where, f"every recipient refused: {self._answers(exc.recipients)}",
                       all(_retryable(c) for c in codes))
        except smtplib.SMTPAuthenticationError as exc:
            answer = f"{exc.smtp_code} {self._text(exc.smtp_error)}"
            self._fail(where, f"login as {self.smtp.username!r} refused: {answer}", True)
        except smtplib.SMTPNotSupportedError as exc:
            self._fail(where, f"the relay does not support {self._text(str(exc))}", True)
        except smtplib.SMTPResponseException as exc:
            self._fail(where, f"{exc.smtp_code} {self._text(exc.smtp_error)}", _retryable(exc.smtp_code))
        except (smtplib.SMTPException, OSError) as exc:  # disconnects, refused connections, TLS, timeouts
            reason = str(exc) if isinstance(exc, smtplib.SMTPException) else os_reason(exc)
            self._fail(where, f"{type(exc).__name__}: {self._text(reason)}", True)
        if refused:
            # Some recipients took it; sending again would duplicate it for them. Report and move on.
            raise NotifyError(f"{where}: sent, but refused for {self._answers(refused)}", retryable=False)

    def _answers(self, answers: dict[str, tuple[int, bytes]]) -> str:
        return ", ".join(f"{addr} ({code} {self._text(text)})" for addr, (code, text) in answers.items())

    def _text(self, value: bytes | str) -> str:
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        return redact(" ".join(text.split())[:200], self._secrets)

    def _fail(self, where: str, reason: str, retryable: bool) -> NoReturn:
        raise NotifyError(redact(f"{where}: {reason}", self._secrets), retryable=retryable)

    def close(self) -> None:
        """Nothing to close: each email opens its own connection."""


def alertmanager_config(cfg: EmailReceiver, ref: str, secret: SecretFile) -> tuple[str, dict[str, Any]]:
    """Return the receiver as Alertmanager writes it: an email config (the relay is Alertmanager's global one)."""
    return "email_configs", {"to": ", ".join(cfg.to), "send_resolved": True}


DELIVERY = Delivery(collector=True, alertmanager=alertmanager_config, needs=frozenset({"smtp"}))
