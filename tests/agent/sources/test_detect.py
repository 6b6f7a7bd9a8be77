"""Auto-detection of SNMP poll profiles, and the report of a profile that reads nothing (fakes only, no sleeps).

The profiles here are written for the tests, so that a new shipped profile does not change what these
tests expect; what the shipped profiles pick on real device walks is tested in
``tests/integration/test_snmp_devices.py``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import profiles
from agent.config import AgentConfig
from agent.runner import Agent
from agent.snmpclient import FakeSnmpClient, SnmpError, SnmpValue
from agent.sources import detect
from agent.sources.detect import Detection, Identity, Match
from agent.sources.snmp import SnmpConfig, SnmpSource
from zonewatch import strict
from zonewatch.wire import Sample

NOW = 1_764_290_000_000_000_000
MINUTE = 60 * 10**9
SYS_UPTIME, SYS_DESCR, SYS_OBJECT_ID = "1.3.6.1.2.1.1.3.0", "1.3.6.1.2.1.1.1.0", "1.3.6.1.2.1.1.2.0"
IF = "1.3.6.1.2.1.2.2.1"
ACME = "1.3.6.1.4.1.99999"

TEST_PROFILES = {
    "uptime": """\
name: uptime
description: sysUpTime, on every device that answers
applies_to: {has_table: [1.3.6.1.2.1.1.3]}
scalars:
  - measurement: device
    get: {uptime: 1.3.6.1.2.1.1.3.0}
    fields: {uptime_s: {column: uptime, scale: 0.01}}
""",
    "ports": """\
name: ports
description: interfaces, where there is an ifTable
applies_to: {has_table: [1.3.6.1.2.1.2.2.1.2, 1.3.6.1.2.1.2.2.1.8]}
tables:
  - measurement: interface
    columns: {descr: 1.3.6.1.2.1.2.2.1.2, oper: 1.3.6.1.2.1.2.2.1.8}
    tags: {ifname: [descr]}
    fields: {oper_up: {column: oper, one_of: [1]}}
""",
    "acme_optics": """\
name: acme_optics
description: the optics of ACME routers, 0.01 dBm
applies_to: {sys_object_id: [1.3.6.1.4.1.99999]}
tables:
  - measurement: optical
    columns: {rx: 1.3.6.1.4.1.99999.1.1}
    tags: {port: [{text: "port.{index}"}]}
    fields: {rx_dbm: {column: rx, missing: [-1], scale: 0.01}}
""",
    "acme_power": """\
name: acme_power
description: the rectifier of an ACME OS controller
applies_to: {sys_descr: ['(?i)\\bacme os\\b'], has_table: [1.3.6.1.4.1.99999.2.1]}
scalars:
  - measurement: power
    get: {mains: 1.3.6.1.4.1.99999.2.1.0}
    fields: {on_battery: {column: mains, one_of: [2]}}
""",
    "by_name_only": """\
name: by_name_only
description: never picked by detection
scalars:
  - measurement: power
    get: {mains: 1.3.6.1.4.1.99999.2.1.0}
    fields: {on_battery: {column: mains, one_of: [2]}}
