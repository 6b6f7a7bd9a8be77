"""The ``alerting:`` section of the collector's configuration: rule settings, hold times, receivers."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from collector.alerting.ackconfig import AckConfig
from collector.alerting.health import HealthSettings
from collector.alerting.model import ALERT_NAMES
from collector.alerting.qos import QosSettings
from collector.inventory import Receiver
from zonewatch.strict import Duration, Secret, Strict


class RulePolicy(Strict):
    """How long a condition must hold before it fires (``for``) and stays firing after it clears."""

    model_config = {**Strict.model_config, "populate_by_name": True}

    for_: Annotated[Duration, Field(alias="for")] = 0.0
    keep_firing_for: Duration = 0.0


def _policy(hold: str, keep: str = "0s") -> RulePolicy:
    return RulePolicy.model_validate({"for": hold, "keep_firing_for": keep})


# Defaults per alert: events (traps, last will) fire at once; polled and statistical conditions wait.
DEFAULT_POLICIES: dict[str, RulePolicy] = {
    "ProbeDown": _policy("0s"),
    "DeviceDown": _policy("0s"),
    "LinkDown": _policy("0s"),
    "RedundancyLost": _policy("0s"),
    "ServiceOutage": _policy("0s"),
    "CoverageHole": _policy("120s", "60s"),
    "NoService": _policy("60s"),
    "WeakSignal": _policy("300s", "120s"),
    "CoverageInterference": _policy("300s", "120s"),   # SINR follows the cells' load: hold it longer
    "PowerOnBattery": _policy("0s"),
    "BatteryLow": _policy("0s"),
    "PowerOnBypass": _policy("0s"),
    "RectifierFailed": _policy("60s"),            # a rectifier restarting after a mains return alarms briefly
    "OpticalDegraded": _policy("60s", "60s"),
    "PonFeederDown": _policy("60s"),              # two polls at zero: not one poll of ONUs re-ranging
    "DeviceRebooted": _policy("0s"),
    "SiteDown": _policy("0s"),
    "DataLoss": _policy("0s"),
    "ProbeMisbehaving": _policy("0s"),
    "CollectorFault": _policy("0s"),
    "ProbesDisagree": _policy("0s"),
    "ProbeConfigRejected": _policy("0s"),
    "ProbeUpdateFailed": _policy("0s"),
    "DataAccessFailure": _policy("0s", "10m"),    # the window (alerting.settings.qos) already smooths
    "ThroughputBelowTarget": _policy("0s", "1h"),
    "ModemDown": _policy("0s"),                   # after alerting.settings.health.modem_down_polls unanswered polls
    "SimProblem": _policy("60s"),                 # a SIM still starting after a modem reset says so for a moment
    "ProbeClockSkew": _policy("0s", "5m"),
    "SpoolFilling": _policy("0s", "10m"),
    "ProbeDiskLow": _policy("0s", "10m"),
    "ParkUplinkDown": _policy("60s"),             # a bridge that reconnects within a minute pages nobody
}


class FlapControl(Strict):
    """An alert that changes state ``changes`` times within ``window`` is held firing and marked flapping.

    It pages once more (saying it flaps), then stays quiet until its condition has been clear for
    ``settle``, when it resolves.
    """

    window: Duration = 1800.0
    changes: Annotated[int, Field(ge=2)] = 4
    settle: Duration = 600.0


class RuleSettings(Strict):
    """Thresholds and timings the rules use (thresholds for coverage are per zone, in the inventory)."""

    probe_timeout: Duration = 90.0          # no message from a probe for this long: ProbeDown
    planned_stop_max: Duration = 600.0      # a probe stopped on purpose (``stopping``) pages if not back by then
    device_down_polls: Annotated[int, Field(ge=1)] = 3 # consecutive unanswered polls (SNMP and ICMP) for DeviceDown
    stale_after: Duration = 600.0           # a reading older than this is unknown, not current
    coverage_window: Duration = 300.0       # readings of a carrier in an area considered together
    optical_min_rx_dbm: float = -25.0       # Rx power under this: OpticalDegraded
    optical_drop_db: float = 3.0            # or this far under the port's own baseline
    optical_baseline: Duration = 86400.0    # the baseline is the port's median over this long
    battery_low_minutes: float = 10.0       # UPS runtime under this: BatteryLow (as does the UPS's own flag)
    reboot_hold: Duration = 900.0           # DeviceRebooted stays firing this long after the reboot
    data_loss_hold: Duration = 1800.0       # DataLoss stays firing this long after the probe's last lost batch
    misbehaving_hold: Duration = 3600.0     # ProbeMisbehaving stays firing this long after the last refused row
    fault_hold: Duration = 900.0            # CollectorFault clears after the collector ran this long without one
    qos: QosSettings = QosSettings()        # DataAccessFailure and ThroughputBelowTarget (collector.alerting.qos)
    health: HealthSettings = HealthSettings()   # ModemDown, SimProblem, ... (collector.alerting.health)


class SmtpConfig(Strict):
    """The SMTP relay that email receivers send through."""

    model_config = {**Strict.model_config, "populate_by_name": True}

    host: str
    port: int = 25
    from_: Annotated[str, Field(alias="from")]
    username: str | None = None
    password: Secret | None = None
    starttls: bool = False
    timeout: Duration = 10.0

    @field_validator("from_")
    @classmethod
    def _from(cls, value: str) -> str:
        if not re.match(r"^[^@\s]+@[^@\s]+$", value):
            raise ValueError(f"expected an email address like zonewatch@zone.example, got {value!r}")
        return value


def _http_url(value: str) -> str:
    if not re.match(r"^https?://[^/\s]+", value):
        raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")


class AlertmanagerTarget(Strict):
    """Alertmanager's API v2: every alert goes there; it routes, groups, silences and deduplicates."""

    url: str
    # The other peers of its cluster (``--cluster.peer``): every alert goes to each of them too, through an outbox
    # of its own, as Prometheus sends to every Alertmanager; the cluster sends each notification once.
    peers: list[str] = []
    resend_interval: Duration = 60.0
    timeout: Duration = 5.0

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _http_url(value)

    @field_validator("peers")
    @classmethod
    def _peers(cls, value: list[str]) -> list[str]:
        return [_http_url(url) for url in value]

    def each(self) -> list[AlertmanagerTarget]:
        """Return one target per peer, this one first, each with the same timing and no peers of its own."""
        return [self.model_copy(update={"url": url, "peers": []}) for url in [self.url, *self.peers]]


