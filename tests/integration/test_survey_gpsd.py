"""The walk survey with real parts: Debian's gpsd reads a recorded NMEA walk from a pseudo-terminal (as from a
USB GPS receiver), the agent's ``survey`` command reads a simulated modem on another pty through its cellular
source, and its readings go through the spool, mosquitto and the collector into the SQLite store, each with a
position from the walk."""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import threading
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.sim.modem import SimModem
from collector.report import SqliteSource
from tests import services

pytestmark = pytest.mark.integration

ZONE = "dv"
WALK = Path(__file__).parent / "testdata" / "walk.nmea"


def walk_positions() -> list[tuple[float, float]]:
    """The (lat, lon) of each fix of the recorded walk, from its GGA sentences."""
    out = []
    for line in WALK.read_text().splitlines():
        f = line.split(",")
        if f[0] == "$GPGGA":
            out.append((int(f[2][:2]) + float(f[2][2:]) / 60, int(f[4][:3]) + float(f[4][3:]) / 60))
    return out


class GpsdFeed:
    """gpsd on a free loopback port, reading a pty into which the recorded walk is written, one fix each 0.2 s,
    over and over; ``stop`` ends gpsd by PID and the writer."""

    def __init__(self, workdir: Path) -> None:
        binary = services.require("gpsd")
        workdir.mkdir(parents=True, exist_ok=True)
        self.master, self.slave = pty.openpty()
        tty.setraw(self.slave)
        self.port = services.free_port()
        self.done = threading.Event()
        self.log = open(workdir / "gpsd.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([binary, "-N", "-n", "-b", "-S", str(self.port), "-F",
                                      str(workdir / "gpsd.sock"), os.ttyname(self.slave)],
                                     stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.writer = threading.Thread(target=self._write, daemon=True)
        self.writer.start()
        try:
            services.wait_for(lambda: services._tcp_open(self.port), 10, "gpsd to listen")
        except BaseException:
            self.stop()
            raise

    def _write(self) -> None:
        lines = WALK.read_bytes().splitlines(keepends=True)
        while not self.done.is_set():
            for rmc, gga in zip(lines[::2], lines[1::2], strict=True):
                if self.done.wait(0.2):
                    return
                try:
                    os.write(self.master, rmc + gga)
                except OSError:
                    return

    def stop(self) -> None:
        self.done.set()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.writer.join(5)
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass
        self.log.close()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[Path, SimModem, GpsdFeed, services.Service]]:
    started: list[object] = []
    try:
        modem = SimModem()
        modem.set_registered(True)
        modem.set_signal(-97.0, -11.0)
        modem.start()
        started.append(modem)
        gps = GpsdFeed(tmp_path / "gpsd")
        started.append(gps)
        broker = services.start_mosquitto(tmp_path / "mosquitto")
        started.append(broker)
        (tmp_path / "inventory.yaml").write_text(
            f"zones:\n  {ZONE}: {{name: Dinh Vu, areas: [gate]}}\n"
            "carriers:\n  viettel: {plmn: 452-04, name: Viettel}\n"
            f"probes:\n  kit: {{zone: {ZONE}, modems: [{{name: vt, carrier: viettel}}]}}\n")
        (tmp_path / "collector.yaml").write_text(
            f"mqtt: {{host: 127.0.0.1, port: {broker.port}, client_id: collector}}\n"
            f"storage: {{type: sqlite, path: '{tmp_path / 'store.db'}'}}\n"
            f"queue: {{path: '{tmp_path / 'centre' / 'intake.db'}'}}\n"
            f"http: {{listen: '127.0.0.1:{services.free_port()}'}}\ninventory: inventory.yaml\n")
        collector = services.start_collector(tmp_path / "collector.yaml", tmp_path / "collector")
        started.append(collector)
        (tmp_path / "agent").mkdir()
        (tmp_path / "agent" / "agent.yaml").write_text(
            f"probe: {{id: kit, zone: {ZONE}}}\nmqtt: {{host: 127.0.0.1, port: {broker.port}}}\n"
            f"spool: {{path: '{tmp_path / 'agent' / 'spool.db'}'}}\nremote_config: {{enabled: false}}\n"
            f"sources:\n  - {{type: cellular, name: vt, port: '{modem.port}', carrier: '452-04', timeout: 500ms}}\n")
        yield tmp_path, modem, gps, collector
    finally:
        for item in reversed(started):
            item.stop()  # type: ignore[attr-defined]


def survey_points(store: Path) -> list[tuple[dict[str, str], float, float, float]]:
    """Return (tags, lat, lon, rsrp) of every survey reading in the store."""
    source = SqliteSource(str(store))
    try:
        def by_time(field: str) -> dict[int, tuple[dict[str, str], float]]:
            return {t: (dict(s.tags), v) for s in source.series("survey", field, ZONE, 0, 2**62) for t, v in s.points}

        lat, lon, rsrp = by_time("lat"), by_time("lon"), by_time("rsrp_dbm")
    finally:
        source.close()
    return [(lat[t][0], lat[t][1], lon[t][1], rsrp[t][1]) for t in sorted(lat) if t in lon and t in rsrp]


def test_survey_readings_reach_the_store_with_positions_from_gpsd(
        lab: tuple[Path, SimModem, GpsdFeed, services.Service]) -> None:
    tmp, _modem, gps, _collector = lab
    folder = tmp / "agent"
    survey = services.start_zonewatch(
        "agent", ["-c", str(folder / "agent.yaml"), "survey", "--id", "walk-1", "--gpsd", f"127.0.0.1:{gps.port}",
                  "--every", "1s", "--max-age", "2s"], folder)
    try:
        services.wait_for(lambda: len(survey_points(tmp / "store.db")) >= 4 if (tmp / "store.db").exists() else False,
                          45, "four survey readings in the collector's store")
    finally:
        survey.stop(signal.SIGINT, timeout=20)
    assert survey.proc.returncode == 0, survey.log_tail()
    log = (folder / "agent.log").read_text()
    assert "survey walk-1:" in log and "readings stored with a position" in log
    walk = walk_positions()
    points = survey_points(tmp / "store.db")
    assert len(points) >= 4
    for tags, lat, lon, rsrp in points:
        assert tags["survey"] == "walk-1" and tags["carrier"] == "452-04" and tags["modem"] == "vt", tags
        assert rsrp == -97.0
        assert min(abs(lat - a) + abs(lon - b) for a, b in walk) < 2e-6, (lat, lon)   # a position of the walk
    assert len({(lat, lon) for _, lat, lon, _ in points}) >= 2, "the walk moved: its readings are not all at one place"
