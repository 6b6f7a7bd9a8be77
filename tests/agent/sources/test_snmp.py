"""SnmpSource and the SNMP client seam, against FakeSnmpClient (no sockets, no sleeps)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import pytest

import zwconf
from agent.snmpclient import FakeSnmpClient, PysnmpClient, SnmpError, SnmpTarget, SnmpTimeout, SnmpValue
from agent.sources.snmp import SnmpConfig, SnmpSource
from agent.wire import Sample

NOW = 1_764_290_000_000_000_000
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
    return zwconf.load(SnmpConfig, text, "agent.yaml")


def poll(source: SnmpSource, now_ns: int = NOW) -> list[Sample]:
    return asyncio.run(source.collect(now_ns))


def source_with(values: Mapping[str, SnmpValue], text: str = V2C) -> tuple[SnmpSource, FakeSnmpClient]:
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
    source, _ = source_with(sparse, V2C.replace("site: dv-site-3\n", ""))
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
    source = SnmpSource(load(V2C), client_factory=lambda target: fake)
    samples = poll(source)
    assert samples[0].fields == {"up": True, "uptime_s": 1234.56}
    assert samples[1].fields == {"oper_up": True, "admin_up": True, "in_octets": 18446744073709551615,
                                 "out_octets": 5000000000, "out_errors": 4, "speed_mbps": 10000}
    assert [r.getMessage() for r in caplog.records] == [
        "snmp device bts-01 (192.0.2.10:161) answered, but 1.3.6.1.2.1.2.2.1.14 could not be read: "
        "agent answered genErr"
    ]


def test_a_timeout_mid_poll_stops_walking_and_keeps_what_was_read() -> None:
    fake = _FailingColumn(SWITCH, f"{IF}.2", SnmpTimeout("192.0.2.10:161", "no response"))
    source = SnmpSource(load(V2C), client_factory=lambda target: fake)
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

    source = SnmpSource(load(V2C), client_factory=factory)
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
    with pytest.raises(zwconf.ConfigError) as info:
        load(text)
    assert str(info.value) == message
