"""A park's own broker, bridged to the centre: the park keeps its probes' data while its uplink is down.

::

    probes ──TLS──► park mosquitto ══ bridge (TLS, user bridge-<zone>, QoS 1, persistent session) ══► central
                    (this zone's                                                                    mosquitto
                     probes only)     out: zw/v1/<zone>/+/status, data, events                      ──► collectors
                                      in:  zw/v1/<zone>/+/config

Probes publish to the park's broker, which acknowledges at once; the bridge is the park broker's own client of
the central broker and forwards what the zone's probes write, QoS 1, in order. While the park's uplink (or the
central broker) is down, the park broker queues it for the bridge, up to the limits ``render_limits`` writes,
sized as the central ones are (the zone's probes x ``--probe-rate`` x ``--hold``); when the link is back the
bridge sends the queue first, oldest first, then what comes next. The bridge logs in at the centre as
``bridge-<zone>`` (``collector.mosquitto.Layout``: it may write only that zone's probes' topics and read their
configurations), with a password of its own, over TLS with the central broker's certificate verified.

The park broker pins each probe to its own topics (its ACL: each probe of the zone, literal topics), which is
what the central ACL does for probes that connect to it directly; the collector also refuses a payload whose
probe is not its topic's. The bridge publishes its state, retained, on ``zonewatch/bridge/<zone>/state`` at the
centre: ``1`` while connected, ``0`` when the park broker loses the centre (its last will).

What a cut uplink does: the probes stay connected to the park broker, so no last will of theirs reaches the
centre, only the bridge's. The collector reads it (``collector.alerting.parks``): one ParkUplinkDown for the
zone, and the park's silent probes are unknown, not down, until the park's queue has arrived.

``render_park`` is pure; ``write_park`` writes the files (``zonewatch-collector render-bridge``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from collector import mosquitto
from collector.inventory import Inventory
from collector.mosquitto.bundle import (
    ACL_FILE,
    LIMITS_FILE,
    LISTENER_FILE,
    PASSWD_FILE,
    Written,
    read_password,
    write_file,
)
from collector.mosquitto.limits import QueueSizing, render_limits
from collector.mosquitto.listener import ListenerTls, render_listener
from collector.mosquitto.passwd import hash_password, render_passwd_hashed
from zonewatch import wire

__all__ = ["BRIDGE_FILE", "BridgeTarget", "render_bridge", "render_park_acl", "write_park"]

BRIDGE_FILE = "bridge.conf"   # holds the bridge's password: mode 0600, readable by whoever starts the broker
BRIDGE_PROTOCOL = "mqttv311"


@dataclass(frozen=True)
class BridgeTarget:
    """Where the bridge goes: the central broker's TLS listener and the CA that signed its certificate (a path on
    the park host), how often to send a keepalive, and how long to wait before each reconnection (the first
    wait, doubled up to the second)."""

    host: str
    port: int
    cafile: str
    keepalive_s: int = 30
    restart_s: tuple[int, int] = (5, 60)


def zone_probes(inventory: Inventory, zone: str) -> list[str]:
    """Return the ids of ``zone``'s probes, sorted, after checking the names (they become ACL words)."""
    mosquitto.check_name("zone", zone)
    if zone not in inventory.zones:
        raise ValueError(f"zone {zone!r} is not in the inventory (known: {', '.join(sorted(inventory.zones))})")
    return [p for p, z in mosquitto.probe_zones(inventory).items() if z == zone]


def render_park_acl(inventory: Inventory, zone: str) -> str:
    """Return the park broker's ACL: each probe of ``zone`` with its own literal topics, as at the centre."""
    lines = ["# ZoneWatch park broker ACL for zone " + zone + ", rendered by `zonewatch-collector render-bridge`.",
             "# Each probe of the zone may write only its own status, data and events, and read its own",
             "# configuration; the bridge to the centre is the broker's own and needs no user here."]
    for probe in zone_probes(inventory, zone):
        lines += ["", f"# probe {probe} in zone {zone}", f"user {probe}"]
        lines += [f"topic write {wire.topic(zone, probe, kind)}" for kind in mosquitto.PROBE_WRITES]
        lines += [f"topic read {wire.topic(zone, probe, kind)}" for kind in mosquitto.PROBE_READS]
    return "\n".join(lines) + "\n"


