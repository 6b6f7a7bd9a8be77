"""Rule scenarios in promtool's spirit: an inventory, input series and the alerts expected over time.

A scenario file (``scenarios/*.yaml``) reads top to bottom like an incident timeline::

    description: what the scenario shows
    interval: 30s                 # one step: every series sends one sample per step, rules run every step
    settings: {device_down_polls: 2}          # RuleSettings (optional)
    alerting: {rules: {LinkDown: {for: 1m}}}  # the rest of AlertingConfig (optional; restart_grace is 0s)
    restarts: [6m]                            # the collector restarts there (facts lost, alert state kept)
    inventory: {zones: ..., devices: ...}     # the zone inventory, inline, checked as at start-up
    input:
      - device: {probe: p1, device: sw-core}  # measurement: tags (``probe`` is the sending probe)
        values: "1x4 0x6 _x2 1x8"             # the main field (``up`` here), one value per step
        fields: {uptime_s: "100+30x20"}       # more fields, same notation
        tags: {path: "primaryx4 backupx16"}   # tags that change over time (words instead of numbers)
        every: 1m                             # one value per minute (default: one per step)
        delay: 5m                             # arrives this long after it was measured (a slow uplink)
        arrive: 9m                            # or: all of it arrives then, in one batch (a spooled backlog)
      - status: {probe: p1}                   # the retained status: 1 online, 0 offline (the last will),
        values: "1x10 0x10"                   # ``stopping`` (a planned stop); sent when it changes
      - bridge: {zone: park}                  # a park broker's bridge state (collector.alerting.parks): 1
        values: "1x4 0x6 1x10"                # connected, 0 its last will; sent when it changes
      - gaps: {probe: p1}                     # the ingest's count of the probe's seq gaps, as it tells the
        values: "0x6 150x4"                   # engine (``Facts.observe_gaps``); one value per step
      - event: link_down                      # one event (a trap), sent at once
        at: 2m
        probe: p1
        tags: {device: sw-core, ifname: xe-0/0/1}
        fields: {admin_up: 1}
    expect:
      - at: 2m
        alerts:                               # every alert tracked now: exactly these (pending or firing)
          - {alertname: LinkDown, link: viettel-primary, carrier: 452-04, state: firing}
          - {alertname: DeviceDown, device: bts-01, state: firing, muted: true}
        notified:                             # every notification since the previous ``expect`` (none if absent)
          - {status: firing, alertname: LinkDown, carrier: 452-04}
          - {status: resolved, alertname: DeviceDown, ends: 1m30s}   # ``ends``: its endsAt (scenario time)
        samples:                              # derived measurements of this evaluation (these among them)
          - {redundancy: {group: viettel-fibre, carrier: 452-04}, members_up: 1, state: 1}

Series notation (one token per step, or ``VxN`` for N steps of V): ``1x4 0x16`` is four 1s then sixteen 0s,
``_`` (or ``_xN``) is no sample, ``-90-2x5`` is -90, -92, ... -98 (``a+bxN`` / ``a-bxN`` step by b), and a
word is a tag value (``backupx3``). Booleans (``up``, ``oper_up``, ``registered`` ...) are written 1 and 0.
Alerts and notifications match on the labels they list (plus ``state``, ``muted``, ``flapping`` and
``status``); labels not listed are not compared, ``carrier: null`` means no ``carrier`` label, and a muted or
flapping alert must say so. An alert a maintenance window mutes (the inventory's ``maintenance`` section, applied
as the engine does) shows the window's id as ``maintenance``, the tag it is stored with.

``run(path)`` drives it: every step it feeds ``Facts`` with the batches that arrived by then (one batch per
probe and step, events in their own batch), evaluates the rules at the step's time, and updates an
``AlertTracker``. It raises ``ScenarioError`` naming the step and showing expected and actual.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from collector.alerting import parks
from collector.alerting.config import AlertingConfig
from collector.alerting.facts import Facts
from collector.alerting.maintenance import Maintenance, window_of
from collector.alerting.model import Evaluation, Notification
from collector.alerting.rules import Rules
from collector.alerting.tracker import AlertTracker, TrackedAlert
from collector.inventory import Inventory
from collector.maintenance import Declared
from zonewatch import strict, wire

S = 1_000_000_000
T0 = 1_764_288_000 * S  # 2025-11-28 00:00:00 UTC: scenario time 0

MAIN_FIELD = {"device": "up", "interface": "oper_up", "reach": "loss_pct", "power": "on_battery",
              "optical": "rx_dbm", "cellular": "rsrp_dbm", "probe": "up", "pon": "onus_online"}
BOOLEAN = {"up", "oper_up", "admin_up", "on_battery", "battery_low", "registered", "rebooted", "path_changed",
           "cleared", "cold", "depleted", "present"}
_TOKEN = re.compile(r"^(?P<v>_|-?\d+(?:\.\d+)?|[A-Za-z][\w.:/-]*?)(?P<step>[+-]\d+(?:\.\d+)?)?(?:x(?P<n>\d+))?$")
_TOP = {"description", "interval", "settings", "alerting", "inventory", "input", "expect", "restarts"}
_SERIES_KEYS = {"values", "fields", "tags", "delay", "every", "arrive"}
_EVENT_KEYS = {"event", "at", "probe", "tags", "fields", "delay"}
_EXPECT_KEYS = {"at", "alerts", "notified", "samples", "unknown"}


class ScenarioError(AssertionError):
    """A scenario that is malformed, or whose expectations are not met."""


def parse_series(text: str) -> list[Any]:
    """Expand a series (``"1x4 0x2 _ -90-2x3 backupx2"``) into one value per step (None for ``_``)."""
    out: list[Any] = []
    for token in str(text).split():
        match = _TOKEN.match(token)
        if match is None:
            raise ScenarioError(f"series {text!r}: cannot read {token!r} (expected V, VxN, a+bxN or _)")
        raw, step, count = match["v"], match["step"], int(match["n"] or 1)
        if raw == "_" or not re.match(r"^-?\d", raw):
            if step is not None:
                raise ScenarioError(f"series {text!r}: {token!r}: only numbers take a step")
            out += [None if raw == "_" else raw] * count
            continue
        start, delta = float(raw), float(step or 0)
        out += [_number(start + delta * i) for i in range(count)]
    return out


def _number(value: float) -> int | float:
    return int(value) if value == int(value) else value


def _seconds(value: Any, where: str) -> int:
    try:
        return int(strict.parse_duration(value) * S)
    except ValueError as exc:
        raise ScenarioError(f"{where}: {exc}") from None


def _field(name: str, value: Any) -> wire.FieldValue:
    return bool(value) if name in BOOLEAN else value


@dataclass
class Step:
    """One expectation."""

    at_ns: int
    alerts: list[dict[str, Any]] | None
    notified: list[dict[str, Any]]
    samples: list[dict[str, Any]]
    unknown: list[dict[str, str]]


@dataclass
class Scenario:
    """A parsed scenario file."""

    name: str
    interval_ns: int
    config: AlertingConfig
    inventory: Inventory
    arrivals: list[tuple[int, int, wire.Batch]] = field(default_factory=list)  # (arrival, order, batch)
    gaps: list[tuple[int, str, int]] = field(default_factory=list)  # (arrival, probe, seq gaps)
    bridges: list[tuple[int, str, bool]] = field(default_factory=list)  # (arrival, zone, up)
    restarts: list[int] = field(default_factory=list)
    expect: list[Step] = field(default_factory=list)


def load(path: Path) -> Scenario:
    """Read and check a scenario file."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict):
        raise ScenarioError(f"{path.name}: expected a mapping at the top")
    unknown = set(doc) - _TOP
    if unknown:
        raise ScenarioError(f"{path.name}: unknown key(s) {sorted(unknown)} (expected {sorted(_TOP)})")
    interval = _seconds(doc.get("interval", "30s"), "interval")
    alerting = {"restart_grace": "0s", **(doc.get("alerting") or {})}
    alerting["settings"] = doc.get("settings") or {}
    config = AlertingConfig.model_validate(alerting)
    inventory = Inventory.model_validate(doc["inventory"])
    problems = inventory.check_refs()
    if problems:
        (where, message), *_ = problems
        raise ScenarioError(f"{path.name}: inventory {'.'.join(map(str, where))}: {message}")
    scenario = Scenario(path.stem, interval, config, inventory)
    scenario.restarts = [_seconds(t, "restarts") for t in doc.get("restarts") or []]
    _inputs(scenario, doc.get("input") or [])
    for i, entry in enumerate(doc.get("expect") or []):
        extra = set(entry) - _EXPECT_KEYS
        if extra:
            raise ScenarioError(f"expect[{i}]: unknown key(s) {sorted(extra)} (expected {sorted(_EXPECT_KEYS)})")
        notified = [{**n, "ends": _seconds(n["ends"], f"expect[{i}].notified.ends")} if "ends" in n else n
                    for n in entry.get("notified") or []]
        scenario.expect.append(Step(_seconds(entry["at"], f"expect[{i}].at"), entry.get("alerts"),
                                    notified, entry.get("samples") or [],
                                    entry.get("unknown") or []))
    if not scenario.expect:
        raise ScenarioError(f"{path.name}: no expectations")
    return scenario


