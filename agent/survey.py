"""The walk survey: an engineer walks the park with a probe; every cellular reading is stored with where it was
taken, under a survey id (``zonewatch-agent survey``).

Positions come from one of two places:

    gpsd        (default: 127.0.0.1:2947) the probe's GPS receiver, through gpsd (``agent.gpsd``). The modems are
                read every ``every`` (5 s); each reading takes the GPS fix nearest to it in time, if that fix is
                at most ``max_age`` (5 s) away: a reading with no fix that close is not stored (indoors, under a
                roof), and the count of them is printed.
    waypoints   a file of named points (``load_waypoints``), x/y metres on the zone's plan or lat/lon. For each,
                the survey says where to go and waits for Enter; it then reads the modems ``readings`` times (3)
                and stores each reading at that point. ``s`` then Enter skips a point, ``q`` or end of input ends.

Readings are the probe's own ``cellular`` sources (its configuration: same modems, same parsing), read through
the agent's runner one poll at a time; what goes out is a ``survey`` sample per modem reading (catalogue:
``zonewatch.measurements``): tags survey, carrier, modem, rat; the signal fields, the position as fields (lat/lon
or x_m/y_m, fix, error_m, age_s). It is spooled (the probe's spool) and sent by the probe's uplink, as every
reading is: a walk out of the broker's reach is sent when the probe is back in it. Stop the probe's agent
service first: both would open the same modems and the same MQTT client id.

``pair`` and ``survey_sample`` are pure; ``Survey`` does the rounds, given a clock.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from pydantic import Field, model_validator

from agent.gpsd import Fix, GpsdClient
from zonewatch import wire
from zonewatch.measurements import CATALOGUE
from zonewatch.strict import RefPath, Strict, load_file

__all__ = ["Waypoint", "Waypoints", "load_waypoints", "survey_sample", "pair", "Survey", "Outcome"]

log = logging.getLogger(__name__)

SIGNAL_FIELDS: Final = ("rsrp_dbm", "rsrq_db", "sinr_db", "rssi_dbm", "registered", "pci")
SURVEY_TAGS: Final = ("carrier", "modem", "rat")
assert set(SIGNAL_FIELDS) <= set(CATALOGUE["survey"].fields)


class Waypoint(Strict):
    """A named point of the walk: x/y metres on the zone's plan, or lat/lon degrees."""

    name: str = Field(min_length=1, max_length=64)
    x: float | None = None
    y: float | None = None
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)

    @model_validator(mode="after")
    def _one_kind(self) -> Waypoint:
        xy, ll = (self.x, self.y), (self.lat, self.lon)
        if not (all(v is not None for v in xy) and all(v is None for v in ll)) and \
                not (all(v is not None for v in ll) and all(v is None for v in xy)):
            raise ValueError("a waypoint is {name: .., x: .., y: ..} (metres on the plan) or {name: .., lat: .., "
                             "lon: ..} (degrees)")
        return self

    @property
    def kind(self) -> str:
        return "xy" if self.x is not None else "latlon"

    def fix(self, now_ns: int) -> Fix:
        return Fix(now_ns, 0, lat=self.lat, lon=self.lon, x=self.x, y=self.y, name=self.name)


class Waypoints(Strict):
    """The waypoint file: ``points:`` a list of waypoints, all of one kind, names unique."""

    points: list[Waypoint] = Field(min_length=1)

    def check_refs(self) -> list[tuple[RefPath, str]]:
        problems: list[tuple[RefPath, str]] = []
        seen: dict[str, int] = {}
        for i, p in enumerate(self.points):
            if p.kind != self.points[0].kind:
                problems.append((("points", i), f"points[0] is {self.points[0].kind}: give every point the same way"))
            if p.name in seen:
                problems.append((("points", i, "name"), f"name {p.name!r} is already points[{seen[p.name]}]'s"))
            seen.setdefault(p.name, i)
        return problems


def load_waypoints(path: str) -> list[Waypoint]:
    """Read a waypoint file (strict.ConfigError naming the line and key when it is wrong)."""
    return list(load_file(Waypoints, path).points)


