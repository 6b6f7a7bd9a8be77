"""Agent memory: RSS of ``python -m agent run`` polling 50 SNMP devices and 4 modems (goal: at most 60 MB).

Run from the repository root (everything is started here on free loopback ports and ptys, then stopped)::

    .venv/bin/python tests/benchmarks/bench_memory.py [--rounds 3] [--engine as-is|pysnmp|gufo]

What runs:

    snmpsim       50 switches (one community each) of 20 interfaces: system, ifTable, ifXTable
    4 modems      agent.sim.modem SimModem on ptys (Quectel LTE, Quectel NSA, SIMCom, Sierra)
    mosquitto     the broker the agent publishes to
    the agent     54 sources (SNMP v2c every 10 s, modems every 5 s), spool on disk, /metrics on

After every source has polled ``--rounds`` times (read from the agent's /metrics), the agent's VmRSS and
VmHWM (peak) are read from /proc/<pid>/status, with the anonymous and file-backed parts. A second table
shows where the memory goes: a fresh interpreter imports the agent's modules in the order the agent
does and prints the RSS each adds.

``--engine``: "as-is" runs the agent exactly as the tree is (SnmpSource's own default client). "pysnmp"
and "gufo" start the same CLI through a launcher that sets SnmpSource's default ``client_factory`` first;
"gufo" also keeps pysnmp from being imported, as ``agent.snmpclient.default_client_factory`` in
``agent/sources/snmp.py`` would. The figures are the process's own (threads included), not the children.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from agent.sim.modem import SimModem  # noqa: E402
from tests import services  # noqa: E402
from tests.benchmarks.snmprec import interface_device  # noqa: E402

GOAL_MB = 60.0
DEVICES = 50
INTERFACES = 20
MODEMS = ("quectel-lte", "quectel-nsa", "simcom-lte", "sierra-lte")

# Sets SnmpSource's default client factory, then runs the agent's CLI with the remaining arguments.
LAUNCHER = textwrap.dedent("""\
    import sys
    import agent.snmpclient as seam
    engine = sys.argv.pop(1)
    if engine == "gufo":
        seam.PysnmpClient = seam.default_client_factory  # what snmp.py imports: no pysnmp import
        factory = seam.default_client_factory
    else:
        factory = seam.PysnmpClient
    import agent.sources.snmp as snmp
    snmp.SnmpSource.__init__.__defaults__ = (factory,)
    from agent.cli import main
    sys.exit(main(sys.argv[1:]))
