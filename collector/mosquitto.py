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

Passwords are never in the inventory. The passwd file is hashed here, in the format mosquitto 2's
``mosquitto_passwd`` writes by default (``$7$``: PBKDF2-HMAC-SHA512, 101 iterations, 12-byte salt), so that
the collector host needs no mosquitto package and no password is ever put on a command line (where
``mosquitto_passwd -b`` would show it to every user of the host). Mosquitto 1.6 and older cannot read it.

Queue limits. While the collector is down or behind, the broker holds every message for its persistent
session, up to ``max_queued_messages`` (mosquitto's default: 1,000 per client) and ``max_queued_bytes``;
past them it drops what comes next, silently (the probes already had their acknowledgement, so their
spools forget it). ``render_limits`` sizes both for the fleet and for the longest collector outage the
broker must bridge (``QueueSizing``), and says what that costs in the broker's memory; the collector
reports every seq a probe lost as a gap and, once the probe's spool is empty, as a DataLoss alert.

Per-client limits. Mosquitto (2.0) applies its limits to every client alike, on every listener
(``per_listener_settings`` covers authentication and ACLs only), so whatever bounds a probe bounds the
collector too. ``render_limits`` writes the ones that cost the collector nothing:

- ``max_packet_size``: the collector's wire limit (``zonewatch.wire.Limits.max_bytes``, 1 MiB of payload) plus
  ``PUBLISH_OVERHEAD`` for the topic and the MQTT header. The broker refuses a larger packet from its
  fixed header, before reading the payload, and disconnects the client: a 100 MiB message costs it nothing,
  and never reaches the collector (mosquitto 2.0 counts a packet without its remaining-length field). MQTT
  v5 clients learn the limit from the CONNACK. The collector's own messages (a probe's configuration,
  alerts on MQTT) must stay under it too: over it, the broker would cut the session they share with the
  ingest.
- ``max_inflight_messages`` (mosquitto's default, 20) and ``max_inflight_bytes`` (``INFLIGHT_LARGEST``
  largest messages): what the broker sends one client before its acknowledgements. Agent-shaped batches
  (5 KiB) never reach the byte limit; a run of 1 MiB messages goes to the collector a few at a time.
  Mosquitto also announces the message count to MQTT v5 clients as their receive maximum, but acknowledges
  a QoS 1 message as it arrives: the agent's window of 100 unacknowledged messages still flows.
- ``max_queued_messages`` and ``max_queued_bytes`` (above): they are per client too, and there is no
  per-listener form, so they cannot be made smaller for probes than the collector's session needs. They
  need not be: a probe may only read its own ``config`` and ``command`` topics, so nothing else can queue for it.

What mosquitto cannot bound per client: how fast a client publishes (it has no rate limit; an in-limit
message is acknowledged at once, however many came before), and what share of the collector's queue one
publisher's messages take (the queue belongs to the subscriber). A probe publishing 1 MiB messages as fast
as its link allows fills the collector's session ahead of every other probe; bounding that is the
collector's per-probe fairness, not the broker's.

Zone and probe ids become topic segments and ACL words: each must pass ``zonewatch.wire.valid_name``, which
the inventory does not check for its keys, so rendering does.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from collector.inventory import Inventory, MqttReceiver, Receiver
from zonewatch import wire
from zonewatch.strict import read_secret_file

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
PBKDF2_ITERATIONS = 101  # what mosquitto_passwd 2.x writes
SALT_BYTES = 12

ACL_FILE = "acl"
LIMITS_FILE = "mosquitto-limits.conf"
PUBLISH_OVERHEAD = 1024   # a PUBLISH packet beyond its payload: fixed header (5), topic (2 + at most 140 for the
                          # longest names wire.valid_name allows), packet id (2), MQTT v5 properties (the rest)
INFLIGHT_MESSAGES = 20    # mosquitto's default, written out
INFLIGHT_LARGEST = 4      # largest-size messages in flight to one client
WIRE_LIMITS = wire.Limits()   # what the collector accepts in one message
PASSWD_FILE = "passwd"
_HASH = re.compile(r"^\$[0-9]+\$[0-9]+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+\Z")   # $7$<iterations>$<salt>$<digest>
LISTENER_FILE = "mosquitto-listener.conf"
SECRETS_DIR = "secrets"


@dataclass(frozen=True)
class ListenerTls:
    """The broker's TLS files, as paths on the broker host."""

    cafile: str
    certfile: str
    keyfile: str
    require_certificate: bool = False


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


