"""Optical profiles of routers and switches at BTS and PoP sites, against snmpsim serving fixtures written
from the vendors' MIB definitions (``testdata/snmprec/<model>.snmprec``).

Each fixture lays a device out as its MIB describes it, with a lit port, a dark port (no light, no module, a
reading at the -40 dBm floor, an exact 0 on a port that is down) and the vendor's sentinels. The expected
values below were computed by hand from each MIB's stated unit, never by running our own code; the
arithmetic is in the comments. Every test polls once with the profile named, and once with no profile
configured (auto-detection by ``applies_to``): both must give the same optical samples.

The MIB texts used: CISCO-ENTITY-SENSOR-MIB (entSensorType dBm(14), entSensorScale, entSensorPrecision,
entSensorStatus), ENTITY-MIB (entPhysicalContainedIn, entPhysicalClass, entAliasMappingIdentifier),
HUAWEI-ENTITY-EXTENT-MIB V3 (hwEntityOpticalRxPower/TxPower "Unit: dBm ... expanded 100 times"),
TIMETRA-PORT-MIB (tmnxDDMRxOpticalPower/TxOutputPower "in one tenths of a microwatt",
tmnxDDMRxOpticalPowerType, tmnxDDMExternallyCalibrated, tmnxPortName) and MIKROTIK-MIB (mtxrOpticalTxPower and
mtxrOpticalRxPower, IDiv1000 with UNITS "dBm").
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.sources.snmp import SnmpConfig
from tests import services
from tests.integration.snmppoll import poll_checked
from zonewatch import strict

pytestmark = pytest.mark.integration

NOW = 1_764_290_000_000_000_000
FIXTURES = Path(__file__).parent / "testdata" / "snmprec"
MODELS = ("cisco-iosxr", "huawei-ne", "nokia-sr", "mikrotik-ccr")


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.Service]:
    data = tmp_path_factory.mktemp("optics-data")
    for name in MODELS:  # community = file name
        (data / f"{name}.snmprec").write_text((FIXTURES / f"{name}.snmprec").read_text())
    svc = services.start_snmpsim(tmp_path_factory.mktemp("snmpsim-optics"), data)
    try:
        yield svc
    finally:
        svc.stop()


def optical(port: int, community: str, profiles: str | None) -> dict[str, dict[str, object]]:
    """Poll once and return the optical samples as port -> fields (every sample within the catalogue)."""
    lines = ["type: snmp", f"name: {community}", "host: 127.0.0.1", f"port: {port}", "version: v2c",
             f"community: {community}"]
    if profiles is not None:
        lines.append(f"profiles: [{profiles}]")
    config = strict.load(SnmpConfig, "\n".join(lines) + "\n", "test.yaml")
    samples = poll_checked(config, NOW)
    out: dict[str, dict[str, object]] = {s.tags["port"]: dict(s.fields) for s in samples if s.measurement == "optical"}
    assert len(out) == len([s for s in samples if s.measurement == "optical"]), "one sample per port"
    return out


@pytest.mark.parametrize("profiles", ["cisco_entity_sensor", None])
def test_cisco_ios_xr_sensors_named_after_their_port(simulator: services.Service, profiles: str | None) -> None:
    # Sensors sit in the transceiver module (class 9) that sits in the port (class 10), whose alias mapping
    # points at ifIndex 20..23, ifName "TenGigE0/0/0/N". Value x 10^(3 x (scale - 9)) x 10^-precision:
    #   0/0/0/0  Tx -23, units(9), precision 1 -> -2.3 dBm; Rx -51 -> -5.1 dBm
    #   0/0/0/1  (down) Tx -400 -> -40.0 dBm: the floor, no reading; Rx 0 on a port that is down: dark
    #   0/0/0/2  (up) Tx -1234, milli(8), precision 0 -> -1.234 -> -1.23 dBm; Rx 0 on an up port: 0.0 dBm
    #   0/0/0/3  Tx status unavailable(2); Rx -32768 (no reading): nothing
    assert optical(simulator.port, "cisco-iosxr", profiles) == {
        "TenGigE0/0/0/0": {"tx_dbm": -2.3, "rx_dbm": -5.1},
        "TenGigE0/0/0/2": {"tx_dbm": -1.23, "rx_dbm": 0.0},
    }


@pytest.mark.parametrize("profiles", ["huawei_optical", None])
def test_huawei_ne_hundredths_of_dbm_and_dark_ports(simulator: services.Service, profiles: str | None) -> None:
    # hwEntityOpticalRxPower/TxPower in 0.01 dBm (MIB V3), the port named by its alias mapping's ifName:
    #   0/1/0  -523 / -215 -> -5.23 / -2.15 dBm
    #   0/1/1  0 / 0 on a port that is down: dark, nothing
    #   0/1/2  Rx -4000 -> -40.00 dBm, the floor: no reading; Tx -187 -> -1.87 dBm
    #   0/1/3  -1 / -1: empty cage, nothing
    #   0/1/4  Rx 0 on a port that is up -> 0.0 dBm; Tx -250 -> -2.5 dBm
    assert optical(simulator.port, "huawei-ne", profiles) == {
        "GigabitEthernet0/1/0": {"rx_dbm": -5.23, "tx_dbm": -2.15},
        "GigabitEthernet0/1/2": {"tx_dbm": -1.87},
        "GigabitEthernet0/1/4": {"rx_dbm": 0.0, "tx_dbm": -2.5},
    }


@pytest.mark.parametrize("profiles", ["nokia_dom", None])
def test_nokia_sr_tenths_of_microwatts(simulator: services.Service, profiles: str | None) -> None:
    # dBm = 10 log10(value / 10 / 1000):
    #   1/1/1  Rx 790 -> 79 uW = 0.079 mW -> 10 x (0.89763 - 2) = -11.02 dBm (the MIB's own example: -11.0)
    #          Tx 3196 -> 0.3196 mW -> 10 x (0.50461 - 1) = -4.95 dBm
    #   1/1/2  Rx 0 (no light: -inf), Tx 1 (0.1 uW = -40 dBm, the floor): nothing
    #   1/1/3  externally calibrated: the raw value needs the module's constants, nothing
    #   1/1/4  Rx given as OMA(0), not average power: no Rx; Tx 5012 -> 0.5012 mW -> 10 x (0.70001 - 1) = -3.0
    assert optical(simulator.port, "nokia-sr", profiles) == {
        "1/1/1": {"rx_dbm": -11.02, "tx_dbm": -4.95},
        "1/1/4": {"tx_dbm": -3.0},
    }


@pytest.mark.parametrize("profiles", ["mikrotik_optical", None])
def test_mikrotik_thousandths_of_dbm(simulator: services.Service, profiles: str | None) -> None:
    # IDiv1000, UNITS "dBm": value / 1000, the port named by mtxrOpticalName (= the interface's ifName):
    #   sfp-sfpplus1  Rx -5432 -> -5.432, Tx -2100 -> -2.1
    #   sfp-sfpplus2  Rx -40000 -> -40.0, the floor: no Rx; Tx -2500 -> -2.5
    #   sfp1          0 / 0: a module without diagnostics, nothing
    #   sfp2          Rx -33100 -> -33.1 (weak, but measured: kept), Tx -3000 -> -3.0
    assert optical(simulator.port, "mikrotik-ccr", profiles) == {
        "sfp-sfpplus1": {"rx_dbm": -5.432, "tx_dbm": -2.1},
        "sfp-sfpplus2": {"tx_dbm": -2.5},
        "sfp2": {"rx_dbm": -33.1, "tx_dbm": -3.0},
    }
