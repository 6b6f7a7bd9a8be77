"""What active QoS tests for 4 modems add to the agent (CPU, RSS), and how close they measure to the shaping.

Builds the namespace lab of ``tests/integration/qoslab.py`` with four carriers (40, 20, 10 and 5 Mbit/s, with
10, 15, 25 and 40 ms each way) and runs, in the probe namespace, one process that first imports what the agent
imports anyway (its runner and every source module) and reads its memory, then makes four QoS sources with the
example configuration's tests and runs their ticks for real: the short round, a download, an upload, idle ticks,
and more short rounds. It reads its own CPU time (every thread) around each kind of tick.

The usual schedule (a tick every 60 s, short tests every 5 min, a download and an upload every 2 h in a 4-hour
night window) then gives the added CPU per day outside the transfers: 288 short rounds and 1,440 - 288 - 4
idle ticks per modem, times four modems, over 86,400 s. The transfers' own CPU is printed apart (per MB).
Goals: under 10 MB RSS added, under 5 % of a core outside the transfers. Needs root (namespaces, tc,
SO_BINDTODEVICE). Run: ``.venv/bin/python tests/benchmarks/bench_qos.py``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.integration import qoslab  # noqa: E402
from tests.integration.qoslab import ZONE_NAME, Carrier  # noqa: E402
from tests.netns import NsProcess  # noqa: E402

CARRIERS = [Carrier("c40", 40.0, 10.0), Carrier("c20", 20.0, 15.0), Carrier("c10", 10.0, 25.0),
            Carrier("c5", 5.0, 40.0)]
DOWN_MB = {"c40": 6, "c20": 4, "c10": 3, "c5": 2}   # about 1.2 to 3.2 s each: short transfers
SHORT_ROUNDS = 4
IDLE_TICKS = 20

WORKER = r"""
import asyncio, json, resource, sys, time

def rss_kb(field="VmRSS"):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0

def cpu():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime

import agent.runner, agent.sources.registry, agent.sources.cellular, agent.sources.snmp, agent.sources.reach  # noqa
from zonewatch import strict
from agent.sources.qos import QosConfig, QosSource
base = rss_kb()
configs = json.loads(sys.argv[1])
sources = [QosSource(strict.load(QosConfig, json.dumps(c), c["name"])) for c in configs]
loop = asyncio.new_event_loop()
t0 = 1764266400 * 10**9                      # 2025-11-28 01:00 in Ho Chi Minh City: the night window
out = {"base_kb": base, "short": [], "idle": [], "transfers": [], "samples": {}}

def tick(source, at_ns):
    c, w = cpu(), time.monotonic()
    samples = loop.run_until_complete(source.collect(at_ns))
    return cpu() - c, time.monotonic() - w, samples

for s in sources:
    c, w, samples = tick(s, t0)
    out["short"].append([c, w])
    for sample in samples:
        out["samples"][s.name + "/" + sample.tags["test"] + ":" + sample.tags["target"]] = sample.fields
    for i in (1, 2):
        c, w, samples = tick(s, t0 + i * 60 * 10**9)
        moved = [x for x in samples if x.tags["test"] in ("download", "upload")]
        out["transfers"].append([c, w, moved[0].fields.get("bytes", 0) if moved else 0])
        for sample in moved:
            out["samples"][s.name + "/" + sample.tags["test"]] = sample.fields
for s in sources:
    for i in range(IDLE):
        c, w, _ = tick(s, t0 + (3 + i) * 10**9 * 6)
        out["idle"].append([c, w])
for r in range(1, ROUNDS):
    for s in sources:
        c, w, _ = tick(s, t0 + r * 300 * 10**9 + 3 * 60 * 10**9)
        out["short"].append([c, w])