@dataclass(frozen=True)
class QueueSizing:
    """What the broker must hold for the collector's session: every message ``probes`` probes send at
    ``rate`` messages a second each (one batch per source poll: 50 SNMP devices and 4 modems every 30 s is
    about 2) for ``hold_s`` seconds of collector outage, at ``message_bytes`` each (an SNMP batch of one
    device and 20 interfaces is about 5 KiB; a cellular one 0.3 KiB)."""

    probes: int
    rate: float = 2.0
    hold_s: float = 1800.0
    message_bytes: int = 4608

    @property
    def messages(self) -> int:
        """Return the queue length needed (never under mosquitto's own default of 1,000)."""
        return max(1000, math.ceil(max(1, self.probes) * self.rate * self.hold_s))

    @property
    def bytes(self) -> int:
        """Return the queued bytes needed."""
        return self.messages * self.message_bytes


def max_packet_size(limits: wire.Limits = WIRE_LIMITS) -> int:
    """Return the largest MQTT packet the broker should take: the collector's largest message and its header."""
    return limits.max_bytes + PUBLISH_OVERHEAD


def render_limits(sizing: QueueSizing, limits: wire.Limits = WIRE_LIMITS) -> str:
    """Return mosquitto's general options that bound each client: its packets (by the collector's wire
    ``limits``), what is in flight to it, and its queue (sized by ``sizing``). See the module docstring."""
    mib = sizing.bytes / 2**20
    packet = max_packet_size(limits)
    return "\n".join([
        "# ZoneWatch broker limits, rendered by `zonewatch-collector render-mosquitto`: general options for",
        "# mosquitto.conf (anywhere in it). Mosquitto applies each of them to every client, on every listener.",
        f"# A packet over {packet} bytes (the collector's largest message, {limits.max_bytes} bytes, with its topic",
        "# and header) is refused before its payload is read, and its sender disconnected.",
        f"max_packet_size {packet}",
        f"# In flight to one client before it acknowledges: {INFLIGHT_MESSAGES} messages, at most {INFLIGHT_LARGEST} "
        "of the largest.",
        f"max_inflight_messages {INFLIGHT_MESSAGES}",
        f"max_inflight_bytes {INFLIGHT_LARGEST * packet}",
        "# Queued for one client (only the collector's session queues much: a probe reads only its config).",
        f"# Sized for {max(1, sizing.probes)} probes x {sizing.rate:g} messages/s x {sizing.hold_s:g} s of collector "
        f"outage = {sizing.messages} messages,",
        f"# {mib:,.0f} MiB of the broker's memory when full. Past either limit the broker drops new messages for",
        "# the collector (they show as seq gaps and a DataLoss alert): raise --hold, or give the broker memory.",
        f"max_queued_messages {sizing.messages}",
        f"max_queued_bytes {sizing.bytes}",
        "# Mosquitto has no per-client publish rate limit, and one publisher may fill the collector's queue: the",
        "# collector's per-probe fairness bounds what one probe's messages cost the others.",
    ]) + "\n"


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


def render_listener_options(passwd_file: str, acl_file: str, tls: ListenerTls) -> str:
    """Return the settings that follow a ``listener`` line: no anonymous clients, passwords, ACL and TLS."""
    return "\n".join([
        "allow_anonymous false",
        f"password_file {passwd_file}",
        f"acl_file {acl_file}",
        "use_username_as_clientid true",
        f"cafile {tls.cafile}",
        f"certfile {tls.certfile}",
        f"keyfile {tls.keyfile}",
        "tls_version tlsv1.2",
        f"require_certificate {'true' if tls.require_certificate else 'false'}",
    ]) + "\n"


def render_listener(port: int, passwd_file: str, acl_file: str, tls: ListenerTls, bind: str | None = None) -> str:
    """Return a whole listener section for mosquitto.conf, with a comment on where it goes."""
    head = [
        "# ZoneWatch listener, rendered by `zonewatch-collector render-mosquitto`.",
        "# Put `per_listener_settings true` near the top of mosquitto.conf (before any listener) so that",
        "# the password file and ACL below apply to this listener; or make this the broker's only listener.",
        "# tls_version is the minimum version; the broker user must be able to read every file named here.",
        f"listener {port}" + (f" {bind}" if bind else ""),
    ]
    return "\n".join(head) + "\n" + render_listener_options(passwd_file, acl_file, tls)


