"""Each probe's desired configuration, rendered from the inventory, and what the centre can check of it.

A probe is managed from the centre once its inventory entry has ``config:`` (``{}`` too). Its desired
configuration is an agent configuration (YAML text, ``zonewatch.wire.DesiredConfig``) made of::

    probe           generated: its id, zone and area from ``probes.<id>``
    the rest        ``probe_defaults`` with ``probes.<id>.config`` over it: mappings merged key by key, the
                    override winning; ``sources`` merged by name (a source of the probe's with the name of a
                    default one is merged into it, a new name is added)
    an snmp source that names ``device: <id>`` (instead of ``name``) gets from the inventory: its name (the device
                    id, which the collector's scope check knows it by), ``host`` (the device's ``address``), ``site``
                    and ``links`` (the inventory links of that device, ifname -> link id)
    a cellular source named as one of the probe's ``modems`` gets ``carrier``: that modem's carrier's PLMN

What may be said: ``mqtt``, ``self_interval`` and ``sources``. ``spool``, ``metrics``, ``remote_config``, ``enrol``
and ``update`` are the probe's own (its local file); ``probe`` is generated; ``software`` (the release to run) is
added by the collector from ``fleet update`` (``collector.fleet.software``), never written in the inventory.
The full check is the probe's (its strict loader, with the line of the rendered text); the centre checks what it
can know, and names the inventory key::

    structure       the keys above; ``sources`` a list of mappings with a ``type`` and a ``name`` (or ``device``)
    secrets         a key of ``zonewatch.wire.SECRET_KEYS`` holds ``{env: NAME}`` or ``{file: NAME}`` (NAME inside the
                    probe's secret folder: no leading ``/``, no ``..``), never the secret: a plain value would
                    travel to the probe and sit in the broker's retained store
    scope           an snmp source is an inventory device this probe watches (``probe``/``probes``, or none given
                    and the probe in the device's zone); a cellular source is one of the probe's modems, or names
                    a carrier it has a modem on; otherwise the collector would refuse what it sends
    size            the message is at most ``zonewatch.wire.MAX_CONFIG_BYTES``

``render_all(inventory)`` is pure and deterministic: the same inventory gives the same texts and hashes.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from collector.inventory import Inventory
from zonewatch import wire
from zonewatch.strict import RefPath

__all__ = ["Rendered", "Problem", "RenderError", "MANAGED_KEYS", "LOCAL_ONLY", "render_all", "render"]

MANAGED_KEYS = ("mqtt", "self_interval", "sources")   # what the centre may set of a probe's agent configuration
LOCAL_ONLY = ("spool", "metrics", "remote_config", "enrol", "update", "profile_dirs")   # the probe's own file


@dataclass(frozen=True, slots=True)
class Rendered:
    """One probe's desired configuration: the YAML text and its hash."""

    probe: str
    zone: str
    yaml: str
    hash: str


@dataclass(frozen=True, slots=True)
class Problem:
    """What is wrong with a probe's desired configuration, at an inventory key."""

    path: RefPath
    message: str


class RenderError(Exception):
    """A probe's desired configuration cannot be rendered: ``path`` is the inventory key, ``message`` why."""

    def __init__(self, path: RefPath, message: str) -> None:
        super().__init__(message)
        self.path, self.message = path, message


def render_all(inventory: Inventory) -> tuple[dict[str, Rendered], list[Problem]]:
    """Return the desired configuration of every managed probe (by id), and the problems of those that have one."""
    out: dict[str, Rendered] = {}
    problems: list[Problem] = []
    for probe_id in sorted(inventory.probes):
        try:
            rendered = render(inventory, probe_id)
        except RenderError as exc:
            problems.append(Problem(exc.path, exc.message))
            continue
        if rendered is not None:
            out[probe_id] = rendered
    return out, problems