""")

# Imports the agent's modules in the order ``python -m agent run`` does; prints the RSS after each.
IMPORT_LADDER = textwrap.dedent("""\
    import importlib, re, sys
    def rss():
        return int(re.search(r"VmRSS:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
    steps = sys.argv[1:]
    last = rss()
    print(f"python itself|{last}|{last}")
    for step in steps:
        for name in step.split("+"):
            importlib.import_module(name)
        now = rss()
        print(f"{step}|{now - last}|{now}")
        last = now
""")
LADDER = ["asyncio", "yaml", "pydantic", "zonewatch.strict", "zonewatch.wire", "agent.cli", "serial",
          "agent.sources.cellular",
          "agent.snmpclient", "gufo.snmp.aio+agent.snmp_gufo", "pyasn1.codec.ber.decoder",
          "pysnmp.hlapi.v3arch.asyncio+agent.snmp_pysnmp", "agent.sources.snmp", "agent.config",
          "paho.mqtt.client", "zonewatch.queue+agent.spool", "agent.uplink", "apscheduler.schedulers.asyncio",
          "prometheus_client", "agent.runner"]


def agent_config(probe_dir: Path, mqtt_port: int, metrics_port: int, snmp_port: int, modems: list[SimModem]) -> str:
    """Return the agent's YAML: 4 modems and 50 SNMP devices behind one snmpsim port."""
    lines = [
        "probe: {id: bench1, zone: bench-zone}",
        f"mqtt: {{host: 127.0.0.1, port: {mqtt_port}, protocol: '5', keepalive: 30s}}",
        f"spool: {{path: {probe_dir / 'spool.db'}}}",
        f"metrics: {{listen: '127.0.0.1:{metrics_port}'}}",
        "self_interval: 10s",
        "sources:",
    ]
    for i, modem in enumerate(modems):
        lines.append(f"  - {{type: cellular, name: modem-{i}, port: {modem.port}, carrier: 452-0{i + 1},"
                     " interval: 5s, timeout: 2s}")
    for i in range(1, DEVICES + 1):
        lines.append(f"  - {{type: snmp, name: sw-{i:02d}, host: 127.0.0.1, port: {snmp_port}, version: v2c,"
                     f" community: sw{i:02d}, interval: 10s, timeout: 5s, retries: 1}}")
    return "\n".join(lines) + "\n"


def polls(metrics_url: str) -> dict[str, int]:
    """Return how many polls (successful or not) each source has finished, from the agent's /metrics."""
    with urllib.request.urlopen(metrics_url, timeout=5) as answer:
        text = answer.read().decode()
    done: dict[str, int] = {}
    pattern = r'^zonewatch_source_(?:duration_seconds_count|errors_total)\{source="([^"]+)"[^}]*\} ([0-9.e+]+)$'
    for match in re.finditer(pattern, text, re.M):
        done[match[1]] = done.get(match[1], 0) + int(float(match[2]))
    return done


def errors(metrics_url: str) -> int:
    with urllib.request.urlopen(metrics_url, timeout=5) as answer:
        text = answer.read().decode()
    return sum(int(float(m)) for m in re.findall(r"^zonewatch_source_errors_total\{[^}]*\} ([0-9.e+]+)$", text, re.M))


def status(pid: int) -> dict[str, int]:
    """Return the kB figures of /proc/<pid>/status that say where the RSS is."""
    text = Path(f"/proc/{pid}/status").read_text()
    keys = ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem", "Threads")
    return {k: int(re.search(rf"^{k}:\s+(\d+)", text, re.M)[1]) for k in keys}  # type: ignore[index]


def import_ladder() -> list[tuple[str, int, int]]:
    """Return (modules, kB added, kB total) for each step of the agent's imports in a fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", IMPORT_LADDER, *LADDER], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    rows = []
    for line in done.stdout.splitlines():
        name, added, total = line.split("|")
        rows.append((name, int(added), int(total)))
    if done.returncode != 0:
        rows.append((f"(stopped: {done.stderr.strip().splitlines()[-1]})", 0, 0))
    return rows


def launch(workdir: Path, args: list[str]) -> services.Service:
    """Start the agent's CLI through LAUNCHER (engine first in ``args``), logging to a file."""
    log = workdir / "agent.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, *args], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=workdir)
    return services.Service("agent", proc, 0, workdir, log)


def main(argv: list[str] | None = None) -> int:
    """Start the peers and the agent, wait for the poll rounds, print the RSS; return 0."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="polls of every source before measuring")
    parser.add_argument("--engine", choices=["as-is", "pysnmp", "gufo"], default="as-is",
                        help="SNMP client of the agent (see the module docstring)")
    args = parser.parse_args(argv)

    scratch = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    started: list[services.Service] = []
    modems: list[SimModem] = []
    try:
        data = scratch / "snmprec"
        data.mkdir()
        for i in range(1, DEVICES + 1):
            (data / f"sw{i:02d}.snmprec").write_text(interface_device(f"sw{i:02d}", INTERFACES))
        snmpsim = services.start_snmpsim(scratch / "snmpsim", data)
        started.append(snmpsim)
        broker = services.start_mosquitto(scratch / "mosquitto")
        started.append(broker)
        for personality in MODEMS:
            modem = SimModem(personality)
            modem.start()
            modems.append(modem)

        probe = scratch / "probe"
        probe.mkdir()
        metrics_port = services.free_port()
        config = probe / "agent.yaml"
        config.write_text(agent_config(probe, broker.port, metrics_port, snmpsim.port, modems))
        command = ["-c", str(config), "--log-level", "warning", "run"]
        if args.engine == "as-is":
            agent = services.start_zonewatch("agent", command, probe)
        else:
            agent = launch(probe, [args.engine, *command])
        started.append(agent)

        url = f"http://127.0.0.1:{metrics_port}/metrics"
        names = [f"modem-{i}" for i in range(len(modems))] + [f"sw-{i:02d}" for i in range(1, DEVICES + 1)]
        deadline = time.monotonic() + 60 + 15 * args.rounds
        while True:
            if not agent.alive():
                raise RuntimeError(f"the agent exited:\n{agent.log_tail()}")
            try:
                done = polls(url)
            except OSError:
                done = {}
            if all(done.get(n, 0) >= args.rounds for n in names):
                break
            if time.monotonic() > deadline:
                slow = sorted(n for n in names if done.get(n, 0) < args.rounds)
                raise RuntimeError(f"not every source polled {args.rounds} times: {slow[:5]}...\n{agent.log_tail()}")
            time.sleep(0.5)
        figures = status(agent.pid)
        failed = errors(url)

        rss, hwm = figures["VmRSS"] / 1024, figures["VmHWM"] / 1024
        print(f"agent (engine: {args.engine}) after {args.rounds} polls of each of {len(names)} sources "
              f"({DEVICES} SNMP devices x {INTERFACES} interfaces, {len(modems)} modems); failed polls: {failed}")
        print(f"  VmRSS {rss:6.1f} MB   VmHWM (peak) {hwm:6.1f} MB   goal <= {GOAL_MB:g} MB: "
              f"{'PASS' if hwm <= GOAL_MB else 'FAIL'}")
        print(f"  of VmRSS: anonymous {figures['RssAnon'] / 1024:.1f} MB, files (code, shared libraries)"
              f" {figures['RssFile'] / 1024:.1f} MB, shared memory {figures['RssShmem'] / 1024:.1f} MB;"
              f" {figures['Threads']} threads")
        print("where it goes: RSS added by each import, in the agent's order (a fresh interpreter)")
        for name, added, total in import_ladder():
            print(f"  {name:48} +{added / 1024:5.1f} MB  = {total / 1024:5.1f} MB")
        return 0
    finally:
        for svc in reversed(started):
            svc.stop()
        for modem in modems:
            modem.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