def hash_password(password: str, salt: bytes | None = None) -> str:
    """Return ``password`` hashed as mosquitto 2's ``$7$`` (PBKDF2-HMAC-SHA512) password file entry."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, PBKDF2_ITERATIONS)
    return f"$7${PBKDF2_ITERATIONS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def render_passwd(passwords: Mapping[str, str], salt: Callable[[], bytes] = lambda: os.urandom(SALT_BYTES)) -> str:
    """Return the password file: one ``user:hash`` line per user, in the order given."""
    lines = []
    for user, password in passwords.items():
        check_name("user", user)
        if not password:
            raise ValueError(f"the password of {user!r} is empty")
        lines.append(f"{user}:{hash_password(password, salt())}")
    return "\n".join(lines) + "\n"


def render_passwd_hashed(hashes: Mapping[str, str]) -> str:
    """Return the password file from hashes already made (``hash_password``): one ``user:hash`` line per user."""
    lines = []
    for user, hashed in hashes.items():
        check_name("user", user)
        if not _HASH.match(hashed):
            raise ValueError(f"the password hash of {user!r} is not in mosquitto's format ($7$...)")
        lines.append(f"{user}:{hashed}")
    return "\n".join(lines) + "\n"


def parse_passwd(text: str) -> dict[str, str]:
    """Return user -> hash of a password file (blank lines and ``#`` comments skipped)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        user, sep, hashed = line.strip().partition(":")
        if sep and user and not user.startswith("#"):
            out[user] = hashed
    return out


def new_password() -> str:
    """Return a random password (32 URL-safe characters, 192 bits)."""
    return secrets.token_urlsafe(24)


# ---------------------------------------------------------------------------------------------- files


@dataclass(frozen=True)
class Written:
    """One file the command wrote, and what it is (never its content)."""

    path: Path
    what: str


def _write(path: Path, text: str, mode: int) -> None:
    """Replace ``path`` atomically with ``text``, created with ``mode`` from the start, and with the owner of the
    file it replaces where this user may give it (the broker, reloading as its own user, must still read it)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        before: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        before = None
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # an older leftover may have had a wider mode
        if before is not None and (before.st_uid, before.st_gid) != (os.geteuid(), os.getegid()):
            try:
                os.fchown(fd, before.st_uid, before.st_gid)
            except PermissionError:
                pass   # not root: the file becomes this user's, as a first rendering would make it
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _read_secret(folder: Path, user: str) -> str:
    """Return the password stored in ``folder/user`` (one line; a trailing newline is not part of it), read as
    every secret file is (``strict.read_secret_file``): a regular file inside ``folder`` itself (no symbolic
    link out of it), not writable by group or others, of a bounded size."""
    value = read_secret_file(user, root=folder)
    if not value or "\n" in value:
        raise ValueError(f"{folder / user}: expected one non-empty line with the password")
    return value


def read_password(folder: Path, user: str) -> str:
    """Return ``user``'s password kept in ``folder`` (as ``write_bundle`` reads it; the park bridge's files too)."""
    return _read_secret(folder, user)


def write_file(path: Path, text: str, mode: int) -> None:
    """Replace ``path`` atomically with ``text`` and ``mode`` (as ``write_bundle`` writes; the park bridge's too)."""
    _write(path, text, mode)


def write_bundle(inventory: Inventory, out: Path, tls: ListenerTls, *, collector: str = DEFAULT_COLLECTOR,
                 secrets_dir: Path | None = None, port: int = 8883, bind: str | None = None,
                 broker_dir: str | None = None, noc: Sequence[Receiver] = (),
                 sizing: QueueSizing | None = None, enrolment: Enrolment | None = None,
                 layout: Layout = Layout()) -> list[Written]:
    """Write acl, passwd, the listener section, the queue limits, the layout and any new passwords into ``out``;
    return what was written. ``sizing`` defaults to the broker's probes at the ``QueueSizing`` defaults."""
    # With ``secrets_dir`` every user's password is read from ``secrets_dir/<user>``, and a missing file is an
    # error. Without it, passwords live in ``out/secrets/<user>`` (mode 0600): existing ones are kept, missing
    # ones generated. ``broker_dir`` is where the broker will find acl and passwd (default: ``out``). An approved
    # probe (``enrolment``) needs no password file: its hash is the approval's.
    users = usernames(inventory, collector, enrolment, layout)
    shared = {collector + URGENT_SUFFIX: collector, collector + ENROL_SUFFIX: collector}   # a collector's password
    shared.update({peer + URGENT_SUFFIX: peer for peer in layout.peers})
    hashed = dict(enrolment.approved) if enrolment is not None else {}
    plain = [u for u in users if u not in shared and u not in hashed]
    acl = render_acl(inventory, collector, noc, enrolment, layout)
    written: list[Written] = []
    passwords: dict[str, str] = {}
    if secrets_dir is not None:
        missing = [u for u in plain if not (secrets_dir / u).is_file()]
        if missing:
            raise ValueError(f"{secrets_dir}: no password file for {', '.join(missing)}")
        passwords = {u: _read_secret(secrets_dir, u) for u in plain}
    else:
        own = out / SECRETS_DIR
        own.mkdir(parents=True, exist_ok=True, mode=0o700)
        for user in plain:
            path = own / user
            if path.is_file():
                passwords[user] = _read_secret(own, user)
                continue
            passwords[user] = new_password()
            _write(path, passwords[user] + "\n", 0o600)
            written.append(Written(path, f"new password of {user} (mode 0600)"))
    hashes = {user: hashed[user][1] if user in hashed
              else hash_password(passwords[shared.get(user, user)]) for user in users}
    out.mkdir(parents=True, exist_ok=True)
    where = broker_dir if broker_dir is not None else str(out.resolve())
    listener = render_listener(port, f"{where}/{PASSWD_FILE}", f"{where}/{ACL_FILE}", tls, bind)
    _write(out / PASSWD_FILE, render_passwd_hashed(hashes), 0o600)
    _write(out / ACL_FILE, acl, 0o644)
    _write(out / LISTENER_FILE, listener, 0o644)
    probes = len(broker_probes(inventory, enrolment))
    sizing = sizing or QueueSizing(probes)
    _write(out / LIMITS_FILE, render_limits(sizing), 0o644)
    if layout != Layout():
        _write(out / LAYOUT_FILE, layout.to_json(), 0o644)
    else:   # a layout from an earlier rendering must not bring its users back at the next approval
        (out / LAYOUT_FILE).unlink(missing_ok=True)
    sessions = "three sessions" if enrolment is not None else "two sessions"
    boot = f", {len(enrolment.zones)} bootstrap user(s)" if enrolment is not None else ""
    written += [
        Written(out / PASSWD_FILE, f"mosquitto password file, {len(users)} users (hashed, mode 0600)"),
        Written(out / ACL_FILE, f"mosquitto ACL: collector {collector!r} ({sessions}), {probes} probe(s){boot}"),
        Written(out / LISTENER_FILE, f"listener section for mosquitto.conf (port {port}, TLS)"),
        Written(out / LIMITS_FILE, f"limits for mosquitto.conf: packets up to {max_packet_size()} bytes; "
                                   f"{sizing.messages} messages, {sizing.bytes / 2**20:,.0f} MiB queued for "
                                   "the collector's session"),
    ]
    if layout != Layout():
        written.append(Written(out / LAYOUT_FILE, f"the other collectors ({', '.join(layout.peers) or 'none'}) and "
                                                  f"park bridges ({', '.join(layout.bridges) or 'none'}), for "
                                                  "`probes approve` and `retire`"))
    return written


def write_access(out: Path, inventory: Inventory, enrolment: Enrolment, collector: str = DEFAULT_COLLECTOR,
                 noc: Sequence[Receiver] = ()) -> list[Written]:
    """Rewrite ``out``'s password file and ACL after an enrolment change (an approval, a retirement): every user
    keeps the hash the file holds, an approved probe gets its approval's, a retired one is left out; the ACL is
    rendered again. Raise ValueError when the file lacks a user that needs a password from ``render-mosquitto``."""
    path = out / PASSWD_FILE
    try:
        held = parse_passwd(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: no password file: run `zonewatch-collector render-mosquitto --out {out}` "
                         "first") from None
    layout = Layout.read(out)   # as render-mosquitto wrote it: an HA peer's or a bridge's user stays
    users = usernames(inventory, collector, enrolment, layout)
    hashes: dict[str, str] = {}
    for user in users:
        if user in enrolment.approved:
            hashes[user] = enrolment.approved[user][1]
        elif user in held:
            hashes[user] = held[user]
    missing = [u for u in users if u not in hashes]
    if missing:
        raise ValueError(f"{path} has no password for {', '.join(missing)}: run `zonewatch-collector render-mosquitto "
                         f"--out {out}` again (with the same --secrets), which writes every user")
    acl = render_acl(inventory, collector, noc, enrolment, layout)
    _write(path, render_passwd_hashed(hashes), 0o600)
    _write(out / ACL_FILE, acl, 0o644)
    return [Written(path, f"mosquitto password file, {len(users)} users (hashed, mode 0600)"),
            Written(out / ACL_FILE, f"mosquitto ACL: {len(broker_probes(inventory, enrolment))} probe(s), "
                                    f"{len(enrolment.zones)} bootstrap user(s)")]
