"""Write a Report as files: ``report.html`` (tables and plots, one self-contained file: the plots are PNG
data URIs, so it can be mailed or archived as it is) and one CSV per table.

    report.html        the zone authority's monthly evidence
    coverage.csv       per carrier and area: measured minutes, % at each threshold, hole and no-service minutes
    availability.csv   per site and link: measured and up minutes, availability %
    redundancy.csv     per redundancy group and carrier: minutes degraded, in outage, without redundancy
    outages.csv        every outage: kind, what, carriers, start, end, minutes, whether it was still going on
    response.csv       per carrier: alerts paged, acknowledged, escalated; time to acknowledge and to resolve
    maintenance.csv    per site, link and service: downtime planned / overrun / unplanned; availability both ways

Plots are drawn with matplotlib's object API on an Agg canvas (no pyplot, no global state, no display).
"""

from __future__ import annotations

import base64
import csv
import errno
import html
import io
import os
import secrets
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Final

from collector.report import kpi as indicators
from collector.report import maintenance as planned
from collector.report.compute import LEVELS, Report
from collector.report.period import show_time, time_zone
from collector.report.response import NOTE as RESPONSE_NOTE
from collector.report.response import table as response_table
from collector.report.source import ReportError
from collector.report.timeline import Interval

__all__ = ["write_files", "LEVEL_COLOURS", "NO_DATA_COLOUR", "FILES"]

# Colours of the coverage levels in every plot (the report's tests look for them in a screenshot).
LEVEL_COLOURS: Final = ("#1a9850", "#a6d96a", "#fdae61", "#d73027", "#7b3294")
NO_DATA_COLOUR: Final = "#bdbdbd"
FILES: Final = ("report.html", "coverage.csv", "availability.csv", "redundancy.csv", "outages.csv", "response.csv",
                    "maintenance.csv", "kpi.csv")
_MIN = 60e9


def _minutes(ns: int) -> str:
    return f"{ns / _MIN:.2f}"


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def _tables(report: Report) -> dict[str, tuple[list[str], list[list[str]]]]:
    """Return each table as (header, rows) of text, as the CSV files and the HTML show them."""
    zone, tz, period_ns = report.facts.zone, report.period.tz, report.period.end_ns - report.period.start_ns
    names = report.facts.carrier_names
    coverage = [[zone, r.carrier, names.get(r.carrier, ""), r.area, _minutes(r.measured_ns), _pct(r.share(0)),
                 _pct(r.share(1)), _pct(r.share(2)), _minutes(r.level_ns.get(3, 0)), _minutes(r.level_ns.get(4, 0)),
                 _minutes(period_ns - r.measured_ns),
                 "" if r.median_rsrp_dbm is None else f"{r.median_rsrp_dbm:.1f}"] for r in report.coverage]
    availability = [[zone, r.kind, r.name, " ".join(r.carriers), _minutes(r.measured_ns), _minutes(r.up_ns),
                     _minutes(r.measured_ns - r.up_ns), _pct(r.percent)] for r in report.availability]
    redundancy = [[zone, r.group, r.carrier, _minutes(r.measured_ns), _minutes(r.degraded_ns), _minutes(r.outage_ns),
                   _minutes(r.degraded_ns + r.outage_ns),
                   _pct(100.0 * (r.degraded_ns + r.outage_ns) / r.measured_ns if r.measured_ns else None)]
                  for r in report.redundancy]
    outages = [[zone, o.kind, o.name, " ".join(o.carriers), show_time(o.start_ns, tz), show_time(o.end_ns, tz),
                _minutes(o.end_ns - o.start_ns), "yes" if o.ongoing else "no"] for o in report.outages]
    return {
        "coverage": (["zone", "carrier", "carrier_name", "area", "measured_min", "good_pct", "fair_or_better_pct",
                      "above_hole_pct", "hole_min", "no_service_min", "no_data_min", "median_rsrp_dbm"], coverage),
        "availability": (["zone", "kind", "name", "carriers", "measured_min", "up_min", "down_min",
                          "availability_pct"], availability),
        "redundancy": (["zone", "group", "carrier", "measured_min", "degraded_min", "outage_min",
                        "without_redundancy_min", "without_redundancy_pct"], redundancy),
        "outages": (["zone", "kind", "name", "carriers", "start", "end", "duration_min", "ongoing"], outages),
        "response": response_table(zone, report.response, names),
        "maintenance": planned.table(zone, report.maintenance),
        "kpi": indicators.table(zone, report.kpi, names),
    }


