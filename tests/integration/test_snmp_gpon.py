"""The GPON OLT profiles (huawei_gpon, zte_gpon) against snmpsim serving fixtures written from the vendors' MIBs.

The fixtures (testdata/snmprec/<model>.snmprec) were written by hand from the MIB definitions: HUAWEI-XPON-MIB
(hwGponOltOpticsDdmInfoTable, hwGponDeviceOntControlInfoTable, hwGponDeviceOntOpticalDdmInfoTable) and the ZXAN
MIBs (ZTE-AN-OPTICAL-MODULE-MIB zxAnOpticalModuleInfoTable, ZTE-AN-PON-BASE-MIB zxAnPonRxOpticalPowerTable).
Every expected value below was worked out by hand from the raw value in the fixture and the unit the MIB gives
(the working is in the comments), never by running our own code.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.sources.snmp import SnmpConfig
from tests import services
from tests.integration.snmppoll import poll_checked
from zonewatch import strict
from zonewatch.wire import Sample

pytestmark = pytest.mark.integration

NOW = 1_764_290_000_000_000_000
FIXTURES = Path(__file__).parent / "testdata" / "snmprec"
GPON = ("huawei-ma5800", "huawei-ma5600t", "zte-c320", "zte-c600")


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.Service]:
    data = tmp_path_factory.mktemp("gpon") / "data"
    data.mkdir()
    for name in GPON:  # only these: snmpsim indexes every file of its folder
        (data / f"{name}.snmprec").write_text((FIXTURES / f"{name}.snmprec").read_text())
    svc = services.start_snmpsim(tmp_path_factory.mktemp("gpon-run"), data)
    try:
        yield svc
    finally:
        svc.stop()


def poll(port: int, community: str, profiles: str) -> list[Sample]:
    """Poll once; every sample must be within the measurement catalogue (names, kinds, physical bounds)."""
    config = strict.load(SnmpConfig, "\n".join([
        "type: snmp", f"name: {community}", "host: 127.0.0.1", f"port: {port}", "version: v2c",
        f"community: {community}", f"profiles: [{profiles}]"]) + "\n", "test.yaml")
    samples = poll_checked(config, NOW)
    assert all(s.time_ns == NOW for s in samples), [s for s in samples if s.time_ns != NOW]
    return samples


def by(samples: list[Sample], measurement: str, *keys: str) -> dict[tuple[str, ...], dict[str, object]]:
    """Return one measurement's samples as (tag values...) -> fields; the keys must be unique."""
    chosen = [s for s in samples if s.measurement == measurement]
    out: dict[tuple[str, ...], dict[str, object]] = {tuple(s.tags[k] for k in keys): dict(s.fields) for s in chosen}
    assert len(out) == len(chosen)
    for s in chosen:
        assert set(s.tags) == {"device", *keys}
    return out


def test_huawei_ma5800(simulator: services.Service) -> None:
    samples = poll(simulator.port, "huawei-ma5800", "system, huawei_gpon")
    assert samples[0].fields == {"up": True, "uptime_s": 812345.0}  # sysUpTime 81234500 ticks

    # hwGponOltOpticsDdmInfoTable: temperature 45 C, voltage 328 x 0.01 V, bias 15 mA, Tx 372 x 0.01 dBm; Rx
    # 2147483647 is "no value". Port 0/1/1 has nothing but 2147483647: no module, so no sample.
    assert by(samples, "optical", "port") == {
        ("GPON 0/1/0",): {"tx_dbm": 3.72, "temperature_c": 45.0, "bias_ma": 15.0, "voltage_v": 3.28}}

    # Port 0/1/0: ONTs 0, 1, 3 up(1), ONT 2 down(2), ONT 4 invalid(-1) (counted in onus only).
    # ONT Rx (0.01 dBm) of the up ones: -18.45, -26.12, -21.33 -> min -26.12, median -21.33.
    # OLT Rx of their upstream (0.01 dBm): -20.14, -22.90, -27.95 -> min -27.95, median -22.90.
    # Port 0/1/1: both ONTs down: a feeder cut looks like this.
    assert by(samples, "pon", "port") == {
        ("GPON 0/1/0",): {"onus": 5, "onus_online": 3, "onus_offline": 1, "onu_rx_min_dbm": -26.12,
                          "onu_rx_median_dbm": -21.33, "olt_rx_min_dbm": -27.95, "olt_rx_median_dbm": -22.9},
        ("GPON 0/1/1",): {"onus": 2, "onus_online": 0, "onus_offline": 2}}

    # Only ONTs outside the class B+ margins get a sample: ONT 1 (Rx -26.12 < -25) and ONT 3 (OLT Rx -27.95
    # < -27); ONT 0 is healthy, and the offline and unknown ones have no level (2147483647).
    assert by(samples, "onu", "port", "onu") == {
        ("GPON 0/1/0", "1"): {"rx_dbm": -26.12, "tx_dbm": 1.98, "olt_rx_dbm": -22.9},
        ("GPON 0/1/0", "3"): {"rx_dbm": -21.33, "tx_dbm": 2.45, "olt_rx_dbm": -27.95}}


