"""Configuration: the examples load, and each bad file stops start-up with its one-line error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent import cli as agent_cli
from agent.config import AgentConfig
from collector import cli as collector_cli
from collector.config import CollectorConfig
from collector.inventory import Inventory, WebhookReceiver, load_inventory
from zonewatch.strict import ConfigError, load, load_file, parse_duration

ROOT = Path(__file__).resolve().parent.parent
BAD = sorted((ROOT / "tests" / "configs").glob("*.yaml"))
EXAMPLE_ENV = {"ZW_MQTT_PASSWORD": "m", "ZW_SNMP_AUTH": "a" * 8, "ZW_SNMP_PRIV": "p" * 8, "ZW_SNMP_COMMUNITY": "c",
               "ZW_TRAP_COMMUNITY": "t",
               "ZW_COLLECTOR_MQTT_PASSWORD": "x", "ZW_SMTP_PASSWORD": "s", "ZW_SECRET_VIETTEL_TOKEN": "v"}


def _expected(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path} must start with '# expect: <the error line>'"
    return first.removeprefix("# expect: ")


def _main_for(path: Path) -> object:
    return collector_cli.main if path.name.startswith(("collector", "inventory")) else agent_cli.main


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.name)
def test_bad_config_gives_its_one_line_error(path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    rel = str(path.relative_to(ROOT))
    if path.name.startswith("inventory"):
        cfg = path.with_name(f".collector-for-{path.name}")
        cfg.write_text(f"inventory: {path.name}\nhttp: {{enabled: false}}\n")
        try:
            with pytest.raises(ConfigError) as err:
                load_file(Inventory, rel)
            assert str(err.value) == _expected(path)
            code = collector_cli.main(["-c", str(cfg.relative_to(ROOT)), "check-config"])
        finally:
            cfg.unlink()
    else:
        code = _main_for(path)(["-c", rel, "check-config"])  # type: ignore[operator]
    out = capsys.readouterr()
    assert code == 2
    lines = out.err.strip().splitlines()
    assert len(lines) == 1, out.err
    assert lines[0].endswith(_expected(path))
    assert "Traceback" not in out.err


def test_a_bad_config_exits_non_zero_without_a_traceback() -> None:
    proc = subprocess.run([sys.executable, "-m", "agent", "-c", "tests/configs/agent-typo.yaml", "check-config"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"zonewatch-agent: {_expected(ROOT / 'tests/configs/agent-typo.yaml')}"


@pytest.mark.parametrize("name", ["agent.example.yaml", "collector.example.yaml"])
def test_example_configs_load(name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for key, value in EXAMPLE_ENV.items():
        monkeypatch.setenv(key, value)
    main = agent_cli.main if name.startswith("agent") else collector_cli.main
    assert main(["-c", str(ROOT / "config" / name), "check-config"]) == 0  # type: ignore[operator]
    assert ": ok" in capsys.readouterr().out


def test_example_inventory_loads_with_shared_owners(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in EXAMPLE_ENV.items():
        monkeypatch.setenv(key, value)
    cfg = load_file(CollectorConfig, ROOT / "config" / "collector.example.yaml")
    inv = load_inventory(ROOT / "config" / "inventory.example.yaml", cfg.secrets)
    assert inv.devices["bts-01"].owners == ["viettel", "vinaphone"]
    assert inv.carriers["viettel"].plmn == "452-04"
    hook = inv.carriers["viettel"].notify[0]
    assert isinstance(hook, WebhookReceiver) and hook.bearer_token is not None
    assert hook.bearer_token.get_secret_value() == "v"


def test_secret_from_file_and_never_printed(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret-value\n")
    secret.chmod(0o600)
    cfg = load(CollectorConfig, f"mqtt: {{password: {{file: {secret}}}}}\n", "c.yaml")
    assert cfg.mqtt is not None and cfg.mqtt.password is not None
    assert cfg.mqtt.password.get_secret_value() == "s3cret-value"
    assert "s3cret" not in repr(cfg) and "s3cret" not in str(cfg)


def test_missing_secret_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"c.yaml:1: mqtt.password: cannot read secret file .*/nope"):
        load(CollectorConfig, f"mqtt: {{password: {{file: {tmp_path}/nope}}}}\n", "c.yaml")


@pytest.mark.parametrize(("text", "seconds"), [("500ms", 0.5), ("30s", 30), ("1m30s", 90), ("2h", 7200),
                                               ("7d", 604800), ("1.5s", 1.5)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["30", "", "s", "1 m", "-5s", "1y"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_yaml_syntax_error_names_the_line() -> None:
    with pytest.raises(ConfigError, match=r"^c.yaml:3: not valid YAML: .*flow sequence started at line 2"):
        load(CollectorConfig, "storage:\n  type: [sqlite\n", "c.yaml")


def test_unknown_top_level_key_lists_known_keys() -> None:
    with pytest.raises(ConfigError, match=r"c.yaml:1: stroage: unknown key 'stroage' \(did you mean 'storage'\?\)"):
        load(CollectorConfig, "stroage: {}\n", "c.yaml")


def test_a_secret_in_the_wrong_shape_is_not_echoed_in_the_error() -> None:
    text = "probe: {id: p1, zone: z}\nsources:\n  - {type: traps, communities: s3cret-trap-community}\n"
    with pytest.raises(ConfigError) as err:
        load(AgentConfig, text, "a.yaml")
    assert "sources[0].communities" in str(err.value) and "got a str" in str(err.value)
    assert "s3cret" not in str(err.value)


@pytest.mark.parametrize(("text", "expected"), [
    # a control character: PyYAML's ReaderError has no mark, only a position
    ("storage: {}\nhttp: \x08\n", "c.yaml:2: not valid YAML: unacceptable character #x0008: special characters are "
                                  "not allowed"),
    ("storage: {}\n\r\nhttp: {}\x1b\n", "c.yaml:3: not valid YAML: unacceptable character #x001b: special characters "
                                        "are not allowed"),
    ("storage: !!foo x\n", "c.yaml:1: storage: bad value: could not determine a constructor for the tag '!!foo'"),
    ("storage: !!int sqlite\n", "c.yaml:1: storage: bad value: not a valid !!int"),
    ("storage: !!timestamp 2025-13-45\n", "c.yaml:1: storage: bad value: not a valid !!timestamp"),
    ("base: &b {type: sqlite}\nstorage:\n  <<: *b\n", "c.yaml:3: storage: '<<' (a YAML merge key) is not supported"),
    ("storage: &s {type: *s}\n", "c.yaml:1: storage.type: recursive alias: the anchored value contains itself"),
    ("storage: " + "[" * 5000, "c.yaml: not valid YAML: nested too deeply"),
    ('http: {"enab\\nled": false}\n', "c.yaml:1: http.enab\\nled: unknown key 'enab\\nled' (did you mean 'enabled'?)"),
    ('"a\\u2028b\\tc": 1\n', "c.yaml:1: a\\u2028b\\tc: unknown key 'a\\u2028b\\tc'"),
    # YAML also breaks lines at U+0085, U+2028 and U+2029; an editor, grep -n and sed do not: count \n only
    ("storage: {type: sqlite, path: x}\x85http: {enabled: 7}\n", "c.yaml:1: http.enabled: expected a valid boolean"),
    ("zones: []\n\u2028\u2028http: {listen: x}\n", "c.yaml:2: http.listen: expected host:port"),
    ("zones: []\n\u2029http: \x08\n", "c.yaml:2: not valid YAML: unacceptable character #x0008"),
])
def test_every_error_is_one_line_with_its_line_number(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(CollectorConfig, text, "c.yaml")
    assert str(err.value).startswith(expected)
    assert len(str(err.value).splitlines()) == 1 and str(err.value).isprintable()


def test_a_config_error_escapes_what_it_quotes() -> None:
    err = ConfigError("c.yaml", 3, ("zones", "a\nb", 0), "expected\tsomething\x00")
    assert str(err) == "c.yaml:3: zones.a\\nb[0]: expected\\tsomething\\x00"
    assert err.message == "expected\\tsomething\\x00" and err.path == ("zones", "a\nb", 0)


@pytest.mark.parametrize("value", ["!!binary s3cret-value", "!!int s3cret-value", "!!float s3cret-value",
                                   "!!foo s3cret-value", '"s3cret-\x07value"'])
def test_a_bad_yaml_value_where_a_secret_belongs_is_not_echoed(value: str) -> None:
    # PyYAML's own message shows the line it failed on, and a constructor's error (int('s3cret-value')) the value
    with pytest.raises(ConfigError) as err:
        load(CollectorConfig, f"mqtt:\n  password: {value}\n", "c.yaml")
    assert "s3cret" not in str(err.value) and str(err.value).startswith("c.yaml:2: ")


GROUP = """\
zones: {dv: {name: DV, areas: [a]}}
carriers: {vt: {plmn: 452-04, name: Viettel}}
sites: {pop: {zone: dv, area: a}}
devices: {sw: {site: pop}}
links: {l1: {device: sw, ifname: x1}, l2: {device: sw, ifname: x2}, l3: {device: sw, ifname: x3}}
redundancy_groups:
  g:
    zone: dv
    carriers: [vt]
    members: [{link: l1}, {link: l2}, {link: l3}]
