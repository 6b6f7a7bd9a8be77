"""The report's time accounting, periods, figures and command line, without services: the zone scenario is
written straight into an SQLite store file, and every expected figure is the hand-computed one of
``tests/integration/zone_scenario``."""

from __future__ import annotations

import csv
from datetime import datetime, timezone
from pathlib import Path

import pytest

from collector import cli
from collector.report import ReportError, SqliteSource, build_report, facts_from, month_period, span_period
from collector.report.timeline import Interval, combine, durations, episodes, hold
from collector.storage import SqliteStorage
from collector.storage.sqlite import SqliteWriter
from tests.integration import zone_scenario as scn
from zonewatch import wire
from zonewatch.strict import load

S = 10**9
T0 = int(datetime(2025, 11, 3, 10, 0, tzinfo=timezone.utc).timestamp()) * S


# ------------------------------------------------------------------------------------------------ timeline


def test_a_point_holds_until_the_next_and_the_last_for_the_usual_spacing() -> None:
    points = [(0, 1.0), (10 * S, 0.0), (20 * S, 1.0)]
    assert hold(points, 0, 100 * S, 300 * S) == [Interval(0, 10 * S, 1.0), Interval(10 * S, 20 * S, 0.0),
                                                 Interval(20 * S, 30 * S, 1.0)]


def test_across_a_long_gap_a_point_holds_for_the_usual_spacing_only() -> None:
    points = [(0, 1.0), (10 * S, 1.0), (20 * S, 1.0), (30 * S, 1.0), (100 * S, 1.0)]
    assert hold(points, 0, 200 * S, 300 * S) == [Interval(0, 40 * S, 1.0), Interval(100 * S, 110 * S, 1.0)]


def test_no_point_holds_longer_than_max_gap() -> None:
    points = [(0, 1.0), (100 * S, 1.0), (200 * S, 1.0)]
    assert hold(points, 0, 300 * S, 30 * S) == [Interval(0, 30 * S, 1.0), Interval(100 * S, 130 * S, 1.0),
                                                Interval(200 * S, 230 * S, 1.0)]


def test_hold_clips_to_the_period_and_a_point_before_it_holds_into_it() -> None:
    assert hold([(-5 * S, 2.0), (5 * S, 3.0), (15 * S, 3.0)], 0, 20 * S, 60 * S) == [
        Interval(0, 5 * S, 2.0), Interval(5 * S, 20 * S, 3.0)]


def test_two_points_at_one_time_keep_the_worse_value() -> None:
    assert hold([(0, 1.0), (0, 4.0), (10 * S, 0.0)], 0, 20 * S, 60 * S)[0] == Interval(0, 10 * S, 4.0)


def test_combine_episodes_and_durations() -> None:
    a = [Interval(0, 10, 1.0), Interval(10, 20, 0.0)]
    b = [Interval(5, 30, 1.0)]
    both = combine([a, b], lambda v: None if None in v else float(all(x == 1 for x in v if x is not None)))
    assert both == [Interval(5, 10, 1.0), Interval(10, 20, 0.0)]
    assert durations(both) == {1.0: 5, 0.0: 10}
    assert episodes([Interval(0, 5, 0.0), Interval(5, 9, 0.0), Interval(12, 15, 0.0)], lambda v: v == 0) == [
        (0, 9), (12, 15)]


# ------------------------------------------------------------------------------------------------ periods


@pytest.mark.parametrize(("month", "tz", "start", "end"), [
    ("2025-11", "UTC", "2025-11-01T00:00:00+00:00", "2025-12-01T00:00:00+00:00"),
    ("2025-12", "UTC", "2025-12-01T00:00:00+00:00", "2026-01-01T00:00:00+00:00"),
    ("2025-11", "Asia/Ho_Chi_Minh", "2025-10-31T17:00:00+00:00", "2025-11-30T17:00:00+00:00"),
])
def test_a_month_is_the_calendar_month_in_the_zone_s_time_zone(month: str, tz: str, start: str, end: str) -> None:
    period = month_period(month, tz)
    assert period.start_ns == int(datetime.fromisoformat(start).timestamp()) * S
    assert period.end_ns == int(datetime.fromisoformat(end).timestamp()) * S


@pytest.mark.parametrize(("call", "message"), [
    (lambda: month_period("2025-13"), "month '2025-13': expected YYYY-MM"),
    (lambda: month_period("11/2025"), "month '11/2025': expected YYYY-MM"),
    (lambda: month_period("2025-11", "Mars/Base"), "unknown time zone 'Mars/Base'"),
    (lambda: span_period("2025-11-02", "2025-11-01"), "--to '2025-11-01' is not after --from '2025-11-02'"),
    (lambda: span_period("yesterday", "2025-11-01"), "--from 'yesterday': expected an ISO 8601 time"),
])
def test_bad_periods_say_what_is_wrong(call: object, message: str) -> None:
    with pytest.raises(ReportError, match=message.replace("(", r"\(")):
        call()  # type: ignore[operator]


