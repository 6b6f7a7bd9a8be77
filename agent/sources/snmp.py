"""SNMP poll source: one device, read as its poll profiles say (``agent/profiles/*.yaml``).

One ``SnmpSource`` polls one device. A poll is a GET of sysUpTime (the reachability check), a GET of the
scalars of the device's profiles (16 OIDs a request; a request the agent refuses is retried one OID at a
time), then a walk of each column of each profile's tables in order, and of a table's joins when it has
rows (a column two profiles read is walked once). The profiles turn what was read into samples; the file
format and the conversions are in ``agent.profiles``. Samples come device first, then the scalar groups'
and the tables' samples in profile order.

Samples (see the measurement table in the README), by profile::

    (always)             device     tags: device, site?      fields: up
    system               device                              fields: uptime_s, rebooted (only when true)
    if_mib               interface  tags: device, ifname, link?
                                    fields: oper_up, admin_up, in_octets, out_octets, in_errors, out_errors,
                                            speed_mbps
    entity_sensor, cisco_entity_sensor, juniper_dom, huawei_optical
                         optical    tags: device, port       fields: rx_dbm, tx_dbm
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Final, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

import zwconf
from agent import profiles
from agent.profiles import Condition, FieldSpec, Profile, Scalars, Table, TagSource
from agent.snmpclient import SnmpClient, SnmpError, SnmpTarget, SnmpTimeout, SnmpValue, default_client_factory
from zonewatch.wire import FieldValue, Sample

__all__ = ["SnmpConfig", "SnmpSource"]

log = logging.getLogger(__name__)

SYS_UPTIME: Final = "1.3.6.1.2.1.1.3.0"
TICKS_WRAP: Final = 2**32  # TimeTicks is 32-bit: sysUpTime wraps after about 497 days
_GET_BATCH: Final = 16  # OIDs per GET request
_MAX_TAG: Final = 256
_FIELD_MIN, _FIELD_MAX = -(2**63), 2**64 - 1  # what a field may hold (wire contract): signed 64-bit to Counter64
_INDEX = re.compile(r"^[0-9]+(\.[0-9]+)*$")

OpticalUnit = Literal["auto", "dbm_hundredths", "microwatt"]


def _known_profile(name: str) -> str:
    known = profiles.shipped()
    if name not in known:
        raise ValueError(f"unknown profile {name!r}; known profiles: {', '.join(sorted(known))}")
    return name


ProfileName = Annotated[str, AfterValidator(_known_profile)]


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
    # The poll profiles (agent/profiles/<name>.yaml), in the order they are read.
    profiles: list[ProfileName] = Field(default_factory=lambda: ["system", "if_mib"])
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

    @field_validator("profiles")
    @classmethod
    def _once_each(cls, names: list[str]) -> list[str]:
        """Check that the list names at least one profile, and none twice."""
        if not names:
            raise ValueError(f"name at least one profile; known profiles: {', '.join(sorted(profiles.shipped()))}")
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


State = Literal["up", "partial", "down"]
Row = dict[str, SnmpValue]


class SnmpSource:
    """Poll one device with its profiles."""

    def __init__(
        self, config: SnmpConfig, client_factory: Callable[[SnmpTarget], SnmpClient] = default_client_factory
    ) -> None:
        self.name = config.name
        self.config = config
        self._profiles = [profiles.shipped()[name] for name in config.profiles]
        self._target = config.target()
        self._client_factory = client_factory
        self._client: SnmpClient | None = None
        self._state: State | None = None
        self._previous: dict[str, tuple[int, int]] = {}  # detect key -> (raw value, time) at the last poll

    def __repr__(self) -> str:
        return f"SnmpSource({self.name!r}, {self._target.label})"

    def unanswered(self, now_ns: int) -> list[Sample]:
        """Return what a poll the runner gave up on means: the device did not answer in time (``up=False``)."""
        self._enter("down", "did not finish a poll within its interval")
        return [Sample("device", self._device_tags(), {"up": False}, now_ns)]

    async def collect(self, now_ns: int) -> list[Sample]:
        """Poll the device once; a device that does not answer gives ``up=False``."""
        if self._client is None:
            self._client = self._client_factory(self._target)
        client = self._client
        try:
            uptime = (await client.get([SYS_UPTIME]))[SYS_UPTIME]
        except SnmpError as exc:
            self._enter("down", f"is not answering: {exc.reason}")
            return [Sample("device", self._device_tags(), {"up": False}, now_ns)]

        poll = _Poll(client)
        poll.values[SYS_UPTIME] = uptime
        await poll.get([oid for p in self._profiles for group in p.scalars for oid in group.get.values()])
        read: list[tuple[Profile, Table, dict[str, dict[str, SnmpValue]], dict[str, dict[str, SnmpValue]]]] = []
        for profile in self._profiles:
            for table in profile.tables:
                columns, joins = await _read_table(poll, table)
                read.append((profile, table, columns, joins))
        self._enter("partial" if poll.failure else "up", poll.failure or "")

        context = _Context(self.config, now_ns, self._previous)
        device: dict[str, FieldValue] = {"up": True}
        samples: list[Sample] = []
        for profile in self._profiles:
            for group in profile.scalars:
                context.profile = profile.name
                row: Row = {name: poll.values.get(oid) for name, oid in group.get.items()}
                tags, fields = _scalar_sample(group, row, context)
                if group.measurement == "device":
                    device.update((k, v) for k, v in fields.items() if k not in device)
                elif fields or group.keep_empty:
                    samples.append(Sample(group.measurement, tags, fields, now_ns))
        for profile, table, columns, joins in read:
            context.profile = profile.name
            samples += _table_samples(table, columns, joins, context)
        if device.get("rebooted") is True:
            log.info("snmp device %s (%s) rebooted: sysUpTime went backwards", self.name, self._target.label)
        return [Sample("device", self._device_tags(), device, now_ns), *samples]

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
    for index in indexes:
        row: Row = {name: column[index] for name, column in columns.items() if index in column}
        for name, join in table.joins.items():
            at = index if join.by == "index" else _join_index(row.get(join.by))
            if at is not None and name in joins and at in joins[name]:
                row[name] = joins[name][at]
        if table.skip_row_when and all(_holds(c, row) for c in table.skip_row_when):
            continue
        rows.append((index, row))
    context.optical_unit = _resolve_optical_unit(table.fields, [r for _, r in rows], context.config.optical_unit)

    merged: dict[tuple[tuple[str, str], ...], tuple[dict[str, str], dict[str, FieldValue]]] = {}
    samples: list[Sample] = []
    for index, row in rows:
        tags = _tags(table.tags, row, index, context)
        fields = _fields(table.fields, row, context)
        if not table.merge_rows:
            if fields or table.keep_empty:
                samples.append(Sample(table.measurement, tags, fields, context.now_ns))
            continue
        _, into = merged.setdefault(tuple(sorted(tags.items())), (tags, {}))
        into.update((k, v) for k, v in fields.items() if k not in into)  # the first row's value wins
    samples += [Sample(table.measurement, tags, fields, context.now_ns) for tags, fields in merged.values()
                if fields or table.keep_empty]
    return samples


def _join_index(value: SnmpValue) -> str | None:
    number = _int(value)
    return str(number) if number is not None and number >= 0 else None


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
        return _text(row.get(source.column))
    if source.text is not None:
        return source.text.format(index=index)[:_MAX_TAG]
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
    for name in condition.names():
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
