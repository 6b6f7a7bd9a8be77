"""collector.alerting.ifnames: one key for the spellings vendors use for one port."""

from __future__ import annotations

import pytest

from collector.alerting.ifnames import canonical


@pytest.mark.parametrize(("names", "key"), [
    (["Gi1/0/52", "GigabitEthernet1/0/52", "gi1/0/52", "Gig1/0/52", "GE1/0/52"], "gigabitethernet1/0/52"),
    (["Te0/0/0/1", "TenGigE0/0/0/1", "TenGigabitEthernet0/0/0/1", "XGE0/0/0/1", "XGigabitEthernet0/0/0/1"],
     "tengigabitethernet0/0/0/1"),
    (["Et49/1", "Eth49/1", "Ethernet49/1", "ethernet 49/1"], "ethernet49/1"),
    (["Fa0/1", "FastEthernet0/1"], "fastethernet0/1"),
    (["Fo1/1/1", "FortyGigabitEthernet1/1/1", "40GE1/1/1"], "fortygigabitethernet1/1/1"),
    (["Hu0/0/0/0", "HundredGigE0/0/0/0"], "hundredgige0/0/0/0"),
    (["Po10", "Port-channel10"], "port-channel10"),
])
def test_the_long_and_short_forms_of_a_port_have_one_key(names: list[str], key: str) -> None:
    assert {canonical(name) for name in names} == {key}


@pytest.mark.parametrize(("name", "key"), [
    ("xe-0/0/1", "xe-0/0/1"),            # Junos: one form; "xe-" is not Huawei's XGE
    ("et-0/0/1", "et-0/0/1"),            # Junos et- is not Arista's Et
    ("ge-1/1/3", "ge-1/1/3"),
    ("1/1/1", "1/1/1"),                  # Nokia SR OS
    ("sfp-sfpplus1", "sfp-sfpplus1"),    # RouterOS
    ("Vlan10", "vlan10"),
    ("GigabitEthernet0/0/1.100", "gigabitethernet0/0/1.100"),
])
def test_other_names_are_only_folded(name: str, key: str) -> None:
    assert canonical(name) == key


def test_different_ports_keep_different_keys() -> None:
    assert canonical("Gi1/0/1") != canonical("Te1/0/1") != canonical("Gi1/0/10")
