"""The Quick start demo, run as a user runs it: readings from the simulated carriers and the devices appear,
the scripted faults (fibre cut, power failure, coverage hole) page the NOC and resolve, the carrier that is
registered but passes no traffic (MobiFone) gets DataAccessFailure and no other carrier does, nothing else pages,
the simulated traffic is steady and a cut link carries none, and every way the demo can end (Ctrl-C, also when
started in the background of a script, SIGTERM, SIGHUP, ``--seconds``, an exception, ``kill -9``, Ctrl-C to a
``| tee`` pipeline) leaves no child behind, checked by PID."""

from __future__ import annotations

import csv
import ctypes
import io
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import IO

import pytest

from collector.storage import SqliteStorage
from collector.storage.sqlite import SqliteWriter
from tests import services

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "collector" / "demo_data"
CHILDREN = {"snmpsim", "modem-viettel", "modem-vinaphone", "modem-mobifone", "agent"}
REPORT = "demo: the zone's report (HTML with plots, and CSV): "
READINGS = ("interface bts-01 ge-0/0/0 oper_up=True", "cellular 452-04 viettel rsrp=-", "device sw-core up=True")

SCENARIO = [  # what the NOC's receiver must get, in this order per alert
    "firing LinkDown carrier=452-04 area=logistics site=pop-dv device=sw-core link=vt-primary",
    "firing RedundancyLost carrier=452-04 area=logistics site=pop-dv group=vt-fibre",
    "firing PowerOnBattery carrier=452-04 area=gate-a site=bts-dv-01 device=ups-01",
    "firing PowerOnBattery carrier=452-02 area=gate-a site=bts-dv-01 device=ups-01",
    "firing CoverageHole carrier=452-02 area=gate-a probe=p1",
    "firing DataAccessFailure carrier=452-01 area=gate-a",
    "resolved LinkDown carrier=452-04 area=logistics site=pop-dv device=sw-core link=vt-primary",
    "resolved RedundancyLost carrier=452-04 area=logistics site=pop-dv group=vt-fibre",
    "resolved PowerOnBattery carrier=452-04 area=gate-a site=bts-dv-01 device=ups-01",
    "resolved PowerOnBattery carrier=452-02 area=gate-a site=bts-dv-01 device=ups-01",
    "resolved CoverageHole carrier=452-02 area=gate-a probe=p1",
]


def demo_argv(workdir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "collector", "demo", "--workdir", str(workdir), *extra]


def reader(stream: IO[str] | None) -> tuple[list[str], threading.Thread]:
    """Collect ``stream``'s lines as they come, in a thread (the list grows while the test polls it)."""
    assert stream is not None
    lines: list[str] = []
    thread = threading.Thread(target=lambda: lines.extend(iter(stream.readline, "")), daemon=True)
    thread.start()
    return lines, thread


def alive(pid: int) -> bool:
    """True while ``pid`` runs. A zombie has ended: after ``kill -9`` of the demo its children are orphans,
    and collecting them is up to whoever adopted them."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def stored(workdir: Path) -> bool:
    """True once the demo's store holds a device's reading (what its report is made of)."""
    with closing(sqlite3.connect(f"file:{workdir / 'zonewatch.db'}?mode=ro", uri=True, timeout=1)) as db:
        return db.execute("SELECT 1 FROM points JOIN series ON series.id = points.series_id "
                          "WHERE series.measurement = 'device' LIMIT 1").fetchone() is not None


def children_of(workdir: Path) -> dict[int, str]:
    """The demo's children by PID, as it wrote them once it had started them all."""
    lines = (workdir / "children.pid").read_text().splitlines()
    children = {int(pid): name for pid, name in (line.split() for line in lines)}
    assert set(children.values()) == CHILDREN, children
    return children


def started(workdir: Path) -> dict[int, str]:
    """Wait until the demo runs all its children and has stored a reading; return its children by PID."""
    services.wait_for(lambda: (workdir / "children.pid").exists() and stored(workdir), 60,
                      "the demo to start its children and store a reading")
    children = children_of(workdir)
    assert all(alive(pid) for pid in children), children
    return children