def _inputs(scenario: Scenario, entries: list[dict[str, Any]]) -> None:
    """Turn the input series into batches: one per probe, arrival time and kind."""
    rows: dict[tuple[int, str, str], list[wire.Sample | wire.Event]] = {}
    zone_of = {name: p.zone for name, p in scenario.inventory.probes.items()}
    default_zone = next(iter(scenario.inventory.zones))
    statuses: list[tuple[int, str, bool | str]] = []
    for i, entry in enumerate(entries):
        where = f"input[{i}]"
        if "event" in entry:
            extra = set(entry) - _EVENT_KEYS
            if extra:
                raise ScenarioError(f"{where}: unknown key(s) {sorted(extra)} (expected {sorted(_EVENT_KEYS)})")
            at = _seconds(entry["at"], f"{where}.at")
            fields = {k: _field(k, v) for k, v in (entry.get("fields") or {}).items()}
            event = wire.Event(entry["event"], dict(entry.get("tags") or {}), fields, T0 + at)
            arrival = at + _seconds(entry.get("delay", "0s"), f"{where}.delay")
            rows.setdefault((arrival, entry["probe"], "events"), []).append(event)
            continue
        kinds = set(entry) - _SERIES_KEYS
        if len(kinds) != 1:
            raise ScenarioError(f"{where}: expected one measurement (or status, event) besides {sorted(_SERIES_KEYS)},"
                                f" got {sorted(kinds)}")
        (kind,) = kinds
        tags = dict(entry[kind])
        if kind == "bridge":
            zone, previous = tags.get("zone"), None
            if not isinstance(zone, str):
                raise ScenarioError(f"{where}: bridge needs its zone (zone: park)")
            for step, value in enumerate(parse_series(entry.get("values", ""))):
                if value is not None and value != previous:
                    scenario.bridges.append((step * scenario.interval_ns, zone, bool(value)))
                    previous = value
            continue
        probe = tags.pop("probe", None)
        if probe is None:
            raise ScenarioError(f"{where}: {kind} needs the sending probe (probe: p1)")
        values = parse_series(entry.get("values", ""))
        delay = _seconds(entry.get("delay", "0s"), f"{where}.delay")
        arrive = _seconds(entry["arrive"], f"{where}.arrive") if "arrive" in entry else None
        every = _seconds(entry["every"], f"{where}.every") if "every" in entry else scenario.interval_ns
        if kind == "gaps":
            scenario.gaps += [(step * every + delay, probe, int(value)) for step, value in enumerate(values)
                              if value is not None]
            continue
        if kind == "status":
            previous = None
            for step, value in enumerate(values):
                if value is not None and value != previous:
                    if isinstance(value, str) and value != "stopping":
                        raise ScenarioError(f"{where}: status {value!r}: expected 1, 0 or stopping")
                    statuses.append((step * every + delay, probe, value if isinstance(value, str) else bool(value)))
                    previous = value
            continue
        if kind not in MAIN_FIELD:
            raise ScenarioError(f"{where}: unknown measurement {kind!r} (expected {sorted(MAIN_FIELD)}, status "
                                "or event)")
        columns = {MAIN_FIELD[kind]: values} if "values" in entry else {}
        columns.update({k: parse_series(v) for k, v in (entry.get("fields") or {}).items()})
        tag_series = {k: parse_series(v) for k, v in (entry.get("tags") or {}).items()}
        steps = max([len(v) for v in (*columns.values(), *tag_series.values())], default=0)
        for step in range(steps):
            fields = {k: _field(k, v[step]) for k, v in columns.items() if step < len(v) and v[step] is not None}
            if not fields:
                continue
            row_tags = {**tags, **{k: str(v[step]) for k, v in tag_series.items()
                                   if step < len(v) and v[step] is not None}}
            at = step * every
            when = max(at, arrive) if arrive is not None else at + delay
            rows.setdefault((when, probe, "data"), []).append(wire.Sample(kind, row_tags, fields, T0 + at))
    seqs: dict[str, int] = {}
    order = 0
    for arrival, probe, up in statuses:  # as collector.ingest.parse_entry makes them
        said: dict[str, wire.FieldValue] = {"up": False, "planned": True} if up == "stopping" else {"up": bool(up)}
        sample = wire.Sample("probe", {}, said, T0 + arrival)
        batch = wire.Batch(zone_of.get(probe, default_zone), probe, 0, T0 + arrival, (sample,))
        order += 1
        scenario.arrivals.append((arrival, order, batch))
    for (arrival, probe, kind), items in sorted(rows.items(), key=lambda kv: (kv[0][0], kv[0][2] != "events")):
        seqs[probe] = seqs.get(probe, 0) + 1
        zone = zone_of.get(probe, default_zone)
        if kind == "events":
            events = tuple(e for e in items if isinstance(e, wire.Event))
            stored = tuple(wire.Sample("event", {**e.tags, "event": e.name}, {**e.fields, "occurred": True},
                                       e.time_ns) for e in events)
            batch = wire.Batch(zone, probe, seqs[probe], T0 + arrival, stored, events)
        else:
            batch = wire.Batch(zone, probe, seqs[probe], T0 + arrival,
                               tuple(s for s in items if isinstance(s, wire.Sample)))
        order += 1
        scenario.arrivals.append((arrival, order, batch))
    scenario.arrivals.sort(key=lambda a: (a[0], a[1]))