def render(inventory: Inventory, probe_id: str) -> Rendered | None:
    """Return the desired configuration of ``probe_id``, None if it is not managed from the centre; raise
    RenderError naming the inventory key of what is wrong."""
    probe = inventory.probes[probe_id]
    if probe.config is None:
        return None
    here: RefPath = ("probes", probe_id, "config")
    fragments: list[tuple[RefPath, Mapping[str, Any]]] = []
    if inventory.probe_defaults is not None:
        fragments.append((("probe_defaults",), inventory.probe_defaults))
    fragments.append((here, probe.config))
    for where, fragment in fragments:
        _check_fragment(where, fragment)
    merged, origins = _merge(fragments)
    for i, source in enumerate(merged.get("sources", [])):
        if "type" not in source:   # a probe's source merged into a default one takes the default's
            raise RenderError(origins[i], "every source needs a type (cellular, snmp, reach, traps, telemetry)")
        if "device" in source and source["type"] != "snmp":
            raise RenderError((*origins[i], "device"), "only an snmp source takes its device from the inventory")
    sources = [_expand(inventory, probe_id, source, origins[i]) for i, source in enumerate(merged.get("sources", []))]
    names: dict[str, int] = {}
    for i, source in enumerate(sources):
        if source["name"] in names:
            raise RenderError(origins[i], f"source name {source['name']!r} is already used by another source of probe "
                                       f"{probe_id}")
        names[source["name"]] = i
    identity: dict[str, Any] = {"id": probe_id, "zone": probe.zone}
    if probe.area is not None:
        identity["area"] = probe.area
    doc: dict[str, Any] = {"probe": identity}
    for key in MANAGED_KEYS:
        if key == "sources" and "sources" in merged:
            doc["sources"] = sources
        elif key in merged:
            doc[key] = merged[key]
    text = (f"# Desired configuration of probe {probe_id} (zone {probe.zone}), rendered from the inventory by the "
            "collector.\n# Secrets are references, read on the probe.\n"
            + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, default_flow_style=False, width=120))
    rendered = Rendered(probe_id, probe.zone, text, wire.config_hash(text))
    try:
        wire.encode_config(wire.DesiredConfig(probe.zone, probe_id, 1, rendered.hash, 0, text))
    except wire.WireError as exc:
        raise RenderError(here, exc.detail) from None
    return rendered


# ---------------------------------------------------------------------------------------------- checks


def _check_fragment(where: RefPath, fragment: Mapping[str, Any]) -> None:
    """Check one agent configuration fragment of the inventory: its keys, sources and secrets."""
    for key, value in fragment.items():
        if key == "probe":
            raise RenderError((*where, key), "probe is generated from the inventory (probes.<id>: id, zone, area)")
        if key == "software":
            raise RenderError((*where, key), "the release a probe runs is set with `zonewatch-collector fleet update "
                                             "--version V` (in waves, audited), not in the inventory")
        if key in LOCAL_ONLY:
            raise RenderError((*where, key), f"{key} is set in the probe's local configuration file only")
        if key not in MANAGED_KEYS:
            raise RenderError((*where, key), f"unknown key {key!r}: the centre may set {', '.join(MANAGED_KEYS)}")
        if key == "mqtt" and not isinstance(value, dict):
            raise RenderError((*where, key), "expected a mapping (the agent's mqtt section)")
    sources = fragment.get("sources", [])
    if not isinstance(sources, list):
        raise RenderError((*where, "sources"), "expected a list of sources")
    for i, source in enumerate(sources):
        at: RefPath = (*where, "sources", i)
        if not isinstance(source, dict):
            raise RenderError(at, "expected a mapping (one source)")
        if "type" in source and not isinstance(source["type"], str):
            raise RenderError((*at, "type"), "expected a source type (cellular, snmp, reach, traps, telemetry)")
        if not isinstance(source.get("name", source.get("device")), str):
            raise RenderError(at, "every source needs a name (or, for snmp, the inventory device it polls)")
    for path, message in _plain_secrets(where, fragment):
        raise RenderError(path, message)


def _plain_secrets(path: RefPath, value: Any) -> Iterator[tuple[RefPath, str]]:
    """Yield every secret in ``value`` that is not a reference the probe resolves."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in wire.SECRET_KEYS:
                items = item if key == "communities" and isinstance(item, list) else [item]
                for i, one in enumerate(items):
                    at = (*path, key, i) if items is item else (*path, key)
                    problem = _not_a_reference(one)
                    if problem:
                        yield at, problem
            else:
                yield from _plain_secrets((*path, key), item)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _plain_secrets((*path, i), item)


def _not_a_reference(value: Any) -> str:
    """Return what is wrong with a secret's value in the inventory, or "" if it is a reference."""
    if isinstance(value, dict) and len(value) == 1:
        ((kind, ref),) = value.items()
        if kind == "env" and isinstance(ref, str) and ref:
            return ""
        if kind == "file" and isinstance(ref, str) and ref:
            if ref.startswith("/") or ".." in ref.split("/"):
                return (f"{{file: {ref}}}: name a file inside the probe's secret folder (remote_config.secret_dir), "
                        "with no leading '/' and no '..'")
            return ""
    return ("a secret may not be written in the inventory: give {env: NAME} or {file: NAME}, read on the probe (the "
            "inventory, the collector's files and the broker's retained messages would hold it otherwise)")


# ---------------------------------------------------------------------------------------------- merging


