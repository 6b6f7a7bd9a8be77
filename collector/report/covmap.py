"""One carrier's coverage map of a zone: ONE self-contained HTML file, drawn over the park's own plan, that the zone
authority can open offline (mailed, archived, on a laptop with no network).

What it shows, for one carrier and one period:

    probes         each probe with a position (inventory), coloured by its coverage level over the period: the
                   level its readings held for the middle of the measured time (a time-weighted median: at least
                   half of the time as good or better); grey when the probe has no reading of the carrier
    survey points  each ``survey`` reading with a position (``zonewatch-agent survey``), coloured by its own level
    areas          each area outline, filled with the worst level measured inside it (its probes, and survey
                   points within the outline); an area with no measurement is grey and hatched: unmeasured,
                   never shown as covered

Levels are the report's (``collector.report.compute``): 0 good (RSRP >= good), 1 fair (>= fair), 2 weak (>= hole),
3 hole (below the hole threshold), 4 no service (the modem was not registered), with the zone's thresholds for
the reading's technology (``inventory.zones.<z>.thresholds``), in the report's colours.

How it stays offline: Leaflet (Debian's libjs-leaflet, read from ``LEAFLET_DIR``) is embedded inline, script and
stylesheet (the stylesheet's images as data URIs); the plan image is a data URI; the map uses Leaflet's
``CRS.Simple`` in metres (lat/lon zones are projected around their middle, ``collector.positions.Projection``),
so there is no tile layer and no URL to fetch; the attribution control (a link) is off.

``build`` is pure apart from reading the source; ``render`` is pure; ``write`` writes the file atomically.
"""

from __future__ import annotations

import base64
import html
import json
import mimetypes
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

from collector.positions import Point, Projection, inside, plan_image
from collector.report.period import Period, show_time
from collector.report.source import PointSource, ReportError, Series
from collector.report.timeline import hold

if TYPE_CHECKING:
    from collector.inventory import Inventory

__all__ = ["CoverageMap", "MapPoint", "MapArea", "build", "render", "write", "file_name", "LEAFLET_DIR",
           "UNMEASURED"]

LEAFLET_DIR: Final = Path(os.environ.get("ZONEWATCH_LEAFLET_DIR", "/usr/share/javascript/leaflet"))
LEVELS: Final = ("good", "fair", "weak", "hole", "no service")
COLOURS: Final = ("#1a9850", "#a6d96a", "#fdae61", "#d73027", "#7b3294")   # collector.report.render.LEVEL_COLOURS
UNMEASURED: Final = "#bdbdbd"                                                # collector.report.render.NO_DATA_COLOUR


@dataclass(frozen=True)
class MapPoint:
    """A probe or a survey reading at (x, y) metres; ``level`` None: no reading of the carrier there."""

    kind: Literal["probe", "survey"]
    name: str
    x: float
    y: float
    level: int | None
    detail: str


@dataclass(frozen=True)
class MapArea:
    """An area's outline in metres, and the worst level measured inside it (None: unmeasured)."""

    name: str
    polygon: list[tuple[float, float]]
    level: int | None


@dataclass
class CoverageMap:
    """Everything the HTML shows."""

    zone: str
    title: str
    carrier: str
    carrier_label: str
    period: Period
    generated_ns: int
    thresholds: tuple[float, float, float]   # good, fair, hole (the zone's default, for the legend)
    bounds: tuple[float, float, float, float]   # west, south, east, north (metres)
    image: tuple[str, bytes] | None
    image_bounds: tuple[float, float, float, float] = (0, 0, 0, 0)   # the plan's corners: west, south, east, north
    points: list[MapPoint] = field(default_factory=list)
    areas: list[MapArea] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def file_name(carrier: str) -> str:
    """Return the map's file name beside the report: ``coverage-map-452-04.html``."""
    return f"coverage-map-{re.sub(r'[^A-Za-z0-9_.-]', '_', carrier)}.html"


def _level(rsrp: float, good: float, fair: float, hole: float) -> int:
    return 0 if rsrp >= good else 1 if rsrp >= fair else 2 if rsrp >= hole else 3


