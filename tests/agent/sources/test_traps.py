"""Trap -> event mapping, the trap receiver's datagram path and its config (no sockets, no sleeps)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import pytest
from pyasn1.codec.ber import encoder
from pysnmp.proto import rfc1902, rfc1905
from pysnmp.proto.api import v1, v2c
from pysnmp.proto.proxy import rfc2576

from agent.sources.trapengine import plain_var_binds
from agent.sources.trapmap import TrapError, VarBind, trap_event
from agent.sources.traps import STATS_KEYS, TrapsConfig, TrapsSource
from zonewatch import strict, wire

NOW = 1_764_290_000_000_000_000
UPTIME = ("1.3.6.1.2.1.1.3.0", 4242)
TRAP_OID = "1.3.6.1.6.3.1.1.4.1.0"
IF = "1.3.6.1.2.1.2.2.1"
IFX = "1.3.6.1.2.1.31.1.1.1"
UPS = "1.3.6.1.2.1.33"
COMMUNITY = "s3cret-community"


def trap(oid: str, *objects: VarBind) -> list[VarBind]:
    """Return an SNMPv2 trap's varbinds: sysUpTime.0, snmpTrapOID.0, then ``objects``."""
    return [UPTIME, (TRAP_OID, oid), *objects]


def event(var_binds: Sequence[VarBind], device: str = "sw-core") -> wire.Event:
    """Map varbinds and check that the event passes the wire contract unchanged."""
    ev = trap_event(var_binds, device, NOW)
    batch = wire.Batch(zone="dinh-vu", probe="p1", seq=1, sent_ns=NOW, events=(ev,))
    assert wire.decode(wire.encode(batch)).events == (ev,)
    return ev


# ---------------------------------------------------------------------------------------------- mapping


def test_link_down_with_if_name_gives_ifname_tag_and_statuses() -> None:
    ev = event(trap("1.3.6.1.6.3.1.1.5.3", (f"{IF}.1.2", 2), (f"{IF}.7.2", 1), (f"{IF}.8.2", 2),
                    (f"{IFX}.1.2", b"ge-0/0/1"), (f"{IF}.2.2", b"GigabitEthernet0/0/1")))
    assert ev == wire.Event("link_down", {"device": "sw-core", "ifname": "ge-0/0/1"},
                            {"if_index": 2, "admin_up": True, "oper_up": False}, NOW)


def test_link_up_takes_ifdescr_when_there_is_no_ifname() -> None:
    ev = event(trap("1.3.6.1.6.3.1.1.5.4", (f"{IF}.1.10", 10), (f"{IF}.7.10", 1), (f"{IF}.8.10", 1),
                    (f"{IF}.2.10", b"Vlan10\x00")))
    assert ev == wire.Event("link_up", {"device": "sw-core", "ifname": "Vlan10"},
                            {"if_index": 10, "admin_up": True, "oper_up": True}, NOW)


def test_link_trap_without_name_keeps_if_index_as_field_only() -> None:
    ev = event(trap("1.3.6.1.6.3.1.1.5.3", (f"{IF}.1.3", 3), (f"{IF}.7.3", 2), (f"{IF}.8.3", 7)))
    assert ev.tags == {"device": "sw-core"}
    assert ev.fields == {"if_index": 3, "admin_up": False, "oper_up": False}  # lowerLayerDown(7) is not up


def test_link_trap_without_ifindex_varbind_takes_the_status_instance() -> None:
    ev = event(trap("1.3.6.1.6.3.1.1.5.3", (f"{IF}.8.17", 2)))
    assert ev.fields == {"if_index": 17, "oper_up": False}


@pytest.mark.parametrize("instance", [str(2**64), str(2**63), "9" * 5000, "\u00b2"])
def test_link_trap_leaves_out_an_if_index_that_is_no_64_bit_number(instance: str) -> None:
    ev = event(trap("1.3.6.1.6.3.1.1.5.3", (f"{IF}.8.{instance}", 2)))
    assert ev.fields == {"oper_up": False}


