"""The inventory's cross-checks: every reference to something it does not define, and what else loading refuses.

``check(inventory)`` (``Inventory.check_refs``, run by ``zonewatch.strict`` once the file has parsed) returns
each problem with the key path it is at: unknown zones, areas, sites, devices, links, probes, carriers and
contacts; a secret token bound to another carrier; a member listed twice; parents in a loop; the reserved ids;
positions that do not fit their zone (``collector.positions``); maintenance windows' scopes and who declares
them (``collector.maintenance``); and, when all of that holds, the probes' desired configurations as they render
(``collector.fleet.desired``).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from collector import positions
from collector.inventory.carriers import Receiver, WebhookReceiver
from collector.maintenance import refusal, scope_problem
from collector.secrets import BoundSecret
from zonewatch import wire
from zonewatch.strict import RefPath

if TYPE_CHECKING:
    from collector.inventory import Inventory


def check(inventory: Inventory) -> list[tuple[RefPath, str]]:
    """Return every reference to something the inventory does not define, and every other problem."""
    problems: list[tuple[RefPath, str]] = []

    def need(path: RefPath, kind: str, name: str | None, known: Collection[str]) -> None:
        if name is not None and name not in known:
            listed = ", ".join(sorted(known)) or "none defined"
            problems.append((path, f"unknown {kind} {name!r} (known: {listed})"))

    plmns = {c.plmn: key for key, c in inventory.carriers.items()}
    if wire.ENROL_ZONE in inventory.zones:
        problems.append((("zones", wire.ENROL_ZONE), f"zone id {wire.ENROL_ZONE!r} is reserved: zw/v1/"
                         f"{wire.ENROL_ZONE}/... are the topics new probes ask to be enrolled on; choose another"))
    for key, carrier in inventory.carriers.items():
        for i, receiver in enumerate(carrier.notify):
            token = receiver.bearer_token if isinstance(receiver, WebhookReceiver) else None
            if isinstance(token, BoundSecret) and token.carrier not in (None, carrier.plmn):
                problems.append((("carriers", key, "notify", i, "bearer_token"),
                                 f"secret {token.name!r} is declared for carrier {token.carrier} "
                                 f"(secrets.receivers.{token.name}.carrier), not for {carrier.plmn}"))
    problems.extend(_escalation(inventory))
    for key, site in inventory.sites.items():
        need(("sites", key, "zone"), "zone", site.zone, inventory.zones)
        if site.zone in inventory.zones:
            need(("sites", key, "area"), "area", site.area, inventory.zones[site.zone].areas)
        for i, owner in enumerate(site.owners):
            need(("sites", key, "owners", i), "carrier", owner, inventory.carriers)
    for key, dev in inventory.devices.items():
        need(("devices", key, "site"), "site", dev.site, inventory.sites)
        need(("devices", key, "parent"), "device", dev.parent, inventory.devices)
        need(("devices", key, "probe"), "probe", dev.probe, inventory.probes)
        for i, watcher in enumerate(dev.probes):
            need(("devices", key, "probes", i), "probe", watcher, inventory.probes)
        for i, owner in enumerate(dev.owners):
            need(("devices", key, "owners", i), "carrier", owner, inventory.carriers)
        if dev.parent == key:
            problems.append((("devices", key, "parent"), f"device {key!r} cannot be its own parent"))
    for key, link in inventory.links.items():
        need(("links", key, "device"), "device", link.device, inventory.devices)
        for i, owner in enumerate(link.carriers):
            need(("links", key, "carriers", i), "carrier", owner, inventory.carriers)
    for key, group in inventory.redundancy_groups.items():
        need(("redundancy_groups", key, "zone"), "zone", group.zone, inventory.zones)
        for i, owner in enumerate(group.carriers):
            need(("redundancy_groups", key, "carriers", i), "carrier", owner, inventory.carriers)
        need(("redundancy_groups", key, "site"), "site", group.site, inventory.sites)
        if group.zone in inventory.zones:
            need(("redundancy_groups", key, "area"), "area", group.area, inventory.zones[group.zone].areas)
        seen: set[str] = set()
        for i, member in enumerate(group.members):
            where: RefPath = ("redundancy_groups", key, "members", i)
            need((*where, "link"), "link", member.link, inventory.links)
            need((*where, "device"), "device", member.device, inventory.devices)
            if member.path is not None:
                need((*where, "path", "probe"), "probe", member.path.probe, inventory.probes)
            if member.key in seen:
                problems.append((where, f"{member.key} is listed twice"))
            seen.add(member.key)
    problems.extend(_parent_cycles(inventory))
    problems.extend(positions.problems(inventory))
    for key, window in inventory.maintenance.items():
        problem = scope_problem(window.scope, inventory)
        if problem is not None:
            problems.append((("maintenance", key, "scope"), problem))
        elif (problem := refusal(window, inventory)) is not None:
            problems.append((("maintenance", key, "as_carrier"), problem))
    for key, probe in inventory.probes.items():
        if key == "collector":
            problems.append((("probes", key), "'collector' is reserved for the collector's own series"))
        need(("probes", key, "zone"), "zone", probe.zone, inventory.zones)
        if probe.zone in inventory.zones:
            need(("probes", key, "area"), "area", probe.area, inventory.zones[probe.zone].areas)
        for i, modem in enumerate(probe.modems):
            if modem.carrier not in inventory.carriers and modem.carrier not in plmns:
                need(("probes", key, "modems", i, "carrier"), "carrier", modem.carrier, inventory.carriers)
    if not problems:   # the probes' desired configurations, rendered from a consistent inventory
        from collector.fleet.desired import render_all

        problems.extend((p.path, p.message) for p in render_all(inventory)[1])
    return problems


def _escalation(inventory: Inventory) -> list[tuple[RefPath, str]]:
    """Return the escalation steps' unknown contacts, and tokens bound to another carrier than theirs."""
    problems: list[tuple[RefPath, str]] = []

    def bound(where: RefPath, receiver: Receiver, plmn: str | None) -> None:
        token = receiver.bearer_token if isinstance(receiver, WebhookReceiver) else None
        if isinstance(token, BoundSecret) and token.carrier not in (None, plmn):
            whose = f"carrier {plmn}" if plmn else "a contact (shared by every carrier's escalation)"
            problems.append(((*where, "bearer_token"), f"secret {token.name!r} is declared for carrier "
                             f"{token.carrier} (secrets.receivers.{token.name}.carrier), not for {whose}"))

    for name, receivers in inventory.contacts.items():
        for i, receiver in enumerate(receivers):
            bound(("contacts", name, i), receiver, None)
    for key, carrier in inventory.carriers.items():
        for i, step in enumerate(carrier.escalation):
            for j, item in enumerate(step.notify):
                where: RefPath = ("carriers", key, "escalation", i, "notify", j)
                if isinstance(item, str):
                    if item not in inventory.contacts:
                        listed = ", ".join(sorted(inventory.contacts)) or "none defined"
                        problems.append((where, f"unknown contact {item!r} (known: {listed})"))
                else:
                    bound(where, item, carrier.plmn)
    return problems


def _parent_cycles(inventory: Inventory) -> list[tuple[RefPath, str]]:
    problems: list[tuple[RefPath, str]] = []
    for start in inventory.devices:
        chain = [start]
        node = inventory.devices[start].parent
        while node is not None and node in inventory.devices and node not in chain:
            chain.append(node)
            node = inventory.devices[node].parent
        if node == start and len(chain) > 1:
            loop = " -> ".join([*chain, start])
            problems.append((("devices", start, "parent"), f"parents form a loop: {loop}"))
            break
    return problems