def _join(found: dict[str, list[Series]]) -> dict[tuple[tuple[tuple[str, str], ...], int], dict[str, float]]:
    """Return each sample's fields: points of several fields joined on (tags, time)."""
    out: dict[tuple[tuple[tuple[str, str], ...], int], dict[str, float]] = {}
    for name, series in found.items():
        for s in series:
            tags = tuple(sorted(s.tags.items()))
            for t, v in s.points:
                out.setdefault((tags, t), {})[name] = v
    return out


def _median_level(points: Iterable[tuple[int, float]], period: Period, max_gap_ns: int) -> int | None:
    """Return the level held for the middle of the measured time (the time-weighted median level)."""
    pieces = sorted((iv.value, iv.end_ns - iv.start_ns) for iv in hold(points, period.start_ns, period.end_ns,
                                                                        max_gap_ns))
    half = sum(d for _, d in pieces) / 2
    seen = 0
    for value, duration in pieces:
        seen += duration
        if seen >= half and duration:
            return int(value)
    return None


def build(source: PointSource, inventory: Inventory, inventory_file: Path, zone: str, carrier: str, period: Period,
          generated_ns: int, max_gap_s: float = 300.0, survey: str | None = None) -> CoverageMap:
    """Work out carrier ``carrier``'s map of ``zone`` for ``period`` from the store; raise ReportError when the zone
    or carrier is unknown or nothing of the zone has a position; ``collector.positions.PositionError`` when the
    plan image is missing or unreadable."""
    if zone not in inventory.zones:
        raise ReportError(f"zone {zone!r} is not in the inventory (known: {', '.join(sorted(inventory.zones))})")
    found = inventory.carrier_of(carrier)
    if found is None:
        known = ", ".join(f"{k} ({c.plmn})" for k, c in sorted(inventory.carriers.items())) or "none"
        raise ReportError(f"--carrier {carrier!r} is not a carrier of the inventory (known: {known})")
    plmn = found.plmn
    z = inventory.zones[zone]
    probes = {k: p for k, p in inventory.probes.items() if p.zone == zone}
    placed: list[Point] = [p.position for p in probes.values() if p.position is not None]
    placed += [pt for outline in z.outlines.values() for pt in outline]
    if z.plan is not None:
        placed += [z.plan.bottom_left, z.plan.top_right]
    if not placed:
        raise ReportError(f"zone {zone!r} has no positions: give its probes a position, its areas outlines or the "
                          "zone a plan (see the README's Positions)")
    proj = Projection.of(placed)
    image = plan_image(inventory, zone, inventory_file)
    default = z.threshold(None)
    max_gap_ns = int(max_gap_s * 1e9)

    def thresholds(rat: str | None) -> tuple[float, float, float]:
        t = z.threshold(rat)
        return t.good_dbm, t.fair_dbm, t.hole_dbm

    def level_of(fields: dict[str, float], rat: str | None) -> int | None:
        if fields.get("registered", 1.0) < 1:
            return 4
        rsrp = fields.get("rsrp_dbm")
        return None if rsrp is None else _level(rsrp, *thresholds(rat))

    def read(measurement: str, field_name: str) -> list[Series]:
        return [s for s in source.series(measurement, field_name, zone, period.start_ns - max_gap_ns,
                                         period.end_ns) if s.tags.get("carrier") == plmn]

    m = CoverageMap(zone, z.name or zone, plmn, f"{found.name} ({plmn})", period, generated_ns,
                    (default.good_dbm, default.fair_dbm, default.hole_dbm), (0, 0, 0, 0), image)

    # Probes: the level of each reading, held over time, then the middle of the measured time.
    cellular = _join({"registered": read("cellular", "registered"), "rsrp_dbm": read("cellular", "rsrp_dbm")})
    by_probe: dict[str, list[tuple[int, float]]] = {}
    rsrps: dict[str, list[float]] = {}
    for (tags, t), fields in cellular.items():
        d = dict(tags)
        lvl = level_of(fields, d.get("rat"))
        if lvl is not None and d.get("probe"):
            by_probe.setdefault(d["probe"], []).append((t, float(lvl)))
            if "rsrp_dbm" in fields:
                rsrps.setdefault(d["probe"], []).append(fields["rsrp_dbm"])
    probe_levels: dict[str, int | None] = {}
    for key, probe in sorted(probes.items()):
        lvl = _median_level(by_probe.get(key, []), period, max_gap_ns)
        probe_levels[key] = lvl
        if probe.position is None:
            continue
        x, y = proj.point(probe.position)
        values = sorted(rsrps.get(key, []))
        detail = (f"{LEVELS[lvl]} for most of the period; median RSRP {values[len(values) // 2]:.0f} dBm over "
                  f"{len(values)} readings" if lvl is not None and values else
                  f"{LEVELS[lvl]} for most of the period" if lvl is not None else "no reading of this carrier")
        m.points.append(MapPoint("probe", key, x, y, lvl, f"probe {key}" + (f", area {probe.area}" if probe.area
                                                                             else "") + f": {detail}"))

    # Survey readings: each where it was taken.
    fields_wanted = ("registered", "rsrp_dbm", "x_m", "y_m", "lat", "lon")
    readings = _join({f: [s for s in read("survey", f) if survey is None or s.tags.get("survey") == survey]
                      for f in fields_wanted})
    skipped = 0
    for (tags, t), fields in sorted(readings.items(), key=lambda item: item[0][1]):
        if not period.start_ns <= t < period.end_ns:
            continue
        d = dict(tags)
        if proj.kind == "xy" and "x_m" in fields and "y_m" in fields:
            x, y = fields["x_m"], fields["y_m"]
        elif proj.kind == "latlon" and "lat" in fields and "lon" in fields:
            x, y = proj.metres(fields["lon"], fields["lat"])
        else:
            skipped += 1
            continue
        lvl = level_of(fields, d.get("rat"))
        rsrp = f"RSRP {fields['rsrp_dbm']:.0f} dBm" if "rsrp_dbm" in fields else "no RSRP"
        m.points.append(MapPoint("survey", d.get("survey", ""), x, y, lvl,
                                 f"survey {d.get('survey', '')} at {show_time(t, period.tz)}: "
                                 f"{LEVELS[lvl] if lvl is not None else 'unmeasured'}, {rsrp}"))
    if skipped:
        said = "x/y metres" if proj.kind == "xy" else "lat/lon"
        m.notes.append(f"{skipped} survey readings had no position in {said} (the zone's coordinates) and are not "
                       "shown")

    # Areas: the worst level measured inside each outline.
    for area, outline in sorted(z.outlines.items()):
        polygon = [proj.point(p) for p in outline]
        levels = [probe_levels[k] for k, p in probes.items() if p.area == area and probe_levels.get(k) is not None]
        levels += [pt.level for pt in m.points if pt.kind == "survey" and pt.level is not None
                   and inside((pt.x, pt.y), polygon)]
        m.areas.append(MapArea(area, polygon, max((lv for lv in levels if lv is not None), default=None)))

    xs = [x for x, _ in (*((p.x, p.y) for p in m.points), *(q for a in m.areas for q in a.polygon))]
    ys = [y for _, y in (*((p.x, p.y) for p in m.points), *(q for a in m.areas for q in a.polygon))]
    if z.plan is not None:
        (w, s), (e, n) = proj.point(z.plan.bottom_left), proj.point(z.plan.top_right)
        m.image_bounds = (w, s, e, n)
        xs += [w, e]
        ys += [s, n]
    pad = max(max(xs) - min(xs), max(ys) - min(ys), 10.0) * 0.02
    m.bounds = (min(xs) - pad, min(ys) - pad, max(xs) + pad, max(ys) + pad)
    if z.plan is not None:
        m.notes.append("plan: " + os.path.basename(z.plan.image))
    return m