def test_link_trap_takes_the_status_instance_when_the_ifindex_value_is_beyond_int64() -> None:
    ev = event(trap("1.3.6.1.6.3.1.1.5.3", (f"{IF}.1.5", 2**64 - 1), (f"{IF}.8.5", 2)))
    assert ev.fields == {"if_index": 5, "oper_up": False}


def test_link_trap_with_nothing_but_the_envelope_is_still_a_link_event() -> None:
    assert event(trap("1.3.6.1.6.3.1.1.5.4")) == wire.Event("link_up", {"device": "sw-core"}, {}, NOW)


def test_link_trap_ignores_values_of_the_wrong_type() -> None:
    ev = event(trap("1.3.6.1.6.3.1.1.5.3", (f"{IF}.1.2", b"two"), (f"{IF}.7.2", None), (f"{IF}.8.2", "2"),
                    (f"{IFX}.1.2", 5)))
    assert ev.tags == {"device": "sw-core"}
    assert ev.fields == {"if_index": 2}


@pytest.mark.parametrize(("oid", "cold"), [("1.3.6.1.6.3.1.1.5.1", True), ("1.3.6.1.6.3.1.1.5.2", False)])
def test_cold_and_warm_start_are_device_restarted(oid: str, cold: bool) -> None:
    assert event(trap(oid)) == wire.Event("device_restarted", {"device": "sw-core"}, {"cold": cold}, NOW)


def test_ups_on_battery_carries_minutes_and_seconds() -> None:
    ev = event(trap(f"{UPS}.2.1", (f"{UPS}.1.2.3.0", 12), (f"{UPS}.1.2.2.0", 30), (f"{UPS}.1.9.7.0", 2)), "ups-1")
    assert ev == wire.Event("power_on_battery", {"device": "ups-1"},
                            {"cleared": False, "battery_minutes": 12, "seconds_on_battery": 30}, NOW)


def test_ups_on_battery_leaves_out_unsupported_minutes() -> None:
    ev = event(trap(f"{UPS}.2.1", (f"{UPS}.1.2.3.0", -1), (f"{UPS}.1.2.2", 5)))  # second one without .0
    assert ev.fields == {"cleared": False, "seconds_on_battery": 5}


@pytest.mark.parametrize(
    ("trap_oid", "alarm", "name", "fields"),
    [
        (f"{UPS}.2.3", f"{UPS}.1.6.3.2", "power_on_battery", {"cleared": False}),
        (f"{UPS}.2.4", f"{UPS}.1.6.3.2", "power_on_battery", {"cleared": True}),
        (f"{UPS}.2.3", f"{UPS}.1.6.3.3", "battery_low", {"cleared": False, "depleted": False}),
        (f"{UPS}.2.4", f"{UPS}.1.6.3.3", "battery_low", {"cleared": True, "depleted": False}),
        (f"{UPS}.2.3", f"{UPS}.1.6.3.4", "battery_low", {"cleared": False, "depleted": True}),
    ],
)
def test_ups_alarm_entries(trap_oid: str, alarm: str, name: str, fields: dict[str, Any]) -> None:
    ev = event(trap(trap_oid, (f"{UPS}.1.6.2.1.1.7", 7), (f"{UPS}.1.6.2.1.2.7", alarm)), "ups-1")
    assert ev == wire.Event(name, {"device": "ups-1"}, fields, NOW)


def test_other_ups_alarm_is_a_trap_event_naming_the_alarm() -> None:
    ev = event(trap(f"{UPS}.2.3", (f"{UPS}.1.6.2.1.1.8", 8), (f"{UPS}.1.6.2.1.2.8", f"{UPS}.1.6.3.6")))
    assert ev == wire.Event("trap", {"device": "sw-core", "trap_oid": f"{UPS}.2.3", "alarm": f"{UPS}.1.6.3.6"},
                            {"varbinds": 2, "cleared": False}, NOW)


