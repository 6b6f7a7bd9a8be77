"""Beyond one broker user and one collector, without a broker: the central ACL with an HA peer and park bridges
(and enrolment keeping them), the park broker's files, and the seq bookkeeping after a restore."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from collector import bridge, mosquitto
from collector.ingest.seq import SeqTracker
from collector.inventory import Inventory
from collector.mosquitto.bundle import write_access, write_bundle
from collector.mosquitto.listener import ListenerTls
from collector.mosquitto.passwd import parse_passwd
from zonewatch.strict import load

INVENTORY = """\
zones:
  park: {name: Park}
  dinh-vu: {name: Dinh Vu}
probes:
  p1: {zone: park}
  p2: {zone: park}
  p9: {zone: dinh-vu}
"""
TLS = ListenerTls("/etc/park/ca.crt", "/etc/park/server.crt", "/etc/park/server.key")
TARGET = bridge.BridgeTarget("central.example", 8883, "/etc/park/central-ca.crt", keepalive_s=20, restart_s=(2, 60))


def inventory() -> Inventory:
    return load(Inventory, INVENTORY, "inventory.yaml")


def blocks(acl: str) -> dict[str, list[str]]:
    """Return each ``user`` block's topic lines."""
    out: dict[str, list[str]] = {}
    user = ""
    for line in acl.splitlines():
        if line.startswith("user "):
            user = line[5:]
            out[user] = []
        elif line.startswith("topic ") and user:
            out[user].append(line)
    return out


def test_the_central_acl_gives_an_ha_peer_its_own_sessions_and_a_bridge_only_its_zone() -> None:
    layout = mosquitto.Layout(peers=("collector-b",), bridges=("park",))
    acl = blocks(mosquitto.render_acl(inventory(), "collector-a", layout=layout))
    assert acl["collector-b"] == [line.replace("collector-a", "collector-b") for line in acl["collector-a"]]
    assert "topic readwrite zonewatch/tick/collector-b" in acl["collector-b"]
    assert acl["collector-b-urgent"] == acl["collector-a-urgent"]
    assert acl["bridge-park"] == ["topic write zw/v1/park/+/status", "topic write zw/v1/park/+/data",
                                  "topic write zw/v1/park/+/events", "topic read zw/v1/park/+/config",
                                  "topic read zw/v1/park/+/command",
                                  "topic write zonewatch/bridge/park/state"]
    assert mosquitto.render_acl(inventory()) == mosquitto.render_acl(inventory(), layout=mosquitto.Layout())
    with pytest.raises(ValueError, match="usernames of their own"):
        mosquitto.usernames(inventory(), "collector", layout=mosquitto.Layout(peers=("collector",)))
    with pytest.raises(ValueError, match="bridge zone 'nowhere' is not in the inventory"):
        mosquitto.usernames(inventory(), layout=mosquitto.Layout(bridges=("nowhere",)))


def test_each_collector_of_a_pair_has_its_own_password_and_enrolment_keeps_the_pair_and_the_bridges(
        tmp_path: Path) -> None:
    out = tmp_path / "broker"
    layout = mosquitto.Layout(peers=("collector-b",), bridges=("park",))
    enrolment = mosquitto.Enrolment(zones=("dinh-vu",))
    write_bundle(inventory(), out, TLS, collector="collector-a", layout=layout, enrolment=enrolment)
    secrets = {p.name for p in (out / "secrets").iterdir()}
    assert {"collector-a", "collector-b", "bridge-park"} <= secrets and "collector-b-urgent" not in secrets
    users = parse_passwd((out / "passwd").read_text())
    assert {"collector-a", "collector-a-urgent", "collector-b", "collector-b-urgent", "bridge-park"} <= users.keys()
    before = (out / "passwd").read_text()
    write_access(out, inventory(), enrolment, "collector-a")   # as `probes approve` does
    after = parse_passwd((out / "passwd").read_text())
    assert {u: h for u, h in after.items() if u in users} == parse_passwd(before)
    assert "user bridge-park" in (out / "acl").read_text() and "user collector-b" in (out / "acl").read_text()
    write_bundle(inventory(), out, TLS, collector="collector-a")   # the pair and bridge are gone
    assert not (out / mosquitto.LAYOUT_FILE).exists()


def test_the_park_broker_gets_its_zones_probes_and_a_tls_bridge_with_its_own_credentials(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    for user in ("p1", "p2", "bridge-park"):
        (secrets / user).write_text(f"pw-{user}\n")
        (secrets / user).chmod(0o600)
    written = bridge.write_park(inventory(), "park", tmp_path / "park", TARGET, TLS, secrets, rate=2, hold_s=3600)
    assert [w.path.name for w in written] == ["passwd", "acl", "mosquitto-listener.conf", "mosquitto-limits.conf",
                                              "bridge.conf"]
    park = tmp_path / "park"
    assert set(blocks((park / "acl").read_text())) == {"p1", "p2"}   # not p9: another zone's probe
    assert set(parse_passwd((park / "passwd").read_text())) == {"p1", "p2"}
    assert "max_queued_messages 14400\n" in (park / "mosquitto-limits.conf").read_text()   # 2 probes x 2/s x 1 h
    conf = (park / "bridge.conf").read_text()
    for line in ("connection zonewatch-park", "address central.example:8883", "bridge_cafile /etc/park/central-ca.crt",
                 "bridge_insecure false", "remote_username bridge-park", "remote_password pw-bridge-park",
                 "remote_clientid bridge-park", "cleansession false", "restart_timeout 2 60", "keepalive_interval 20",
                 "topic zw/v1/park/+/data out 1", "topic zw/v1/park/+/config in 1",
                 "topic zw/v1/park/+/command in 1"):
        assert f"{line}\n" in conf, line
    assert (park / "bridge.conf").stat().st_mode & 0o777 == 0o600
    (secrets / "bridge-park").unlink()
    with pytest.raises(ValueError, match="no password file for bridge-park"):
        bridge.write_park(inventory(), "park", tmp_path / "again", TARGET, TLS, secrets)


def tracker() -> SeqTracker:
    return SeqTracker(sqlite3.connect(":memory:"))


def test_after_a_restore_the_first_forward_gap_of_each_stream_is_the_old_collectors_not_lost() -> None:
    seqs = tracker()
    for seq in (1, 2, 3, 5):   # 4 is missing when the backup is taken
        seqs.first_time("park/p1", 1, seq)
    assert seqs.gaps("park/p1") == 1
    seqs.resume()
    assert seqs.first_time("park/p1", 1, 6)       # the restored intake's own entries: in line
    assert seqs.first_time("park/p1", 1, 20)      # 7..19 were taken by the old collector after the backup
    assert seqs.gaps("park/p1") == 1              # 4 still missing; 7..19 not lost
    assert not seqs.first_time("park/p1", 1, 12)  # and they are repeats now
    assert seqs.first_time("park/p1", 1, 30)      # a later gap counts as always
    assert seqs.gaps("park/p1") == 1 + 9