# ------------------------------------------------------------------------------------------------ plots


def _png(fig: object) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    assert isinstance(fig, Figure)
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _coverage_plot(report: Report) -> str | None:
    from matplotlib.figure import Figure

    rows = report.coverage
    if not rows:
        return None
    period_ns = report.period.end_ns - report.period.start_ns
    fig = Figure(figsize=(10, 0.45 * len(rows) + 1.6), layout="constrained")
    ax = fig.add_subplot()
    labels = [f"{report.carrier_label(r.carrier)} · {r.area}" for r in rows]
    left = [0.0] * len(rows)
    parts = [(name, colour, [100.0 * r.level_ns.get(level, 0) / period_ns for r in rows])
             for level, (name, colour) in enumerate(zip(LEVELS, LEVEL_COLOURS, strict=True))]
    parts.append(("no data", NO_DATA_COLOUR, [100.0 * (period_ns - r.measured_ns) / period_ns for r in rows]))
    for name, colour, widths in parts:
        ax.barh(labels, widths, left=left, color=colour, label=name, height=0.7)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of the period")
    ax.invert_yaxis()
    ax.set_title("Coverage level: share of the period, per carrier and area")
    fig.legend(ncols=6, loc="outside lower center", frameon=False)
    return _png(fig)


def _time_axis(ax: object, report: Report) -> None:
    """Make ``ax``'s x axis the period, with dates in the report's time zone (x values from _x)."""
    from matplotlib.axes import Axes
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    assert isinstance(ax, Axes)
    tz = time_zone(report.period.tz)
    ax.xaxis_date(tz)
    locator = AutoDateLocator(tz=tz)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator, tz=tz))  # type: ignore[no-untyped-call]
    ax.set_xlim(_x(report.period.start_ns), _x(report.period.end_ns))


def _x(ns: int) -> float:
    """Return ``ns`` as matplotlib's date number (days since its epoch)."""
    from matplotlib.dates import date2num

    return float(date2num(datetime.fromtimestamp(ns / 1e9, timezone.utc)))  # type: ignore[no-untyped-call]


def _rsrp_plot(report: Report) -> str | None:
    from matplotlib.figure import Figure

    areas = sorted({area for _, area in report.rsrp})
    if not areas:
        return None
    fig = Figure(figsize=(10, 2.4 * len(areas) + 0.6), layout="constrained")
    axes = fig.subplots(len(areas), 1, sharex=True, squeeze=False)[:, 0]
    good, fair, hole = report.facts.thresholds
    for ax, area in zip(axes, areas, strict=True):
        for (carrier, a), timeline in sorted(report.rsrp.items()):
            if a != area or not timeline:
                continue
            xs: list[float] = []
            ys: list[float] = []
            last_end: int | None = None
            for iv in _thin(timeline, report):
                if last_end is not None and last_end != iv.start_ns:
                    xs.append(_x(last_end))  # a gap: break the line
                    ys.append(float("nan"))
                xs += [_x(iv.start_ns), _x(iv.end_ns)]
                ys += [iv.value, iv.value]
                last_end = iv.end_ns
            ax.plot(xs, ys, label=report.carrier_label(carrier), linewidth=1.5)
        for value, colour in ((good, LEVEL_COLOURS[0]), (fair, LEVEL_COLOURS[2]), (hole, LEVEL_COLOURS[3])):
            ax.axhline(value, color=colour, linestyle="--", linewidth=1)
        ax.set_ylabel("RSRP dBm")
        ax.set_title(f"{area}: median RSRP of the area's probes (dashed: good, fair, hole thresholds)",
                     fontsize=10)
        ax.legend(loc="lower left", fontsize=8)
        _time_axis(ax, report)
    return _png(fig)


def _thin(timeline: Sequence[Interval], report: Report, buckets: int = 800) -> list[Interval]:
    """Merge a long timeline into at most about ``buckets`` pieces (time-weighted mean each) for plotting."""
    if len(timeline) <= buckets:
        return list(timeline)
    start = report.period.start_ns
    width = (report.period.end_ns - start) // buckets or 1
    out: list[Interval] = []
    current: list[Interval] = []
    for iv in timeline:
        if current and ((iv.start_ns - start) // width != (current[0].start_ns - start) // width
                        or iv.start_ns != current[-1].end_ns):
            out.append(_mean(current))
            current = []
        current.append(iv)
    if current:
        out.append(_mean(current))
    return out


