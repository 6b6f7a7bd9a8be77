"""Configuration cannot be turned into a weapon: the loader's bounds (alias bombs, file size), secret files
(mode, kind, size, symbolic links) and what an inventory may do with secrets (only the ones the collector
configuration declares, only towards the URLs and the carrier they are declared for)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from pydantic import SecretStr

from collector.config import CollectorConfig
from collector.inventory import Inventory, WebhookReceiver, load_inventory
from collector.secrets import NAMES_ONLY, BoundSecret, context, url_within
from zonewatch.strict import (
    MAX_ALIAS_VALUES,
    MAX_CONFIG_BYTES,
    MAX_SECRET_BYTES,
    ConfigError,
    Strict,
    load,
    load_file,
    read_secret_file,
)

TOKEN = "vt-hook-token-0123456789"
HOOK = "https://alerts.viettel.example/zonewatch/"


# ------------------------------------------------------------------------------------------------ loader bounds


def alias_bomb(levels: int, width: int = 10, last: str = "zones") -> str:
    """Return the "billion laughs": each level a list of ``width`` aliases to the level before."""
    lines = [f"l0: &l0 [{','.join(['lol'] * width)}]"]
    lines += [f"l{i}: &l{i} [{','.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join([*lines, f"{last}: *l{levels - 1}"]) + "\n"


class Doc(Strict):
    """A model that takes what the boundary tests build."""

    a: list[str] = []
    b: list[list[str]] = []


def test_the_billion_laughs_is_refused_naming_the_key_and_line() -> None:
    text = alias_bomb(9)
    assert len(text) < 512  # 10**9 values from under 512 bytes
    with pytest.raises(ConfigError) as err:
        load(Inventory, text, "inventory.yaml")
    assert str(err.value) == ("inventory.yaml:5: l4[7]: aliases expand to more than 100,000 values (each use of an "
                              "alias builds everything under its anchor again): write the values out, or use "
                              "fewer aliases")


def test_aliases_may_build_up_to_the_bound_and_not_one_more() -> None:
    # the anchored list is 1 + 999 values; each alias to it builds those 1,000 again
    anchored = "a: &a [" + ", ".join(["x"] * 999) + "]\n"
    uses = MAX_ALIAS_VALUES // 1000
    assert len(load(Doc, anchored + f"b: [{', '.join(['*a'] * uses)}]\n", "d.yaml").b) == uses
    with pytest.raises(ConfigError, match=r"^d.yaml:2: b\[100\]: aliases expand to more than 100,000 values"):
        load(Doc, anchored + f"b: [{', '.join(['*a'] * (uses + 1))}]\n", "d.yaml")


def test_an_alias_used_as_intended_still_loads() -> None:
    text = """\
zones:
  dv: {name: DV, thresholds: {default: &t {hole_dbm: -112, fair_dbm: -101, good_dbm: -91}, lte: *t}}
  hp: {name: HP, thresholds: {default: *t}}