def survey_sample(reading: wire.Sample, survey: str, fix: Fix) -> wire.Sample | None:
    """Return the ``survey`` sample of one ``cellular`` reading taken at ``fix`` (None: not a cellular reading,
    or one with no signal field)."""
    if reading.measurement != "cellular":
        return None
    fields: dict[str, wire.FieldValue] = {k: reading.fields[k] for k in SIGNAL_FIELDS if k in reading.fields}
    if not fields:
        return None
    if fix.x is not None and fix.y is not None:
        fields.update(x_m=round(fix.x, 2), y_m=round(fix.y, 2))
    elif fix.lat is not None and fix.lon is not None:
        fields.update(lat=round(fix.lat, 7), lon=round(fix.lon, 7))
    fields["fix"] = fix.mode
    if fix.error_m is not None:
        fields["error_m"] = round(fix.error_m, 1)
    fields["age_s"] = round(abs(reading.time_ns - fix.time_ns) / 1e9, 3)
    tags = {"survey": survey, **{k: reading.tags[k] for k in SURVEY_TAGS if reading.tags.get(k)}}
    return wire.Sample("survey", tags, fields, reading.time_ns)


def pair(readings: Iterable[wire.Sample], fixes: Sequence[Fix], survey: str,
         max_age_ns: int) -> tuple[list[wire.Sample], int]:
    """Return the survey samples of ``readings``, each at the fix nearest to it in time, and how many readings had
    no fix within ``max_age_ns`` (those are left out: a reading without a position is no survey reading)."""
    out: list[wire.Sample] = []
    unplaced = 0
    for reading in readings:
        if reading.measurement != "cellular":
            continue
        near = min(fixes, key=lambda f: abs(f.time_ns - reading.time_ns), default=None)
        if near is None or abs(near.time_ns - reading.time_ns) > max_age_ns:
            unplaced += 1
            continue
        sample = survey_sample(reading, survey, near)
        if sample is not None:
            out.append(sample)
    return out, unplaced


@dataclass
class Outcome:
    """What a survey did: readings stored with a position, readings left out for want of one, points done."""

    stored: int = 0
    unplaced: int = 0
    points: list[str] = field(default_factory=list)


Poll = Callable[[], Awaitable[list[wire.Sample]]]   # read every modem once; samples stamped by the clock
Store = Callable[[list[wire.Sample]], None]          # spool them
Ask = Callable[[str], Awaitable[str | None]]         # show a prompt, return the line typed (None: end of input)


class Survey:
    """The rounds of one survey; the CLI wires ``poll`` to the agent's cellular sources and ``store`` to its
    spool. Only ``run_*`` wait (on ``stop`` or on the engineer): the rest is pure."""

    def __init__(self, survey: str, poll: Poll, store: Store, clock: Callable[[], int] = time.time_ns,
                 say: Callable[[str], None] = print) -> None:
        if not wire.valid_name(survey):
            raise ValueError(f"survey id {survey!r}: use lowercase letters, digits, '-', '_' or '.'")
        self.survey, self.poll, self.store, self.clock, self.say = survey, poll, store, clock, say
        self.outcome = Outcome()

    def _keep(self, samples: list[wire.Sample], unplaced: int, where: str) -> None:
        self.outcome.unplaced += unplaced
        if samples:
            self.store(samples)
            self.outcome.stored += len(samples)
        parts = [f"{s.tags.get('modem', '?')} {s.fields['rsrp_dbm']:g} dBm" if "rsrp_dbm" in s.fields else
                 f"{s.tags.get('modem', '?')} no RSRP" for s in samples]
        self.say(f"{where}: " + ("; ".join(parts) if parts else f"no reading stored ({unplaced} without a position)"))

    async def run_gpsd(self, gps: GpsdClient, every_s: float, max_age_s: float, stop: asyncio.Event,
                       rounds: int | None = None) -> Outcome:
        """Read the modems every ``every_s`` until ``stop`` (or ``rounds`` done), pairing with gpsd's fixes."""
        done = 0
        while not stop.is_set() and (rounds is None or done < rounds):
            readings = await self.poll()
            # a reading may come before the fix nearest it: give gpsd one report interval (1 s) to deliver it
            await _wait(stop, min(1.0, max_age_s))
            samples, unplaced = pair(readings, list(gps.fixes), self.survey, int(max_age_s * 1e9))
            fix = gps.latest()
            where = (f"lat {fix.lat:.6f} lon {fix.lon:.6f}" if fix is not None and fix.lat is not None
                     else "no GPS fix yet")
            self._keep(samples, unplaced, where)
            done += 1
            await _wait(stop, max(0.0, every_s - min(1.0, max_age_s)))
        return self.outcome

    async def run_waypoints(self, points: Sequence[Waypoint], readings: int, ask: Ask) -> Outcome:
        """Walk ``points`` in order: wait for the engineer at each, then read the modems ``readings`` times."""
        for i, point in enumerate(points):
            at = f"x {point.x:g} m, y {point.y:g} m" if point.kind == "xy" else f"lat {point.lat}, lon {point.lon}"
            answer = await ask(f"[{i + 1}/{len(points)}] go to {point.name} ({at}), then press Enter "
                               "(s Enter: skip it, q Enter: stop) ")
            if answer is None or answer.strip().lower() == "q":
                break
            if answer.strip().lower() == "s":
                continue
            fix = point.fix(self.clock())
            for _ in range(readings):
                samples = [s for r in await self.poll() if (s := survey_sample(r, self.survey, fix)) is not None]
                self._keep(samples, 0, point.name)
            self.outcome.points.append(point.name)
        return self.outcome


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    if seconds > 0:
        try:
            await asyncio.wait_for(stop.wait(), timeout=seconds)
        except TimeoutError:
            pass