def _mean(pieces: Sequence[Interval]) -> Interval:
    weight = sum(iv.end_ns - iv.start_ns for iv in pieces)
    value = sum(iv.value * (iv.end_ns - iv.start_ns) for iv in pieces) / weight
    return Interval(pieces[0].start_ns, pieces[-1].end_ns, value)


def _availability_plot(report: Report) -> str | None:
    from matplotlib.figure import Figure

    rows = [r for r in report.availability if r.percent is not None]
    if not rows:
        return None
    fig = Figure(figsize=(10, 0.4 * len(rows) + 1.2), layout="constrained")
    ax = fig.add_subplot()
    labels = [f"{r.kind} {r.name}" for r in rows]
    values = [r.percent or 0.0 for r in rows]
    colours = [LEVEL_COLOURS[0] if v >= 99.9 else LEVEL_COLOURS[2] if v >= 99 else LEVEL_COLOURS[3] for v in values]
    bars = ax.barh(labels, values, color=colours, height=0.7)
    ax.bar_label(bars, labels=[f"{v:.2f} %" for v in values], padding=3, fontsize=8)
    ax.set_xlim(0, 110)
    ax.invert_yaxis()
    ax.set_xlabel("availability, % of the measured time")
    ax.set_title("Availability of sites and links")
    return _png(fig)


def _timeline_plot(report: Report) -> str | None:
    from matplotlib.figure import Figure

    rows: dict[str, list[tuple[int, int, str]]] = {}
    colour = {"site_down": LEVEL_COLOURS[3], "link_down": LEVEL_COLOURS[3], "service_outage": LEVEL_COLOURS[4],
              "no_service": LEVEL_COLOURS[4]}
    for o in report.outages:
        rows.setdefault(f"{o.kind.replace('_', ' ')}: {o.name} {' '.join(o.carriers)}", []).append(
            (o.start_ns, o.end_ns, colour[o.kind]))
    for name, a, b in report.degraded:
        rows.setdefault(f"redundancy lost: {name}", []).append((a, b, LEVEL_COLOURS[2]))
    if not rows:
        return None
    fig = Figure(figsize=(10, 0.35 * len(rows) + 1.4), layout="constrained")
    ax = fig.add_subplot()
    for y, (_label, spans) in enumerate(sorted(rows.items())):
        ax.broken_barh([(_x(a), _x(b) - _x(a)) for a, b, _ in spans], (y - 0.35, 0.7),
                       facecolors=[c for _, _, c in spans])
    ax.set_yticks(range(len(rows)), [label for label, _ in sorted(rows.items())], fontsize=8)
    ax.invert_yaxis()
    _time_axis(ax, report)
    ax.set_title("Outages (red, purple) and time without redundancy (orange)")
    return _png(fig)


# ------------------------------------------------------------------------------------------------ HTML

_CSS = """
body{font-family:DejaVu Sans,Arial,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:22px;margin-bottom:4px} h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right} th{background:#f2f2f2}
td.t{text-align:left} .meta{color:#555;font-size:13px} img{max-width:100%;display:block;margin:8px 0}
.note{font-size:12px;color:#555;max-width:900px}
"""


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], text_columns: int) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f'<td{" class=t" if i < text_columns else ""}>{html.escape(c)}</td>'
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body or '<tr><td class=t>none</td></tr>'}</table>"


def _maps(report: Report) -> str:
    """Return the links to the coverage maps written beside the report (collector.report.covmap), if any."""
    if not report.maps:
        return ""
    links = "".join(f'<li><a href="{html.escape(name)}">{html.escape(report.carrier_label(plmn))}</a></li>'
                    for plmn, name in report.maps)
    return ("<h2>Coverage maps</h2><p class=note>One file per carrier beside this report, drawn over the park's "
            "plan; it opens offline. Probes and survey readings are coloured by level; an area with no measurement "
            f"is grey and hatched (unmeasured), never shown as covered.</p><ul>{links}</ul>")


