"""The Quick start demo: readings from both simulated carriers and the devices appear, the scripted faults
(fibre cut, power failure, coverage hole) page the NOC and resolve, and Ctrl-C stops every process it
started."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests import services

pytestmark = pytest.mark.integration


SCENARIO = [  # what the NOC's receiver must get, in this order per alert
    "firing LinkDown carrier=452-04 area=logistics site=pop-dv device=sw-core link=vt-primary",
    "firing RedundancyLost carrier=452-04 area=logistics site=pop-dv group=vt-fibre",
    "firing PowerOnBattery carrier=452-04 area=gate-a site=bts-dv-01 device=ups-01",
    "firing PowerOnBattery carrier=452-02 area=gate-a site=bts-dv-01 device=ups-01",
    "firing CoverageHole carrier=452-02 area=gate-a",
    "resolved LinkDown carrier=452-04 area=logistics site=pop-dv device=sw-core link=vt-primary",
    "resolved RedundancyLost carrier=452-04 area=logistics site=pop-dv group=vt-fibre",
    "resolved PowerOnBattery carrier=452-04 area=gate-a site=bts-dv-01 device=ups-01",
    "resolved PowerOnBattery carrier=452-02 area=gate-a site=bts-dv-01 device=ups-01",
    "resolved CoverageHole carrier=452-02 area=gate-a",
]


def test_demo_shows_live_readings_plays_its_faults_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    proc = subprocess.Popen([sys.executable, "-m", "collector", "--log-level", "warning", "demo", "--plain",
                             "--pace", "0.3", "--workdir", str(workdir)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")),  # type: ignore[union-attr]
                              daemon=True)
    reader.start()
    try:
        def everything_shown() -> bool:
            text = "".join(lines)
            return all(s in text for s in ("cellular 452-04 viettel rsrp=-", "cellular 452-02 vinaphone rsrp=-",
                                           "interface bts-01 ge-0/0/1 oper_up=True", "interface sw-core ge-0/0/5 "
                                           "oper_up=False", "device bts-01 up=True", "device sw-core up=True"))

        services.wait_for(everything_shown, 90, "the demo to show both carriers and the devices")

        def notified() -> list[str]:
            return [line.removeprefix("notification: ").strip() for line in list(lines)
                    if line.startswith("notification: ")]

        services.wait_for(lambda: set(SCENARIO) <= set(notified()), 120,
                          "the scenario's faults to page the NOC and resolve")
        got = notified()
        assert len(got) == len(set(got)), got          # each notification once
        for name in ("LinkDown", "RedundancyLost", "PowerOnBattery", "CoverageHole"):
            fired = [i for i, n in enumerate(got) if n.startswith(f"firing {name} ")]
            resolved = [i for i, n in enumerate(got) if n.startswith(f"resolved {name} ")]
            assert max(fired) < min(resolved), got
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert proc.wait(30) == 0, "".join(lines)[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(5)
        proc.stdout.close()  # type: ignore[union-attr]
    output = "".join(lines)
    assert "demo: stopped." in output
    assert f"demo: the zone's report (HTML with plots, and CSV): {workdir / 'report' / 'report.html'}" in output
    # The fibre cut is in the report: Viettel's group degraded from the cut (+9 s at pace 0.3) to the splice
    # (+30 s), about 0.35 minutes, never in outage (the backup held).
    (row,) = csv.DictReader(io.StringIO((workdir / "report" / "redundancy.csv").read_text()))
    assert (row["group"], row["carrier"]) == ("vt-fibre", "452-04")
    assert 0.2 < float(row["degraded_min"]) < 0.6 and float(row["outage_min"]) == 0, row
    assert "Traceback" not in output
    children = [line.split() for line in (workdir / "children.pid").read_text().splitlines()]
    assert {name for _, name in children} == {"snmpsim", "modem-viettel", "modem-vinaphone", "agent"}
    for pid, _name in children:
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)  # every child is gone (reaped by the demo, not left behind)