def render_bridge(zone: str, target: BridgeTarget, password: str) -> str:
    """Return the bridge section for the park broker's configuration (it holds ``password``: keep it 0600)."""
    mosquitto.check_name("zone", zone)
    if not password or "\n" in password:
        raise ValueError("the bridge's password must be one non-empty line")
    user = mosquitto.bridge_user(zone)
    low, high = target.restart_s
    lines = [
        f"# ZoneWatch bridge of zone {zone}'s park broker to the centre, rendered by `zonewatch-collector "
        "render-bridge`.",
        "# Put it after every listener of mosquitto.conf (a `connection` line starts a bridge section). It holds the",
        "# bridge's password: keep this file 0600, owned by the user that starts the broker.",
        f"connection zonewatch-{zone}",
        f"address {target.host}:{target.port}",
        f"bridge_protocol_version {BRIDGE_PROTOCOL}",
        f"bridge_cafile {target.cafile}",
        "bridge_insecure false",
        f"remote_username {user}",
        f"remote_password {password}",
        f"remote_clientid {user}",   # the centre's listener ties client ids to usernames
        f"local_clientid {user}-local",
        "# A persistent session at the centre, and QoS 1 both ways: what is queued survives either side's restart",
        "cleansession false",
        "start_type automatic",
        f"restart_timeout {low} {high}",
        f"keepalive_interval {target.keepalive_s}",
        "# The bridge's state at the centre, retained: 1 while connected, 0 (its last will) once it is not",
        "notifications true",
        f"notification_topic {mosquitto.BRIDGE_STATE_ROOT}{zone}/state",
        "# What the zone's probes write goes out; their configurations come in",
        *(f"topic {wire.subscription(kind, zone)} out 1" for kind in mosquitto.PROBE_WRITES),
        *(f"topic {wire.subscription(kind, zone)} in 1" for kind in mosquitto.PROBE_READS),
    ]
    return "\n".join(lines) + "\n"


def write_park(inventory: Inventory, zone: str, out: Path, target: BridgeTarget, tls: ListenerTls,
               secrets_dir: Path, *, port: int = 8883, bind: str | None = None, broker_dir: str | None = None,
               rate: float = 2.0, hold_s: float = 1800.0) -> list[Written]:
    """Write the park broker's files into ``out``: its password file and ACL (the zone's probes), its listener
    for them, its limits (the bridge's queue sized for the zone), and the bridge. Passwords come from
    ``secrets_dir`` (one file per user, as ``render-mosquitto`` keeps them): each probe's and the bridge's."""
    probes = zone_probes(inventory, zone)
    user = mosquitto.bridge_user(zone)
    missing = [u for u in [*probes, user] if not (secrets_dir / u).is_file()]
    if missing:
        raise ValueError(f"{secrets_dir}: no password file for {', '.join(missing)} (render-mosquitto --bridge "
                         f"{zone} at the centre makes the bridge's)")
    passwords: Mapping[str, str] = {u: read_password(secrets_dir, u) for u in [*probes, user]}
    sizing = QueueSizing(len(probes), rate, hold_s)
    out.mkdir(parents=True, exist_ok=True)
    where = broker_dir if broker_dir is not None else str(out.resolve())
    hashes = {p: hash_password(passwords[p]) for p in probes}
    files = [
        (PASSWD_FILE, render_passwd_hashed(hashes) if hashes else "", 0o600,
         f"park broker password file, {len(probes)} probe(s) of zone {zone} (hashed, mode 0600)"),
        (ACL_FILE, render_park_acl(inventory, zone), 0o644, f"park broker ACL: {len(probes)} probe(s)"),
        (LISTENER_FILE, render_listener(port, f"{where}/{PASSWD_FILE}",
                                                            f"{where}/{ACL_FILE}", tls, bind), 0o644,
         f"the probes' listener section (port {port}, TLS)"),
        (LIMITS_FILE, render_limits(sizing), 0o644,
         f"limits: {sizing.messages} messages, {sizing.bytes / 2**20:,.0f} MiB queued for the bridge while the "
         "centre is out of reach"),
        (BRIDGE_FILE, render_bridge(zone, target, passwords[user]), 0o600,
         f"the bridge to {target.host}:{target.port} as {user} (holds its password: mode 0600)"),
    ]
    written = []
    for name, text, mode, what in files:
        write_file(out / name, text, mode)
        written.append(Written(out / name, what))
    return written