def _merge(fragments: list[tuple[RefPath, Mapping[str, Any]]]) -> tuple[dict[str, Any], list[RefPath]]:
    """Return the fragments merged (later ones win) and, for each merged source, where it was said last."""
    merged: dict[str, Any] = {}
    sources: list[dict[str, Any]] = []
    origins: list[RefPath] = []
    for where, fragment in fragments:
        for key, value in fragment.items():
            if key == "sources":
                continue
            old = merged.get(key)
            merged[key] = _deep(old, value) if isinstance(old, dict) and isinstance(value, dict) \
                else copy.deepcopy(value)
        for i, source in enumerate(fragment.get("sources", [])):
            name = source.get("name", source.get("device"))
            index = next((j for j, s in enumerate(sources) if s.get("name", s.get("device")) == name), None)
            if index is None:
                sources.append(copy.deepcopy(source))
                origins.append((*where, "sources", i))
            else:
                sources[index] = _deep(sources[index], source)
                origins[index] = (*where, "sources", i)
    if sources or any("sources" in f for _, f in fragments):
        merged["sources"] = sources
    return merged, origins


def _deep(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        old = out.get(key)
        out[key] = _deep(old, value) if isinstance(old, dict) and isinstance(value, dict) else copy.deepcopy(value)
    return out


# ---------------------------------------------------------------------------------------------- from the inventory


def _expand(inventory: Inventory, probe_id: str, source: dict[str, Any], where: RefPath) -> dict[str, Any]:
    """Fill in what the inventory knows of one source, and check the probe may report what it will read."""
    kind = source["type"]
    if kind == "snmp":
        return _snmp(inventory, probe_id, source, where)
    if kind == "cellular":
        return _cellular(inventory, probe_id, source, where)
    return source


def _given(source: dict[str, Any], key: str, value: Any, where: RefPath, what: str) -> None:
    """Set ``key`` to the inventory's ``value``, refusing a different value given by hand."""
    if key in source and source[key] != value:
        raise RenderError((*where, key), f"{key} {source[key]!r} differs from the inventory's {value!r} ({what}): "
                                      "leave it out")
    source[key] = value


def _snmp(inventory: Inventory, probe_id: str, source: dict[str, Any], where: RefPath) -> dict[str, Any]:
    out = dict(source)
    device_id = out.pop("device", None)
    name = device_id if device_id is not None else out["name"]
    device = inventory.devices.get(name)
    if device is None:
        at: RefPath = (*where, "device") if device_id is not None else (*where, "name")
        raise RenderError(at, f"device {name!r} is not in the inventory's devices: the collector would refuse what "
                           f"probe {probe_id} reports about it (add it under devices, with probe: {probe_id})")
    probe = inventory.probes[probe_id]
    site = inventory.sites.get(device.site)
    watchers = device.watchers
    if (watchers and probe_id not in watchers) or (not watchers and (site is None or site.zone != probe.zone)):
        said = f"its watchers are {', '.join(watchers)}" if watchers else "it names no watcher and stands elsewhere"
        raise RenderError((*where, "device" if device_id is not None else "name"),
                       f"probe {probe_id} does not watch device {name!r} ({said}; devices.{name}.probe or probes)")
    if device_id is not None:
        _given(out, "name", name, where, "the device id")
        if "host" not in out:
            if device.address is None:
                raise RenderError((*where, "device"), f"devices.{name} has no address: give the source a host, or the "
                                                   "device an address")
            out["host"] = device.address
        _given(out, "site", device.site, where, f"devices.{name}.site")
        links = {link.ifname: key for key, link in inventory.links.items() if link.device == name}
        if links:
            given = out.get("links", {})
            if not isinstance(given, dict):
                raise RenderError((*where, "links"), "expected a mapping of ifName to link id")
            for ifname, link in links.items():
                if ifname in given and given[ifname] != link:
                    raise RenderError((*where, "links", ifname), f"the inventory's link on {ifname} is {link!r}")
            out["links"] = {**given, **links}
    return {"type": out["type"], "name": out["name"], **{k: v for k, v in out.items() if k not in ("type", "name")}}


def _cellular(inventory: Inventory, probe_id: str, source: dict[str, Any], where: RefPath) -> dict[str, Any]:
    out = dict(source)
    probe = inventory.probes[probe_id]
    modem = next((m for m in probe.modems if m.name == out["name"]), None)
    if modem is not None:
        _given(out, "carrier", _plmn(inventory, modem.carrier), where,
               f"the carrier of probe {probe_id}'s modem {modem.name}")
        return out
    if out.get("carrier") not in {_plmn(inventory, m.carrier) for m in probe.modems}:
        modems = ", ".join(m.name for m in probe.modems) or "none"
        raise RenderError((*where, "name"), f"cellular source {out['name']!r} is not one of probe {probe_id}'s modems "
                                         f"(probes.{probe_id}.modems: {modems}): name it as one, so that the "
                                         "collector takes its readings")
    return out


def _plmn(inventory: Inventory, carrier: str) -> str:
    """Return the PLMN of a carrier named by key or PLMN."""
    found = inventory.carrier_of(carrier)
    return found.plmn if found is not None else carrier
