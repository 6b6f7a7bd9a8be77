"""``zonewatch-collector coverage-map`` opened in Debian's headless Chromium: the planted hole shows in the hole's
colour at its probe on that carrier's map and in the good colour on the other carrier's; an area nobody measured
is hatched grey; and the page asks for nothing outside its own file: the browser's network log of each page holds
only the file and data URIs, and the tripwire proxy (the browser's only way out) sees no host the page names."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.image import imread, imsave

from collector.report.covmap import COLOURS, UNMEASURED
from collector.storage import SqliteStorage
from collector.storage.sqlite import SqliteWriter
from tests import services
from tests.integration.test_report import WebDriver
from zonewatch import wire

pytestmark = pytest.mark.integration

S = 10**9
T0 = 1_767_225_600 * S   # 2026-01-01 00:00 UTC
VT, VN = "452-04", "452-02"
INVENTORY = """\
zones:
  dv:
    name: Dinh Vu
    areas: [gate, dock, yard]
    plan: {image: plan.png, bottom_left: {x: 0, y: 0}, top_right: {x: 400, y: 300}}
    outlines:
      gate: [{x: 10, y: 10}, {x: 150, y: 10}, {x: 150, y: 140}, {x: 10, y: 140}]
      dock: [{x: 250, y: 160}, {x: 390, y: 160}, {x: 390, y: 290}, {x: 250, y: 290}]
      yard: [{x: 170, y: 20}, {x: 240, y: 20}, {x: 240, y: 120}, {x: 170, y: 120}]
carriers:
  viettel: {plmn: "452-04", name: Viettel}
  vinaphone: {plmn: "452-02", name: VinaPhone}
probes:
  p-gate: {zone: dv, area: gate, position: {x: 80, y: 75}, modems: &both [{name: vt, carrier: viettel},
                                                                         {name: vn, carrier: vinaphone}]}
  p-dock: {zone: dv, area: dock, position: {x: 320, y: 225}, modems: *both}
"""


class Tripwire:
    """A TCP listener given to Chromium as its proxy: every connection is a request that tried to leave."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.requests: list[str] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.done.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            conn.settimeout(1.0)
            try:
                first = conn.recv(4096).split(b"\r\n", 1)[0].decode("latin-1")
            except OSError:
                first = "?"
            self.requests.append(first)
            conn.close()

    def stop(self) -> None:
        self.done.set()
        self.thread.join(5)
        self.sock.close()


def store(path: Path) -> None:
    """An hour of readings, one a minute: p-gate is a hole on Viettel only; and a short walk by the dock."""
    writer = SqliteWriter(SqliteStorage(type="sqlite", path=str(path)))
    try:
        for n, (probe, carrier, rsrp) in enumerate((("p-gate", VT, -118.0), ("p-gate", VN, -80.0),
                                                    ("p-dock", VT, -85.0), ("p-dock", VN, -88.0))):
            rows = tuple(wire.Sample("cellular", {"carrier": carrier, "modem": "m", "rat": "lte"},
                                     {"rsrp_dbm": rsrp, "registered": True}, T0 + i * 60 * S) for i in range(60))
            writer.write([wire.Batch("dv", probe, n + 1, T0, rows)])
        walk = tuple(wire.Sample("survey", {"survey": "walk-1", "carrier": VT, "modem": "vt", "rat": "lte"},
                                 {"rsrp_dbm": -92.0 - i, "registered": True, "x_m": 270.0 + 10 * i, "y_m": 200.0,
                                  "fix": 0}, T0 + (600 + i * 5) * S) for i in range(8))
        writer.write([wire.Batch("dv", "kit", 1, T0, walk)])
    finally:
        writer.close()


