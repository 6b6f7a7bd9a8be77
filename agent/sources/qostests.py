"""The tests a qos source runs: one config model per kind, their targets, and the sample fields each reports.

``agent.sources.qos`` holds the source (its config, schedule and state); it runs these tests through a
``agent.sources.qosbearer.Bearer`` and turns each measurement into its sample's fields here. Nothing here does I/O.

Samples (measurement ``qos``; tags carrier, modem, test, target; ``target`` is the name, ``host:port`` or the
URL's host, or the test's ``target`` key)::

    dns       success, time_ms (to the answer)
    tcp       success, time_ms (connect)
    http      success (2xx or 3xx), time_ms (access: DNS, connect, TLS, to the first response byte), connect_ms,
              tls_ms (https), status, bytes
    icmp/udp  success (any reply), loss_pct, rtt_ms (mean), jitter_ms (mean difference of consecutive round
              trips, two replies or more)
    download  success (every byte came), dropped (it began and did not finish), time_ms (access), down_mbps
              (bytes x 8 / the time from the request to the last byte; completed only), bytes
    upload    the same with up_mbps
"""

from __future__ import annotations

import ipaddress
import re
import statistics
from collections.abc import Sequence
from typing import Annotated, Any, Final, Literal, Union

from pydantic import BeforeValidator, Field

from agent.sources.qosnet import Access, Transfer, url_host_port
from zonewatch import strict
from zonewatch.wire import FieldValue

__all__ = ["CORE", "LONG", "ByteSize", "TestConfig", "DnsTest", "TcpTest", "HttpTest", "IcmpTest", "UdpTest",
           "DownloadTest", "UploadTest", "parse_bytes", "is_ip", "target_tag", "host_of", "names_to_resolve",
           "rounded_ms", "echo_fields", "access_fields", "transfer_fields"]