def _img(uri: str | None, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="{uri}">' if uri else f"<p class=note>{html.escape(alt)}: no data.</p>"


def _html(report: Report, tables: dict[str, tuple[list[str], list[list[str]]]]) -> str:
    f = report.facts
    good, fair, hole = f.thresholds
    title = f"ZoneWatch report: {f.name or f.zone}, {report.period.label}"
    meta = (f"Zone {html.escape(f.zone)} · period {html.escape(show_time(report.period.start_ns, report.period.tz))}"
            f" to {html.escape(show_time(report.period.end_ns, report.period.tz))} · from "
            f"{html.escape(report.source)} · generated {html.escape(show_time(report.generated_ns, report.period.tz))}")

    def drop(table: tuple[list[str], list[list[str]]]) -> tuple[list[str], list[list[str]]]:
        return table[0][1:], [r[1:] for r in table[1]]  # the zone column is the title's

    parts = [
        f"<h1>{html.escape(title)}</h1><p class=meta>{meta}</p>",
        "<p class=note>Every figure is time: a reading holds until the next one, at most "
        f"{report.max_gap_s:g} s; time without readings is counted as no data, never as covered or up. "
        f"Coverage from {html.escape(report.coverage_from)}; thresholds: good ≥ {good:g} dBm, fair ≥ {fair:g} dBm, "
        f"hole below {hole:g} dBm (RSRP). Shares are of the measured time. A site is up while every device at "
        "it answers; a link while its interface is up and its device answers.</p>",
        "<h2>Coverage per carrier and area</h2>", _img(_coverage_plot(report), "coverage plot"),
        _table(*drop(tables["coverage"]), text_columns=3), _img(_rsrp_plot(report), "RSRP plot"),
        "<h2>Availability of sites and links</h2>", _img(_availability_plot(report), "availability plot"),
        _table(*drop(tables["availability"]), text_columns=3),
        "<h2>Redundancy</h2>", _table(*drop(tables["redundancy"]), text_columns=2),
        "<h2>Outages</h2>", _img(_timeline_plot(report), "outage timeline"),
        _table(*drop(tables["outages"]), text_columns=5),
        "<h2>Response to alerts</h2>", f"<p class=note>{html.escape(RESPONSE_NOTE)}</p>",
        _table(*drop(tables["response"]), text_columns=2),
        "<h2>Planned maintenance</h2>", f"<p class=note>{html.escape(planned.NOTE)}</p>",
        _table(*planned.windows_table(report.maintenance, report.period.start_ns, report.period.end_ns,
                                      report.period.tz), text_columns=6),
        _table(*drop(tables["maintenance"]), text_columns=3),
        indicators.section(report.kpi, report.facts.carrier_names),
        _maps(report),
    ]
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>\n")


def write_files(report: Report, out_dir: Path) -> Path:
    """Write report.html and the CSV files into ``out_dir`` (created if needed); return the HTML's path.

    No symbolic link is followed: ``out_dir`` itself may not be one (ReportError), and each file is written
    under a new name in the folder and renamed over the old one, so a link planted in the folder under one of
    the report's names is replaced, never written through.
    """
    linked = ReportError(f"{out_dir} is a symbolic link: give the folder itself (the report is never written "
                         "through a link)")
    if out_dir.is_symlink():
        raise linked
    out_dir.mkdir(parents=True, exist_ok=True)
    try:  # O_NOFOLLOW: the folder checked above may have been swapped for a link since
        folder = os.open(out_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and out_dir.is_symlink():
            raise linked from None
        raise
    try:
        tables = _tables(report)
        for name, (header, rows) in tables.items():
            text = io.StringIO(newline="")
            writer = csv.writer(text)
            writer.writerow(header)
            writer.writerows(rows)
            _replace(folder, f"{name}.csv", text.getvalue().encode("utf-8"))
        _replace(folder, "report.html", _html(report, tables).encode("utf-8"))
    finally:
        os.close(folder)
    return out_dir / "report.html"


def _replace(folder: int, name: str, data: bytes) -> None:
    """Write ``data`` to a new file in the open folder ``folder`` and rename it to ``name``, replacing whatever
    ``name`` was (a file, or a symbolic link: the link goes, its target is untouched)."""
    temp = f".{name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666, dir_fd=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(temp, name, src_dir_fd=folder, dst_dir_fd=folder)
    except BaseException:
        try:
            os.unlink(temp, dir_fd=folder)
        except FileNotFoundError:
            pass
        raise
