"""Where things are in a zone: probe positions, area outlines and the park's plan image (inventory ``zones`` and
``probes``), and the arithmetic the coverage map needs.

A zone uses one kind of coordinates throughout, whichever its surveyors have:

    lat/lon   WGS 84 degrees, as a GPS (gpsd) gives them: ``{lat: 20.8512, lon: 106.7731}``
    x/y       metres on the park's own plan, x to the east (right), y to the north (up): ``{x: 120, y: 45}``

Inventory syntax::

    zones:
      dinh-vu:
        areas: [gate, north]
        plan:                                   # optional: the park's plan, drawn under the coverage map
          image: plans/dinh-vu.png              # PNG, JPEG, GIF, WebP or SVG; relative to the inventory's folder
          bottom_left: {x: 0, y: 0}             # where the image's lower-left corner lies
          top_right: {x: 800, y: 500}           # and its upper-right corner (the image is not rotated)
        outlines:                               # optional: each area's outline, a polygon of at least 3 points
          gate: [{x: 0, y: 0}, {x: 120, y: 0}, {x: 120, y: 90}, {x: 0, y: 90}]
    probes:
      p1: {zone: dinh-vu, area: gate, position: {x: 40, y: 30}}

Checked when the inventory loads (the error names the key and its line): a point is exactly one of x/y or
lat/lon; latitudes within -90..90 and longitudes within -180..180; an outline has at least 3 points and names an
area of the zone; every position of a zone (plan corners, outlines, its probes) uses the same kind; the plan's
top-right corner is above and to the right of its bottom-left. The image itself is read when a map is drawn:
``plan_image`` raises ``PositionError`` naming the key, the inventory file and its line when it is missing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import yaml
from pydantic import AfterValidator, field_validator, model_validator

from zonewatch.strict import RefPath, Strict

if TYPE_CHECKING:
    from collector.inventory import Inventory

__all__ = ["Point", "Plan", "Outline", "PositionError", "Kind", "problems", "plan_image", "Projection",
           "inside", "IMAGE_TYPES"]

Kind = Literal["xy", "latlon"]
EARTH_RADIUS_M = 6_371_008.8   # mean radius (IUGG): a park is a few km across, so a local flat projection is exact
                               # to well under a metre
IMAGE_TYPES = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg", b"GIF87a": "image/gif",
               b"GIF89a": "image/gif"}
MAX_IMAGE_BYTES = 32 * 2**20


class PositionError(ValueError):
    """A position cannot be used (the plan image is missing or unreadable); the message names the key."""


class Point(Strict):
    """One place: ``{x: .., y: ..}`` metres on the park's plan, or ``{lat: .., lon: ..}`` degrees."""

    x: float | None = None
    y: float | None = None
    lat: float | None = None
    lon: float | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Point:
        xy = (self.x is not None, self.y is not None)
        ll = (self.lat is not None, self.lon is not None)
        if any(xy) and any(ll):
            raise ValueError("give x/y (metres on the plan) or lat/lon (degrees), not both")
        if not all(xy) and not all(ll):
            given = [k for k in ("x", "y", "lat", "lon") if getattr(self, k) is not None]
            raise ValueError(f"a point is {{x: .., y: ..}} or {{lat: .., lon: ..}}, got {given or 'nothing'}")
        for name in ("x", "y", "lat", "lon"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if self.lat is not None and not -90 <= self.lat <= 90:
            raise ValueError(f"lat {self.lat:g} is not a latitude (-90 to 90 degrees)")
        if self.lon is not None and not -180 <= self.lon <= 180:
            raise ValueError(f"lon {self.lon:g} is not a longitude (-180 to 180 degrees)")
        return self

    @property
    def kind(self) -> Kind:
        return "xy" if self.x is not None else "latlon"

    @property
    def pair(self) -> tuple[float, float]:
        """Return (east, north): (x, y) or (lon, lat)."""
        if self.x is not None and self.y is not None:
            return self.x, self.y
        assert self.lon is not None and self.lat is not None
        return self.lon, self.lat

    def show(self) -> str:
        return f"x {self.x:g} m, y {self.y:g} m" if self.kind == "xy" else f"lat {self.lat:.6f}, lon {self.lon:.6f}"


def _polygon(value: list[Point]) -> list[Point]:
    if len(value) < 3:
        raise ValueError(f"an outline is a polygon of at least 3 points, got {len(value)}")
    return value


# An area's outline: a polygon, closed by itself (do not repeat the first point).
Outline = Annotated[list[Point], AfterValidator(_polygon)]


class Plan(Strict):
    """The park's plan image and where it lies: its lower-left and upper-right corners in the zone's coordinates."""

    image: str
    bottom_left: Point
    top_right: Point

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("expected the path of the plan image (PNG, JPEG, GIF, WebP or SVG)")
        if "://" in value:
            raise ValueError(f"expected a file path, got {value!r}: the map is drawn offline, from files only")
        return value

    @model_validator(mode="after")
    def _placed(self) -> Plan:
        if self.bottom_left.kind != self.top_right.kind:
            raise ValueError("bottom_left and top_right must both be x/y or both lat/lon")
        (w, s), (e, n) = self.bottom_left.pair, self.top_right.pair
        if not (e > w and n > s):
            raise ValueError(f"top_right ({self.top_right.show()}) must be above and to the right of bottom_left "
                             f"({self.bottom_left.show()})")
        return self


def problems(inventory: Inventory) -> list[tuple[RefPath, str]]:
    """Return every position that does not fit its zone: an outline of an unknown area, or coordinates of another
    kind than the rest of the zone's."""
    out: list[tuple[RefPath, str]] = []
    kinds: dict[str, tuple[Kind, str]] = {}   # zone -> (kind, where it was first said)

    def same(zone: str, point: Point, where: RefPath) -> None:
        first = kinds.setdefault(zone, (point.kind, ".".join(str(p) for p in where)))
        if first[0] != point.kind:
            said = "x/y metres" if first[0] == "xy" else "lat/lon degrees"
            out.append((where, f"zone {zone!r} uses {said} (from {first[1]}); give this point the same way"))

    for key, zone in inventory.zones.items():
        if zone.plan is not None:
            same(key, zone.plan.bottom_left, ("zones", key, "plan", "bottom_left"))
        for area, outline in zone.outlines.items():
            if area not in zone.areas:
                listed = ", ".join(zone.areas) or "none defined"
                out.append((("zones", key, "outlines", area), f"unknown area {area!r} (the zone's areas: {listed})"))
                continue
            for i, point in enumerate(outline):
                same(key, point, ("zones", key, "outlines", area, i))
    for key, probe in inventory.probes.items():
        if probe.position is not None and probe.zone in inventory.zones:
            same(probe.zone, probe.position, ("probes", key, "position"))
    return out


def _line(inventory_file: Path, keys: Sequence[str]) -> int | None:
    """Return the line of ``keys`` (a path of mapping keys) in the YAML file, None if it cannot be found."""
    try:
        node = yaml.compose(inventory_file.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None
    for key in keys:
        if not isinstance(node, yaml.MappingNode):
            return None
        node = next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == key), None)
        if node is None:
            return None
    return int(node.start_mark.line) + 1 if node is not None else None


