"""SNMP poll source: one device, read as its poll profiles say (``agent/profiles/*.yaml``).

One ``SnmpSource`` polls one device. A poll is a GET of sysUpTime (the reachability check), a GET of the
scalars of the device's profiles (16 OIDs a request; a request the agent refuses is retried one OID at a
time), then a walk of each column of each profile's tables in order, and of a table's joins when it has
rows (a column two profiles read is walked once). The profiles turn what was read into samples; the file
format and the conversions are in ``agent.profiles``. Samples come device first, then the scalar groups'
and the tables' samples in profile order.

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
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

import zwconf
from agent import profiles
from agent.profiles import Condition, FieldSpec, Profile, Scalars, Table, TagSource
from agent.snmpclient import SnmpClient, SnmpError, SnmpTarget, SnmpTimeout, SnmpValue, default_client_factory
from agent.sources import detect
from zonewatch.wire import FieldValue, Sample

__all__ = ["SnmpConfig", "SnmpSource", "Reading", "check_profile_dirs"]

log = logging.getLogger(__name__)

SYS_UPTIME: Final = "1.3.6.1.2.1.1.3.0"
_IF_OPER_STATUS, _IF_NAME, _IF_DESCR = "1.3.6.1.2.1.2.2.1.8", "1.3.6.1.2.1.31.1.1.1.1", "1.3.6.1.2.1.2.2.1.2"
_NOT_PRESENT: Final = 6  # ifOperStatus notPresent(6)
TICKS_WRAP: Final = 2**32  # TimeTicks is 32-bit: sysUpTime wraps after about 497 days
_GET_BATCH: Final = 16  # OIDs per GET request
_MAX_TAG: Final = 256
_FIELD_MIN, _FIELD_MAX = -(2**63), 2**64 - 1  # what a field may hold (wire contract): signed 64-bit to Counter64
_INDEX = re.compile(r"^[0-9]+(\.[0-9]+)*$")

OpticalUnit = Literal["auto", "dbm_hundredths", "microwatt"]


class SnmpConfig(zwconf.Strict):
    """One SNMP device to poll (``type: snmp`` in the agent's ``sources``)."""

    type: Literal["snmp"]
    name: str = Field(min_length=1, max_length=_MAX_TAG)
    host: str = Field(min_length=1)
    port: int = Field(default=161, ge=1, le=65535)
    version: Literal["v2c", "v3"] = "v3"
    community: zwconf.Secret | None = None
    user: str | None = Field(default=None, min_length=1)
    auth_key: zwconf.Secret | None = None
    priv_key: zwconf.Secret | None = None
    auth_protocol: Literal["SHA", "SHA256", "MD5"] = "SHA"
    priv_protocol: Literal["AES", "AES256", "DES"] = "AES"
    timeout: zwconf.Duration = Field(default=2.0, gt=0)
    retries: int = Field(default=1, ge=0, le=10)
    max_repetitions: int = Field(default=25, ge=1, le=1000)
    bulk: bool = True
    interval: zwconf.Duration = Field(default=60.0, gt=0)
    site: str | None = Field(default=None, min_length=1, max_length=_MAX_TAG)
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
        """Load the site profiles (a bad file raises zwconf.ConfigError naming it, its line and key)."""
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
                raise zwconf.SubkeyError((i,), f"unknown profile {name!r}; known profiles: {', '.join(sorted(known))}")
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
    zwconf.ConfigError (naming the file, line and key) for a file that is no usable profile."""
    for i, folder in enumerate(dirs):
        try:
            profiles.catalogue([folder])
        except ValueError as exc:
            raise zwconf.SubkeyError((i,), str(exc)) from None
    profiles.catalogue(dirs)   # a name defined in two of the folders
    return dirs


State = Literal["up", "partial", "down"]
Row = dict[str, SnmpValue]


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

        poll = _Poll(client)
        poll.values[SYS_UPTIME] = uptime
        used, detection = await self._choose(poll, uptime, now_ns)
        await poll.get([oid for p in used for group in p.scalars for oid in group.get.values()])
        read: list[tuple[Profile, Table, dict[str, dict[str, SnmpValue]], dict[str, dict[str, SnmpValue]]]] = []
        for profile in used:
            for table in profile.tables:
                columns, joins = await _read_table(poll, table)
                read.append((profile, table, columns, joins))
        self._enter("partial" if poll.failure else "up", poll.failure or "")
        oper = poll.walks.get(_IF_OPER_STATUS)
        if oper is not None and poll.failure is None:
            gone = [i for i, v in oper.items() if v == _NOT_PRESENT and i.isdigit()]
            names = {_text(poll.walks.get(c, {}).get(i)) for c in (_IF_NAME, _IF_DESCR) for i in gone} - {""}
            self._absent = (frozenset(int(i) for i in gone), frozenset(names))

        context = _Context(self.config, now_ns, self._previous)
        device: dict[str, FieldValue] = {"up": True}
        samples: list[Sample] = []
        by_profile: dict[str, list[Sample]] = {p.name: [] for p in used}
        for profile in used:
            for group in profile.scalars:
                context.profile = profile.name
                row: Row = {name: poll.values.get(oid) for name, oid in group.get.items()}
                tags, fields = _scalar_sample(group, row, context)
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
            table_samples = _table_samples(table, columns, joins, context)
            samples += table_samples
            by_profile[profile.name] += table_samples
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

    async def _choose(self, poll: _Poll, uptime: SnmpValue, now_ns: int) -> tuple[list[Profile],
                                                                                  detect.Detection | None]:
        """Return the profiles for this poll: those configured, or those detected (again when it is due)."""
        ticks = _int(uptime)
        previous = self._uptime
        if ticks is not None:
            self._uptime = (ticks, now_ns)
        if not self._auto:
            return self._profiles, None
        rebooted = previous is not None and ticks is not None and _went_backwards(previous, ticks, now_ns)
        known = self._known
        if detect.due(self._detection, now_ns, rebooted):
            detection = await _detect(poll, known, now_ns)
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


# ---------------------------------------------------------------------------------------------- reading


class _Poll:
    """The requests of one poll: values read so far, walks by column OID, and what went wrong."""

    def __init__(self, client: SnmpClient) -> None:
        self.client = client
        self.values: dict[str, SnmpValue] = {}
        self.walks: dict[str, dict[str, SnmpValue]] = {}
        self.failure: str | None = None
        self.stopped = False

    async def get(self, oids: Sequence[str]) -> None:
        """GET the OIDs not read yet, in batches; a batch the agent refuses is retried one OID at a time."""
        todo = list(dict.fromkeys(oid for oid in oids if oid not in self.values))
        for start in range(0, len(todo), _GET_BATCH):
            batch = todo[start : start + _GET_BATCH]
            if not await self._get(batch) and len(batch) > 1:
                for oid in batch:
                    await self._get([oid])

    async def _get(self, request: list[str]) -> bool:
        """GET once; return False if the agent answered with an error."""
        if self.stopped:
            return True
        try:
            self.values.update(await self.client.get(request))
        except SnmpTimeout as exc:
            self._stop(exc)
        except SnmpError as exc:
            if len(request) == 1:
                self.failure = f"answered, but {request[0]} could not be read: {exc.reason}"
            return False
        return True

    async def walk(self, oid: str) -> dict[str, SnmpValue]:
        """Walk one column (once per poll) and return its values by index; nothing after a timeout."""
        if oid in self.walks:
            return self.walks[oid]
        if self.stopped:
            return {}
        try:
            column = _by_index(await self.client.walk(oid), oid)
        except SnmpTimeout as exc:  # it stopped answering: each further column would wait as long
            self._stop(exc)
            return {}
        except SnmpError as exc:
            self.failure = f"answered, but {oid} could not be read: {exc.reason}"
            column = {}
        self.walks[oid] = column
        return column

    def _stop(self, exc: SnmpError) -> None:
        self.failure = f"stopped answering during the poll: {exc.reason}"
        self.stopped = True


async def _read_table(
    poll: _Poll, table: Table
) -> tuple[dict[str, dict[str, SnmpValue]], dict[str, dict[str, SnmpValue]]]:
    """Walk a table's columns in order, then its joins if it has rows."""
    columns: dict[str, dict[str, SnmpValue]] = {}
    for name, column in table.columns.items():
        if column.only_if_empty is not None:
            if poll.failure is not None or columns.get(column.only_if_empty):
                continue
        columns[name] = await poll.walk(column.oid)
    joins: dict[str, dict[str, SnmpValue]] = {}
    if any(columns.values()):
        for name, join in table.joins.items():
            joins[name] = await poll.walk(join.oid)
    return columns, joins


async def _detect(poll: _Poll, known: Mapping[str, Profile], now_ns: int) -> detect.Detection:
    """Ask the device who it is (one GET) and walk the has_table columns still undecided (kept for the poll)."""
    await poll.get([detect.SYS_OBJECT_ID, detect.SYS_DESCR])
    identity = detect.identify(poll.values.get(detect.SYS_OBJECT_ID), poll.values.get(detect.SYS_DESCR))
    present = [oid for oid in detect.tables_to_walk(known, identity)
               if any(value is not None for value in (await poll.walk(oid)).values())]
    identity = replace(identity, tables=frozenset(present))
    return detect.Detection(identity, tuple(detect.select(known, identity)), now_ns)


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


def _by_index(rows: list[tuple[str, SnmpValue]], column: str) -> dict[str, SnmpValue]:
    """Map the rows of one column by index (the sub-identifiers after the column OID)."""
    prefix = column + "."
    out: dict[str, SnmpValue] = {}
    for oid, value in rows:
        suffix = oid[len(prefix) :] if oid.startswith(prefix) else ""
        if _INDEX.match(suffix):
            out[suffix] = value
    return out


def _index_key(index: str) -> tuple[int, ...]:
    return tuple(int(part) for part in index.split("."))


# ---------------------------------------------------------------------------------------------- evaluating


@dataclass
class _Context:
    """What a profile's evaluation may use besides the values read."""

    config: SnmpConfig
    now_ns: int
    previous: dict[str, tuple[int, int]]
    profile: str = ""
    optical_unit: str = "dbm_hundredths"


def _scalar_sample(group: Scalars, row: Row, context: _Context) -> tuple[dict[str, str], dict[str, FieldValue]]:
    context.optical_unit = _resolve_optical_unit(group.fields, [row], context.config.optical_unit)
    return _tags(group.tags, row, "", context), _fields(group.fields, row, context)


def _table_samples(table: Table, columns: dict[str, dict[str, SnmpValue]],
                   joins: dict[str, dict[str, SnmpValue]], context: _Context) -> list[Sample]:
    """Return the samples of one table: one per row, or one per distinct tags with ``merge_rows``."""
    indexes = sorted({i for column in columns.values() for i in column}, key=_index_key)
    rows: list[tuple[str, Row]] = []
    under = {name: _first_under(joins.get(name, {})) for name, join in table.joins.items() if join.index_prefix}
    for index in indexes:
        row: Row = {name: column[index] for name, column in columns.items() if index in column}
        for name, join in table.joins.items():
            at = index if join.by == "index" else _parent(index) if join.by == "parent_index" else \
                _join_index(row.get(join.by), join.pointer)
            found = under[name] if join.index_prefix else joins.get(name, {})
            if at is not None and at in found:
                row[name] = found[at]
        if table.skip_row_when and all(_holds(c, row) for c in table.skip_row_when):
            continue
        rows.append((index, row))
    context.optical_unit = _resolve_optical_unit(table.fields, [r for _, r in rows], context.config.optical_unit)

    merged: dict[tuple[tuple[str, str], ...], tuple[dict[str, str], dict[str, FieldValue]]] = {}
    samples: list[Sample] = []
    computed: list[tuple[dict[str, str], dict[str, FieldValue]]] = []  # every row, for the aggregate
    for index, row in rows:
        tags = _tags(table.tags, row, index, context)
        fields = _fields(table.fields, row, context)
        computed.append((tags, fields))
        if table.keep_rows_when and not any(_passes(test, fields) for test in table.keep_rows_when):
            continue
        fields = {k: v for k, v in fields.items() if not k.startswith("_")}  # '_' fields are never sent
        if not table.merge_rows:
            if fields or table.keep_empty:
                samples.append(Sample(table.measurement, tags, fields, context.now_ns))
            continue
        _, into = merged.setdefault(tuple(sorted(tags.items())), (tags, {}))
        into.update((k, v) for k, v in fields.items() if k not in into)  # the first row's value wins
    samples += [Sample(table.measurement, tags, fields, context.now_ns) for tags, fields in merged.values()
                if fields or table.keep_empty]
    if table.aggregate is not None:
        samples += _aggregate(table.aggregate, computed, context.now_ns)
    return samples


def _passes(test: profiles.RowTest, fields: Mapping[str, FieldValue]) -> bool:
    """Return True if the row's field is below or above the test's number (a field it lacks fails)."""
    value = fields.get(test.field)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return value < test.below if test.below is not None else value > (test.above or 0.0)


def _aggregate(spec: profiles.Aggregate, rows: list[tuple[dict[str, str], dict[str, FieldValue]]],
               now_ns: int) -> list[Sample]:
    """Return one sample per distinct value of the ``by`` tags, computed over every row of that group."""
    groups: dict[tuple[str, ...], tuple[dict[str, str], list[dict[str, FieldValue]]]] = {}
    for tags, fields in rows:
        key = tuple(tags.get(tag, "") for tag in spec.by)
        group_tags = {"device": tags["device"], **{tag: tags[tag] for tag in spec.by if tag in tags}}
        groups.setdefault(key, (group_tags, []))[1].append(fields)
    samples = []
    for tags, members in groups.values():
        out: dict[str, FieldValue] = {}
        for name, field in spec.fields.items():
            value = _reduce(field, members)
            if value is not None:
                out[name] = value
        samples.append(Sample(spec.measurement, tags, out, now_ns))
    return samples


def _reduce(spec: profiles.AggregateField, members: list[dict[str, FieldValue]]) -> FieldValue | None:
    """Return one aggregate field over a group's rows; None for a min, max or median of no value."""
    function, name = spec.function()
    if function == "count" and name == "rows":
        return len(members)
    if function in ("count_true", "count_false"):
        return sum(1 for fields in members if fields.get(name) is (function == "count_true"))
    values = [v for fields in members if not isinstance(v := fields.get(name), bool) and isinstance(v, int | float)]
    if function == "count":
        return sum(1 for v in values
                   if (spec.below is None or v < spec.below) and (spec.above is None or v > spec.above))
    if not values:
        return None
    if function == "min":
        return min(values)
    if function == "max":
        return max(values)
    ordered, middle = sorted(values), len(values) // 2
    median = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    return round(float(median), 3) + 0.0


def _parent(index: str) -> str | None:
    """Return the index without its last sub-identifier (None for a one-part index)."""
    head, _, _ = index.rpartition(".")
    return head or None


def _join_index(value: SnmpValue, pointer: str | None = None) -> str | None:
    """Return the index a value names: a non-negative integer, or the index part of an OID under ``pointer``."""
    if pointer is not None:
        suffix = value[len(pointer) + 1 :] if isinstance(value, str) and value.startswith(pointer + ".") else ""
        return suffix if _INDEX.match(suffix) else None
    number = _int(value)
    return str(number) if number is not None and number >= 0 else None


def _first_under(column: dict[str, SnmpValue]) -> dict[str, SnmpValue]:
    """Map every proper prefix of a column's indexes to the value at the lowest index under it."""
    out: dict[str, SnmpValue] = {}
    for index in sorted(column, key=_index_key):
        parts = index.split(".")
        for end in range(1, len(parts)):
            out.setdefault(".".join(parts[:end]), column[index])
    return out


def _tags(specs: dict[str, list[TagSource]], row: Row, index: str,
          context: _Context) -> dict[str, str]:
    tags = {"device": context.config.name}
    for name, sources in specs.items():
        for source in sources:
            value = _tag_value(source, row, index, tags, context)
            if value:
                tags[name] = value
                break
    return tags


def _tag_value(source: TagSource, row: Row, index: str, tags: dict[str, str], context: _Context) -> str:
    config = context.config
    if source.column is not None:
        if not all(_holds(c, row) for c in source.when):
            return ""
        text = _text(row.get(source.column))
        if source.extract is not None:
            found = re.search(source.extract, text)
            return (found.group(1) or "").strip() if found else ""
        return text
    if source.text is not None:
        parent, _, last = index.rpartition(".")
        return source.text.format(index=index, index_parent=parent or index, index_last=last)[:_MAX_TAG]
    if source.config is not None:
        return (config.site or "") if source.config == "site" else config.name
    key = tags.get(source.links_of or "")
    return config.links.get(key, "") if key is not None else ""


def _fields(specs: dict[str, list[FieldSpec]], row: Row, context: _Context) -> dict[str, FieldValue]:
    fields: dict[str, FieldValue] = {}
    for name, alternatives in specs.items():
        for alternative in alternatives:
            value = _value(alternative, row, context, f"{context.profile}.{name}")
            if value is not None:
                fields[name] = value
                break
    return fields


def _value(spec: FieldSpec, row: Row, context: _Context, key: str) -> FieldValue | None:
    """Return one field's value from a row, or None when it is missing."""
    if spec.any is not None:
        results = [_value(s, row, context, key) for s in spec.any]
        if True in results:
            return True
        return False if False in results else None
    if not all(_holds(c, row) for c in spec.when) or any(_holds(c, row) for c in spec.unless):
        return None
    raw = _int(row.get(spec.column or ""))
    if raw is None or raw in spec.missing:
        return None
    if spec.one_of is not None:
        return raw in spec.one_of
    if spec.above is not None:
        return raw > spec.above
    if spec.value is not None:
        return spec.value
    if spec.detect is not None:
        previous, context.previous[key] = context.previous.get(key), (raw, context.now_ns)
        return True if previous is not None and _went_backwards(previous, raw, context.now_ns) else None
    value: int | float | None = raw
    if spec.decode == "entity_sensor":
        value = _entity_sensor(raw, row)
    if value is not None and spec.scale is not None:
        value = _scaled(value, spec.scale)
    if value is not None and spec.unit is not None:
        value = _dbm(value, context.optical_unit if spec.unit == "optical_unit" else spec.unit)
    if value is None:
        return None
    if spec.decode is not None or spec.scale is not None or spec.unit is not None:
        value = float(value)  # a field keeps one type: a converted value is always a float
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if spec.round is not None:
        value = round(value, spec.round) if spec.round else round(value)
    if isinstance(value, float):
        value += 0.0  # no -0.0
    elif not _FIELD_MIN <= value <= _FIELD_MAX:  # "round: 0" of a scaled Counter64 may go beyond 64 bits
        return None
    if spec.valid is not None and not spec.valid[0] <= value <= spec.valid[1]:
        return None
    return value


def _holds(condition: Condition, row: Row) -> bool:
    """Return True if the condition holds for any of its columns the row has."""
    limit = _int(row.get(condition.above_column)) if condition.above_column is not None else None
    for name in [condition.column] if condition.column is not None else condition.columns or []:
        if name not in row:
            continue
        value = row[name]
        if condition.matches is not None:
            if re.search(condition.matches, _text(value)):
                return True
        elif condition.bit is not None:
            if isinstance(value, bytes) and condition.bit // 8 < len(value):
                if value[condition.bit // 8] & (0x80 >> condition.bit % 8):
                    return True
        else:
            number = _int(value)
            if number is None:
                continue
            if condition.one_of is not None and number in condition.one_of:
                return True
            if condition.above is not None and number > condition.above:
                return True
            if limit is not None and number > limit:
                return True
    return False


def _went_backwards(previous: tuple[int, int], ticks: int, now_ns: int) -> bool:
    """Return True if sysUpTime ``ticks`` went back since ``previous`` (ticks, time) for another reason than a wrap."""
    before, then_ns = previous
    if ticks >= before:
        return False
    elapsed = max(now_ns - then_ns, 0) // 10_000_000  # in ticks (1/100 s)
    slack = elapsed // 10 + 100  # polls are not exactly on time
    return before + elapsed + slack < TICKS_WRAP  # otherwise the counter was due to wrap


def _entity_sensor(raw: int, row: Row) -> int | float | None:
    """Decode an ENTITY-SENSOR value: raw x 10^(3 x (scale - 9)) x 10^(-precision); None if they are bogus."""
    scale, precision = _int(row.get("scale")), _int(row.get("precision"))
    if scale is None or precision is None or not 1 <= scale <= 17 or not -8 <= precision <= 9:
        return None
    exponent = 3 * (scale - 9) - precision
    power = int(10**abs(exponent))
    return raw * power if exponent >= 0 else raw / power


def _scaled(value: int | float, scale: float) -> int | float:
    """Multiply by ``scale``; divide by its inverse when that is an integer (exact for 0.01, 0.1 ...)."""
    inverse = 1 / scale
    if abs(scale) < 1 and abs(inverse - round(inverse)) < 1e-9 * abs(inverse):
        return value / round(inverse)
    return value * scale


_MILLIWATTS: Final[dict[str, float]] = {"watt_to_dbm": 1e3, "milliwatt_to_dbm": 1.0, "microwatt_to_dbm": 1e-3}


def _dbm(value: int | float, unit: str) -> int | float | None:
    """Convert a power reading to dBm (10 log10 of milliwatts); None for zero or less."""
    if unit == "dbm":
        return value
    if unit == "dbm_hundredths":
        return value / 100
    if unit == "microwatt":
        unit = "microwatt_to_dbm"
    milliwatts = value * _MILLIWATTS[unit]
    return 10 * math.log10(milliwatts) if milliwatts > 0 else None


def _resolve_optical_unit(specs: dict[str, list[FieldSpec]], rows: list[Row], setting: str) -> str:
    """Return the unit for ``unit: optical_unit`` fields: the setting, or for "auto" the one the readings show."""
    if setting != "auto":
        return setting
    for spec in (s for alternatives in specs.values() for top in alternatives for s in top.specs()):
        if spec.unit != "optical_unit":
            continue
        for row in rows:
            raw = _int(row.get(spec.column or ""))
            if raw is not None and raw not in spec.missing and raw < 0:
                return "dbm_hundredths"
    return "microwatt"


def _int(value: SnmpValue) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: SnmpValue) -> str:
    """Return a value as a tag text: decoded, without padding, at most 256 characters."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    elif isinstance(value, int):
        value = str(value)
    if not isinstance(value, str):
        return ""
    return value.strip().strip("\x00").strip()[:_MAX_TAG]
