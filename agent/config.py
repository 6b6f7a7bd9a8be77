"""The agent's configuration file (YAML), validated strictly: see ``config/agent.example.yaml``."""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Field, ValidationInfo, field_validator, model_validator

from agent.fleet.config import RemoteConfigSettings
from agent.fleet.enrol import EnrolSettings
from agent.fleet.software import SoftwareWanted, UpdateSettings
from agent.sources.cellular import CellularConfig
from agent.sources.qos import QosConfig
from agent.sources.reach import ReachConfig
from agent.sources.snmp import SnmpConfig, check_profile_dirs
from agent.sources.telemetry import TelemetryConfig
from agent.sources.traps import TrapsConfig
from zonewatch import wire
from zonewatch.mqtt import MqttConfig
from zonewatch.strict import Duration, RefPath, Strict

SourceConfig = Annotated[Union[CellularConfig, SnmpConfig, ReachConfig, TrapsConfig, TelemetryConfig, QosConfig],
                         Field(discriminator="type")]


class ProbeIdentity(Strict):
    """Who this probe is: its id and zone become topic segments and tags."""

    id: str
    zone: str
    area: str | None = None

    @field_validator("id", "zone")
    @classmethod
    def _plain(cls, value: str) -> str:
        if not wire.valid_name(value):
            raise ValueError(f"expected lowercase letters, digits, '-', '_' or '.', got {value!r}")
        return value

    @field_validator("zone")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value == wire.ENROL_ZONE:
            raise ValueError(f"zone id {value!r} is reserved for enrolment topics (zw/v1/{value}/...)")
        return value


class SpoolConfig(Strict):
    """Where unsent batches wait, and how much may wait."""

    path: str = "/var/lib/zonewatch/spool.db"
    max_bytes: int = 256 * 2**20
    max_age: Duration = 7 * 86400.0
    # Polled data within this long of a data batch's making join it (agent.spool): one message every 5 s
    # rather than one a poll. 0s: one batch a poll.
    coalesce: Duration = 5.0

    @field_validator("coalesce")
    @classmethod
    def _coalesce_bounded(cls, seconds: float) -> float:
        if not 0 <= seconds <= 60:
            raise ValueError("must be from 0s (one batch a poll) to 1m (data wait at most that long to be sent)")
        return seconds


class MetricsConfig(Strict):
    """The agent's own /metrics endpoint (Prometheus text format); loopback unless told otherwise."""

    listen: str = "127.0.0.1:9108"
    enabled: bool = True


PROFILE_DIRS = "agent.config.profile_dirs"   # validation context: the local profile_dirs, for the centre's sources


class AgentConfig(Strict):
    """The whole agent configuration file."""

    probe: ProbeIdentity
    mqtt: MqttConfig = MqttConfig()
    spool: SpoolConfig = SpoolConfig()
    metrics: MetricsConfig = MetricsConfig()
    self_interval: Duration = 30.0
    # Folders of site SNMP poll profiles (<name>.yaml each, agent.profiles), for every snmp source that does not
    # name its own: used by name in 'profiles' and by auto-detection, checked when this file is loaded.
    profile_dirs: list[str] = []
    sources: list[SourceConfig] = []
    remote_config: RemoteConfigSettings = RemoteConfigSettings()   # configuration from the centre (agent.fleet)
    enrol: EnrolSettings | None = None   # ask the centre for credentials of its own (agent.fleet.enrol)
    software: SoftwareWanted | None = None   # the release to run, normally said by the centre (agent.fleet.software)
    update: UpdateSettings | None = None     # local only: take releases from the centre, from this source

    @field_validator("profile_dirs")
    @classmethod
    def _profile_dirs(cls, dirs: list[str]) -> list[str]:
        """Load the site profiles once here, so that an error names this key (and a bad file its own line)."""
        return check_profile_dirs(dirs)

    @model_validator(mode="before")
    @classmethod
    def _share_profile_dirs(cls, data: Any, info: ValidationInfo) -> Any:
        """Give every snmp source without its own ``profile_dirs`` the top-level one (for a configuration from
        the centre, which may not set it: the probe's local one, passed in the context as PROFILE_DIRS)."""
        dirs = data.get("profile_dirs") if isinstance(data, dict) else None
        if dirs is None:
            dirs = (info.context or {}).get(PROFILE_DIRS)
        if not isinstance(data, dict) or not isinstance(dirs, list) or not dirs \
                or not isinstance(data.get("sources"), list):
            return data
        sources = [{**src, "profile_dirs": dirs}
                   if isinstance(src, dict) and src.get("type") == "snmp" and "profile_dirs" not in src else src
                   for src in data["sources"]]
        return {**data, "sources": sources}

    def check_refs(self) -> list[tuple[RefPath, str]]:
        """Return every duplicated source name (names key the schedule and the metrics)."""
        seen: dict[str, int] = {}
        problems: list[tuple[RefPath, str]] = []
        for i, src in enumerate(self.sources):
            if src.name in seen:
                problems.append((("sources", i, "name"), f"source name {src.name!r} is already used by "
                                                          f"sources[{seen[src.name]}]"))
            seen.setdefault(src.name, i)
        if self.enrol is not None and (self.mqtt.username is not None or self.mqtt.password is not None):
            problems.append((("mqtt", "username" if self.mqtt.username is not None else "password"),
                             "give mqtt credentials or an enrol section, not both: enrolment gives the probe its own "
                             f"(kept in {self.enrol.state_dir})"))
        return problems
