"""``zonewatch-agent discover``: the options it takes and what it prints, against a fake device (no sockets)."""

from __future__ import annotations

import asyncio

import pytest

from agent import profiles
from agent.discover import discover, report, settings
from agent.snmpclient import FakeSnmpClient, SnmpValue

NOW = 1_764_290_000_000_000_000
IF = "1.3.6.1.2.1.2.2.1"
JNX = "1.3.6.1.4.1.2636.3.60.1.1.1.1"
SHIPPED = {name: profiles.shipped()[name] for name in ("system", "if_mib", "juniper_dom", "ups_mib")}


@pytest.fixture(autouse=True)
def known_profiles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(profiles, "shipped", lambda: SHIPPED)  # new shipped profiles do not change this output


def test_v2c_and_v3_settings() -> None:
    v2c = settings("10.20.0.2", 1161, community="public")
    assert (v2c.name, v2c.host, v2c.port, v2c.version, v2c.profiles) == ("10.20.0.2", "10.20.0.2", 1161, "v2c", None)
    v3 = settings("olt-1", user="zw", auth_key="auth-pass-1", priv_key="priv-pass-1", priv_protocol="AES256",
                  timeout="500ms", retries=0)
    target = v3.target()
    assert (target.version, target.user, target.priv_protocol, target.timeout, target.retries) == (
        "v3", "zw", "AES256", 0.5, 0)
    assert "pass" not in repr(v3)


@pytest.mark.parametrize(("keys", "message"), [
    ({}, "give --community (SNMPv2c) or --user, --auth-key and --priv-key (SNMPv3 authPriv)"),
    ({"community": "c", "auth_key": "k"}, "--community is SNMPv2c and --auth-key is SNMPv3: give one or the other"),
    ({"user": "zw", "priv_key": "p"}, "SNMPv3 (authPriv) needs --user, --auth-key and --priv-key; missing: --auth-key"),
    ({"community": "c", "timeout": "2"}, "--timeout: expected a duration"),  # zonewatch.strict's words follow
])
def test_incomplete_or_wrong_options_are_refused_clearly(keys: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError) as info:
        settings("10.20.0.2", **keys)  # type: ignore[arg-type]
    assert str(info.value).startswith(message)


MX: dict[str, SnmpValue] = {
    "1.3.6.1.2.1.1.1.0": b"Juniper Networks, Inc. mx960 internet router,\r\n kernel JUNOS 16.1R6.7",
    "1.3.6.1.2.1.1.2.0": "1.3.6.1.4.1.2636.1.1.1.2.21", "1.3.6.1.2.1.1.3.0": 4200,
    f"{IF}.2.550": b"ge-0/0/1", f"{IF}.8.550": 1, f"{IF}.2.551": b"ge-0/0/2", f"{IF}.8.551": 6,
    f"{JNX}.5.550": 0, f"{JNX}.7.550": 0, f"{JNX}.8.550": 0,  # a module without DOM readings
}


def test_the_report_says_what_applies_why_and_what_each_profile_reads() -> None:
    config = settings("10.20.0.9", community="public")
    fake = FakeSnmpClient(MX)
    reading = asyncio.run(discover(config, NOW, client_factory=lambda target: fake))
    assert fake.closed
    assert report(config, reading) == [
        "# 10.20.0.9:161 answers; sysObjectID 1.3.6.1.4.1.2636.1.1.1.2.21",
        "# sysDescr: Juniper Networks, Inc. mx960 internet router, kernel JUNOS 16.1R6.7",
        "# profiles that apply (a device configured without 'profiles' is polled with these):",
        "#   system: 1.3.6.1.2.1.1.3 has rows",
        "#   if_mib: 1.3.6.1.2.1.2.2.1.2 has rows",
        f"#   juniper_dom: {JNX}.5 has rows",
        "# profiles that do not apply: ups_mib",
        "## system: 1 samples",
        "device,device=10.20.0.9 uptime_s=42.0",
        "## if_mib: 1 samples",  # ge-0/0/2 is notPresent(6): left out
        "interface,device=10.20.0.9,ifname=ge-0/0/1 oper_up=true",
        "## juniper_dom: READ NOTHING (no rows, or no usable value): the agent reports this",
    ]


def test_a_device_that_does_not_answer() -> None:
    config = settings("10.20.0.9", community="public")
    reading = asyncio.run(discover(config, NOW, client_factory=lambda target: FakeSnmpClient({}, fail=True)))
    assert not reading.answered and reading.failure == "no response in 0s after 1 tries"
