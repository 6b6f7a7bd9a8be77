"""``report --carrier``: a carrier's private report names no other carrier, shows its own assets, and pools the
competitors only where the authority allows it and at least two of them were measured."""

from __future__ import annotations

import csv
import dataclasses
import re
from pathlib import Path

import pytest

from collector import cli
from collector.report import ReportError, SqliteSource, build_report, facts_from
from collector.report.carrier import OTHERS, for_carrier
from collector.report.compute import Report
from collector.storage import SqliteStorage
from collector.storage.sqlite import SqliteWriter
from tests.collector.test_report import T0, hour, store
from tests.integration import zone_scenario as scn
from zonewatch import wire

MB = "452-01"
INVENTORY = scn.INVENTORY_YAML.replace("carriers:\n", f"carriers:\n  mobifone: {{plmn: '{MB}', name: MobiFone}}\n")
CARRIERS = {scn.VT: ("viettel", "Viettel"), scn.VN: ("vinaphone", "VinaPhone"), MB: ("mobifone", "MobiFone")}


def with_mobifone(tmp_path: Path) -> Path:
    """The scenario's store, plus MobiFone's coverage of gate-a (good all hour): a third carrier measured."""
    db = store(tmp_path)
    writer = SqliteWriter(SqliteStorage(type="sqlite", path=str(db)))
    try:
        for m in range(scn.MINUTES):
            ts = T0 + m * 60 * 10**9
            writer.write([wire.Batch(scn.ZONE, "collector", 0, ts, (wire.Sample(
                "coverage", {"area": "gate-a", "carrier": MB}, {"level": 0, "rsrp_dbm": -80.0, "probes": 1}, ts),))])
    finally:
        writer.close()
    return db


def run(tmp_path: Path, carrier: str, competitors: str | None, out: Path) -> tuple[int, str]:
    (tmp_path / "inventory.yaml").write_text(INVENTORY)
    config = tmp_path / "collector.yaml"
    config.write_text(f"inventory: inventory.yaml\nqueue: {{path: '{tmp_path / 'intake.db'}'}}\n"
                      + (f"carrier_access: {{competitors: {competitors}}}\n" if competitors else ""))
    db = tmp_path / "zw.db"
    if not db.exists():
        with_mobifone(tmp_path)
    code = cli.main(["-c", str(config), "report", "--zone", scn.ZONE, "--month", "2025-11", "--sqlite", str(db),
                     "--carrier", carrier, "--out", str(out)])
    return code, str(out)


def rows(out: Path, name: str) -> list[dict[str, str]]:
    with open(out / name, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("plmn", [scn.VT, scn.VN, MB])
@pytest.mark.parametrize("competitors", [None, "aggregate"])
def test_a_carrier_report_names_no_other_carrier(tmp_path: Path, capsys: pytest.CaptureFixture[str], plmn: str,
                                                  competitors: str | None) -> None:
    out = tmp_path / "out"
    code, _ = run(tmp_path, CARRIERS[plmn][0], competitors, out)
    assert code == 0, capsys.readouterr().err
    files = sorted(p for p in out.iterdir() if p.suffix in (".html", ".csv"))
    assert {p.name for p in files} >= {"report.html", "coverage.csv", "availability.csv", "outages.csv"}
    for other, words in CARRIERS.items():
        if other == plmn:
            continue
        for word in (other, *words):
            for path in files:
                assert not re.search(re.escape(word), path.read_text(), re.I), f"{path.name} names {word}"
    assert CARRIERS[plmn][1] in (out / "report.html").read_text()


def test_a_carrier_sees_its_own_assets_and_the_shared_ones(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run(tmp_path, "viettel", None, out)[0] == 0
    assert {(r["carrier"], r["area"]) for r in rows(out, "coverage.csv")} == {(scn.VT, "gate-a"),
                                                                             (scn.VT, "logistics")}
    assert {(r["kind"], r["name"], r["carriers"]) for r in rows(out, "availability.csv")} == {
        ("site", "bts-a", scn.VT), ("site", "pop-l", scn.VT), ("link", "vt-fiber-1", scn.VT),
        ("link", "vt-fiber-2", scn.VT)}
    assert {(r["group"], r["carrier"]) for r in rows(out, "redundancy.csv")} == {("vt-uplink", scn.VT),
                                                                                ("core-paths", scn.VT)}
    outages = {(r["kind"], r["name"]) for r in rows(out, "outages.csv")}
    assert ("site_down", "bts-a") in outages and ("link_down", "vt-fiber-2") in outages   # the shared BTS's too
    assert not any(name.startswith("vn-") for _, name in outages)


def test_a_carrier_without_assets_gets_its_coverage_only(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run(tmp_path, MB, None, out)[0] == 0
    assert {(r["carrier"], r["area"]) for r in rows(out, "coverage.csv")} == {(MB, "gate-a"), (MB, "logistics")}
    assert rows(out, "availability.csv") == [] and rows(out, "redundancy.csv") == []


def test_competitors_are_pooled_only_if_allowed_and_only_where_two_or_more_were_measured(tmp_path: Path) -> None:
    out = tmp_path / "allowed"
    assert run(tmp_path, "viettel", "aggregate", out)[0] == 0
    pooled = [r for r in rows(out, "coverage.csv") if r["carrier"] == OTHERS]
    # gate-a: VinaPhone and MobiFone, 60 minutes each, pooled; logistics: VinaPhone alone, so no row
    assert [(r["area"], float(r["measured_min"])) for r in pooled] == [("gate-a", 120.0)]
    assert float(pooled[0]["good_pct"]) == pytest.approx(50.0)   # MobiFone's good hour of the two
    assert run(tmp_path, "viettel", "none", tmp_path / "none")[0] == 0
    assert not [r for r in rows(tmp_path / "none", "coverage.csv") if r["carrier"] == OTHERS]
    assert run(tmp_path, "viettel", None, tmp_path / "default")[0] == 0
    assert not [r for r in rows(tmp_path / "default", "coverage.csv") if r["carrier"] == OTHERS]


def test_an_unknown_carrier_is_named_with_the_known_ones(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, "vodafone", None, tmp_path / "out")[0] == 2
    err = capsys.readouterr().err
    assert "--carrier 'vodafone' is not a carrier of the inventory" in err and "viettel (452-04)" in err
    assert not (tmp_path / "out").exists()


def test_a_report_field_the_filter_does_not_know_stops_the_carrier_report(tmp_path: Path) -> None:
    @dataclasses.dataclass
    class Grown(Report):
        per_carrier_secrets: list[str] = dataclasses.field(default_factory=list)

    from collector.inventory import Inventory
    from zonewatch.strict import load

    source = SqliteSource(str(store(tmp_path)))
    try:
        report = build_report(source, facts_from(load(Inventory, INVENTORY), scn.ZONE), hour(),  # type: ignore[arg-type]
                              T0)
    finally:
        source.close()
    grown = Grown(**{f.name: getattr(report, f.name) for f in dataclasses.fields(report)})
    with pytest.raises(ReportError, match="per_carrier_secrets"):
        for_carrier(grown, scn.VT)
