"""SNMP polling cost: CPU microseconds per varbind of each client, against net-snmp's snmpbulkwalk.

Run from the repository root (it starts its own snmpd and snmpsim on free loopback ports, and stops them)::

    .venv/bin/python tests/benchmarks/bench_snmp.py [--runs 5] [--max-repetitions 25]

Workloads, each walked with GETBULK at the same max-repetitions by every client:

    mib-2   v2c / v3   a full walk of 1.3.6.1.2.1 on net-snmp's snmpd (about 5,000+ varbinds here)
    if-50   v2c        ifTable + ifXTable of a 50-interface switch served by snmpsim (2,050 varbinds)

Clients:

    snmpbulkwalk       the baseline, run in the same process tree; CPU of the child (wait4 rusage),
                       start-up included, output written to a file
    snmp-exporter      prometheus-snmp-exporter, if installed, scraping a hand-written module that walks the
                       same subtrees; CPU of its process from /proc/<pid>/stat before and after 20 scrapes
    pysnmp / gufo      agent.snmpclient engines, in this process; process CPU (time.process_time) around
                       ``client.walk``, after one warm-up walk (engine, v3 discovery, imports)

Each figure is the median of ``--runs`` runs; the ratio is against snmpbulkwalk of the same workload, and
PASS means within the goal: at most 5x snmpbulkwalk's CPU per varbind. The figures are CPU, not wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from agent.snmpclient import SnmpTarget, make_client  # noqa: E402
from tests import services  # noqa: E402
from tests.benchmarks.snmprec import IF_TABLE, IFX_TABLE, interface_device  # noqa: E402

GOAL = 5.0
MIB2 = "1.3.6.1.2.1"
USER = ("zwbench", "bench-auth-pass", "bench-priv-pass")
EXPORTER_SCRAPES = 20
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Workload:
    """Subtrees to walk on one agent, with one set of credentials."""

    name: str
    version: str
    port: int
    roots: list[str]
    community: str = "public"

    def target(self, max_repetitions: int) -> SnmpTarget:
        if self.version == "v2c":
            return SnmpTarget("127.0.0.1", self.port, "v2c", community=self.community, timeout=5, retries=1,
                              max_repetitions=max_repetitions)
        user, auth, priv = USER
        return SnmpTarget("127.0.0.1", self.port, "v3", user=user, auth_key=auth, priv_key=priv, timeout=5,
                          retries=1, max_repetitions=max_repetitions)

    def net_snmp_args(self) -> list[str]:
        if self.version == "v2c":
            return ["-v2c", "-c", self.community]
        user, auth, priv = USER
        return ["-v3", "-l", "authPriv", "-u", user, "-a", "SHA", "-A", auth, "-x", "AES", "-X", priv]


@dataclass
class Result:
    """Per-run CPU seconds and varbind counts of one client on one workload."""

    cpu: list[float] = field(default_factory=list)
    varbinds: list[int] = field(default_factory=list)

    def us_per_varbind(self) -> float:
        return statistics.median(c / v * 1e6 for c, v in zip(self.cpu, self.varbinds, strict=True))


# ---------------------------------------------------------------------------------------------- clients


def run_snmpbulkwalk(work: Workload, max_repetitions: int, scratch: Path) -> tuple[float, int]:
    """Walk every root with snmpbulkwalk; return the children's CPU seconds and the varbinds printed."""
    cpu, count = 0.0, 0
    binary = services.require("snmpbulkwalk")
    for root in work.roots:
        out = scratch / "snmpbulkwalk.out"
        argv = [binary, *work.net_snmp_args(), "-On", "-Oq", f"-Cr{max_repetitions}", "-t", "5", "-r", "1",
                f"127.0.0.1:{work.port}", root]
        with open(out, "wb") as sink:
            proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed with code {proc.returncode}")
        cpu += usage.ru_utime + usage.ru_stime
        count += sum(1 for line in out.read_bytes().splitlines() if line.startswith(b"."))
    return cpu, count


def run_engine(engine: str) -> Callable[[Workload, int, Path], tuple[float, int]]:
    """Return a runner that walks every root with ``engine`` (after a warm-up walk) in this process."""

    def runner(work: Workload, max_repetitions: int, scratch: Path) -> tuple[float, int]:
        async def main() -> tuple[float, int]:
            client = make_client(work.target(max_repetitions), engine)  # type: ignore[arg-type]
            try:
                for root in work.roots:
                    await client.walk(root)
                started, count = time.process_time(), 0
                for root in work.roots:
                    count += len(await client.walk(root))
                return time.process_time() - started, count
            finally:
                client.close()

        return asyncio.run(main())

    return runner


class Exporter:
    """prometheus-snmp-exporter with one module per workload; its process CPU is read from /proc."""

    def __init__(self, binary: str, workloads: list[Workload], max_repetitions: int, workdir: Path) -> None:
        self.port = services.free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "snmp.yml"
        config.write_text("".join(_exporter_module(w, max_repetitions) for w in workloads))
        log = open(workdir / "exporter.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([binary, f"--config.file={config}", "--log.level=warn",
                                      f"--web.listen-address=127.0.0.1:{self.port}"],
                                     stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.log = log
        services.wait_for(lambda: _http_ok(f"http://127.0.0.1:{self.port}/"), 10, "snmp exporter")

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime

    def scrape(self, work: Workload) -> str:
        url = f"http://127.0.0.1:{self.port}/snmp?target=127.0.0.1:{work.port}&module={_module(work)}"
        with urllib.request.urlopen(url, timeout=60) as answer:
            return str(answer.read().decode())

    def runner(self, work: Workload, max_repetitions: int, scratch: Path) -> tuple[float, int]:
        body = self.scrape(work)  # warm-up, and the number of varbinds it walked
        walked = _scraped_varbinds(body)
        started = self.cpu()
        for _ in range(EXPORTER_SCRAPES):
            self.scrape(work)
        return self.cpu() - started, walked * EXPORTER_SCRAPES

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