def test_any_other_trap_is_a_trap_event_with_its_oid_and_object_count() -> None:
    ev = event(trap("1.3.6.1.4.1.99999.0.1", ("1.3.6.1.2.1.2.2.1.1.2", 2), ("1.3.6.1.4.1.99999.1.2.0",
                                                                           b"uplink-backup down")))
    assert ev == wire.Event("trap", {"device": "sw-core", "trap_oid": "1.3.6.1.4.1.99999.0.1"}, {"varbinds": 2}, NOW)
    assert all(isinstance(v, (int, float)) for v in ev.fields.values())


def test_authentication_failure_trap_is_a_generic_trap() -> None:
    assert event(trap("1.3.6.1.6.3.1.1.5.5")).tags["trap_oid"] == "1.3.6.1.6.3.1.1.5.5"


@pytest.mark.parametrize(
    "var_binds",
    [
        [UPTIME],
        [UPTIME, (TRAP_OID, b"1.3.6.1.6.3.1.1.5.3")],
        [UPTIME, (TRAP_OID, None)],
        [UPTIME, (TRAP_OID, "1.3.6." + "1." * 200 + "1")],
    ],
    ids=["missing", "octets", "null", "too-long"],
)
def test_a_notification_without_a_usable_trap_oid_is_malformed(var_binds: list[VarBind]) -> None:
    with pytest.raises(TrapError) as info:
        trap_event(var_binds, "sw-core", NOW)
    assert info.value.reason == "malformed"


def test_v1_link_down_is_normalised_per_rfc3584_and_drops_the_community() -> None:
    """pysnmp's translation, which the receiver relies on, gives linkDown's v2 OID and our event."""
    pdu = v1_trap_pdu(generic=2, specific=0, var_binds=[(f"{IF}.1.3", v1.Integer(3)), (f"{IF}.8.3", v1.Integer(2))])
    var_binds = plain_var_binds(v2c.apiTrapPDU.get_varbinds(rfc2576.v1_to_v2(pdu, snmpTrapCommunity=COMMUNITY)))
    assert (TRAP_OID, "1.3.6.1.6.3.1.1.5.3") in var_binds
    assert ("1.3.6.1.6.3.18.1.4.0", COMMUNITY.encode()) in var_binds  # snmpTrapCommunity.0 is there ...
    ev = event(var_binds)
    assert ev == wire.Event("link_down", {"device": "sw-core"}, {"if_index": 3, "oper_up": False}, NOW)
    assert COMMUNITY not in repr(ev)  # ... but never in the event


def test_v1_enterprise_specific_trap_becomes_enterprise_0_specific() -> None:
    pdu = v1_trap_pdu(generic=6, specific=17, var_binds=[("1.3.6.1.4.1.99999.1", v1.OctetString("x"))])
    ev = event(plain_var_binds(v2c.apiTrapPDU.get_varbinds(rfc2576.v1_to_v2(pdu, snmpTrapCommunity=COMMUNITY))))
    assert ev.tags["trap_oid"] == "1.3.6.1.4.1.99999.0.17"
    assert ev.fields == {"varbinds": 1}  # snmpTrapAddress/Community/Enterprise are not the trap's own objects


