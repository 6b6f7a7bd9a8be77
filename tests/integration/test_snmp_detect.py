"""Auto-detection, ``zonewatch-agent discover`` and the report of silent profiles, against snmpsim serving real
device walks (PyPI snmpsim-data, trimmed as in test_snmp_devices.py) and the fixtures in testdata/.

To add a device: put its walk in ``test_snmp_devices.WALKS`` or its fixture in ``testdata/<folder>/<name>.snmprec``,
and a line in DETECTED (the profiles auto-detection must pick for it) and, if a profile that applies reads
nothing on it, in EMPTY.
"""

from __future__ import annotations

import asyncio
import bz2
import subprocess
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest

from agent.sources.snmp import Reading, SnmpConfig, SnmpSource
from tests import services
from tests.integration.test_snmp_devices import SUBTREES, WALKS, column, number, read_walk
from zonewatch import strict

pytestmark = pytest.mark.integration

NOW = 1_764_290_000_000_000_000
TESTDATA = Path(__file__).parent / "testdata"

# community (a WALKS key, or the name of a fixture file without .snmprec) -> the profiles that must be detected
DETECTED: dict[str, set[str]] = {
    "juniper": {"system", "if_mib", "juniper_dom"},  # Juniper MX960, Junos 16.1
    "c3750": {"system", "if_mib", "cisco_entity_sensor"},  # Cisco Catalyst 3750, IOS 12.2
    "arista": {"system", "if_mib", "entity_sensor"},  # Arista DCS-7150S, EOS 4.20
    "s5720": {"system", "if_mib", "huawei_optical"},  # Huawei S5720, VRP 5.160
    "s12704": {"system", "if_mib", "huawei_optical"},  # Huawei S12704
    "eaton": {"system", "if_mib", "ups_mib"},  # Eaton 93E UPS
    "gse200m": {"system", "ups_mib"},  # Huawei GSE200M UPS monitor: no ifTable at all
    "apc": {"system", "if_mib"},  # APC AP7902B rack PDU: no UPS-MIB
    "c6509": {"system", "if_mib", "cisco_entity_sensor"},  # Cisco Catalyst 6509
    "hwne": {"system", "if_mib", "huawei_optical"},  # Huawei NE router
    "apc-smartups": {"system", "apc_powernet"},  # APC PowerNet UPSes: by sysObjectID
    "apc-onbattery": {"system", "apc_powernet"},
    "apc-bypass": {"system", "apc_powernet"},
    "apc-smartups-rfc1628": {"system", "apc_powernet"},  # answers UPS-MIB too: ups_mib is superseded
    "ups-brownout": {"system", "ups_mib"},  # RFC 1628 UPSes and inverters
    "ups-bypass": {"system", "ups_mib"},
    "ups-inverter": {"system", "ups_mib"},
    "ups-inverter-notransfer": {"system", "ups_mib"},
    "ups-outage": {"system", "ups_mib"},
    "vertiv-netsure": {"system", "vertiv_netsure"},  # -48 V DC rectifier controllers
    "vertiv-netsure-acfail": {"system", "vertiv_netsure"},
    "delta-orion": {"system", "delta_orion"},
    "eltek-smartpack": {"system", "eltek_smartpack"},
    "cisco-iosxr": {"system", "if_mib", "cisco_entity_sensor"},  # router optics (test_snmp_optics.py)
    "cisco-nexus-both": {"system", "if_mib", "cisco_entity_sensor"},  # both sensor MIBs: entity_sensor superseded
    "huawei-ne": {"system", "if_mib", "huawei_optical"},
    "mikrotik-ccr": {"system", "if_mib", "mikrotik_optical"},
    "nokia-sr": {"system", "if_mib", "nokia_dom"},
    "huawei-ma5800": {"system", "if_mib", "huawei_gpon"},  # Huawei SmartAX OLTs: by sysDescr and XPON tables
    "huawei-ma5600t": {"system", "if_mib", "huawei_gpon"},
    "zte-c320": {"system", "if_mib", "zte_gpon"},  # ZTE ZXA10: by sysObjectID under 3902.1082.1001
    "zte-c600": {"system", "zte_gpon"},  # this fixture has no ifTable rows, only the PON port's ifName
}
# community -> profiles that apply but read nothing there: reported (log, /metrics, once), not silently dropped
EMPTY: dict[str, set[str]] = {
    "s5720": {"huawei_optical"},  # every cage empty: -1 in each row
}