def test_huawei_ma5600t_names_ports_by_ifdescr(simulator: services.Service) -> None:
    samples = poll(simulator.port, "huawei-ma5600t", "huawei_gpon")
    # Rx -1520 and Tx 415 x 0.01 dBm, 38 C, 22 mA, 330 x 0.01 V = 3.30 V; no ifName, so ifDescr names the port
    assert by(samples, "optical", "port") == {
        ("GPON 0/2/0",): {"rx_dbm": -15.2, "tx_dbm": 4.15, "temperature_c": 38.0, "bias_ma": 22.0,
                          "voltage_v": 3.3}}
    # ONT Rx -7.50 and -22.01 -> min -22.01, median (-7.50 - 22.01) / 2 = -14.755;
    # OLT Rx -15.10 and -24.05 -> min -24.05, median (-15.10 - 24.05) / 2 = -19.575
    assert by(samples, "pon", "port") == {
        ("GPON 0/2/0",): {"onus": 3, "onus_online": 2, "onus_offline": 1, "onu_rx_min_dbm": -22.01,
                          "onu_rx_median_dbm": -14.755, "olt_rx_min_dbm": -24.05, "olt_rx_median_dbm": -19.575}}
    # ONT 0 receives -7.50 dBm, above the -8 dBm overload point: kept
    assert by(samples, "onu", "port", "onu") == {
        ("GPON 0/2/0", "0"): {"rx_dbm": -7.5, "tx_dbm": 2.1, "olt_rx_dbm": -15.1}}


def test_zte_c320(simulator: services.Service) -> None:
    samples = poll(simulator.port, "zte-c320", "system, zte_gpon")
    # zxAnOpticalModuleInfoTable, thousandths: Tx 4123 -> 4.12 dBm, bias 25400 -> 25.4 mA, 3287 -> 3.29 V,
    # 41300 -> 41.3 C; Rx -40000 = -40 dBm, a receiver without light: no reading. ifDescr is empty: ifName names.
    assert by(samples, "optical", "port") == {
        ("gpon-olt_1/2/1",): {"tx_dbm": 4.12, "temperature_c": 41.3, "bias_ma": 25.4, "voltage_v": 3.29},
        ("gpon-olt_1/2/2",): {"rx_dbm": -21.5, "tx_dbm": 3.89, "temperature_c": 39.8, "bias_ma": 18.2,
                              "voltage_v": 3.3}}
    # zxAnPonRxOpticalPower (0.001 dBm): 1/2/1 has -19.876, -27.654, 65535000 (not in service), -80000 (no
    # signal), -23.410 -> 3 online, 2 offline; rounded -19.88, -27.65, -23.41 -> min -27.65, median -23.41.
    # 1/2/2: -7.200 and -21.000 -> min -21.0, median (-7.2 - 21.0) / 2 = -14.1.
    assert by(samples, "pon", "port") == {
        ("gpon-olt_1/2/1",): {"onus": 5, "onus_online": 3, "onus_offline": 2, "olt_rx_min_dbm": -27.65,
                              "olt_rx_median_dbm": -23.41},
        ("gpon-olt_1/2/2",): {"onus": 2, "onus_online": 2, "onus_offline": 0, "olt_rx_min_dbm": -21.0,
                              "olt_rx_median_dbm": -14.1}}
    # kept: 1/2/1 ONU 2 (-27.65 < -27) and 1/2/2 ONU 1 (-7.2 > -8); the sentinels give no reading
    assert by(samples, "onu", "port", "onu") == {
        ("gpon-olt_1/2/1", "2"): {"olt_rx_dbm": -27.65},
        ("gpon-olt_1/2/2", "1"): {"olt_rx_dbm": -7.2}}


def test_zte_c600(simulator: services.Service) -> None:
    samples = poll(simulator.port, "zte-c600", "zte_gpon")
    # Tx 5012 -> 5.01 dBm, 30100 -> 30.1 mA, 3280 -> 3.28 V, 52600 -> 52.6 C; the module gives no Rx column
    assert by(samples, "optical", "port") == {
        ("gpon_olt-1/3/1",): {"tx_dbm": 5.01, "temperature_c": 52.6, "bias_ma": 30.1, "voltage_v": 3.28}}
    # ONUs 1, 2, 3, 128: -18.000, 65535000 (not in service), -28.500, -24.999 (-> -25.00)
    # -> 3 online, 1 offline, min -28.5, median of (-28.5, -25.0, -18.0) = -25.0
    assert by(samples, "pon", "port") == {
        ("gpon_olt-1/3/1",): {"onus": 4, "onus_online": 3, "onus_offline": 1, "olt_rx_min_dbm": -28.5,
                              "olt_rx_median_dbm": -25.0}}
    assert by(samples, "onu", "port", "onu") == {("gpon_olt-1/3/1", "3"): {"olt_rx_dbm": -28.5}}


def test_a_profile_of_the_other_vendor_reads_nothing(simulator: services.Service) -> None:
    samples = poll(simulator.port, "zte-c320", "huawei_gpon")
    assert [s.measurement for s in samples] == ["device"]
