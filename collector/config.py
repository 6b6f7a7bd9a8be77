"""The collector's configuration file (YAML), validated strictly: see ``config/collector.example.yaml``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from collector.alerting.config import AlertingConfig
from collector.cardinality import SeriesLimit
from collector.fleet.diagnostics import DiagnosticsConfig
from collector.fleet.enrol import EnrolConfig
from collector.secrets import SecretsConfig
from collector.storage import SqliteStorage, StorageConfig
from zonewatch.mqtt import MqttConfig
from zonewatch.strict import Duration, RefPath, Strict


def _check_listen(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected host:port like '127.0.0.1:9109', got {value!r}")
    return value


class EmbeddedBroker(Strict):
    """The in-process MQTT 3.1.1 broker used when no ``mqtt`` section is given (one site, the demo)."""

    listen: str = "127.0.0.1:1883"

    _listen = field_validator("listen")(classmethod(lambda cls, v: _check_listen(v)))


class HttpConfig(Strict):
    """The collector's HTTP endpoint (/metrics); loopback unless told otherwise."""

    listen: str = "127.0.0.1:9109"
    enabled: bool = True

    _listen = field_validator("listen")(classmethod(lambda cls, v: _check_listen(v)))


class IntakeQueueConfig(Strict):
    """Where received batches wait for storage (acknowledged to the broker once they are here)."""

    path: str = "/var/lib/zonewatch/intake.db"
    max_bytes: int = 4 * 2**30
    max_age: Duration = 30 * 86400.0


class IngestLimits(Strict):
    """What one probe may send beyond the per-message limits: how many distinct series it may create."""

    max_series_per_probe: int = Field(default=20_000, ge=1)  # a measurement with one set of tag values
    series_window: Duration = 86400.0  # a series not seen for this long stops counting

    def series_limit(self) -> SeriesLimit:
        """Return the per-probe series bookkeeping these limits describe."""
        return SeriesLimit(self.max_series_per_probe, int(self.series_window * 1e9))


class HaConfig(Strict):
    """This collector as one of an active-active pair (README: High availability). Both take every message of
    their zones through broker sessions of their own, both store it and judge it, and both send every alert to
    every Alertmanager peer, which sends each notification once. What must happen once is the primary's: the
    probes' configurations from the centre, and enrolment."""

    role: Literal["primary", "secondary"]


class CarrierAccess(Strict):
    """What the zone authority lets a carrier see beyond its own assets (README: Giving a carrier access)."""

    # ``report --carrier``: "none" (the default) leaves competitors out; "aggregate" adds one pooled row per
    # area, of every other carrier together, and only where there are at least two of them (one alone would
    # be named by its figures)
    competitors: Literal["none", "aggregate"] = "none"


class CollectorConfig(Strict):
    """The whole collector configuration file."""

    mqtt: MqttConfig | None = None
    embedded_broker: EmbeddedBroker = EmbeddedBroker()
    storage: StorageConfig = SqliteStorage(type="sqlite", path="/var/lib/zonewatch/zonewatch.db")
    queue: IntakeQueueConfig = IntakeQueueConfig()
    limits: IngestLimits = IngestLimits()
    inventory: str | None = None
    secrets: SecretsConfig = SecretsConfig()  # what the inventory's receivers may use, and where it may go
    http: HttpConfig = HttpConfig()
    zones: list[str] = []
    alerting: AlertingConfig = AlertingConfig()
    enrol: EnrolConfig | None = None   # new probes ask to be admitted (collector.fleet.enrol)
    ha: HaConfig | None = None         # one of an active-active pair (collector.shard, README: High availability)
    carrier_access: CarrierAccess = CarrierAccess()   # what a carrier sees of others (collector.report.carrier)
    diagnostics: DiagnosticsConfig = DiagnosticsConfig()   # rounds asked of probes on alerts (collector.fleet)

    def check_refs(self) -> list[tuple[RefPath, str]]:
        """Return what cannot work together: enrolment without an external broker or without an inventory."""
        problems: list[tuple[RefPath, str]] = []
        if self.enrol is not None and self.mqtt is None:
            problems.append((("enrol",), "enrolment needs an external broker (mosquitto, configured under mqtt): "
                             "the embedded one has no password file or ACL to give new probes"))
        if self.enrol is not None and self.inventory is None:
            problems.append((("enrol",), "enrolment needs an inventory (inventory:): its zones are the ones new "
                             "probes may join"))
        if self.enrol is not None and self.ha is not None and self.ha.role == "secondary":
            problems.append((("enrol",), "enrolment belongs to the primary of an HA pair (ha.role: primary): its "
                             "registry and the broker's password file are that collector's"))
        return problems
