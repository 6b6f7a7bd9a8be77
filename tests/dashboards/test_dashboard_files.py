"""The dashboards and provisioning files are valid as Grafana will load them: stable, unique uids, no numeric
ids, every panel and query bound to the datasource variable, and every query about a series ZoneWatch
writes (the measurement catalogue, zonewatch.measurements)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.dashboards import grafana
from zonewatch.measurements import series

# A dashboard's uid is its address (links, bookmarks, alerts point at it): changing one breaks them.
STABLE_UIDS = {
    "alerts.json": "zw-alerts",
    "carrier.json": "zw-carrier",
    "equipment.json": "zw-equipment",
    "probe-fleet.json": "zw-probes",
    "redundancy.json": "zw-redundancy",
    "zone-overview.json": "zw-zone-overview",
}
# Series ZoneWatch writes: <measurement>_<field>, from the measurement catalogue.
KNOWN_SERIES = series()
VARIABLES = {"ds", "zone", "area", "carrier", "site", "device", "severity"}
SELECTOR = re.compile(r"\b([a-z][a-z0-9_]*)\{([^}]*)\}")

DASHBOARDS = grafana.dashboards()


def _walk(node: Any, path: str = "") -> list[tuple[str, Any]]:
    """Return (path, value) for every key of every object in ``node``."""
    out: list[tuple[str, Any]] = []
    if isinstance(node, dict):
        for k, v in node.items():
            out.append((f"{path}.{k}", v))
            out += _walk(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _walk(v, f"{path}[{i}]")
    return out


def test_every_dashboard_has_its_stable_unique_uid() -> None:
    assert {name: d.get("uid") for name, d in DASHBOARDS.items()} == STABLE_UIDS
    titles = [d["title"] for d in DASHBOARDS.values()]
    assert len(set(titles)) == len(titles)


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_no_numeric_ids(name: str) -> None:
    # Grafana assigns numeric ids itself; a provisioned file carrying them clashes with another instance's.
    numeric = [path for path, value in _walk(DASHBOARDS[name]) if path.endswith(".id") and not isinstance(value, str)]
    assert numeric == []


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_panel_and_query_uses_the_datasource_variable(name: str) -> None:
    dash = DASHBOARDS[name]
    variables = dash["templating"]["list"]
    ds = [v for v in variables if v["type"] == "datasource"]
    assert [(v["name"], v["query"]) for v in ds] == [("ds", "prometheus")]
    for v in variables:
        if v["type"] == "query":
            assert v["datasource"] == grafana.DATASOURCE, (name, v["name"])
    for panel in grafana.panels(dash):
        if panel.get("type") == "row":
            continue
        assert panel.get("datasource") == grafana.DATASOURCE, (name, panel["title"])
        assert panel["targets"], (name, panel["title"])
        refs = [t["refId"] for t in panel["targets"]]
        assert len(set(refs)) == len(refs), (name, panel["title"])
        for t in panel["targets"]:
            assert t.get("datasource") == grafana.DATASOURCE, (name, panel["title"], t["refId"])
            assert t.get("expr"), (name, panel["title"], t["refId"])
            assert t["instant"] != t["range"], (name, panel["title"], t["refId"])


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_panels_have_unique_titles_and_do_not_overlap(name: str) -> None:
    titles = [p["title"] for p in grafana.panels(DASHBOARDS[name])]
    assert len(set(titles)) == len(titles)
    taken: dict[tuple[int, int], str] = {}
    for p in grafana.panels(DASHBOARDS[name]):
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in taken, f"{p['title']!r} overlaps {taken[(x, y)]!r}"
                taken[(x, y)] = p["title"]


@pytest.mark.parametrize("target", grafana.targets(), ids=str)
def test_queries_name_only_series_zonewatch_writes_and_filter_by_zone(target: grafana.Target) -> None:
    selectors = SELECTOR.findall(target.expr)
    assert selectors, target.expr
    for metric, matchers in selectors:
        assert metric in KNOWN_SERIES, f"{metric} is not a series ZoneWatch writes"
        assert 'zone=~"$zone"' in matchers, f"{metric}{{{matchers}}} does not filter by the zone variable"
    dash = next(d for d in DASHBOARDS.values() if d["uid"] == target.uid)
    defined = {v["name"] for v in dash["templating"]["list"]}
    for name in grafana.variables_used(target.expr) - set(grafana.BUILTINS):
        assert name in defined, f"${name} is not a variable of {target.uid}"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_variables_are_the_zones_and_filter_each_other(name: str) -> None:
    variables = {v["name"]: v for v in DASHBOARDS[name]["templating"]["list"]}
    assert set(variables) <= VARIABLES
    assert "zone" in variables and not variables["zone"]["includeAll"]
    for var in variables.values():
        if var["type"] == "query":
            query = var["query"]["query"]
            assert query == var["definition"]
            assert re.fullmatch(r"label_values\(\w+(\{[^}]*\})?, \w+\)", query), query
            if var["name"] != "zone":
                assert 'zone=~"$zone"' in query, query
        if var.get("includeAll"):
            assert var["allValue"] == ".*", var["name"]


def test_provisioning_points_grafana_at_victoriametrics_and_the_dashboards() -> None:
    ds = yaml.safe_load((grafana.PROVISIONING / "datasources" / "zonewatch.yaml").read_text())
    assert ds["apiVersion"] == 1
    [source] = ds["datasources"]
    assert (source["type"], source["access"], source["uid"]) == ("prometheus", "proxy", "zonewatch-vm")
    assert source["url"] == "${ZONEWATCH_VM_URL}" and source["isDefault"] is True
    dash = yaml.safe_load((grafana.PROVISIONING / "dashboards" / "zonewatch.yaml").read_text())
    assert dash["apiVersion"] == 1
    [provider] = dash["providers"]
    assert (provider["type"], provider["folder"]) == ("file", "ZoneWatch")
    assert provider["options"]["path"] == "${ZONEWATCH_DASHBOARDS}"
    assert provider["allowUiUpdates"] is False  # the files are the source; edits in the UI would be lost
