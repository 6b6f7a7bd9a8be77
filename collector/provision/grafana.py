"""``render-grafana``: a Grafana organisation per carrier, its datasource through vmauth, the dashboards in it.

Grafana OSS has no per-organisation label filter; an organisation only decides which datasources its users
can pick. So each carrier's organisation gets exactly one datasource: vmauth (``render-vmauth``) with that
carrier's user, which forces the carrier's owner label on every read, proxied by Grafana's server (``access:
proxy``: the password never reaches a browser). The zone authority and the NOC stay in Main Org (id 1) with the
existing provisioning (``dashboards/provisioning``), unfiltered. The six dashboards are the same JSON files in
every organisation: they take their datasource from the ``ds`` variable, so nothing in them is per carrier.

Files written into ``--out`` (beside, never over, the existing provisioning files)::

    provisioning/datasources/zonewatch-carriers.yaml  one datasource per carrier organisation (its orgId)
    provisioning/dashboards/zonewatch-carriers.yaml   the dashboards folder provisioned into each of them
    grafana.env      each carrier's vmauth password as ZONEWATCH_VMAUTH_PASSWORD_<KEY> (Grafana expands
                     environment variables in provisioning files), mode 0600: Grafana's EnvironmentFile
    orgs.txt         the organisations to create, in order, with the id each must have

Grafana's file provisioning cannot create organisations: create them (Administration > Organisations, or
``POST /api/orgs``) in the order of orgs.txt (a fresh Grafana numbers them 2, 3, ...), or give the ids of
existing ones with ``--org-id KEY=ID``. Rendered again into the same folder (a carrier added), every carrier keeps
the organisation the datasources file already gives it, and a removed carrier's id is never handed to a new one:
otherwise a carrier's datasource would move into another carrier's organisation (orgs.txt keeps the retired
ids, as comments).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from collector.inventory import Inventory
from collector.mosquitto.bundle import Written, write_file
from collector.provision import vmauth

__all__ = ["CarrierOrg", "orgs", "env_name", "render_datasources", "render_dashboards", "previous_ids",
           "write"]

DATASOURCE_UID: Final = "zonewatch-vm"   # the same uid as the authority's: one per organisation


@dataclass(frozen=True)
class CarrierOrg:
    """One carrier's Grafana organisation."""

    key: str
    plmn: str
    name: str       # the organisation's name: "Viettel (452-04)"
    org_id: int


def env_name(key: str) -> str:
    """Return the environment variable that holds carrier ``key``'s vmauth password in Grafana's environment."""
    return "ZONEWATCH_VMAUTH_PASSWORD_" + re.sub(r"[^A-Z0-9]", "_", key.upper())


def orgs(inventory: Inventory, first_id: int = 2, given: Mapping[str, int] | None = None,
         reserved: Iterable[int] = ()) -> list[CarrierOrg]:
    """Return every carrier's organisation, by carrier key: the id ``given`` names, else the next free one from
    ``first_id`` on, never one of ``reserved`` (Main Org, id 1, is the authority's and never a carrier's)."""
    given = dict(given or {})
    unknown = sorted(set(given) - set(inventory.carriers))
    if unknown:
        raise ValueError(f"--org-id names carrier(s) not in the inventory: {', '.join(unknown)} (known: "
                         f"{', '.join(sorted(inventory.carriers)) or 'none'})")
    if any(i < 2 for i in given.values()):
        raise ValueError("--org-id: organisation 1 (Main Org) is the zone authority's; a carrier's id is 2 or more")
    if len(set(given.values())) != len(given):
        raise ValueError("--org-id gives two carriers the same organisation")
    taken = set(given.values()) | set(reserved)
    out: list[CarrierOrg] = []
    next_id = max(first_id, 2)
    seen_env: dict[str, str] = {}
    for key in sorted(inventory.carriers):
        carrier = inventory.carriers[key]
        name = env_name(key)
        if name in seen_env:
            raise ValueError(f"carriers {seen_env[name]!r} and {key!r} give the same variable {name}: rename one")
        seen_env[name] = key
        if key in given:
            org_id = given[key]
        else:
            while next_id in taken:
                next_id += 1
            org_id = next_id
            taken.add(org_id)
        out.append(CarrierOrg(key, carrier.plmn, f"{carrier.name} ({carrier.plmn})", org_id))
    return out


def render_datasources(carrier_orgs: list[CarrierOrg], vmauth_url: str) -> str:
    """Return the datasource provisioning file: in each carrier's organisation, vmauth with its user."""
    if not re.match(r"^https?://[^/\s?#]+/?$", vmauth_url):
        raise ValueError(f"--vmauth-url: expected vmauth's base URL like http://127.0.0.1:8427, got {vmauth_url!r}")
    sources: list[dict[str, Any]] = [{
        "name": f"ZoneWatch {org.name}", "uid": DATASOURCE_UID, "orgId": org.org_id, "type": "prometheus",
        "access": "proxy", "url": vmauth_url.rstrip("/"), "isDefault": True, "editable": False,
        "basicAuth": True, "basicAuthUser": org.key,
        "secureJsonData": {"basicAuthPassword": f"${{{env_name(org.key)}}}"},
        "jsonData": {"httpMethod": "POST", "timeInterval": "10s"},
    } for org in carrier_orgs]
    head = ("# Grafana datasource provisioning written by `zonewatch-collector render-grafana`: in each carrier's\n"
            "# organisation, vmauth as that carrier (it sees only its own series). Passwords come from Grafana's\n"
            "# environment (grafana.env). The zone authority's datasource is in dashboards/provisioning (Main Org).\n")
    return head + yaml.safe_dump({"apiVersion": 1, "datasources": sources}, sort_keys=False)


