"""Mosquitto's access control for ZoneWatch, rendered from the inventory.

The ACL model. Every client logs in with a username and password; nobody is anonymous.

- The collector user reads ``zw/v1/+/+/status``, ``.../data`` and ``.../events`` of every probe and writes
  ``zw/v1/+/+/config`` and ``zw/v1/+/+/command`` (a diagnostic round: ``collector.fleet.diagnostics``); it cannot
  publish as a probe. Its second session, for status and events (so they
  never queue behind data), logs in as ``<collector>-urgent`` with the same password, and may only read
  status and events. It also writes the topic of each carrier's ``mqtt``
  notification receiver (alerts, as Alertmanager's webhook JSON); such a topic must lie outside ``zw/``
  and ``$SYS``-style ``$`` topics.
- A probe's username is its inventory id. It may write only ``zw/v1/<its zone>/<its id>/status``,
  ``.../data`` and ``.../events``, and read only ``zw/v1/<its zone>/<its id>/config`` and ``.../command``: it can
  never publish a command, nor read another probe's.
- Beyond one collector (``Layout``, kept beside the ACL): the other collectors of an HA pair, each with the
  collector's rights and sessions of its own, and the park brokers' bridges (``bridge-<zone>``: what that zone's
  probes may write, their configurations and commands to read, and the bridge's state topic; ``collector.bridge``).
  The collector's ``-urgent`` session reads each bridge's state topic (``collector.alerting.parks``: ParkUplinkDown);
  only that bridge's user may write it, so no probe can fake a park's uplink state.
- Enrolment (``Enrolment``, given when the collector configuration has an ``enrol`` section): each zone open to
  new probes has a bootstrap user ``enrol-<zone>``, which may write only ``zw/v1/enrol/<zone>/+/request`` and
  read only ``zw/v1/enrol/<zone>/+/reply`` (replies are sealed to each asker's key, so reading another's is of
  no use). The collector's third session, ``<collector>-enrol`` (same password), reads those requests, writes
  the replies and reads probes' status (a new probe's first login). A probe the collector's operator approved
  gets a user like an inventory probe's, with the password hash the approval made (``collector.fleet``); a
  retired probe has no user, whatever the inventory says. ``write_access`` rewrites the password file and ACL
  after an approval or a retirement, keeping every other user's hash as ``render-mosquitto`` wrote it.

Every rule is written under its own ``user`` line with literal topics. There is no ``pattern`` line: a
``%c`` pattern trusts the client id, which the client chooses, so probe p1 connecting with client id ``p2``
could publish as p2. Here what a client may do depends only on the username its password proved. The
listener also sets ``use_username_as_clientid true`` (defence in depth, and a second connection with the
same username replaces the first instead of living beside it; so every collector instance of an HA pair
needs a username of its own).

Zone and probe ids become topic segments and ACL words: each must pass ``zonewatch.wire.valid_name``, which
the inventory does not check for its keys, so rendering does.

The package renders everything the central broker needs; this module is the ACL and the names it is made of
(users, topic roots, the layout of HA peers and park bridges), which the ingest, the alert engine and enrolment
use too. Beside it:

    listener.py   the listener section of mosquitto.conf (TLS, password file, ACL)
    limits.py     the general options that bound each client: packets, in flight, the queue
    passwd.py     the password file: mosquitto's ``$7$`` hashes, made here
    bundle.py     the files on disk: ``render-mosquitto``'s bundle, and the rewrite after an enrolment change
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from collector.inventory import Inventory, MqttReceiver, Receiver
from zonewatch import wire

DEFAULT_COLLECTOR = "collector"
URGENT_SUFFIX = "-urgent"   # the collector's status and events session (collector.ingest uses the same)
ENROL_SUFFIX = "-enrol"     # the collector's enrolment session (collector.fleet.enrol uses the same)
BOOTSTRAP_PREFIX = "enrol-"  # + a zone id: the zone's bootstrap user, which may only ask to be enrolled
TICK_ROOT = "zonewatch/tick/"   # + the collector's username: its ticks, read back by its data session (ingest)
BRIDGE_PREFIX = "bridge-"   # + a zone id: the user a park broker's bridge logs in as (collector.bridge)
BRIDGE_STATE_ROOT = "zonewatch/bridge/"   # + zone + "/state": the bridge's retained 1 (up) or 0 (its last will)
LAYOUT_FILE = "zonewatch-broker.json"   # the broker's other collectors and bridges, for write_access
URGENT_READS: tuple[wire.Kind, ...] = ("status", "events")
PROBE_WRITES: tuple[wire.Kind, ...] = ("status", "data", "events")
PROBE_READS: tuple[wire.Kind, ...] = ("config", "command")
COLLECTOR_READS = PROBE_WRITES
COLLECTOR_WRITES = PROBE_READS


@dataclass(frozen=True)
class Enrolment:
    """What enrolment adds to the broker's users and ACL: the zones open to new probes (a bootstrap user each), the
    probes approved (id -> (zone, password hash as mosquitto's password file holds it)) and the ids retired (no
    user, whatever the inventory says)."""

    zones: tuple[str, ...] = ()
    approved: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    retired: frozenset[str] = frozenset()


def bootstrap_user(zone: str) -> str:
    """Return the username of ``zone``'s bootstrap credential."""
    return BOOTSTRAP_PREFIX + zone


def bridge_user(zone: str) -> str:
    """Return the username a park broker's bridge for ``zone`` logs in as at the centre."""
    return BRIDGE_PREFIX + zone


@dataclass(frozen=True)
class Layout:
    """Who else logs in at the centre besides the collector and the probes: ``peers``, the other collectors of an
    HA pair (each with its ``-urgent`` session and a password of its own, and the collector's rights: either may
    be made the primary), and ``bridges``, the zones whose park broker bridges to this one (user
    ``bridge-<zone>``: it may write what that zone's probes write and read their configurations, nothing else;
    the park broker pins each probe to its own topics). ``write_bundle`` keeps it in ``LAYOUT_FILE`` beside the
    ACL, so that ``write_access`` (enrolment) renders the same users."""

    peers: tuple[str, ...] = ()
    bridges: tuple[str, ...] = ()

    def to_json(self) -> str:
        """Return the layout as the JSON ``LAYOUT_FILE`` holds."""
        return json.dumps({"peers": list(self.peers), "bridges": list(self.bridges)}, indent=1) + "\n"

    @classmethod
    def read(cls, folder: Path) -> Layout:
        """Return the layout kept in ``folder`` (none kept: no peers, no bridges); raise ValueError if unreadable."""
        try:
            doc = json.loads((folder / LAYOUT_FILE).read_text(encoding="utf-8"))
            return cls(tuple(str(p) for p in doc["peers"]), tuple(str(b) for b in doc["bridges"]))
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{folder / LAYOUT_FILE}: cannot read the broker's layout: {exc}") from None



def check_name(what: str, name: str) -> None:
    """Raise ValueError unless ``name`` is a plain id usable as a topic segment and an ACL word."""
    if not wire.valid_name(name):
        raise ValueError(f"{what} {name!r} cannot be used in the broker's ACL: it must match "
                         "[a-z0-9][a-z0-9_.-]{0,62} (no '/', '+', '#', spaces or upper case)")


def probe_zones(inventory: Inventory) -> dict[str, str]:
    """Return each probe id mapped to its zone, sorted by probe id, after checking both names."""
    out: dict[str, str] = {}
    for probe_id in sorted(inventory.probes):
        zone = inventory.probes[probe_id].zone
        check_name("probe", probe_id)
        check_name(f"probe {probe_id!r}: zone", zone)
        out[probe_id] = zone
    return out


def notify_topics(inventory: Inventory, noc: Sequence[Receiver] = ()) -> list[str]:
    """Return the topics of the carriers' mqtt receivers, in inventory order, then those of the NOC's
    (``alerting.noc`` in the collector's configuration), after checking each."""
    places = [(f"carriers.{key}.notify[{i}]", receiver)
              for key, carrier in inventory.carriers.items() for i, receiver in enumerate(carrier.notify)]
    places += [(f"alerting.noc[{i}]", receiver) for i, receiver in enumerate(noc)]
    out: list[str] = []
    for where, receiver in places:
        if not isinstance(receiver, MqttReceiver) or receiver.topic in out:
            continue
        topic = receiver.topic
        if (topic.startswith((f"{wire.TOPIC_ROOT.split('/')[0]}/", "$")) or topic != topic.strip()
                or any(ord(c) < 32 for c in topic)):
            raise ValueError(f"{where}: topic {topic!r} cannot be an alert topic: it must "
                             "not start with 'zw/' or '$', nor hold spaces at its ends or control characters")
        out.append(topic)
    return out


def broker_probes(inventory: Inventory, enrolment: Enrolment | None = None) -> dict[str, str]:
    """Return every probe that gets a broker user mapped to its zone, sorted by id: the inventory's and the approved
    ones, less the retired. Raise ValueError if the inventory and an approval put one probe in two zones."""
    out = {p: z for p, z in probe_zones(inventory).items() if enrolment is None or p not in enrolment.retired}
    for probe_id, (zone, _) in (enrolment.approved.items() if enrolment is not None else ()):
        check_name("probe", probe_id)
        check_name(f"probe {probe_id!r}: zone", zone)
        if out.get(probe_id, zone) != zone:
            raise ValueError(f"probe {probe_id!r} is enrolled in zone {zone!r} but the inventory puts it in zone "
                             f"{out[probe_id]!r}: correct the inventory, or retire the probe and enrol it again")
        out[probe_id] = zone
    return dict(sorted(out.items()))


def usernames(inventory: Inventory, collector: str = DEFAULT_COLLECTOR,
              enrolment: Enrolment | None = None, layout: Layout = Layout()) -> list[str]:
    """Return the broker's users: the collector's sessions first (then its HA peers'), then every probe by id,
    then (with ``enrolment``) each open zone's bootstrap user, then the park bridges' users."""
    for name in (collector, *layout.peers):
        check_name("collector user", name)
    if len({collector, *layout.peers}) != 1 + len(layout.peers):
        raise ValueError(f"the collectors of an HA pair need usernames of their own: {collector}, "
                         f"{', '.join(layout.peers)}")
    probes = list(broker_probes(inventory, enrolment))
    own = [collector, collector + URGENT_SUFFIX, *([collector + ENROL_SUFFIX] if enrolment is not None else [])]
    for peer in layout.peers:
        own += [peer, peer + URGENT_SUFFIX]
    bridges = []
    for zone in layout.bridges:
        check_name("bridge zone", zone)
        if zone not in inventory.zones:
            known = ", ".join(sorted(inventory.zones))
            raise ValueError(f"bridge zone {zone!r} is not in the inventory (known: {known})")
        bridges.append(bridge_user(zone))
    if len(set(own)) != len(own):
        raise ValueError(f"the collectors' users clash: {', '.join(own)}: choose other names")
    for user in own:
        if user in probes:
            raise ValueError(f"collector user {user!r} is also a probe id: choose another name")
    boot = []
    for zone in enrolment.zones if enrolment is not None else ():
        user = bootstrap_user(zone)
        check_name(f"zone {zone!r}: bootstrap user", user)
        if user in probes or user in own:
            raise ValueError(f"{user!r} is the bootstrap user of zone {zone!r} and also a probe or collector user: "
                             "choose another id")
        boot.append(user)
    for user in bridges:
        if user in probes or user in own or user in boot:
            raise ValueError(f"{user!r} is a park bridge's user and also a probe, collector or bootstrap user: "
                             "choose another id")
    return [*own, *probes, *boot, *bridges]


def render_acl(inventory: Inventory, collector: str = DEFAULT_COLLECTOR, noc: Sequence[Receiver] = (),
               enrolment: Enrolment | None = None, layout: Layout = Layout()) -> str:
    """Return the ACL file: one ``user`` block with literal topics for the collector and for each probe (and, with
    ``enrolment``, the enrolment session, each open zone's bootstrap user, the approved probes; no retired one;
    with ``layout``, the HA peers' sessions and the park bridges' users).

    ``noc`` is the collector's ``alerting.noc`` receivers: the topics of its mqtt ones are the collector's too."""
    usernames(inventory, collector, enrolment, layout)
    lines = [
        "# ZoneWatch broker ACL, rendered from the inventory by `zonewatch-collector render-mosquitto`.",
        "# Literal topics per user and no %c patterns: what a client may do follows from the username",
        "# its password proved, never from the client id it chose.",
    ]
    alerts = notify_topics(inventory, noc)
    for user in (collector, *layout.peers):
        if user != collector:
            lines += ["", "# another collector of the HA pair: the same rights, sessions of its own"]
        lines += [
            "",
            f"user {user}",
            *(f"topic read {wire.subscription(kind)}" for kind in COLLECTOR_READS),
            *(f"topic write {wire.subscription(kind)}" for kind in COLLECTOR_WRITES),
            "# its ticks: published and read back through its data session, to know how far behind it is",
            f"topic readwrite {TICK_ROOT}{user}",
        ]
        if alerts:
            lines += ["# the carriers' and the NOC's alert topics (mqtt notification receivers)"]
            lines += [f"topic write {topic}" for topic in alerts]
        lines += ["", "# the collector's status and events session", f"user {user}{URGENT_SUFFIX}",
                  *(f"topic read {wire.subscription(kind)}" for kind in URGENT_READS)]
        if layout.bridges:
            lines += ["# and the park bridges' states (ParkUplinkDown)",
                      *(f"topic read {BRIDGE_STATE_ROOT}{zone}/state" for zone in layout.bridges)]
    if enrolment is not None:
        lines += ["", "# the collector's enrolment session: new probes' requests, the sealed replies, and probes' "
                  "status (a new probe's first login)", f"user {collector}{ENROL_SUFFIX}"]
        lines += [f"topic read {wire.enrol_subscription('request', zone)}" for zone in enrolment.zones]
        lines += [f"topic write {wire.enrol_subscription('reply', zone)}" for zone in enrolment.zones]
        lines += [f"topic read {wire.subscription('status')}"]
    in_inventory = probe_zones(inventory)
    for probe_id, zone in broker_probes(inventory, enrolment).items():
        how = "" if probe_id in in_inventory else " (enrolled; not in the inventory)"
        lines += ["", f"# probe {probe_id} in zone {zone}{how}", f"user {probe_id}"]
        lines += [f"topic write {wire.topic(zone, probe_id, kind)}" for kind in PROBE_WRITES]
        lines += [f"topic read {wire.topic(zone, probe_id, kind)}" for kind in PROBE_READS]
    for zone in enrolment.zones if enrolment is not None else ():
        lines += ["", f"# zone {zone}'s bootstrap credential: it may ask to be enrolled, and read the replies (each "
                  "sealed to its asker's key)", f"user {bootstrap_user(zone)}",
                  f"topic write {wire.enrol_subscription('request', zone)}",
                  f"topic read {wire.enrol_subscription('reply', zone)}"]
    for zone in layout.bridges:
        lines += ["", f"# zone {zone}'s park broker (its bridge): what the zone's probes write, their configurations, "
                  "and the bridge's own state", f"user {bridge_user(zone)}"]
        lines += [f"topic write {wire.subscription(kind, zone)}" for kind in PROBE_WRITES]
        lines += [f"topic read {wire.subscription(kind, zone)}" for kind in PROBE_READS]
        lines += [f"topic write {BRIDGE_STATE_ROOT}{zone}/state"]
    return "\n".join(lines) + "\n"

