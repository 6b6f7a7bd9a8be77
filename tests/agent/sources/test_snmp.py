"""SnmpSource and the SNMP client seam, against FakeSnmpClient (no sockets, no sleeps)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from agent import profiles
from agent.snmpclient import FakeSnmpClient, PysnmpClient, SnmpError, SnmpTarget, SnmpTimeout, SnmpValue
from agent.sources.snmp import SnmpConfig, SnmpSource
from zonewatch import strict
from zonewatch.wire import Sample

NOW = 1_764_290_000_000_000_000
SHIPPED = dict(profiles.shipped())
SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
IF = "1.3.6.1.2.1.2.2.1"
IFX = "1.3.6.1.2.1.31.1.1.1"

V2C = """\
type: snmp
name: bts-01
host: 192.0.2.10
version: v2c
community: s3cret-community
site: dv-site-3
links: {ge-0/0/1: dv-fibre-a}
"""
SWITCH_CONFIG = V2C + "profiles: [system, if_mib]\n"  # auto-detection: see test_detect.py

# A switch with ifXTable: ifIndex 1 is the fibre uplink (up, 10G, HC counters past 2^32),
# ifIndex 2 is administratively down, ifIndex 10 sorts after 2 (numeric, not lexicographic OID order).
SWITCH: dict[str, SnmpValue] = {
    SYS_UPTIME: 123456,
    f"{IF}.2.1": b"GigabitEthernet0/0/1", f"{IF}.2.2": b"GigabitEthernet0/0/2", f"{IF}.2.10": b"Vlan10",
    f"{IF}.7.1": 1, f"{IF}.7.2": 2, f"{IF}.7.10": 1,
    f"{IF}.8.1": 1, f"{IF}.8.2": 2, f"{IF}.8.10": 7,
    f"{IF}.10.1": 1000, f"{IF}.10.2": 0, f"{IF}.10.10": 5,
    f"{IF}.16.1": 2000, f"{IF}.16.2": 0, f"{IF}.16.10": 6,
    f"{IF}.14.1": 3, f"{IF}.14.2": 0, f"{IF}.14.10": 0,
    f"{IF}.20.1": 4, f"{IF}.20.2": 0, f"{IF}.20.10": 0,
    f"{IFX}.1.1": b"ge-0/0/1", f"{IFX}.1.2": b"ge-0/0/2", f"{IFX}.1.10": b"vlan10",
    f"{IFX}.6.1": 2**64 - 1, f"{IFX}.6.2": 0, f"{IFX}.6.10": 5,
    f"{IFX}.10.1": 5_000_000_000, f"{IFX}.10.2": 0, f"{IFX}.10.10": 6,
    f"{IFX}.15.1": 10000, f"{IFX}.15.2": 1000, f"{IFX}.15.10": 0,
    # neighbours of the walked columns that must not leak into them
    f"{IF}.3.1": 6, f"{IF}.5.1": 4294967295, "1.3.6.1.2.1.4.1.0": 2,
}


def load(text: str) -> SnmpConfig:
    return strict.load(SnmpConfig, text, "agent.yaml")


def poll(source: SnmpSource, now_ns: int = NOW) -> list[Sample]:
    return asyncio.run(source.collect(now_ns))


def source_with(values: Mapping[str, SnmpValue], text: str = SWITCH_CONFIG) -> tuple[SnmpSource, FakeSnmpClient]:
    fake = FakeSnmpClient(values)
    return SnmpSource(load(text), client_factory=lambda target: fake), fake


# ---------------------------------------------------------------------------------------------- samples


def test_switch_with_ifxtable() -> None:
    source, _ = source_with(SWITCH)
    assert poll(source) == [
        Sample("device", {"device": "bts-01", "site": "dv-site-3"}, {"up": True, "uptime_s": 1234.56}, NOW),
        Sample("interface", {"device": "bts-01", "ifname": "ge-0/0/1", "link": "dv-fibre-a"},
               {"oper_up": True, "admin_up": True, "in_octets": 18446744073709551615,
                "out_octets": 5000000000, "in_errors": 3, "out_errors": 4, "speed_mbps": 10000}, NOW),
        Sample("interface", {"device": "bts-01", "ifname": "ge-0/0/2"},
               {"oper_up": False, "admin_up": False, "in_octets": 0, "out_octets": 0, "in_errors": 0,
                "out_errors": 0, "speed_mbps": 1000}, NOW),
        Sample("interface", {"device": "bts-01", "ifname": "vlan10"},
               {"oper_up": False, "admin_up": True, "in_octets": 5, "out_octets": 6, "in_errors": 0,
                "out_errors": 0, "speed_mbps": 0}, NOW),
    ]


def test_device_without_ifxtable_falls_back_to_ifdescr_32bit_counters_and_ifspeed() -> None:
    old: dict[str, SnmpValue] = {
        SYS_UPTIME: 500,
        f"{IF}.2.1": b"ge-0/0/1", f"{IF}.2.2": b"E1 port 2",
        f"{IF}.5.1": 1_000_000_000, f"{IF}.5.2": 2_048_000,
        f"{IF}.7.1": 1, f"{IF}.7.2": 1,
        f"{IF}.8.1": 1, f"{IF}.8.2": 1,
        f"{IF}.10.1": 4294967295, f"{IF}.10.2": 7,
        f"{IF}.16.1": 12, f"{IF}.16.2": 8,
        f"{IF}.14.1": 0, f"{IF}.14.2": 1,
        f"{IF}.20.1": 0, f"{IF}.20.2": 2,
    }
    source, fake = source_with(old)
    assert poll(source) == [
        Sample("device", {"device": "bts-01", "site": "dv-site-3"}, {"up": True, "uptime_s": 5.0}, NOW),
        Sample("interface", {"device": "bts-01", "ifname": "ge-0/0/1", "link": "dv-fibre-a"},
               {"oper_up": True, "admin_up": True, "in_octets": 4294967295, "out_octets": 12, "in_errors": 0,
                "out_errors": 0, "speed_mbps": 1000}, NOW),
        Sample("interface", {"device": "bts-01", "ifname": "E1 port 2"},
               {"oper_up": True, "admin_up": True, "in_octets": 7, "out_octets": 8, "in_errors": 1,
                "out_errors": 2, "speed_mbps": 2}, NOW),
    ]
    assert ("walk", (f"{IF}.5",)) in fake.calls


def test_ifspeed_is_not_walked_when_ifhighspeed_answers() -> None:
    source, fake = source_with(SWITCH)
    poll(source)
    walked = [args[0] for method, args in fake.calls if method == "walk"]
    assert f"{IF}.5" not in walked
    assert fake.calls[0] == ("get", (SYS_UPTIME,))


def test_missing_columns_leave_fields_out() -> None:
    sparse: dict[str, SnmpValue] = {
        # no sysUpTime, no ifDescr/ifAdminStatus/errors/HC counters; ifName padded and one name empty
        f"{IF}.8.3": 1, f"{IF}.8.4": 2,
        f"{IF}.10.3": 10,
        f"{IFX}.1.3": b"  xe-1/0/0\x00", f"{IFX}.1.4": b"",
        f"{IFX}.15.4": 100,
    }
    source, _ = source_with(sparse, SWITCH_CONFIG.replace("site: dv-site-3\n", ""))
    assert poll(source) == [
        Sample("device", {"device": "bts-01"}, {"up": True}, NOW),
        Sample("interface", {"device": "bts-01", "ifname": "xe-1/0/0"},
               {"oper_up": True, "in_octets": 10}, NOW),
        Sample("interface", {"device": "bts-01", "ifname": "ifIndex.4"},
               {"oper_up": False, "speed_mbps": 100}, NOW),
    ]


def test_values_of_the_wrong_type_are_dropped_and_text_names_accepted() -> None:
    odd: dict[str, SnmpValue] = {SYS_UPTIME: b"soon", f"{IF}.2.1": "eth0", f"{IF}.8.1": b"\x01",
                                 f"{IF}.10.1": None, f"{IF}.14.1": "3"}
    source, _ = source_with(odd)
    assert poll(source) == [
        Sample("device", {"device": "bts-01", "site": "dv-site-3"}, {"up": True}, NOW),
        Sample("interface", {"device": "bts-01", "ifname": "eth0"}, {}, NOW),
    ]


def test_a_port_that_is_not_present_is_left_out_not_sent_as_down() -> None:
    # ifOperStatus notPresent(6): an empty cage or slot (Arista lists its unused lanes so)
    empty_cage: dict[str, SnmpValue] = {f"{IF}.2.3": b"Ethernet3/2", f"{IF}.7.3": 1, f"{IF}.8.3": 6,
                                        f"{IFX}.1.3": b"Ethernet3/2"}
    source, _ = source_with({**SWITCH, **empty_cage})
    assert [s.tags["ifname"] for s in poll(source) if s.measurement == "interface"] == ["ge-0/0/1", "ge-0/0/2",
                                                                                       "vlan10"]


# ---------------------------------------------------------------------------------------------- failures


def test_timeout_gives_up_false_and_logs_once_per_state_change(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.sources.snmp")
    source, fake = source_with(SWITCH)
    fake.fail = True
    down = [Sample("device", {"device": "bts-01", "site": "dv-site-3"}, {"up": False}, NOW)]
    assert poll(source) == down
    assert poll(source, NOW + 1) == [Sample("device", down[0].tags, {"up": False}, NOW + 1)]
    fake.fail = False
    assert len(poll(source)) == 4
    assert len(poll(source)) == 4
    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert messages == [
        ("WARNING",
         "snmp device bts-01 (192.0.2.10:161) is not answering: no response in 0s after 1 tries"),
        ("INFO", "snmp device bts-01 (192.0.2.10:161) recovered"),
    ]
    assert "s3cret" not in caplog.text


def test_first_successful_poll_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="agent.sources.snmp")
    source, _ = source_with(SWITCH)
    poll(source)
    assert caplog.records == []


class _FailingColumn(FakeSnmpClient):
    """A fake whose walk of one column fails with ``error``."""

    def __init__(self, values: Mapping[str, SnmpValue], column: str, error: SnmpError) -> None:
        super().__init__(values)
        self.column, self.error = column, error

    async def walk(self, root: str) -> list[tuple[str, SnmpValue]]:
        if root == self.column:
            raise self.error
        return await super().walk(root)


def test_a_column_with_an_error_is_left_out_and_the_rest_is_read(caplog: pytest.LogCaptureFixture) -> None:
    fake = _FailingColumn(SWITCH, f"{IF}.14", SnmpError("192.0.2.10:161", "agent answered genErr"))
    source = SnmpSource(load(SWITCH_CONFIG), client_factory=lambda target: fake)
    samples = poll(source)
    assert samples[0].fields == {"up": True, "uptime_s": 1234.56}
    assert samples[1].fields == {"oper_up": True, "admin_up": True, "in_octets": 18446744073709551615,
                                 "out_octets": 5000000000, "out_errors": 4, "speed_mbps": 10000}
    assert [r.getMessage() for r in caplog.records] == [
        "snmp device bts-01 (192.0.2.10:161) answered, but 1.3.6.1.2.1.2.2.1.14 could not be read: "
        "agent answered genErr"
    ]


def test_ifspeed_is_not_walked_after_a_failed_read() -> None:
    fake = _FailingColumn(SWITCH, f"{IFX}.15", SnmpError("192.0.2.10:161", "agent answered genErr"))
    source = SnmpSource(load(SWITCH_CONFIG), client_factory=lambda target: fake)
    samples = poll(source)
    assert ("walk", (f"{IF}.5",)) not in fake.calls
    assert "speed_mbps" not in samples[1].fields and samples[1].fields["oper_up"] is True


def test_a_timeout_mid_poll_stops_walking_and_keeps_what_was_read() -> None:
    fake = _FailingColumn(SWITCH, f"{IF}.2", SnmpTimeout("192.0.2.10:161", "no response"))
    source = SnmpSource(load(SWITCH_CONFIG), client_factory=lambda target: fake)
    samples = poll(source)
    walked = [args[0] for method, args in fake.calls if method == "walk"]
    assert walked == [f"{IFX}.1", f"{IFX}.6", f"{IFX}.10", f"{IFX}.15"]  # ifDescr timed out: nothing after it
    assert samples[0].fields == {"up": True, "uptime_s": 1234.56}
    assert samples[1] == Sample("interface", {"device": "bts-01", "ifname": "ge-0/0/1", "link": "dv-fibre-a"},
                                {"in_octets": 18446744073709551615, "out_octets": 5000000000,
                                 "speed_mbps": 10000}, NOW)


# ---------------------------------------------------------------------------------------------- lifecycle


def test_client_is_built_lazily_once_and_closed() -> None:
    built: list[SnmpTarget] = []
    fake = FakeSnmpClient(SWITCH)

    def factory(target: SnmpTarget) -> FakeSnmpClient:
        built.append(target)
        return fake

    source = SnmpSource(load(SWITCH_CONFIG), client_factory=factory)
    assert built == []
    poll(source)
    poll(source)
    assert len(built) == 1
    assert built[0].host == "192.0.2.10" and built[0].community == "s3cret-community"
    asyncio.run(source.close())
    assert fake.closed
    asyncio.run(source.close())  # closing twice, or before any poll, is harmless
    asyncio.run(SnmpSource(load(V2C)).close())


def test_pysnmp_client_constructor_does_no_io_and_close_is_safe_before_use() -> None:
    client = PysnmpClient(SnmpTarget("192.0.2.99", version="v3", user="zw", auth_key="a-key-123",
                                     priv_key="p-key-456"))
    client.close()
    assert "key" not in repr(client)


# ---------------------------------------------------------------------------------------------- fake client


def test_fake_walk_is_numeric_order_under_the_root_only() -> None:
    fake = FakeSnmpClient({"1.3.6.1.10.1": 10, "1.3.6.1.9.2": 92, "1.3.6.1.9.10": 910, "1.3.6.1.9": 9,
                           "1.3.6.1.90.1": 90})
    assert asyncio.run(fake.walk("1.3.6.1.9")) == [("1.3.6.1.9.2", 92), ("1.3.6.1.9.10", 910)]
    assert asyncio.run(fake.walk("1.3.6.1")) == [("1.3.6.1.9", 9), ("1.3.6.1.9.2", 92), ("1.3.6.1.9.10", 910),
                                                 ("1.3.6.1.10.1", 10), ("1.3.6.1.90.1", 90)]
    assert asyncio.run(fake.walk("1.3.6.2")) == []


def test_fake_get_fail_and_bad_oids() -> None:
    fake = FakeSnmpClient({SYS_UPTIME: 5})
    sys_name = "1.3.6.1.2.1.1.5.0"
    assert asyncio.run(fake.get([SYS_UPTIME, sys_name])) == {SYS_UPTIME: 5, sys_name: None}
    with pytest.raises(ValueError, match="no leading dot"):
        asyncio.run(fake.get([".1.3.6.1.2.1.1.3.0"]))
    fake.fail = True
    with pytest.raises(SnmpTimeout):
        asyncio.run(fake.walk("1.3.6.1"))


def test_target_hides_secrets() -> None:
    target = SnmpTarget("10.0.0.1", version="v3", user="zw", auth_key="auth-123", priv_key="priv-456",
                        community="comm-789")
    assert not {"auth-123", "priv-456", "comm-789"} & set(repr(target).replace("'", " ").split())
    assert target.scrub("bad auth-123 / priv-456 / comm-789") == "bad ********** / ********** / **********"


# ---------------------------------------------------------------------------------------------- config


V3 = """\
type: snmp
name: olt-02
host: olt-02.dinh-vu.example
user: zonewatch
auth_key: auth-pass-123
priv_key: {env: ZW_TEST_SNMP_PRIV}
auth_protocol: SHA256
priv_protocol: AES256
timeout: 500ms
retries: 0
bulk: false
interval: 30s
"""


def test_v3_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZW_TEST_SNMP_PRIV", "priv-pass-456")
    config = load(V3)
    target = config.target()
    assert (target.host, target.port, target.version) == ("olt-02.dinh-vu.example", 161, "v3")
    assert target.user == "zonewatch"
    assert (target.auth_key, target.priv_key) == ("auth-pass-123", "priv-pass-456")
    assert (target.auth_protocol, target.priv_protocol, target.timeout, target.retries, target.bulk) == (
        "SHA256", "AES256", 0.5, 0, False)
    assert config.interval == 30.0 and config.links == {} and config.site is None
    assert "pass" not in repr(config)


@pytest.mark.parametrize(("text", "message"), [
    ("type: snmp\nname: bts-01\nhost: 10.0.0.1\nversion: v2c\n",
     "agent.yaml:1: version 'v2c' needs 'community' ({env: NAME}, {file: /path} or a string)"),
    ("type: snmp\nname: bts-01\nhost: 10.0.0.1\nuser: zw\nauth_key: a\n",
     "agent.yaml:1: version 'v3' (authPriv) needs 'user', 'auth_key' and 'priv_key'; missing: 'priv_key'"),
    ("type: snmp\nname: bts-01\nhost: 10.0.0.1\npriv_key: p\n",
     "agent.yaml:1: version 'v3' (authPriv) needs 'user', 'auth_key' and 'priv_key'; "
     "missing: 'user', 'auth_key'"),
    ("type: snmp\nname: bts-01\nhost: 10.0.0.1\ncommunity: public\n",
     "agent.yaml:1: version 'v3' (authPriv) needs 'user', 'auth_key' and 'priv_key'; "
     "missing: 'user', 'auth_key', 'priv_key' (or set version: v2c to use 'community')"),
    ("type: snmp\nname: bts-01\nhost: 10.0.0.1\nversion: v2c\ncommunity: public\nuser: zw\n",
     "agent.yaml:1: 'user' is for version 'v3'; version 'v2c' uses only 'community'"),
    ("type: snmp\nname: bts-01\nhost: 10.0.0.1\nuser: zw\nauth_key: a\npriv_key: p\ncommunity: public\n",
     "agent.yaml:1: 'community' is for version 'v2c'; version 'v3' uses 'user', 'auth_key' and 'priv_key'"),
    ("type: snmp\nname: bts-01\nhost: 10.0.0.1\nversion: v1\ncommunity: public\n",
     "agent.yaml:4: version: expected 'v2c' or 'v3', got 'v1'"),
    ("type: snmp\nname: bts-01\nhost: 10.0.0.1\nversion: v2c\ncommunity: public\ntimeout: 2\n",
     "agent.yaml:6: timeout: expected a duration string with a unit, like '30s' or '1m30s', got 2"),
    ("type: snmp\nname: bts-01\nhost: 10.0.0.1\nversion: v2c\ncommunity: public\ncomunity: x\n",
     "agent.yaml:6: comunity: unknown key 'comunity' (did you mean 'community'?)"),
    ("type: snmp\nname: bts-01\nhost: 10.0.0.1\nversion: v2c\ncommunity: public\nport: 0\n",
     "agent.yaml:6: port: expected greater than or equal to 1, got 0"),
])
def test_config_errors_name_the_key(text: str, message: str) -> None:
    with pytest.raises(strict.ConfigError) as info:
        load(text)
    assert str(info.value) == message


# ---------------------------------------------------------------------------------------------- profiles: config


def with_profiles(profiles: str, *extra: str) -> str:
    return V2C + f"profiles: [{profiles}]\n" + "".join(f"{line}\n" for line in extra)


def test_default_profiles_and_optical_unit() -> None:
    config = load(V2C)
    assert config.profiles is None and config.optical_unit == "auto"  # None: detected (agent.sources.detect)
    assert load(with_profiles("ups_mib, system", "optical_unit: microwatt")).profiles == ["ups_mib", "system"]


def test_shipped_profiles_load_and_are_named_after_their_files() -> None:
    shipped = profiles.shipped()
    assert {"cisco_entity_sensor", "entity_sensor", "huawei_optical", "if_mib", "juniper_dom", "system", "ups_mib",
            "huawei_gpon", "zte_gpon"} <= set(shipped)
    assert all(profile.name == name for name, profile in shipped.items())


@pytest.mark.parametrize(("text", "message"), [
    (with_profiles("system, if_mb"),
     f"agent.yaml:8: profiles[1]: unknown profile 'if_mb'; known profiles: {', '.join(sorted(SHIPPED))}"),
    (with_profiles("system, if_mib, system"), "agent.yaml:8: profiles: 'system' is listed twice"),
    (with_profiles(""),
     f"agent.yaml:8: profiles: name at least one profile; known profiles: {', '.join(sorted(SHIPPED))}"),
    (with_profiles("system", "optical_unit: uW"),
     "agent.yaml:9: optical_unit: expected 'auto', 'dbm_hundredths' or 'microwatt', got 'uW'"),
])
def test_profile_config_errors(text: str, message: str) -> None:
    with pytest.raises(strict.ConfigError) as info:
        load(text)
    assert str(info.value) == message


# ---------------------------------------------------------------------------------------------- system: reboots


def uptimes(*polls: tuple[int, int | None]) -> list[dict[str, object]]:
    """Poll a device whose sysUpTime is ``ticks`` (None: no answer) at ``seconds``; return the device fields."""
    fake = FakeSnmpClient({})
    source = SnmpSource(load(with_profiles("system")), client_factory=lambda target: fake)
    out = []
    for seconds, ticks in polls:
        fake.fail = ticks is None
        fake.values[SYS_UPTIME] = ticks
        out.append(dict(poll(source, NOW + seconds * 10**9)[0].fields))
    return out


def test_sysuptime_going_backwards_is_a_reboot_on_that_poll_only(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.sources.snmp")
    assert uptimes((0, 9_000_000), (60, 9_006_000), (120, 1_500), (180, 7_500)) == [
        {"up": True, "uptime_s": 90000.0},
        {"up": True, "uptime_s": 90060.0},
        {"up": True, "uptime_s": 15.0, "rebooted": True},
        {"up": True, "uptime_s": 75.0},
    ]
    assert [r.getMessage() for r in caplog.records] == [
        "snmp device bts-01 (192.0.2.10:161) rebooted: sysUpTime went backwards"]


def test_a_reboot_while_the_device_did_not_answer_is_seen_when_it_answers_again() -> None:
    fields = uptimes((0, 9_000_000), (60, None), (120, None), (180, 3_000))
    assert [f.get("rebooted") for f in fields] == [None, None, None, True]
    assert fields[1] == {"up": False}


def test_a_wrap_of_sysuptime_is_not_a_reboot() -> None:
    near_end = 2**32 - 2_000  # 20 s before the 32-bit TimeTicks wrap (about 497 days)
    assert [f.get("rebooted") for f in uptimes((0, near_end), (60, 4_000))] == [None, None]
    # the same drop far from the wrap point is a reboot
    assert [f.get("rebooted") for f in uptimes((0, 2**31), (60, 4_000))] == [None, True]


def test_first_poll_and_equal_or_rising_uptime_are_no_reboot() -> None:
    assert [f.get("rebooted") for f in uptimes((0, 5), (0, 5), (60, 6_005))] == [None, None, None]


def test_without_the_system_profile_the_device_sample_has_up_only() -> None:
    source, _ = source_with({SYS_UPTIME: 123456}, with_profiles("if_mib"))
    assert poll(source) == [Sample("device", {"device": "bts-01", "site": "dv-site-3"}, {"up": True}, NOW)]


# ---------------------------------------------------------------------------------------------- optical


ENT = "1.3.6.1.2.1.47.1.1.1.1"  # entPhysicalTable: .2 descr, .4 containedIn, .5 class, .7 name
SENSOR = "1.3.6.1.2.1.99.1.1.1"  # entPhySensorTable: .1 type .2 scale .3 precision .4 value .5 status .6 units
CISCO = "1.3.6.1.4.1.9.9.91.1.1.1.1"  # entSensorValueTable: the same first five columns
JNX = "1.3.6.1.4.1.2636.3.60.1.1.1.1"  # jnxDomCurrentTable: .5 rx, .7 tx, .8 temperature
HW = "1.3.6.1.4.1.2011.5.25.31.1.1.3.1"  # hwOpticalModuleInfoTable: .8 rx, .9 tx


def entity(index: int, name: str, descr: str = "", parent: int = 0, cls: int = 8) -> dict[str, SnmpValue]:
    return {f"{ENT}.7.{index}": name.encode(), f"{ENT}.2.{index}": descr.encode(), f"{ENT}.4.{index}": parent,
            f"{ENT}.5.{index}": cls}


def sensor(table: str, index: int, kind: int, scale: int, precision: int, value: int, status: int = 1,
           units: str | None = None) -> dict[str, SnmpValue]:
    out: dict[str, SnmpValue] = {f"{table}.1.{index}": kind, f"{table}.2.{index}": scale,
                                 f"{table}.3.{index}": precision, f"{table}.4.{index}": value,
                                 f"{table}.5.{index}": status}
    if units is not None:
        out[f"{table}.6.{index}"] = units.encode()
    return out


def optical_of(samples: list[Sample]) -> list[tuple[str, dict[str, object]]]:
    return [(s.tags["port"], dict(s.fields)) for s in samples if s.measurement == "optical"]


def test_entity_sensor_watts_and_dbm_sensors_per_port() -> None:
    values: dict[str, SnmpValue] = {
        SYS_UPTIME: 1,
        # a transceiver lane (module, 9) holding an RX and a TX watts sensor: milli, precision 4
        **entity(1000, "", "Lane 0 for Xcvr for Ethernet5", parent=100, cls=9),
        **entity(1001, "", "DOM RX Power Sensor for Ethernet5", parent=1000),
        **sensor(SENSOR, 1001, 6, 8, 4, 4025),  # 0.4025 mW
        **entity(1002, "", "DOM TX Power Sensor for Ethernet5", parent=1000),
        **sensor(SENSOR, 1002, 6, 8, 4, 6015),  # 0.6015 mW
        # a port (10) with other(1) sensors in "dBm", units, precision 1; the Tx one unavailable(2)
        **entity(2000, "Ethernet6", "SFP-10G-LR", parent=100, cls=10),
        **entity(2001, "Ethernet6 Rx Power", parent=2000),
        **sensor(SENSOR, 2001, 1, 9, 1, -35, units=" dBm "),
        **entity(2002, "Ethernet6 Tx Power", parent=2000),
        **sensor(SENSOR, 2002, 1, 9, 1, -21, status=2, units="dBm"),
        # sensors in the chassis: a port cannot be found, so the sensor names the port; a dark receiver (0 W)
        **entity(3001, "Et7 Receive Power", parent=1, cls=8),
        **sensor(SENSOR, 3001, 6, 8, 4, 0),
        **entity(3002, "Et7 Transmit Power", parent=1, cls=8),
        **sensor(SENSOR, 3002, 6, 8, 4, 5000),  # 0.5 mW
        **entity(1, "Chassis", "7150S-52", cls=3),
        # not optical power: a PSU's watts, a transceiver temperature, a bogus precision, other(1) in volts
        **entity(4001, "PSU1 input power", parent=1), **sensor(SENSOR, 4001, 6, 9, 0, 250),
        **entity(4002, "Ethernet6 Rx temperature", parent=2000), **sensor(SENSOR, 4002, 8, 9, 1, 325),
        **entity(4003, "Ethernet8 Rx Power", parent=1), **sensor(SENSOR, 4003, 6, 8, 1615384784, -1931),
        **entity(4004, "Ethernet9 Rx Power", parent=1), **sensor(SENSOR, 4004, 1, 9, 0, -3, units="V"),
    }
    source, _ = source_with(values, with_profiles("entity_sensor"))
    samples = poll(source)
    assert optical_of(samples) == [
        ("Ethernet5", {"rx_dbm": -3.95, "tx_dbm": -2.21}),  # 10 log10(0.4025), (0.6015); the lane's port
        ("Ethernet6", {"rx_dbm": -3.5}),
        ("Et7 Transmit Power", {"tx_dbm": -3.01}),
    ]
    assert all(type(v) is float for _, fields in optical_of(samples) for v in fields.values())
    assert samples[1].tags == {"device": "bts-01", "port": "Ethernet5"}


def test_cisco_entity_sensor_dbm_and_watts() -> None:
    values: dict[str, SnmpValue] = {
        SYS_UPTIME: 1,
        **entity(10, "Ethernet1/1", "10G SFP", parent=5, cls=10),
        **entity(11, "Ethernet1/1 Receive Power Sensor", parent=10), **sensor(CISCO, 11, 14, 8, 0, -1931),
        **entity(12, "Ethernet1/1 Transmit Power Sensor", parent=10), **sensor(CISCO, 12, 14, 8, 0, -2456),
        **entity(13, "Ethernet1/1 Bias Current Sensor", parent=10), **sensor(CISCO, 13, 5, 7, 0, 6000),
        # a second Rx sensor of the same port (a lane): the first row's value wins
        **entity(14, "Ethernet1/1 Lane 2 Receive Power Sensor", parent=10), **sensor(CISCO, 14, 14, 8, 0, -5000),
        # IOS-XR: watts, micro, precision 1: 501.2 uW
        **entity(20, "TenGigE0/0/0/1", parent=5, cls=10),
        **entity(21, "Rx Power TenGigE0/0/0/1", parent=20), **sensor(CISCO, 21, 6, 7, 1, 5012),
        **entity(22, "Tx Power TenGigE0/0/0/1", parent=20), **sensor(CISCO, 22, 6, 7, 1, 0),
        # no light: -127 dBm; no reading: -32768; nonoperational(3)
        **entity(30, "Ethernet1/2", parent=5, cls=10),
        **entity(31, "Ethernet1/2 Receive Power Sensor", parent=30), **sensor(CISCO, 31, 14, 9, 0, -127),
        **entity(32, "Ethernet1/2 Transmit Power Sensor", parent=30), **sensor(CISCO, 32, 14, 8, 0, -32768),
        **entity(40, "Ethernet1/3", parent=5, cls=10),
        **entity(41, "Ethernet1/3 Receive Power Sensor", parent=40), **sensor(CISCO, 41, 14, 9, 1, -127),
        **entity(42, "Ethernet1/3 Transmit Power Sensor", parent=40), **sensor(CISCO, 42, 14, 9, 1, -20, status=3),
        # a Nexus whose entity table does not list its sensors: Rx and Tx cannot be told, nothing is reported
        **sensor(CISCO, 25827, 14, 8, 0, -1931), **sensor(CISCO, 25828, 14, 8, 0, -2456),
    }
    source, _ = source_with(values, with_profiles("cisco_entity_sensor"))
    assert optical_of(poll(source)) == [
        ("Ethernet1/1", {"rx_dbm": -1.93, "tx_dbm": -2.46}),  # -1931 x 10^-3, to 0.01 dB
        ("TenGigE0/0/0/1", {"rx_dbm": -3.0}),  # 10 log10(0.5012 mW); 0 W gives no dBm
        ("Ethernet1/3", {"rx_dbm": -12.7}),  # -127 with precision 1 is a reading
    ]


def test_juniper_dom_hundredths_of_dbm_by_ifindex() -> None:
    values: dict[str, SnmpValue] = {
        SYS_UPTIME: 1,
        f"{IFX}.1.550": b"ge-0/0/1", f"{JNX}.5.550": -865, f"{JNX}.7.550": -712, f"{JNX}.8.550": 28,
        f"{IFX}.1.556": b"ge-0/0/5", f"{JNX}.5.556": 0, f"{JNX}.7.556": 0, f"{JNX}.8.556": 0,  # no DOM
        f"{IFX}.1.724": b"ge-1/1/3", f"{JNX}.5.724": 0, f"{JNX}.7.724": -591, f"{JNX}.8.724": 37,  # dark Rx
        f"{IF}.2.900": b"xe-9/0/0", f"{JNX}.5.900": -1001, f"{JNX}.7.900": 89, f"{JNX}.8.900": 30,  # no ifName
        f"{JNX}.5.901": -3154, f"{JNX}.7.901": -549,  # no name at all
        f"{JNX}.5.902": -32768, f"{JNX}.7.902": 6000,  # -327.68 and +60 dBm: not readings
    }
    source, _ = source_with(values, with_profiles("juniper_dom"))
    assert optical_of(poll(source)) == [
        ("ge-0/0/1", {"rx_dbm": -8.65, "tx_dbm": -7.12}),
        ("ge-1/1/3", {"tx_dbm": -5.91}),
        ("xe-9/0/0", {"rx_dbm": -10.01, "tx_dbm": 0.89}),
        ("ifIndex.901", {"rx_dbm": -31.54, "tx_dbm": -5.49}),
    ]


HUAWEI_UW: dict[str, SnmpValue] = {  # older firmware: microwatts, -1 for an empty cage
    SYS_UPTIME: 1,
    f"{ENT}.7.67747854": b"XGigabitEthernet2/0/0", f"{HW}.8.67747854": 331, f"{HW}.9.67747854": 578,
    f"{ENT}.7.67748430": b"XGigabitEthernet2/0/9", f"{HW}.8.67748430": 0, f"{HW}.9.67748430": 535,
    f"{ENT}.7.67748622": b"XGigabitEthernet2/0/12", f"{HW}.8.67748622": -1, f"{HW}.9.67748622": -1,
}
HUAWEI_DBM: dict[str, SnmpValue] = {  # current firmware: 0.01 dBm
    SYS_UPTIME: 1,
    f"{ENT}.7.67436622": b"GigabitEthernet0/0/1", f"{HW}.8.67436622": -420, f"{HW}.9.67436622": 150,
    f"{ENT}.7.67436686": b"GigabitEthernet0/0/2", f"{HW}.8.67436686": -1, f"{HW}.9.67436686": 2147483647,
    f"{HW}.8.67436750": 0, f"{HW}.9.67436750": -250,
}


@pytest.mark.parametrize(("values", "unit", "expected"), [
    (HUAWEI_UW, "auto", [("XGigabitEthernet2/0/0", {"rx_dbm": -4.8, "tx_dbm": -2.38}),  # 10 log10(uW / 1000)
                         ("XGigabitEthernet2/0/9", {"tx_dbm": -2.72})]),  # 0 uW: no light, no dBm
    (HUAWEI_UW, "microwatt", [("XGigabitEthernet2/0/0", {"rx_dbm": -4.8, "tx_dbm": -2.38}),
                              ("XGigabitEthernet2/0/9", {"tx_dbm": -2.72})]),
    # 0 dBm from a port not known to be up (no alias mapping here) is a dark port: no reading
    (HUAWEI_UW, "dbm_hundredths", [("XGigabitEthernet2/0/0", {"rx_dbm": 3.31, "tx_dbm": 5.78}),
                                   ("XGigabitEthernet2/0/9", {"tx_dbm": 5.35})]),
    (HUAWEI_DBM, "auto", [("GigabitEthernet0/0/1", {"rx_dbm": -4.2, "tx_dbm": 1.5}),
                          ("entPhysicalIndex.67436750", {"tx_dbm": -2.5})]),
    (HUAWEI_DBM, "dbm_hundredths", [("GigabitEthernet0/0/1", {"rx_dbm": -4.2, "tx_dbm": 1.5}),
                                    ("entPhysicalIndex.67436750", {"tx_dbm": -2.5})]),
])
def test_huawei_optical_units(values: dict[str, SnmpValue], unit: str, expected: list[object]) -> None:
    source, _ = source_with(values, with_profiles("huawei_optical", f"optical_unit: {unit}"))
    assert optical_of(poll(source)) == expected


ALIAS = "1.3.6.1.2.1.47.1.3.2.1.2"  # entAliasMappingIdentifier, indexed by entPhysicalIndex.logical
IF_INDEX = "1.3.6.1.2.1.2.2.1.1"


def test_sensors_are_named_after_the_interface_their_port_maps_to() -> None:
    values: dict[str, SnmpValue] = {
        SYS_UPTIME: 1,
        # IOS-XE style: the sensors sit in the port entity, whose alias (logical index 0) is ifIndex 10101
        **entity(1018, "GigabitEthernet1/0/52", parent=1, cls=10), f"{ALIAS}.1018.0": f"{IF_INDEX}.10101",
        f"{IFX}.1.10101": b"Gi1/0/52", f"{IF}.8.10101": 1,
        **entity(1019, "Gi1/0/52 Receive Power Sensor", parent=1018), **sensor(CISCO, 1019, 14, 9, 1, -60),
        **entity(1020, "Gi1/0/52 Transmit Power Sensor", parent=1018), **sensor(CISCO, 1020, 14, 9, 1, 0),
        # IOS-XR style: sensor in a transceiver module (9) in the port (10); alias under logical index 1
        **entity(2000, "TenGigE0/0/0/1", parent=1, cls=10), f"{ALIAS}.2000.1": f"{IF_INDEX}.21",
        f"{ALIAS}.2000.2": f"{IF_INDEX}.99", f"{IFX}.1.21": b"Te0/0/0/1", f"{IF}.8.21": 2,
        **entity(2001, "TenGigE0/0/0/1 SFP", parent=2000, cls=9),
        **entity(2002, "TenGigE0/0/0/1 Rx Power", parent=2001), **sensor(CISCO, 2002, 14, 9, 1, 0),
        **entity(2003, "TenGigE0/0/0/1 Tx Power", parent=2001), **sensor(CISCO, 2003, 14, 9, 1, -22),
        # the floor: -40.0 dBm is no reading, even on a port that is up
        **entity(3000, "Gi1/0/53", parent=1, cls=10), f"{ALIAS}.3000.0": f"{IF_INDEX}.10102",
        f"{IFX}.1.10102": b"Gi1/0/53", f"{IF}.8.10102": 1,
        **entity(3001, "Gi1/0/53 Receive Power Sensor", parent=3000), **sensor(CISCO, 3001, 14, 9, 1, -400),
        **entity(3002, "Gi1/0/53 Transmit Power Sensor", parent=3000), **sensor(CISCO, 3002, 14, 9, 1, -399),
        # a mapping that points elsewhere than ifIndex is not followed: the entity's name stays
        **entity(4000, "Gi1/0/54", parent=1, cls=10), f"{ALIAS}.4000.0": "1.3.6.1.2.1.4.20.1.1.10",
        **entity(4001, "Gi1/0/54 Receive Power Sensor", parent=4000), **sensor(CISCO, 4001, 14, 9, 1, -33),
    }
    source, _ = source_with(values, with_profiles("cisco_entity_sensor"))
    assert optical_of(poll(source)) == [
        ("Gi1/0/52", {"rx_dbm": -6.0, "tx_dbm": 0.0}),  # the port is up: its 0.0 dBm is a reading
        ("Te0/0/0/1", {"tx_dbm": -2.2}),  # down, Rx exactly 0: a dark receiver; the lowest logical index
        ("Gi1/0/53", {"tx_dbm": -39.9}),
        ("Gi1/0/54", {"rx_dbm": -3.3}),
    ]


def test_juniper_dark_receivers_and_the_floor() -> None:
    values: dict[str, SnmpValue] = {
        SYS_UPTIME: 1,
        f"{IFX}.1.550": b"ge-0/0/1", f"{IF}.8.550": 1, f"{JNX}.5.550": 0, f"{JNX}.7.550": -712, f"{JNX}.8.550": 28,
        f"{IFX}.1.551": b"ge-0/0/2", f"{IF}.8.551": 2, f"{JNX}.5.551": 0, f"{JNX}.7.551": 0, f"{JNX}.8.551": 30,
        f"{IFX}.1.552": b"ge-0/0/3", f"{IF}.8.552": 2, f"{JNX}.5.552": -4000, f"{JNX}.7.552": -300,
        f"{JNX}.8.552": 30,
    }
    source, _ = source_with(values, with_profiles("juniper_dom"))
    assert optical_of(poll(source)) == [
        ("ge-0/0/1", {"rx_dbm": 0.0, "tx_dbm": -7.12}),  # up: 0.00 dBm received is a reading
        ("ge-0/0/3", {"tx_dbm": -3.0}),  # -40.00 dBm: the floor; ge-0/0/2 is down and all 0 but temperature
    ]


def test_huawei_zero_from_an_up_port_is_a_reading_from_a_down_one_is_not() -> None:
    values: dict[str, SnmpValue] = {
        SYS_UPTIME: 1,
        f"{ENT}.7.17039617": b"GigabitEthernet4/0/0", f"{ALIAS}.17039617.1": f"{IF_INDEX}.12",
        f"{IFX}.1.12": b"GigabitEthernet4/0/0", f"{IF}.8.12": 2, f"{HW}.8.17039617": 0, f"{HW}.9.17039617": 0,
        f"{ENT}.7.17039618": b"GigabitEthernet4/0/1", f"{ALIAS}.17039618.1": f"{IF_INDEX}.13",
        f"{IFX}.1.13": b"GE4/0/1", f"{IF}.8.13": 1, f"{HW}.8.17039618": 0, f"{HW}.9.17039618": -227,
    }
    source, _ = source_with(values, with_profiles("huawei_optical"))
    assert optical_of(poll(source)) == [("GE4/0/1", {"rx_dbm": 0.0, "tx_dbm": -2.27})]


def test_huawei_with_only_empty_cages_gives_no_optical_sample() -> None:
    values: dict[str, SnmpValue] = {SYS_UPTIME: 1, f"{HW}.8.1": -1, f"{HW}.9.1": -1, f"{HW}.8.2": -1,
                                    f"{HW}.9.2": -1}
    source, _ = source_with(values, with_profiles("system, huawei_optical"))
    assert [s.measurement for s in poll(source)] == ["device"]


# ---------------------------------------------------------------------------------------------- power


UPS = "1.3.6.1.2.1.33.1"
EATON: dict[str, SnmpValue] = {  # the Eaton 93E walk of snmpsim-data: on mains, battery normal
    SYS_UPTIME: 67423732, f"{UPS}.2.1.0": 2, f"{UPS}.2.2.0": 0, f"{UPS}.2.3.0": 1092, f"{UPS}.2.4.0": 100,
    f"{UPS}.4.1.0": 3,
}


def power_of(values: dict[str, SnmpValue]) -> dict[str, object] | None:
    source, _ = source_with(values, with_profiles("ups_mib"))
    found = [s for s in poll(source) if s.measurement == "power"]
    assert len(found) <= 1
    if found:
        assert found[0].tags == {"device": "bts-01", "site": "dv-site-3"}
    return dict(found[0].fields) if found else None


ON_MAINS = {"on_battery": False, "battery_low": False, "battery_minutes": 1092, "battery_pct": 100,
            "seconds_on_battery": 0, "inverter_mode": False, "on_bypass": False}
NO_SOURCE = {"inverter_mode": None, "on_bypass": None}  # no upsOutputSource: neither state is known


@pytest.mark.parametrize(("changes", "expected"), [
    ({}, ON_MAINS),
    ({"4.1.0": 5, "2.2.0": 120, "2.3.0": 30, "2.4.0": 80},  # battery(5) for two minutes
     {"on_battery": True, "battery_low": False, "battery_minutes": 30, "battery_pct": 80, "seconds_on_battery": 120,
      "inverter_mode": False, "on_bypass": False}),
    ({"4.1.0": None, "2.2.0": 30}, {**ON_MAINS, **NO_SOURCE, "on_battery": True, "seconds_on_battery": 30}),
    ({"4.1.0": 5, "2.2.0": -1}, {**ON_MAINS, "on_battery": True, "seconds_on_battery": None}),
    ({"4.1.0": 4}, {**ON_MAINS, "on_bypass": True}),  # bypass(4) is not battery: a state of its own
    ({"4.1.0": -1, "2.2.0": -1}, {**ON_MAINS, **NO_SOURCE, "on_battery": None, "seconds_on_battery": None}),
    # the inverter rule: battery(5) while input line 1 is above the low transfer point is inverter mode
    ({"4.1.0": 5, "2.2.0": 600, "3.3.1.3.1": 229, "9.9.0": 170},
     {**ON_MAINS, "mains_present": True, "inverter_mode": True, "seconds_on_battery": 600}),
    ({"4.1.0": 5, "2.2.0": 600, "3.3.1.3.1": 0, "9.9.0": 170},  # the input is gone: on battery
     {**ON_MAINS, "mains_present": False, "on_battery": True, "seconds_on_battery": 600}),
    ({"2.1.0": 3}, {**ON_MAINS, "battery_low": True}),  # batteryLow(3)
    ({"2.1.0": 4}, {**ON_MAINS, "battery_low": True}),  # batteryDepleted(4)
    ({"2.1.0": 1}, {**ON_MAINS, "battery_low": None}),  # unknown(1)
    ({"2.3.0": -1, "2.4.0": -1}, {**ON_MAINS, "battery_minutes": None, "battery_pct": None}),  # the GSE200M
    ({"2.4.0": 101, "2.3.0": b"1092"}, {**ON_MAINS, "battery_minutes": None, "battery_pct": None}),
])
def test_ups_fields(changes: dict[str, SnmpValue], expected: dict[str, object]) -> None:
    values = {**EATON, **{f"{UPS}.{oid}": value for oid, value in changes.items()}}
    assert power_of(values) == {k: v for k, v in expected.items() if v is not None}


def test_ups_unsupported_everywhere_gives_no_power_sample() -> None:
    assert power_of({SYS_UPTIME: 1}) is None  # an APC without RFC 1628: nothing answers under UPS-MIB


# ---------------------------------------------------------------------------------------------- poll mechanics


def test_scalars_are_read_in_one_get_after_the_reachability_get() -> None:
    source, fake = source_with(EATON, with_profiles("system, ups_mib"))
    samples = poll(source)
    assert fake.calls == [("get", (SYS_UPTIME,)),
                          ("get", (f"{UPS}.2.1.0", f"{UPS}.2.2.0", f"{UPS}.2.3.0", f"{UPS}.2.4.0", f"{UPS}.4.1.0",
                                   f"{UPS}.3.3.1.3.1", f"{UPS}.9.9.0"))]
    assert [s.measurement for s in samples] == ["device", "power"]
    assert samples[0].fields == {"up": True, "uptime_s": 674237.32}


class _RefusingBatches(FakeSnmpClient):
    """A fake whose agent refuses a GET of more than one OID, and one OID always."""

    def __init__(self, values: Mapping[str, SnmpValue], bad: str) -> None:
        super().__init__(values)
        self.bad = bad

    async def get(self, oids: Sequence[str]) -> dict[str, SnmpValue]:
        if len(oids) > 1 or self.bad in oids:
            self.calls.append(("get", tuple(oids)))
            raise SnmpError("192.0.2.10:161", "agent answered noSuchName")
        return await super().get(oids)


def test_a_refused_get_is_retried_one_oid_at_a_time(caplog: pytest.LogCaptureFixture) -> None:
    fake = _RefusingBatches(EATON, f"{UPS}.2.4.0")
    source = SnmpSource(load(with_profiles("ups_mib")), client_factory=lambda target: fake)
    (power,) = [s for s in poll(source) if s.measurement == "power"]
    assert power.fields == {"on_battery": False, "battery_low": False, "battery_minutes": 1092,
                            "seconds_on_battery": 0, "inverter_mode": False, "on_bypass": False}
    assert [len(args) for method, args in fake.calls] == [1, 7, 1, 1, 1, 1, 1, 1, 1]
    assert [r.getMessage() for r in caplog.records] == [
        "snmp device bts-01 (192.0.2.10:161) answered, but 1.3.6.1.2.1.33.1.2.4.0 could not be read: "
        "agent answered noSuchName"]


def test_a_column_read_by_two_profiles_is_walked_once_and_joins_only_for_present_tables() -> None:
    values: dict[str, SnmpValue] = {
        SYS_UPTIME: 1, **entity(10, "Ethernet1/1", parent=5, cls=10),
        **entity(11, "Ethernet1/1 Receive Power Sensor", parent=10), **sensor(CISCO, 11, 14, 8, 0, -1931),
    }
    source, fake = source_with(values, with_profiles("entity_sensor, cisco_entity_sensor, juniper_dom"))
    assert optical_of(poll(source)) == [("Ethernet1/1", {"rx_dbm": -1.93})]
    walked = [args[0] for method, args in fake.calls if method == "walk"]
    assert len(walked) == len(set(walked))
    assert f"{ENT}.7" in walked  # for the Cisco table
    assert walked[:6] == [f"{SENSOR}.{c}" for c in range(1, 7)]  # no entity sensor: no entity walks after it
    assert walked[6:11] == [f"{CISCO}.{c}" for c in range(1, 6)]
    assert walked[-3:] == [f"{JNX}.5", f"{JNX}.7", f"{JNX}.8"]  # no DOM rows: ifName is not walked for them


def test_a_timeout_in_a_later_profile_keeps_the_earlier_samples() -> None:
    fake = _FailingColumn({**SWITCH, **EATON, SYS_UPTIME: 123456}, f"{JNX}.5", SnmpTimeout("x", "no response"))
    source = SnmpSource(load(with_profiles("system, ups_mib, if_mib, juniper_dom")),
                        client_factory=lambda target: fake)
    samples = poll(source)
    assert [s.measurement for s in samples] == ["device", "power", "interface", "interface", "interface"]


def test_a_new_device_type_is_a_profile_file(monkeypatch: pytest.MonkeyPatch) -> None:
    text = """\