""",
}
KNOWN = {name: profiles.load(text, f"{name}.yaml") for name, text in TEST_PROFILES.items()}


@pytest.fixture(autouse=True)
def test_profiles(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(profiles, "shipped", lambda: KNOWN)
    yield


def identity(oid: str | None = None, descr: str = "", *tables: str) -> Identity:
    return Identity(oid, descr, frozenset(tables))


# ---------------------------------------------------------------------------------------------- the decision


@pytest.mark.parametrize(("seen", "expected"), [
    (identity(f"{ACME}.1.7"), [Match("acme_optics", f"sysObjectID {ACME}.1.7 is under {ACME}")]),
    (identity(ACME), [Match("acme_optics", f"sysObjectID is {ACME}")]),
    (identity(f"{ACME}0.1"), []),                                      # 999990 is another enterprise
    (identity("1.3.6.1.4.1.9999"), []),                                # a prefix of ours, not under it
    (identity(None, "Acme OS 4.2 on RX-48"), [Match("acme_power", "sysDescr matches '(?i)\\\\bacme os\\\\b'")]),
    (identity(None, "Acmeos"), []),
    (identity(None, "", "1.3.6.1.4.1.99999.2.1"), [Match("acme_power", "1.3.6.1.4.1.99999.2.1 has rows")]),
    (identity(None, "", f"{IF}.8", "1.3.6.1.2.1.1.3"),
     [Match("uptime", "1.3.6.1.2.1.1.3 has rows"), Match("ports", f"{IF}.8 has rows")]),
    (identity(f"{ACME}.1", "ACME OS", "1.3.6.1.2.1.1.3", f"{IF}.2"),
     [Match("uptime", "1.3.6.1.2.1.1.3 has rows"), Match("ports", f"{IF}.2 has rows"),
      Match("acme_optics", f"sysObjectID {ACME}.1 is under {ACME}"), Match("acme_power", "sysDescr matches "
                                                                          "'(?i)\\\\bacme os\\\\b'")]),
    (identity(None, ""), []),
])
def test_select_names_the_profiles_that_apply_and_the_test_that_passed(seen: Identity,
                                                                       expected: list[Match]) -> None:
    assert detect.select(KNOWN, seen) == expected


def test_a_profile_without_applies_to_is_never_picked() -> None:
    everything = identity(f"{ACME}.1", "ACME OS", "1.3.6.1.2.1.1.3", f"{IF}.2", f"{IF}.8", "1.3.6.1.4.1.99999.2.1")
    assert "by_name_only" not in [m.profile for m in detect.select(KNOWN, everything)]


def test_tables_are_walked_only_for_profiles_still_undecided_and_once_each() -> None:
    assert detect.tables_to_walk(KNOWN, identity()) == ["1.3.6.1.2.1.1.3", f"{IF}.2", f"{IF}.8",
                                                        "1.3.6.1.4.1.99999.2.1"]
    # sysDescr already selects acme_power: its table need not be walked
    assert detect.tables_to_walk(KNOWN, identity(None, "ACME OS")) == ["1.3.6.1.2.1.1.3", f"{IF}.2", f"{IF}.8"]


@pytest.mark.parametrize(("object_id", "descr", "expected"), [
    ("1.3.6.1.4.1.2636.1.1.1.2.21", b"Juniper Networks, Inc. mx960", identity("1.3.6.1.4.1.2636.1.1.1.2.21",
                                                                             "Juniper Networks, Inc. mx960")),
    (None, None, identity()),                                          # noSuchObject for both
    (b"1.3.6.1.4.1.9", "text", identity(None, "text")),                 # an OID must be an OID
    ("0.0", b"\xff\xfeS5720", identity("0.0", "\ufffd\ufffdS5720")),    # zeroDotZero; undecodable bytes
    ("not.an.oid", 7, identity()),
])
def test_identify_reads_what_the_get_gave(object_id: SnmpValue, descr: SnmpValue, expected: Identity) -> None:
    assert detect.identify(object_id, descr) == expected


def test_detection_is_due_first_after_a_reboot_and_every_six_hours() -> None:
    last = Detection(identity(), (), NOW)
    assert detect.due(None, NOW, rebooted=False)
    assert not detect.due(last, NOW + 6 * 60 * MINUTE - 1, rebooted=False)
    assert detect.due(last, NOW + 6 * 60 * MINUTE, rebooted=False)
    assert detect.due(last, NOW + MINUTE, rebooted=True)


# ---------------------------------------------------------------------------------------------- on a device


CONFIG = """\
type: snmp
name: rtr-01
host: 192.0.2.20
version: v2c
community: c0mmunity
"""

ROUTER: dict[str, SnmpValue] = {  # an ACME router: sysObjectID under ACME, two ports, one optic
    SYS_UPTIME: 1000, SYS_OBJECT_ID: f"{ACME}.1.3", SYS_DESCR: b"RX-48 router",
    f"{IF}.2.1": b"ge-0/0/1", f"{IF}.2.2": b"ge-0/0/2", f"{IF}.8.1": 1, f"{IF}.8.2": 2,
    f"{ACME}.1.1.1": -512, f"{ACME}.1.1.2": -1,
}


def config(text: str = CONFIG) -> SnmpConfig:
    return strict.load(SnmpConfig, text, "agent.yaml")


def source_with(values: dict[str, SnmpValue], text: str = CONFIG) -> tuple[SnmpSource, FakeSnmpClient]:
    fake = FakeSnmpClient(values)
    return SnmpSource(config(text), client_factory=lambda target: fake), fake


def poll(source: SnmpSource, now_ns: int = NOW) -> list[Sample]:
    return asyncio.run(source.collect(now_ns))


def asked_who(fake: FakeSnmpClient) -> bool:
    """Return True if the device was asked its sysObjectID since the calls were last cleared."""
    return ("get", (SYS_OBJECT_ID, SYS_DESCR)) in fake.calls


def test_a_device_without_profiles_is_polled_with_those_that_apply(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.sources.snmp")
    source, fake = source_with(ROUTER)
    samples = poll(source)
    assert samples == [
        Sample("device", {"device": "rtr-01"}, {"up": True, "uptime_s": 10.0}, NOW),
        Sample("interface", {"device": "rtr-01", "ifname": "ge-0/0/1"}, {"oper_up": True}, NOW),
        Sample("interface", {"device": "rtr-01", "ifname": "ge-0/0/2"}, {"oper_up": False}, NOW),
        Sample("optical", {"device": "rtr-01", "port": "port.1"}, {"rx_dbm": -5.12}, NOW),
    ]
    # the same samples as with the profiles configured by hand, in the same order
    configured, _ = source_with(ROUTER, CONFIG + "profiles: [uptime, ports, acme_optics]\n")
    assert poll(configured) == samples
    assert [r.getMessage() for r in caplog.records] == [
        "snmp device rtr-01 (192.0.2.20:161): profiles detected: uptime, ports, acme_optics"]
    assert source.notes() == [f"profiles detected: uptime (1.3.6.1.2.1.1.3 has rows), ports ({IF}.2 has rows), "
                              f"acme_optics (sysObjectID {ACME}.1.3 is under {ACME})"]


def test_detection_asks_once_and_a_column_it_walked_is_not_walked_again() -> None:
    source, fake = source_with(ROUTER)
    poll(source)
    assert fake.calls[:2] == [("get", (SYS_UPTIME,)), ("get", (SYS_OBJECT_ID, SYS_DESCR))]
    walked = [args[0] for method, args in fake.calls if method == "walk"]
    assert walked == ["1.3.6.1.2.1.1.3", f"{IF}.2", f"{IF}.8", "1.3.6.1.4.1.99999.2.1", f"{ACME}.1.1"]
    fake.calls.clear()
    poll(source, NOW + MINUTE)  # the next poll does not ask again
    assert not asked_who(fake)
    assert [args[0] for method, args in fake.calls if method == "walk"] == [f"{IF}.2", f"{IF}.8", f"{ACME}.1.1"]


def test_detection_runs_again_after_a_reboot_and_after_six_hours() -> None:
    source, fake = source_with(ROUTER)
    poll(source)
    fake.calls.clear()
    fake.values[SYS_UPTIME] = 7_000
    poll(source, NOW + MINUTE)
    assert not asked_who(fake)
    fake.values[SYS_UPTIME] = 300  # sysUpTime went back: it restarted, maybe with another card or software
    fake.values[SYS_DESCR] = b"ACME OS 5 on RX-48"
    fake.values["1.3.6.1.4.1.99999.2.1.0"] = 2
    samples = poll(source, NOW + 2 * MINUTE)
    assert asked_who(fake)
    assert [s for s in samples if s.measurement == "power"] == [
        Sample("power", {"device": "rtr-01"}, {"on_battery": True}, NOW + 2 * MINUTE)]
    fake.calls.clear()
    fake.values[SYS_UPTIME] = 400
    poll(source, NOW + 3 * MINUTE)
    assert not asked_who(fake)
    fake.values[SYS_UPTIME] = 400 + 6 * 3600 * 100
    poll(source, NOW + 2 * MINUTE + 6 * 60 * MINUTE)
    assert asked_who(fake)


def test_a_device_that_does_not_answer_is_detected_when_it_answers() -> None:
    source, fake = source_with(ROUTER)
    fake.fail = True
    assert poll(source) == [Sample("device", {"device": "rtr-01"}, {"up": False}, NOW)]
    assert source.notes() == [] and source.profile_report() == {}
    fake.fail = False
    samples = poll(source, NOW + MINUTE)
    assert [s.measurement for s in samples] == ["device", "interface", "interface", "optical"]


class _Refusing(FakeSnmpClient):
    """A fake whose agent refuses walks under ``root`` while ``refuse`` is set."""

    def __init__(self, values: dict[str, SnmpValue], root: str) -> None:
        super().__init__(values)
        self.root, self.refuse = root, True

    async def walk(self, root: str) -> list[tuple[str, SnmpValue]]:
        if self.refuse and root.startswith(self.root):
            self.calls.append(("walk", (root,)))
            raise SnmpError("192.0.2.20:161", "agent answered genErr")
        return await super().walk(root)


def test_a_detection_with_a_failed_read_is_done_again_at_the_next_poll() -> None:
    fake = _Refusing(ROUTER, IF)
    source = SnmpSource(config(), client_factory=lambda target: fake)
    first = poll(source)
    assert [s.measurement for s in first] == ["device", "optical"]  # what could be seen is polled meanwhile
    assert source.profile_report() == {}  # and nothing is judged on a poll that could not read everything
    fake.refuse = False
    fake.calls.clear()
    again = poll(source, NOW + MINUTE)
    assert asked_who(fake)
    assert [s.measurement for s in again] == ["device", "interface", "interface", "optical"]
    fake.calls.clear()
    poll(source, NOW + 2 * MINUTE)
    assert not asked_who(fake)


def test_no_profile_applies() -> None:
    source, _ = source_with({SYS_UPTIME: None, SYS_OBJECT_ID: "1.3.6.1.4.1.8072.3.2.10"})
    assert poll(source) == [Sample("device", {"device": "rtr-01"}, {"up": True}, NOW)]
    assert source.notes() == ["no profile applies to this device (see 'zonewatch-agent discover')"]


# ---------------------------------------------------------------------------------------------- silence


def test_a_profile_that_reads_nothing_is_reported_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.sources.snmp")
    values = {**ROUTER, f"{ACME}.1.1.1": -1}  # the optic's only reading is "no reading"
    source, fake = source_with(values)
    for minute in range(3):
        samples = poll(source, NOW + minute * MINUTE)
    assert "optical" not in [s.measurement for s in samples]
    assert source.profile_report() == {"uptime": False, "ports": False, "acme_optics": True}
    assert source.notes()[1:] == ["profile acme_optics read nothing (no rows, or no usable value)"]
    fake.values[f"{ACME}.1.1.1"] = -420  # a module is plugged in
    poll(source, NOW + 3 * MINUTE)
    poll(source, NOW + 4 * MINUTE)
    assert source.profile_report() == {"uptime": False, "ports": False, "acme_optics": False}
    assert source.notes()[1:] == []
    assert [(r.levelname, r.getMessage()) for r in caplog.records][1:] == [
        ("WARNING", "snmp device rtr-01 (192.0.2.20:161): profile acme_optics read nothing (no rows, or no "
                    "usable value)"),
        ("INFO", "snmp device rtr-01 (192.0.2.20:161): profile acme_optics reads again"),
    ]


def test_a_device_that_answers_with_none_of_its_configured_profiles_is_reported_once(
        caplog: pytest.LogCaptureFixture) -> None:
    # a UPS configured with the router's profiles: it answers sysUpTime, and nothing else it is asked for
    source, _ = source_with({SYS_UPTIME: 5}, CONFIG + "profiles: [uptime, ports, acme_optics]\n")
    for minute in range(3):
        assert poll(source, NOW + minute * MINUTE) == [
            Sample("device", {"device": "rtr-01"}, {"up": True, "uptime_s": 0.05}, NOW + minute * MINUTE)]
    assert [r.getMessage() for r in caplog.records] == [
        "snmp device rtr-01 (192.0.2.20:161) answers, but none of its profiles read anything (ports, acme_optics): "
        "are they this device's MIBs? 'zonewatch-agent discover' shows which profiles apply"]
    assert source.profile_report() == {"uptime": False, "ports": True, "acme_optics": True}
    assert source.notes() == ["profile ports read nothing (no rows, or no usable value)",
                              "profile acme_optics read nothing (no rows, or no usable value)"]


def test_a_poll_cut_short_does_not_count_as_silence(caplog: pytest.LogCaptureFixture) -> None:
    fake = _Refusing(ROUTER, IF)
    source = SnmpSource(config(CONFIG + "profiles: [uptime, ports]\n"), client_factory=lambda target: fake)
    poll(source)
    assert source.profile_report() == {} and source.notes() == []
    assert not [r for r in caplog.records if "read nothing" in r.getMessage()]


def test_the_agent_exports_the_silence_of_each_profile(tmp_path: Path) -> None:
    cfg = strict.load(AgentConfig, f"probe: {{id: p1, zone: z1}}\nspool: {{path: '{tmp_path / 's.db'}'}}\nsources:\n"
                                   "  - {type: snmp, name: rtr-01, host: 192.0.2.20, version: v2c, community: c}\n")
    agent = Agent(cfg, clock=lambda: NOW)
    fake = FakeSnmpClient({**ROUTER, f"{ACME}.1.1.1": -1})
    source = SnmpSource(cfg.sources[0], client_factory=lambda target: fake)  # type: ignore[arg-type]
    agent.sources["rtr-01"] = (cfg.sources[0], source)

    def empty(profile: str) -> float | None:
        return agent.metrics.registry.get_sample_value("zonewatch_snmp_profile_empty",
                                                       {"device": "rtr-01", "profile": profile})

    asyncio.run(agent.poll_once("rtr-01"))
    assert (empty("uptime"), empty("ports"), empty("acme_optics")) == (0, 0, 1)
    fake.values[f"{ACME}.1.1.1"] = -420
    asyncio.run(agent.poll_once("rtr-01"))
    assert empty("acme_optics") == 0


# ---------------------------------------------------------------------------------------------- supersedes


BETTER_OPTICS = """\
name: acme_dom
description: the vendor's own table of the same optics as acme_optics
applies_to: {has_table: [1.3.6.1.4.1.99999.3.1]}
supersedes: [acme_optics]
tables:
  - measurement: optical
    columns: {rx: 1.3.6.1.4.1.99999.3.1}
    tags: {port: [{text: "port.{index}"}]}
    fields: {rx_dbm: {column: rx, scale: 0.01}}
