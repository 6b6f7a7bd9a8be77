"""Maintenance windows in the alert pipeline: mute what they cover, page what outlives them, tell co-owners.

``Maintenance(inventory).apply(evaluation, windows, tracked, now_ns)`` is pure; the engine calls it between the
rules and the tracker, with the tracker's alerts as they were before this evaluation, and holds the
``Maintenance``, which looks the inventory's relations up once (``apply(evaluation, windows, inventory, tracked,
now_ns)`` looks them up at each call). It changes the evaluation so:

- **Muted, never dropped**: a finding in the scope of a window open at ``now`` gets ``muted_by = "Maintenance
  <id>"`` (in place of a dependency's mute: the window is the reason an operator wants to read). The tracker
  treats it as any muted alert (``collector.alerting.tracker``): still tracked and stored (the engine tags
  its ``alert`` points ``maintenance=<id>``), no firing notification while muted, notified as itself if it is
  still firing when the window closes, and resolved for every receiver that heard it fire.
- **MaintenanceOverrun**: a firing alert whose condition held at the end of a window that covers it (it was
  active before the window's last span ended) and holds now pages ``MaintenanceOverrun`` for that window,
  once per owner carrier (``maintenance`` label = the window id), listing the alerts, until they all clear.
- **MaintenanceActive**: while a window on a site, device, link or redundancy group is open, each carrier
  with a stake in that asset other than the one that declared it (every owner when the NOC declared it) gets
  a ``MaintenanceActive`` alert (severity info) through its usual receivers: it fires when the window opens
  and resolves when it closes. A carrier learns that alerts on a shared BTS are muted, and until when.

What a window covers (``covers``), by the alert's labels and the inventory's relations:

    carrier   every alert with that carrier label
    area      alerts of the area (and zone); only that carrier's when the scope names one
    site      alerts labelled with the site (its devices and their links, groups placed there) and
              RedundancyLost of a group with a member at the site
    device    alerts on the device or a device below it (inventory ``parent``), on their links, and
              RedundancyLost of a group with one of them (or their links) as a member
    link      alerts on the link; RedundancyLost of a group it is a member of
    group     alerts of the group

Works on one route are expected to take redundancy away, not the service: a window on a member mutes its
group's RedundancyLost, never its ServiceOutage (only a window on the group, its site, area or carrier does).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Final

from collector.alerting.model import SEVERITY, Evaluation, Finding, fingerprint
from collector.alerting.tracker import TrackedAlert
from collector.inventory import Inventory
from collector.maintenance import (
    Declared,
    WindowScope,
    co_owners,
    describe_scope,
    last_end,
    open_span,
    scope_problem,
)

__all__ = ["Maintenance", "apply", "covers", "window_of", "MUTE_PREFIX", "OWN_ALERTS"]

MUTE_PREFIX: Final = "Maintenance "
OWN_ALERTS: Final = ("MaintenanceOverrun", "MaintenanceActive")   # never muted by a window
_ALERT_LABELS: Final = ("alertname", "severity", "zone", "area", "carrier", "site", "device", "link", "group",
                        "maintenance")


def window_of(muted_by: str | None) -> str | None:
    """Return the id of the window a ``muted_by`` names, or None for another mute (or none)."""
    if muted_by is None or not muted_by.startswith(MUTE_PREFIX):
        return None
    return muted_by.removeprefix(MUTE_PREFIX)


@dataclass(frozen=True)
class _Relations:
    """What ``covers`` looks up in an inventory."""

    plmn: dict[str, str]                       # carrier key or PLMN -> PLMN
    below: dict[str, frozenset[str]]           # device -> itself and every device below it
    links_of: dict[str, frozenset[str]]        # device -> its links
    members: dict[str, frozenset[str]]         # group -> member keys (link:x, device:y)
    site_members: dict[str, frozenset[str]]    # site -> member keys of devices and links there


def _relations(inventory: Inventory) -> _Relations:
    """Return what ``covers`` looks up in ``inventory`` (``Maintenance`` holds it for the inventory's lifetime)."""
    plmn = {key: c.plmn for key, c in inventory.carriers.items()}
    plmn.update({c.plmn: c.plmn for c in inventory.carriers.values()})
    children: dict[str, list[str]] = {}
    for name, dev in inventory.devices.items():
        if dev.parent is not None:
            children.setdefault(dev.parent, []).append(name)
    below: dict[str, frozenset[str]] = {}
    for name in inventory.devices:
        seen, todo = {name}, [name]
        while todo:
            for child in children.get(todo.pop(), []):
                if child not in seen:
                    seen.add(child)
                    todo.append(child)
        below[name] = frozenset(seen)
    links_of: dict[str, set[str]] = {}
    site_members: dict[str, set[str]] = {}
    for name, link in inventory.links.items():
        links_of.setdefault(link.device, set()).add(name)
        at = inventory.devices.get(link.device)
        if at is not None:
            site_members.setdefault(at.site, set()).add(f"link:{name}")
    for name, dev in inventory.devices.items():
        site_members.setdefault(dev.site, set()).add(f"device:{name}")
    return _Relations(
        plmn=plmn, below=below, links_of={k: frozenset(v) for k, v in links_of.items()},
        members={g: frozenset(m.key for m in group.members) for g, group in inventory.redundancy_groups.items()},
        site_members={k: frozenset(v) for k, v in site_members.items()})


def _when(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _place(scope: WindowScope, inventory: Inventory) -> dict[str, str]:
    """Return the zone, area and asset labels of a window on an asset."""
    site_name = None
    out: dict[str, str] = {}
    if scope.site is not None:
        site_name, out["site"] = scope.site, scope.site
    elif scope.device is not None:
        site_name, out["device"] = inventory.devices[scope.device].site, scope.device
    elif scope.link is not None:
        device = inventory.devices.get(inventory.links[scope.link].device)
        site_name, out["link"] = (device.site if device is not None else None), scope.link
    elif scope.group is not None:
        group = inventory.redundancy_groups[scope.group]
        out.update(group=scope.group, zone=group.zone)
        site_name = group.site
    site = inventory.sites.get(site_name) if site_name is not None else None
    if site is not None:
        out.setdefault("zone", site.zone)
        if site.area:
            out["area"] = site.area
        if scope.device is not None or scope.link is not None:
            out["site"] = site_name or ""
    return out


def _labels(alertname: str, **labels: str | None) -> dict[str, str]:
    full = {"alertname": alertname, "severity": SEVERITY[alertname], **{k: v for k, v in labels.items() if v}}
    return {k: full[k] for k in _ALERT_LABELS if k in full}


def _about(declared: Declared) -> str:
    w = declared.window
    parts = [f"maintenance {declared.id} on {describe_scope(w.scope)}, {w.when()}"]
    if w.ticket:
        parts.append(f"ticket {w.ticket}")
    if w.by:
        parts.append(f"declared by {w.by}")
    if w.as_carrier:
        parts.append(f"for carrier {w.as_carrier}")
    return "; ".join(parts)


class Maintenance:
    """The windows' effect on alerts over one inventory, whose relations are looked up once, here (the inventory
    is not changed after it is loaded)."""

    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory
        self._rel = _relations(inventory)

    def covers(self, scope: WindowScope, labels: Mapping[str, str]) -> bool:
        """Return True when an alert with ``labels`` falls in ``scope`` (see the module docstring)."""
        rel = self._rel
        kind = scope.kind
        if kind == "carrier":
            return labels.get("carrier") == rel.plmn.get(scope.target, scope.target)
        if kind == "area":
            return (labels.get("area") == scope.area and (scope.zone is None or labels.get("zone") == scope.zone)
                    and (scope.carrier is None or labels.get("carrier") == rel.plmn.get(scope.carrier, scope.carrier)))
        if kind == "group":
            return labels.get("group") == scope.group
        redundancy = labels.get("alertname") == "RedundancyLost"
        group = rel.members.get(labels.get("group", ""), frozenset())
        if kind == "site":
            return labels.get("site") == scope.site or (redundancy and bool(
                group & rel.site_members.get(scope.target, frozenset())))
        if kind == "link":
            return labels.get("link") == scope.link or (redundancy and f"link:{scope.link}" in group)
        devices = rel.below.get(scope.target, frozenset({scope.target}))
        links = frozenset(link for d in devices for link in rel.links_of.get(d, ()))
        if labels.get("device") in devices or labels.get("link") in links:
            return True
        return redundancy and any(m.startswith("device:") and m[7:] in devices
                                  or m.startswith("link:") and m[5:] in links for m in group)

    def apply(self, evaluation: Evaluation, windows: Sequence[Declared], tracked: Sequence[TrackedAlert],
              now_ns: int) -> Evaluation:
        """Return ``evaluation`` with the windows applied at ``now_ns`` (see the module docstring); ``tracked`` is
        the tracker's alerts before this evaluation. Changes none of its arguments."""
        # A window on an asset this inventory lacks (another shard's zone, an asset removed since) covers nothing.
        windows = [d for d in windows if scope_problem(d.window.scope, self.inventory) is None]
        if not windows:
            return evaluation
        open_now = [(d, span) for d in windows if (span := open_span(d, now_ns)) is not None]
        by_key = {fingerprint(a.labels): a for a in tracked}
        findings: list[Finding] = []
        overruns: dict[tuple[str, str | None], list[tuple[Finding, int, TrackedAlert]]] = {}
        for finding in evaluation.findings:
            if finding.alertname in OWN_ALERTS:
                findings.append(finding)
                continue
            inside = next((d for d, _ in open_now if self.covers(d.window.scope, finding.labels)), None)
            if inside is not None:
                findings.append(Finding(finding.labels, finding.annotations, MUTE_PREFIX + inside.id))
                continue
            findings.append(finding)
            alert = by_key.get(finding.key)
            if alert is None or alert.state != "firing":
                continue
            for declared in windows:
                if not self.covers(declared.window.scope, finding.labels):
                    continue
                span = last_end(declared, alert.active_ns, now_ns)
                if span is not None:
                    key = (declared.id, finding.labels.get("carrier"))
                    overruns.setdefault(key, []).append((finding, span[1], alert))
        clear: list[tuple[Mapping[str, str], int]] = []
        found_overrun: set[str] = set()
        ids = {d.id: d for d in windows}
        for (window_id, carrier), items in sorted(overruns.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
            declared = ids[window_id]
            found_overrun.add(window_id)
            end = max(e for _, e, _ in items)
            first = items[0][0].labels
            names = ", ".join(sorted({_short(f.labels) for f, _, _ in items}))
            place = _place(declared.window.scope, self.inventory)
            labels = _labels("MaintenanceOverrun", zone=place.get("zone") or first.get("zone"),
                             area=place.get("area") or first.get("area"), carrier=carrier, site=place.get("site"),
                             device=place.get("device"), link=place.get("link"), group=place.get("group"),
                             maintenance=window_id)
            findings.append(Finding(labels, {
                "summary": f"Maintenance {window_id} ended at {_when(end)} but {len(items)} alert"
                           f"{'s' if len(items) != 1 else ''} still fire: {names}",
                "description": f"The works outlived their window ({_about(declared)}). Still firing after its end, "
                               f"and notified as themselves: {names}. This clears when they all do."}))
        for declared, (start, end) in open_now:
            for plmn in co_owners(declared.window, self.inventory):
                place = _place(declared.window.scope, self.inventory)
                findings.append(Finding(_labels("MaintenanceActive", carrier=plmn, maintenance=declared.id, **place), {
                    "summary": f"Maintenance on {describe_scope(declared.window.scope)} until {_when(end)}: its "
                               f"alerts are muted",
                    "description": f"Another party declared {_about(declared)}. It opened at {_when(start)}; alerts on "
                                   f"it are stored but muted until {_when(end)}, and those still firing then page "
                                   "(with MaintenanceOverrun)."}))
        open_ids = {d.id for d, _ in open_now}
        for window_id in ids:
            if window_id not in open_ids:
                clear.append(({"alertname": "MaintenanceActive", "maintenance": window_id}, now_ns))
            if window_id not in found_overrun:
                clear.append(({"alertname": "MaintenanceOverrun", "maintenance": window_id}, now_ns))
        return Evaluation(findings, evaluation.unknown, evaluation.samples, [*evaluation.clear, *clear])


def covers(scope: WindowScope, labels: Mapping[str, str], inventory: Inventory) -> bool:
    """Return ``Maintenance(inventory).covers(scope, labels)`` (the inventory looked up for this call only)."""
    return Maintenance(inventory).covers(scope, labels)


def apply(evaluation: Evaluation, windows: Sequence[Declared], inventory: Inventory,
          tracked: Sequence[TrackedAlert], now_ns: int) -> Evaluation:
    """Return ``Maintenance(inventory).apply(evaluation, windows, tracked, now_ns)`` (the inventory looked up for
    this call only: a caller that applies windows over and over holds a ``Maintenance``)."""
    return Maintenance(inventory).apply(evaluation, windows, tracked, now_ns)


def _short(labels: Mapping[str, str]) -> str:
    """Return an alert as ``LinkDown vt-primary``."""
    what = next((labels[k] for k in ("link", "device", "group", "site", "area", "probe") if labels.get(k)), "")
    return f"{labels['alertname']} {what}".strip()
