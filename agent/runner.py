"""The agent's outer loop: schedules every source, spools what it returns, and feeds the uplink.

This is the only place in the agent that reads the clock; everything below takes ``now_ns``.
Each source is its own APScheduler job (``max_instances=1``: a poll still running when the next is due
is skipped, not stacked; ``coalesce``: after a stall, one catch-up run, not a burst), with a fixed
per-source offset inside its interval and a small random jitter on every run, so that a probe with many
devices does not poll them all in the same instant. A source that fails is logged once when it starts
failing and once when it recovers, not at every poll.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import resource
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from agent.config import AgentConfig
from agent.fleet.apply import RemoteConfig
from agent.fleet.commands import Commands
from agent.fleet.deadman import Health
from agent.fleet.software import update_dir
from agent.fleet.update import SoftwareUpdate
from agent.metrics import AgentMetrics
from agent.selfreport import storage_fields
from agent.sources import SourceError
from agent.sources.registry import is_listener, make_source
from agent.spool import Spool
from agent.uplink import Uplink
from zonewatch import wire
from zonewatch.process import ServiceNotifier

log = logging.getLogger(__name__)


def _version() -> str:
    """Return the installed ZoneWatch version (``unknown`` when run from a tree that is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("zonewatch")
    except PackageNotFoundError:
        return "unknown"


VERSION = _version()


@dataclass
class PollResult:
    """What one poll of one source gave: samples, or the error that stopped it."""

    name: str
    type: str
    samples: list[wire.Sample]
    error: str | None
    seconds: float


def _absent_ports(polled: list[Any]) -> Callable[[str, str, int | None, str | None], bool]:
    """Return the trap receiver's question "did the last poll of this sender find the port notPresent?",
    answered by the SNMP source whose name is the trap's device, or whose host is the sender's address."""
    by_key: dict[str, Any] = {}
    for source in polled:
        by_key.setdefault(source.name, source)
        by_key.setdefault(getattr(source.config, "host", ""), source)

    def absent(device: str, sender: str, if_index: int | None, ifname: str | None) -> bool:
        source = by_key.get(device) or by_key.get(sender)
        return source is not None and bool(source.not_present(if_index, ifname))

    return absent


def first_offset(name: str, interval: float) -> float:
    """Return a stable offset in [0, min(interval, 10s)) for a source's first poll."""
    return (zlib.crc32(name.encode()) % 1000) / 1000 * min(interval, 10.0)


def jitter(interval: float) -> float:
    """Return the random spread of each run around its slot: 5 % of the interval, at most 2 s."""
    return min(interval * 0.05, 2.0)


class Agent:
    """One probe's agent: sources, spool and uplink wired together."""

    def __init__(self, cfg: AgentConfig, metrics: AgentMetrics | None = None,
                 clock: Callable[[], int] = time.time_ns) -> None:
        self.cfg = cfg
        self.clock = clock
        self.metrics = metrics or AgentMetrics()
        self.sources, self.listeners = self._make(cfg)
        self._failing: dict[str, str] = {}
        self._wake = asyncio.Event()
        self.spool: Spool | None = None
        self.uplink: Uplink | None = None
        self._exported = (0.0, 0, 0)  # when, published, acknowledged
        # Configuration from the centre (agent.fleet): what was seen since the last reconfigure (the dead-man rule).
        self.remote: RemoteConfig | None = None
        self._scheduler: AsyncIOScheduler | None = None
        self._polled: dict[str, bool] = {}       # polled source -> its last poll succeeded
        self._listening: dict[str, bool] = {}    # listener -> it started
        self._reached = False                    # the broker was reached when the configuration was applied
        self._connects = 0                       # the uplink's connects then
        self.updates: SoftwareUpdate | None = None   # software releases from the centre (agent.fleet.update)
        # What the centre asks on the command topic (agent.fleet.commands): a diagnostic round.
        self.commands = Commands(cfg.probe.zone, cfg.probe.id, self.metrics.commands)

    @staticmethod
    def _make(cfg: AgentConfig) -> tuple[dict[str, tuple[Any, Any]], dict[str, tuple[Any, Any]]]:
        """Return the polled sources and the listeners of ``cfg`` by name, made (no I/O; raises on a bad one)."""
        made = {s.name: (s, make_source(s)) for s in cfg.sources}
        polled = [source for _, source in made.values() if hasattr(source, "not_present")]
        for _, source in made.values():
            if hasattr(source, "absent_ports") and polled:   # a trap receiver: linkDown about an empty cage
                source.absent_ports = _absent_ports(polled)
        return ({n: cs for n, cs in made.items() if not is_listener(cs[1])},
                {n: cs for n, cs in made.items() if is_listener(cs[1])})

    async def poll_once(self, name: str) -> PollResult:
        """Poll one source once and return what it gave (no spooling)."""
        config, source = self.sources[name]
        labels = (name, config.type)
        started = time.monotonic()
        now_ns = self.clock()
        try:
            samples = await asyncio.wait_for(source.collect(now_ns), timeout=max(config.interval, 1.0))
        except (SourceError, OSError, TimeoutError) as exc:
            message = str(exc) or f"no answer within {config.interval:g}s"
            seconds = time.monotonic() - started
            self.metrics.source_errors.labels(*labels).inc()
            if self._failing.get(name) != message:
                log.error("source %s (%s) failed: %s", name, config.type, message)
            self._failing[name] = message
            self._polled[name] = False
            unanswered = getattr(source, "unanswered", None)
            fallback = unanswered(now_ns) if isinstance(exc, TimeoutError) and unanswered is not None else []
            fallback = fallback or list(getattr(exc, "samples", ()))   # what the failure says (a modem not answering)
            return PollResult(name, config.type, fallback, message, seconds)
        seconds = time.monotonic() - started
        self._polled[name] = True
        if self._failing.pop(name, None) is not None:
            log.info("source %s (%s) recovered", name, config.type)
        self.metrics.source_duration.labels(*labels).observe(seconds)
        self.metrics.source_last_success.labels(*labels).set(now_ns / 1e9)
        self.metrics.source_samples.labels(*labels).inc(len(samples))
        for profile, empty in getattr(source, "profile_report", dict)().items():   # an SNMP profile's silence
            self.metrics.profile_empty.labels(name, profile).set(1 if empty else 0)
        return PollResult(name, config.type, samples, None, seconds)

    async def poll(self, name: str) -> None:
        """Poll one source and spool its samples (an APScheduler job)."""
        try:
            result = await self.poll_once(name)
        except asyncio.CancelledError:  # the agent is stopping mid-poll: nothing to spool, nothing to report
            return
        if result.samples and self.spool is not None:
            self.spool.append("data", self.clock(), samples=tuple(result.samples))
            self._wake.set()

    async def poll_self(self) -> None:
        """Spool the probe's own health sample (``probe`` measurement)."""
        if self.spool is None:
            return
        usage = resource.getrusage(resource.RUSAGE_SELF)
        now_ns = self.clock()
        fields: dict[str, wire.FieldValue] = {
            "up": True,
            "spool_depth": self.spool.depth(),
            "spool_dropped": self.spool.dropped(),
            "rss_mb": round(usage.ru_maxrss / 1024, 1),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
            **storage_fields(self.spool.path, self.spool.size_bytes(), self.cfg.spool.max_bytes),
        }
        self.spool.append("data", now_ns, samples=(wire.Sample("probe", {}, fields, now_ns),))
        # The version is a series of its own (see the README).
        self.spool.append("data", now_ns, samples=(wire.Sample("probe", {"version": VERSION}, {"info": 1}, now_ns),))
        self._wake.set()

    def emit(self, kind: Literal["data", "events"], samples: Sequence[wire.Sample],
             events: Sequence[wire.Event]) -> None:
        """Spool what a listener received (called on the event loop's thread; never raises)."""
        if self.spool is None or not (samples or events):
            return
        try:
            self.spool.append(kind, self.clock(), samples=tuple(samples), events=tuple(events))
        except Exception:  # noqa: BLE001 - a listener's callback must not die on a spool problem
            log.exception("could not spool %d samples and %d events from a listener", len(samples), len(events))
            return
        self._wake.set()

    async def start_listeners(self) -> None:
        """Start every listener; one that cannot start is logged and left out, the others go on."""
        for name, (config, listener) in list(self.listeners.items()):
            try:
                await listener.start(self.emit)
            except (SourceError, OSError) as exc:
                log.error("listener %s (%s) could not start: %s", name, config.type, exc)
                self.metrics.source_errors.labels(name, config.type).inc()
                self._listening[name] = False
                continue
            self._listening[name] = True
            log.info("listener %s (%s) started", name, config.type)

    async def once(self) -> list[PollResult]:
        """Poll every source once, concurrently; return the results in config order."""
        try:
            return list(await asyncio.gather(*(self.poll_once(n) for n in self.sources)))
        finally:
            await self.close_sources()

    async def close_sources(self) -> None:
        """Close every source and stop every listener, logging (not raising) what fails."""
        for name, (_, source) in self.sources.items():
            try:
                await source.close()
            except Exception as exc:  # noqa: BLE001 - closing must reach every source
                log.warning("closing source %s: %s", name, exc)
        for name, (_, listener) in self.listeners.items():
            try:
                await listener.stop()
            except Exception as exc:  # noqa: BLE001 - stopping must reach every listener
                log.warning("stopping listener %s: %s", name, exc)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set: schedule sources, spool, publish."""
        cfg = self.cfg
        self.spool = Spool(cfg.spool.path, cfg.probe.zone, cfg.probe.id, cfg.spool.max_bytes, cfg.spool.max_age,
                           coalesce_s=cfg.spool.coalesce)
        cfg = self._start_remote(cfg)   # configuration from the centre: what ran before, unless it was on trial
        updates = self.updates = SoftwareUpdate(cfg.update, update_dir(cfg.spool.path), VERSION, self.clock())
        self.uplink = Uplink(cfg.mqtt, self.spool, cfg.probe.zone, cfg.probe.id, config=self.remote is not None)
        if self.spool.depth():
            log.info("spool holds %d batches from before; sending them first", self.spool.depth())
        scheduler = self._scheduler = self._schedule()
        self.uplink.start()
        await self.start_listeners()
        scheduler.start()
        log.info("agent %s/%s running %d polled sources and %d listeners; pid %d", cfg.probe.zone, cfg.probe.id,
                 len(self.sources), len(self.listeners), os.getpid())
        notifier = ServiceNotifier.from_environment()  # systemd (Type=notify, WatchdogSec=); a no-op elsewhere
        notifier.ready(f"probe {cfg.probe.zone}/{cfg.probe.id}: {len(self.sources)} polled sources, "
                       f"{len(self.listeners)} listeners")
        try:
            while not stop.is_set():
                notifier.watchdog(time.monotonic())  # this loop turns at least every 0.1 s while the event loop lives
                sent = self.uplink.pump(self.clock())
                if self.remote is not None:
                    await self._remote_step(self.remote)
                updates.step(self, self.clock())   # a release from the centre: ask, say how it runs, report
                self._command_step()
                self._export_state()
                if sent and self.uplink.inflight() < self.uplink.max_inflight:
                    continue
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=0.1)
                except TimeoutError:
                    pass
        finally:
            notifier.stopping()
            (self._scheduler or scheduler).shutdown(wait=False)
            self.spool.seal()   # the data waiting to be joined by more go now
            await self._flush(deadline_s=3.0)
            self.uplink.stop(planned=stop.is_set())   # asked to stop (SIGTERM, Ctrl-C), not a crash
            await self.close_sources()
            self.spool.close()

    # configuration from the centre (agent.fleet) --------------------------------------------------------

    def _schedule(self) -> AsyncIOScheduler:
        """Return a scheduler (not started) with one job per polled source and one for the probe's own health."""
        scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop())
        start = dt.datetime.now(dt.timezone.utc)
        for name, (config, _) in self.sources.items():
            scheduler.add_job(self.poll, "interval", seconds=config.interval, args=[name], id=name,
                              max_instances=1, coalesce=True, misfire_grace_time=max(1, int(config.interval / 2)),
                              jitter=jitter(config.interval),
                              next_run_time=start + dt.timedelta(seconds=first_offset(name, config.interval)))
        scheduler.add_job(self.poll_self, "interval", seconds=self.cfg.self_interval, id="_probe",
                          max_instances=1, coalesce=True, next_run_time=start)
        return scheduler

    def _start_remote(self, cfg: AgentConfig) -> AgentConfig:
        """Set up ``self.remote`` (if ``remote_config.enabled``) and return the configuration to start with."""
        if not cfg.remote_config.enabled:
            return cfg
        self.remote = RemoteConfig(cfg, clock=self.clock)
        started = self.remote.startup(self, self.clock())
        if started is not cfg:
            try:
                self.sources, self.listeners = self._make(started)
            except Exception as exc:  # noqa: BLE001 - a source this version cannot make: run the local file
                log.error("cannot start the configuration kept from the centre (%s): running the local file", exc)
                self.remote.forget()
                return cfg
            self.cfg = started
        return started

    async def _remote_step(self, remote: RemoteConfig) -> None:
        """Hand the uplink's config messages to ``remote`` and let it act (on the event loop); what goes wrong
        there (its state file on a full disk) is logged, and polling and sending go on."""
        assert self.uplink is not None
        payload = self.uplink.take_config()
        if payload is not None:
            remote.offer(payload)
        try:
            await remote.step(self, self.clock())
        except Exception:  # noqa: BLE001 - the data path must not stop for it
            log.exception("handling the configuration from the centre failed; carrying on")

    def _command_step(self) -> None:
        """Hand the uplink's command messages to ``self.commands``; a source asked for a diagnostic round is polled
        at once (if it is polling now, the round runs at its next tick)."""
        assert self.uplink is not None
        for payload in self.uplink.take_commands():
            for name in self.commands.handle(payload, self.sources, self.clock()):
                job = self._scheduler.get_job(name) if self._scheduler is not None else None
                if job is not None:
                    job.modify(next_run_time=dt.datetime.now(dt.timezone.utc))

    async def reconfigure(self, cfg: AgentConfig) -> None:
        """Run ``cfg`` instead of what runs now (``agent.fleet.apply.Host``): the spool, its seq and every batch in
        it stay; the uplink is made again only if ``cfg.mqtt`` differs. Atomic: the new sources (and uplink) are
        all made first, so one that cannot be made raises here with the old configuration untouched; only then
        are the old ones stopped (a poll under way is cancelled and spools nothing)."""
        assert self.spool is not None and self.uplink is not None and self._scheduler is not None
        sources, listeners = self._make(cfg)
        uplink = None
        if cfg.mqtt != self.cfg.mqtt:
            uplink = Uplink(cfg.mqtt, self.spool, cfg.probe.zone, cfg.probe.id, config=self.remote is not None)
        self._scheduler.shutdown(wait=False)
        await self.close_sources()
        self.cfg, self.sources, self.listeners = cfg, sources, listeners
        self._failing.clear()
        self._polled.clear()
        self._listening.clear()
        if uplink is not None:
            # The old connection says ``stopping`` and closes; what it had in flight is still spooled and goes out
            # again through the new one (the collector drops what arrived twice).
            old, self.uplink = self.uplink, uplink
            await asyncio.to_thread(old.stop, True)
            when, published, acked = self._exported   # the new uplink counts from 0: carry what the old one did
            self._exported = (when, published - old.published, acked - old.acknowledged)
            self.uplink.start()
        self._reached, self._connects = self.uplink.connected, self.uplink.connects
        self._scheduler = self._schedule()
        await self.start_listeners()
        self._scheduler.start()
        self._wake.set()

    def report(self, event: wire.Event) -> None:
        """Spool a report for the events topic (``agent.fleet.apply.Host``, ``agent.fleet.update.Host``)."""
        self.emit("events", (), (event,))

    def acknowledged(self) -> int:
        """Return how many batches the broker acknowledged on this connection (``agent.fleet.update.Host``)."""
        return self.uplink.acknowledged if self.uplink is not None else 0

    def health(self) -> Health:
        """Return what was seen since the last reconfigure (``agent.fleet.apply.Host``)."""
        assert self.uplink is not None
        reached = self._reached or self.uplink.connects > self._connects
        polled = [ok for name, ok in self._polled.items() if name in self.sources]
        started = list(self._listening.values())
        return Health(reached, len(self.sources) + len(self.listeners), len(polled) + len(started),
                      polled.count(False) + started.count(False))

    async def _flush(self, deadline_s: float) -> None:
        """On the way out, give the broker a moment to take what is spooled (the rest waits on disk)."""
        assert self.spool is not None and self.uplink is not None
        end = time.monotonic() + deadline_s
        while self.uplink.connected and time.monotonic() < end:
            self.uplink.pump(self.clock())
            if not self.spool.depth():
                return
            await asyncio.sleep(0.02)
        if self.spool.depth():
            log.info("stopping with %d batches in the spool; they go out at the next start", self.spool.depth())

    def _export_state(self) -> None:
        assert self.spool is not None and self.uplink is not None
        when, published, acked = self._exported
        if time.monotonic() - when < 1.0:
            return
        m = self.metrics
        for name, (config, listener) in self.listeners.items():
            for result, count in getattr(listener, "stats", {}).items():
                m.listener_inputs.labels(name, config.type, result).set(count)
        for name, (_, source) in self.sources.items():
            for step, result in getattr(source, "take_recoveries", list)():   # a modem's recovery steps
                m.modem_recovery.labels(name, step, result).inc()
            for command, field in getattr(source, "take_dropped", list)():   # values out of physical bounds
                m.modem_dropped.labels(name, command, field).inc()
            if empty := getattr(source, "take_empty", int)():   # polls that gave no value
                m.modem_empty.labels(name).inc(empty)
        m.published.inc(self.uplink.published - published)
        for kind, reason in self.uplink.take_refused():
            m.refused.labels(kind, reason).inc()
        m.acknowledged.inc(self.uplink.acknowledged - acked)
        self._exported = (time.monotonic(), self.uplink.published, self.uplink.acknowledged)
        m.spool_depth.set(self.spool.depth())
        m.spool_bytes.set(self.spool.size_bytes())
        m.spool_dropped.set(self.spool.dropped())
        m.mqtt_connected.set(1 if self.uplink.connected else 0)