def render_dashboards(carrier_orgs: list[CarrierOrg]) -> str:
    """Return the dashboard provisioning file: ZoneWatch's dashboards in each carrier's organisation, exactly as
    the authority's provider loads them into Main Org."""
    providers = [{
        "name": f"zonewatch-{org.key}", "orgId": org.org_id, "folder": "ZoneWatch", "type": "file",
        "disableDeletion": True, "allowUiUpdates": False, "updateIntervalSeconds": 60,
        "options": {"path": "${ZONEWATCH_DASHBOARDS}", "foldersFromFilesStructure": False},
    } for org in carrier_orgs]
    head = ("# Grafana dashboard provisioning written by `zonewatch-collector render-grafana`: the ZoneWatch\n"
            "# dashboards (ZONEWATCH_DASHBOARDS, as for Main Org) in each carrier's organisation.\n")
    return head + yaml.safe_dump({"apiVersion": 1, "providers": providers}, sort_keys=False)


def previous_ids(path: Path) -> dict[str, int]:
    """Return each carrier's organisation id in the datasources file ``path`` that an earlier render wrote
    (empty when there is none)."""
    if not path.is_file():
        return {}
    try:
        sources = yaml.safe_load(path.read_text())["datasources"] or []
        return {str(s["basicAuthUser"]): int(s["orgId"]) for s in sources}
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: not as render-grafana writes it ({exc!r}): it gives each carrier its organisation "
                         "id when rendered again; move it away and give every id with --org-id") from exc


RETIRED: Final = "retired, never given to another carrier: "


def _listed(path: Path) -> dict[int, str]:
    """Return the organisations an earlier orgs.txt lists, current and retired: id -> name."""
    found: dict[int, str] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            match = re.match(rf"^(?:# )?(\d+)\t(?:{re.escape(RETIRED)})?(.+)$", line)
            if match:
                found[int(match[1])] = match[2]
    return found


def write(inventory: Inventory, out: Path, vmauth_url: str, *, secrets_dir: Path,
          first_id: int = 2, org_ids: Mapping[str, int] | None = None) -> list[Written]:
    """Write the provisioning files, grafana.env and orgs.txt into ``out``; the carriers' passwords are read
    from ``secrets_dir`` (render-vmauth's secrets). A carrier not in ``org_ids`` keeps the id that the datasources
    file in ``out`` gives it. Return what was written."""
    datasources = out / "provisioning" / "datasources" / "zonewatch-carriers.yaml"
    given = dict(org_ids or {})
    before = previous_ids(datasources)
    for key, org_id in before.items():
        if key in inventory.carriers and key not in given and org_id not in given.values():
            given[key] = org_id
    left = _listed(out / "orgs.txt")   # every id handed out before, the retired ones too: never handed out again
    carrier_orgs = orgs(inventory, first_id, given, reserved={*before.values(), *left})
    passwords, _ = vmauth.passwords_for([org.key for org in carrier_orgs], out, secrets_dir)
    dashboards = out / "provisioning" / "dashboards" / "zonewatch-carriers.yaml"
    text = render_datasources(carrier_orgs, vmauth_url)
    for folder in (datasources.parent, dashboards.parent):
        folder.mkdir(parents=True, exist_ok=True)
    write_file(datasources, text, 0o644)
    write_file(dashboards, render_dashboards(carrier_orgs), 0o644)
    env = "".join(f"{env_name(org.key)}={passwords[org.key]}\n" for org in carrier_orgs)
    write_file(out / "grafana.env", "# Grafana's environment (render-grafana): each carrier's vmauth password\n" + env,
               0o600)
    listing = "".join(f"{org.org_id}\t{org.name}\n" for org in carrier_orgs)
    now = {org.org_id for org in carrier_orgs}
    retired = "".join(f"# {org_id}\t{RETIRED}{name}\n" for org_id, name in sorted(left.items()) if org_id not in now)
    write_file(out / "orgs.txt", "# id\torganisation (create them in this order; Main Org, id 1, is the zone "
                                 "authority's)\n" + listing + retired, 0o644)
    return [Written(datasources, f"{len(carrier_orgs)} carrier datasource(s) through vmauth ({vmauth_url})"),
            Written(dashboards, f"the ZoneWatch dashboards in {len(carrier_orgs)} carrier organisation(s)"),
            Written(out / "grafana.env", "the carriers' vmauth passwords for Grafana's environment (mode 0600)"),
            Written(out / "orgs.txt", "the organisations to create, with their ids: "
                                      + ", ".join(f"{o.org_id} {o.name}" for o in carrier_orgs))]