@dataclass
class Outcome:
    """What a run produced at every step (for tests that look further than the file)."""

    evaluations: dict[int, Evaluation] = field(default_factory=dict)
    notifications: list[tuple[int, Notification]] = field(default_factory=list)


def run(scenario: Scenario, state_dir: Path | None = None) -> Outcome:
    """Drive the scenario step by step and check every expectation; return what happened.

    ``restarts`` (times) restart the collector there: the facts start empty and the tracker reloads its
    store (in ``state_dir``, which a scenario with restarts needs).
    """
    if scenario.restarts and state_dir is None:
        raise ScenarioError(f"{scenario.name}: a scenario with restarts needs a state directory")
    store = str(state_dir / f"{scenario.name}.db") if state_dir is not None else None
    settings = scenario.config.settings
    facts = Facts(settings, started_ns=T0)
    tracker = AlertTracker(scenario.config, store, started_ns=T0)
    outcome = Outcome()
    windows = [Declared(key, window) for key, window in scenario.inventory.maintenance.items()]
    rules, maintenance = Rules(scenario.inventory), Maintenance(scenario.inventory)   # as the engine holds them
    expect = sorted(scenario.expect, key=lambda s: s.at_ns)
    last = max(step.at_ns for step in expect)
    pending = list(scenario.arrivals)
    counts = sorted(scenario.gaps)
    bridges = sorted(scenario.bridges)
    checked_until = -1
    t = 0
    try:
        while t <= last:
            if t in scenario.restarts:
                tracker.close()
                facts = Facts(settings, started_ns=T0 + t)
                tracker = AlertTracker(scenario.config, store, started_ns=T0 + t)
            while pending and pending[0][0] <= t:
                arrival, _, batch = pending.pop(0)
                facts.observe(batch, T0 + arrival)
            while bridges and bridges[0][0] <= t:   # the urgent session: ahead of the data taken with it
                arrival, zone, up = bridges.pop(0)
                facts.observe_bridge(parks.state_topic(zone), b"1" if up else b"0", T0 + arrival)
            while counts and counts[0][0] <= t:   # the preparer counts after the intake took the batches
                arrival, probe, gaps = counts.pop(0)
                facts.observe_gaps(probe, gaps, T0 + arrival)
            evaluation = rules.evaluate(facts, settings, T0 + t)
            evaluation = maintenance.apply(evaluation, windows, tracker.alerts(), T0 + t)
            outcome.evaluations[t] = evaluation
            for note in tracker.update(evaluation, T0 + t):
                outcome.notifications.append((t, note))
            for step in (s for s in expect if s.at_ns == t):
                notes = [n for at, n in outcome.notifications if checked_until < at <= t]
                _check(scenario, step, tracker.alerts(), notes, evaluation)
                checked_until = t
            t += scenario.interval_ns
    finally:
        tracker.close()
    for step in expect:
        if step.at_ns % scenario.interval_ns:
            raise ScenarioError(f"{scenario.name}: expect at {step.at_ns / S:g}s is not on a step of the interval")
    return outcome


