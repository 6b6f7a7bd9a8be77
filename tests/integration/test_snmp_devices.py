"""SnmpSource's profiles against snmpsim serving real device walks (PyPI snmpsim-data).

The walks are trimmed to the subtrees the profiles read (system, IF-MIB, ENTITY-MIB, the sensor and
optical tables, UPS-MIB) so that snmpsim indexes them in about a second; the full Huawei S12704 walk
(657k lines) takes snmpsim about 30 s to index. Expected values are computed here from the walk files,
by the rules the profiles document, never by running our own code.
"""

from __future__ import annotations

import asyncio
import bz2
import math
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest

from agent.sources.snmp import SnmpConfig, SnmpSource
from tests import services
from tests.integration.snmppoll import poll_checked
from zonewatch import strict
from zonewatch.wire import Sample

pytestmark = pytest.mark.integration

NOW = 1_764_290_000_000_000_000

# community (= data file name) -> walk file in snmpsim-data's data folder
WALKS = {
    "juniper": "network/router/juniper-mx960-16-1r6-7-a.snmprec.bz2",
    "c3750": "network/switch/cisco-c3750.snmprec.bz2",
    "c6509": "network/appliance/cisco-unknown-01.snmprec.bz2",
    "hwne": "network/router/huawei-unknown-002.snmprec.bz2",
    "arista": "cloud/arista-dcs-7150s-52-cl.snmprec.bz2",
    "s5720": "network/router/huawei-s5720.snmprec.bz2",
    "s12704": "network/switch/huawei-s12704.snmprec.bz2",
    "eaton": "UPS/eaton-93e-80.snmprec.bz2",
    "gse200m": "UPS/huawei-gse200m.snmprec.bz2",
    "apc": "UPS/apc-7902b.snmprec",
}
SUBTREES = (
    "1.3.6.1.2.1.1.",  # system
    "1.3.6.1.2.1.2.2.1.",  # ifTable
    "1.3.6.1.2.1.31.1.1.1.",  # ifXTable
    "1.3.6.1.2.1.47.1.1.1.1.",  # entPhysicalTable
    "1.3.6.1.2.1.47.1.3.2.1.",  # entAliasMappingTable: entity -> ifIndex
    "1.3.6.1.2.1.99.1.1.1.",  # entPhySensorTable
    "1.3.6.1.4.1.9.9.91.1.1.1.1.",  # entSensorValueTable (Cisco)
    "1.3.6.1.4.1.2636.3.60.1.1.1.1.",  # jnxDomCurrentTable
    "1.3.6.1.4.1.2011.5.25.31.1.1.3.1.",  # hwOpticalModuleInfoTable
    "1.3.6.1.2.1.33.",  # UPS-MIB
)

SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
IF_DESCR, IF_NAME = "1.3.6.1.2.1.2.2.1.2", "1.3.6.1.2.1.31.1.1.1.1"
ENT_DESCR, ENT_CONTAINED_IN, ENT_CLASS, ENT_NAME = (f"1.3.6.1.2.1.47.1.1.1.1.{c}" for c in (2, 4, 5, 7))
ENT_ALIAS, IF_OPER = "1.3.6.1.2.1.47.1.3.2.1.2", "1.3.6.1.2.1.2.2.1.8"  # entAliasMappingIdentifier, ifOperStatus

Walk = dict[str, tuple[str, str]]  # OID -> (type tag, value text) as in the .snmprec line


def read_walk(path: Path) -> Walk:
    """Return the lines of an .snmprec file as OID -> (tag, value)."""
    walk: Walk = {}
    for line in path.read_text(errors="replace").splitlines():
        oid, tag, value = line.split("|", 2)
        walk[oid] = (tag, value)
    return walk


def number(walk: Walk, oid: str) -> int | None:
    tag, value = walk.get(oid, ("", ""))
    return int(value) if tag in ("2", "65", "66", "67", "70") else None


def must(walk: Walk, oid: str) -> int:
    value = number(walk, oid)
    assert value is not None, f"{oid} is not a number in the walk"
    return value


def text(walk: Walk, oid: str) -> str:
    tag, value = walk.get(oid, ("", ""))
    raw = bytes.fromhex(value) if tag == "4x" else value.encode() if tag == "4" else b""
    return raw.decode(errors="replace").strip().strip("\x00").strip()