def test_plain_var_binds_converts_pysnmp_values() -> None:
    pairs = plain_var_binds([
        (rfc1902.ObjectName("1.3.6.1.2.1.1.3.0"), rfc1902.TimeTicks(5)),
        (rfc1902.ObjectName("1.3.6.1.6.3.1.1.4.1.0"), rfc1902.ObjectIdentifier("1.3.6.1.6.3.1.1.5.3")),
        (rfc1902.ObjectName("1.3.6.1.6.3.18.1.3.0"), rfc1902.IpAddress("192.0.2.7")),
        (rfc1902.ObjectName("1.3.6.1.2.1.31.1.1.1.1.1"), rfc1902.OctetString(b"ge-0/0/1")),
        (rfc1902.ObjectName("1.3.6.1.2.1.31.1.1.1.6.1"), rfc1902.Counter64(2**64 - 1)),
        (rfc1902.ObjectName("1.3.6.1.2.1.2.2.1.8.1"), rfc1902.Integer32(-1)),
        (rfc1902.ObjectName("1.3.6.1.2.1.2.2.1.7.1"), rfc1905.noSuchInstance),
        (rfc1902.ObjectName("1.3.6.1.2.1.2.2.1.7.2"), rfc1902.Integer32()),  # no value at all
    ])
    assert pairs == [
        ("1.3.6.1.2.1.1.3.0", 5),
        ("1.3.6.1.6.3.1.1.4.1.0", "1.3.6.1.6.3.1.1.5.3"),
        ("1.3.6.1.6.3.18.1.3.0", "192.0.2.7"),
        ("1.3.6.1.2.1.31.1.1.1.1.1", b"ge-0/0/1"),
        ("1.3.6.1.2.1.31.1.1.1.6.1", 2**64 - 1),
        ("1.3.6.1.2.1.2.2.1.8.1", -1),
        ("1.3.6.1.2.1.2.2.1.7.1", None),
        ("1.3.6.1.2.1.2.2.1.7.2", None),
    ]


# ---------------------------------------------------------------------------------------------- datagrams


def v1_trap_pdu(generic: int, specific: int, var_binds: list[tuple[str, Any]]) -> Any:
    pdu = v1.TrapPDU()
    v1.apiTrapPDU.set_defaults(pdu)
    v1.apiTrapPDU.set_enterprise(pdu, (1, 3, 6, 1, 4, 1, 99999))
    v1.apiTrapPDU.set_agent_address(pdu, "192.0.2.7")
    v1.apiTrapPDU.set_generic_trap(pdu, generic)
    v1.apiTrapPDU.set_specific_trap(pdu, specific)
    v1.apiTrapPDU.set_timestamp(pdu, 4242)
    v1.apiTrapPDU.set_varbinds(pdu, [(v1.ObjectIdentifier(o), v) for o, v in var_binds])
    return pdu


def message(api: Any, community: str, pdu: Any) -> bytes:
    msg = api.Message()
    api.apiMessage.set_defaults(msg)
    api.apiMessage.set_community(msg, community)
    api.apiMessage.set_pdu(msg, pdu)
    return bytes(encoder.encode(msg))


def v2c_pdu(pdu: Any, var_binds: list[tuple[str, Any]]) -> Any:
    v2c.apiPDU.set_defaults(pdu)
    v2c.apiPDU.set_varbinds(pdu, [(v2c.ObjectIdentifier(o), v) for o, v in var_binds])
    return pdu


def v2c_trap(community: str, trap_oid: str, *objects: tuple[str, Any]) -> bytes:
    var_binds = [(UPTIME[0], v2c.TimeTicks(4242)), (TRAP_OID, v2c.ObjectIdentifier(trap_oid)), *objects]
    return message(v2c, community, v2c_pdu(v2c.SNMPv2TrapPDU(), var_binds))


LINK_DOWN = v2c_trap(COMMUNITY, "1.3.6.1.6.3.1.1.5.3", (f"{IF}.1.2", v2c.Integer(2)), (f"{IF}.7.2", v2c.Integer(1)),
                     (f"{IF}.8.2", v2c.Integer(2)))

CONFIG = f"""\
type: traps
listen: 127.0.0.1:1162
communities: [{COMMUNITY}]
devices: {{192.0.2.7: sw-core}}
"""


def source(text: str = CONFIG) -> TrapsSource:
    return TrapsSource(strict.load(TrapsConfig, text, "agent.yaml"), clock=lambda: NOW)


def test_v2c_datagram_from_a_known_device() -> None:
    src = source()
    ev = src.process(("192.0.2.7", 40000), LINK_DOWN)
    assert ev == wire.Event("link_down", {"device": "sw-core"}, {"if_index": 2, "admin_up": True, "oper_up": False},
                            NOW)
    assert src.stats == {**dict.fromkeys(STATS_KEYS, 0), "accepted": 1}