"""
    inv = load(Inventory, text, "i.yaml")
    assert inv.zones["hp"].threshold("lte").hole_dbm == inv.zones["dv"].threshold("lte").hole_dbm == -112


def test_a_file_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    big = tmp_path / "inventory.yaml"
    big.write_text("zones: {}\n" + "#" * MAX_CONFIG_BYTES)
    message = "larger than 4 MiB, the most a configuration file may hold"
    with pytest.raises(ConfigError) as err:
        load_file(Inventory, big)
    assert str(err.value) == f"{big}: {message}"
    with pytest.raises(ConfigError, match=f"^i.yaml: {message}$"):
        load(Inventory, big.read_text(), "i.yaml")
    with pytest.raises(ConfigError, match=f"^/dev/zero: {message}$"):  # an endless file: read up to the limit only
        load_file(Inventory, "/dev/zero")


def test_the_size_limit_counts_bytes_not_characters() -> None:
    text = "zones: {}\n#" + "\u00e9" * (MAX_CONFIG_BYTES // 2)  # two bytes each in UTF-8
    with pytest.raises(ConfigError, match="larger than 4 MiB"):
        load(Inventory, text, "i.yaml")


# ------------------------------------------------------------------------------------------------ secret files


def secret(path: Path, value: str = TOKEN, mode: int = 0o600) -> Path:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_text(value + "\n")
    path.chmod(mode)
    return path


@pytest.mark.parametrize(("mode", "who"), [(0o666, "its group and every user"), (0o602, "every user"),
                                           (0o620, "its group")])
def test_a_secret_file_others_may_write_is_refused(tmp_path: Path, mode: int, who: str) -> None:
    path = secret(tmp_path / "pw", mode=mode)
    with pytest.raises(ConfigError) as err:
        load(CollectorConfig, f"mqtt: {{password: {{file: '{path}'}}}}\n", "c.yaml")
    assert str(err.value) == (f"c.yaml:1: mqtt.password: secret file {path} may be written by {who} (mode "
                              f"{mode:04o}): make it writable by its owner only (chmod go-w)")


def test_a_secret_file_every_user_may_read_is_taken_with_a_warning(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    path = secret(tmp_path / "pw", mode=0o644)
    with caplog.at_level(logging.WARNING, logger="zonewatch.strict"):
        assert read_secret_file(path) == TOKEN
    assert [r.getMessage() for r in caplog.records] == [
        f"secret file {path} may be read by every user (mode 0644): chmod o-r"]
    caplog.clear()
    secret(path, mode=0o640)
    with caplog.at_level(logging.WARNING, logger="zonewatch.strict"):
        assert read_secret_file(path) == TOKEN
    assert not caplog.records


def test_a_secret_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^secret file /dev/zero is not a regular file \(it is a character device\)"):
        read_secret_file("/dev/zero")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)  # no writer: an open that waited for one would never return
    with pytest.raises(ValueError, match=r"is not a regular file \(it is a FIFO\)"):
        read_secret_file(fifo)
    with pytest.raises(ValueError, match=r"is not a regular file \(it is a folder\)"):
        read_secret_file(tmp_path)


def test_a_secret_file_is_read_up_to_64_kib(tmp_path: Path) -> None:
    path = tmp_path / "big"
    path.write_bytes(b"k" * MAX_SECRET_BYTES)
    path.chmod(0o600)
    assert read_secret_file(path) == "k" * MAX_SECRET_BYTES
    path.write_bytes(b"k" * (MAX_SECRET_BYTES + 1))
    with pytest.raises(ValueError, match=rf"^secret file {path} is larger than 64 KiB$"):
        read_secret_file(path)
    path.write_bytes(b"\xff\xfe token")
    with pytest.raises(ValueError, match="is not UTF-8 text"):
        read_secret_file(path)


def test_an_operators_secret_file_may_be_a_link(tmp_path: Path) -> None:
    """The operator's own configuration names its files as it likes (a packaged secret is often a link)."""
    target = secret(tmp_path / "real" / "pw")
    (tmp_path / "pw").symlink_to(target)
    cfg = load(CollectorConfig, f"mqtt: {{password: {{file: '{tmp_path / 'pw'}'}}}}\n", "c.yaml")
    assert cfg.mqtt is not None and cfg.mqtt.password is not None
    assert cfg.mqtt.password.get_secret_value() == TOKEN


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "secrets"
    folder.mkdir(mode=0o700)
    secret(folder / "vt-token")
    return folder


@pytest.mark.parametrize("name", ["../outside", "/etc/passwd", "./vt-token", "a//b", "", "sub/../vt-token"])
def test_a_name_under_the_secrets_folder_cannot_leave_it(secrets_dir: Path, name: str) -> None:
    secret(secrets_dir.parent / "outside")
    with pytest.raises(ValueError, match=rf"^secret file {name!r} must be a name inside {secrets_dir} "):
        read_secret_file(name, root=secrets_dir)