def column(walk: Walk, oid: str) -> list[str]:
    """Return the indexes of a column, in the file's (numeric OID) order."""
    prefix = oid + "."
    return [o[len(prefix) :] for o in walk if o.startswith(prefix)]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Write the trimmed walks into a data folder, one ``<community>.snmprec`` each."""
    data = tmp_path_factory.mktemp("snmpsim") / "data"
    data.mkdir()
    source = resources.files("snmpsim_data") / "data"
    for community, name in WALKS.items():
        with resources.as_file(source / name) as path:
            opener = bz2.open if name.endswith(".bz2") else open
            with opener(path, "rt", encoding="utf-8", errors="replace") as lines:
                kept = [line for line in lines if line.startswith(SUBTREES)]
        (data / f"{community}.snmprec").write_text("".join(kept))
    return data


@pytest.fixture(scope="module")
def walks(data_dir: Path) -> dict[str, Walk]:
    """Return the trimmed walks by community, as snmpsim serves them."""
    return {community: read_walk(data_dir / f"{community}.snmprec") for community in WALKS}


@pytest.fixture(scope="module")
def simulator(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.Service]:
    svc = services.start_snmpsim(tmp_path_factory.mktemp("snmpsim-run"), data_dir)
    yield svc
    svc.stop()


def device(port: int, community: str, profiles: str, **keys: str) -> SnmpConfig:
    lines = ["type: snmp", f"name: {community}", "host: 127.0.0.1", f"port: {port}", "version: v2c",
             f"community: {community}", "site: dv-site-1", f"profiles: [{profiles}]"]
    lines += [f"{key}: {value}" for key, value in keys.items()]
    return strict.load(SnmpConfig, "\n".join(lines) + "\n", "test.yaml")


def poll(config: SnmpConfig) -> list[Sample]:
    """Poll once; every sample must be within the measurement catalogue (names, kinds, physical bounds)."""
    return poll_checked(config, NOW)


def of(samples: list[Sample], measurement: str) -> list[Sample]:
    return [s for s in samples if s.measurement == measurement]


def optical(samples: list[Sample]) -> dict[str, dict[str, object]]:
    """Return the optical samples as port -> fields; ports must be unique."""
    out = {s.tags["port"]: dict(s.fields) for s in of(samples, "optical")}
    assert len(out) == len(of(samples, "optical"))
    for s in of(samples, "optical"):
        assert set(s.tags) == {"device", "port"} and s.time_ns == NOW
    return out


def alias_ifindex(walk: Walk, entity: int | None) -> str | None:
    """Return the ifIndex an entity's alias mapping (entAliasMappingIdentifier at its lowest
    entAliasLogicalIndexOrZero: 0 on most devices, 1 on the Huawei router) points at."""
    logical = sorted(int(i) for i in column(walk, f"{ENT_ALIAS}.{entity}"))
    tag, value = walk.get(f"{ENT_ALIAS}.{entity}.{logical[0]}", ("", "")) if logical else ("", "")
    prefix = "1.3.6.1.2.1.2.2.1.1."
    return value[len(prefix):] if tag == "6" and value.startswith(prefix) else None


def dbm_from_watts(value: int, scale: int, precision: int) -> float:
    """RFC 3433: watts = value x 10^(3 x (scale - 9) - precision); dBm = 10 log10(mW), to 0.01 dB."""
    watts = value * 10.0 ** (3 * (scale - 9) - precision)
    return round(10 * math.log10(watts * 1000), 2)


# ---------------------------------------------------------------------------------------------- optical


def test_juniper_mx960_dom(simulator: services.Service, walks: dict[str, Walk]) -> None:
    walk = walks["juniper"]
    samples = poll(device(simulator.port, "juniper", "system, if_mib, juniper_dom"))

    # the rule: 0.01 dBm; a row with Rx, Tx and temperature all 0 has no DOM; 0 on a port that is not up
    # (ifOperStatus != 1) is a dark receiver (or a laser off), and -40 dBm or less is the floor: no reading
    dom = "1.3.6.1.4.1.2636.3.60.1.1.1.1"
    expected: dict[str, dict[str, object]] = {}
    dark = 0
    for index in column(walk, f"{dom}.5"):
        rx, tx, temp = (number(walk, f"{dom}.{c}.{index}") for c in (5, 7, 8))
        if rx == tx == temp == 0:
            continue
        up = number(walk, f"{IF_OPER}.{index}") == 1
        fields: dict[str, object] = {}
        for name, raw in (("tx_dbm", tx), ("rx_dbm", rx)):
            if raw is not None and (raw != 0 or up) and raw > -4000:
                fields[name] = raw / 100
        dark += rx == 0 and not up
        expected[text(walk, f"{IF_NAME}.{index}")] = fields
    assert len(expected) >= 30 and dark >= 2  # xe-0/2/0 and others: Rx 0, Tx lit, port down
    assert optical(samples) == expected
    assert optical(samples)["ge-0/0/1"] == {"rx_dbm": -8.65, "tx_dbm": -7.12}  # the -865 of the walk

    (dev,) = of(samples, "device")
    assert dev.fields == {"up": True, "uptime_s": must(walk, SYS_UPTIME) / 100}
    names = [text(walk, f"{IF_NAME}.{i}") for i in column(walk, IF_NAME)]
    assert [s.tags["ifname"] for s in of(samples, "interface")] == names


def test_cisco_c3750_dbm_sensors(simulator: services.Service, walks: dict[str, Walk]) -> None:
    walk = walks["c3750"]
    samples = poll(device(simulator.port, "c3750", "system, cisco_entity_sensor"))

    # the rule: type dBm(14); value x 10^(3 x (scale - 9) - precision); the port is the interface the
    # containing port entity's alias mapping points at, by its ifName: the entity "GigabitEthernet1/0/1" is
    # the interface "Gi1/0/1", the name the same switch reports in IF-MIB (and so in the inventory's links)
    sensor = "1.3.6.1.4.1.9.9.91.1.1.1.1"
    expected: dict[str, dict[str, object]] = {}
    for index in column(walk, f"{sensor}.1"):
        if number(walk, f"{sensor}.1.{index}") != 14:
            continue
        value, scale, precision = (must(walk, f"{sensor}.{c}.{index}") for c in (4, 2, 3))
        dbm = round(value * 10.0 ** (3 * (scale - 9) - precision), 2)
        parent = number(walk, f"{ENT_CONTAINED_IN}.{index}")
        assert number(walk, f"{ENT_CLASS}.{parent}") == 10
        name = text(walk, f"{ENT_NAME}.{index}")
        direction = "rx_dbm" if "Receive" in name else "tx_dbm" if "Transmit" in name else None
        assert direction is not None, name
        expected.setdefault(text(walk, f"{IF_NAME}.{alias_ifindex(walk, parent)}"), {})[direction] = dbm
    assert expected == {"Gi1/0/1": {"rx_dbm": -6.0, "tx_dbm": -6.0}, "Gi1/0/6": {"rx_dbm": -5.0, "tx_dbm": -5.1}}
    assert text(walk, f"{ENT_NAME}.1018") == "GigabitEthernet1/0/1" and alias_ifindex(walk, 1018) == "10101"
    assert optical(samples) == expected
    assert of(samples, "device")[0].fields["uptime_s"] == must(walk, SYS_UPTIME) / 100


def test_arista_entity_sensor_watts_to_dbm(simulator: services.Service, walks: dict[str, Walk]) -> None:
    walk = walks["arista"]
    samples = poll(device(simulator.port, "arista", "system, entity_sensor"))

    # the rule: watts(6) sensors; RX/TX from the description; this walk has no alias mapping, so the port is
    # the interface named in the containing lane entity's description ("Lane 0 for Xcvr for Ethernet50")
    sensor = "1.3.6.1.2.1.99.1.1.1"
    expected: dict[str, dict[str, object]] = {}
    for index in column(walk, f"{sensor}.1"):
        if number(walk, f"{sensor}.1.{index}") != 6:
            continue
        value, scale, precision = (must(walk, f"{sensor}.{c}.{index}") for c in (4, 2, 3))
        descr = text(walk, f"{ENT_DESCR}.{index}")
        direction = "rx_dbm" if " RX " in descr else "tx_dbm" if " TX " in descr else None
        assert direction is not None, descr
        parent = number(walk, f"{ENT_CONTAINED_IN}.{index}")
        lane = text(walk, f"{ENT_DESCR}.{parent}")
        assert lane.startswith("Lane 0 for Xcvr for "), lane
        expected.setdefault(lane.removeprefix("Lane 0 for Xcvr for "), {})[direction] = \
            dbm_from_watts(value, scale, precision)
    assert len(expected) == 9
    assert not any(o.startswith(f"{ENT_ALIAS}.") for o in walk)
    names = {text(walk, f"{IF_NAME}.{i}") for i in column(walk, IF_NAME)}
    assert set(expected) <= names  # the same names as the switch's interfaces
    assert optical(samples) == expected
    # DOM RX Power Sensor for Ethernet50 reads 4 x 10^-7 W: a nearly dark receiver, -33.98 dBm (above the
    # -40 dBm floor: measured, and kept)
    assert optical(samples)["Ethernet50"]["rx_dbm"] == -33.98


@pytest.mark.parametrize("unit", ["auto", "microwatt"])
def test_huawei_s12704_optics_in_microwatts(simulator: services.Service, walks: dict[str, Walk], unit: str) -> None:
    walk = walks["s12704"]
    samples = poll(device(simulator.port, "s12704", "system, huawei_optical", optical_unit=unit))

    # the rule: this firmware reports uW (no negative reading but -1); -1 is an empty cage; 0 uW is no light
    table = "1.3.6.1.4.1.2011.5.25.31.1.1.3.1"
    readings = [number(walk, f"{table}.{c}.{i}") for c in (8, 9) for i in column(walk, f"{table}.8")]
    assert all(r is not None and r >= -1 for r in readings) and max(r or 0 for r in readings) > 0
    expected: dict[str, dict[str, object]] = {}
    for index in column(walk, f"{table}.8"):
        fields = {}
        for name, c in (("rx_dbm", 8), ("tx_dbm", 9)):
            microwatts = number(walk, f"{table}.{c}.{index}")
            if microwatts is not None and microwatts > 0:
                fields[name] = round(10 * math.log10(microwatts / 1000), 2)
        if fields:
            expected[text(walk, f"{ENT_NAME}.{index}")] = fields
    assert len(expected) == 13
    assert optical(samples) == expected
    assert optical(samples)["XGigabitEthernet2/0/9"] == {"tx_dbm": round(10 * math.log10(535 / 1000), 2)}


def test_huawei_s12704_forced_to_hundredths_of_dbm(simulator: services.Service, walks: dict[str, Walk]) -> None:
    samples = poll(device(simulator.port, "s12704", "huawei_optical", optical_unit="dbm_hundredths"))
    rx = number(walks["s12704"], "1.3.6.1.4.1.2011.5.25.31.1.1.3.1.8.67747854")
    assert rx == 331
    assert optical(samples)["XGigabitEthernet2/0/0"]["rx_dbm"] == rx / 100  # what the setting asks for


def test_huawei_s5720_empty_cages_give_no_optical_sample(simulator: services.Service,
                                                         walks: dict[str, Walk]) -> None:
    walk = walks["s5720"]
    samples = poll(device(simulator.port, "s5720", "system, if_mib, huawei_optical"))
    table = "1.3.6.1.4.1.2011.5.25.31.1.1.3.1"
    assert {number(walk, f"{table}.{c}.{i}") for c in (8, 9) for i in column(walk, f"{table}.8")} == {-1}
    assert of(samples, "optical") == []
    names = [text(walk, f"{IF_NAME}.{i}") for i in column(walk, IF_NAME)]
    assert "GigabitEthernet0/0/1" in names
    assert [s.tags["ifname"] for s in of(samples, "interface")] == names


def test_cisco_c6509_sensors_in_ports_mapped_to_interfaces(simulator: services.Service,
                                                           walks: dict[str, Walk]) -> None:
    walk = walks["c6509"]
    samples = poll(device(simulator.port, "c6509", "cisco_entity_sensor"))

    # the rule: dBm(14) sensors "Te3/N Transmit/Receive Power Sensor" sit in the port entity "Te3/N" (class 10),
    # whose alias mapping points at the interface of the same name; every port is up; value x 10^-precision
    sensor = "1.3.6.1.4.1.9.9.91.1.1.1.1"
    expected: dict[str, dict[str, object]] = {}
    for index in column(walk, f"{sensor}.1"):
        if number(walk, f"{sensor}.1.{index}") != 14:
            continue
        value, scale, precision = (must(walk, f"{sensor}.{c}.{index}") for c in (4, 2, 3))
        parent = number(walk, f"{ENT_CONTAINED_IN}.{index}")
        ifindex = alias_ifindex(walk, parent)
        assert number(walk, f"{ENT_CLASS}.{parent}") == 10 and number(walk, f"{IF_OPER}.{ifindex}") == 1
        name = text(walk, f"{ENT_NAME}.{index}")
        direction = "rx_dbm" if "Receive" in name else "tx_dbm"
        expected.setdefault(text(walk, f"{IF_NAME}.{ifindex}"), {})[direction] = \
            round(value * 10.0 ** (3 * (scale - 9) - precision), 2)
    assert len(expected) == 11 and expected["Te3/1"] == {"tx_dbm": -3.2, "rx_dbm": -2.6}
    assert optical(samples) == expected


def test_huawei_router_hundredths_of_dbm_with_a_dark_port(simulator: services.Service,
                                                          walks: dict[str, Walk]) -> None:
    walk = walks["hwne"]
    samples = poll(device(simulator.port, "hwne", "huawei_optical"))

    # the rule: this firmware reports 0.01 dBm (negative readings); the port is the alias mapping's ifName
    # (this router maps its ports under logical index 1, not 0);
    # -1 is an empty cage; 0 on a port that is not up is a dark port; -40 dBm or less is the floor
    table = "1.3.6.1.4.1.2011.5.25.31.1.1.3.1"
    expected: dict[str, dict[str, object]] = {}
    dark = []
    for index in column(walk, f"{table}.8"):
        ifindex = alias_ifindex(walk, int(index))
        up = number(walk, f"{IF_OPER}.{ifindex}") == 1
        fields = {}
        for name, c in (("rx_dbm", 8), ("tx_dbm", 9)):
            raw = number(walk, f"{table}.{c}.{index}")
            if raw is not None and raw not in (-1, 2147483647) and (raw != 0 or up) and raw > -4000:
                fields[name] = raw / 100
        port = text(walk, f"{IF_NAME}.{ifindex}")
        if fields:
            expected[port] = fields
        elif not up:
            dark.append(port)
    assert "GigabitEthernet4/0/0" in dark  # Rx 0, Tx 0 on a port that is down: 0 dBm would be a lie
    assert expected["GigabitEthernet4/0/1"] == {"rx_dbm": -8.01, "tx_dbm": -2.27}
    assert optical(samples) == expected


# ---------------------------------------------------------------------------------------------- UPS


UPS = "1.3.6.1.2.1.33.1"


def test_eaton_93e_on_mains(simulator: services.Service, walks: dict[str, Walk]) -> None:
    walk = walks["eaton"]
    samples = poll(device(simulator.port, "eaton", "system, ups_mib"))
    assert number(walk, f"{UPS}.2.3.0") == 1092 and number(walk, f"{UPS}.4.1.0") == 3
    (power,) = of(samples, "power")
    assert power.tags == {"device": "eaton", "site": "dv-site-1"}
    assert power.fields == {
        "on_battery": number(walk, f"{UPS}.4.1.0") == 5 or (number(walk, f"{UPS}.2.2.0") or 0) > 0,
        "battery_low": number(walk, f"{UPS}.2.1.0") in (3, 4),
        "battery_minutes": number(walk, f"{UPS}.2.3.0"),
        "battery_pct": number(walk, f"{UPS}.2.4.0"),
        "seconds_on_battery": number(walk, f"{UPS}.2.2.0"),
        # the inverter rule: no low transfer point (0), so input line 1 (227 V) above 187 V means mains present
        "mains_present": True, "inverter_mode": False, "on_bypass": False,
    }
    assert number(walk, f"{UPS}.3.3.1.3.1") == 227 and number(walk, f"{UPS}.9.9.0") == 0
    assert power.fields["on_battery"] is False and power.fields["battery_minutes"] == 1092


def test_huawei_gse200m_unsupported_values_are_missing(simulator: services.Service,
                                                       walks: dict[str, Walk]) -> None:
    walk = walks["gse200m"]
    samples = poll(device(simulator.port, "gse200m", "system, ups_mib"))
    assert number(walk, f"{UPS}.2.3.0") == -1 and number(walk, f"{UPS}.2.4.0") == -1
    (power,) = of(samples, "power")
    assert "battery_minutes" not in power.fields and "battery_pct" not in power.fields
    # its input voltage 2369 is in 0.1 V, not the RMS volts of RFC 1628: no mains evidence either way
    assert number(walk, f"{UPS}.3.3.1.3.1") == 2369
    assert power.fields == {"on_battery": False, "battery_low": number(walk, f"{UPS}.2.1.0") in (3, 4),
                            "seconds_on_battery": number(walk, f"{UPS}.2.2.0"), "inverter_mode": False,
                            "on_bypass": False}


def test_apc_without_ups_mib_gives_no_power_sample(simulator: services.Service, walks: dict[str, Walk]) -> None:
    assert not any(oid.startswith(f"{UPS}.") for oid in walks["apc"])
    samples = poll(device(simulator.port, "apc", "system, ups_mib"))
    assert [s.measurement for s in samples] == ["device"]
    assert samples[0].fields["up"] is True


# ---------------------------------------------------------------------------------------------- reboots


def test_sysuptime_going_back_after_a_restart_is_a_reboot(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "bts.snmprec").write_text(f"{SYS_UPTIME}|67|9000000\n")
    svc = services.start_snmpsim(tmp_path / "run1", data)
    config = device(svc.port, "bts", "system")

    async def main() -> list[list[Sample]]:
        source = SnmpSource(config)
        try:
            first = await source.collect(NOW)
            svc.stop()  # the device reboots: its uptime starts again
            (data / "bts.snmprec").write_text(f"{SYS_UPTIME}|67|1500\n")
            again = services.start_snmpsim(tmp_path / "run2", data, port=svc.port)
            try:
                return [first, await source.collect(NOW + 60 * 10**9), await source.collect(NOW + 120 * 10**9)]
            finally:
                again.stop()
        finally:
            await source.close()
            svc.stop()

    first, rebooted, after = asyncio.run(main())
    assert first[0].fields == {"up": True, "uptime_s": 90000.0}
    assert rebooted[0].fields == {"up": True, "uptime_s": 15.0, "rebooted": True}
    assert after[0].fields == {"up": True, "uptime_s": 15.0}


# ---------------------------------------------------------------------------------------------- isolation


def test_a_slow_device_does_not_delay_another(tmp_path: Path) -> None:
    # snmpsim's delay variation sleeps in the responder, so the slow device gets a process of its own
    wait_ms = 1500
    slow_data, fast_data = tmp_path / "slow-data", tmp_path / "fast-data"
    slow_data.mkdir()
    fast_data.mkdir()
    oper_up = "1.3.6.1.2.1.2.2.1.8.1|2|1\n"
    (slow_data / "slow.snmprec").write_text(
        f"{SYS_UPTIME}|67|4200\n{IF_DESCR}.1|4:delay|value=ge-0/0/1,wait={wait_ms}\n{oper_up}")
    (fast_data / "fast.snmprec").write_text(f"{SYS_UPTIME}|67|4200\n{IF_DESCR}.1|4|ge-0/0/1\n{oper_up}")
    slow_svc = services.start_snmpsim(tmp_path / "slow", slow_data)
    try:
        fast_svc = services.start_snmpsim(tmp_path / "fast", fast_data)
        try:
            slow = SnmpSource(device(slow_svc.port, "slow", "system, if_mib", timeout="5s", retries="0"))
            fast = SnmpSource(device(fast_svc.port, "fast", "system, if_mib"))

            async def timed(source: SnmpSource, start: float) -> tuple[list[Sample], float]:
                samples = await source.collect(NOW)
                return samples, time.monotonic() - start

            async def main() -> list[tuple[list[Sample], float]]:
                try:
                    await fast.collect(NOW)  # the engine is created once per process: keep that out of the timing
                    start = time.monotonic()
                    return list(await asyncio.gather(timed(slow, start), timed(fast, start)))
                finally:
                    await slow.close()
                    await fast.close()

            (slow_samples, slow_s), (fast_samples, fast_s) = asyncio.run(main())
        finally:
            fast_svc.stop()
    finally:
        slow_svc.stop()
    for samples, name in ((slow_samples, "slow"), (fast_samples, "fast")):
        assert samples == [
            Sample("device", {"device": name, "site": "dv-site-1"}, {"up": True, "uptime_s": 42.0}, NOW),
            Sample("interface", {"device": name, "ifname": "ge-0/0/1"}, {"oper_up": True}, NOW),
        ]
    assert slow_s >= 0.9 * wait_ms / 1000, slow_s
    assert fast_s < slow_s / 3, (fast_s, slow_s)