def _check(scenario: Scenario, step: Step, alerts: list[TrackedAlert], notes: list[Notification],
           evaluation: Evaluation) -> None:
    when = f"{scenario.name} at {_clock(step.at_ns)}"
    if step.alerts is not None:
        actual = [_alert_view(a) for a in alerts]
        if not _matches_all(step.alerts, actual):
            raise ScenarioError(f"{when}: alerts differ\n  expected: {_show(step.alerts)}\n  actual:   {_show(actual)}")
    actual_notes = [_note_view(n) for n in notes]
    expected_notes = [{"status": "firing", **e} for e in step.notified]
    if not _matches_all(expected_notes, actual_notes):
        raise ScenarioError(f"{when}: notifications since the previous check differ\n  expected: "
                            f"{_show(expected_notes)}\n  actual:   {_show(actual_notes)}")
    for sample in step.samples:
        if not any(_sample_matches(sample, s) for s in evaluation.samples):
            raise ScenarioError(f"{when}: no derived sample like {sample}\n  samples: {evaluation.samples}")
    for matcher in step.unknown:
        if not any(all(m.get(k) == v for k, v in matcher.items()) for m in evaluation.unknown):
            raise ScenarioError(f"{when}: nothing unknown like {matcher}\n  unknown: {evaluation.unknown}")