class RetryConfig(Strict):
    """How the outbox retries a receiver that is down: exponential back-off between these bounds."""

    initial: Duration = 1.0
    max: Duration = 300.0


class AlertingConfig(Strict):
    """Rules, the alert tracker and its receivers; active when the collector has an inventory."""

    enabled: bool = True
    interval: Duration = 5.0                 # evaluation tick (events are evaluated on arrival as well)
    state_path: str | None = None            # default: alerts.db beside the intake queue (queue.path)
    outbox_dir: str | None = None            # default: outbox/ beside the intake queue
    outbox_max_bytes: int = Field(default=64 * 2**20, ge=4096)  # per receiver; past it the oldest go, counted
    outbox_max_age: Duration = 7 * 86400.0   # a notification older than this is dropped, counted
    restart_grace: Duration = 120.0          # after a restart, alerts with no fresh evidence are kept as they were
    settings: RuleSettings = RuleSettings()
    rules: dict[str, RulePolicy] = {}
    flap: FlapControl = FlapControl()
    alertmanager: AlertmanagerTarget | None = None
    # Who sends to the carriers' and the NOC's webhook and email receivers: ZoneWatch itself ("direct") or
    # Alertmanager, configured with `zonewatch-collector render-alertmanager` ("alertmanager"). Default:
    # "alertmanager" when it is configured, else "direct". MQTT receivers are always served directly.
    delivery: Literal["direct", "alertmanager"] | None = None
    # Who sends to the MQTT receivers: the collector itself ("direct"), or Alertmanager through its webhook to the
    # relay each collector serves beside /metrics ("alertmanager": an HA pair's way of sending each one once; the
    # configuration `render-alertmanager` writes points each Alertmanager peer at its own host's collector).
    mqtt_delivery: Literal["direct", "alertmanager"] = "direct"
    # What Alertmanager must send the relay (Authorization: Bearer): render-alertmanager puts it in a secret file
    # its configuration names. Without it the relay takes any POST that reaches the collector's http.listen.
    relay_token: Secret | None = None
    smtp: SmtpConfig | None = None
    noc: list[Annotated[Receiver, Field(discriminator="type")]] = []   # receivers that get every alert
    retry: RetryConfig = RetryConfig()
    acks: AckConfig = AckConfig()            # acknowledgements: store, HTTP API tokens (collector.alerting.ackconfig)
    # Where a reader of a notification goes to see more (the NOC's Grafana alerts dashboard, say): sent as
    # the webhook JSON's externalURL and each alert's generatorURL in Alertmanager. Empty: not sent.
    external_url: str = ""

    @field_validator("external_url")
    @classmethod
    def _external_url(cls, value: str) -> str:
        if value and not re.match(r"^https?://[^/\s]+\S*$", value):
            raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
        return value

    @field_validator("rules")
    @classmethod
    def _names(cls, value: dict[str, RulePolicy]) -> dict[str, RulePolicy]:
        for name in value:
            if name not in ALERT_NAMES:
                raise ValueError(f"unknown alert {name!r} (expected one of {', '.join(ALERT_NAMES)})")
        return value

    @model_validator(mode="after")
    def _delivery(self) -> AlertingConfig:
        if self.delivery == "alertmanager" and self.alertmanager is None:
            raise ValueError("delivery: alertmanager needs the alertmanager section (its url)")
        if self.mqtt_delivery == "alertmanager" and not self.via_alertmanager:
            raise ValueError("mqtt_delivery: alertmanager needs Alertmanager to deliver (the alertmanager section, "
                             "and delivery not direct)")
        return self

    @property
    def via_alertmanager(self) -> bool:
        """Return True when Alertmanager, not ZoneWatch, sends to webhook and email receivers."""
        return self.alertmanager is not None and self.delivery != "direct"

    @property
    def mqtt_via_alertmanager(self) -> bool:
        """Return True when Alertmanager, through the collectors' relays, sends to the MQTT receivers."""
        return self.via_alertmanager and self.mqtt_delivery == "alertmanager"

    def policy(self, alertname: str) -> RulePolicy:
        """Return the hold times for ``alertname``: configured, else the default."""
        return self.rules.get(alertname) or DEFAULT_POLICIES.get(alertname, RulePolicy())
