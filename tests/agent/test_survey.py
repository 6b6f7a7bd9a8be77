"""The walk survey (agent.survey, agent.gpsd): readings paired with positions, gpsd's TPV reports read, waypoint
files checked with the line named, and a waypoint walk driven as an engineer would (no sleeps, no hardware)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from agent.gpsd import Fix, parse_report
from agent.survey import Survey, load_waypoints, pair, survey_sample
from zonewatch import wire
from zonewatch.measurements import problems
from zonewatch.strict import ConfigError

S = 10**9
T0 = 1_767_225_600 * S


def reading(t_s: float, rsrp: float = -95.0, carrier: str = "452-04") -> wire.Sample:
    return wire.Sample("cellular", {"carrier": carrier, "modem": "vt", "rat": "lte", "band": "B3", "cell": "5F1EA15"},
                       {"rsrp_dbm": rsrp, "rsrq_db": -10.0, "registered": True, "pci": 188, "enb_id": 389610},
                       T0 + int(t_s * S))


def test_each_reading_takes_the_fix_nearest_in_time() -> None:
    fixes = [Fix(T0, 3, lat=20.85, lon=106.77, error_m=4.2), Fix(T0 + 2 * S, 3, lat=20.86, lon=106.78),
             Fix(T0 + 4 * S, 2, lat=20.87, lon=106.79)]
    out, unplaced = pair([reading(2.4), reading(3.9), reading(0.2)], fixes, "walk1", 5 * S)
    assert unplaced == 0
    assert [(s.fields["lat"], s.fields["lon"], s.fields["fix"]) for s in out] == [
        (20.86, 106.78, 3), (20.87, 106.79, 2), (20.85, 106.77, 3)]
    assert out[2].fields["error_m"] == 4.2 and out[0].fields["age_s"] == pytest.approx(0.4)
    assert out[0].tags == {"survey": "walk1", "carrier": "452-04", "modem": "vt", "rat": "lte"}   # no band, no cell
    assert out[0].time_ns == T0 + int(2.4 * S) and "enb_id" not in out[0].fields and out[0].fields["pci"] == 188
    for s in out:
        assert problems(s.measurement, s.tags, s.fields) == []


def test_a_reading_with_no_fix_close_enough_is_left_out_and_counted() -> None:
    fixes = [Fix(T0, 3, lat=20.85, lon=106.77)]
    out, unplaced = pair([reading(1.0), reading(9.0)], fixes, "walk1", 5 * S)
    assert len(out) == 1 and unplaced == 1
    assert pair([reading(1.0)], [], "walk1", 5 * S) == ([], 1)


def test_a_waypoint_places_a_reading_in_metres_on_the_plan() -> None:
    s = survey_sample(reading(1.0), "walk2", Fix(T0, 0, x=120.0, y=45.5, name="gate-1"))
    assert s is not None and s.fields["x_m"] == 120.0 and s.fields["y_m"] == 45.5 and s.fields["fix"] == 0
    assert "lat" not in s.fields and problems(s.measurement, s.tags, s.fields) == []
    assert survey_sample(wire.Sample("modem", {}, {"answering": False}, T0), "w", Fix(T0, 0, x=1, y=2)) is None


def test_gpsd_tpv_reports_with_a_fix_are_read_and_others_ignored() -> None:
    tpv = {"class": "TPV", "device": "/dev/ttyACM0", "mode": 3, "time": "2019-08-01T10:00:00.000Z",
           "lat": 20.8512345, "lon": 106.7731234, "alt": 5.1, "eph": 6.3}
    assert parse_report(json.dumps(tpv), 7) == Fix(7, 3, lat=20.8512345, lon=106.7731234, error_m=6.3)
    old = {k: v for k, v in tpv.items() if k != "eph"} | {"epx": 3.0, "epy": 5.5}
    assert parse_report(json.dumps(old).encode(), 7) == Fix(7, 3, lat=20.8512345, lon=106.7731234, error_m=5.5)
    assert parse_report(json.dumps(tpv | {"mode": 1}), 7) is None               # no fix yet
    assert parse_report(json.dumps({"class": "TPV", "mode": 2}), 7) is None     # a fix without a position
    assert parse_report(json.dumps({"class": "SKY", "satellites": []}), 7) is None
    assert parse_report(json.dumps(tpv | {"lat": 95.0}), 7) is None
    assert parse_report(b'{"class":"VERSION","release":"3.22"', 7) is None      # cut short


def test_a_waypoint_file_is_checked_with_the_line_named(tmp_path: Path) -> None:
    path = tmp_path / "walk.yaml"
    path.write_text("points:\n  - {name: gate-1, x: 10, y: 20}\n  - {name: gate-2, lat: 20.85, lon: 106.77}\n")
    with pytest.raises(ConfigError) as info:
        load_waypoints(str(path))
    assert str(info.value) == f"{path}:3: points[1]: points[0] is xy: give every point the same way"
    path.write_text("points:\n  - {name: gate-1, x: 10}\n")
    with pytest.raises(ConfigError, match=r"walk.yaml:2: points\[0\]: .*a waypoint is \{name: .., x: .., y: ..\}"):
        load_waypoints(str(path))
    path.write_text("points:\n  - {name: gate-1, x: 10, y: 20}\n  - {name: gate-1, x: 30, y: 20}\n")
    with pytest.raises(ConfigError, match=r"walk.yaml:3: points\[1\].name: name 'gate-1' is already points\[0\]'s"):
        load_waypoints(str(path))


def test_a_waypoint_walk_reads_at_each_point_the_engineer_confirms(tmp_path: Path) -> None:
    path = tmp_path / "walk.yaml"
    path.write_text("points:\n  - {name: gate, x: 10, y: 20}\n  - {name: dock, x: 300, y: 80}\n"
                    "  - {name: yard, x: 500, y: 10}\n")
    points = load_waypoints(str(path))
    now = [T0]
    stored: list[wire.Sample] = []
    said: list[str] = []
    answers = iter(["\n", "s\n", "\n"])
    prompts: list[str] = []

    async def poll() -> list[wire.Sample]:
        now[0] += 2 * S
        return [reading((now[0] - T0) / S, rsrp=-100.0 - (now[0] - T0) / S)]

    async def ask(prompt: str) -> str | None:
        prompts.append(prompt)
        return next(answers, None)

    walk = Survey("walk3", poll, stored.extend, clock=lambda: now[0], say=said.append)
    outcome = asyncio.run(walk.run_waypoints(points, 2, ask))
    assert outcome.points == ["gate", "yard"] and outcome.stored == 4
    assert prompts[0].startswith("[1/3] go to gate (x 10 m, y 20 m), then press Enter")
    assert [(s.fields["x_m"], s.fields["y_m"]) for s in stored] == [(10, 20), (10, 20), (500, 10), (500, 10)]
    assert [s.fields["age_s"] for s in stored] == [2.0, 4.0, 2.0, 4.0]   # seconds since the engineer pressed Enter
    assert said[0] == "gate: vt -102 dBm"