def plan_image(inventory: Inventory, zone: str, inventory_file: Path) -> tuple[str, bytes] | None:
    """Return the MIME type and bytes of ``zone``'s plan image (None: the zone has no plan); raise PositionError,
    naming the inventory's file, line and key, when the image is missing, not a file, too large or not an image."""
    plan = inventory.zones[zone].plan
    if plan is None:
        return None
    path = Path(plan.image)
    if not path.is_absolute():
        path = inventory_file.parent / path
    line = _line(inventory_file, ("zones", zone, "plan", "image"))
    where = f"{inventory_file}:{line}" if line else str(inventory_file)

    def fail(problem: str) -> PositionError:
        return PositionError(f"{where}: zones.{zone}.plan.image: {problem} (a path is relative to the inventory's "
                             "folder)")

    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_IMAGE_BYTES + 1)
    except FileNotFoundError:
        raise fail(f"no file {plan.image!r} (looked for {path})") from None
    except IsADirectoryError:
        raise fail(f"{plan.image!r} is a folder, not an image file") from None
    except OSError as exc:
        raise fail(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_IMAGE_BYTES:
        raise fail(f"{path} is larger than {MAX_IMAGE_BYTES // 2**20} MiB: scale the plan down")
    mime = next((t for magic, t in IMAGE_TYPES.items() if data.startswith(magic)), None)
    if mime is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        mime = "image/webp"
    if mime is None and b"<svg" in data[:2048]:
        mime = "image/svg+xml"
    if mime is None:
        raise fail(f"{path} is not a PNG, JPEG, GIF, WebP or SVG image")
    return mime, data


@dataclass(frozen=True)
class Projection:
    """A zone's coordinates as metres east and north of an origin: x/y are metres already; lat/lon go through a
    local equirectangular projection around ``origin`` (exact to centimetres over a park)."""

    kind: Kind
    origin: tuple[float, float] = (0.0, 0.0)   # (lon, lat) for lat/lon zones

    @classmethod
    def of(cls, points: Iterable[Point]) -> Projection:
        """Return the projection of a zone whose positions include ``points`` (origin: their middle)."""
        pts = list(points)
        if not pts or pts[0].kind == "xy":
            return cls("xy")
        lons = [p.pair[0] for p in pts]
        lats = [p.pair[1] for p in pts]
        return cls("latlon", ((min(lons) + max(lons)) / 2, (min(lats) + max(lats)) / 2))

    def metres(self, east: float, north: float) -> tuple[float, float]:
        """Return (x, y) metres of a position given as (x, y) or (lon, lat) in this zone's kind."""
        if self.kind == "xy":
            return east, north
        lon0, lat0 = self.origin
        x = math.radians(east - lon0) * EARTH_RADIUS_M * math.cos(math.radians(lat0))
        y = math.radians(north - lat0) * EARTH_RADIUS_M
        return x, y

    def point(self, p: Point) -> tuple[float, float]:
        return self.metres(*p.pair)


def inside(point: tuple[float, float], polygon: Sequence[tuple[float, float]]) -> bool:
    """Return True if ``point`` lies inside ``polygon`` (even-odd rule; a point on an edge may fall either way)."""
    x, y = point
    result = False
    j = len(polygon) - 1
    for i, (xi, yi) in enumerate(polygon):
        xj, yj = polygon[j]
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            result = not result
        j = i
    return result