name: zte_optical
description: ZTE-like optical table in 0.001 dBm, rows named by a column of the table.
tables:
  - measurement: optical
    columns:
      port: 1.3.6.1.4.1.3902.3.103.11.1.1.2
      rx: 1.3.6.1.4.1.3902.3.103.11.1.1.5
      tx: 1.3.6.1.4.1.3902.3.103.11.1.1.6
    tags:
      port: [port]
    fields:
      rx_dbm: {column: rx, missing: [-40000], scale: 0.001}
      tx_dbm: {column: tx, missing: [-40000], scale: 0.001}
"""
    monkeypatch.setattr(profiles, "shipped", lambda: {**SHIPPED, "zte_optical": profiles.load(text, "zte.yaml")})
    table = "1.3.6.1.4.1.3902.3.103.11.1.1"
    values: dict[str, SnmpValue] = {SYS_UPTIME: 1, f"{table}.2.1.7": b"xgei-1/7", f"{table}.5.1.7": -3217,
                                    f"{table}.6.1.7": -40000}
    source, _ = source_with(values, with_profiles("zte_optical"))
    assert optical_of(poll(source)) == [("xgei-1/7", {"rx_dbm": -3.217})]


def test_a_conversion_beyond_64_bits_leaves_the_field_out(monkeypatch: pytest.MonkeyPatch) -> None:
    # "round: 0" makes an integer: a Counter64 near its top times 8 (octets to bits) no field can hold.
    text = """\
