"""Rendering each probe's desired configuration from the inventory: what the inventory fills in, what the centre
refuses (with the inventory's line and key), and that the probe's loader takes what is rendered."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
from pydantic import BaseModel, SecretStr

from agent.config import AgentConfig
from agent.fleet.desired import LOCAL_ONLY as PROBE_OWN
from agent.fleet.desired import effective
from agent.sources.snmp import SnmpConfig
from collector.fleet.desired import LOCAL_ONLY, MANAGED_KEYS, render_all
from collector.inventory import Inventory, load_inventory
from collector.secrets import NAMES_ONLY
from zonewatch import wire
from zonewatch.strict import ConfigError, load, load_file

INVENTORY = """\
zones:
  z: {name: Zone, areas: [gate]}
carriers:
  viettel: {plmn: 452-04, name: Viettel}
sites:
  pop: {zone: z, area: gate, owners: [viettel]}
devices:
  sw-1: {site: pop, kind: switch, owners: [viettel], probe: p1, address: 10.0.0.2}
  sw-2: {site: pop, kind: switch, owners: [viettel], probe: p2, address: 10.0.0.3}
links:
  vt-a: {device: sw-1, ifname: xe-1, carriers: [viettel]}
probes:
  p1:
    zone: z
    area: gate
    modems: [{name: vt, carrier: viettel}]
    config:
      sources:
        - {type: snmp, device: sw-1, version: v2c, community: {env: ZW_COMMUNITY}}
        - {type: cellular, name: vt, port: /dev/ttyUSB2}
  p2: {zone: z}
probe_defaults:
  self_interval: 30s
  sources:
    - {type: reach, name: core, target: 10.0.0.1, interval: 60s}
"""

P1 = """\
# Desired configuration of probe p1 (zone z), rendered from the inventory by the collector.
# Secrets are references, read on the probe.
probe:
  id: p1
  zone: z
  area: gate
self_interval: 30s
sources:
- type: reach
  name: core
  target: 10.0.0.1
  interval: 60s
- type: snmp
  name: sw-1
  version: v2c
  community:
    env: ZW_COMMUNITY
  host: 10.0.0.2
  site: pop
  links:
    xe-1: vt-a
- type: cellular
  name: vt
  port: /dev/ttyUSB2
  carrier: 452-04