def make_map(tmp: Path, carrier: str) -> Path:
    out = tmp / f"map-{carrier}.html"
    done = subprocess.run([sys.executable, "-m", "collector", "-c", str(tmp / "none.yaml"), "coverage-map", "--zone",
                           "dv", "--carrier", carrier, "--out", str(out), "--inventory", str(tmp / "inventory.yaml"),
                           "--sqlite", str(tmp / "store.db"), "--from", "2026-01-01T00:00:00+00:00", "--to",
                           "2026-01-01T01:00:00+00:00"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}" in done.stdout
    return out


def rgb(colour: str) -> np.ndarray[Any, Any]:
    return np.array([int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])


def look(driver: WebDriver, page: Path, shot: Path) -> tuple[np.ndarray[Any, Any], dict[str, Any]]:
    """Open ``page``, wait until the map is drawn, and return the screenshot and where things are on it."""
    driver.open(page.as_uri())
    services.wait_for(lambda: driver.script("return document.body.getAttribute('data-ready')") == "1", 20,
                      "the map to be drawn")
    where = driver.script("""
        const box = sel => { const r = document.querySelector(sel).getBoundingClientRect();
                             return {x: r.x + r.width / 2, y: r.y + r.height / 2, w: r.width, h: r.height}; };
        return {gate: box('.zw-probe-p-gate'), dock: box('.zw-probe-p-dock'), yard: box('.zw-area-yard'),
                yardFill: document.querySelector('.zw-area-yard').getAttribute('fill'),
                surveys: document.querySelectorAll('.zw-survey').length,
                image: document.querySelector('.leaflet-image-layer').src.slice(0, 22),
                dpr: window.devicePixelRatio};""")
    shot.write_bytes(driver.screenshot())
    return imread(shot), where


def pixel(image: np.ndarray[Any, Any], at: dict[str, float], dpr: float) -> np.ndarray[Any, Any]:
    return image[int(at["y"] * dpr), int(at["x"] * dpr), :3]


def test_the_hole_shows_on_its_carriers_map_and_nothing_is_fetched(tmp_path: Path) -> None:
    (tmp_path / "inventory.yaml").write_text(INVENTORY)
    plan = np.full((300, 400, 3), 0.96)
    plan[140:160, :, :] = 0.8   # a road across the park
    imsave(tmp_path / "plan.png", plan)
    store(tmp_path / "store.db")
    maps = {VT: make_map(tmp_path, "viettel"), VN: make_map(tmp_path, "452-02")}
    text = maps[VT].read_text()
    assert "<script src" not in text and "<link" not in text and "data:image/png;base64," in text
    tripwire = Tripwire()
    driver = WebDriver(tmp_path / "chromium", args=[f"--proxy-server=http://127.0.0.1:{tripwire.port}",
                                                    "--proxy-bypass-list=<-loopback>"],
                       capabilities={"goog:loggingPrefs": {"performance": "ALL"}})
    try:
        seen = {}
        for carrier, page in maps.items():
            seen[carrier] = look(driver, page, tmp_path / f"shot-{carrier}.png")
            log = driver._call("POST", f"/session/{driver.session}/se/log", {"type": "performance"})
            urls = {json.loads(e["message"])["message"]["params"]["request"]["url"] for e in log
                    if json.loads(e["message"])["message"]["method"] == "Network.requestWillBeSent"}
            # the browser's own pages (its new tab, before ours) are chrome:// and never the network
            urls = {u for u in urls if not u.startswith(("chrome://", "chrome-untrusted://", "about:"))}
            assert urls and all(u == page.as_uri() or u.startswith("data:") for u in urls), urls
    finally:
        driver.close()
        tripwire.stop()
    # The proxy (the browser's only way out) sees the browser's own chatter (its search engine's preconnect, its
    # update and clock checks), never a host the page names: everything the page could fetch it must name.
    hosts = {re.split(r"[\s/:]+", r.split(" ", 1)[1].removeprefix("http://"))[0] for r in tripwire.requests if " " in r}
    pages = "".join(p.read_text() for p in maps.values())
    assert not [h for h in hosts if h and h in pages], hosts
    tol = 0.03
    image, where = seen[VT]
    assert where["image"] == "data:image/png;base64," and where["surveys"] == 8
    assert np.abs(pixel(image, where["gate"], where["dpr"]) - rgb(COLOURS[3])).max() <= tol   # the hole, Viettel
    assert np.abs(pixel(image, where["dock"], where["dpr"]) - rgb(COLOURS[0])).max() <= tol   # -85 dBm: good
    image, where = seen[VN]
    assert where["surveys"] == 0   # the walk was on Viettel's modem only
    assert np.abs(pixel(image, where["gate"], where["dpr"]) - rgb(COLOURS[0])).max() <= tol   # good on VinaPhone
    # the yard: nobody measured it: hatched grey, on both maps, never a level's colour
    for carrier in (VT, VN):
        image, where = seen[carrier]
        yard = where["yard"]
        dpr = where["dpr"]
        box = image[int((yard["y"] - yard["h"] / 4) * dpr):int((yard["y"] + yard["h"] / 4) * dpr),
                    int((yard["x"] - yard["w"] / 4) * dpr):int((yard["x"] + yard["w"] / 4) * dpr), :3]
        grey = (np.abs(box - rgb(UNMEASURED)) <= tol).all(axis=2).mean()
        assert where["yardFill"] == "url(#zw-hatch)" and 0.3 < grey < 0.7, (carrier, grey)
        for colour in COLOURS:
            assert (np.abs(box - rgb(colour)) <= tol).all(axis=2).sum() == 0, (carrier, colour)
