"""SNMP poll source: one device, read as its poll profiles say (``agent/profiles/*.yaml``).

One ``SnmpSource`` polls one device. A poll is a GET of sysUpTime (the reachability check), a GET of the
scalars of the device's profiles (16 OIDs a request; a request the agent refuses is retried one OID at a
time), then a walk of each column of each profile's tables in order, and of a table's joins when it has
rows (a column two profiles read is walked once): those requests are ``agent.sources.snmpread``'s. The
profiles turn what was read into samples; the file format is in ``agent.profiles``, its evaluation (pure) in
``agent.sources.snmpeval``. Samples come device first, then the scalar groups' and the tables' samples in
profile order.

A device configured without ``profiles`` is polled with those whose ``applies_to`` fits it
(``agent.sources.detect``): after the sysUpTime GET of the first poll that is answered, one GET of sysObjectID
and sysDescr and walks of the undecided ``has_table`` columns (kept for the poll's own reads); again after a
reboot and every 6 h; kept per device once a detection read everything it asked for. A profile another one
that applies supersedes is not polled. The profiles are the shipped ones and the site profiles of
``profile_dirs`` (``agent.profiles.catalogue``), by name and by detection alike.

Silence is not success: a profile that gives no sample and no device field on a poll that read everything is
logged once when it falls silent and once when it reads again (``profile_report()`` feeds the agent's
``zonewatch_snmp_profile_empty`` gauge, ``notes()`` what ``once`` prints).

Samples (see the measurement table in the README), by profile::

    (always)             device     tags: device, site?      fields: up
    system               device                              fields: uptime_s, rebooted (only when true)
    if_mib               interface  tags: device, ifname, link?
                                    fields: oper_up, admin_up, in_octets, out_octets, in_errors, out_errors,
                                            speed_mbps
    entity_sensor, cisco_entity_sensor, juniper_dom, huawei_optical, nokia_dom, mikrotik_optical
                         optical    tags: device, port       fields: rx_dbm, tx_dbm
                                    (port: the interface's ifName where the device maps it, README
                                    "Optics and their ports"; a dark port gives no field)
    huawei_gpon, zte_gpon
                         optical    tags: device, port       fields: rx_dbm, tx_dbm, temperature_c, bias_ma, voltage_v
                         pon        tags: device, port       fields: onus, onus_online, onus_offline,
                                                             onu_rx_min_dbm, onu_rx_median_dbm (Huawei),
                                                             olt_rx_min_dbm, olt_rx_median_dbm
                         onu        tags: device, port, onu  fields: rx_dbm, tx_dbm (Huawei), olt_rx_dbm
                                                             (only an ONU out of the class B+ margins)
    ups_mib              power      tags: device, site?      fields: on_battery, battery_low, battery_minutes,
                                                                     battery_pct, seconds_on_battery

Reboots: a sysUpTime lower than at this device's previous successful poll (a 2^32 wrap aside) sets
``rebooted=true`` on the device sample of that poll, and is logged. The source returns samples only: it
does not send a ``device_rebooted`` event; DeviceRebooted is to be computed from this field, as DeviceDown
is from ``up``.

A device that does not answer the GET gives one ``device`` sample with ``up=False``: that is a
measurement, not an error. A value that cannot be read, or whose conversion gives a number beyond what a field
holds (an integer outside -2^63..2^64-1, an infinity), leaves its field out, and a sample left without
fields is not sent (interfaces excepted); a device that stops answering mid-poll keeps what was read.
Failures are logged once when they start and "recovered" once when they end.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from agent import profiles
from agent.profiles import Profile, Table
from agent.snmpclient import SnmpClient, SnmpError, SnmpTarget, SnmpValue, default_client_factory
from agent.sources import detect
from agent.sources.snmpeval import (
    MAX_TAG,
    Context,
    Row,
    as_int,
    as_text,
    scalar_sample,
    table_samples,
    went_backwards,
)
from agent.sources.snmpread import Poll, detect_profiles, read_table
from zonewatch import strict
from zonewatch.wire import FieldValue, Sample

__all__ = ["SnmpConfig", "SnmpSource", "Reading", "check_profile_dirs"]

log = logging.getLogger(__name__)

SYS_UPTIME: Final = "1.3.6.1.2.1.1.3.0"
_IF_OPER_STATUS, _IF_NAME, _IF_DESCR = "1.3.6.1.2.1.2.2.1.8", "1.3.6.1.2.1.31.1.1.1.1", "1.3.6.1.2.1.2.2.1.2"
_NOT_PRESENT: Final = 6  # ifOperStatus notPresent(6)

OpticalUnit = Literal["auto", "dbm_hundredths", "microwatt"]


class SnmpConfig(strict.Strict):
    """One SNMP device to poll (``type: snmp`` in the agent's ``sources``)."""

    type: Literal["snmp"]
    name: str = Field(min_length=1, max_length=MAX_TAG)
    host: str = Field(min_length=1)
    port: int = Field(default=161, ge=1, le=65535)
    version: Literal["v2c", "v3"] = "v3"
    community: strict.Secret | None = None
    user: str | None = Field(default=None, min_length=1)
    auth_key: strict.Secret | None = None
    priv_key: strict.Secret | None = None
    auth_protocol: Literal["SHA", "SHA256", "MD5"] = "SHA"
    priv_protocol: Literal["AES", "AES256", "DES"] = "AES"
    timeout: strict.Duration = Field(default=2.0, gt=0)
    retries: int = Field(default=1, ge=0, le=10)
    max_repetitions: int = Field(default=25, ge=1, le=1000)
    bulk: bool = True
    interval: strict.Duration = Field(default=60.0, gt=0)
    site: str | None = Field(default=None, min_length=1, max_length=MAX_TAG)
    links: dict[str, str] = Field(default_factory=dict)
    # Folders of site profiles (one <name>.yaml each) besides the shipped ones: the agent configuration's
    # top-level profile_dirs, unless the source gives its own (agent.profiles.catalogue).
    profile_dirs: list[str] = Field(default_factory=list)
    # The poll profiles (agent/profiles/<name>.yaml, or a site profile), in the order they are read. Left out: every
    # profile whose applies_to fits the device, detected at the first poll, after a reboot and every 6 h
    # (agent.sources.detect).
    profiles: list[str] | None = None
    # The unit of hwOpticalModuleInfoTable (profile huawei_optical): 0.01 dBm (current firmware) or uW
    # (older firmware). auto: a device whose readings in a poll are all >= 0 (sentinels aside) reports uW,
    # one negative reading means 0.01 dBm (a receiver at or above 0 dBm on every port is implausible).
    optical_unit: OpticalUnit = "auto"

    @model_validator(mode="after")
    def _credentials(self) -> SnmpConfig:
        """Check that the keys of the chosen SNMP version, and only those, are given."""
        v3_keys = [k for k in ("user", "auth_key", "priv_key") if getattr(self, k) is not None]
        if self.version == "v2c":
            if self.community is None:
                raise ValueError("version 'v2c' needs 'community' ({env: NAME}, {file: /path} or a string)")
            if v3_keys:
                raise ValueError(f"'{v3_keys[0]}' is for version 'v3'; version 'v2c' uses only 'community'")
        else:
            missing = [k for k in ("user", "auth_key", "priv_key") if getattr(self, k) is None]
            if missing:
                hint = " (or set version: v2c to use 'community')" if self.community is not None else ""
                names = ", ".join(f"'{k}'" for k in missing)
                raise ValueError(f"version 'v3' (authPriv) needs 'user', 'auth_key' and 'priv_key'; "
                                 f"missing: {names}{hint}")
            if self.community is not None:
                raise ValueError("'community' is for version 'v2c'; version 'v3' uses 'user', 'auth_key' and "
                                 "'priv_key'")
        return self

    @field_validator("profile_dirs")
    @classmethod
    def _site_profiles(cls, dirs: list[str]) -> list[str]:
        """Load the site profiles (a bad file raises strict.ConfigError naming it, its line and key)."""
        return check_profile_dirs(dirs)

    @field_validator("profiles")
    @classmethod
    def _once_each(cls, names: list[str] | None, info: ValidationInfo) -> list[str] | None:
        """Check that the list names at least one known profile, and none twice."""
        if names is None:
            return None
        dirs = info.data.get("profile_dirs")
        if dirs is None:   # the folders were refused: that is the error to report
            return names
        known = profiles.catalogue(dirs)
        if not names:
            raise ValueError(f"name at least one profile; known profiles: {', '.join(sorted(known))}")
        for i, name in enumerate(names):
            if name not in known:
                raise strict.SubkeyError((i,), f"unknown profile {name!r}; known profiles: {', '.join(sorted(known))}")
        twice = next((name for i, name in enumerate(names) if name in names[:i]), None)
        if twice is not None:
            raise ValueError(f"{twice!r} is listed twice")
        return names

    def target(self) -> SnmpTarget:
        """Return the client's view of this device, with the secrets read out."""
        return SnmpTarget(
            host=self.host,
            port=self.port,
            version=self.version,
            community=self.community.get_secret_value() if self.community else None,
            user=self.user,
            auth_key=self.auth_key.get_secret_value() if self.auth_key else None,
            priv_key=self.priv_key.get_secret_value() if self.priv_key else None,
            auth_protocol=self.auth_protocol,
            priv_protocol=self.priv_protocol,
            timeout=self.timeout,
            retries=self.retries,
            max_repetitions=self.max_repetitions,
            bulk=self.bulk,
        )


def check_profile_dirs(dirs: list[str]) -> list[str]:
    """Return ``dirs`` once their profiles load; raise SubkeyError for a folder that cannot be listed, and
    strict.ConfigError (naming the file, line and key) for a file that is no usable profile."""
    for i, folder in enumerate(dirs):
        try:
            profiles.catalogue([folder])
        except ValueError as exc:
            raise strict.SubkeyError((i,), str(exc)) from None
    profiles.catalogue(dirs)   # a name defined in two of the folders
    return dirs


State = Literal["up", "partial", "down"]
@dataclass
class Reading:
    """One poll: the samples, what each profile gave, the profiles that gave nothing, the detection used."""

    samples: list[Sample]
    by_profile: dict[str, list[Sample]]       # profile -> its samples (a device sample with its fields only)
    empty: list[str]                          # profiles that read nothing, on a poll without read failures
    detection: detect.Detection | None        # the auto-detection in use (None: profiles configured)
    answered: bool = True
    failure: str | None = None                # why it did not answer, or what could not be read


class SnmpSource:
    """Poll one device with its profiles."""

    def __init__(
        self, config: SnmpConfig, client_factory: Callable[[SnmpTarget], SnmpClient] = default_client_factory
    ) -> None:
        self.name = config.name
        self.config = config
        self._auto = config.profiles is None
        self._known = profiles.catalogue(config.profile_dirs)   # loaded (and checked) with the configuration
        self._profiles = [self._known[name] for name in config.profiles or []]
        self._target = config.target()
        self._client_factory = client_factory
        self._client: SnmpClient | None = None
        self._state: State | None = None
        self._previous: dict[str, tuple[int, int]] = {}  # detect key -> (raw value, time) at the last poll
        self._detection: detect.Detection | None = None  # auto-detection: the last complete one
        self._uptime: tuple[int, int] | None = None  # (sysUpTime, time) at the last poll: reboots re-detect
        self._empty: dict[str, bool] = {}  # profile -> it read nothing at the last poll without read failures
        self._notes: list[str] = []  # what ``once`` says about the last poll besides its samples
        self._absent: tuple[frozenset[int], frozenset[str]] = (frozenset(), frozenset())  # notPresent ports

    def __repr__(self) -> str:
        return f"SnmpSource({self.name!r}, {self._target.label})"

    def unanswered(self, now_ns: int) -> list[Sample]:
        """Return what a poll the runner gave up on means: the device did not answer in time (``up=False``)."""
        self._enter("down", "did not finish a poll within its interval")
        return [Sample("device", self._device_tags(), {"up": False}, now_ns)]

    async def collect(self, now_ns: int) -> list[Sample]:
        """Poll the device once; a device that does not answer gives ``up=False``."""
        return (await self.read(now_ns)).samples

    async def read(self, now_ns: int) -> Reading:
        """Poll the device once and say what each profile gave (``collect``, and ``discover`` for people)."""
        if self._client is None:
            self._client = self._client_factory(self._target)
        client = self._client
        try:
            uptime = (await client.get([SYS_UPTIME]))[SYS_UPTIME]
        except SnmpError as exc:
            self._enter("down", f"is not answering: {exc.reason}")
            down = [Sample("device", self._device_tags(), {"up": False}, now_ns)]
            return Reading(down, {}, [], self._detection, answered=False, failure=exc.reason)

        poll = Poll(client)
        poll.values[SYS_UPTIME] = uptime
        used, detection = await self._choose(poll, uptime, now_ns)
        await poll.get([oid for p in used for group in p.scalars for oid in group.get.values()])
        read: list[tuple[Profile, Table, dict[str, dict[str, SnmpValue]], dict[str, dict[str, SnmpValue]]]] = []
        for profile in used:
            for table in profile.tables:
                columns, joins = await read_table(poll, table)
                read.append((profile, table, columns, joins))
        self._enter("partial" if poll.failure else "up", poll.failure or "")
        oper = poll.walks.get(_IF_OPER_STATUS)
        if oper is not None and poll.failure is None:
            gone = [i for i, v in oper.items() if v == _NOT_PRESENT and i.isdigit()]
            names = {as_text(poll.walks.get(c, {}).get(i)) for c in (_IF_NAME, _IF_DESCR) for i in gone} - {""}
            self._absent = (frozenset(int(i) for i in gone), frozenset(names))

        context = Context(self.config, now_ns, self._previous)
        device: dict[str, FieldValue] = {"up": True}
        samples: list[Sample] = []
        by_profile: dict[str, list[Sample]] = {p.name: [] for p in used}
        for profile in used:
            for group in profile.scalars:
                context.profile = profile.name
                row: Row = {name: poll.values.get(oid) for name, oid in group.get.items()}
                tags, fields = scalar_sample(group, row, context)
                if group.measurement == "device":
                    new = {k: v for k, v in fields.items() if k not in device}
                    device.update(new)
                    if new:
                        by_profile[profile.name].append(Sample("device", self._device_tags(), new, now_ns))
                elif fields or group.keep_empty:
                    samples.append(Sample(group.measurement, tags, fields, now_ns))
                    by_profile[profile.name].append(samples[-1])
        for profile, table, columns, joins in read:
            context.profile = profile.name
            made = table_samples(table, columns, joins, context)
            samples += made
            by_profile[profile.name] += made
        if device.get("rebooted") is True:
            log.info("snmp device %s (%s) rebooted: sysUpTime went backwards", self.name, self._target.label)
        empty = self._judge(used, by_profile, complete=poll.failure is None)
        self._notes = _notes(detection, empty, self._auto)
        return Reading([Sample("device", self._device_tags(), device, now_ns), *samples], by_profile, empty, detection,
                       failure=poll.failure)

    def not_present(self, if_index: int | None, ifname: str | None) -> bool:
        """Return True if the last complete poll that read ifOperStatus found this port notPresent(6) (for the
        trap receiver: a linkDown about an empty cage is no link going down)."""
        indexes, names = self._absent
        return (if_index is not None and if_index in indexes) or (ifname is not None and ifname in names)

    def profile_report(self) -> dict[str, bool]:
        """Return each profile polled so far -> it read nothing at the last poll without read failures (/metrics)."""
        return dict(self._empty)

    def notes(self) -> list[str]:
        """Return what the last poll showed besides its samples: the profiles detected, those that read nothing."""
        return list(self._notes)

    async def _choose(self, poll: Poll, uptime: SnmpValue, now_ns: int) -> tuple[list[Profile],
                                                                                  detect.Detection | None]:
        """Return the profiles for this poll: those configured, or those detected (again when it is due)."""
        ticks = as_int(uptime)
        previous = self._uptime
        if ticks is not None:
            self._uptime = (ticks, now_ns)
        if not self._auto:
            return self._profiles, None
        rebooted = previous is not None and ticks is not None and went_backwards(previous, ticks, now_ns)
        known = self._known
        if detect.due(self._detection, now_ns, rebooted):
            detection = await detect_profiles(poll, known, now_ns)
            if poll.failure is None:  # complete: kept until it is due again
                if self._detection is None or self._detection.profiles != detection.profiles:
                    log.info("snmp device %s (%s): profiles detected: %s", self.name, self._target.label,
                             ", ".join(detection.profiles) or "none")
                self._detection = detection
            elif self._detection is None:  # a read failed: use what was seen, and detect again at the next poll
                return [known[name] for name in detection.profiles], detection
        if self._detection is None:
            return [], None
        return [known[name] for name in self._detection.profiles if name in known], self._detection

    def _judge(self, used: list[Profile], by_profile: dict[str, list[Sample]], complete: bool) -> list[str]:
        """Return the profiles that gave nothing; log once when one starts (or stops) giving nothing."""
        if not complete:  # a read failed: silence is not the profile's, keep the last judgement
            return [name for name, empty in self._empty.items() if empty and name in by_profile]
        empty = [p.name for p in used if not by_profile[p.name]]
        newly = [name for name in empty if not self._empty.get(name)]
        again = [name for name, got in by_profile.items() if got and self._empty.get(name)]
        self._empty = {**{name: False for name in self._empty}, **{p.name: p.name in empty for p in used}}
        where = f"snmp device {self.name} ({self._target.label})"
        readers = [p.name for p in used if p.tables or any(o != SYS_UPTIME for g in p.scalars for o in g.get.values())]
        if newly and readers and set(readers) <= set(empty):
            log.warning("%s answers, but none of its profiles read anything (%s): are they this device's MIBs? "
                        "'zonewatch-agent discover' shows which profiles apply", where, ", ".join(empty))
        elif newly:
            for name in newly:
                log.warning("%s: profile %s read nothing (no rows, or no usable value)", where, name)
        for name in again:
            log.info("%s: profile %s reads again", where, name)
        return empty

    async def close(self) -> None:
        """Close the client, if a poll opened one."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def _device_tags(self) -> dict[str, str]:
        tags = {"device": self.name}
        if self.config.site:
            tags["site"] = self.config.site
        return tags

    def _enter(self, state: State, detail: str) -> None:
        """Log a change of state once: a failure when it starts, "recovered" when it ends."""
        previous, self._state = self._state, state
        if state == previous:
            return
        where = f"snmp device {self.name} ({self._target.label})"
        if state == "up":
            if previous is not None:
                log.info("%s recovered", where)
        else:
            log.warning("%s %s", where, detail)


def _notes(detection: detect.Detection | None, empty: list[str], auto: bool) -> list[str]:
    """Return what ``once`` prints about a poll besides its samples."""
    notes = []
    if auto:
        matches = detection.matches if detection else ()
        found = ", ".join(f"{m.profile} ({m.test})" for m in matches if m.superseded_by is None)
        notes.append(f"profiles detected: {found}" if found else "no profile applies to this device (see "
                     "'zonewatch-agent discover')")
        notes += [f"profile {m.profile} applies too, but {m.superseded_by} supersedes it: not polled"
                  for m in matches if m.superseded_by is not None]
    notes += [f"profile {name} read nothing (no rows, or no usable value)" for name in empty]
    return notes