async def ask_terminal(prompt: str) -> str | None:
    """Print ``prompt`` and read one line from standard input (None at its end)."""
    print(prompt, end="", flush=True)
    line = await asyncio.to_thread(sys.stdin.readline)
    return line if line else None


async def run(cfg: object, survey: str, gpsd: str | None, waypoints: str | None, every_s: float = 5.0,
              readings: int = 3, max_age_s: float = 5.0, stop: asyncio.Event | None = None,
              ask: Ask = ask_terminal, rounds: int | None = None) -> int:
    """``zonewatch-agent survey``: read the probe's cellular sources at each position, spool and send ``survey``
    samples through the probe's spool and uplink; return the exit code (0 done, 2 nothing to survey with)."""
    import signal

    from agent.config import AgentConfig
    from agent.runner import Agent
    from agent.spool import Spool
    from agent.uplink import Uplink

    assert isinstance(cfg, AgentConfig)
    cellular = [s for s in cfg.sources if s.type == "cellular"]
    if not cellular:
        print("zonewatch-agent survey: the configuration has no cellular source: nothing to read", file=sys.stderr)
        return 2
    points = load_waypoints(waypoints) if waypoints else []
    agent = Agent(cfg.model_copy(update={"sources": cellular}))
    spool = Spool(cfg.spool.path, cfg.probe.zone, cfg.probe.id, cfg.spool.max_bytes, cfg.spool.max_age)
    uplink = Uplink(cfg.mqtt, spool, cfg.probe.zone, cfg.probe.id)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def poll() -> list[wire.Sample]:
        results = await asyncio.gather(*(agent.poll_once(name) for name in agent.sources))
        return [s for r in results for s in r.samples]

    def store(samples: list[wire.Sample]) -> None:
        spool.append("data", agent.clock(), samples=tuple(samples))
        uplink.pump(agent.clock())

    async def pump() -> None:
        while not stop.is_set():
            uplink.pump(agent.clock())
            await _wait(stop, 0.2)

    walk = Survey(survey, poll, store, clock=agent.clock)
    uplink.start()
    pumping = loop.create_task(pump())
    gps: GpsdClient | None = None
    try:
        if points:
            await walk.run_waypoints(points, readings, ask)
        else:
            host, _, port = (gpsd or "127.0.0.1:2947").rpartition(":")
            gps = GpsdClient(host or "127.0.0.1", int(port))
            gps.start()
            await walk.run_gpsd(gps, every_s, max_age_s, stop, rounds)
    finally:
        stop.set()
        await pumping
        if gps is not None:
            await gps.close()
        deadline = time.monotonic() + 5.0
        while spool.depth() and uplink.connected and time.monotonic() < deadline:
            uplink.pump(agent.clock())
            await asyncio.sleep(0.05)
        left = spool.depth()
        uplink.stop(planned=True)
        await agent.close_sources()
        spool.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    out = walk.outcome
    print(f"survey {survey}: {out.stored} readings stored with a position"
          + (f", {out.unplaced} left out (no GPS fix within {max_age_s:g}s)" if out.unplaced else "")
          + (f"; {left} batches wait in the spool for the broker" if left else "; all sent"))
    return 0