def _module(work: Workload) -> str:
    return f"{work.name.replace('-', '_')}_{work.version}"


def _exporter_module(work: Workload, max_repetitions: int) -> str:
    """Return a snmp.yml (0.21 format) module that walks the workload's roots and exports the IF-MIB."""
    if work.version == "v2c":
        auth = f"    auth: {{community: {work.community}}}\n    version: 2\n"
    else:
        user, auth_key, priv_key = USER
        auth = (f"    version: 3\n    auth: {{security_level: authPriv, username: {user}, password: {auth_key},"
                f" auth_protocol: SHA, priv_protocol: AES, priv_password: {priv_key}}}\n")
    metrics = []
    for column in (5, 7, 8, 10, 14, 16, 20):
        metrics.append((f"if_{column}", f"{IF_TABLE}.{column}", "gauge"))
    for column in (6, 10, 15):
        metrics.append((f"ifx_{column}", f"{IFX_TABLE}.{column}", "counter" if column != 15 else "gauge"))
    metrics.append(("if_descr", f"{IF_TABLE}.2", "DisplayString"))
    lines = [f"{_module(work)}:\n", f"  walk: [{', '.join(work.roots)}]\n", f"  max_repetitions: {max_repetitions}\n",
             "  retries: 1\n", "  timeout: 10s\n", auth.replace("    ", "  "), "  metrics:\n"]
    for name, oid, kind in metrics:
        lines.append(f"    - {{name: {name}, oid: {oid}, type: {kind},"
                     " indexes: [{labelname: ifIndex, type: gauge}]}\n")
    return "".join(lines)


def _scraped_varbinds(body: str) -> int:
    for line in body.splitlines():
        if line.startswith("snmp_scrape_pdus_returned "):
            return int(float(line.split()[1]))
    raise RuntimeError("the exporter's answer has no snmp_scrape_pdus_returned")


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as answer:
            return bool(200 <= answer.status < 300)
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    """Start the agents, measure every client on every workload, print the table; return 0."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per figure (the median is printed)")
    parser.add_argument("--max-repetitions", type=int, default=25, help="GETBULK max-repetitions for all")
    args = parser.parse_args(argv)

    scratch = Path(tempfile.mkdtemp(prefix="bench-snmp-"))
    started: list[services.Service] = []
    exporter: Exporter | None = None
    try:
        snmpd = services.start_snmpd(scratch / "snmpd", community="public", v3_user=USER)
        started.append(snmpd)
        data = scratch / "snmprec"
        data.mkdir()
        (data / "sw50.snmprec").write_text(interface_device("sw50", 50))
        snmpsim = services.start_snmpsim(scratch / "snmpsim", data)
        started.append(snmpsim)
        workloads = [Workload("mib-2", "v2c", snmpd.port, [MIB2]), Workload("mib-2", "v3", snmpd.port, [MIB2]),
                     Workload("if-50", "v2c", snmpsim.port, [IF_TABLE, IFX_TABLE], community="sw50")]

        clients: dict[str, Callable[[Workload, int, Path], tuple[float, int]]] = {
            "snmpbulkwalk": run_snmpbulkwalk}
        binary = shutil.which("prometheus-snmp-exporter")
        if binary:
            exporter = Exporter(binary, workloads, args.max_repetitions, scratch / "exporter")
            clients["snmp-exporter"] = exporter.runner
        clients["pysnmp"] = run_engine("pysnmp")
        clients["gufo"] = run_engine("gufo")

        results = {(w.name, w.version, c): Result() for w in workloads for c in clients}
        for run in range(args.runs):
            for work in workloads:
                for name, runner in clients.items():
                    cpu, count = runner(work, args.max_repetitions, scratch)
                    results[work.name, work.version, name].cpu.append(cpu)
                    results[work.name, work.version, name].varbinds.append(count)
            print(f"run {run + 1}/{args.runs} done", file=sys.stderr, flush=True)

        print(f"SNMP client CPU per varbind (median of {args.runs} runs, GETBULK max-repetitions "
              f"{args.max_repetitions}; goal: at most {GOAL:g}x snmpbulkwalk)")
        if not binary:
            print("prometheus-snmp-exporter is not installed: apt-get install -y --no-install-recommends "
                  "prometheus-snmp-exporter")
        print(f"{'workload':10} {'ver':4} {'client':14} {'varbinds':>9} {'us/varbind':>11} {'x baseline':>11}  goal")
        failed = False
        for work in workloads:
            base = results[work.name, work.version, "snmpbulkwalk"].us_per_varbind()
            for name in clients:
                result = results[work.name, work.version, name]
                cost = result.us_per_varbind()
                ratio = cost / base
                verdict = "-" if name in ("snmpbulkwalk", "snmp-exporter") else ("PASS" if ratio <= GOAL else "FAIL")
                failed |= name == "gufo" and verdict == "FAIL"
                varbinds = statistics.median(result.varbinds) / (EXPORTER_SCRAPES if name == "snmp-exporter" else 1)
                print(f"{work.name:10} {work.version:4} {name:14} {varbinds:>9.0f} {cost:>11.1f} {ratio:>10.1f}x"
                      f"  {verdict}")
        default = make_client(workloads[0].target(args.max_repetitions))
        default.close()
        print(f"the agent's default engine (make_client engine='auto'): {type(default).__name__}"
              f" -> {'FAIL' if failed else 'PASS'}")
        return 0
    finally:
        if exporter is not None:
            exporter.stop()
        for svc in reversed(started):
            svc.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