# --------------------------------------------------------------------------------------------------- HTML


def _leaflet() -> tuple[str, str]:
    """Return Leaflet's script and stylesheet, the stylesheet's images inlined; ReportError if it is missing."""
    js, css = LEAFLET_DIR / "leaflet.min.js", LEAFLET_DIR / "leaflet.css"
    if not js.is_file() or not css.is_file():
        raise ReportError(f"Leaflet is not installed ({js} missing): install Debian's libjs-leaflet "
                          "(apt-get install libjs-leaflet), or set ZONEWATCH_LEAFLET_DIR to a folder with "
                          "leaflet.min.js and leaflet.css")

    def inline(match: re.Match[str]) -> str:
        image = LEAFLET_DIR / match.group(1)
        if not image.is_file():
            return "url()"
        kind = mimetypes.guess_type(image.name)[0] or "image/png"
        return f"url(data:{kind};base64,{base64.b64encode(image.read_bytes()).decode()})"

    style = re.sub(r"url\((images/[^)]+)\)", inline, css.read_text(encoding="utf-8"))
    style = style.replace("url(#default#VML)", "none")   # an old Internet Explorer behaviour: nothing to load
    script = js.read_text(encoding="utf-8").replace("</", "<\\/")
    return script, style


_CSS = """
body{font-family:DejaVu Sans,Arial,sans-serif;margin:0;color:#222}
header{padding:10px 16px} h1{font-size:19px;margin:0 0 4px} .meta{color:#555;font-size:13px}
#map{position:absolute;top:78px;bottom:0;left:0;right:290px;background:#fff}
#zw-legend{position:absolute;top:78px;right:0;width:270px;padding:0 10px}
.zw-legend{background:#fff;padding:8px 10px;font-size:12px;line-height:18px;border:1px solid #999}
.zw-legend div{margin:2px 0}
.zw-legend i{display:inline-block;width:14px;height:14px;margin-right:6px;vertical-align:-2px;border:1px solid #444}
.zw-unmeasured-key{background:repeating-linear-gradient(45deg,#bdbdbd 0 3px,#f4f4f4 3px 6px)}
.zw-label{background:transparent;border:0;box-shadow:none;font-weight:bold;font-size:12px}
"""