def fixtures() -> dict[str, Path]:
    """Return the fixture files of testdata/ by community (file name without .snmprec)."""
    found: dict[str, Path] = {}
    for path in sorted(TESTDATA.rglob("*.snmprec")):
        assert path.stem not in found and path.stem not in WALKS, f"{path.stem} is served twice"
        found[path.stem] = path
    return found


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Write the trimmed walks and the fixtures DETECTED lists into one data folder."""
    data = tmp_path_factory.mktemp("detect") / "data"
    data.mkdir()
    source = resources.files("snmpsim_data") / "data"
    for community, name in WALKS.items():
        with resources.as_file(source / name) as path:
            opener = bz2.open if name.endswith(".bz2") else open
            with opener(path, "rt", encoding="utf-8", errors="replace") as lines:
                kept = [line for line in lines if line.startswith(SUBTREES)]
        (data / f"{community}.snmprec").write_text("".join(kept))
    for community, path in fixtures().items():
        if community in DETECTED:  # snmpsim indexes every file of its folder: only what is tested here
            (data / f"{community}.snmprec").write_text(path.read_text())
    return data


@pytest.fixture(scope="module")
def simulator(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.Service]:
    svc = services.start_snmpsim(tmp_path_factory.mktemp("detect-run"), data_dir)
    try:
        yield svc
    finally:
        svc.stop()


def config(port: int, community: str, profiles: list[str] | None = None) -> SnmpConfig:
    lines = ["type: snmp", f"name: {community}", "host: 127.0.0.1", f"port: {port}", "version: v2c",
             f"community: {community}"]
    if profiles is not None:
        lines.append(f"profiles: [{', '.join(profiles)}]")
    return strict.load(SnmpConfig, "\n".join(lines) + "\n", "test.yaml")


def read(config: SnmpConfig) -> Reading:
    async def main() -> Reading:
        source = SnmpSource(config)
        try:
            return await source.read(NOW)
        finally:
            await source.close()

    return asyncio.run(main())


def agent(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------------------------------------- detection


def test_every_served_device_has_a_line() -> None:
    assert set(WALKS) <= set(DETECTED), "a walk without its expected profiles in DETECTED"
    assert set(fixtures()) <= set(DETECTED), "a fixture in testdata/ without its expected profiles in DETECTED"
    assert set(DETECTED) <= set(WALKS) | set(fixtures()), "DETECTED names a device nothing serves"
    assert set(EMPTY) <= set(DETECTED)


@pytest.mark.parametrize("community", sorted(DETECTED))
def test_auto_detection_picks_the_profiles_of_each_device(simulator: services.Service, community: str) -> None:
    auto = read(config(simulator.port, community))
    assert auto.answered and auto.failure is None and auto.detection is not None
    assert set(auto.detection.profiles) == DETECTED[community]
    assert set(auto.empty) == EMPTY.get(community, set())
    # polled with the profiles it detected, the device gives what it gives with them configured by hand
    by_hand = read(config(simulator.port, community, auto.detection.profiles))
    assert by_hand.samples == auto.samples


def test_each_detection_names_the_test_that_passed(simulator: services.Service) -> None:
    detection = read(config(simulator.port, "juniper")).detection
    assert detection is not None
    tests = {m.profile: m.test for m in detection.matches}
    assert tests == {"system": "1.3.6.1.2.1.1.3 has rows", "if_mib": "1.3.6.1.2.1.2.2.1.2 has rows",
                     "juniper_dom": "1.3.6.1.4.1.2636.3.60.1.1.1.1.5 has rows"}
    assert detection.identity.sys_object_id == "1.3.6.1.4.1.2636.1.1.1.2.21"
    assert detection.identity.sys_descr.startswith("Juniper Networks, Inc. mx960 internet router")


def test_ports_not_present_are_left_out(simulator: services.Service, data_dir: Path) -> None:
    walk = read_walk(data_dir / "arista.snmprec")
    oper = "1.3.6.1.2.1.2.2.1.8"
    absent = {i for i in column(walk, oper) if number(walk, f"{oper}.{i}") == 6}
    assert len(absent) == 13  # the walk's unused transceiver lanes
    samples = read(config(simulator.port, "arista")).samples
    interfaces = [s for s in samples if s.measurement == "interface"]
    assert len(interfaces) == len(column(walk, oper)) - len(absent)
    names = {s.tags["ifname"] for s in interfaces}
    ifname = "1.3.6.1.2.1.31.1.1.1.1"
    assert not names & {bytes.fromhex(walk[f"{ifname}.{i}"][1]).decode() if walk[f"{ifname}.{i}"][0] == "4x"
                        else walk[f"{ifname}.{i}"][1] for i in absent}


# ---------------------------------------------------------------------------------------------- the commands


def test_discover_says_what_applies_why_and_what_it_reads(simulator: services.Service) -> None:
    proc = agent("discover", "127.0.0.1", "--port", str(simulator.port), "--community", "juniper")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert out[0] == f"# 127.0.0.1:{simulator.port} answers; sysObjectID 1.3.6.1.4.1.2636.1.1.1.2.21"
    assert out[1].startswith("# sysDescr: Juniper Networks, Inc. mx960 internet router, kernel JUNOS 16.1R6.7")
    assert "#   juniper_dom: 1.3.6.1.4.1.2636.3.60.1.1.1.1.5 has rows" in out
    assert "#   if_mib: 1.3.6.1.2.1.2.2.1.2 has rows" in out
    not_applying = next(line for line in out if line.startswith("# profiles that do not apply: "))
    assert {"ups_mib", "huawei_optical", "cisco_entity_sensor"} <= set(not_applying.split(": ")[1].split(", "))
    dom = out.index(next(line for line in out if line.startswith("## juniper_dom: ")))
    assert "optical,device=127.0.0.1,port=ge-0/0/1 rx_dbm=-8.65 tx_dbm=-7.12" in out[dom:]
    assert any(line.startswith("device,device=127.0.0.1 uptime_s=") for line in out)
    assert "interface,device=127.0.0.1,ifname=ge-0/0/1 " in "\n".join(out)


def test_discover_says_when_a_profile_that_applies_reads_nothing(simulator: services.Service) -> None:
    proc = agent("discover", "127.0.0.1", "--port", str(simulator.port), "--community", "s5720")
    assert proc.returncode == 0, proc.stderr
    assert ("## huawei_optical: READ NOTHING (no rows, or no usable value): the agent reports this"
            in proc.stdout.splitlines())


def test_discover_fails_clearly_when_the_device_does_not_answer(simulator: services.Service) -> None:
    dead = services.free_udp_port()
    proc = agent("discover", "127.0.0.1", "--port", str(dead), "--community", "juniper", "--timeout", "300ms",
                 "--retries", "0")
    assert proc.returncode == 1 and proc.stdout == ""
    assert f"zonewatch-agent discover: 127.0.0.1:{dead} does not answer SNMP (" in proc.stderr
    # a wrong community is the same silence for SNMPv2c
    wrong = agent("discover", "127.0.0.1", "--port", str(simulator.port), "--community", "no-such-device",
                  "--timeout", "300ms", "--retries", "0")
    assert wrong.returncode == 1 and "does not answer SNMP" in wrong.stderr and "no-such-device" not in wrong.stderr


@pytest.mark.parametrize(("args", "message"), [
    ([], "give --community (SNMPv2c) or --user, --auth-key and --priv-key (SNMPv3 authPriv)"),
    (["--community", "c", "--user", "u"], "--community is SNMPv2c and --user is SNMPv3: give one or the other"),
    (["--user", "u", "--auth-key", "authkey-1"], "SNMPv3 (authPriv) needs --user, --auth-key and --priv-key; "
                                                 "missing: --priv-key"),
])
def test_discover_refuses_incomplete_credentials(args: list[str], message: str) -> None:
    proc = agent("discover", "192.0.2.1", *args)
    assert (proc.returncode, proc.stderr.strip()) == (2, f"zonewatch-agent discover: {message}")


def test_once_says_which_profiles_were_detected_and_which_read_nothing(simulator: services.Service,
                                                                      tmp_path: Path) -> None:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"""
