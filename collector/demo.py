"""``zonewatch-collector demo``: a whole simulated zone on this machine, with readings shown live.

What runs (every port is a free one on 127.0.0.1, every file in one work folder):

    collector        in this process: embedded MQTT 3.1.1 broker (amqtt) and the SQLite store
    agent            ``python -m agent run`` in a child process, polling everything below
    modems           three ``python -m agent.sim.modem`` children on pseudo-terminals (Viettel, VinaPhone,
                     MobiFone), their RSRP drifting
    service tests    a ``qos`` source per modem, bound to loopback, against a zone test server in this
                     process; MobiFone's tests go to a closed port: registered, good signal, no traffic
                     (``collector.demo_qos``)
    SNMP devices     one snmpsim child serving ``bts-01``, ``sw-core`` and the BTS site's UPS ``ups-01``
                     (communities = device names; interface and UPS states writable, as a fault would set them;
                     each device's state its own, traffic at steady rates while an interface is up and none
                     while it is down: ``python -m agent.sim.device``, snmpsim with a variation of its own)
    alerting         the inventory below, and a NOC webhook receiver in this process

The scripted scenario (``--no-scenario`` turns it off) breaks the zone and mends it, while the tables show
the alerts and the notifications the receiver got:

    +30 s   Viettel's primary fibre into the park is cut (sw-core xe-0/1/0)   LinkDown, RedundancyLost
    +50 s   mains power fails at the shared BTS site (ups-01 on battery)        PowerOnBattery (both owners)
    +70 s   VinaPhone's signal at gate A drops into a coverage hole             CoverageHole (sustained 5 s)
    from the start  MobiFone's modem is registered with a good signal, and
            its service tests fail                                              DataAccessFailure (MobiFone)
    +100 s  the fibre is spliced; +120 s mains are back; +140 s the signal recovers: everything resolves

The live table reads what the collector stored, so what it shows has travelled the whole way: modem or
device, agent, spool, broker, collector, store. Without a terminal (output piped or redirected) the demo
prints plain lines instead. Its log goes to ``collector.log`` in the work folder; the screen shows warnings.

Stopping: Ctrl-C, SIGTERM, SIGHUP (the terminal closed) and ``--seconds`` all stop the agent first (it says
``stopping``: a planned stop, so ProbeDown is muted and pages nobody), then the simulated modems and devices,
every child by PID, then the collector; the demo then writes the zone's report for the run
(``report/report.html`` and CSV files, as ``zonewatch-collector report`` makes them) and says where the files
are. Ctrl-C works even when the demo was started with SIGINT ignored (``cmd &`` from a script). An exception
stops every child too, then shows its traceback. Children run in process groups of their own, so a Ctrl-C at
the terminal reaches the demo alone and the demo stops them in that order; on Linux each child also asks the
kernel to kill it when the demo dies (``PR_SET_PDEATHSIG``), so not even ``kill -9`` of the demo leaves one
behind. Output to a pipe or terminal that went away (``| tee`` and Ctrl-C) is dropped, not fatal.

This module starts the zone, plays the scenario and runs the loop; the parts live beside it:

    demo_zone.py      what the zone is (modems, devices, inventory), the scenario's timeline and faults, the
                      NOC's webhook receiver
    demo_children.py  starting, tying and ending the child processes; free ports
    demo_view.py      the live tables, the plain lines, the output that may go away, the log
    demo_qos.py       the zone test server the service tests run against
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from collector.alerting.config import AlertingConfig
from collector.app import Collector
from collector.config import CollectorConfig, EmbeddedBroker, HttpConfig, IntakeQueueConfig
from collector.demo_children import end, free_port, snmpsim_command, tied
from collector.demo_qos import ALERTING_SETTINGS, ZoneTestServer
from collector.demo_view import Say, log_to, plain_lines, quietly_stop, tables, who
from collector.demo_zone import (
    DATA,
    DEVICES,
    IF_OPER_STATUS,
    INVENTORY,
    MODEMS,
    SCENARIO,
    SITES,
    UPS_MINUTES_REMAINING,
    UPS_OUTPUT_SOURCE,
    UPS_SECONDS_ON_BATTERY,
    NocReceiver,
    snmp_set,
)
from collector.inventory import Inventory
from collector.storage import SqliteStorage
from collector.storage.sqlite import SqliteWriter
from zonewatch import strict
from zonewatch.extras import require

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# What the demo imports beyond `zonewatch-collector run` with a broker configured (its embedded broker, snmpsim in
# the devices' child, matplotlib for the closing report; rich for the live table, asked for only when there is
# one), and the extras that bring them with the agent it runs: the demo's whole install.
NEEDS = ("amqtt", "snmpsim", "pysmi", "matplotlib")
DEMO_EXTRAS = "agent,collector,demo"


class Demo:
    """The simulated zone; ``start()``, then ``rows()`` as often as wanted, then ``stop()``."""

    def __init__(self, workdir: Path, verbose: bool = False) -> None:
        self.workdir = workdir
        self.verbose = verbose  # the simulated devices log every answer too
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.collector: Collector | None = None
        self.store: SqliteWriter | None = None
        self.db = workdir / "zonewatch.db"
        self.snmp_port = 0
        self.modem_procs: dict[str, subprocess.Popen[bytes]] = {}
        self.hooks: Any = None
        self.test_server: ZoneTestServer | None = None

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start a child in a process group of its own (a Ctrl-C at the terminal reaches the demo, which stops
        the children in order), tied to this process (it dies with it), logging to ``<name>.log``."""
        with open(self.workdir / f"{name}.log", "ab") as log:   # the child has its own copy
            proc = subprocess.Popen(tied(argv), stdout=subprocess.PIPE if name.startswith("modem") else log,
                                    stderr=log, stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})},
                                    process_group=0)
        self.children.append((name, proc))
        return proc

    def start(self) -> None:
        """Start the collector, the simulated devices and modems, and the agent."""
        if sorted(path.stem for path in DATA.glob("*.snmprec")) != sorted(DEVICES):  # package data of the wheel
            raise RuntimeError(f"the simulated devices' walks ({DATA}/*.snmprec) are missing from this installation: "
                               "reinstall zonewatch from a wheel that carries them")
        self.workdir.mkdir(parents=True, exist_ok=True)
        broker_port, snmp_port = free_port(), free_port(socket.SOCK_DGRAM)
        self.snmp_port = snmp_port
        self.hooks = NocReceiver().start()
        (self.workdir / "inventory.yaml").write_text(INVENTORY)
        inventory = strict.load(Inventory, INVENTORY, str(self.workdir / "inventory.yaml"))
        alerting = strict.load(AlertingConfig, (
            f"interval: 2s\nrestart_grace: 0s\nsettings: {{coverage_window: 15s, {ALERTING_SETTINGS}}}\n"
            "rules: {CoverageHole: {for: 5s, keep_firing_for: 5s}}\n"
            f"noc: [{{type: webhook, url: '{self.hooks.url}/noc'}}]\n"), "demo alerting")
        cfg = CollectorConfig(embedded_broker=EmbeddedBroker(listen=f"127.0.0.1:{broker_port}"),
                              storage=SqliteStorage(type="sqlite", path=str(self.db)),
                              queue=IntakeQueueConfig(path=str(self.workdir / "intake.db")),
                              http=HttpConfig(listen=f"127.0.0.1:{free_port()}"), alerting=alerting)
        self.collector = Collector(cfg, inventory)
        self.collector.start()

        py = sys.executable
        env = {"SNMPSIM_ALLOW_ROOT": "true"} if os.geteuid() == 0 else {}
        self._spawn("snmpsim", snmpsim_command(DATA, self.workdir / "snmpsim-cache", snmp_port, self.verbose), env)
        ports = {}
        for name, plmn, _, rsrp, cell in MODEMS:
            proc = self._spawn(f"modem-{name}", [py, "-m", "agent.sim.modem", "--plmn", plmn, "--rsrp", str(rsrp),
                                                 "--cell", cell, "--wander", "6"])
            assert proc.stdout is not None
            line = proc.stdout.readline().decode()  # "simulated modem on /dev/pts/N (Ctrl-C to stop)"
            if " on " not in line:
                raise RuntimeError(f"simulated modem {name} did not start: see {self.workdir}/modem-{name}.log")
            ports[name] = line.split(" on ", 1)[1].split()[0]
            self.modem_procs[name] = proc

        agent_cfg = self.workdir / "agent.yaml"
        sources = "".join(
            f"  - {{type: cellular, name: {name}, port: {ports[name]}, carrier: '{tag}', interval: 5s}}\n"
            for name, _, tag, _, _ in MODEMS)
        extra = {"sw-core": ", links: {xe-0/1/0: vt-primary, xe-0/1/1: vt-backup}",
                 "ups-01": ", profiles: [system, ups_mib]"}
        sources += "".join(
            f"  - {{type: snmp, name: {dev}, host: 127.0.0.1, port: {snmp_port}, version: v2c, community: {dev},"
            f" interval: 5s, site: {SITES[dev]}{extra.get(dev, '')}}}\n" for dev in DEVICES)
        self.test_server = ZoneTestServer().start()
        sources += self.test_server.sources([(name, tag) for name, _, tag, _, _ in MODEMS], self.workdir)
        agent_cfg.write_text(
            "probe: {id: p1, zone: demo-park, area: gate-a}\n"
            f"mqtt: {{host: 127.0.0.1, port: {broker_port}, protocol: '3.1.1'}}\n"
            f"spool: {{path: {self.workdir / 'spool.db'}}}\n"
            f"metrics: {{listen: '127.0.0.1:{free_port()}'}}\n"
            "self_interval: 5s\n"
            f"sources:\n{sources}")
        self._spawn("agent", [py, "-m", "agent", "-c", str(agent_cfg), "run"])
        (self.workdir / "children.pid").write_text("".join(f"{p.pid} {n}\n" for n, p in self.children))
        self.store = SqliteWriter(SqliteStorage(type="sqlite", path=str(self.db)))

    def stop(self) -> None:
        """Stop the agent first, while its broker and the modems and devices it reads are still there (it says
        ``stopping``: a planned stop, muted, no page), then the simulated modems and devices, then the
        collector; every child by PID and reaped. May be called again."""
        try:
            end([(n, p) for n, p in self.children if n == "agent"])
        finally:
            try:
                end([(n, p) for n, p in self.children if n != "agent"])
            finally:
                collector, self.collector = self.collector, None
                try:
                    if collector is not None:
                        collector.stop()
                finally:
                    if self.store is not None:
                        self.store.close()
                        self.store = None
                    if self.hooks is not None:
                        self.hooks.stop()
                    if self.test_server is not None:
                        self.test_server.stop()
                        self.test_server = None

    # the scripted faults -----------------------------------------------------------------------------

    def fibre(self, up: bool) -> None:
        """Cut or splice Viettel's primary fibre (sw-core xe-0/1/0, ifIndex 1)."""
        snmp_set(self.snmp_port, "sw-core", f"{IF_OPER_STATUS}.1", 1 if up else 2)

    def mains(self, on: bool) -> None:
        """Mains power at the BTS site fails (the UPS goes on battery) or comes back."""
        snmp_set(self.snmp_port, "ups-01", UPS_OUTPUT_SOURCE, 3 if on else 5)
        snmp_set(self.snmp_port, "ups-01", UPS_SECONDS_ON_BATTERY, 0 if on else 42)
        snmp_set(self.snmp_port, "ups-01", UPS_MINUTES_REMAINING, 95 if on else 38)

    def coverage(self, carrier: str, hole: bool) -> None:
        """Move a carrier's modem into a coverage hole, or out of it."""
        self.modem_procs[carrier].send_signal(signal.SIGUSR1 if hole else signal.SIGUSR2)

    def alerts(self) -> list[dict[str, Any]]:
        """Return the alerts the collector tracks now (pending, firing, muted)."""
        engine = self.collector.engine if self.collector is not None else None
        if engine is None:
            return []
        return [{**a.labels, "_state": a.state, "_muted": a.muted, "_since": a.starts_ns,
                 "_summary": a.annotations.get("summary", "")} for a in engine.tracker.alerts()]

    def failed_child(self) -> str | None:
        """Return the name of a child that exited by itself, if any."""
        return next((name for name, proc in self.children if proc.poll() is not None), None)

    def counters(self) -> dict[str, float]:
        """Return the collector's own counters."""
        assert self.collector is not None
        reg = self.collector.metrics.registry
        names = {"received": "zonewatch_ingest_messages_total", "written": "zonewatch_storage_written_samples_total",
                 "duplicates": "zonewatch_ingest_duplicate_batches_total"}
        return {k: reg.get_sample_value(v) or 0.0 for k, v in names.items()}

    def rows(self, now_ns: int) -> dict[str, list[dict[str, Any]]]:
        """Return the newest stored readings, by table."""
        assert self.store is not None
        st = self.store

        def latest(measurement: str, fields: list[str]) -> list[dict[str, Any]]:
            by_series: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
            for field in fields:
                for p in st.latest(measurement, field):
                    row = by_series.setdefault(tuple(sorted(p.tags.items())), {**p.tags, "_age": 0.0})
                    row[field] = p.value
                    row["_age"] = max(row["_age"], (now_ns - p.time_ns) / 1e9) if field == fields[0] else row["_age"]
            return list(by_series.values())

        interfaces = latest("interface", ["oper_up", "in_octets", "out_octets", "speed_mbps"])
        for row in interfaces:   # the rate between the last two polls, as a NOC graph shows it
            tags = {k: v for k, v in row.items() if not k.startswith("_") and k in ("device", "ifname")}
            for field, key in (("in_octets", "in_mbps"), ("out_octets", "out_mbps")):
                pts = st.query("interface", field, tags, since_ns=now_ns - 60 * 10**9)
                if len(pts) >= 2 and pts[-1].time_ns > pts[-2].time_ns and pts[-1].value >= pts[-2].value:
                    seconds = (pts[-1].time_ns - pts[-2].time_ns) / 1e9
                    row[key] = (pts[-1].value - pts[-2].value) * 8 / seconds / 1e6
        return {
            "cellular": latest("cellular", ["rsrp_dbm", "rsrq_db", "rssi_dbm", "registered"]),
            "device": latest("device", ["up", "uptime_s"]),
            "interface": interfaces,
            "probe": latest("probe", ["up", "spool_depth", "rss_mb"]),
        }