"""


def test_a_profile_that_applies_with_one_it_supersedes_drops_it(monkeypatch: pytest.MonkeyPatch) -> None:
    known = {**KNOWN, "acme_dom": profiles.load(BETTER_OPTICS, "acme_dom.yaml")}
    monkeypatch.setattr(profiles, "shipped", lambda: known)
    both = identity(f"{ACME}.1", "", "1.3.6.1.4.1.99999.3.1")
    assert detect.select(known, both) == [
        Match("acme_optics", f"sysObjectID {ACME}.1 is under {ACME}", superseded_by="acme_dom"),
        Match("acme_dom", "1.3.6.1.4.1.99999.3.1 has rows")]
    assert Detection(both, tuple(detect.select(known, both)), NOW).profiles == ["acme_dom"]
    # alone, the superseded profile is polled as before
    assert detect.select(known, identity(f"{ACME}.1")) == [Match("acme_optics",
                                                                 f"sysObjectID {ACME}.1 is under {ACME}")]
    source, _ = source_with({**ROUTER, "1.3.6.1.4.1.99999.3.1.1": -733})
    assert [s for s in poll(source) if s.measurement == "optical"] == [
        Sample("optical", {"device": "rtr-01", "port": "port.1"}, {"rx_dbm": -7.33}, NOW)]
    assert "profile acme_optics applies too, but acme_dom supersedes it: not polled" in source.notes()


# ---------------------------------------------------------------------------------------------- site profiles


def site(tmp_path: Path, **files: str) -> Path:
    """Return a folder holding the given profile files (name -> text)."""
    folder = tmp_path / "site"
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / f"{name}.yaml").write_text(text)
    return folder


def agent_config(tmp_path: Path, dirs: str, profiles_line: str = "") -> AgentConfig:
    text = (f"probe: {{id: p1, zone: z1}}\nspool: {{path: '{tmp_path / 's.db'}'}}\nprofile_dirs: {dirs}\nsources:\n"
            f"  - {{type: snmp, name: rtr-01, host: 192.0.2.20, version: v2c, community: c{profiles_line}}}\n")
    return strict.load(AgentConfig, text, "agent.yaml")


def test_site_profiles_are_used_by_name_and_by_detection(tmp_path: Path) -> None:
    folder = site(tmp_path, acme_dom=BETTER_OPTICS)
    named = agent_config(tmp_path, f"['{folder}']", ", profiles: [uptime, acme_dom]").sources[0]
    assert isinstance(named, SnmpConfig) and named.profile_dirs == [str(folder)]
    fake = FakeSnmpClient({**ROUTER, "1.3.6.1.4.1.99999.3.1.1": -733})
    samples = poll(SnmpSource(named, client_factory=lambda target: fake))
    assert samples[-1] == Sample("optical", {"device": "rtr-01", "port": "port.1"}, {"rx_dbm": -7.33}, NOW)
    auto = agent_config(tmp_path, f"['{folder}']").sources[0]
    assert isinstance(auto, SnmpConfig)
    source = SnmpSource(auto, client_factory=lambda target: fake)
    poll(source)
    assert source.notes()[0] == ("profiles detected: uptime (1.3.6.1.2.1.1.3 has rows), ports (1.3.6.1.2.1.2.2.1.2 "
                                 "has rows), acme_dom (1.3.6.1.4.1.99999.3.1 has rows)")


def test_a_site_profile_replaces_a_shipped_one_only_when_it_says_so(tmp_path: Path) -> None:
    text = TEST_PROFILES["uptime"].replace("sysUpTime, on every device", "our own uptime")
    folder = site(tmp_path, uptime=text)
    with pytest.raises(strict.ConfigError) as info:
        agent_config(tmp_path, f"['{folder}']")
    assert str(info.value) == (f"{folder / 'uptime.yaml'}:1: name: 'uptime' is the name of a shipped profile: give "
                               "the file another name, or say 'replaces_shipped: true' to use it in the shipped one's "
                               "place")
    site(tmp_path, uptime=text.replace("applies_to:", "replaces_shipped: true\napplies_to:"))
    agent_config(tmp_path, f"['{folder}']")
    assert profiles.catalogue([str(folder)])["uptime"].description == "our own uptime that answers"
    assert list(profiles.catalogue([str(folder)])) == list(KNOWN)   # in the shipped one's place


@pytest.mark.parametrize(("files", "message"), [
    ({"mine": BETTER_OPTICS.replace("acme_dom", "mine").replace("[acme_optics]", "[acme_optix]")},
     "mine.yaml:4: supersedes[0]: no profile is called 'acme_optix'; known profiles: acme_optics, acme_power, "
     "by_name_only, mine, ports, uptime"),
    ({"mine": BETTER_OPTICS.replace("acme_dom", "mine").replace("supersedes:", "replaces_shipped: true\nsupersedes:")},
     "mine.yaml:4: replaces_shipped: there is no shipped profile 'mine' to replace"),
    ({"mine": BETTER_OPTICS.replace("acme_dom", "mine").replace("[acme_optics]", "[mine]")},
     "mine.yaml:4: supersedes[0]: a profile cannot supersede itself"),
    ({"a_dom": BETTER_OPTICS.replace("acme_dom", "a_dom").replace("[acme_optics]", "[b_dom]"),
      "b_dom": BETTER_OPTICS.replace("acme_dom", "b_dom").replace("[acme_optics]", "[a_dom]")},
     "a_dom.yaml: supersedes: 'a_dom' is superseded in turn by a profile it supersedes: profiles may not supersede "
     "one another in a circle"),
    ({"mine": "name: yours\ndescription: x\nscalars: []\n"}, "mine.yaml:1: a profile needs 'scalars' or 'tables'"),
])
def test_a_bad_site_profile_is_an_error_naming_its_file_line_and_key(tmp_path: Path, files: dict[str, str],
                                                                     message: str) -> None:
    folder = site(tmp_path, **files)
    with pytest.raises(strict.ConfigError) as info:
        agent_config(tmp_path, f"['{folder}']")
    assert str(info.value) == f"{folder}/{message}"


def test_profile_dirs_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(strict.ConfigError) as info:
        agent_config(tmp_path, f"['{tmp_path / 'nowhere'}']")
    assert str(info.value) == (f"agent.yaml:3: profile_dirs[0]: '{tmp_path / 'nowhere'}' is not a folder of profile "
                               "files")
    one, two = tmp_path / "one", tmp_path / "two"
    for folder in (one, two):
        folder.mkdir()
        (folder / "acme_dom.yaml").write_text(BETTER_OPTICS)
    with pytest.raises(strict.ConfigError) as info:
        agent_config(tmp_path, f"['{one}', '{two}']")
    assert str(info.value) == (f"{two / 'acme_dom.yaml'}: profile 'acme_dom' is also defined by "
                               f"{one / 'acme_dom.yaml'}: one folder of profile_dirs or the other")
    with pytest.raises(strict.ConfigError) as info:
        agent_config(tmp_path, "[]", ", profiles: [acme_dom]")
    assert str(info.value).startswith("agent.yaml:5: sources[0].profiles[0]: unknown profile 'acme_dom'; known ")