name: bits
description: a counter of octets as bits
tables:
  - measurement: interface
    columns:
      name: 1.3.6.1.4.1.9999.1.1
      octets: 1.3.6.1.4.1.9999.1.2
    tags:
      ifname: [name]
    fields:
      in_bits: {column: octets, scale: 8, round: 0}
"""
    monkeypatch.setattr(profiles, "shipped", lambda: {**SHIPPED, "bits": profiles.load(text, "bits.yaml")})
    values: dict[str, SnmpValue] = {SYS_UPTIME: 1, "1.3.6.1.4.1.9999.1.1.1": b"ge-1", "1.3.6.1.4.1.9999.1.2.1": 1000,
                                    "1.3.6.1.4.1.9999.1.1.2": b"ge-2", "1.3.6.1.4.1.9999.1.2.2": 2**64 - 1}
    source, _ = source_with(values, with_profiles("bits"))
    rows = [(s.tags["ifname"], dict(s.fields)) for s in poll(source) if s.measurement == "interface"]
    assert rows == [("ge-1", {"in_bits": 8000})]  # ge-2 is left without fields, so without a sample


# ---------------------------------------------------------------------------------------------- profile files


PROFILE = """\
name: p
description: d
tables:
  - measurement: optical
    columns:
      rx: 1.3.6.1.4.1.1.5
      tx: 1.3.6.1.4.1.1.7
    tags:
      port: [rx, {text: "ifIndex.{index}"}]
    fields:
      rx_dbm: {column: rx, scale: 0.01}
