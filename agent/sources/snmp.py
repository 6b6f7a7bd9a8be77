"""SNMP poll source: device reachability and uptime (sysUpTime) and one sample per interface (IF-MIB).

One ``SnmpSource`` polls one device. A poll is a GET of sysUpTime followed by a walk of each IF-MIB
column below; a device without ifXTable falls back to ifDescr, the 32-bit counters and ifSpeed.

Samples (see the measurement table in the README)::

    device     tags: device, site?                fields: up, uptime_s
    interface  tags: device, ifname, link?        fields: oper_up, admin_up, in_octets, out_octets,
                                                          in_errors, out_errors, speed_mbps

A device that does not answer the GET gives one ``device`` sample with ``up=False``: that is a
measurement (DeviceDown is computed from it), not an error. A column that cannot be read leaves its
field out. Failures are logged once when they start and "recovered" once when they end.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final, Literal

from pydantic import Field, model_validator

import zwconf
from agent.snmpclient import PysnmpClient, SnmpClient, SnmpError, SnmpTarget, SnmpTimeout, SnmpValue
from agent.wire import FieldValue, Sample

__all__ = ["SnmpConfig", "SnmpSource"]

log = logging.getLogger(__name__)

SYS_UPTIME: Final = "1.3.6.1.2.1.1.3.0"
IF_TABLE: Final = "1.3.6.1.2.1.2.2.1"
IF_X_TABLE: Final = "1.3.6.1.2.1.31.1.1.1"

# Column walked -> its role; the ifXTable columns come first so that a device without it is known early.
COLUMNS: Final[dict[str, str]] = {
    f"{IF_X_TABLE}.1": "name",  # ifName
    f"{IF_X_TABLE}.6": "hc_in_octets",  # ifHCInOctets
    f"{IF_X_TABLE}.10": "hc_out_octets",  # ifHCOutOctets
    f"{IF_X_TABLE}.15": "high_speed",  # ifHighSpeed, Mbit/s
    f"{IF_TABLE}.2": "descr",  # ifDescr
    f"{IF_TABLE}.7": "admin",  # ifAdminStatus
    f"{IF_TABLE}.8": "oper",  # ifOperStatus
    f"{IF_TABLE}.10": "in_octets",  # ifInOctets
    f"{IF_TABLE}.16": "out_octets",  # ifOutOctets
    f"{IF_TABLE}.14": "in_errors",  # ifInErrors
    f"{IF_TABLE}.20": "out_errors",  # ifOutErrors
}
IF_SPEED: Final = f"{IF_TABLE}.5"  # ifSpeed, bit/s: walked only when ifHighSpeed gave nothing

_MAX_TAG: Final = 256


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


class SnmpSource:
    """Poll one device's sysUpTime and IF-MIB tables."""

    def __init__(
        self, config: SnmpConfig, client_factory: Callable[[SnmpTarget], SnmpClient] = PysnmpClient
    ) -> None:
        self.name = config.name
        self.config = config
        self._target = config.target()
        self._client_factory = client_factory
        self._client: SnmpClient | None = None
        self._state: State | None = None

    def __repr__(self) -> str:
        return f"SnmpSource({self.name!r}, {self._target.label})"

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

        columns: dict[str, dict[int, SnmpValue]] = {}
        failure: str | None = None
        for oid, role in COLUMNS.items():
            try:
                columns[role] = _by_index(await client.walk(oid), oid)
            except SnmpTimeout as exc:  # it stopped answering: each further column would wait as long
                failure = f"stopped answering during the poll: {exc.reason}"
                break
            except SnmpError as exc:
                failure = f"answered, but {oid} could not be read: {exc.reason}"
        if failure is None and not columns.get("high_speed"):
            try:
                columns["speed"] = _by_index(await client.walk(IF_SPEED), IF_SPEED)
            except SnmpError as exc:
                failure = f"answered, but {IF_SPEED} could not be read: {exc.reason}"
        self._enter("partial" if failure else "up", failure or "")

        device: dict[str, FieldValue] = {"up": True}
        ticks = _int(uptime)
        if ticks is not None:
            device["uptime_s"] = ticks / 100
        samples = [Sample("device", self._device_tags(), device, now_ns)]
        samples += self._interfaces(columns, now_ns)
        return samples

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

    def _interfaces(self, columns: dict[str, dict[int, SnmpValue]], now_ns: int) -> list[Sample]:
        """Return one ``interface`` sample per ifIndex seen in any column."""
        indexes = sorted({i for column in columns.values() for i in column})
        samples = []
        for i in indexes:
            row = {role: column[i] for role, column in columns.items() if i in column}
            name = _text(row.get("name")) or _text(row.get("descr")) or f"ifIndex.{i}"
            tags = {"device": self.name, "ifname": name}
            if name in self.config.links:
                tags["link"] = self.config.links[name]
            fields: dict[str, FieldValue] = {}
            for key, value in (
                ("oper_up", _status(row.get("oper"))),
                ("admin_up", _status(row.get("admin"))),
                ("in_octets", _first_int(row.get("hc_in_octets"), row.get("in_octets"))),
                ("out_octets", _first_int(row.get("hc_out_octets"), row.get("out_octets"))),
                ("in_errors", _int(row.get("in_errors"))),
                ("out_errors", _int(row.get("out_errors"))),
                ("speed_mbps", _first_int(row.get("high_speed"), _mbps(row.get("speed")))),
            ):
                if value is not None:
                    fields[key] = value
            samples.append(Sample("interface", tags, fields, now_ns))
        return samples

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


def _by_index(rows: list[tuple[str, SnmpValue]], column: str) -> dict[int, SnmpValue]:
    """Map the rows of one column by ifIndex (the single sub-identifier after the column OID)."""
    prefix = column + "."
    out: dict[int, SnmpValue] = {}
    for oid, value in rows:
        suffix = oid[len(prefix) :] if oid.startswith(prefix) else ""
        if suffix.isdigit():
            out[int(suffix)] = value
    return out


def _int(value: SnmpValue) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _first_int(*values: SnmpValue) -> int | None:
    return next((v for v in map(_int, values) if v is not None), None)


def _status(value: SnmpValue) -> bool | None:
    """Return True for up(1), False for any other status, None when absent."""
    number = _int(value)
    return None if number is None else number == 1


def _mbps(value: SnmpValue) -> int | None:
    """Return ifSpeed (bit/s) in Mbit/s, rounded as ifHighSpeed is."""
    number = _int(value)
    return None if number is None else round(number / 1_000_000)


def _text(value: SnmpValue) -> str:
    """Return an interface name as a tag value: decoded, without padding, at most 256 characters."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        return ""
    return value.strip().strip("\x00").strip()[:_MAX_TAG]