_SCRIPT = """
(function(){
var d = JSON.parse(document.getElementById('zw-data').textContent);
var map = L.map('map', {crs: L.CRS.Simple, attributionControl: false, minZoom: -6, maxZoom: 6,
                        zoomSnap: 0.1});
var b = [[d.bounds[1], d.bounds[0]], [d.bounds[3], d.bounds[2]]];
if (d.image) { L.imageOverlay(d.image.uri, [[d.image.s, d.image.w], [d.image.n, d.image.e]]).addTo(map); }
var colour = function(level){ return level === null ? d.unmeasured : d.colours[level]; };
d.areas.forEach(function(a){
  var measured = a.level !== null;
  L.polygon(a.polygon.map(function(p){ return [p[1], p[0]]; }), {
    color: '#333', weight: 2, fillColor: measured ? colour(a.level) : 'url(#zw-hatch)',
    fillOpacity: measured ? 0.3 : 1, className: 'zw-area zw-area-' + a.name + (measured ? '' : ' zw-unmeasured')
  }).bindTooltip(a.name + ': ' + (measured ? 'worst measured level ' + d.levels[a.level] : 'unmeasured'))
    .addTo(map);
});
d.points.forEach(function(p){
  var probe = p.kind === 'probe';
  var m = L.circleMarker([p.y, p.x], {radius: probe ? 11 : 6, color: '#222', weight: probe ? 2 : 1,
    fillColor: colour(p.level), fillOpacity: 1, className: probe ? 'zw-probe zw-probe-' + p.name : 'zw-survey'});
  m.bindPopup(p.detail.replace(/&/g, '&amp;').replace(/</g, '&lt;'));
  if (probe) { m.bindTooltip(p.name, {permanent: true, direction: 'right', offset: [12, 0],
                                      className: 'zw-label'}); }
  m.addTo(map);
});
document.getElementById('zw-legend').innerHTML = '<div class=zw-legend>' + d.legend + '</div>';
map.fitBounds(b);
window.zonewatchMap = map;
document.body.setAttribute('data-ready', '1');
})();
"""