"""


def inventory(text: str = INVENTORY) -> Inventory:
    return load(Inventory, text, "inventory.yaml")


def refused(old: str, new: str) -> str:
    text = INVENTORY.replace(old, new)
    assert text != INVENTORY, old
    with pytest.raises(ConfigError) as caught:
        inventory(text)
    return str(caught.value)


def test_a_managed_probe_gets_the_defaults_its_own_sources_and_what_the_inventory_knows() -> None:
    rendered, problems = render_all(inventory())
    assert problems == [] and set(rendered) == {"p1"}   # p2 has no config: its local file stays
    assert rendered["p1"].yaml == P1
    assert rendered["p1"].hash == wire.config_hash(P1)
    assert render_all(inventory())[0]["p1"].hash == rendered["p1"].hash   # the same inventory, the same hash


def test_the_probe_takes_what_is_rendered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZW_COMMUNITY", "public")
    r = render_all(inventory())[0]["p1"]
    local = load(AgentConfig, "probe: {id: p1, zone: z}\n", "agent.yaml")
    cfg = effective(wire.DesiredConfig("z", "p1", 1, r.hash, 0, r.yaml), local)
    assert [(s.type, s.name) for s in cfg.sources] == [("reach", "core"), ("snmp", "sw-1"), ("cellular", "vt")]


def test_a_probe_source_of_a_default_name_is_merged_into_it() -> None:
    text = INVENTORY.replace("        - {type: cellular, name: vt, port: /dev/ttyUSB2}\n",
                             "        - {type: cellular, name: vt, port: /dev/ttyUSB2}\n"
                             "        - {name: core, interval: 10s}\n")
    yaml_text = render_all(inventory(text))[0]["p1"].yaml
    assert "- type: reach\n  name: core\n  target: 10.0.0.1\n  interval: 10s\n" in yaml_text


@pytest.mark.parametrize(("old", "new", "error"), [
    ("community: {env: ZW_COMMUNITY}", "community: public",
     "inventory.yaml:19: probes.p1.config.sources[0].community: a secret may not be written in the inventory: give "
     "{env: NAME} or {file: NAME}, read on the probe"),
    ("community: {env: ZW_COMMUNITY}", "community: {file: /etc/zonewatch/community}",
     "inventory.yaml:19: probes.p1.config.sources[0].community: {file: /etc/zonewatch/community}: name a file "
     "inside the probe's secret folder"),
    ("snmp, device: sw-1", "snmp, device: sw-2",
     "inventory.yaml:19: probes.p1.config.sources[0].device: probe p1 does not watch device 'sw-2' (its watchers "
     "are p2"),
    ("snmp, device: sw-1", "snmp, device: sw-9",
     "inventory.yaml:19: probes.p1.config.sources[0].device: device 'sw-9' is not in the inventory's devices"),
    ("name: vt, port", "name: vn, port",
     "inventory.yaml:20: probes.p1.config.sources[1].name: cellular source 'vn' is not one of probe p1's modems "
     "(probes.p1.modems: vt)"),
    ("  self_interval: 30s\n", "  spool: {path: /tmp/x}\n",
     "inventory.yaml:23: probe_defaults.spool: spool is set in the probe's local configuration file only"),
    ("  self_interval: 30s\n", "  probe: {id: p1}\n",
     "inventory.yaml:23: probe_defaults.probe: probe is generated from the inventory"),
    ("  self_interval: 30s\n", "  self_intervall: 30s\n",
     "inventory.yaml:23: probe_defaults.self_intervall: unknown key 'self_intervall': the centre may set mqtt, "
     "self_interval, sources"),
    ("community: {env: ZW_COMMUNITY}", "community: {env: ZW_COMMUNITY}, site: elsewhere",
     "inventory.yaml:19: probes.p1.config.sources[0].site: site 'elsewhere' differs from the inventory's 'pop'"),
])
def test_what_the_centre_can_tell_is_refused_with_the_inventory_line(old: str, new: str, error: str) -> None:
    assert refused(old, new).startswith(error)


def test_a_configuration_over_the_message_limit_is_refused() -> None:
    text = INVENTORY.replace("port: /dev/ttyUSB2", "port: /dev/" + "x" * wire.MAX_CONFIG_BYTES)
    with pytest.raises(ConfigError, match=r"inventory.yaml:17: probes.p1.config: the desired configuration of probe "
                                          r"z/p1 is \d+ bytes, at most 1048576 \(the broker's packet limit\)"):
        inventory(text)


# ---------------------------------------------------------------------------------------------- one truth


def test_the_centre_and_the_probe_agree_on_who_sets_what() -> None:
    # probe: generated from the inventory; software: added by `fleet update` (collector.fleet.software)
    assert set(MANAGED_KEYS) | set(LOCAL_ONLY) | {"probe", "software"} == set(AgentConfig.model_fields)
    assert set(LOCAL_ONLY) == set(PROBE_OWN)


def _secret_keys(model: type[BaseModel]) -> set[str]:
    found: set[str] = set()

    def walk(tp: object, key: str | None) -> None:
        if tp is SecretStr and key is not None:
            found.add(key)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            for name, info in tp.model_fields.items():
                walk(info.annotation, name)
        for arg in typing.get_args(tp):
            walk(arg, key)

    walk(model, None)
    return found


def test_the_contracts_secret_keys_are_every_secret_of_the_agent_configuration() -> None:
    assert _secret_keys(AgentConfig) == wire.SECRET_KEYS


def test_the_example_inventory_renders_what_the_example_probe_takes(monkeypatch: pytest.MonkeyPatch) -> None:
    root = Path(__file__).resolve().parents[3] / "config"
    for name in ("ZW_SNMP_AUTH", "ZW_SNMP_PRIV", "ZW_MQTT_PASSWORD", "ZW_SNMP_COMMUNITY", "ZW_TRAP_COMMUNITY"):
        monkeypatch.setenv(name, "example-secret")
    rendered = render_all(load_inventory(root / "inventory.example.yaml", NAMES_ONLY))[0]["p1"]
    local = load_file(AgentConfig, root / "agent.example.yaml")
    cfg = effective(wire.DesiredConfig("dinh-vu", "p1", 1, rendered.hash, 0, rendered.yaml), local)
    snmp = next(s for s in cfg.sources if s.name == "bts-01")
    assert isinstance(snmp, SnmpConfig)
    assert (snmp.site, snmp.links) == ("bts-dv-01", {"ge-0/0/1": "viettel-dv-primary", "ge-0/0/2": "viettel-dv-backup"})
