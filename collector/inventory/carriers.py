"""The inventory's carriers and how to reach them: receivers, a carrier webhook's token, escalation steps.

``carriers.<id>`` is a ``Carrier`` (PLMN, name, ``notify`` receivers, ``escalation`` steps); the inventory's
``contacts`` are lists of the same receivers. A receiver is a ``WebhookReceiver``, ``EmailReceiver`` or
``MqttReceiver``; in a carrier's hands a webhook's token is a literal or a declared ``{secret: NAME}``
(``CarrierWebhookReceiver``), never a file or an environment variable.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias

from pydantic import BeforeValidator, Field, SecretStr, ValidationInfo, field_validator

from collector.secrets import CONTEXT_KEY, PLMN, SecretSource
from zonewatch.strict import Duration, Secret, Strict, SubkeyError

_PLMN = PLMN


class WebhookReceiver(Strict):
    """POST Alertmanager's webhook JSON to ``url``."""

    type: Literal["webhook"]
    url: str
    bearer_token: Secret | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
        return value


class EmailReceiver(Strict):
    """Send each notification by email through the collector's SMTP relay (``alerting.smtp``)."""

    type: Literal["email"]
    to: list[str] = Field(min_length=1)

    @field_validator("to")
    @classmethod
    def _to(cls, value: list[str]) -> list[str]:
        for address in value:
            if not re.match(r"^[^@\s]+@[^@\s]+$", address):
                raise ValueError(f"expected an email address like noc@carrier.example, got {address!r}")
        return value


class MqttReceiver(Strict):
    """Publish Alertmanager's webhook JSON, QoS 1, on the carrier's own topic of the collector's broker."""

    type: Literal["mqtt"]
    topic: str

    @field_validator("topic")
    @classmethod
    def _topic(cls, value: str) -> str:
        if not value or "+" in value or "#" in value or not value.isprintable():
            raise ValueError(f"expected a plain MQTT topic (no wildcards), got {value!r}")
        if value.startswith(("zw/", "zonewatch/", "$")):
            raise ValueError(f"topic {value!r} is reserved (zw/ is the probes' tree, zonewatch/ the collector's, $ "
                             "the broker's)")
        return value


Receiver = WebhookReceiver | EmailReceiver | MqttReceiver


def _carrier_token(value: Any, info: ValidationInfo) -> Any:
    """Take a carrier webhook's token: a literal string, or ``{secret: NAME}`` from the collector configuration
    (bound to the URLs it may go to); never a file or an environment variable of the inventory's choosing."""
    if isinstance(value, SecretStr):
        return value
    if isinstance(value, str):
        return SecretStr(value)
    if isinstance(value, dict) and len(value) == 1:
        ((kind, ref),) = value.items()
        if kind in ("file", "env"):
            what = "a file" if kind == "file" else "an environment variable"
            raise ValueError(f"an inventory may not read {what}: declare the token in the collector "
                             "configuration under secrets.receivers (with the URL it may be sent to) and write "
                             "{secret: NAME} here")
        if kind == "secret" and isinstance(ref, str):
            source: SecretSource | None = (info.context or {}).get(CONTEXT_KEY)
            if source is None:
                raise ValueError(f"secret {ref!r}: no secrets to take it from (the inventory is read with the "
                                 "collector configuration's secrets.receivers)")
            url = info.data.get("url")
            if not isinstance(url, str):
                raise ValueError(f"secret {ref!r}: needs a valid url to check it may be sent there")
            return source.token(ref, url)
    raise ValueError("expected {secret: NAME} (declared under secrets.receivers in the collector "
                     "configuration) or a string")


CarrierToken = Annotated[SecretStr, BeforeValidator(_carrier_token)]


class CarrierWebhookReceiver(WebhookReceiver):
    """A carrier's webhook (``carriers.<id>.notify``): its token is a literal or a declared ``{secret: NAME}``."""

    bearer_token: CarrierToken | None = None


if TYPE_CHECKING:  # read as Receivers (a CarrierWebhookReceiver is a WebhookReceiver); lists are invariant
    CarrierReceiver: TypeAlias = Receiver
else:
    CarrierReceiver = CarrierWebhookReceiver | EmailReceiver | MqttReceiver


AnyCarrierReceiver = Annotated[CarrierReceiver, Field(discriminator="type")]


class EscalationStep(Strict):
    """One step of a carrier's escalation (``collector.alerting.escalation``): an alert of the carrier still
    unacknowledged ``after`` this long since it paged goes to ``notify`` too: receivers, or the names of the
    inventory's ``contacts`` (the zone authority, say)."""

    after: Duration
    notify: list[AnyCarrierReceiver | str] = Field(min_length=1)

    @field_validator("after")
    @classmethod
    def _after(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("expected a positive duration such as '15m'")
        return value


class Carrier(Strict):
    """A mobile operator, keyed by its PLMN (MCC-MNC)."""

    plmn: str
    name: str
    contact: str | None = None
    notify: list[AnyCarrierReceiver] = []
    escalation: list[EscalationStep] = []

    @field_validator("escalation")
    @classmethod
    def _escalation(cls, value: list[EscalationStep]) -> list[EscalationStep]:
        for i in range(1, len(value)):
            if value[i].after <= value[i - 1].after:
                raise SubkeyError((i, "after"), f"each step comes later than the one before: {value[i].after:g} s "
                                  f"is not after step {i - 1}'s {value[i - 1].after:g} s")
        return value

    @field_validator("plmn")
    @classmethod
    def _plmn(cls, value: str) -> str:
        if not _PLMN.match(value):
            raise ValueError(f"expected a PLMN like '452-04' (MCC-MNC), got {value!r}")
        return value
