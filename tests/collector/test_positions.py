"""Positions in the inventory (collector.positions): probe locations, area outlines and the plan image, checked
when the inventory loads with the key and line named; the image when a map is drawn."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from collector.inventory import Inventory
from collector.positions import PositionError, Projection, inside, plan_image
from zonewatch.strict import ConfigError, load

BASE = """\
zones:
  dv:
    name: Dinh Vu
    areas: [gate, north]
    plan:
      image: plan.png
      bottom_left: {x: 0, y: 0}
      top_right: {x: 800, y: 500}
    outlines:
      gate: [{x: 0, y: 0}, {x: 120, y: 0}, {x: 120, y: 90}, {x: 0, y: 90}]
carriers:
  viettel: {plmn: "452-04", name: Viettel}
probes:
  p1: {zone: dv, area: gate, position: {x: 40, y: 30}, modems: [{name: vt, carrier: viettel}]}
"""

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(Inventory, text, "inventory.yaml")
    return str(info.value)


def test_positions_outlines_and_the_plan_load() -> None:
    inv = load(Inventory, BASE, "inventory.yaml")
    zone = inv.zones["dv"]
    assert zone.plan is not None and zone.plan.top_right.pair == (800, 500)
    assert [p.pair for p in zone.outlines["gate"]][2] == (120, 90)
    assert inv.probes["p1"].position is not None and inv.probes["p1"].position.pair == (40, 30)


def test_a_latitude_out_of_range_is_named_with_its_line() -> None:
    message = error(BASE.replace("position: {x: 40, y: 30}", "position: {lat: 106.77, lon: 20.85}"))
    assert message.startswith("inventory.yaml:14: probes.p1.position")
    assert "lat 106.77 is not a latitude (-90 to 90 degrees)" in message


def test_a_longitude_out_of_range_and_a_half_point_are_refused() -> None:
    assert "lon 200 is not a longitude" in error(BASE.replace("{x: 40, y: 30}", "{lat: 20.8, lon: 200}"))
    assert "a point is {x: .., y: ..} or {lat: .., lon: ..}, got ['x']" in error(BASE.replace("{x: 40, y: 30}",
                                                                                            "{x: 40}"))
    assert "give x/y (metres on the plan) or lat/lon (degrees), not both" in error(
        BASE.replace("{x: 40, y: 30}", "{x: 40, y: 30, lat: 20.8, lon: 106.7}"))


def test_an_outline_needs_three_points() -> None:
    message = error(BASE.replace("[{x: 0, y: 0}, {x: 120, y: 0}, {x: 120, y: 90}, {x: 0, y: 90}]",
                                 "[{x: 0, y: 0}, {x: 120, y: 0}]"))
    assert message.startswith("inventory.yaml:10: zones.dv.outlines.gate")
    assert "an outline is a polygon of at least 3 points, got 2" in message


def test_an_outline_of_an_unknown_area_is_named() -> None:
    message = error(BASE.replace("      gate: [", "      gaet: ["))
    assert "zones.dv.outlines.gaet" in message and "unknown area 'gaet' (the zone's areas: gate, north)" in message


def test_a_zone_mixing_lat_lon_with_x_y_is_refused() -> None:
    message = error(BASE.replace("{x: 40, y: 30}", "{lat: 20.85, lon: 106.77}"))
    assert message.startswith("inventory.yaml:14: probes.p1.position")
    assert "zone 'dv' uses x/y metres (from zones.dv.plan.bottom_left); give this point the same way" in message


def test_plan_corners_must_span_the_image() -> None:
    message = error(BASE.replace("top_right: {x: 800, y: 500}", "top_right: {x: 800, y: -5}"))
    assert "zones.dv.plan" in message and "must be above and to the right of bottom_left" in message
    assert "expected a file path" in error(BASE.replace("image: plan.png", "image: https://tiles.example/p.png"))


def test_the_plan_image_is_read_beside_the_inventory_or_named_with_its_line(tmp_path: Path) -> None:
    inventory_file = tmp_path / "inventory.yaml"
    inventory_file.write_text(BASE)
    inv = load(Inventory, BASE, str(inventory_file))
    with pytest.raises(PositionError) as info:
        plan_image(inv, "dv", inventory_file)
    assert str(info.value).startswith(f"{inventory_file}:6: zones.dv.plan.image: no file 'plan.png' (looked for "
                                      f"{tmp_path / 'plan.png'})")
    (tmp_path / "plan.png").write_bytes(b"not an image at all")
    with pytest.raises(PositionError, match="is not a PNG, JPEG, GIF, WebP or SVG image"):
        plan_image(inv, "dv", inventory_file)
    (tmp_path / "plan.png").write_bytes(PNG)
    assert plan_image(inv, "dv", inventory_file) == ("image/png", PNG)


def test_lat_lon_become_metres_around_the_middle_and_point_in_polygon() -> None:
    from collector.positions import Point

    proj = Projection.of([Point(lat=20.85, lon=106.77), Point(lat=20.86, lon=106.78)])
    x, y = proj.metres(106.78, 20.86)
    assert y == pytest.approx(0.005 * math.pi / 180 * 6_371_008.8, rel=1e-9)   # 556 m north of the middle
    assert x == pytest.approx(0.005 * math.pi / 180 * 6_371_008.8 * math.cos(math.radians(20.855)), rel=1e-9)
    square = [(0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0)]
    assert inside((5, 5), square) and not inside((15, 5), square) and not inside((5, -1), square)