CORE: Final = "core"
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMG]i?B|kB|B)?\s*$")
_UNITS: Final = {None: 1, "B": 1, "kB": 10**3, "KB": 10**3, "MB": 10**6, "GB": 10**9,
                 "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}


def parse_bytes(value: Any) -> int:
    """Return a byte count from an integer or a size with a unit: ``10MB`` (10^6), ``2GiB`` (2^30), ``512kB``."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 10MB or 2GiB")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    m = _SIZE.match(str(value))
    if m is None:
        raise ValueError(f"expected a size such as 10MB, 500kB or 2GiB (MB = 10^6 bytes, MiB = 2^20), got {value!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


ByteSize = Annotated[int, BeforeValidator(parse_bytes)]


def is_ip(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


def _host(value: str) -> str:
    if value == CORE or is_ip(value) or re.match(r"^(?=.{1,253}$)[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.?$", value):
        return value
    raise ValueError(f"expected a host name, an IPv4 address or {CORE!r}, got {value!r}")


def _url(value: str) -> str:
    host, _ = url_host_port(value)
    if not re.match(r"^https?://", value) or not host or host == CORE:
        raise ValueError(f"expected an http:// or https:// URL with a host, got {value!r}")
    _host(host)
    return value


class _Test(strict.Strict):
    every: strict.Duration | None = Field(default=None, gt=0)   # default: the source's short_every / long_every
    target: str | None = Field(default=None, min_length=1, max_length=256)   # the tag; default from the test


class DnsTest(_Test):
    """Resolve a name (A) through the bearer's DNS servers."""

    test: Literal["dns"]
    name: Annotated[str, BeforeValidator(_host)]


class TcpTest(_Test):
    """Open a TCP connection."""

    test: Literal["tcp"]
    host: Annotated[str, BeforeValidator(_host)]
    port: int = Field(ge=1, le=65535)


class HttpTest(_Test):
    """GET a page: service access and its time."""

    test: Literal["http"]
    url: Annotated[str, BeforeValidator(_url)]
    max_bytes: ByteSize = 256 * 1024


class IcmpTest(_Test):
    """ICMP echo: round trip, jitter, loss."""

    test: Literal["icmp"]
    host: Annotated[str, BeforeValidator(_host)]
    count: int = Field(default=10, ge=1, le=100)
    spacing: strict.Duration = Field(default=0.2, gt=0)


class UdpTest(_Test):
    """UDP echo (RFC 862) to the zone's test server: round trip, jitter, loss."""

    test: Literal["udp"]
    host: Annotated[str, BeforeValidator(_host)]
    port: int = Field(default=7, ge=1, le=65535)
    count: int = Field(default=20, ge=1, le=1000)
    spacing: strict.Duration = Field(default=0.05, gt=0)


class _TransferTest(_Test):
    url: Annotated[str, BeforeValidator(_url)]
    bytes: ByteSize = Field(gt=0)
    timeout: strict.Duration = Field(default=45.0, gt=0)   # the whole transfer; past it the transfer is dropped
    stall: strict.Duration = Field(default=10.0, gt=0)     # no byte moving for this long: dropped


class DownloadTest(_TransferTest):
    """Download a file of a set size from the zone's server."""

    test: Literal["download"]


class UploadTest(_TransferTest):
    """Upload a set size to the zone's server (HTTP POST)."""

    test: Literal["upload"]


TestConfig = Annotated[Union[DnsTest, TcpTest, HttpTest, IcmpTest, UdpTest, DownloadTest, UploadTest],
                       Field(discriminator="test")]
LONG: Final = ("download", "upload")

def target_tag(test: Any) -> str:
    """Return the ``target`` tag of a test."""
    if test.target is not None:
        return str(test.target)
    if isinstance(test, DnsTest):
        return test.name
    if isinstance(test, (TcpTest, UdpTest)):
        return f"{test.host}:{test.port}"
    if isinstance(test, IcmpTest):
        return test.host
    return url_host_port(test.url)[0]


def host_of(test: Any) -> str:
    """Return the host a test reaches (for dns: the name it resolves)."""
    if isinstance(test, DnsTest):
        return test.name
    if isinstance(test, (TcpTest, IcmpTest, UdpTest)):
        return test.host
    return url_host_port(test.url)[0]


def names_to_resolve(tests: Sequence[Any]) -> set[str]:
    """Return the names ``tests`` need resolved (not addresses, not ``core``)."""
    return {h for h in map(host_of, tests) if h != CORE and not is_ip(h)}

def rounded_ms(value: float) -> float:
    return round(max(0.0, value), 3)


def echo_fields(rtts: Sequence[float | None], count: int) -> dict[str, FieldValue]:
    got = [r for r in rtts if r is not None]
    fields: dict[str, FieldValue] = {"success": bool(got), "loss_pct": round(100.0 * (count - len(got)) / count, 3)}
    if got:
        fields["rtt_ms"] = rounded_ms(statistics.fmean(got))
    if len(got) >= 2:
        fields["jitter_ms"] = rounded_ms(statistics.fmean(abs(b - a) for a, b in zip(got, got[1:], strict=False)))
    return fields


def access_fields(got: Access, lookup_ms: float, http: bool) -> dict[str, FieldValue]:
    fields: dict[str, FieldValue] = {"success": got.ok}
    if got.ok and got.ms is not None:
        fields["time_ms"] = rounded_ms(lookup_ms + got.ms)
    if http:
        if got.connect_ms is not None:
            fields["connect_ms"] = rounded_ms(got.connect_ms)
        if got.tls_ms is not None:
            fields["tls_ms"] = rounded_ms(got.tls_ms)
        if got.status is not None:
            fields["status"] = got.status
        fields["bytes"] = got.bytes
    return fields


def transfer_fields(moved: Transfer, lookup_ms: float, speed: str) -> dict[str, FieldValue]:
    fields: dict[str, FieldValue] = {"success": moved.completed, "bytes": moved.bytes}
    if moved.started:
        fields["dropped"] = not moved.completed
        if moved.first_ms is not None:
            fields["time_ms"] = rounded_ms(lookup_ms + moved.first_ms)
    if moved.completed and moved.seconds is not None and moved.seconds > 0:
        fields[speed] = round(moved.bytes * 8 / moved.seconds / 1e6, 3)
    return fields
