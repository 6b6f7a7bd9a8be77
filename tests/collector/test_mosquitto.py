"""The broker's ACL, password file and listener rendered from the inventory, without a broker."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from collector import cli, mosquitto
from collector.inventory import Inventory
from collector.mosquitto.bundle import write_bundle
from collector.mosquitto.limits import QueueSizing, max_packet_size, render_limits
from collector.mosquitto.listener import ListenerTls, render_listener, render_listener_options
from collector.mosquitto.passwd import hash_password, render_passwd
from zonewatch import strict, wire
from zonewatch.strict import load

INVENTORY = """\
zones:
  z1: {name: Zone one}
  dinh-vu: {name: Dinh Vu}
probes:
  p2: {zone: z1}
  p1: {zone: z1}
  gate.a-1: {zone: dinh-vu}
"""

EXPECTED_ACL = """\
# ZoneWatch broker ACL, rendered from the inventory by `zonewatch-collector render-mosquitto`.
# Literal topics per user and no %c patterns: what a client may do follows from the username
# its password proved, never from the client id it chose.

user collector
topic read zw/v1/+/+/status
topic read zw/v1/+/+/data
topic read zw/v1/+/+/events
topic write zw/v1/+/+/config
topic write zw/v1/+/+/command
# its ticks: published and read back through its data session, to know how far behind it is
topic readwrite zonewatch/tick/collector

# the collector's status and events session
user collector-urgent
topic read zw/v1/+/+/status
topic read zw/v1/+/+/events

# probe gate.a-1 in zone dinh-vu
user gate.a-1
topic write zw/v1/dinh-vu/gate.a-1/status
topic write zw/v1/dinh-vu/gate.a-1/data
topic write zw/v1/dinh-vu/gate.a-1/events
topic read zw/v1/dinh-vu/gate.a-1/config
topic read zw/v1/dinh-vu/gate.a-1/command

# probe p1 in zone z1
user p1
topic write zw/v1/z1/p1/status
topic write zw/v1/z1/p1/data
topic write zw/v1/z1/p1/events
topic read zw/v1/z1/p1/config
topic read zw/v1/z1/p1/command

