"""What the tests need to know about Grafana: read the dashboards, list their queries, and fill in template
variables the way Grafana does before it sends a query to a Prometheus-type datasource."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
DASHBOARDS = ROOT / "dashboards"
PROVISIONING = DASHBOARDS / "provisioning"
DATASOURCE = {"type": "prometheus", "uid": "${ds}"}
# Grafana's own variables, with the values of a dashboard whose time range is one hour.
BUILTINS = ("__range", "__range_s", "__interval", "__rate_interval")
_VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


def dashboards() -> dict[str, dict[str, Any]]:
    """Return every dashboard JSON in dashboards/, by file name."""
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


@dataclass(frozen=True)
class Target:
    """One query of one panel."""

    uid: str
    panel: str
    ref: str
    expr: str
    instant: bool

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.uid, self.panel, self.ref)

    def __str__(self) -> str:
        return f"{self.uid} / {self.panel} / {self.ref}"


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Yield every panel, including those inside rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def targets() -> list[Target]:
    """Return every query of every panel of every dashboard."""
    out = []
    for dash in dashboards().values():
        for panel in panels(dash):
            for t in panel.get("targets", []):
                out.append(Target(dash["uid"], panel["title"], t["refId"], t["expr"], bool(t.get("instant"))))
    return out


def variables_used(expr: str) -> set[str]:
    """Return the names of the template variables ``expr`` refers to."""
    return {a or b for a, b in _VAR.findall(expr)}


def interpolate(expr: str, values: Mapping[str, str]) -> str:
    """Replace ``$name`` and ``${name}`` with ``values[name]``; an unknown variable is an error."""

    def sub(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"variable ${name} has no value in this test")
        return values[name]

    return _VAR.sub(sub, expr)


def hour_range() -> dict[str, str]:
    """Grafana's built-in variables for a one-hour dashboard range, 1-minute interval."""
    return {"__range": "3600s", "__range_s": "3600", "__interval": "1m", "__rate_interval": "5m"}