def test_no_link_is_followed_under_the_secrets_folder(secrets_dir: Path) -> None:
    outside = secret(secrets_dir.parent / "broker-password", "the-broker-password")
    (secrets_dir / "link").symlink_to(outside)
    (secrets_dir / "sub").symlink_to(outside.parent, target_is_directory=True)
    for name in ("link", "sub/broker-password"):
        with pytest.raises(ValueError, match=rf"^cannot read secret file {secrets_dir / name}: it, or a folder on "
                                             rf"the way, is a symbolic link \(it must be a file inside "):
            read_secret_file(name, root=secrets_dir)
    secret(secrets_dir / "carrier" / "token", "nested")
    assert read_secret_file("carrier/token", root=secrets_dir) == "nested"


def test_a_secrets_folder_others_may_write_is_refused(secrets_dir: Path) -> None:
    secrets_dir.chmod(0o777)
    with pytest.raises(ValueError, match=rf"^secret folder {secrets_dir} may be written by its group and every user "
                                         r"\(mode 0777\): anyone who may write it may plant a secret"):
        read_secret_file("vt-token", root=secrets_dir)
    secrets_dir.chmod(0o700)
    (secrets_dir / "open").mkdir(mode=0o700)
    (secrets_dir / "open").chmod(0o770)
    secret(secrets_dir / "open" / "t")
    with pytest.raises(ValueError, match=rf"^secret folder {secrets_dir / 'open'} may be written by its group"):
        read_secret_file("open/t", root=secrets_dir)


# ------------------------------------------------------------------------------------------------ the collector's side


def collector(secrets_dir: Path, receivers: str, extra: str = "") -> CollectorConfig:
    text = f"secrets:\n  dir: '{secrets_dir}'\n  env_prefix: ZW_SECRET_\n{extra}  receivers:\n{receivers}"
    return load(CollectorConfig, text, "collector.yaml")


VT = f"    vt-token: {{file: vt-token, sends_to: '{HOOK}', carrier: 452-04}}\n"


