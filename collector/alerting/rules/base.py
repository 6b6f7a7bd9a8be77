"""The rules' common ground: the inventory index, the helpers, and ``RunBase`` (one evaluation's output: findings,
unknown matchers, evidence of ends, derived samples)."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Final, Literal

from collector.alerting import ifnames
from collector.alerting.config import RuleSettings
from collector.alerting.facts import Facts, Interface, PowerFacts
from collector.alerting.model import LABELS, SEVERITY, Finding
from collector.inventory import CoverageRule, Inventory

S: Final = 1_000_000_000
LEVELS: Final = ("good", "fair", "weak", "hole", "no_service")   # coverage ``level`` 0..4
REDUNDANCY_STATES: Final = ("ok", "degraded", "outage")          # redundancy ``state`` 0..2

State = Literal["up", "down", "unknown"]
Sample = tuple[str, dict[str, str], dict[str, int | float | bool]]


@dataclass(slots=True)
class _Index:
    """What the rules look up in an inventory, computed once per inventory."""

    keys: dict[str, tuple[str, ...]]              # device -> the names it may be reported under (id, address)
    canonical: dict[str, str]                     # address or id -> device id
    link_at: dict[tuple[str, str], str]           # (device, ifname) -> link id
    link_port: dict[tuple[str, str], str]         # (device, ifnames.canonical(ifname)) -> link id: "Gi1/0/1"
                                                  # and "GigabitEthernet1/0/1" are one port (optical ports)
    plmn: dict[str, str]                          # carrier key or PLMN -> PLMN
    carrier_name: dict[str, str]                  # PLMN -> carrier name
    areas: dict[tuple[str, str], list[str]]       # (zone, area) -> probes standing there
    modem_plmn: dict[tuple[str, str], str]        # (probe, modem name) -> PLMN
    zone_probes: dict[str, list[str]]             # zone -> its probes (ParkUplinkDown names them)


def _index(inventory: Inventory) -> _Index:
    """Return the index of ``inventory`` (``rules.Rules`` holds it for the inventory's lifetime)."""
    plmn = {key: c.plmn for key, c in inventory.carriers.items()}
    plmn.update({c.plmn: c.plmn for c in inventory.carriers.values()})
    keys: dict[str, tuple[str, ...]] = {}
    canonical: dict[str, str] = {}
    for name, dev in inventory.devices.items():
        keys[name] = (name, dev.address) if dev.address and dev.address != name else (name,)
        if dev.address:
            canonical.setdefault(dev.address, name)
    canonical.update({name: name for name in inventory.devices})
    areas: dict[tuple[str, str], list[str]] = {}
    modem_plmn: dict[tuple[str, str], str] = {}
    for name, probe in inventory.probes.items():
        if probe.area is not None:
            areas.setdefault((probe.zone, probe.area), []).append(name)
        for modem in probe.modems:
            if modem.carrier in plmn:
                modem_plmn[(name, modem.name)] = plmn[modem.carrier]
            elif "-" in modem.carrier:
                modem_plmn[(name, modem.name)] = modem.carrier
    return _Index(
        keys=keys,
        canonical=canonical,
        link_at={(link.device, link.ifname): key for key, link in inventory.links.items()},
        link_port={(link.device, ifnames.canonical(link.ifname)): key for key, link in inventory.links.items()},
        plmn=plmn,
        carrier_name={c.plmn: c.name for c in inventory.carriers.values()},
        areas=areas,
        modem_plmn=modem_plmn,
        zone_probes={z: [p for p, probe in inventory.probes.items() if probe.zone == z] for z in inventory.zones},
    )


# ------------------------------------------------------------------------------------------------ helpers


def _when(ns: int) -> str:
    """Return ``ns`` as a UTC time an operator reads (``2025-11-28 07:02:10 UTC``)."""
    return datetime.fromtimestamp(ns / S, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _span(ns: int) -> str:
    """Return a duration as ``1h02m``, ``3m20s`` or ``45s``."""
    seconds = max(0, round(ns / S))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _fmt(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


@dataclass(slots=True)
class _Device:
    """One device as the rules see it now."""

    name: str
    zone: str
    labels: dict[str, str]                # zone, area, site, device (no alertname, no carrier)
    carriers: list[str]                   # owner PLMNs
    what: str                             # "BTS bts-01 at site bts-dv-01"
    state: State | Literal["unpolled"] = "unknown"
    down_since: int = 0
    down_polls: int = 0
    down_by: list[str] = field(default_factory=list)     # probes that see it down
    up_by: list[str] = field(default_factory=list)       # probes that see it answer
    blind: list[str] = field(default_factory=list)       # observing probes that are down
    unsure: bool = False                  # up, but no observer's latest poll was answered (a first miss or
                                          # two: not yet down, and not evidence that it is back either)
    up_since: int = 0                     # up: the earliest start of an observer's answered run
    recovered: int = 0                    # up: when it last answered again after being down (0: never seen)
    evidence: int = 0                     # down: the oldest of the down observers' newest polls
    muted_by: str | None = None           # for its DeviceDown (a down ancestor)
    muted_child: str | None = None        # for its other alerts (a down ancestor, else its own DeviceDown)


class RunBase:
    """One evaluation: the steps (in the subclasses, one module per family of alerts) append findings, unknown
    matchers, evidence of ends and samples."""

    def __init__(self, facts: Facts, inventory: Inventory, index: _Index, settings: RuleSettings,
                 now_ns: int) -> None:
        self.facts, self.inv, self.ix, self.settings, self.now = facts, inventory, index, settings, now_ns
        self.stale_cut = now_ns - int(settings.stale_after * S)
        self.findings: list[Finding] = []
        self.unknown: list[Mapping[str, str]] = []
        self.cleared: list[tuple[Mapping[str, str], int]] = []
        self.samples: list[Sample] = []
        self.probe_state: dict[str, State] = {}
        self.device: dict[str, _Device] = {}
        self.link_state: dict[str, tuple[State, Interface | None]] = {}   # link -> its state and interface

    def emit(self, alertname: str, labels: Mapping[str, str], carriers: Sequence[str | None], summary: str,
             description: str, muted_by: str | None = None) -> None:
        """Add one finding per carrier (one without ``carrier`` when there is none)."""
        for carrier in carriers or [None]:
            full = {"alertname": alertname, "severity": SEVERITY[alertname], **labels}
            if carrier is not None:
                full["carrier"] = carrier
            ordered = {k: full[k] for k in LABELS if full.get(k)}
            self.findings.append(Finding(ordered, {"summary": summary, "description": description}, muted_by))

    def dont_know(self, **matcher: str) -> None:
        """Add an unknown matcher: alerts carrying these labels can be neither confirmed nor cleared now."""
        self.unknown.append(matcher)

    def clear(self, since_ns: int, alertname: str, **labels: str) -> None:
        """Add a clear matcher: ``alertname`` alerts carrying these labels are clear, by the evidence, since
        ``since_ns`` (0 or less: not known, now)."""
        self.cleared.append(({"alertname": alertname, **labels}, min(since_ns, self.now) if since_ns > 0 else self.now))

    def owners(self, carriers: Iterable[str]) -> list[str]:
        """Return the PLMNs of carriers given by key or PLMN, in order, without repeats."""
        out: list[str] = []
        for name in carriers:
            plmn = self.ix.plmn.get(name)
            if plmn is not None and plmn not in out:
                out.append(plmn)
        return out

    def names(self, plmns: Iterable[str | None]) -> str:
        return ", ".join(self.ix.carrier_name.get(p, p) for p in plmns if p) or "no owner carrier"


def _area_context(median: float | None, readings: int, seen: str, rule: CoverageRule) -> str:
    """Return the sentence that puts one probe's coverage beside its area's."""
    how = "its worst probe" if rule.area == "worst" else f"at least {rule.share_pct:g} % of its probes"
    if median is None:
        return f"The area is judged by {how}."
    return f"The area's median is {_fmt(median)} dBm over {readings} readings from {seen}; it is judged by {how}."


_KIND: Final = {"bts": "BTS", "switch": "Switch", "router": "Router", "olt": "OLT", "ups": "UPS", "other": "Device"}


def _cause_device(muted_by: str) -> str | None:
    """Return the device a ``DeviceDown <device>`` mute names, or None for another kind of mute."""
    return muted_by.removeprefix("DeviceDown ") if muted_by.startswith("DeviceDown ") else None


def _merge_power(a: PowerFacts, b: PowerFacts) -> PowerFacts:
    """Return the newest of each value of two reports of one UPS (by id and by address)."""
    out = PowerFacts(a.zone, a.site or b.site)
    for x in (a, b):
        if x.on_battery_ns > out.on_battery_ns:
            out.on_battery, out.on_battery_ns = x.on_battery, x.on_battery_ns
        if x.battery_low_ns > out.battery_low_ns:
            out.battery_low, out.battery_low_ns = x.battery_low, x.battery_low_ns
        if x.battery_minutes_ns > out.battery_minutes_ns:
            out.battery_minutes, out.battery_minutes_ns = x.battery_minutes, x.battery_minutes_ns
        if x.on_bypass_ns > out.on_bypass_ns:
            out.on_bypass, out.on_bypass_ns, out.inverter_mode = x.on_bypass, x.on_bypass_ns, x.inverter_mode
        if x.rectifiers_failed_ns > out.rectifiers_failed_ns:
            out.rectifiers_failed, out.rectifiers_failed_ns = x.rectifiers_failed, x.rectifiers_failed_ns
    return out