"""


def test_a_group_says_what_service_and_redundancy_need_apart() -> None:
    group = load(Inventory, GROUP + "    min_up: {service: 2, redundancy: 3}\n", "i.yaml").redundancy_groups["g"]
    assert (group.service_needs, group.redundant_needs) == (2, 3)
    default = load(Inventory, GROUP, "i.yaml").redundancy_groups["g"]
    assert (default.service_needs, default.redundant_needs) == (1, 3)


@pytest.mark.parametrize(("min_up", "expected"), [
    # the old single number said neither clearly: refused with what to write instead
    ("1", r"i.yaml:11: redundancy_groups.g.min_up: min_up is a mapping now, not a number \(1\): say what the "
          r"service needs and what redundancy needs, e.g. \{service: 1, redundancy: 1\}"),
    ("{service: 3, redundancy: 2}", r"i.yaml:\d+: redundancy_groups.g: min_up.service \(3\) cannot be more than "
                                    r"min_up.redundancy \(2\)"),
    ("{redundancy: 4}", r"i.yaml:\d+: redundancy_groups.g: min_up.redundancy must be between 1 and the number of "
                        r"members \(3\), got 4"),
    ("{servce: 1}", r"i.yaml:11: redundancy_groups.g.min_up.servce: unknown key 'servce' \(did you mean 'service'\?\)"),
])
def test_a_bad_min_up_is_named(min_up: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load(Inventory, GROUP + f"    min_up: {min_up}\n", "i.yaml")