def test_declared_secrets_are_read_at_load(secrets_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZW_SECRET_MOBI", "mobi-token")
    cfg = collector(secrets_dir, VT + "    mobi: {env: ZW_SECRET_MOBI, sends_to: 'https://hooks.mobifone.example'}\n")
    assert cfg.secrets.token("vt-token", HOOK + "a").get_secret_value() == TOKEN
    assert cfg.secrets.token("mobi", "https://hooks.mobifone.example/x").get_secret_value() == "mobi-token"
    assert TOKEN not in repr(cfg) and TOKEN not in str(cfg)


@pytest.mark.parametrize(("receivers", "expected"), [
    ("    x: {file: ../vt-token, sends_to: 'https://a.example/'}\n",
     "collector.yaml:5: secrets.receivers.x.file: secret file '../vt-token' must be a name inside {dir} (no leading "
     "'/', no '.' or '..')"),
    ("    x: {file: /etc/zonewatch/mqtt-password, sends_to: 'https://a.example/'}\n",
     "collector.yaml:5: secrets.receivers.x.file: secret file '/etc/zonewatch/mqtt-password' must be a name inside "
     "{dir} (no leading '/', no '.' or '..')"),
    ("    x: {env: ZW_COLLECTOR_MQTT_PASSWORD, sends_to: 'https://a.example/'}\n",
     "collector.yaml:5: secrets.receivers.x.env: ZW_COLLECTOR_MQTT_PASSWORD does not start with secrets.env_prefix "
     "'ZW_SECRET_'"),
    ("    x: {env: ZW_SECRET_UNSET, sends_to: 'https://a.example/'}\n",
     "collector.yaml:5: secrets.receivers.x.env: environment variable ZW_SECRET_UNSET is not set"),
    ("    x: {file: vt-token, env: ZW_SECRET_X, sends_to: 'https://a.example/'}\n",
     "collector.yaml:5: secrets.receivers.x: give exactly one of file (a name inside secrets.dir) or env"),
    ("    x: {file: vt-token, sends_to: 'https://evil.example\\\\@a.example/'}\n",
     "collector.yaml:5: secrets.receivers.x.sends_to: expected an http:// or https:// URL prefix"),
    ("    x: {file: vt-token, sends_to: 'https://a.example/', carrier: viettel}\n",
     "collector.yaml:5: secrets.receivers.x.carrier: expected a PLMN like '452-04' (MCC-MNC), got 'viettel'"),
    ("    X Y: {file: vt-token, sends_to: 'https://a.example/'}\n",
     "collector.yaml:4: secrets.receivers: secret name 'X Y' is not an id"),
])
def test_a_bad_secret_declaration_names_its_key(secrets_dir: Path, receivers: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        collector(secrets_dir, receivers)
    assert str(err.value).startswith(expected.format(dir=secrets_dir)), str(err.value)


def test_a_declaration_needs_the_folder_or_the_prefix() -> None:
    with pytest.raises(ConfigError, match=r"^c.yaml:2: secrets.receivers.x.file: a file secret needs secrets.dir"):
        load(CollectorConfig, "secrets:\n  receivers: {x: {file: t, sends_to: 'https://a.example/'}}\n", "c.yaml")
    with pytest.raises(ConfigError, match=r"^c.yaml:2: secrets.receivers.x.env: an environment secret needs "
                                          r"secrets.env_prefix"):
        load(CollectorConfig, "secrets:\n  receivers: {x: {env: T, sends_to: 'https://a.example/'}}\n", "c.yaml")
    with pytest.raises(ConfigError, match=r"^c.yaml:1: secrets.dir: expected an absolute path"):
        load(CollectorConfig, "secrets: {dir: secrets}\n", "c.yaml")


def test_the_operators_own_receivers_keep_file_and_env(secrets_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZW_NOC_TOKEN", "noc-token")
    cfg = load(CollectorConfig, f"""\
alerting:
  noc:
    - {{type: webhook, url: 'https://noc.example/a', bearer_token: {{env: ZW_NOC_TOKEN}}}}
    - {{type: webhook, url: 'https://noc.example/b', bearer_token: {{file: '{secrets_dir / 'vt-token'}'}}}}
""", "c.yaml")
    tokens = [r.bearer_token.get_secret_value() for r in cfg.alerting.noc
              if isinstance(r, WebhookReceiver) and r.bearer_token is not None]
    assert tokens == ["noc-token", TOKEN]


# ------------------------------------------------------------------------------------------------ the inventory's side


def inventory(token: str, url: str = HOOK + "alerts", plmn: str = "452-04") -> str:
    return f"""\
zones: {{dv: {{name: DV}}}}
carriers:
  mobifone: {{plmn: 452-01, name: MobiFone}}
  carrier:
    plmn: {plmn}
    name: A carrier
    notify:
      - {{type: email, to: [noc@carrier.example]}}
      - {{type: webhook, url: '{url}', bearer_token: {token}}}
"""


KEY = "i.yaml:9: carriers.carrier.notify[1].bearer_token: "
READS_NOTHING = ("declare the token in the collector configuration under secrets.receivers (with the URL it may be "
                 "sent to) and write {secret: NAME} here")


@pytest.mark.parametrize(("token", "expected"), [
    ("{file: /proc/self/environ}", f"an inventory may not read a file: {READS_NOTHING}"),
    ("{file: ../../etc/zonewatch/mqtt-password}", f"an inventory may not read a file: {READS_NOTHING}"),
    ("{env: ZW_COLLECTOR_MQTT_PASSWORD}", f"an inventory may not read an environment variable: {READS_NOTHING}"),
    ("{env: ZW_SECRET_VT}", f"an inventory may not read an environment variable: {READS_NOTHING}"),
    ("{secret: smtp-password}", "unknown secret 'smtp-password': the collector configuration's secrets.receivers "
                                "declares vt-token"),
    ("{secret: [vt-token]}", "expected {secret: NAME} (declared under secrets.receivers in the collector "
                             "configuration) or a string"),
])
def test_an_inventory_cannot_name_a_file_a_variable_or_an_undeclared_secret(secrets_dir: Path, token: str,
                                                                             expected: str) -> None:
    cfg = collector(secrets_dir, VT)
    with pytest.raises(ConfigError) as err:
        load(Inventory, inventory(token), "i.yaml", context=context(cfg.secrets))
    assert str(err.value) == KEY + expected


@pytest.mark.parametrize("url", [
    "https://collect.attacker.example/",
    "http://alerts.viettel.example/zonewatch/alerts",              # not in clear
    "https://alerts.viettel.example:8443/zonewatch/alerts",        # another port
    "https://alerts.viettel.example/other",                        # outside the path
    "https://alerts.viettel.example/zonewatchx",                   # a prefix of the text, not of the path
    "https://alerts.viettel.example/zonewatch/../admin",           # a dot segment
    "https://alerts.viettel.example/zonewatch/%2e%2e/admin",       # an encoded one
    "https://alerts.viettel.example.attacker.example/zonewatch/",  # a longer host
    "https://alerts.viettel.example@attacker.example/zonewatch/",  # user info
    "https://attacker.example\\@alerts.viettel.example/zonewatch/",  # the host a client sees is attacker.example
])
def test_a_declared_secret_goes_only_under_its_url(secrets_dir: Path, url: str) -> None:
    cfg = collector(secrets_dir, VT)
    with pytest.raises(ConfigError) as err:
        load(Inventory, inventory("{secret: vt-token}", url), "i.yaml", context=context(cfg.secrets))
    assert str(err.value) == KEY + (f"secret 'vt-token' may only be sent to URLs under {HOOK} (secrets.receivers."
                                    "vt-token.sends_to in the collector configuration); this url is not")
    assert TOKEN not in str(err.value)


def test_a_declared_secret_goes_only_to_its_carrier(secrets_dir: Path) -> None:
    cfg = collector(secrets_dir, VT)
    with pytest.raises(ConfigError) as err:
        load(Inventory, inventory("{secret: vt-token}", plmn="452-02"), "i.yaml", context=context(cfg.secrets))
    assert str(err.value) == KEY + ("secret 'vt-token' is declared for carrier 452-04 (secrets.receivers.vt-token."
                                    "carrier), not for 452-02")


def test_a_declared_secret_reaches_its_receiver(secrets_dir: Path) -> None:
    cfg = collector(secrets_dir, VT)
    inv = load(Inventory, inventory("{secret: vt-token}", HOOK + "alerts?x=1"), "i.yaml",
               context=context(cfg.secrets))
    hook = inv.carriers["carrier"].notify[1]
    assert isinstance(hook, WebhookReceiver) and isinstance(hook.bearer_token, BoundSecret)
    assert hook.bearer_token.get_secret_value() == TOKEN and hook.bearer_token.name == "vt-token"
    literal = load(Inventory, inventory("lab-token"), "i.yaml").carriers["carrier"].notify[1]
    assert isinstance(literal, WebhookReceiver) and literal.bearer_token == SecretStr("lab-token")


def test_without_the_collectors_secrets_a_named_secret_is_refused_or_left_unread(tmp_path: Path) -> None:
    text = inventory("{secret: vt-token}")
    with pytest.raises(ConfigError, match=r"bearer_token: secret 'vt-token': no secrets to take it from"):
        load(Inventory, text, "i.yaml")
    path = tmp_path / "i.yaml"
    path.write_text(text)
    hook = load_inventory(path, NAMES_ONLY).carriers["carrier"].notify[1]  # the report: it sends nothing
    assert isinstance(hook, WebhookReceiver) and hook.bearer_token is not None
    assert hook.bearer_token.get_secret_value() == ""


@pytest.mark.parametrize(("url", "prefix", "within"), [
    ("https://h.example/a/b", "https://h.example/a/", True),
    ("https://h.example/a", "https://h.example/a", True),
    ("https://h.example/a/b", "https://h.example/a", True),
    ("https://h.example/ab", "https://h.example/a", False),
    ("https://H.Example./a", "https://h.example/", True),
    ("https://h.example:443/a", "https://h.example/", True),
    ("https://h.example", "https://h.example/", True),
    ("https://h.example/", "https://h.example/a/", False),
    ("https://[::1]:8080/x", "https://[::1]:8080/", True),
    ("https://h.example/a b", "https://h.example/", False),
    ("ftp://h.example/", "ftp://h.example/", False),
    ("https://h.example:99999/", "https://h.example:99999/", False),
])
def test_url_within(url: str, prefix: str, within: bool) -> None:
    assert url_within(url, prefix) is within