# probe p2 in zone z1
user p2
topic write zw/v1/z1/p2/status
topic write zw/v1/z1/p2/data
topic write zw/v1/z1/p2/events
topic read zw/v1/z1/p2/config
topic read zw/v1/z1/p2/command
"""

TLS = ListenerTls("/etc/ca.crt", "/etc/server.crt", "/etc/server.key")


def inventory(text: str = INVENTORY) -> Inventory:
    return load(Inventory, text, "inventory.yaml")


def test_acl_gives_each_probe_its_own_literal_topics_and_the_collector_all() -> None:
    assert mosquitto.render_acl(inventory()) == EXPECTED_ACL


def test_acl_has_no_pattern_that_trusts_the_client_id() -> None:
    acl = mosquitto.render_acl(inventory())
    rules = [line for line in acl.splitlines() if line and not line.startswith("#")]
    assert not [r for r in rules if r.startswith("pattern") or "%" in r]
    # every rule comes after a user line, so none of them applies to anonymous clients
    assert rules[0] == "user collector"


def test_collector_user_can_be_named_and_must_not_be_a_probe() -> None:
    acl = mosquitto.render_acl(inventory(), collector="zw-collector-a")
    assert "\nuser zw-collector-a\ntopic read zw/v1/+/+/status\n" in acl
    assert "\nuser zw-collector-a-urgent\ntopic read zw/v1/+/+/status\ntopic read zw/v1/+/+/events\n\n" in acl
    assert "user collector" not in acl
    with pytest.raises(ValueError, match="collector user 'p1' is also a probe id"):
        mosquitto.render_acl(inventory(), collector="p1")
    with pytest.raises(ValueError, match="collector user 'zw-a-urgent' is also a probe id"):
        mosquitto.render_acl(inventory(INVENTORY.replace("p2:", "zw-a-urgent:")), collector="zw-a")
    with pytest.raises(ValueError, match="collector user 'coll ector'"):
        mosquitto.render_acl(inventory(), collector="coll ector")


@pytest.mark.parametrize("probe_id", ["p/1", "p+", "p#", "P1", "p 1", "-p1", "p1\nuser collector"])
def test_a_probe_id_that_is_no_plain_topic_segment_is_refused(probe_id: str) -> None:
    # The inventory does not check its keys: the renderer is what keeps them out of the ACL.
    inv = inventory().model_copy(update={"probes": {probe_id: inventory().probes["p1"]}})
    with pytest.raises(ValueError, match="cannot be used in the broker's ACL"):
        mosquitto.render_acl(inv)


def test_the_inventory_refuses_ids_that_are_no_topic_segment() -> None:
    with pytest.raises(strict.ConfigError, match=r"probes: probes key 'p/\+' is not an id"):
        inventory("zones:\n  z1: {name: one}\nprobes:\n  'p/+': {zone: z1}\n")
    with pytest.raises(strict.ConfigError, match=r"zones: zones key 'z#' is not an id"):
        inventory("zones:\n  'z#': {name: one}\nprobes:\n  p1: {zone: 'z#'}\n")


def test_the_renderer_checks_ids_itself() -> None:
    inv = inventory("zones:\n  z1: {name: one}\nprobes:\n  p1: {zone: z1}\n")
    bad = inv.model_copy(update={"probes": {"p/+": inv.probes["p1"]}})
    with pytest.raises(ValueError, match=r"probe 'p/\+' cannot be used"):
        mosquitto.render_acl(bad)


def test_hash_matches_what_mosquitto_passwd_wrote() -> None:
    # A line written by mosquitto_passwd 2.0.11 (-b, default sha512-pbkdf2) for password "secret".
    line = ("alice:$7$101$44lCyo5UPefTtiyJ$UgqT1BtvuZBYY1LFG0Lo2eh3Z+LKqwsXykA2zU2ieTK9ad5BLDNoeXlfp0hB+OmT9Ynz"
            "qYq9sKI2CFXdMw5Lrg==")
    salt = base64.b64decode(line.split("$")[3])
    assert "alice:" + hash_password("secret", salt) == line
    assert "alice:" + hash_password("Secret", salt) != line


def test_passwd_has_one_salted_line_per_user_and_refuses_empty_passwords() -> None:
    text = render_passwd({"collector": "a", "p1": "a"})
    lines = text.splitlines()
    assert [line.split(":")[0] for line in lines] == ["collector", "p1"]
    assert all(line.split(":", 1)[1].startswith("$7$101$") for line in lines)
    assert lines[0].split(":")[1] != lines[1].split(":")[1]  # same password, different salt
    with pytest.raises(ValueError, match="password of 'p1' is empty"):
        render_passwd({"p1": ""})


def test_listener_refuses_anonymous_and_pins_the_client_id_to_the_username() -> None:
    text = render_listener(8883, "/b/passwd", "/b/acl", TLS, bind="0.0.0.0")
    settings = [line for line in text.splitlines() if not line.startswith("#")]
    assert settings == [
        "listener 8883 0.0.0.0",
        "allow_anonymous false",
        "password_file /b/passwd",
        "acl_file /b/acl",
        "use_username_as_clientid true",
        "cafile /etc/ca.crt",
        "certfile /etc/server.crt",
        "keyfile /etc/server.key",
        "tls_version tlsv1.2",
        "require_certificate false",
    ]
    mutual = ListenerTls("/c", "/s", "/k", require_certificate=True)
    assert "require_certificate true\n" in render_listener_options("/p", "/a", mutual)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _password_of(passwd: str, user: str, password: str) -> bool:
    entry = dict(line.split(":", 1) for line in passwd.splitlines())[user]
    salt = base64.b64decode(entry.split("$")[3])
    return hash_password(password, salt) == entry


def test_bundle_generates_private_passwords_once_and_keeps_them(tmp_path: Path) -> None:
    out = tmp_path / "out"
    written = write_bundle(inventory(), out, TLS, port=18883)
    secrets = out / "secrets"
    assert sorted(p.name for p in secrets.iterdir()) == ["collector", "gate.a-1", "p1", "p2"]
    assert {w.path.name for w in written} == {"collector", "gate.a-1", "p1", "p2", "passwd", "acl",
                                              "mosquitto-listener.conf", "mosquitto-limits.conf"}
    assert _mode(secrets) == 0o700
    assert {_mode(p) for p in secrets.iterdir()} == {0o600}
    assert _mode(out / "passwd") == 0o600
    p1 = (secrets / "p1").read_text().strip()
    assert len(p1) >= 32
    assert _password_of((out / "passwd").read_text(), "p1", p1)
    assert (out / "acl").read_text() == EXPECTED_ACL
    listener = (out / "mosquitto-listener.conf").read_text()
    assert "listener 18883\n" in listener
    assert f"password_file {out.resolve()}/passwd\n" in listener
    # a second run keeps every password and reports no new one
    again = write_bundle(inventory(), out, TLS, broker_dir="/etc/mosquitto/zw")
    assert [w.path.name for w in again] == ["passwd", "acl", "mosquitto-listener.conf", "mosquitto-limits.conf"]
    assert (secrets / "p1").read_text().strip() == p1
    assert _password_of((out / "passwd").read_text(), "p1", p1)
    assert "acl_file /etc/mosquitto/zw/acl\n" in (out / "mosquitto-listener.conf").read_text()


def test_bundle_takes_passwords_from_a_secrets_folder_and_names_what_is_missing(tmp_path: Path) -> None:
    given = tmp_path / "given"
    given.mkdir()
    for user in ("collector", "p1", "p2"):
        (given / user).write_text(f"pw-of-{user}\n")
    with pytest.raises(ValueError, match="no password file for gate.a-1$"):
        write_bundle(inventory(), tmp_path / "out", TLS, secrets_dir=given)
    (given / "gate.a-1").write_text("pw-of-gate\n")
    written = write_bundle(inventory(), tmp_path / "out", TLS, secrets_dir=given)
    assert not (tmp_path / "out" / "secrets").exists()
    assert len(written) == 4
    passwd = (tmp_path / "out" / "passwd").read_text()
    assert _password_of(passwd, "gate.a-1", "pw-of-gate")
    assert _password_of(passwd, "collector", "pw-of-collector")
    assert _password_of(passwd, "collector-urgent", "pw-of-collector")   # its second session, same password
    (given / "p2").write_text("\n")
    with pytest.raises(ValueError, match="one non-empty line"):
        write_bundle(inventory(), tmp_path / "out", TLS, secrets_dir=given)


def test_a_password_file_is_read_as_a_secret_file_is(tmp_path: Path) -> None:
    """--secrets read any file its user could: a link planted in the folder, or a file anyone may write (and so
    choose the broker password of), went into the broker's password file unchecked."""
    given = tmp_path / "given"
    given.mkdir()
    for user in ("collector", "p1", "p2", "gate.a-1"):
        (given / user).write_text(f"pw-of-{user}\n")
    outside = tmp_path / "elsewhere"
    outside.write_text("not a password of ours\n")
    (given / "p2").unlink()
    (given / "p2").symlink_to(outside)
    with pytest.raises(ValueError, match="symbolic link"):
        write_bundle(inventory(), tmp_path / "out", TLS, secrets_dir=given)
    (given / "p2").unlink()
    (given / "p2").write_text("pw-of-p2\n")
    (given / "p2").chmod(0o666)
    with pytest.raises(ValueError, match="p2"):
        write_bundle(inventory(), tmp_path / "out", TLS, secrets_dir=given)
    (given / "p2").chmod(0o600)
    assert write_bundle(inventory(), tmp_path / "out", TLS, secrets_dir=given)