out["after_kb"], out["peak_kb"] = rss_kb(), rss_kb("VmHWM")
print(json.dumps(out), flush=True)
"""


def config(lab: qoslab.Lab, c: Carrier, tmp: Path) -> dict[str, object]:
    return {
        "type": "qos", "name": f"qos-{c.name}", "modem": c.name, "carrier": "452-04",
        "interface": lab.modems[c.name], "dns": [lab.gateways[c.name]], "interval": "60s", "timeout": "2s",
        "budget": {"monthly": "2GB"}, "state_path": str(tmp / f"{c.name}.json"),
        "tests": [
            {"test": "dns", "name": ZONE_NAME},
            {"test": "tcp", "host": ZONE_NAME, "port": 80},
            {"test": "http", "url": f"http://{ZONE_NAME}/bytes/20000"},
            {"test": "icmp", "host": "core"},
            {"test": "icmp", "host": ZONE_NAME},
            {"test": "udp", "host": ZONE_NAME, "port": 7},
            {"test": "download", "url": f"http://{ZONE_NAME}/bytes/{DOWN_MB[c.name] * 10**6}",
             "bytes": f"{DOWN_MB[c.name]}MB", "timeout": "20s"},
            {"test": "upload", "url": f"http://{ZONE_NAME}/upload", "bytes": f"{DOWN_MB[c.name]}MB",
             "timeout": "20s"},
        ],
    }


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-qos-") as folder:
        tmp = Path(folder)
        with qoslab.lab(CARRIERS, tmp) as lab:
            code = WORKER.replace("range(IDLE)", f"range({IDLE_TICKS})").replace("range(1, ROUNDS)",
                                                                                  f"range(1, {SHORT_ROUNDS})")
            configs = json.dumps([config(lab, c, tmp) for c in CARRIERS])
            worker = NsProcess(lab.probe, [sys.executable, "-c", code, configs], tmp / "worker.log")
            lab.procs.append(worker)
            out = json.loads(worker.read(300))
    short = [c for c, _ in out["short"]]
    idle = [c for c, _ in out["idle"]]
    transfers = out["transfers"]
    per_round, per_idle = sum(short) / len(short), sum(idle) / len(idle)
    rounds_day, idle_day = 288, 1440 - 288 - 4
    overhead_pct = 4 * (rounds_day * per_round + idle_day * per_idle) / 86400 * 100
    moved_mb = sum(b for _, _, b in transfers) / 1e6
    transfer_cpu = sum(c for c, _, _ in transfers)
    transfer_wall = sum(w for _, w, _ in transfers)
    added = (out["after_kb"] - out["base_kb"]) / 1024
    print(f"agent modules loaded: {out['base_kb'] / 1024:.1f} MB VmRSS; with 4 QoS sources after "
          f"{len(short)} short rounds, {len(transfers)} transfers, {len(idle)} idle ticks: "
          f"{out['after_kb'] / 1024:.1f} MB (peak {out['peak_kb'] / 1024:.1f})")
    print(f"RSS added: {added:.1f} MB (goal < 10 MB: {'PASS' if added < 10 else 'FAIL'})")
    print(f"CPU a short round (6 tests): {per_round * 1000:.1f} ms; an idle tick: {per_idle * 1000:.2f} ms; "
          f"a day of 4 modems outside the transfers: {overhead_pct:.3f} % of a core "
          f"(goal < 5 %: {'PASS' if overhead_pct < 5 else 'FAIL'})")
    print(f"transfers: {moved_mb:.0f} MB in {transfer_wall:.1f} s took {transfer_cpu:.2f} s CPU "
          f"({transfer_cpu / moved_mb * 1000:.0f} ms a MB, {transfer_cpu / transfer_wall * 100:.0f} % of a core "
          "while they ran)")
    print("accuracy (measured against the shaping and the delay line):")
    for c in CARRIERS:
        s = out["samples"]
        down, up = s[f"qos-{c.name}/download"], s[f"qos-{c.name}/upload"]
        icmp, udp = s[f"qos-{c.name}/icmp:{ZONE_NAME}"], s[f"qos-{c.name}/udp:{ZONE_NAME}:7"]
        print(f"  {c.name}: shaped {c.rate_mbit:g} Mbit/s each way, {2 * c.delay_ms:g} ms added round trip | "
              f"down {down.get('down_mbps', float('nan')):.2f} ({down.get('down_mbps', 0) / c.rate_mbit * 100:.1f} %), "
              f"up {up.get('up_mbps', float('nan')):.2f} ({up.get('up_mbps', 0) / c.rate_mbit * 100:.1f} %) | "
              f"icmp rtt {icmp.get('rtt_ms', float('nan')):.1f} ms, jitter {icmp.get('jitter_ms', float('nan')):.2f}; "
              f"udp rtt {udp.get('rtt_ms', float('nan')):.1f} ms, loss {udp.get('loss_pct', float('nan')):g} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