def _clock(ns: int) -> str:
    minutes, seconds = divmod(ns // S, 60)
    return f"{minutes}m{seconds:02d}s"


def _alert_view(alert: TrackedAlert) -> dict[str, Any]:
    view = {**alert.labels, "state": alert.state, "muted": alert.muted, "flapping": alert.flapping}
    if window_of(alert.muted_by) is not None:   # stored with the tag ``maintenance``: the window's id
        view["maintenance"] = window_of(alert.muted_by)
    return view


def _note_view(note: Notification) -> dict[str, Any]:
    view: dict[str, Any] = {**note.labels, "status": note.status, "flapping": note.flapping}
    if note.ends_ns:
        view["ends"] = note.ends_ns - T0
    return view


def _entry_matches(expected: Mapping[str, Any], actual: Mapping[str, Any]) -> bool:
    """Return True if ``actual`` has every listed label and value; muted and flapping must be listed if true."""
    for key, want in expected.items():
        have = actual.get(key)
        if want is None:  # ``carrier: null``: the label must be absent
            if have is not None:
                return False
        elif isinstance(want, bool) or isinstance(have, bool):
            if have is not want:
                return False
        elif have is None or str(have) != str(want):
            return False
    return not any(actual.get(key) is True and key not in expected for key in ("muted", "flapping"))


def _matches_all(expected: list[dict[str, Any]], actual: list[dict[str, Any]]) -> bool:
    """Return True if every expected entry matches its own actual entry and none is left over."""
    if len(expected) != len(actual):
        return False

    def assign(i: int, free: list[int]) -> bool:
        if i == len(expected):
            return True
        return any(_entry_matches(expected[i], actual[j]) and assign(i + 1, [k for k in free if k != j])
                   for j in free)

    return assign(0, list(range(len(actual))))


def _sample_matches(expected: Mapping[str, Any], sample: tuple[str, dict[str, str], dict[str, Any]]) -> bool:
    measurement, tags, fields = sample
    if measurement not in expected:
        return False
    want_tags = expected[measurement] or {}
    if any(tags.get(k) != str(v) for k, v in want_tags.items()):
        return False
    return all(k in fields and float(fields[k]) == float(v) for k, v in expected.items() if k != measurement)


def _show(entries: list[dict[str, Any]]) -> str:
    if not entries:
        return "(none)"
    keep = ("alertname", "status", "state", "muted", "flapping")
    lines = []
    for e in entries:
        head = " ".join(f"{k}={e[k]}" for k in keep if k in e and e[k] not in (False, None))
        rest = " ".join(f"{k}={v}" for k, v in e.items() if k not in keep and k != "severity")
        lines.append(f"{head} {rest}".strip())
    return "\n            ".join(sorted(lines))