# ------------------------------------------------------------------------------------------------ figures


def store(tmp_path: Path, keep: object = lambda sample: True) -> Path:
    """Write the scenario (the samples ``keep`` accepts) into an SQLite store file; return its path."""
    path = tmp_path / "zw.db"
    writer = SqliteWriter(SqliteStorage(type="sqlite", path=str(path)))
    try:
        for _topic, batch in scn.batches(T0):
            samples = tuple(s for s in batch.samples if keep(s))  # type: ignore[operator]
            if samples:
                writer.write([wire.Batch(batch.zone, batch.probe, batch.seq, batch.sent_ns, samples)])
    finally:
        writer.close()
    return path


def hour() -> object:
    return span_period(datetime.fromtimestamp(T0 / S, timezone.utc).isoformat(),
                       datetime.fromtimestamp(T0 / S + 3600, timezone.utc).isoformat())


def inventory() -> object:
    from collector.inventory import Inventory

    return load(Inventory, scn.INVENTORY_YAML)


@pytest.mark.parametrize("derived", [True, False], ids=["coverage judgements", "raw cellular readings only"])
def test_coverage_figures_from_judgements_or_from_raw_readings(tmp_path: Path, derived: bool) -> None:
    path = store(tmp_path, keep=lambda s: derived or s.measurement != "coverage")
    source = SqliteSource(str(path))
    try:
        report = build_report(source, facts_from(inventory(), scn.ZONE), hour(), T0)  # type: ignore[arg-type]
    finally:
        source.close()
    assert ("judgements" if derived else "raw cellular") in report.coverage_from
    got = {(r.carrier, r.area): (r.measured_ns / 60e9, r.share(0), r.share(1), r.share(2),
                                 r.level_ns.get(3, 0) / 60e9, r.level_ns.get(4, 0) / 60e9, r.median_rsrp_dbm)
           for r in report.coverage}
    assert set(got) == set(scn.REPORT_COVERAGE)
    for key, want in scn.REPORT_COVERAGE.items():
        assert got[key] == pytest.approx(want), key
    assert [(o.kind, o.name, " ".join(o.carriers), (o.start_ns - T0) // (60 * S), (o.end_ns - T0) // (60 * S),
             (o.end_ns - o.start_ns) // (60 * S)) for o in report.outages] == scn.REPORT_OUTAGES


def test_without_an_inventory_sites_and_links_come_from_the_tags(tmp_path: Path) -> None:
    source = SqliteSource(str(store(tmp_path)))
    try:
        report = build_report(source, facts_from(None, scn.ZONE), hour(), T0)  # type: ignore[arg-type]
    finally:
        source.close()
    got = {(r.kind, r.name): (r.carriers, r.measured_ns / 60e9, r.up_ns / 60e9) for r in report.availability}
    assert got == {key: ([], measured, up) for key, (_, measured, up, _) in scn.REPORT_AVAILABILITY.items()}


def test_an_unknown_zone_and_an_empty_period_are_named(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match=r"zone 'dinh-vu' is not in the inventory \(known: scn-park\)"):
        facts_from(inventory(), "dinh-vu")  # type: ignore[arg-type]
    source = SqliteSource(str(store(tmp_path)))
    try:
        with pytest.raises(ReportError, match="has no points of zone 'scn-park' in 2024-01"):
            build_report(source, facts_from(None, scn.ZONE), month_period("2024-01"), T0)
    finally:
        source.close()


# ------------------------------------------------------------------------------------------------ command


def test_report_command_writes_the_month_from_the_sqlite_store(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    db = store(tmp_path)
    inv = tmp_path / "inventory.yaml"
    inv.write_text(scn.INVENTORY_YAML)
    out = tmp_path / "out"
    code = cli.main(["-c", str(tmp_path / "none.yaml"), "report", "--zone", scn.ZONE, "--month", "2025-11",
                     "--sqlite", str(db), "--inventory", str(inv), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert f"wrote {out / 'report.html'}" in capsys.readouterr().out
    with open(out / "coverage.csv", newline="") as fh:
        coverage = scn.report_rows(csv.DictReader(fh), "carrier", "area")
    # The hour measured inside a 30-day month: shares are of the measured time; the rest is no data.
    for key, (measured, good, fair, above_hole, _, no_service, _) in scn.REPORT_COVERAGE.items():
        r = coverage[key]
        assert (float(r["measured_min"]), float(r["no_data_min"])) == (measured, 30 * 24 * 60 - measured)
        assert float(r["good_pct"]) == pytest.approx(good, abs=1e-3)
        assert float(r["fair_or_better_pct"]) == pytest.approx(fair, abs=1e-3)
        assert float(r["above_hole_pct"]) == pytest.approx(above_hole, abs=1e-3)
        assert float(r["no_service_min"]) == no_service
    assert (out / "report.html").read_text().count("<img ") == 4


@pytest.mark.parametrize(("args", "message"), [
    (["--month", "2025-11", "--to", "2025-12-01"], "--to goes with --from, not with --month"),
    (["--from", "2025-11-01"], "--from needs --to"),
    (["--month", "2025-11", "--max-gap", "soon"], "--max-gap 'soon'"),
    (["--month", "2025-11", "--sqlite", "/nonexistent/zw.db"], "no SQLite store at /nonexistent/zw.db"),
    (["--month", "2025-11", "--victoriametrics", "vm:8428"], "expected an http:// or https:// URL"),
    (["--month", "2025-11"], "none.yaml"),  # no store given and no configuration to say which
])
def test_report_command_names_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                        message: str) -> None:
    code = cli.main(["-c", str(tmp_path / "none.yaml"), "report", "--zone", scn.ZONE, *args])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("zonewatch-collector: report: ") and message in err, err


def test_demo_report_is_written_from_the_demo_store(tmp_path: Path) -> None:
    from collector.report import write_demo_report

    page = write_demo_report(store(tmp_path), tmp_path / "report", scn.ZONE, T0, T0 + 3600 * S)
    assert page == tmp_path / "report" / "report.html"
    assert sorted(p.name for p in page.parent.iterdir()) == ["availability.csv", "coverage.csv", "kpi.csv",
                                                             "maintenance.csv", "outages.csv", "redundancy.csv",
                                                             "report.html", "response.csv"]
    with open(page.parent / "outages.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == len(scn.REPORT_OUTAGES)


def report_args(tmp_path: Path, out: Path) -> list[str]:
    inv = tmp_path / "inventory.yaml"
    inv.write_text(scn.INVENTORY_YAML)
    return ["-c", str(tmp_path / "none.yaml"), "report", "--zone", scn.ZONE, "--month", "2025-11",
            "--sqlite", str(store(tmp_path)), "--inventory", str(inv), "--out", str(out)]


def test_a_link_planted_in_the_output_folder_is_replaced_not_written_through(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, victim = tmp_path / "out", tmp_path / "collector.yaml"
    out.mkdir()
    victim.write_text("the operator's configuration\n")
    for name in ("report.html", "coverage.csv"):
        (out / name).symlink_to(victim)
    (out / "outages.csv").symlink_to(tmp_path / "not-there-yet")  # a dangling link: nothing may be created there
    assert cli.main(report_args(tmp_path, out)) == 0, capsys.readouterr().err
    assert victim.read_text() == "the operator's configuration\n"
    assert not (tmp_path / "not-there-yet").exists()
    for name in ("report.html", "coverage.csv", "outages.csv"):
        assert not (out / name).is_symlink() and (out / name).stat().st_size > 0
    assert sorted(p.name for p in out.iterdir()) == ["availability.csv", "coverage.csv", "kpi.csv",
                                                     "maintenance.csv", "outages.csv", "redundancy.csv",
                                                     "report.html", "response.csv"]  # no temporary file left


def test_an_output_folder_that_is_a_link_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    elsewhere = tmp_path / "etc-zonewatch"
    elsewhere.mkdir()
    (tmp_path / "out").symlink_to(elsewhere, target_is_directory=True)
    assert cli.main(report_args(tmp_path, tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert err == (f"zonewatch-collector: report: {tmp_path / 'out'} is a symbolic link: give the folder itself "
                   "(the report is never written through a link)\n")
    assert list(elsewhere.iterdir()) == []


def test_a_series_written_on_change_and_refreshed_holds_across_its_refresh_gap() -> None:
    s = 10**9
    points = [(0, 0.0), (1 * s, 1.0), (2 * s, 0.0), (32 * s, 0.0)]   # two quick changes, then a 30 s refresh
    quick = hold(points, 0, 40 * s, 300 * s)
    assert sum(i.end_ns - i.start_ns for i in quick) == 4 * s          # judged by its 1 s spacing: mostly no data
    derived = hold(points, 0, 40 * s, 300 * s, min_hold_ns=35 * s)
    assert [(i.start_ns // s, i.end_ns // s, i.value) for i in derived] == [(0, 1, 0.0), (1, 2, 1.0), (2, 40, 0.0)]