@pytest.fixture
def leftovers() -> Iterator[dict[int, str]]:
    """Children a test saw (PID -> name): whatever still runs at the end is killed by PID, then failed on."""
    seen: dict[int, str] = {}
    yield seen
    left = {pid: name for pid, name in seen.items() if alive(pid)}
    for pid in left:
        os.kill(pid, signal.SIGKILL)
        try:
            os.waitpid(pid, 0)   # ours to collect if this test adopted it
        except ChildProcessError:
            pass
    assert not left, f"left running: {left}"


def stopped(proc: subprocess.Popen[str], timeout: float = 40) -> int:
    """Wait for ``proc`` to exit; kill it (by PID) if it does not."""
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def test_demo_shows_live_readings_plays_its_faults_and_stops_cleanly_on_ctrl_c(
        tmp_path: Path, leftovers: dict[int, str]) -> None:
    """Output piped (no terminal): plain lines and the report. ``--log-level`` after ``demo`` is taken."""
    workdir = tmp_path / "demo"
    proc = subprocess.Popen(demo_argv(workdir, "--log-level", "warning", "--pace", "0.3"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, thread = reader(proc.stdout)
    try:
        leftovers.update(started(workdir))

        def everything_shown() -> bool:
            text = "".join(lines)
            return all(s in text for s in ("cellular 452-04 viettel rsrp=-", "cellular 452-02 vinaphone rsrp=-",
                                           "cellular 452-01 mobifone rsrp=-",
                                           "interface bts-01 ge-0/0/1 oper_up=True", "interface sw-core ge-0/0/5 "
                                           "oper_up=False", "device bts-01 up=True", "device sw-core up=True"))

        services.wait_for(everything_shown, 90, "the demo to show both carriers and the devices")

        def notified() -> list[str]:
            return [line.removeprefix("notification: ").strip() for line in list(lines)
                    if line.startswith("notification: ")]

        services.wait_for(lambda: set(SCENARIO) <= set(notified()), 120,
                          "the scenario's faults to page the NOC and resolve")
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert stopped(proc, 30) == 0, "".join(lines)[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        thread.join(5)
        proc.stdout.close()  # type: ignore[union-attr]
    output = "".join(lines)
    assert "demo: the output is not a terminal: plain lines instead of the live table" in output
    got = notified()
    # Exactly the scenario, each once, nothing unscripted: no WeakSignal (VinaPhone's signal is fair), and no
    # ProbeDown when the demo stops its own agent (a planned stop; it would be shown "(while stopping)").
    assert sorted(got) == sorted(SCENARIO), got
    # MobiFone is registered with a good signal and its service tests fail: its data service, and only its, pages
    assert [n for n in got if "DataAccessFailure" in n] == ["firing DataAccessFailure carrier=452-01 area=gate-a"]
    assert not [n for n in got if "452-01" in n and "DataAccessFailure" not in n], got
    for name in ("LinkDown", "RedundancyLost", "PowerOnBattery", "CoverageHole"):
        fired = [i for i, n in enumerate(got) if n.startswith(f"firing {name} ")]
        resolved = [i for i, n in enumerate(got) if n.startswith(f"resolved {name} ")]
        assert max(fired) < min(resolved), got
    assert "demo: stopped." in output
    assert f"{REPORT}{workdir / 'report' / 'report.html'}" in output
    # The fibre cut is in the report: Viettel's group degraded from the cut (+9 s at pace 0.3) to the splice
    # (+30 s), about 0.35 minutes, never in outage (the backup held).
    (row,) = csv.DictReader(io.StringIO((workdir / "report" / "redundancy.csv").read_text()))
    assert (row["group"], row["carrier"]) == ("vt-fibre", "452-04")
    assert 0.2 < float(row["degraded_min"]) < 0.6 and float(row["outage_min"]) == 0, row
    assert "Traceback" not in output and " INFO " not in output
    for pid, name in leftovers.items():
        assert not alive(pid), f"{name} ({pid}) is still running"   # reaped by the demo, not left behind
    assert_traffic_as_in_a_real_zone(workdir / "zonewatch.db")


def assert_traffic_as_in_a_real_zone(db: Path) -> None:
    """What the agent stored over the run: between two polls of an interface that is up at both, the rate is
    within the link's speed and within a quarter of that interface's usual rate (the counters grew with the
    square of time before); a link down at both polls carried nothing; cutting sw-core's fibre left every
    interface of bts-01 up (the simulated devices shared their state before)."""
    store = SqliteWriter(SqliteStorage(type="sqlite", path=str(db)))
    try:
        polls: dict[tuple[str, str], dict[int, dict[str, float]]] = {}
        for field in ("oper_up", "in_octets", "out_octets", "speed_mbps"):
            for p in store.query("interface", field):
                polls.setdefault((p.tags["device"], p.tags["ifname"]), {}).setdefault(p.time_ns, {})[field] = p.value
    finally:
        store.close()
    assert {"bts-01", "sw-core"} <= {device for device, _ in polls}, polls.keys()
    cut = polls[("sw-core", "xe-0/1/0")]
    assert any(not v["oper_up"] for v in cut.values()) and any(v["oper_up"] for v in cut.values())
    for (device, ifname), by_time in polls.items():
        if device == "bts-01":
            assert all(v["oper_up"] for v in by_time.values()), (ifname, by_time)
        times = sorted(by_time)
        assert len(times) >= 10, (device, ifname, len(times))
        for field in ("in_octets", "out_octets"):
            rates, still = [], []
            for t0, t1 in zip(times, times[1:], strict=False):
                a, b = by_time[t0], by_time[t1]
                rate = (b[field] - a[field]) * 8 / ((t1 - t0) / 1e9) / 1e6
                assert 0 <= rate <= b["speed_mbps"], (device, ifname, field, rate)
                if a["oper_up"] and b["oper_up"]:
                    rates.append(rate)
                elif not a["oper_up"] and not b["oper_up"]:
                    still.append(b[field] - a[field])
            assert all(d == 0 for d in still), (device, ifname, field, still)
            if rates and statistics.median(rates) > 0:
                usual = statistics.median(rates)
                assert all(0.75 * usual <= r <= 1.25 * usual for r in rates), (device, ifname, field, rates)
        if (device, ifname) == ("sw-core", "xe-0/1/0"):
            assert still, "no two polls while the fibre was cut"


def test_the_simulated_devices_count_steadily_and_a_cut_on_one_leaves_the_others_alone(tmp_path: Path) -> None:
    """snmpsim with the demo's walks and variation module, read with net-snmp's snmpget as any manager would."""
    snmpsim = services.start_snmpsim(tmp_path, DATA, variation=ROOT / "agent" / "sim" / "variation")
    try:
        def get(community: str, *oids: str) -> list[int]:
            out = subprocess.run(["snmpget", "-v2c", "-c", community, "-Oqvt", "-t", "1", "-r", "1",
                                  f"127.0.0.1:{snmpsim.port}", *oids], capture_output=True, text=True, check=True)
            return [int(v) for v in out.stdout.split()]

        def set_oper(community: str, index: int, value: int) -> None:
            subprocess.run(["snmpset", "-v2c", "-c", community, "-t", "1", "-r", "1", f"127.0.0.1:{snmpsim.port}",
                            f"1.3.6.1.2.1.2.2.1.8.{index}", "i", str(value)], capture_output=True, check=True)

        counters = [f"1.3.6.1.2.1.31.1.1.1.{col}.{i}" for i in (1, 2) for col in (6, 10)]   # HC in, out: 2 ports

        def rates(community: str, seconds: float) -> list[float]:
            """Mbit/s of each counter between two polls ``seconds`` apart, over the device's own sysUpTime
            between them (as a manager computes it: no error from when the poll happened to run)."""
            t0, *before = get(community, "1.3.6.1.2.1.1.3.0", *counters)
            time.sleep(seconds)   # a real interval between two polls
            t1, *after = get(community, "1.3.6.1.2.1.1.3.0", *counters)
            return [(b - a) * 8 / ((t1 - t0) / 100) / 1e6 for a, b in zip(before, after, strict=True)]

        first, second = rates("sw-core", 1.0), rates("sw-core", 1.0)
        for a, b in zip(first, second, strict=True):   # 10G ports at 0.5 to 2.6 Gbit/s, the same from poll to poll
            assert 300 < a < 10_000 and 0.8 < b / a < 1.25, (first, second)
        set_oper("sw-core", 1, 2)   # cut Viettel's primary fibre
        cut = rates("sw-core", 1.0)
        assert cut[:2] == [0.0, 0.0] and cut[2] > 300 and cut[3] > 300, cut   # the backup still carries its own
        assert get("sw-core", "1.3.6.1.2.1.2.2.1.8.1") == [2]
        assert get("bts-01", *(f"1.3.6.1.2.1.2.2.1.8.{i}" for i in (1, 2, 3))) == [1, 1, 1]
        assert all(r > 10 for r in rates("bts-01", 0.5)), "bts-01's interface 1 stopped with sw-core's"
        set_oper("sw-core", 1, 1)   # spliced: it counts on from where it stopped, at its own rate
        back = rates("sw-core", 1.0)
        assert 0.8 < back[0] / first[0] < 1.25, (back, first)
    finally:
        snmpsim.stop()


def test_ctrl_c_stops_a_demo_that_a_script_started_in_the_background(
        tmp_path: Path, leftovers: dict[int, str]) -> None:
    """``zonewatch-collector demo &`` in a script: the shell starts it with SIGINT ignored (no job control);
    a SIGINT must still stop it, its children and write the report."""
    workdir = tmp_path / "demo"
    probe = subprocess.run(["sh", "-c", "grep SigIgn /proc/self/status & wait"], capture_output=True, text=True,
                           check=True)
    assert int(probe.stdout.split()[1], 16) & (1 << (signal.SIGINT - 1)), probe.stdout   # the shell does that here
    shell = subprocess.Popen(["sh", "-c", '"$@" & echo "demo pid $!"; wait "$!"', "sh",
                              *demo_argv(workdir, "--plain", "--no-scenario")],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, thread = reader(shell.stdout)
    pid = 0
    try:
        services.wait_for(lambda: bool(lines) and lines[0].startswith("demo pid "), 10, "the shell to start it")
        pid = int(lines[0].split()[2])
        leftovers.update(started(workdir))
        os.kill(pid, signal.SIGINT)
        assert stopped(shell) == 0, "".join(lines)[-3000:]
    finally:
        if pid and alive(pid):
            os.kill(pid, signal.SIGKILL)
        if shell.poll() is None:
            shell.kill()
            shell.wait()
        thread.join(5)
        shell.stdout.close()  # type: ignore[union-attr]
    assert_stopped_cleanly(workdir, "".join(lines), leftovers)


def assert_stopped_cleanly(workdir: Path, output: str, children: dict[int, str]) -> None:
    assert "demo: stopping ..." in output and "demo: stopped." in output, output[-3000:]
    assert f"{REPORT}{workdir / 'report' / 'report.html'}" in output, output[-3000:]
    assert (workdir / "report" / "report.html").exists()
    assert "notification:" not in output, output   # nothing paged: not the planned stop of the probe either
    assert "Traceback" not in output, output[-3000:]
    for pid, name in children.items():
        assert not alive(pid), f"{name} ({pid}) is still running"


@pytest.mark.parametrize("how", ["SIGTERM", "SIGHUP", "--seconds"])
def test_every_way_of_stopping_the_demo_stops_its_children_and_writes_the_report(
        tmp_path: Path, leftovers: dict[int, str], how: str) -> None:
    workdir = tmp_path / "demo"
    extra = ["--seconds", "6"] if how == "--seconds" else []
    proc = subprocess.Popen(demo_argv(workdir, "--plain", "--no-scenario", *extra),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, thread = reader(proc.stdout)
    try:
        if how == "--seconds":
            assert stopped(proc) == 0, "".join(lines)[-3000:]
            leftovers.update(children_of(workdir))
        else:
            leftovers.update(started(workdir))
            proc.send_signal(getattr(signal, how))
            assert stopped(proc) == 0, "".join(lines)[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        thread.join(5)
        proc.stdout.close()  # type: ignore[union-attr]
    assert_stopped_cleanly(workdir, "".join(lines), leftovers)


FAILING_DEMO = """\
import sys
from collector import demo

def rows(self, now_ns):
    raise ValueError("the store cannot be read (a fault injected by the test)")

demo.Demo.rows = rows
sys.exit(demo.run_demo(workdir=sys.argv[1], plain=True, scenario=False))
"""


def test_an_exception_in_the_demo_stops_every_child_and_shows_the_traceback(
        tmp_path: Path, leftovers: dict[int, str]) -> None:
    """The demo's own code fails (a fault put into its first look at the store, once the zone runs)."""
    workdir = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-c", FAILING_DEMO, str(workdir)], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    children = {int(pid): name for pid, name in
                (line.split() for line in (workdir / "children.pid").read_text().splitlines())}
    leftovers.update(children)
    assert set(children.values()) == CHILDREN
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "demo: stopping ..." in proc.stdout, proc.stdout
    assert "Traceback" in proc.stderr and "a fault injected by the test" in proc.stderr, proc.stderr
    for pid, name in children.items():
        assert not alive(pid), f"{name} ({pid}) is still running"


@pytest.fixture
def adopter() -> Iterator[None]:
    """Make this process the one that adopts the orphans of its descendants (PR_SET_CHILD_SUBREAPER), so a
    test can collect them and read how they ended, instead of leaving zombies to an init that may not."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    assert prctl(36, 1, 0, 0, 0) == 0, ctypes.get_errno()
    yield
    prctl(36, 0, 0, 0, 0)


def test_children_do_not_outlive_a_demo_killed_with_sigkill(
        tmp_path: Path, leftovers: dict[int, str], adopter: None) -> None:
    """``kill -9`` runs no code in the demo: each child asked the kernel to end it when the demo dies. Its
    children are adopted by this test, which collects each and finds it killed by SIGKILL at once."""
    workdir = tmp_path / "demo"
    proc = subprocess.Popen(demo_argv(workdir, "--plain", "--no-scenario"), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines, thread = reader(proc.stdout)
    try:
        leftovers.update(started(workdir))
        proc.kill()
        proc.wait(10)
        ended: dict[int, int] = {}

        def collected() -> bool:
            for pid in set(leftovers) - set(ended):
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    ended[pid] = status
            return len(ended) == len(leftovers)

        services.wait_for(collected, 10, "the demo's children to end with it")
        assert {leftovers[pid]: os.WIFSIGNALED(s) and os.WTERMSIG(s) for pid, s in ended.items()} == \
            dict.fromkeys(CHILDREN, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        thread.join(5)
        proc.stdout.close()  # type: ignore[union-attr]


def test_ctrl_c_to_a_demo_piped_into_tee_stops_everything_and_writes_the_report(
        tmp_path: Path, leftovers: dict[int, str]) -> None:
    """``zonewatch-collector demo | tee demo.txt`` and Ctrl-C: the terminal sends SIGINT to both; tee dies
    first, so the demo's output goes nowhere, and it must still stop its children and write the report."""
    workdir, shown, errors = tmp_path / "demo", tmp_path / "demo.txt", tmp_path / "stderr.txt"
    with errors.open("w") as err:
        demo = subprocess.Popen(demo_argv(workdir, "--no-scenario"), stdout=subprocess.PIPE, stderr=err,
                                process_group=0)   # the pipeline's own process group, as a shell makes it
    tee: subprocess.Popen[bytes] | None = None
    try:
        tee = subprocess.Popen(["tee", str(shown)], stdin=demo.stdout, stdout=subprocess.DEVNULL,
                               process_group=demo.pid)
        demo.stdout.close()  # type: ignore[union-attr]   # tee alone reads the pipe
        leftovers.update(started(workdir))
        services.wait_for(lambda: all(s in shown.read_text() for s in READINGS), 30, "tee to show the readings")
        os.killpg(demo.pid, signal.SIGINT)   # what Ctrl-C at the terminal does to the pipeline
        assert tee.wait(10) == -signal.SIGINT
        assert demo.wait(40) == 0, errors.read_text()[-3000:]
    finally:
        for proc in (demo, tee):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    text = shown.read_text()
    assert "demo: the output is not a terminal: plain lines instead of the live table" in text
    assert all(s in text for s in READINGS), text
    assert (workdir / "report" / "report.html").exists()
    assert errors.read_text() == ""   # no BrokenPipeError, no traceback, nothing ignored at exit
    for pid, name in leftovers.items():
        assert not alive(pid), f"{name} ({pid}) is still running"
