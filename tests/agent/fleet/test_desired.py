"""A desired configuration is validated by the probe's own strict loader: errors name the line and the key, the
probe's own sections stay its own, and secrets come only from what its local file lets the centre use."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import AgentConfig
from agent.fleet.desired import effective
from agent.sources.snmp import SnmpConfig
from zonewatch import wire
from zonewatch.strict import ConfigError, load

LOCAL = """\
probe: {id: p1, zone: z}
mqtt: {host: broker.local, port: 8883, username: p1}
spool: {path: /var/lib/zonewatch/spool.db}
metrics: {enabled: false}
remote_config: {deadman: 30s, secret_env_prefix: ZW_FLEET_}
sources:
  - {type: reach, name: here, target: 10.0.0.1}
"""


def desired(text: str, probe: str = "p1", zone: str = "z") -> wire.DesiredConfig:
    return wire.DesiredConfig(zone, probe, 7, wire.config_hash(text), 0, text)


def local(extra: str = "") -> AgentConfig:
    return load(AgentConfig, LOCAL + extra, "agent.yaml")


def error(text: str, cfg: AgentConfig | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        effective(desired(text), cfg or local())
    return str(caught.value)


def community(cfg: AgentConfig) -> str | None:
    source = cfg.sources[0]
    assert isinstance(source, SnmpConfig)
    return source.target().community


SNMP = "probe: {id: p1, zone: z}\nsources:\n  - type: snmp\n    name: sw-1\n    host: 10.0.0.2\n    version: v2c\n"


def test_the_desired_sources_run_with_the_local_identity_spool_metrics_and_broker() -> None:
    cfg = effective(desired("probe: {id: p1, zone: z, area: gate}\nself_interval: 10s\nsources:\n"
                            "  - {type: reach, name: core, target: 10.0.0.9}\n"), local())
    assert [s.name for s in cfg.sources] == ["core"] and cfg.self_interval == 10
    assert (cfg.probe.id, cfg.mqtt.host, cfg.spool.path, cfg.metrics.enabled) == \
        ("p1", "broker.local", "/var/lib/zonewatch/spool.db", False)
    assert cfg.remote_config.deadman == 30


def test_a_desired_broker_replaces_the_local_one() -> None:
    cfg = effective(desired("probe: {id: p1, zone: z}\nmqtt: {host: 127.0.0.1, port: 1}\n"), local())
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.username) == ("127.0.0.1", 1, None)


def test_a_mistake_is_named_with_its_line_and_key() -> None:
    assert error("probe: {id: p1, zone: z}\nsources:\n  - type: snmp\n    name: a\n    host: h\n    timout: 3s\n") == \
        "desired config v7:6: sources[0].timout: unknown key 'timout' (did you mean 'timeout'?)"
    assert error("probe: {id: p1, zone: z}\nself_interval: 30\n") == \
        "desired config v7:2: self_interval: expected a duration string with a unit, like '30s' or '1m30s', got 30"


@pytest.mark.parametrize("key", ["spool", "metrics", "remote_config"])
def test_the_probes_own_sections_are_refused(key: str) -> None:
    assert error(f"probe: {{id: p1, zone: z}}\n{key}: {{}}\n") == \
        f"desired config v7:2: {key}: {key} is set in the probe's local configuration file only"


def test_a_configuration_for_another_probe_is_refused() -> None:
    assert error("probe: {id: p2, zone: z}\n") == "desired config v7:1: probe.id: this probe is 'p1', not 'p2'"
    assert error("probe: {id: p1, zone: y}\n") == "desired config v7:1: probe.zone: this probe is in zone 'z', not 'y'"
    with pytest.raises(ConfigError, match="addressed to probe z/p2, and this is z/p1"):
        effective(desired("probe: {id: p2, zone: z}\n", probe="p2"), local())


def test_a_plain_secret_is_refused_and_never_echoed() -> None:
    message = error(SNMP + "    community: s3cret-community\n")
    assert message.startswith("desired config v7:7: sources[0].community: a secret may not be written out here")
    assert "s3cret" not in message


def test_variables_only_with_the_prefix_the_local_file_allows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZW_MQTT_PASSWORD", "the-broker-password")
    monkeypatch.setenv("ZW_FLEET_COMMUNITY", "public")
    assert error(SNMP + "    community: {env: ZW_MQTT_PASSWORD}\n") == (
        "desired config v7:7: sources[0].community: environment variable ZW_MQTT_PASSWORD may not be read here: its "
        "name must start with 'ZW_FLEET_' (set by remote_config.secret_env_prefix in the probe's local file)")
    cfg = effective(desired(SNMP + "    community: {env: ZW_FLEET_COMMUNITY}\n"), local())
    assert community(cfg) == "public"


def test_files_only_by_name_inside_the_folder_the_local_file_names(tmp_path: Path) -> None:
    folder = tmp_path / "fleet-secrets"
    folder.mkdir(mode=0o700)
    (folder / "sw-1").write_text("private\n")
    (folder / "sw-1").chmod(0o600)
    (tmp_path / "outside").write_text("not for the centre\n")
    (tmp_path / "outside").chmod(0o600)
    (folder / "link").symlink_to(tmp_path / "outside")
    assert error(SNMP + "    community: {file: sw-1}\n").endswith(
        "sources[0].community: no secret file may be read here: remote_config.secret_dir in the probe's local file "
        "names no folder")
    allowed = load(AgentConfig, LOCAL.replace("secret_env_prefix: ZW_FLEET_", f"secret_dir: {folder}"), "agent.yaml")
    cfg = effective(desired(SNMP + "    community: {file: sw-1}\n"), allowed)
    assert community(cfg) == "private"
    for ref in ("/etc/shadow", "../outside", "link"):
        message = error(SNMP + f"    community: {{file: '{ref}'}}\n", allowed)
        assert message.startswith("desired config v7:7: sources[0].community: "), message
        assert "not for the centre" not in message


def test_the_probes_own_profile_folders_serve_the_centres_snmp_sources(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZW_FLEET_COMMUNITY", "public")
    site = tmp_path / "profiles"
    site.mkdir()
    (site / "site_chiller.yaml").write_text(
        "name: site_chiller\ndescription: a chiller's supply temperature\nscalars:\n"
        "  - measurement: device\n    get: {supply: 1.3.6.1.4.1.99999.1.1.0}\n"
        "    fields: {uptime_s: {column: supply}}\n")
    assert error("probe: {id: p1, zone: z}\nprofile_dirs: [/srv]\n") == \
        "desired config v7:2: profile_dirs: profile_dirs is set in the probe's local configuration file only"
    text = SNMP + "    community: {env: ZW_FLEET_COMMUNITY}\n    profiles: [site_chiller]\n"
    cfg = effective(desired(text), local(f"profile_dirs: ['{site}']\n"))
    source = cfg.sources[0]
    assert isinstance(source, SnmpConfig) and source.profile_dirs == [str(site)]
    assert "site_chiller" in error(text)    # a probe without that folder does not know the profile
