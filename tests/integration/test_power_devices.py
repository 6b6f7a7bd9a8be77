"""Power profiles (rectifier plants, APC PowerNet UPSes, the RFC 1628 inverter rule) against snmpsim.

The rectifier and APC fixtures in testdata/snmprec were written here from the vendors' MIB texts (Vertiv
NETSURE-NCU-MIB revision J, Delta ORION-BASE-MIB V6.60B22, ELTEK-DISTRIBUTED-MIB, APC PowerNet-MIB 4.2.6,
RFC 1628); the expected values below are worked out by hand from those texts (the comment beside each says
how), never by running our own code. The APC rack PDU walk of snmpsim-data is the negative case: a real APC
device without the UPS subtree.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest

from agent import profiles
from agent.sources.snmp import SnmpConfig
from tests import services
from tests.integration.snmppoll import poll_checked
from zonewatch import strict
from zonewatch.wire import Sample

pytestmark = pytest.mark.integration

NOW = 1_764_290_000_000_000_000
FIXTURES = Path(__file__).parent / "testdata" / "snmprec"
OURS = ("vertiv-netsure", "vertiv-netsure-acfail", "delta-orion", "eltek-smartpack", "apc-smartups", "apc-bypass",
        "apc-onbattery", "ups-inverter", "ups-inverter-notransfer", "ups-outage", "ups-brownout", "ups-bypass")
PDU_WALKS = ("apc-7902b", "apc-8641", "apc-8932")   # snmpsim-data: APC rack PDUs, no UPS subtree


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.Service]:
    data = tmp_path_factory.mktemp("power") / "data"
    data.mkdir()
    for name in OURS:
        shutil.copy(FIXTURES / f"{name}.snmprec", data / f"{name}.snmprec")
    source = resources.files("snmpsim_data") / "data" / "UPS"
    for name in PDU_WALKS:
        with resources.as_file(source / f"{name}.snmprec") as path:
            (data / f"{name}.snmprec").write_text(path.read_text(errors="replace"))
    svc = services.start_snmpsim(tmp_path_factory.mktemp("power-run"), data)
    yield svc
    svc.stop()


def poll(port: int, community: str, names: str | None) -> list[Sample]:
    """Poll once with the named profiles (None: auto-detection); every sample must be within the catalogue."""
    text = (f"type: snmp\nname: {community}\nhost: 127.0.0.1\nport: {port}\nversion: v2c\ncommunity: {community}\n"
            f"site: bts-17\n" + (f"profiles: [{names}]\n" if names is not None else ""))
    config = strict.load(SnmpConfig, text, "test.yaml")
    samples = poll_checked(config, NOW)
    return samples


def power(samples: list[Sample]) -> dict[str, object]:
    """Return the fields of every power sample of the poll, merged (a profile may give several samples)."""
    out: dict[str, object] = {}
    for s in samples:
        if s.measurement == "power":
            assert s.tags == {"device": s.tags["device"], "site": "bts-17"}
            assert not set(out) & set(s.fields), "a field given twice"
            out.update(s.fields)
    return out


# ---------------------------------------------------------------------------------------------- rectifiers


def test_vertiv_netsure_on_float(simulator: services.Service) -> None:
    assert power(poll(simulator.port, "vertiv-netsure", "vertiv_netsure")) == {
        "mains_present": True, "on_battery": False,     # psStatusBatteryMode floatCharging(2)
        "battery_voltage_v": 53.48,                     # psBatteryVoltage -53480 mV: the magnitude, in V
        "battery_current_a": 2.35,                      # psTotalBatteryCurrent 2350 mA, positive: charging
        "load_current_a": 41.2,                         # psTotalLoadCurrent 41200 mA
        "battery_pct": 98,                              # psLowestBatteryCapacity %
        "rectifiers_installed": 4,                      # numberOfInstalledRectifiers
        "alarm_major": False, "alarm_minor": True,      # systemStatus minor(4)
        "battery_temp_c": 27.3,                         # probe 2, type battery(2): 27300 x 0.001 C (probe 1 is
                                                        # ambient(1), probe 3 holds the invalid 2147483647)
        "rectifiers_failed": 1,                         # psRectifierFail activated(1) on rectifier 2 only
    }


def test_vertiv_netsure_on_ac_fail_and_sentinels(simulator: services.Service) -> None:
    assert power(poll(simulator.port, "vertiv-netsure-acfail", "vertiv_netsure")) == {
        "mains_present": False, "on_battery": True,     # psStatusBatteryMode acFail(8)
        "battery_voltage_v": 47.9,                      # -47900 mV
        "battery_current_a": -35.6,                     # -35600 mA: discharging
        "alarm_major": True,                            # systemStatus major(5); minor is not told: absent
        "rectifiers_failed": 0,                         # both rectifiers deactivated(2)
        # 2147483647 ("invalid value") in capacity, load current, rectifier count and the only probe: absent
    }


def test_delta_orion_mains_failure(simulator: services.Service) -> None:
    assert power(poll(simulator.port, "delta-orion", "delta_orion")) == {
        "mains_present": False, "on_battery": True,     # dcMainsFailureAlarm active(2)
        "battery_voltage_v": 48.7,                      # dcSystemVoltage 4870 x 10 mV
        "load_current_a": 35.2,                         # dcLoadCurrent 352 x 100 mA
        "rectifiers_installed": 6, "rectifiers_failed": 1,   # dcNumberRectifiers, dcNumberRectifiersFailure
        "alarm_major": False, "alarm_minor": True,      # 0 urgent, 1 non-urgent alarm source active
        # dcBatteryTemperature 2147483647: invalid, absent; dcBatteryCurrent is not read (sign not in the MIB)
    }


def test_eltek_smartpack(simulator: services.Service) -> None:
    assert power(poll(simulator.port, "eltek-smartpack", "eltek_smartpack")) == {
        "mains_present": True, "on_battery": False,     # alarmACmains normal(0)
        "battery_low": False,                           # alarmMajorLowBattVolt normal(0)
        "battery_voltage_v": 53.5,                      # batteryVoltage 5350 x 1/100 V
        "rectifiers_installed": 3,                      # rectifierInstalledRectifiers
        "alarm_major": True, "alarm_minor": False,      # alarmMajorRectifier alarm(1), alarmMinorRectifier 0
        "rectifiers_failed": 1,                         # rectifierStatusStatus: normal, alarm, normal, notPresent
        # batteryCurrent (A or dA) and batteryTemp (C or F) depend on a setting the MIB does not give: not read
    }


# ---------------------------------------------------------------------------------------------- APC


def test_apc_smart_ups_on_line(simulator: services.Service) -> None:
    assert power(poll(simulator.port, "apc-smartups", "apc_powernet")) == {
        "on_battery": False, "on_bypass": False, "mains_present": True,   # upsBasicOutputStatus onLine(2)
        "battery_low": False,                           # upsBasicBatteryStatus batteryNormal(2)
        "battery_minutes": 64.0,                        # upsAdvBatteryRunTimeRemaining 384000 ticks / 6000
        "battery_pct": 100.0,                           # upsHighPrecBatteryCapacity 1000 x 0.1 %
        "seconds_on_battery": 0,                        # upsBasicBatteryTimeOnBattery 0 ticks
        "battery_voltage_v": 54.5,                      # upsHighPrecBatteryActualVoltage 545 x 0.1 V
        "battery_temp_c": 31.2,                         # upsHighPrecBatteryTemperature 312 x 0.1 C
    }


def test_apc_switched_bypass_is_its_own_state(simulator: services.Service) -> None:
    assert power(poll(simulator.port, "apc-bypass", "apc_powernet")) == {
        "on_battery": False, "on_bypass": True, "mains_present": True,   # switchedBypass(9)
        "battery_pct": 97,                              # no HighPrec objects: upsAdvBatteryCapacity 97 %
        "seconds_on_battery": 0,
        "battery_voltage_v": 27.0,                      # upsAdvBatteryActualVoltage 27 V
        "battery_temp_c": 29.0,                         # upsAdvBatteryTemperature 29 C
        # batteryStatus unknown(1): no battery_low; a runtime of 2^32-1 ticks (497 days) is no estimate
    }


def test_apc_on_battery(simulator: services.Service) -> None:
    assert power(poll(simulator.port, "apc-onbattery", "apc_powernet")) == {
        "on_battery": True, "on_bypass": False, "mains_present": False,  # onBattery(3)
        "battery_low": True,                            # batteryLow(3)
        "battery_minutes": 4.5,                         # 27000 ticks / 6000
        "battery_pct": 23,
        "seconds_on_battery": 180,                      # 18000 ticks / 100
    }


@pytest.mark.parametrize("walk", PDU_WALKS)
def test_apc_rack_pdu_walks_are_no_ups(simulator: services.Service, walk: str) -> None:
    samples = poll(simulator.port, walk, "apc_powernet")
    assert [s.measurement for s in samples] == ["device"]


# ---------------------------------------------------------------------------------------------- RFC 1628


@pytest.mark.parametrize(("community", "expected"), [
    # output source battery(5), input line 1 at 230 V above the UPS's low transfer point 176 V: inverter mode
    ("ups-inverter", {"mains_present": True, "on_battery": False, "inverter_mode": True, "on_bypass": False}),
    # the same without a transfer point: 228 V is above the 187 V fallback
    ("ups-inverter-notransfer", {"mains_present": True, "on_battery": False, "inverter_mode": True,
                                 "on_bypass": False}),
    # battery(5) with 0 V on the input: a mains outage
    ("ups-outage", {"mains_present": False, "on_battery": True, "inverter_mode": False, "on_bypass": False}),
    # battery(5) with 150 V, under its 176 V transfer point: a brownout, on battery for real
    ("ups-brownout", {"mains_present": False, "on_battery": True, "inverter_mode": False, "on_bypass": False}),
    # bypass(4) with 231 V on the input
    ("ups-bypass", {"mains_present": True, "on_battery": False, "inverter_mode": False, "on_bypass": True}),
])
def test_the_inverter_rule(simulator: services.Service, community: str, expected: dict[str, object]) -> None:
    fields = power(poll(simulator.port, community, "ups_mib"))
    assert {k: fields[k] for k in expected} == expected


# ---------------------------------------------------------------------------------------------- detection


@pytest.mark.parametrize(("community", "profile"), [
    ("vertiv-netsure", "vertiv_netsure"), ("delta-orion", "delta_orion"), ("eltek-smartpack", "eltek_smartpack"),
    ("apc-smartups", "apc_powernet"), ("apc-bypass", "apc_powernet"), ("ups-inverter", "ups_mib"),
])
def test_auto_detection_reads_what_the_named_profile_reads(simulator: services.Service, community: str,
                                                            profile: str) -> None:
    """Configured without profiles, the device gets the power profile that applies, and reads the same."""
    assert power(poll(simulator.port, community, None)) == power(poll(simulator.port, community, profile))


@pytest.mark.parametrize(("community", "profile"), [
    ("vertiv-netsure", "vertiv_netsure"), ("delta-orion", "delta_orion"), ("eltek-smartpack", "eltek_smartpack"),
    ("apc-smartups", "apc_powernet"), ("apc-bypass", "apc_powernet"), ("ups-inverter", "ups_mib"),
])
def test_each_fixture_declares_the_profile_that_applies(community: str, profile: str) -> None:
    """The sysObjectID of each fixture falls under the profile's applies_to (and under no other power profile)."""
    oid = next(line.split("|")[2] for line in (FIXTURES / f"{community}.snmprec").read_text().splitlines()
               if line.startswith("1.3.6.1.2.1.1.2.0|"))
    power_profiles = ("vertiv_netsure", "delta_orion", "eltek_smartpack", "apc_powernet")
    matched = [name for name in power_profiles for prefix in (profiles.shipped()[name].applies_to or
                                                                 profiles.AppliesTo(sys_descr=["^$"])).sys_object_id
               if oid == prefix or oid.startswith(prefix + ".")]
    assert matched == ([profile] if profile in power_profiles else [])