def test_command_writes_the_files_and_never_prints_a_password(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "inventory.yaml").write_text(INVENTORY)
    (tmp_path / "collector.yaml").write_text(
        "mqtt: {username: central-1}\ninventory: inventory.yaml\n"
        f"storage: {{type: sqlite, path: '{tmp_path / 'zw.db'}'}}\n")
    out = tmp_path / "broker"
    code = cli.main(["-c", str(tmp_path / "collector.yaml"), "render-mosquitto", "--out", str(out), "--port", "8884",
                     "--cafile", "/ca.crt", "--certfile", "/s.crt", "--keyfile", "/s.key", "--require-certificate"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert f"wrote {out / 'acl'}: " in printed.out
    assert f"wrote {out / 'secrets' / 'p1'}: " in printed.out
    for secret in (out / "secrets").iterdir():
        assert secret.read_text().strip() not in printed.out + printed.err
    assert "\nuser central-1\n" in (out / "acl").read_text()  # the collector's username from its config
    listener = (out / "mosquitto-listener.conf").read_text()
    assert "listener 8884\n" in listener and "cafile /ca.crt\n" in listener
    assert "require_certificate true\n" in listener
    # Three probes at 2 messages/s for 30 min: the broker's default of 1,000 would drop all but a few minutes.
    limits = (out / "mosquitto-limits.conf").read_text()
    assert "max_queued_messages 10800\n" in limits and f"max_queued_bytes {10800 * 4608}\n" in limits
    assert "47 MiB" in limits
    assert "\nmax_packet_size 1049600\n" in limits


def test_the_queue_limits_are_sized_by_the_fleet_and_the_outage_they_must_bridge(tmp_path: Path,
                                                                                 capsys: pytest.CaptureFixture[str],
                                                                                 ) -> None:
    sizing = QueueSizing(probes=200, rate=2.0, hold_s=3600)
    assert (sizing.messages, sizing.bytes) == (1_440_000, 1_440_000 * 4608)
    assert QueueSizing(probes=0, hold_s=10).messages == 1000   # never below mosquitto's own default
    (tmp_path / "inventory.yaml").write_text(INVENTORY)
    (tmp_path / "collector.yaml").write_text(f"inventory: inventory.yaml\nstorage: {{type: sqlite, path: "
                                             f"'{tmp_path / 'zw.db'}'}}\n")
    code = cli.main(["-c", str(tmp_path / "collector.yaml"), "render-mosquitto", "--out", str(tmp_path / "b"),
                     "--hold", "2h", "--probe-rate", "0.5"])
    assert code == 0, capsys.readouterr().err
    assert "max_queued_messages 10800\n" in (tmp_path / "b" / "mosquitto-limits.conf").read_text()
    code = cli.main(["-c", str(tmp_path / "collector.yaml"), "render-mosquitto", "--out", str(tmp_path / "b"),
                     "--hold", "2 hours"])
    assert code == 2 and "render-mosquitto: --hold: " in capsys.readouterr().err


def _publish_packet_bytes(topic: str, payload: int) -> int:
    """Return the size of an MQTT v5 PUBLISH (QoS 1, no properties) of ``payload`` bytes on ``topic``."""
    remaining = 2 + len(topic.encode()) + 2 + 1 + payload
    length_bytes = next(n for n in range(1, 5) if remaining < 128**n)
    return 1 + length_bytes + remaining


def test_the_limits_bound_each_clients_packets_by_the_collectors_wire_limit_and_keep_the_fleets_queue() -> None:
    text = render_limits(QueueSizing(probes=3))
    settings = [line for line in text.splitlines() if not line.startswith("#")]
    assert settings == [
        "max_packet_size 1049600",          # 1 MiB of payload (zonewatch.wire.Limits) and 1 KiB of topic and header
        "max_inflight_messages 20",
        "max_inflight_bytes 4198400",       # four of the largest messages
        "max_queued_messages 10800",        # the collector's session: unchanged
        f"max_queued_bytes {10800 * 4608}",
    ]
    assert "no per-client publish rate limit" in text
    # The largest message the collector accepts, on the longest topic the ACL can hold, fits in one packet.
    longest = wire.topic("z" * 63, "p" * 63, "events")
    assert wire.valid_name("z" * 63) and not wire.valid_name("z" * 64)
    assert _publish_packet_bytes(longest, wire.Limits().max_bytes) <= max_packet_size()
    assert max_packet_size() - _publish_packet_bytes(longest, wire.Limits().max_bytes) > 512  # v5 props
    # The limit follows the wire limit it is given.
    smaller = render_limits(QueueSizing(1), wire.Limits(max_bytes=4096))
    assert [line for line in smaller.splitlines() if not line.startswith("#")][:3] == [
        "max_packet_size 5120", "max_inflight_messages 20", "max_inflight_bytes 20480"]


def test_command_without_inventory_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "collector.yaml").write_text(f"storage: {{type: sqlite, path: '{tmp_path / 'zw.db'}'}}\n")
    code = cli.main(["-c", str(tmp_path / "collector.yaml"), "render-mosquitto", "--out", str(tmp_path / "o")])
    assert code == 2
    assert "names no inventory" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


CARRIERS = """\
carriers:
  viettel:
    plmn: 452-04
    name: Viettel
    notify:
      - {type: mqtt, topic: carriers/viettel/alerts}
      - {type: webhook, url: "http://viettel.example/hook"}
  vinaphone:
    plmn: 452-02
    name: VinaPhone
    notify: [{type: mqtt, topic: "carriers/vnpt alerts"}]
"""


def test_the_collector_may_write_the_carriers_alert_topics_and_nothing_more() -> None:
    acl = mosquitto.render_acl(inventory(INVENTORY + CARRIERS))
    alert_lines = ("# the carriers' and the NOC's alert topics (mqtt notification receivers)\n"
                   "topic write carriers/viettel/alerts\ntopic write carriers/vnpt alerts\n")
    tick_line = "topic readwrite zonewatch/tick/collector\n"
    assert acl == EXPECTED_ACL.replace(tick_line, tick_line + alert_lines)


@pytest.mark.parametrize("topic", ["zw/v1/z1/p1/data", "$SYS/x", "carriers/x\\nuser p1", "zonewatch/tick/collector"])
def test_an_alert_topic_in_the_probes_tree_or_that_breaks_the_acl_is_refused_at_load(topic: str) -> None:
    text = INVENTORY + ("carriers:\n  viettel:\n    plmn: 452-04\n    name: V\n"
                        f'    notify: [{{type: mqtt, topic: "{topic}"}}]\n')
    with pytest.raises(strict.ConfigError, match=r"carriers\.viettel\.notify\[0\]\.topic: .*(reserved|plain MQTT)"):
        inventory(text)


def test_the_renderer_refuses_such_a_topic_itself() -> None:
    text = INVENTORY + ("carriers:\n  viettel:\n    plmn: 452-04\n    name: V\n"
                        '    notify: [{type: mqtt, topic: " carriers/x"}]\n')
    with pytest.raises(ValueError, match=r"carriers\.viettel\.notify\[0\]: topic .* cannot be an alert topic"):
        mosquitto.render_acl(inventory(text))


def test_the_nocs_mqtt_receivers_are_the_collectors_topics_too(tmp_path: Path) -> None:
    (tmp_path / "inventory.yaml").write_text(INVENTORY + CARRIERS)
    (tmp_path / "collector.yaml").write_text(
        "inventory: inventory.yaml\n"
        f"storage: {{type: sqlite, path: '{tmp_path / 'zw.db'}'}}\n"
        "alerting:\n  noc:\n    - {type: webhook, url: 'http://127.0.0.1:9/hook'}\n"
        "    - {type: mqtt, topic: noc/alerts}\n    - {type: mqtt, topic: carriers/viettel/alerts}\n")
    out = tmp_path / "broker"
    assert cli.main(["-c", str(tmp_path / "collector.yaml"), "render-mosquitto", "--out", str(out)]) == 0
    acl = (out / "acl").read_text()
    collector_block = acl.split("\n\n")[1]
    assert collector_block.endswith("topic write carriers/viettel/alerts\ntopic write carriers/vnpt alerts\n"
                                    "topic write noc/alerts")  # each topic once, the carriers' first


def test_a_noc_topic_that_would_break_the_acl_is_refused_naming_its_place(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "inventory.yaml").write_text(INVENTORY)
    (tmp_path / "collector.yaml").write_text(
        f"inventory: inventory.yaml\nstorage: {{type: sqlite, path: '{tmp_path / 'zw.db'}'}}\n"
        "alerting:\n  noc: [{type: mqtt, topic: ' noc/alerts'}]\n")
    assert cli.main(["-c", str(tmp_path / "collector.yaml"), "render-mosquitto", "--out", str(tmp_path / "o")]) == 2
    assert "alerting.noc[0]: topic ' noc/alerts' cannot be an alert topic" in capsys.readouterr().err
