"""Diagnostic rounds: when a coverage or service alert fires for a carrier, the probes there test it at once.

The alerts that ask for one (``TRIGGERS``): DataAccessFailure, ThroughputBelowTarget, NoService (a carrier in an
area), CoverageHole and CoverageInterference (a carrier at one probe). What happens, after every evaluation of the
alert engine (``Diagnostics.tick(now_ns, firing)``, on the engine's thread, with the alerts firing and notified)::

    once per firing     an alert of TRIGGERS that was not acted on before (its labels and its start) is acted on
                        now; a muted one (maintenance, NoService over CoverageHole) when its firing is notified
    which probes        the alert's probe if it names one, else every probe of its zone and area (the inventory),
                        and of each, every modem on the alert's carrier (a probe without one is left out)
    rate limit          at most one round per probe and modem per ``min_interval``: a round asked for sooner is
                        skipped and counted
    the command         ``zonewatch.wire.Command`` of kind ``diagnostic_round``, with the transfers only for
                        ThroughputBelowTarget (the probe's SIM budget still decides), expiring ``expires_after``
                        after it was issued; its id is a hash of the alert, its start, the probe and the modem
    sent                on the probe's ``command`` topic, QoS 1, not retained (MQTT v5: with the expiry as its
                        message expiry interval), through the collector's data session; never waits for the broker

``Planner`` decides (pure: time comes in as ``now_ns``); ``Diagnostics`` sends, counts
(``zonewatch_diagnostic_rounds{result}``: sent, unsent, rate_limited) and keeps the planner's state in
``diagnostics.json`` in the fleet folder, so that a restart acts on no firing twice. One of an HA pair sends
only as the primary (the app starts it there only).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter
from pydantic import Field

from collector.alerting.model import Notification
from collector.inventory import Inventory
from zonewatch import wire
from zonewatch.strict import Duration, Strict

__all__ = ["TRIGGERS", "DiagnosticsConfig", "Round", "Planner", "Diagnostics", "STATE_FILE", "mqtt_send"]

log = logging.getLogger(__name__)

TRIGGERS: Final = frozenset({"DataAccessFailure", "ThroughputBelowTarget", "CoverageHole", "NoService",
                             "CoverageInterference"})
TRANSFERS: Final = frozenset({"ThroughputBelowTarget"})
STATE_FILE = "diagnostics.json"
FORGET_NS = 24 * 3600 * 10**9   # a firing not seen in the engine's list for this long is forgotten
REFRESH_NS = 3600 * 10**9       # how often a firing still in the list has its "last seen" renewed
S = 10**9


class DiagnosticsConfig(Strict):
    """``diagnostics:`` in the collector's configuration: diagnostic rounds on coverage and service alerts."""

    enabled: bool = True
    min_interval: Duration = Field(default=1800.0, gt=0)   # at most one round per probe and modem this often
    expires_after: Duration = Field(default=600.0, gt=0)   # a probe that gets the command later ignores it


@dataclass(frozen=True, slots=True)
class Round:
    """One decided round: the command, and the alert that asked for it."""

    command: wire.Command
    alert: str


@dataclass
class _State:
    seen: dict[str, int] = field(default_factory=dict)   # alert fingerprint@start -> last seen firing (ns)
    last: dict[str, int] = field(default_factory=dict)   # probe/modem -> when a round was last sent (ns)


