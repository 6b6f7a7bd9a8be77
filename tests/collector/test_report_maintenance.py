"""The report's downtime split: planned (inside a window), overrun (after its end, the outage going on) and
unplanned; availability with all downtime counted and with planned downtime excluded; and the files."""

from __future__ import annotations

import csv
from pathlib import Path

from collector.inventory import Inventory
from collector.maintenance import Declared
from collector.report.compute import AvailabilityRow, Outage, Report, ZoneFacts
from collector.report.maintenance import split
from collector.report.period import month_period
from collector.report.render import write_files
from zonewatch import strict

S = 1_000_000_000
H = 3600 * S

INVENTORY = """
zones: {dv: {name: Dinh Vu, areas: [north]}}
carriers: {viettel: {plmn: 452-04, name: Viettel}, vinaphone: {plmn: 452-02, name: VinaPhone}}
sites:
  pop: {zone: dv, area: north, owners: [viettel]}
  bts-site: {zone: dv, area: north, owners: [viettel, vinaphone]}
devices:
  sw: {site: pop, owners: [viettel]}
  bts: {site: bts-site, owners: [viettel, vinaphone]}
links:
  vt-1: {device: sw, ifname: xe-1, carriers: [viettel]}
  vt-2: {device: sw, ifname: xe-2, carriers: [viettel]}
maintenance:
  sunday-fibre:                      # every Sunday 00:00-04:00 in Ho Chi Minh City, on vt-1
    scope: {link: vt-1}
    start: "2025-11-02 00:00"
    every: weekly
    duration: 4h
    time_zone: Asia/Ho_Chi_Minh
    ticket: VT-CHG-1
  viettel-wide:                      # Viettel's own assets only: not the shared BTS site
    scope: {carrier: viettel}
    start: "2025-12-20 00:00"
    duration: 2h
    time_zone: Asia/Ho_Chi_Minh
"""


def test_downtime_splits_into_planned_overrun_and_unplanned_and_availability_is_given_both_ways(
        tmp_path: Path) -> None:
    inventory = strict.load(Inventory, INVENTORY, "inventory.yaml")
    period = month_period("2025-12", "Asia/Ho_Chi_Minh")   # 2025-11-30 17:00 UTC to 2025-12-31 17:00 UTC
    month = period.end_ns - period.start_ns
    sunday = period.start_ns + 6 * 24 * H   # Sunday 7 December, 00:00 local
    outages = [
        # vt-1 down from 23:00 Saturday to 05:00 Sunday: 1 h before the window, 4 h in it, 1 h after its end
        Outage("link_down", "vt-1", ["452-04"], sunday - H, sunday + 5 * H, False),
        Outage("link_down", "vt-2", ["452-04"], sunday + H, sunday + 2 * H, False),   # no window on vt-2
        # the shared BTS site: a carrier-wide window of one owner does not cover it
        Outage("site_down", "bts-site", ["452-04", "452-02"], period.start_ns + 19 * 24 * H,
               period.start_ns + 19 * 24 * H + H, False),
        # Viettel's own site, inside its carrier-wide window (20 December 00:00-02:00 local)
        Outage("site_down", "pop", ["452-04"], period.start_ns + 19 * 24 * H, period.start_ns + 19 * 24 * H + 3 * H,
               False),
    ]
    availability = [AvailabilityRow("site", "pop", ["452-04"], month, month - 3 * H),
                    AvailabilityRow("site", "bts-site", ["452-04", "452-02"], month, month - H),
                    AvailabilityRow("link", "vt-1", ["452-04"], month, month - 6 * H),
                    AvailabilityRow("link", "vt-2", ["452-04"], month, month - H)]
    report = Report(ZoneFacts("dv", "Dinh Vu", carrier_names={"452-04": "Viettel", "452-02": "VinaPhone"}), period,
                    "test", period.end_ns, 300.0, "test", [], availability, [], outages, {}, [])
    windows = [Declared(k, w) for k, w in inventory.maintenance.items()]
    result = split(report, windows, inventory)
    rows = {(r.kind, r.name): r for r in result.rows}

    vt1 = rows[("link", "vt-1")]
    assert (vt1.planned_ns, vt1.overrun_ns, vt1.unplanned_ns) == (4 * H, H, H)
    assert vt1.windows == ["sunday-fibre"]
    assert vt1.percent == 100.0 * (month - 6 * H) / month
    assert vt1.percent_planned_excluded == 100.0 * (month - 6 * H) / (month - 4 * H)
    assert (rows[("link", "vt-2")].planned_ns, rows[("link", "vt-2")].unplanned_ns) == (0, H)
    assert rows[("site", "bts-site")].planned_ns == 0
    pop = rows[("site", "pop")]
    assert (pop.planned_ns, pop.overrun_ns, pop.unplanned_ns) == (2 * H, H, 0)
    assert pop.windows == ["viettel-wide"]

    report.maintenance = result
    write_files(report, tmp_path)
    with open(tmp_path / "maintenance.csv", newline="") as fh:
        table = {(r["kind"], r["name"]): r for r in csv.DictReader(fh)}
    assert table[("link", "vt-1")]["planned_min"] == "240.00" and table[("link", "vt-1")]["overrun_min"] == "60.00"
    assert table[("link", "vt-1")]["availability_excl_planned_pct"] == f"{vt1.percent_planned_excluded:.3f}"
    page = (tmp_path / "report.html").read_text()
    assert "Planned maintenance" in page and "sunday-fibre" in page and "VT-CHG-1" in page
