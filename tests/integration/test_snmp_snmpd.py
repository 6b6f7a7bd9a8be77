"""SnmpSource and PysnmpClient against net-snmp's snmpd; expected values come from net-snmp's own tools."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.snmpclient import PysnmpClient, SnmpTarget, SnmpTimeout, SnmpValue
from agent.sources.snmp import SnmpConfig, SnmpSource
from tests import services
from tests.conftest import SNMP_V3_USER
from zonewatch import strict
from zonewatch.wire import Sample

pytestmark = pytest.mark.integration

NOW = 1_764_290_000_000_000_000
IF = "1.3.6.1.2.1.2.2.1"
IFX = "1.3.6.1.2.1.31.1.1.1"

_LINE = re.compile(r"^\.?(?P<oid>[0-9.]+) = (?:(?P<type>[A-Za-z0-9-]+): )?(?P<value>.*)$")


def net_snmp(tool: str, port: int, *oids: str) -> dict[str, int | str]:
    """Run a net-snmp tool with v2c and numeric output; return OID -> value (ints for numbers)."""
    argv = [services.require(tool), "-v2c", "-c", "public", "-On", "-Oe", "-t", "2", "-r", "1",
            f"127.0.0.1:{port}", *oids]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout
    values: dict[str, int | str] = {}
    for line in out.splitlines():
        match = _LINE.match(line)
        if match is None or match["type"] is None:
            continue
        kind, value = match["type"], match["value"]
        if kind == "STRING":
            values[match["oid"]] = value.strip('"')
        elif kind == "Timeticks":
            values[match["oid"]] = int(value.split(")")[0].lstrip("("))
        elif kind in ("INTEGER", "Counter32", "Counter64", "Gauge32"):
            values[match["oid"]] = int(value)
    return values


def column(values: dict[str, int | str], oid: str) -> dict[int, int | str]:
    """Return one column of a net-snmp walk by ifIndex."""
    return {int(k.rsplit(".", 1)[1]): v for k, v in values.items() if k.startswith(oid + ".")}


def walk_interfaces(port: int) -> dict[str, dict[int, int | str]]:
    cols = {"descr": f"{IF}.2", "admin": f"{IF}.7", "oper": f"{IF}.8", "name": f"{IFX}.1",
            "hc_in": f"{IFX}.6", "hc_out": f"{IFX}.10", "in_errors": f"{IF}.14", "out_errors": f"{IF}.20",
            "speed": f"{IFX}.15"}
    out = {}
    for role, oid in cols.items():
        out[role] = column(net_snmp("snmpbulkwalk", port, oid), oid)
    return out


def config(port: int, name: str = "bts-01", **keys: object) -> SnmpConfig:
    lines = ["type: snmp", f"name: {name}", "host: 127.0.0.1", f"port: {port}", "site: dv-site-3",
             "links: {lo: dv-loop-a}"]
    lines += [f"{key}: {value}" for key, value in keys.items()]
    return strict.load(SnmpConfig, "\n".join(lines) + "\n", "test.yaml")


def v2c(port: int, name: str = "bts-01", **keys: object) -> SnmpConfig:
    return config(port, name, version="v2c", community="public", **keys)


def v3(port: int, name: str = "bts-01", **keys: object) -> SnmpConfig:
    user, auth, priv = SNMP_V3_USER
    return config(port, name, **{"user": user, "auth_key": auth, "priv_key": priv, **keys})


async def collect_and_close(*sources: SnmpSource) -> list[list[Sample]]:
    try:
        return [await s.collect(NOW) for s in sources]
    finally:
        for s in sources:
            await s.close()


# ---------------------------------------------------------------------------------------------- live device


@pytest.mark.parametrize("make", [
    pytest.param(lambda port: v2c(port), id="v2c-getbulk"),
    pytest.param(lambda port: v3(port, max_repetitions=2), id="v3-authpriv-getbulk"),
    pytest.param(lambda port: v3(port, bulk="false"), id="v3-authpriv-getnext"),
])
def test_collect_matches_net_snmp(snmpd: services.Service, make: Callable[[int], SnmpConfig]) -> None:
    port = snmpd.port
    before = walk_interfaces(port)
    uptime_before = net_snmp("snmpget", port, "1.3.6.1.2.1.1.3.0")["1.3.6.1.2.1.1.3.0"]
    (samples,) = asyncio.run(collect_and_close(SnmpSource(make(port))))
    after = walk_interfaces(port)
    uptime_after = net_snmp("snmpget", port, "1.3.6.1.2.1.1.3.0")["1.3.6.1.2.1.1.3.0"]

    device, interfaces = samples[0], samples[1:]
    assert device.measurement == "device" and device.time_ns == NOW
    assert device.tags == {"device": "bts-01", "site": "dv-site-3"}
    assert device.fields["up"] is True
    assert int(uptime_before) / 100 <= device.fields["uptime_s"] <= int(uptime_after) / 100

    indexes = sorted(before["name"])
    assert indexes and sorted(after["name"]) == indexes
    assert [s.tags["ifname"] for s in interfaces] == [before["name"][i] for i in indexes]
    assert "lo" in [s.tags["ifname"] for s in interfaces]
    for i, sample in zip(indexes, interfaces, strict=True):
        name = before["name"][i]
        assert sample.measurement == "interface" and sample.time_ns == NOW
        link = {"link": "dv-loop-a"} if name == "lo" else {}
        assert sample.tags == {"device": "bts-01", "ifname": name, **link}
        f = sample.fields
        assert f["admin_up"] is (before["admin"][i] == 1) and before["admin"][i] == after["admin"][i]
        assert f["oper_up"] is (before["oper"][i] == 1)
        assert f["speed_mbps"] == before["speed"][i]
        for field, role in (("in_octets", "hc_in"), ("out_octets", "hc_out"), ("in_errors", "in_errors"),
                            ("out_errors", "out_errors")):
            low, high = before[role][i], after[role][i]
            assert isinstance(f[field], int) and not isinstance(f[field], bool)
            assert low <= f[field] <= high, f"{name} {field}: {f[field]} not in [{low}, {high}]"  # type: ignore[operator]


def test_client_walk_and_get_match_net_snmp(snmpd: services.Service) -> None:
    target = SnmpTarget("127.0.0.1", snmpd.port, "v2c", community="public", max_repetitions=2)

    async def main() -> tuple[list[tuple[str, SnmpValue]], dict[str, SnmpValue]]:
        client = PysnmpClient(target)
        try:
            return await client.walk(f"{IF}.2"), await client.get(["1.3.6.1.2.1.1.5.0", "1.3.6.1.2.1.1.99.0"])
        finally:
            client.close()

    walked, got = asyncio.run(main())
    expected = net_snmp("snmpbulkwalk", snmpd.port, f"{IF}.2")
    names = [(oid, value.decode()) for oid, value in walked if isinstance(value, bytes)]
    assert len(names) == len(walked) and names == list(expected.items())
    assert got == {"1.3.6.1.2.1.1.5.0": b"zw-test-snmpd", "1.3.6.1.2.1.1.99.0": None}


def test_v3_sha256_aes256_and_md5_des(tmp_path: Path) -> None:
    users = ('createUser zw256 SHA-256 "auth-pass-256" AES-256 "priv-pass-256"\nrouser zw256 priv\n'
             'createUser zwdes MD5 "auth-pass-md5" DES "priv-pass-des"\nrouser zwdes priv\n')
    svc = services.start_snmpd(tmp_path / "snmpd", extra_conf=users)
    try:
        strong = config(svc.port, "olt-1", user="zw256", auth_key="auth-pass-256", priv_key="priv-pass-256",
                        auth_protocol="SHA256", priv_protocol="AES256")
        legacy = config(svc.port, "ups-1", user="zwdes", auth_key="auth-pass-md5", priv_key="priv-pass-des",
                        auth_protocol="MD5", priv_protocol="DES")
        for samples in asyncio.run(collect_and_close(SnmpSource(strong), SnmpSource(legacy))):
            assert samples[0].fields["up"] is True
            assert len(samples) > 1
    finally:
        svc.stop()


# ---------------------------------------------------------------------------------------------- failures


@pytest.mark.parametrize("wrong", ["auth_key", "priv_key"])
def test_wrong_v3_key_gives_up_false_and_never_logs_a_key(
    snmpd: services.Service, wrong: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bad_key = "not-the-right-key-0987"
    source = SnmpSource(v3(snmpd.port, "bts-07", timeout="500ms", retries=0, **{wrong: bad_key}))
    (samples,) = asyncio.run(collect_and_close(source))
    assert samples == [Sample("device", {"device": "bts-07", "site": "dv-site-3"}, {"up": False}, NOW)]
    warnings = [r.getMessage() for r in caplog.records if r.name == "agent.sources.snmp"]
    assert len(warnings) == 1 and "bts-07" in warnings[0] and f"127.0.0.1:{snmpd.port}" in warnings[0]
    for secret in (bad_key, *SNMP_V3_USER[1:]):
        assert secret not in caplog.text


def test_dead_port_times_out_in_bounded_time_without_blocking_a_live_device(snmpd: services.Service) -> None:
    # A device that swallows requests (frozen agent, firewall drop): a socket that is bound but never answers.
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    dead_port = silent.getsockname()[1]
    timeout, retries = 1.0, 1
    dead = SnmpSource(v2c(dead_port, "bts-dead", timeout="1s", retries=retries))
    live = SnmpSource(v2c(snmpd.port, "bts-live"))

    async def timed(source: SnmpSource, start: float) -> tuple[list[Sample], float]:
        samples = await source.collect(NOW)
        return samples, time.monotonic() - start

    async def main() -> list[tuple[list[Sample], float]]:
        try:
            await live.collect(NOW)  # the engine is created once per process: keep that out of the timing
            start = time.monotonic()
            return list(await asyncio.gather(timed(dead, start), timed(live, start)))
        finally:
            await dead.close()
            await live.close()

    try:
        (dead_samples, dead_s), (live_samples, live_s) = asyncio.run(main())
    finally:
        silent.close()
    assert dead_samples == [Sample("device", {"device": "bts-dead", "site": "dv-site-3"}, {"up": False}, NOW)]
    expected = timeout * (retries + 1)
    assert 0.8 * expected <= dead_s <= expected + 0.5, dead_s
    assert live_samples[0].fields["up"] is True and len(live_samples) > 1
    assert live_s < dead_s / 2, (live_s, dead_s)


def test_client_timeout_names_the_target_only(snmpd: services.Service) -> None:
    target = SnmpTarget("127.0.0.1", snmpd.port, "v2c", community="wrong-community-55", timeout=0.3,
                        retries=0)

    async def main() -> str:
        client = PysnmpClient(target)
        try:
            await client.get(["1.3.6.1.2.1.1.3.0"])
        except SnmpTimeout as exc:
            return str(exc)
        finally:
            client.close()
        raise AssertionError("a wrong community must time out")

    message = asyncio.run(main())
    assert f"127.0.0.1:{snmpd.port}" in message and "wrong-community-55" not in message


def test_same_v3_user_with_other_keys_on_another_device_does_not_disturb(snmpd: services.Service) -> None:
    good = SnmpSource(v3(snmpd.port, "bts-good"))
    other = SnmpSource(v3(snmpd.port, "bts-other", auth_key="another-auth-key", timeout="500ms", retries=0))

    async def main() -> list[list[Sample]]:
        try:
            rounds = []
            for _ in range(3):
                rounds += await asyncio.gather(good.collect(NOW), other.collect(NOW))
            return rounds
        finally:
            await good.close()
            await other.close()

    rounds = asyncio.run(main())
    assert [samples[0].fields["up"] for samples in rounds] == [True, False] * 3
    assert all(len(samples) > 1 for samples in rounds[::2])


# ---------------------------------------------------------------------------------------------- profiles


def test_profiles_for_mibs_the_device_lacks_give_nothing_and_are_reported_not_failed(
    snmpd: services.Service, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="agent.sources.snmp")
    every = "[system, if_mib, entity_sensor, cisco_entity_sensor, juniper_dom, huawei_optical, ups_mib]"
    uptime_before = net_snmp("snmpget", snmpd.port, "1.3.6.1.2.1.1.3.0")["1.3.6.1.2.1.1.3.0"]
    (samples,) = asyncio.run(collect_and_close(SnmpSource(v2c(snmpd.port, profiles=every))))
    names = walk_interfaces(snmpd.port)["name"]
    assert [s.measurement for s in samples] == ["device"] + ["interface"] * len(names)
    assert samples[0].fields["uptime_s"] >= int(uptime_before) / 100
    # net-snmp has no sensor, DOM or UPS tables: empty walks, no failure; each silent profile is said once
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", f"snmp device bts-01 (127.0.0.1:{snmpd.port}): profile {name} read nothing (no rows, or no "
                    "usable value)") for name in ("entity_sensor", "cisco_entity_sensor", "juniper_dom",
                                                  "huawei_optical", "ups_mib")]