class Planner:
    """Decide which rounds the alerts firing now ask for (see the module docstring); pure."""

    def __init__(self, inventory: Inventory, cfg: DiagnosticsConfig) -> None:
        self.inventory, self.cfg = inventory, cfg
        self.state = _State()
        self.rate_limited = 0     # rounds skipped for the rate limit, ever

    def decide(self, firing: Sequence[Notification], now_ns: int) -> list[Round]:
        """Return the rounds to send for ``firing`` (the alerts firing and notified at ``now_ns``)."""
        rounds: list[Round] = []
        for note in firing:
            name = note.labels.get("alertname", "")
            if note.status != "firing" or name not in TRIGGERS or not note.labels.get("carrier"):
                continue
            key = f"{note.key}@{note.starts_ns}"
            seen = self.state.seen.get(key)
            if seen is None or now_ns - seen >= REFRESH_NS:   # (not every tick: the state is saved when it changes)
                self.state.seen[key] = now_ns
            if seen is not None:
                continue
            for probe, zone, modem, plmn in self.targets(note.labels):
                where = f"{probe}/{modem}"
                last = self.state.last.get(where)
                if last is not None and now_ns - last < int(self.cfg.min_interval * S):
                    self.rate_limited += 1
                    log.info("%s %s: no diagnostic round for probe %s modem %s: one was asked %.0f s ago (at most one "
                             "every %g s)", name, _where(note.labels), probe, modem, (now_ns - last) / S,
                             self.cfg.min_interval)
                    continue
                self.state.last[where] = now_ns
                ident = hashlib.blake2b(f"{key}|{probe}|{modem}".encode(), digest_size=12).hexdigest()
                action = wire.DiagnosticRound(plmn, modem, name in TRANSFERS, name)
                command = wire.Command(ident, zone, probe, now_ns, now_ns + int(self.cfg.expires_after * S), action)
                rounds.append(Round(command, name))
        self._forget(now_ns)
        return rounds

    def targets(self, labels: Any) -> list[tuple[str, str, str, str]]:
        """Return (probe, zone, modem, PLMN) of every modem the alert with ``labels`` asks a round of."""
        zone, area, carrier, only = labels.get("zone"), labels.get("area"), labels["carrier"], labels.get("probe")
        out = []
        for name, probe in sorted(self.inventory.probes.items()):
            if probe.zone != zone or (only is not None and name != only) or (only is None and (
                    not area or probe.area != area)):
                continue
            for modem in probe.modems:
                if self.inventory.plmns([modem.carrier]) == [carrier]:
                    out.append((name, probe.zone, modem.name, carrier))
        return out

    def _forget(self, now_ns: int) -> None:
        """Drop what no longer matters: firings long gone, rate limits long over."""
        self.state.seen = {k: t for k, t in self.state.seen.items() if now_ns - t < FORGET_NS}
        keep = int(self.cfg.min_interval * S)
        self.state.last = {k: t for k, t in self.state.last.items() if now_ns - t < keep}

    def dump(self) -> str:
        """Return the state as JSON."""
        return json.dumps({"version": 1, "seen": self.state.seen, "last": self.state.last}, sort_keys=True)

    def load(self, text: str) -> None:
        """Take the state ``dump`` wrote; raise ValueError for anything else."""
        doc = json.loads(text)
        if not isinstance(doc, dict) or doc.get("version") != 1:
            raise ValueError("not a version 1 state")
        seen, last = doc.get("seen"), doc.get("last")
        for table in (seen, last):
            if not isinstance(table, dict) or not all(isinstance(k, str) and type(v) is int for k, v in table.items()):
                raise ValueError("seen and last must map names to times (ns)")
        self.state = _State(dict(seen), dict(last))   # type: ignore[arg-type]


def _where(labels: Any) -> str:
    return " ".join(f"{k}={labels[k]}" for k in ("zone", "area", "carrier", "probe") if labels.get(k))


Send = Callable[[str, bytes, int], bool]   # (topic, payload, expiry in s) -> handed to the broker session


def mqtt_send(client: Any, v5: bool) -> Send:
    """Return a ``Send`` through ``client`` (paho; the collector's data session): QoS 1, not retained, with the
    message expiry interval over MQTT v5. It does not wait: paho sends it, or sends it on reconnect."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    def send(topic: str, payload: bytes, expiry_s: int) -> bool:
        props = None
        if v5:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.MessageExpiryInterval = max(1, expiry_s)
        info = client.publish(topic, payload, qos=1, retain=False, properties=props)
        return bool(info.rc == mqtt.MQTT_ERR_SUCCESS)

    return send


class Diagnostics:
    """Send the rounds ``Planner`` decides; count them; keep the state (see the module docstring)."""

    def __init__(self, inventory: Inventory, cfg: DiagnosticsConfig, send: Send, folder: Path | None,
                 registry: CollectorRegistry | None = None) -> None:
        self.planner = Planner(inventory, cfg)
        self.cfg, self.send = cfg, send
        self.path = folder / STATE_FILE if folder is not None else None
        self.rounds = Counter("zonewatch_diagnostic_rounds", "Diagnostic rounds asked of probes, by result (sent; "
                              "unsent: the broker session was down, paho sends it on reconnect; rate_limited)",
                              ["result"], registry=registry)
        self._save_failed = False
        if self.path is not None:
            try:
                self.planner.load(self.path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                pass
            except (OSError, ValueError) as exc:
                log.warning("cannot read %s (%s): starting afresh (a firing alert may ask for its round again)",
                            self.path, exc)

    def tick(self, now_ns: int, firing: Sequence[Notification]) -> list[Round]:
        """Send the rounds the alerts firing at ``now_ns`` ask for (the engine's thread); return them."""
        limited = self.planner.rate_limited
        before = self.planner.dump()
        rounds = self.planner.decide(firing, now_ns)
        if self.planner.rate_limited > limited:
            self.rounds.labels("rate_limited").inc(self.planner.rate_limited - limited)
        for r in rounds:
            c = r.command
            ok = self.send(wire.topic(c.zone, c.probe, "command"), wire.encode_command(c),
                           int(self.cfg.expires_after))
            self.rounds.labels("sent" if ok else "unsent").inc()
            log.info("asked probe %s/%s for a diagnostic round on modem %s (carrier %s%s) for %s: command %s%s",
                     c.zone, c.probe, c.action.modem, c.action.carrier,
                     ", with transfers" if c.action.transfers else "", r.alert, c.id,
                     "" if ok else " (the broker session is down: sent on reconnect)")
        if self.planner.dump() != before:
            self._save()
        return rounds

    def _save(self) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".diagnostics-", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(self.planner.dump())
                os.replace(tmp, self.path)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as exc:
            if not self._save_failed:
                log.error("cannot write %s (%s): after a restart a firing alert may ask for its round again",
                          self.path, exc)
            self._save_failed = True
            return
        self._save_failed = False
