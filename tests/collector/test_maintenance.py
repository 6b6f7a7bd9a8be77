"""Maintenance windows: when they are open (time zones, DST, recurrences), what the inventory accepts, who may
declare what, the run-time store and the ``maintenance`` command. No clock: every time is given."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from collector import cli
from collector.inventory import Inventory
from collector.maintenance import Declared, Window, co_owners, occurrences, open_span, refusal
from collector.maintenance_store import MaintenanceStore, merged
from zonewatch import strict

S = 1_000_000_000

INVENTORY = """\
zones:
  dinh-vu: {name: Dinh Vu, areas: [gate-a, north]}
carriers:
  viettel: {plmn: 452-04, name: Viettel}
  vinaphone: {plmn: 452-02, name: VinaPhone}
sites:
  pop-1: {zone: dinh-vu, area: gate-a, owners: [viettel]}
  bts-dv-01: {zone: dinh-vu, area: north, owners: [viettel, vinaphone]}
  bts-vn: {zone: dinh-vu, area: north, owners: [vinaphone]}
devices:
  sw-1: {site: pop-1, owners: [viettel], probe: p1}
  bts-01: {site: bts-dv-01, owners: [viettel, vinaphone], probe: p1}
links:
  vt-primary: {device: sw-1, ifname: xe-0/0/1, carriers: [viettel]}
probes:
  p1: {zone: dinh-vu, area: gate-a}