def test_unknown_sender_is_accepted_tagged_with_its_address_counted_and_logged_once(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.sources.traps")
    src = source()
    events = [src.process(("::ffff:192.0.2.99", 40000 + i, 0, 0), LINK_DOWN) for i in range(3)]
    assert [e.tags["device"] for e in events if e] == ["192.0.2.99"] * 3
    assert (src.stats["accepted"], src.stats["unknown_sender"]) == (3, 3)
    assert [r.getMessage() for r in caplog.records] == [
        "trap receiver traps: accepted a trap from 192.0.2.99, which is not in 'devices'; tagged device=192.0.2.99"
    ]


def test_v1_datagram_is_normalised() -> None:
    pdu = v1_trap_pdu(generic=3, specific=0, var_binds=[(f"{IF}.1.4", v1.Integer(4)), (f"{IF}.8.4", v1.Integer(1))])
    ev = source().process(("192.0.2.7", 40000), message(v1, COMMUNITY, pdu))
    assert ev == wire.Event("link_up", {"device": "sw-core"}, {"if_index": 4, "oper_up": True}, NOW)


def test_a_link_trap_for_an_instance_beyond_64_bits_is_accepted_without_if_index() -> None:
    src = source()
    ev = src.process(("192.0.2.7", 40000), v2c_trap(COMMUNITY, "1.3.6.1.6.3.1.1.5.3",
                                                    (f"{IF}.8.{2**64}", v2c.Integer(2))))
    assert ev == wire.Event("link_down", {"device": "sw-core"}, {"oper_up": False}, NOW)
    assert src.stats == {**dict.fromkeys(STATS_KEYS, 0), "accepted": 1}


def test_event_time_is_the_receive_time_from_the_clock() -> None:
    times = iter([NOW + 1, NOW + 2])
    src = TrapsSource(strict.load(TrapsConfig, CONFIG), clock=lambda: next(times))
    assert [e.time_ns for e in (src.process(("192.0.2.7", 1), LINK_DOWN), src.process(("192.0.2.7", 1), LINK_DOWN))
            if e] == [NOW + 1, NOW + 2]


@pytest.mark.parametrize(
    ("datagram", "reason"),
    [
        (v2c_trap("wrong-community", "1.3.6.1.6.3.1.1.5.1"), "bad_community"),
        (message(v1, "wrong-community", v1_trap_pdu(0, 0, [])), "bad_community"),
        (b"not snmp at all", "malformed"),
        (b"\x30\x03\x02\x01\x09", "malformed"),  # SNMP version 10
        (LINK_DOWN[:-3], "malformed"),  # truncated
        (message(v2c, COMMUNITY, v2c_pdu(v2c.SNMPv2TrapPDU(), [])), "malformed"),
        (message(v2c, COMMUNITY, v2c_pdu(v2c.GetRequestPDU(), [(UPTIME[0], v2c.Null())])), "not_a_trap"),
        (message(v1, COMMUNITY, v1_trap_pdu(9, 0, [])), "malformed"),  # generic-trap beyond 6
    ],
    ids=["v2c-community", "v1-community", "garbage", "bad-version", "truncated", "no-trap-oid", "get-request",
         "generic-9"],
)
def test_drops_are_counted_by_reason_and_never_raise(datagram: bytes, reason: str) -> None:
    src = source()
    assert src.process(("192.0.2.7", 40000), datagram) is None
    assert src.stats == {**dict.fromkeys(STATS_KEYS, 0), reason: 1}


def test_drops_are_logged_once_per_sender_and_reason_without_secrets(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="agent.sources.traps")
    src = source(CONFIG.replace(f"[{COMMUNITY}]", "[other-s3cret, another-s3cret]"))
    for sender in ("192.0.2.7", "192.0.2.7", "192.0.2.8"):
        src.process((sender, 40000), LINK_DOWN)
    src.process(("192.0.2.7", 40000), b"garbage")
    assert src.stats["bad_community"] == 3
    assert src.stats["malformed"] == 1
    assert [r.getMessage() for r in caplog.records] == [
        "trap receiver traps: dropped a trap from 192.0.2.7: its community is not in 'communities'; "
        "counted as bad_community, logged once per sender and reason",
        "trap receiver traps: dropped a trap from 192.0.2.8: its community is not in 'communities'; "
        "counted as bad_community, logged once per sender and reason",
        "trap receiver traps: dropped a trap from 192.0.2.7: it is not a valid SNMP trap (undecodable: TypeError); "
        "counted as malformed, logged once per sender and reason",
    ]
    assert "s3cret" not in caplog.text


def test_log_once_memory_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="agent.sources.traps")
    src = source()
    bad = v2c_trap("wrong", "1.3.6.1.6.3.1.1.5.1")
    for i in range(1100):
        src.process((f"10.0.{i // 250}.{i % 250}", 40000), bad)
    assert src.stats["bad_community"] == 1100
    assert len(caplog.records) == 1025
    assert "too many senders" in caplog.records[-1].getMessage()