def render(m: CoverageMap) -> str:
    """Return the map as one HTML document (no URL in it is fetched: everything is inline or a data URI)."""
    script, style = _leaflet()
    good, fair, hole = m.thresholds
    image = None
    if m.image is not None:
        w, s, e, n = m.image_bounds
        image = {"uri": f"data:{m.image[0]};base64,{base64.b64encode(m.image[1]).decode()}", "w": w, "s": s, "e": e,
                 "n": n}
    keys = [(COLOURS[0], f"good: RSRP &ge; {good:g} dBm"), (COLOURS[1], f"fair: {fair:g} to {good:g} dBm"),
            (COLOURS[2], f"weak: {hole:g} to {fair:g} dBm"), (COLOURS[3], f"hole: below {hole:g} dBm"),
            (COLOURS[4], "no service (not registered)")]
    legend = "".join(f'<div><i style="background:{c}"></i>{t}</div>' for c, t in keys)
    legend += ('<div><i class="zw-unmeasured-key"></i>unmeasured: no reading of this carrier</div>'
               "<div>large circles: probes (their level for most of the period); small: survey readings; "
               "areas: the worst level measured inside</div>")
    data = {"bounds": list(m.bounds), "image": image, "colours": list(COLOURS), "unmeasured": UNMEASURED,
            "levels": list(LEVELS), "legend": legend,
            "points": [{"kind": p.kind, "name": p.name, "x": round(p.x, 2), "y": round(p.y, 2), "level": p.level,
                        "detail": p.detail} for p in m.points],
            "areas": [{"name": a.name, "polygon": [[round(x, 2), round(y, 2)] for x, y in a.polygon],
                       "level": a.level} for a in m.areas]}
    # JSON inside a script element: no "</" may appear (it would end the element early)
    payload = json.dumps(data).replace("</", "<\\/")
    title = f"Coverage of {m.carrier_label} in {m.title}, {m.period.label}"
    meta = (f"Zone {html.escape(m.zone)} · {html.escape(show_time(m.period.start_ns, m.period.tz))} to "
            f"{html.escape(show_time(m.period.end_ns, m.period.tz))} · generated "
            f"{html.escape(show_time(m.generated_ns, m.period.tz))}"
            + "".join(f" · {html.escape(n)}" for n in m.notes))
    hatch = ('<svg width="0" height="0" style="position:absolute" aria-hidden="true"><defs>'
             '<pattern id="zw-hatch" patternUnits="userSpaceOnUse" width="8" height="8" '
             'patternTransform="rotate(45)"><rect width="8" height="8" fill="#f4f4f4"/>'
             f'<rect width="4" height="8" fill="{UNMEASURED}"/></pattern></defs></svg>')
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{style}</style><style>{_CSS}</style></head><body>{hatch}"
            f"<header><h1>{html.escape(title)}</h1><div class=meta>{meta}</div></header>"
            "<div id=map></div><div id=zw-legend></div>"
            f'<script type="application/json" id="zw-data">{payload}</script>'
            f"<script>{script}</script><script>{_SCRIPT}</script></body></html>\n")


def write(m: CoverageMap, path: Path) -> Path:
    """Write the map to ``path`` (a new file renamed over the old: a link there is replaced, never written
    through); return ``path``."""
    text = render(m)
    folder = path.parent if str(path.parent) else Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


def write_all(source: PointSource, inventory: Inventory, inventory_file: Path, zone: str, carriers: Sequence[str],
              period: Period, generated_ns: int, out_dir: Path, max_gap_s: float) -> list[tuple[str, str]]:
    """Write one map per carrier (PLMNs) into ``out_dir`` beside the report; return (PLMN, file name) of each.
    Nothing when the zone has no positions at all."""
    z = inventory.zones.get(zone)
    if z is None or (z.plan is None and not z.outlines and not any(
            p.position is not None for p in inventory.probes.values() if p.zone == zone)):
        return []
    out = []
    for plmn in carriers:
        m = build(source, inventory, inventory_file, zone, plmn, period, generated_ns, max_gap_s)
        write(m, out_dir / file_name(plmn))
        out.append((plmn, file_name(plmn)))
    return out