probe: {{id: p9, zone: test-zone}}
spool: {{path: {tmp_path / 'never.db'}}}
sources:
  - {{type: snmp, name: s5720, host: 127.0.0.1, port: {simulator.port}, version: v2c, community: s5720}}
  - {{type: snmp, name: apc, host: 127.0.0.1, port: {simulator.port}, version: v2c, community: apc,
      profiles: [system, ups_mib]}}
""")
    proc = agent("-c", str(cfg), "once")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    detected = next(line for line in out if line.startswith("# s5720: profiles detected: "))
    for found in ("huawei_optical (1.3.6.1.4.1.2011.5.25.31.1.1.3.1.8 has rows)",
                  "if_mib (1.3.6.1.2.1.2.2.1.2 has rows)", "system (1.3.6.1.2.1.1.3 has rows)"):
        assert found in detected
    assert "# s5720: profile huawei_optical read nothing (no rows, or no usable value)" in out
    assert "# apc: profile ups_mib read nothing (no rows, or no usable value)" in out
    assert ("snmp device apc (127.0.0.1:{}) answers, but none of its profiles read anything (ups_mib)"
            .format(simulator.port)) in proc.stderr


# ---------------------------------------------------------------------------------------------- overlapping profiles


@pytest.mark.parametrize(("community", "winner", "dropped", "measurement", "expected"), [
    # Both sensor MIBs list the same four sensors (ENTITY-SENSOR-MIB: other(1) with units "dBm", units(9),
    # precision 2; CISCO-ENTITY-SENSOR-MIB: dBm(14), units(9), precision 2): Eth1/49 Tx -153 -> -1.53 dBm,
    # Rx -478 -> -4.78 dBm; Eth1/50 Tx -98 -> -0.98 dBm, Rx -1215 -> -12.15 dBm.
    ("cisco-nexus-both", "cisco_entity_sensor", "entity_sensor", "optical",
     {"Eth1/49": {"rx_dbm": -4.78, "tx_dbm": -1.53}, "Eth1/50": {"rx_dbm": -12.15, "tx_dbm": -0.98}}),
    # An APC card answering RFC 1628 too: one power sample, PowerNet-MIB's (upsBasicOutputStatus onLine(2)).
    ("apc-smartups-rfc1628", "apc_powernet", "ups_mib", "power", None),
])
def test_a_profile_that_supersedes_another_reads_each_thing_once(
        simulator: services.Service, community: str, winner: str, dropped: str, measurement: str,
        expected: dict[str, dict[str, float]] | None) -> None:
    auto = read(config(simulator.port, community))
    assert auto.detection is not None
    superseded = {m.profile: m.superseded_by for m in auto.detection.matches if m.superseded_by is not None}
    assert superseded == {dropped: winner}
    assert dropped not in auto.detection.profiles and dropped not in auto.by_profile
    samples = [s for s in auto.samples if s.measurement == measurement]
    assert len(samples) == len({tuple(sorted(s.tags.items())) for s in samples}), "a series given twice"
    if expected is not None:
        assert {s.tags["port"]: dict(s.fields) for s in samples} == expected
    else:
        assert len(samples) == 1 and samples[0].fields["on_battery"] is False
    # named by hand, both are polled: each reads the same things, which is what superseding avoids
    both = read(config(simulator.port, community, ["system", dropped, winner]))
    assert len([s for s in both.samples if s.measurement == measurement]) == 2 * len(samples)


def test_discover_says_which_profile_is_superseded_and_by_which(simulator: services.Service) -> None:
    proc = agent("discover", "127.0.0.1", "--port", str(simulator.port), "--community", "cisco-nexus-both")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert "#   entity_sensor: 1.3.6.1.2.1.99.1.1.1.1 has rows; superseded by cisco_entity_sensor" in out
    assert not any(line.startswith("## entity_sensor") for line in out)
    dom = out.index("## cisco_entity_sensor: 2 samples")
    assert out[dom + 1:dom + 3] == ["optical,device=127.0.0.1,port=Eth1/49 tx_dbm=-1.53 rx_dbm=-4.78",
                                    "optical,device=127.0.0.1,port=Eth1/50 tx_dbm=-0.98 rx_dbm=-12.15"]


# ---------------------------------------------------------------------------------------------- site profiles

SITE_PROFILE = """\
name: acme_uptime
description: a site profile - the device's uptime in hours, for a vendor nothing shipped knows
applies_to: {sys_descr: ['(?i)juniper networks']}
scalars:
  - measurement: device
    get: {ticks: 1.3.6.1.2.1.1.3.0}
    fields: {uptime_h: {column: ticks, scale: 0.000002777777777777778, round: 1}}