"""


def ns(text: str) -> int:
    """Return a UTC time ``YYYY-MM-DD HH:MM`` as ns."""
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()) * S


def window(**fields: object) -> Window:
    return Window.model_validate({"scope": {"site": "pop-1"}, **fields})


def utc(spans: list[tuple[int, int]]) -> list[tuple[str, str]]:
    def show(t: int) -> str:
        return datetime.fromtimestamp(t / S, timezone.utc).strftime("%Y-%m-%d %H:%M")
    return [(show(a), show(b)) for a, b in spans]


# ------------------------------------------------------------------------------------------------ when


def test_a_weekly_window_in_ho_chi_minh_across_a_month_boundary() -> None:
    # Sundays 23:00 to 03:00 local (UTC+7): the 30 November span ends on 1 December, local time.
    w = window(start="2025-11-16 23:00", every="weekly", duration="4h", time_zone="Asia/Ho_Chi_Minh")
    spans = occurrences(w, ns("2025-11-20 00:00"), ns("2025-12-10 00:00"))
    assert utc(spans) == [("2025-11-23 16:00", "2025-11-23 20:00"), ("2025-11-30 16:00", "2025-11-30 20:00"),
                          ("2025-12-07 16:00", "2025-12-07 20:00")]
    d = Declared("sun", w)
    assert open_span(d, ns("2025-11-30 18:30")) == (ns("2025-11-30 16:00"), ns("2025-11-30 20:00"))  # 01:30 Dec 1
    assert open_span(d, ns("2025-11-30 15:59")) is None and open_span(d, ns("2025-11-30 20:00")) is None
    assert open_span(d, ns("2025-12-01 18:30")) is None   # a Monday


def test_a_daily_window_keeps_its_wall_clock_time_across_a_dst_change() -> None:
    # Berlin leaves summer time on 26 October 2025: 22:00 local is 20:00 UTC before, 21:00 UTC after.
    w = window(start="2025-10-24 22:00", every="daily", duration="2h", time_zone="Europe/Berlin")
    spans = occurrences(w, ns("2025-10-24 00:00"), ns("2025-10-28 00:00"))
    assert [a for a, _ in utc(spans)] == ["2025-10-24 20:00", "2025-10-25 20:00", "2025-10-26 21:00",
                                          "2025-10-27 21:00"]
    assert all(b - a == 2 * 3600 * S for a, b in spans)   # the duration is elapsed time


def test_a_monthly_window_on_the_31st_opens_on_the_last_day_of_shorter_months_and_stops_at_until() -> None:
    w = window(start="2025-01-31 01:00", every="monthly", duration="1h", until="2025-05-01")
    spans = occurrences(w, ns("2025-01-01 00:00"), ns("2026-01-01 00:00"))
    assert [a[:10] for a, _ in utc(spans)] == ["2025-01-31", "2025-02-28", "2025-03-31", "2025-04-30"]


def test_a_window_ended_early_stops_then_and_recurs_no_more() -> None:
    w = window(start="2025-11-01 22:00", every="daily", duration="4h")
    d = Declared("nightly", w, "store", ended_ns=ns("2025-11-03 23:00"))
    spans = occurrences(d, ns("2025-11-01 00:00"), ns("2025-11-10 00:00"))
    assert utc(spans) == [("2025-11-01 22:00", "2025-11-02 02:00"), ("2025-11-02 22:00", "2025-11-03 02:00"),
                          ("2025-11-03 22:00", "2025-11-03 23:00")]


def test_a_one_off_window_by_duration() -> None:
    w = window(start="2025-11-28 22:00", duration="90m", time_zone="Asia/Ho_Chi_Minh")
    assert utc(occurrences(w, 0, 2**62)) == [("2025-11-28 15:00", "2025-11-28 16:30")]


# ------------------------------------------------------------------------------------------------ inventory


def load(windows: str) -> Inventory:
    return strict.load(Inventory, INVENTORY + ("maintenance:\n" + windows if windows else ""), "inventory.yaml")


@pytest.mark.parametrize(("text", "error"), [
    ("  w: {scope: {site: pop-1}, start: '2025-11-28 22:00', end: '2025-11-28 21:00'}\n",
     "inventory.yaml:18: maintenance.w: end (2025-11-28 21:00) must be after start (2025-11-28 22:00)"),
    ("  w: {scope: {site: pop-1}, start: '2025-11-28 22:00', duration: 2h, time_zone: Asia/Hanoi}\n",
     "inventory.yaml:18: maintenance.w.time_zone: unknown time zone 'Asia/Hanoi': give an IANA name like "
     "Asia/Ho_Chi_Minh or UTC"),
    ("  w: {scope: {site: pop-1}, start: '2025-11-28 22:00', every: daily, duration: 25h}\n",
     "inventory.yaml:18: maintenance.w: duration must be more than 0 and at most 1 days for a daily window, got "
     "90000 s"),
    ("  w: {scope: {site: pop-1, link: vt-primary}, start: '2025-11-28 22:00', duration: 2h}\n",
     "inventory.yaml:18: maintenance.w.scope: a scope is exactly one of carrier, site, device, link, group or area "
     "(an area may also name a carrier), got ['site', 'link']"),
    ("  w: {scope: {site: pop-9}, start: '2025-11-28 22:00', duration: 2h}\n",
     "inventory.yaml:18: maintenance.w.scope: unknown site 'pop-9' (known: bts-dv-01, bts-vn, pop-1)"),
    ("  w: {scope: {site: pop-1}, start: 'tonight', duration: 2h}\n",
     "inventory.yaml:18: maintenance.w.start: expected a local time like '2025-11-28 22:00' (in the window's "
     "time_zone), got 'tonight'"),
    ("  w:\n    scope: {site: bts-vn}\n    start: '2025-11-28 22:00'\n    duration: 2h\n    as_carrier: viettel\n",
     "inventory.yaml:22: maintenance.w.as_carrier: carrier Viettel (452-04) may not declare maintenance on site "
     "bts-vn: it belongs to VinaPhone. A carrier declares windows on its own assets only"),
])
def test_the_inventory_names_the_key_and_line_of_a_bad_window(text: str, error: str) -> None:
    with pytest.raises(strict.ConfigError) as exc:
        load(text)
    assert str(exc.value) == error


def test_unquoted_yaml_times_and_dates_are_read_as_wall_clock_times() -> None:
    inv = load("  w: {scope: {device: sw-1}, start: 2025-11-28 22:00:00, every: weekly, duration: 3h, "
               "until: 2026-01-31}\n")
    assert inv.maintenance["w"].start == datetime(2025, 11, 28, 22, 0)
    assert inv.maintenance["w"].until == datetime(2026, 1, 31)


def test_a_carrier_declares_on_its_own_assets_only() -> None:
    inv = load("")

    def why(scope: dict[str, str], carrier: str = "viettel") -> str | None:
        return refusal(Window.model_validate({"scope": scope, "start": "2025-11-28 22:00", "duration": "1h",
                                              "as_carrier": carrier}), inv)

    assert why({"site": "bts-dv-01"}) is None and why({"link": "vt-primary"}) is None
    assert why({"carrier": "452-04"}) is None and why({"area": "north", "carrier": "viettel"}) is None
    assert "it belongs to Viettel" in str(why({"device": "sw-1"}, "vinaphone"))
    assert why({"carrier": "viettel"}, "vinaphone") == ("carrier VinaPhone (452-02) may declare a carrier-wide "
                                                        "window for itself only, not for viettel")
    assert "an area holds other carriers' assets" in str(why({"area": "north"}))


def test_co_owners_are_the_other_owners_of_the_asset() -> None:
    inv = load("")
    shared = Window.model_validate({"scope": {"site": "bts-dv-01"}, "start": "2025-11-28 22:00", "duration": "1h",
                                    "as_carrier": "viettel"})
    assert co_owners(shared, inv) == ["452-02"]
    assert co_owners(shared.model_copy(update={"as_carrier": None}), inv) == ["452-04", "452-02"]  # the NOC's
    own = shared.model_copy(update={"scope": shared.scope.model_copy(update={"site": "pop-1"})})
    assert co_owners(own, inv) == []


# ------------------------------------------------------------------------------------------------ store


def test_the_store_keeps_windows_and_ends_and_tells_a_reader_when_it_changed(tmp_path: Path) -> None:
    writer, reader = MaintenanceStore(tmp_path / "m.db"), MaintenanceStore(tmp_path / "m.db")
    try:
        assert reader.changed()
        assert not reader.changed()
        w = window(start="2025-11-28 22:00", duration="2h")
        assert writer.add(None, w, ns("2025-11-28 10:00")) == "mw-1"
        assert reader.changed()
        inventory_window = window(start="2025-11-01 00:00", every="daily", duration="1h")
        writer.end("nightly", ns("2025-11-20 00:00"), "le.thi.b", inventory_window=True)
        found = {d.id: d for d in merged({"nightly": inventory_window}, reader)}
        assert found["mw-1"].window == w and found["mw-1"].origin == "store"
        assert found["nightly"].ended_ns == ns("2025-11-20 00:00") and found["nightly"].ended_by == "le.thi.b"
        with pytest.raises(Exception, match="exists already"):
            writer.add("mw-1", w, 0)
    finally:
        writer.close()
        reader.close()


# ------------------------------------------------------------------------------------------------ command


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "inventory.yaml").write_text(INVENTORY)
    (tmp_path / "collector.yaml").write_text(f"queue: {{path: '{tmp_path / 'data' / 'intake.db'}'}}\n"
                                             "http: {enabled: false}\ninventory: inventory.yaml\n")
    return tmp_path / "collector.yaml"


def test_the_command_declares_lists_and_ends_windows(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["-c", str(config), "maintenance", "add", "--site", "bts-dv-01", "--start", "2099-11-28 22:00",
                     "--end", "2099-11-29 02:00", "--tz", "Asia/Ho_Chi_Minh", "--ticket", "VT-CHG-7",
                     "--by", "nguyen.van.a", "--carrier", "viettel"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "declared mw-1: site bts-dv-01, 2099-11-28 22:00 to 2099-11-29 02:00 Asia/Ho_Chi_Minh" in out
    assert "VinaPhone (452-02)" in out   # the co-owner is told
    assert (config.parent / "data" / "maintenance.db").is_file()   # beside the alert state
    assert cli.main(["-c", str(config), "maintenance", "list"]) == 0
    listed = capsys.readouterr().out
    assert "mw-1  [store]  site bts-dv-01" in listed and "next 2099-11-28 22:00 +07" in listed
    assert cli.main(["-c", str(config), "maintenance", "end", "mw-1", "--by", "x", "--carrier", "vinaphone"]) == 2
    assert "may end only the windows it declared" in capsys.readouterr().err
    assert cli.main(["-c", str(config), "maintenance", "end", "mw-1", "--by", "nguyen.van.a"]) == 0
    assert "ended mw-1" in capsys.readouterr().out
    assert cli.main(["-c", str(config), "maintenance", "list"]) == 0
    assert "no windows open or coming" in capsys.readouterr().out


@pytest.mark.parametrize(("args", "error"), [
    (["--site", "bts-vn", "--carrier", "viettel"], "refused: carrier Viettel (452-04) may not declare maintenance "
     "on site bts-vn: it belongs to VinaPhone"),
    (["--device", "sw-9"], "unknown device 'sw-9' (known: bts-01, sw-1)"),
    (["--site", "pop-1", "--tz", "Mars/Olympus"], "--tz: unknown time zone 'Mars/Olympus'"),
    (["--site", "pop-1", "--every", "daily"], "a recurring window (daily) has a duration, not an end"),
    (["--site", "pop-1", "--start", "2000-01-01 00:00", "--end", "2000-01-01 04:00"], "the window is over already"),
])
def test_the_command_refuses_with_a_clear_message(config: Path, capsys: pytest.CaptureFixture[str],
                                                  args: list[str], error: str) -> None:
    base = {"--start": "2099-11-28 22:00", "--end": "2099-11-29 02:00"}
    for key in [k for k in base if k in args]:
        del base[key]
    argv = ["-c", str(config), "maintenance", "add", *args, *[x for kv in base.items() for x in kv], "--by", "a"]
    assert cli.main(argv) == 2
    assert error in capsys.readouterr().err