def _act(demo: Demo, action: str) -> None:
    kind, *rest = action.split(":")
    if kind == "fibre":
        demo.fibre(rest[0] == "up")
    elif kind == "mains":
        demo.mains(rest[0] == "on")
    elif kind == "coverage":
        demo.coverage(rest[0], rest[1] == "hole")


def run_demo(workdir: str | None = None, seconds: float = 0, plain: bool = False, scenario: bool = True,
             pace: float = 1.0, log_level: str | None = None) -> int:
    """Run the demo until Ctrl-C, SIGTERM or SIGHUP (or ``seconds``); return the exit code.

    ``pace`` scales the scenario's timeline (0.5: twice as fast). The signals only ask the demo to stop (they
    are caught whatever this process inherited, also an ignored SIGINT), so no signal cuts the stop short.
    Raises MissingExtra (``zonewatch.extras``), before it starts anything, when a package it needs is missing.
    """
    for module in NEEDS + (() if plain or not sys.stdout.isatty() else ("rich",)):
        require(module, "zonewatch-collector demo", DEMO_EXTRAS)
    folder = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="zonewatch-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    before = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in STOP_SIGNALS}
    try:
        log_to(folder, log_level)
        return _run(Demo(folder, verbose=log_level == "debug"), stop, Say(), seconds, plain, scenario, pace)
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _run(demo: Demo, stop: threading.Event, say: Say, seconds: float, plain: bool, scenario: bool,
         pace: float) -> int:
    folder = demo.workdir
    started, started_ns = time.monotonic(), time.time_ns()
    code = 0
    say(f"ZoneWatch demo: starting a simulated zone in {folder} (log: {folder / 'collector.log'}) ...")
    if not plain and not sys.stdout.isatty():
        plain = True
        say("demo: the output is not a terminal: plain lines instead of the live table")
    shown = 0
    try:
        demo.start()
        live: Any = None
        if not plain:
            from rich.live import Live

            live = Live(auto_refresh=False)
            live.start()
        timeline = list(SCENARIO) if scenario else []
        step = "running (no scripted faults)" if not scenario else "the zone settles; the first fault comes at +30 s"
        last_plain, shown_readings = -5.0, False
        try:
            while not stop.wait(1.0 if live else 0.5):
                elapsed = time.monotonic() - started
                while timeline and elapsed >= timeline[0][0] * pace:
                    _at, step, action = timeline.pop(0)
                    _act(demo, action)
                    if not live:
                        say(f"scenario: {step}")
                for _at, a in demo.hooks.got[shown:]:
                    shown += 1
                    if not live:
                        say(f"notification: {a['status']} {a['labels'].get('alertname')} {who(a['labels'])}")
                failed = demo.failed_child()
                if failed:
                    say(f"demo: {failed} stopped unexpectedly; its log is {folder}/{failed}.log", err=True)
                    code = 1
                    break
                data, counters = demo.rows(time.time_ns()), demo.counters()
                if live:
                    try:
                        live.update(tables(data, counters, elapsed, demo.alerts(), demo.hooks.recent(), step),
                                    refresh=True)
                    except OSError:   # the terminal went away (its SIGHUP stops the demo): show nothing more
                        say.lost(1)
                        quietly_stop(live)
                        live = None
                elif elapsed - last_plain >= 5.0 or (not shown_readings and data["device"]):   # the first at once
                    last_plain, shown_readings = elapsed, bool(data["device"])
                    say(plain_lines(data, counters, elapsed))
                if seconds and elapsed >= seconds:
                    break
        finally:
            if live and not quietly_stop(live):
                say.lost(1)
    except RuntimeError as exc:   # a part of the zone did not start
        say(f"demo: {exc}", err=True)
        code = 1
    finally:   # every path, an unexpected exception too (its traceback follows)
        say("demo: stopping ...")
        demo.stop()
    if demo.hooks is not None:   # a page while stopping would be noise: show it if there was one
        for _at, a in demo.hooks.got[shown:]:
            say(f"notification: {a['status']} {a['labels'].get('alertname')} {who(a['labels'])} (while stopping)")
    say(f"demo: stopped. Store: {demo.db}; logs and configs: {folder}")
    if demo.hooks is not None and demo.db.exists():   # it started: the zone authority's report of what the run saw
        from collector.report import ReportError, write_demo_report

        try:
            inventory = strict.load(Inventory, INVENTORY, "demo inventory")
            page = write_demo_report(demo.db, folder / "report", "demo-park", started_ns, time.time_ns(), inventory)
            say(f"demo: the zone's report (HTML with plots, and CSV): {page}")
        except ReportError as exc:
            say(f"demo: no report: {exc}")
    return code
