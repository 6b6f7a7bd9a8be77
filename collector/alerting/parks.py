"""Park uplinks: ParkUplinkDown, and what a park's probes are judged on while their park holds their data. Pure.

A park with a broker of its own (``collector.bridge``) reaches the centre through that broker's bridge, which
keeps its state, retained, on ``zonewatch/bridge/<zone>/state`` at the central broker: ``1`` once connected, ``0``
its last will, published by the central broker when the bridge's connection drops (at once on a closed
connection, after 1.5 keepalives on a silent one). The collector's urgent session reads it (``collector.ingest``);
the alert engine hands it to ``Bridges.observe``. Only the bridge's user may write it (``collector.mosquitto``'s
ACL): a probe cannot fake a park's state.

While a park's uplink is down, its probes go on publishing to the park broker, which acknowledges and queues:
nothing is lost, and nothing reaches the centre. The probes' silence is then no evidence of anything, so::

    ParkUplinkDown   zone       the zone's bridge said 0 and has not said 1 since; after its hold (``for``, 1m:
                                a bridge that reconnects at once pages nobody). NOC only: the uplink is the
                                park's (the zone authority's network), not a carrier's asset, and a carrier
                                can do nothing about it. Resolves when the bridge says 1 again.

    a probe of the zone, silent            unknown, not down: its ProbeDown is neither raised nor resolved, and
    (while the uplink is down, and until   what only it measures (its modems' ModemDown and SimProblem, its spool,
    ``probe_timeout`` after it is back     disk and clock, its devices, links, paths and coverage) is unknown with
    unless a message of it came since)     it (``collector.alerting.rules``). Absence of evidence while the park
                                           holds the data is not an outage; the data itself, once delivered, says.
    a probe of the zone whose last will    down, but muted under ``ParkUplinkDown <zone>`` over the same span: the
    (or ``stopping``) arrived since the    will is evidence, but it may be history replayed from the park's queue
    outage began                           (a probe that dropped its park connection during the outage and came
                                           back, its ``online`` still on its way). If it still holds once the
                                           backlog had ``probe_timeout`` to arrive, the mute lifts and it pages.

The span after the bridge is back (``probe_timeout``) is when the park's queue is delivered: the bridge sends
what it holds first, then what comes next, so a probe whose data arrives in it is judged on that data, and one
that stays silent past it is down.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Final, Protocol

from collector.mosquitto import BRIDGE_STATE_ROOT

__all__ = ["Bridges", "Uplink", "judge", "silence_held", "will_muted", "state_topic", "zone_of"]

S: Final = 1_000_000_000
ALERT: Final = "ParkUplinkDown"
_SUFFIX: Final = "/state"


def state_topic(zone: str) -> str:
    """Return the topic of ``zone``'s bridge state (``+`` for every zone)."""
    return f"{BRIDGE_STATE_ROOT}{zone}{_SUFFIX}"


def zone_of(topic: str) -> str | None:
    """Return the zone of a bridge state topic, or None if ``topic`` is not one."""
    if not topic.startswith(BRIDGE_STATE_ROOT) or not topic.endswith(_SUFFIX):
        return None
    zone = topic[len(BRIDGE_STATE_ROOT):-len(_SUFFIX)]
    return zone if zone and "/" not in zone else None


@dataclass(slots=True)
class Uplink:
    """One park's uplink as its bridge last said (arrival times)."""

    up: bool
    down_ns: int = 0   # when the outage under way (or the last one) began: the arrival of its 0
    back_ns: int = 0   # when the last outage ended: the arrival of the 1 after it; 0 = no outage seen


class Bridges:
    """Every park's uplink, fed by the alert engine from the bridge state messages (one thread; no clock)."""

    def __init__(self) -> None:
        self.zones: dict[str, Uplink] = {}

    def observe(self, topic: str, payload: bytes, now_ns: int) -> bool:
        """Take a bridge state message that arrived at ``now_ns``; return False if it is not one (ignored).

        A repeat (the retained state sent again when the collector subscribes again) changes nothing."""
        zone = zone_of(topic)
        said = payload.strip()
        if zone is None or said not in (b"0", b"1"):
            return False
        up = said == b"1"
        uplink = self.zones.get(zone)
        if uplink is None:
            self.zones[zone] = Uplink(up, down_ns=0 if up else now_ns)
        elif uplink.up and not up:
            uplink.up, uplink.down_ns = False, now_ns
        elif not uplink.up and up:
            uplink.up, uplink.back_ns = True, now_ns
        return True

    def held(self, zone: str, now_ns: int, timeout_ns: int) -> Uplink | None:
        """Return ``zone``'s uplink while its park holds data: down, or back for less than ``timeout_ns``."""
        uplink = self.zones.get(zone)
        if uplink is None:
            return None
        if not uplink.up or (uplink.back_ns and now_ns - uplink.back_ns <= timeout_ns):
            return uplink
        return None


def silence_held(bridges: Bridges, zone: str, alive_ns: int, now_ns: int, timeout_ns: int) -> str | None:
    """Return why a probe of ``zone`` last heard at ``alive_ns`` (0: never) is not judged by its silence, or None."""
    uplink = bridges.held(zone, now_ns, timeout_ns)
    if uplink is None:
        return None
    if not uplink.up:
        return f"the uplink of park {zone} is down since {_when(uplink.down_ns)}: its broker holds the probe's data"
    if alive_ns < uplink.back_ns:
        return f"the uplink of park {zone} is back since {_when(uplink.back_ns)}: the park's queue is still arriving"
    return None


def will_muted(bridges: Bridges, zone: str, offline_ns: int, now_ns: int, timeout_ns: int) -> str | None:
    """Return the mute of a ProbeDown on a last will that arrived at ``offline_ns`` during ``zone``'s outage (or
    while its queue arrives after it), or None."""
    uplink = bridges.held(zone, now_ns, timeout_ns)
    if uplink is None or offline_ns < uplink.down_ns:
        return None
    return f"{ALERT} {zone}"


class Run(Protocol):
    """What ``judge`` needs of an evaluation (``collector.alerting.rules``)."""

    now: int

    def emit(self, alertname: str, labels: Mapping[str, str], carriers: Sequence[str | None], summary: str,
             description: str, muted_by: str | None = None) -> None: ...

    def clear(self, since_ns: int, alertname: str, **labels: str) -> None: ...


def judge(run: Run, bridges: Bridges, zones: Mapping[str, object], probes_of: Mapping[str, Sequence[str]]) -> None:
    """Add ParkUplinkDown for every zone of ``zones`` whose bridge is down, and clear it where it is up."""
    for zone, uplink in sorted(bridges.zones.items()):
        if zone not in zones:
            continue   # a bridge of a zone this collector does not judge
        if uplink.up:
            run.clear(uplink.back_ns or run.now, alertname=ALERT, zone=zone)
            continue
        probes = ", ".join(probes_of.get(zone, ())) or "none listed"
        run.emit(ALERT, {"zone": zone}, [], f"The uplink of park {zone} to the centre is down",
                 f"The park broker's bridge lost the central broker at {_when(uplink.down_ns)} (its last will), "
                 f"{_span(run.now - uplink.down_ns)} ago: the park's network, its uplink or the park broker. The "
                 f"park's probes ({probes}) keep publishing to the park broker, which holds their data and delivers "
                 "it when the link is back; until then they and what they measure are unknown: no ProbeDown or "
                 "other alert is raised or resolved on their silence.")


def _when(ns: int) -> str:
    return datetime.fromtimestamp(ns / S, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _span(ns: int) -> str:
    seconds = max(0, round(ns / S))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