def test_a_failing_clock_is_an_internal_error_not_an_exception() -> None:
    def broken() -> int:
        raise RuntimeError("clock")

    src = TrapsSource(strict.load(TrapsConfig, CONFIG), clock=broken)
    assert src.process(("192.0.2.7", 40000), LINK_DOWN) is None
    assert src.stats["internal_error"] == 1


def test_stop_without_start_is_harmless() -> None:
    src = source()
    asyncio.run(src.stop())
    asyncio.run(src.stop())


# ---------------------------------------------------------------------------------------------- config

FULL = """\
type: traps
name: park-traps
listen: "[::]:10162"
communities: [{env: ZW_TRAP_COMMUNITY}, lab-community]
v3_users:
  - user: zwtrap
    auth_key: {env: ZW_TRAP_AUTH}
    priv_key: priv-pass-456
    engine_id: "0x80001F8880C71100000000000001"
  - user: zwtrap
    auth_key: auth-pass-789
    priv_key: priv-pass-789
    auth_protocol: SHA256
    priv_protocol: AES256
    engine_id: "8000000001020304"
devices:
  10.20.0.11: bts-01
  "2001:db8::0:1": olt-1
"""


def test_full_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZW_TRAP_COMMUNITY", "env-community")
    monkeypatch.setenv("ZW_TRAP_AUTH", "env-auth-key")
    cfg = strict.load(TrapsConfig, FULL, "agent.yaml")
    assert cfg.name == "park-traps"
    assert cfg.address == ("::", 10162)
    assert [c.get_secret_value() for c in cfg.communities] == ["env-community", "lab-community"]
    assert [(u.user, u.engine_id, u.auth_protocol, u.priv_protocol) for u in cfg.v3_users] == [
        ("zwtrap", "80001f8880c71100000000000001", "SHA", "AES"),
        ("zwtrap", "8000000001020304", "SHA256", "AES256"),
    ]
    assert cfg.devices == {"10.20.0.11": "bts-01", "2001:db8::1": "olt-1"}
    for secret in ("env-community", "lab-community", "env-auth-key", "priv-pass-456", "auth-pass-789"):
        assert secret not in repr(cfg)


def test_defaults() -> None:
    cfg = strict.load(TrapsConfig, "type: traps\ncommunities: [public]\n")
    assert (cfg.name, cfg.listen, cfg.address, cfg.v3_users, cfg.devices) == (
        "traps", "0.0.0.0:162", ("0.0.0.0", 162), [], {})


@pytest.mark.parametrize("auth", ["SHA", "SHA256", "MD5"])
@pytest.mark.parametrize("priv", ["AES", "AES256", "DES"])
def test_every_protocol_pair_is_accepted_by_the_engine(auth: str, priv: str) -> None:
    src = source(f"""\
type: traps
v3_users: [{{user: u, auth_key: auth-pass-1, priv_key: priv-pass-1, auth_protocol: {auth},
             priv_protocol: {priv}, engine_id: "8000000001020304"}}]
""")
    assert src.process(("192.0.2.7", 1), LINK_DOWN) is None  # the engine was built; v2c is not accepted
    assert src.stats["bad_community"] == 1


