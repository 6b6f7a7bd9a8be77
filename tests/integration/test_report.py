"""``zonewatch-collector report`` on the zone scenario, stored through mosquitto and the collector in both
VictoriaMetrics and SQLite: the CSV figures are the ones worked out by hand in ``zone_scenario``, both
stores give the same files, and the HTML, opened in headless Chromium, shows its plots."""

from __future__ import annotations

import base64
import csv
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.image import imread

from collector.report.render import LEVEL_COLOURS
from tests import services
from tests.integration import zone_scenario as scn

pytestmark = pytest.mark.integration

# The machine's known-good flags for headless Chromium (no network behind it, running as root).
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@dataclass(frozen=True)
class Stores:
    tmp: Path
    t0_s: int
    vm_url: str
    sqlite: Path
    inventory: Path


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stores]:
    tmp = tmp_path_factory.mktemp("report")
    t0_ns = scn.start_minute_ns(time.time())
    broker = services.start_mosquitto(tmp / "mosquitto")
    vm = services.start_victoriametrics(tmp / "vm")
    db = tmp / "zonewatch.db"
    inventory = tmp / "inventory.yaml"
    inventory.write_text(scn.INVENTORY_YAML)
    try:
        scn.fill(broker.port, tmp, {"vm": f"storage: {{type: victoriametrics, url: '{vm.url}'}}",
                                    "sqlite": f"storage: {{type: sqlite, path: '{db}'}}"}, t0_ns)
        scn.wait_for_vm(vm.url, t0_ns)
        yield Stores(tmp, t0_ns // 10**9, vm.url, db, inventory)
    finally:
        vm.stop()
        broker.stop()


def iso(t_s: float) -> str:
    return datetime.fromtimestamp(t_s, timezone.utc).isoformat()


def report(stores: Stores, storage_yaml: str, name: str) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """Run the report command for the scenario hour with a collector configuration naming the store."""
    cfg = stores.tmp / f"collector-{name}.yaml"
    cfg.write_text(f"{storage_yaml}\ninventory: {stores.inventory.name}\n")
    out = stores.tmp / f"out-{name}"
    done = subprocess.run([sys.executable, "-m", "collector", "-c", str(cfg), "report", "--zone", scn.ZONE,
                           "--from", iso(stores.t0_s), "--to", iso(stores.t0_s + scn.MINUTES * 60), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return out, done


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def near(text: str, value: float, places: int = 2) -> bool:
    return abs(float(text) - value) <= 10**-places


@pytest.fixture(scope="module")
def outputs(stores: Stores) -> dict[str, Path]:
    vm_out, vm_run = report(stores, f"storage: {{type: victoriametrics, url: '{stores.vm_url}'}}", "vm")
    db_out, _ = report(stores, f"storage: {{type: sqlite, path: '{stores.sqlite}'}}", "sqlite")
    assert f"wrote {vm_out / 'report.html'}" in vm_run.stdout
    return {"victoriametrics": vm_out, "sqlite": db_out}


@pytest.mark.parametrize("store", ["victoriametrics", "sqlite"])
def test_report_figures_are_the_hand_computed_ones(stores: Stores, outputs: dict[str, Path], store: str) -> None:
    out = outputs[store]
    coverage = scn.report_rows(rows(out / "coverage.csv"), "carrier", "area")
    assert set(coverage) == set(scn.REPORT_COVERAGE)
    for key, (measured, good, fair, above_hole, hole, no_service, median) in scn.REPORT_COVERAGE.items():
        r = coverage[key]
        assert r["zone"] == scn.ZONE and r["carrier_name"] == {scn.VT: "Viettel", scn.VN: "VinaPhone"}[key[0]]
        got = [r["measured_min"], r["good_pct"], r["fair_or_better_pct"], r["above_hole_pct"], r["hole_min"],
               r["no_service_min"], r["no_data_min"], r["median_rsrp_dbm"]]
        want = [measured, good, fair, above_hole, hole, no_service, 60 - measured, median]
        assert all(near(g, w) for g, w in zip(got, want, strict=True)), (key, got, want)

    availability = scn.report_rows(rows(out / "availability.csv"), "kind", "name")
    assert set(availability) == set(scn.REPORT_AVAILABILITY)
    for key, (carriers, measured, up, percent) in scn.REPORT_AVAILABILITY.items():
        r = availability[key]
        assert r["carriers"] == carriers, key
        assert near(r["measured_min"], measured) and near(r["up_min"], up), (key, r)
        assert near(r["down_min"], measured - up) and near(r["availability_pct"], percent), (key, r)

    redundancy = scn.report_rows(rows(out / "redundancy.csv"), "group", "carrier")
    assert set(redundancy) == set(scn.REPORT_REDUNDANCY)
    for key, (degraded, outage, without) in scn.REPORT_REDUNDANCY.items():
        r = redundancy[key]
        assert near(r["degraded_min"], degraded) and near(r["outage_min"], outage), (key, r)
        assert near(r["without_redundancy_min"], without) and near(r["measured_min"], 60), (key, r)

    got = [(r["kind"], r["name"], r["carriers"], (datetime.fromisoformat(r["start"]).timestamp() - stores.t0_s) / 60,
            (datetime.fromisoformat(r["end"]).timestamp() - stores.t0_s) / 60, float(r["duration_min"]), r["ongoing"])
           for r in rows(out / "outages.csv")]
    assert got == [(*o[:3], o[3], o[4], o[5], "no") for o in scn.REPORT_OUTAGES]


def test_both_stores_give_the_same_files(outputs: dict[str, Path]) -> None:
    for name in ("coverage.csv", "availability.csv", "redundancy.csv", "outages.csv"):
        assert (outputs["victoriametrics"] / name).read_text() == (outputs["sqlite"] / name).read_text(), name
    page = (outputs["sqlite"] / "report.html").read_text()
    assert "Scenario Park" in page and "vn-uplink" in page and "VinaPhone" in page


class WebDriver:
    """Debian's chromedriver driving Debian's headless Chromium, over the W3C WebDriver HTTP protocol."""

    def __init__(self, workdir: Path, args: Sequence[str] = (), capabilities: dict[str, Any] | None = None) -> None:
        binary = services.require("chromedriver")
        browser = services.require("chromium")
        port = services.free_port()
        self.url = f"http://127.0.0.1:{port}"
        workdir.mkdir(parents=True, exist_ok=True)
        self.log = open(workdir / "chromedriver.log", "ab")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen([binary, f"--port={port}"], stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        self.session = ""
        try:
            services.wait_for(lambda: self._call("GET", "/status")["ready"], 20, "chromedriver to be ready")
            caps = {"browserName": "chrome", **(capabilities or {}), "goog:chromeOptions": {
                "binary": browser, "args": [*CHROMIUM_FLAGS, f"--user-data-dir={workdir / 'profile'}",
                                            "--window-size=1400,1000", *args]}}
            self.session = self._call("POST", "/session", {"capabilities": {"alwaysMatch": caps}})["sessionId"]
        except BaseException:
            self.close()
            raise

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.load(r)["value"]

    def open(self, url: str) -> None:
        self._call("POST", f"/session/{self.session}/url", {"url": url})

    def script(self, source: str) -> Any:
        return self._call("POST", f"/session/{self.session}/execute/sync", {"script": source, "args": []})

    def resize(self, width: int, height: int) -> None:
        self._call("POST", f"/session/{self.session}/window/rect", {"width": width, "height": height})

    def screenshot(self) -> bytes:
        return base64.b64decode(self._call("GET", f"/session/{self.session}/screenshot"))

    def close(self) -> None:
        if self.session:
            try:
                self._call("DELETE", f"/session/{self.session}")
            except OSError:
                pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


def colour_pixels(image: np.ndarray[Any, Any], colour: str, tolerance: float = 0.02) -> int:
    """Return how many pixels of ``image`` (RGB(A) floats 0..1) are ``colour`` (#rrggbb)."""
    rgb = np.array([int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    return int((np.abs(image[:, :, :3] - rgb) <= tolerance).all(axis=2).sum())


def test_report_opens_in_chromium_with_its_plots(stores: Stores, outputs: dict[str, Path]) -> None:
    page = outputs["sqlite"] / "report.html"
    driver = WebDriver(stores.tmp / "chromium")
    try:
        driver.open(page.as_uri())
        images = driver.script("return Array.from(document.images).map(i => ({alt: i.alt, done: i.complete, "
                               "w: i.naturalWidth, h: i.naturalHeight}))")
        assert [i["alt"] for i in images] == ["coverage plot", "RSRP plot", "availability plot", "outage timeline"]
        assert all(i["done"] and i["w"] > 400 and i["h"] > 100 for i in images), images
        height = int(driver.script("return document.documentElement.scrollHeight"))
        driver.resize(1400, min(height + 200, 8000))
        rect = driver.script("const r = document.images[0].getBoundingClientRect();"
                             "return {x: r.x, y: r.y, w: r.width, h: r.height, dpr: window.devicePixelRatio}")
        shot = stores.tmp / "report-screenshot.png"
        shot.write_bytes(driver.screenshot())
    finally:
        driver.close()
    image = imread(shot)
    assert image.shape[0] >= height * 0.9, "the screenshot does not show the whole report"
    scale = rect["dpr"]
    top, left = int(rect["y"] * scale), int(rect["x"] * scale)
    plot = image[top:top + int(rect["h"] * scale), left:left + int(rect["w"] * scale)]
    # The coverage plot, as Chromium drew it: a bar segment of each level's colour, in proportion to time.
    counts = {level: colour_pixels(plot, colour) for level, colour in enumerate(LEVEL_COLOURS)}
    assert all(n > 500 for n in counts.values()), counts
    assert counts[0] > 3 * counts[4], counts  # 60 minutes good against 13 without service
    assert counts[1] > 3 * counts[3], counts  # 80 minutes fair against 10 in a hole
    if os.environ.get("ZW_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["ZW_KEEP_SCREENSHOT"])