"""


def test_discover_and_once_use_the_site_profiles_of_profile_dirs(simulator: services.Service,
                                                                  tmp_path: Path) -> None:
    site = tmp_path / "profiles"
    site.mkdir()
    (site / "acme_uptime.yaml").write_text(SITE_PROFILE)
    proc = agent("discover", "127.0.0.1", "--port", str(simulator.port), "--community", "juniper",
                 "--profile-dir", str(site))
    assert proc.returncode == 0, proc.stderr
    assert "#   acme_uptime: sysDescr matches '(?i)juniper networks'" in proc.stdout.splitlines()
    assert "## acme_uptime: 1 samples" in proc.stdout.splitlines()

    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"""
probe: {{id: p9, zone: test-zone}}
spool: {{path: {tmp_path / 'never.db'}}}
profile_dirs: [{site}]
sources:
  - {{type: snmp, name: mx, host: 127.0.0.1, port: {simulator.port}, version: v2c, community: juniper}}
  - {{type: snmp, name: mx-named, host: 127.0.0.1, port: {simulator.port}, version: v2c, community: juniper,
      profiles: [acme_uptime]}}
""")
    once = agent("-c", str(cfg), "once")
    assert once.returncode == 0, once.stderr
    out = once.stdout.splitlines()
    detected = next(line for line in out if line.startswith("# mx: profiles detected: "))
    assert "acme_uptime (sysDescr matches '(?i)juniper networks')" in detected
    named = [line for line in out if line.startswith("device,device=mx-named ")]
    assert len(named) == 1 and " uptime_h=" in named[0]

    (site / "acme_uptime.yaml").write_text(SITE_PROFILE.replace("round: 1", "round: x"))
    bad = agent("-c", str(cfg), "once")
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip().startswith(f"zonewatch-agent: {site / 'acme_uptime.yaml'}:7: "
                                         "scalars[0].fields.uptime_h[0].round: ")