"""


@pytest.mark.parametrize(("old", "new", "message"), [
    ("{column: rx, scale", "{column: rxx, scale",
     "p.yaml:4: tables[0]: field 'rx_dbm' uses 'rxx', which is not one of: rx, tx"),
    ("rx: 1.3.6.1.4.1.1.5", "rx: .1.3.6.1.4.1.1.5",
     "p.yaml:6: tables[0].columns.rx.oid: expected a numeric OID like '1.3.6.1.2.1.1.3.0' (no leading dot), "
     "got '.1.3.6.1.4.1.1.5'"),
    ("{column: rx, scale: 0.01}", "{column: rx, when: [{column: tx, matches: '(rx'}]}",
     "p.yaml:11: tables[0].fields.rx_dbm[0].when[0].matches: not a valid regular expression (missing ), "
     "unterminated subpattern at position 0): '(rx'"),
    ("scale: 0.01", "scael: 0.01", "p.yaml:11: tables[0].fields.rx_dbm[0].scael: unknown key 'scael' "
     "(did you mean 'scale'?)"),
    ("scale: 0.01", "unit: dBm", "p.yaml:11: tables[0].fields.rx_dbm[0].unit: expected 'dbm', 'watt_to_dbm', "
     "'milliwatt_to_dbm', 'microwatt_to_dbm' or 'optical_unit', got 'dBm'"),
    ("scale: 0.01", "decode: entity_sensor",
     "p.yaml:4: tables[0]: field 'rx_dbm': decode 'entity_sensor' needs columns named 'scale' and 'precision'"),
    ("scale: 0.01", "scale: 0.01, one_of: [1]",
     "p.yaml:11: tables[0].fields.rx_dbm[0]: 'one_of' gives a boolean: it takes no 'decode', 'scale', 'unit', "
     "'round' or 'valid'"),
    ("scale: 0.01", "detect: uptime_went_backwards",
     "p.yaml:4: tables[0]: field 'rx_dbm': 'detect' works on scalars only (one value per device)"),
    ('port: [rx, {text: "ifIndex.{index}"}]', "port: [{links_of: link}]",
     "p.yaml:4: tables[0]: tag 'port': links_of 'link' must name an earlier tag"),
    ("ifIndex.{index}", "ifIndex.{ifindex}",
     "p.yaml:9: tables[0].tags.port[1]: text: the placeholders are {index}, {index_parent} and {index_last}, got "
     "'ifIndex.{ifindex}'"),
    ("port: [rx,", "device: [rx,",
     "p.yaml:4: tables[0]: tag 'device' is set to the device's configured name: do not declare it"),
    ("{column: rx, scale: 0.01}", "{column: rx, when: [{column: tx, one_of: [1], above: 2}]}",
     "p.yaml:11: tables[0].fields.rx_dbm[0].when[0]: a condition has exactly one test: 'one_of', 'above', "
     "'above_column', 'matches' or 'bit'"),
    ('port: [rx, {text: "ifIndex.{index}"}]', "port: [{column: rx, extract: 'Xcvr for \\S+'}]",
     "p.yaml:9: tables[0].tags.port[0]: 'extract' goes with 'column' and needs a regex with a group: '(...)'"),
    ("    tags:", "    joins:\n      n: {oid: 1.3.6.1.2.1.31.1.1.1.1, pointer: 1.3.6.1.2.1.2.2.1.1}\n    tags:",
     "p.yaml:9: tables[0].joins.n: 'pointer' reads the OID that a column holds: name that column in 'by'"),
])
def test_profile_errors_name_the_file_line_and_key(old: str, new: str, message: str) -> None:
    assert old in PROFILE
    profiles.load(PROFILE, "p.yaml")
    with pytest.raises(strict.ConfigError) as info:
        profiles.load(PROFILE.replace(old, new), "p.yaml")
    assert str(info.value) == message


def test_a_profile_file_is_named_after_its_profile(tmp_path: Path) -> None:
    path = tmp_path / "q.yaml"
    path.write_text(PROFILE)
    with pytest.raises(strict.ConfigError, match=r"q.yaml: name: 'p' must be the file's name, 'q'"):
        profiles.load_file(path)
    (tmp_path / "p.yaml").write_text(PROFILE)
    assert profiles.load_file(tmp_path / "p.yaml").name == "p"


def test_condition_on_bits_and_any_of_several_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    text = """\
name: bits
description: Rx missing under a loss-of-signal alarm bit; a port named by either of two columns.
tables:
  - measurement: optical
    columns:
      alarms: 1.3.6.1.4.1.9999.1.1
      rx: 1.3.6.1.4.1.9999.1.5
      label: 1.3.6.1.4.1.9999.1.9
    tags:
      port: [{column: label, when: [{columns: [label, alarms], matches: '^(xe|ge)-'}]}, {text: "port{index}"}]
    fields:
      rx_dbm: {column: rx, unless: [{column: alarms, bit: 9}], scale: 0.01}
"""
    monkeypatch.setattr(profiles, "shipped", lambda: {**SHIPPED, "bits": profiles.load(text, "bits.yaml")})
    base = "1.3.6.1.4.1.9999.1"
    values: dict[str, SnmpValue] = {
        SYS_UPTIME: 1,
        f"{base}.1.1": b"\x00\x40", f"{base}.5.1": -500, f"{base}.9.1": b"xe-0/0/1",  # bit 9 set: LOS
        f"{base}.1.2": b"\xff\xbf", f"{base}.5.2": -600, f"{base}.9.2": b"et-0/0/2",  # all but bit 9
        f"{base}.1.3": b"\x00", f"{base}.5.3": -700,  # a short BITS value lacks bit 9
    }
    source, _ = source_with(values, with_profiles("bits"))
    assert optical_of(poll(source)) == [("port2", {"rx_dbm": -6.0}), ("port3", {"rx_dbm": -7.0})]