USER = "{user: u, auth_key: auth-pass-1, priv_key: priv-pass-1, engine_id: '8000000001020304'}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("type: traps\n", "agent.yaml:1: accepts no trap: give 'communities' (SNMPv1/v2c) or 'v3_users' (SNMPv3)"),
        ("type: traps\ncommunities: ['']\n", "agent.yaml:2: communities: a community must not be empty"),
        ("type: traps\ncommunities: [x]\nlisten: 0.0.0.0\n", "agent.yaml:3: listen: expected ip:port"),
        ("type: traps\ncommunities: [x]\nlisten: 0.0.0.0:0\n", "agent.yaml:3: listen: expected ip:port"),
        ("type: traps\ncommunities: [x]\nlisten: 0.0.0.0:70000\n", "agent.yaml:3: listen: expected ip:port"),
        ("type: traps\ncommunities: [x]\nlisten: 'trapd.local:162'\n", "agent.yaml:3: listen: expected ip:port"),
        ("type: traps\ncommunities: [x]\nlisten: ':::162'\n", "agent.yaml:3: listen: expected ip:port"),
        ("type: traps\ncommunities: [x]\nlisten: '[0.0.0.0]:162'\n", "agent.yaml:3: listen: expected ip:port"),
        ("type: traps\ncommunities: [x]\ndevices: {bts-01: 10.0.0.1}\n",
         "agent.yaml:3: devices: key 'bts-01' must be the IP address traps come from"),
        ("type: traps\ncommunities: [x]\ndevices: {'2001:db8::1': a, '2001:db8:0::1': b}\n",
         "is the same address as another key (2001:db8::1)"),
        (f"type: traps\nv3_users: [{USER.replace('8000000001020304', '80000000')}]\n",
         "engine_id: an engine ID is 5 to 32 bytes (10 to 64 hex digits), got 4 bytes"),
        (f"type: traps\nv3_users: [{USER.replace('8000000001020304', '80' * 33)}]\n", "got 33 bytes"),
        (f"type: traps\nv3_users: [{USER.replace('8000000001020304', '8000000001020z04')}]\n",
         "engine_id: expected the sender's engine ID as hex digits"),
        (f"type: traps\nv3_users: [{USER.replace('8000000001020304', '800000000102030')}]\n",
         "engine_id: expected the sender's engine ID as hex digits"),
        (f"type: traps\nv3_users: [{USER.replace('auth-pass-1', 'short')}]\n",
         "v3_users[0].auth_key: must be at least 8 characters"),
        (f"type: traps\nv3_users: [{USER.replace('u,', 'u, engine: x,')}]\n", "unknown key 'engine'"),
        ("type: traps\nv3_users: [" + USER.replace("'8000000001020304'", "8000000001020304") + "]\n",
         "engine_id: write the engine ID in quotes: YAML reads 8000000001020304 as a number"),
        (f"type: traps\nv3_users: [{USER.replace('u,', 'u, auth_protocol: SHA512,')}]\n", "auth_protocol"),
        (f"type: traps\nv3_users: [{USER}, {USER.replace('8000000001020304', '0x8000000001020304')}]\n",
         "v3_users[1]: user 'u' with engine_id 8000000001020304 is given twice"),
        ("type: traps\ncommunities: [x]\ncommunity: y\n", "unknown key 'community' (did you mean 'communities'?)"),
    ],
)
def test_config_errors_name_the_key(text: str, message: str) -> None:
    with pytest.raises(strict.ConfigError) as info:
        strict.load(TrapsConfig, text, "agent.yaml")
    assert message in str(info.value)
    assert "auth-pass-1" not in str(info.value) and "priv-pass-1" not in str(info.value)
