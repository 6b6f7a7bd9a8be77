"""Software releases rolled out in waves, end to end, with real parts.

Three releases are built from copies of this checkout: the one installed first (OLD), a newer one (NEW) and a
broken one (BROKEN: its ``zonewatch-agent run`` exits at once; ``--help`` still works, so install.sh's own check
passes). NEW and BROKEN are served as the zone's package index (a ``file://`` folder with PEP 503 pages). Two
probes are installed with ``deploy/install.sh agent`` into scratch roots (``--root``, offline as in
test_install.py: the dependencies are the test environment's), each with the updater's units checked by
``systemd-analyze verify``. Each agent runs from its root's ``current`` link under ``unit_standin.py`` (systemd's
``Restart=always`` and ``systemctl restart``, as the updater's ``--restart-command``), on a simulated modem, over
TLS to mosquitto with the rendered ACL; the collector runs with the inventory managing both probes and a NOC
webhook. The path unit is played by a thread that runs the updater exactly as the unit's ExecStart does (the
root's ``current/bin/zonewatch-agent-update``, the installed ``deploy/install.sh``) whenever a probe's
``request.json`` appears.

1. ``fleet update --version NEW --first 1``: p1 gets NEW in its desired configuration, asks, its updater installs
   it, restarts the agent, sees it healthy; p2 gets NEW only once p1 has run it healthy for the soak; then p2 is
   updated the same way and the rollout is done. Printed: the time from the desired release published to the
   collector seeing the probe run it, and its parts.
2. ``fleet update --version BROKEN``: p1's new agent never comes up; its updater rolls it back within the health
   timeout, the agent on NEW reports ``rolled_back``, the rollout stops (p2 is never given BROKEN) and the NOC gets
   ProbeUpdateFailed.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent.sim.modem import SimModem
from tests import services
from tests.integration.test_install import BASE_PYTHON, INSTALL, _build_wheel, _copy_source, _dependencies_view
from tests.services import WebhookServer
from tests.tlsbroker import PASSWORDS, start_tls_broker, write_server_pki

pytestmark = pytest.mark.integration

ZONE = "uz"
WAIT = 60.0
HEALTH_TIMEOUT_S = 15
SOAK = "3s"
STANDIN = Path(__file__).with_name("unit_standin.py")


@dataclass
class Kit:
    """The releases: OLD's wheel, and an index holding NEW and BROKEN."""

    old: str
    new: str
    broken: str
    wheel_old: Path
    wheels: Path            # --wheels: offline, no index for the dependencies
    index_url: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Kit:
    base = tmp_path_factory.mktemp("releases")
    source = _copy_source(base / "old")
    found = re.search(r'(?m)^version = "([^"]+)"$', (source / "pyproject.toml").read_text())
    assert found is not None
    old = found.group(1)
    new, broken = f"{old}+wave", f"{old}+broken"
    wheels = base / "wheels"
    wheel_old = _build_wheel(source, wheels)
    wheel_new = _build_wheel(_copy_source(base / "new", new), base / "w-new")
    bad = _copy_source(base / "broken", broken)
    cli = bad / "agent" / "cli.py"
    text = cli.read_text()
    assert text.count("    return asyncio.run(_run(cfg))\n") == 1
    cli.write_text(text.replace("    return asyncio.run(_run(cfg))\n",
                                "    raise SystemExit('zonewatch-agent: this release is broken on purpose')\n"))
    wheel_broken = _build_wheel(bad, base / "w-broken")
    project = base / "index" / "zonewatch"
    project.mkdir(parents=True)
    links = []
    for wheel in (wheel_new, wheel_broken):
        shutil.copy(wheel, project)
        links.append(f'<a href="{wheel.name}">{wheel.name}</a>')
    (project / "index.html").write_text("<!DOCTYPE html>\n" + "\n".join(links) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))}
    env.update(PYTHONPATH=str(_dependencies_view(base / "dependencies")), PIP_NO_BUILD_ISOLATION="0")
    return Kit(old, new, broken, wheel_old, wheels, (base / "index").as_uri(), env)


def inventory_text(ports: dict[str, str]) -> str:
    probes = "".join(f"""\
  {name}:
    zone: {ZONE}
    area: a
    modems: [{{name: vt, carrier: viettel}}]
    config:
      sources:
        - {{type: cellular, name: vt, port: {port}, interval: 500ms, timeout: 1s}}
""" for name, port in ports.items())
    return f"""\
zones:
  {ZONE}: {{name: Update Park, areas: [a]}}
carriers:
  viettel: {{plmn: 452-04, name: Viettel}}
probe_defaults:
  self_interval: 1s
probes:
{probes}"""


@dataclass
class Probe:
    """One probe: its scratch root, its configuration, its agent under the stand-in for systemd."""

    name: str
    root: Path
    standin: services.Service | None = None
    updates: list[tuple[float, float, int]] = field(default_factory=list)   # (start, end, exit code) per run

    @property
    def home(self) -> Path:
        return self.root / "opt/zonewatch/agent"

    @property
    def config(self) -> Path:
        return self.root / "etc/zonewatch/agent.yaml"

    @property
    def request(self) -> Path:
        return self.root / "var/lib/zonewatch/update/request.json"

    def links(self) -> tuple[str, str]:
        return os.readlink(self.home / "current"), os.readlink(self.home / "previous")


class Zone:
    """The broker, the collector, the NOC webhook, two modems and two installed probes; all stopped on close."""

    def __init__(self, tmp: Path, kit: Kit) -> None:
        self.tmp, self.kit = tmp, kit
        self.started: list[Any] = []
        self.stop_updaters = threading.Event()
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        tmp, kit = self.tmp, self.kit
        self.probes = {name: Probe(name, tmp / name / "root") for name in ("p1", "p2")}
        with ThreadPoolExecutor(2) as pool:   # the two first installs at once
            for out in pool.map(self.install, self.probes.values()):
                assert f"current is zonewatch {kit.old}" in out, out
        for probe in self.probes.values():
            for unit in ("zonewatch-agent-update.service", "zonewatch-agent-update.path"):
                verify_unit(probe.root, unit)
        self.modems = {name: SimModem() for name in self.probes}
        for modem in self.modems.values():
            modem.set_registered(True, plmn="45204")
            modem.start()
            self.started.append(modem)
        pki = write_server_pki(tmp / "pki", "update test CA")
        self.hooks = WebhookServer().start()
        self.started.append(self.hooks)
        inventory = tmp / "inventory.yaml"
        inventory.write_text(inventory_text({n: m.port for n, m in self.modems.items()}))
        self.broker = start_tls_broker(tmp / "mosquitto", inventory.read_text(), PASSWORDS, pki)
        self.started.append(self.broker)
        self.collector_config = tmp / "collector.yaml"
        self.collector_config.write_text(
            f"mqtt: {{host: 127.0.0.1, port: {self.broker.port}, username: collector, password: collector-pw,\n"
            f"       client_id: collector, tls: {{ca_file: '{pki.ca}'}}}}\n"
            f"storage: {{type: sqlite, path: '{tmp / 'store.db'}'}}\n"
            f"queue: {{path: '{tmp / 'centre' / 'intake.db'}'}}\nhttp: {{enabled: false}}\n"
            "inventory: inventory.yaml\n"
            "alerting:\n  interval: 500ms\n  settings: {probe_timeout: 1h}\n"
            f"  delivery: direct\n  noc: [{{type: webhook, url: '{self.hooks.url}/noc'}}]\n")
        self.fleet = tmp / "centre" / "fleet"
        self.started.append(services.start_collector(self.collector_config, tmp / "collector"))
        for probe in self.probes.values():
            probe.config.write_text(
                f"probe: {{id: {probe.name}, zone: {ZONE}}}\n"
                f"mqtt: {{host: 127.0.0.1, port: {self.broker.port}, username: {probe.name}, "
                f"password: {{env: ZW_MQTT_PASSWORD}}, keepalive: 5s, tls: {{ca_file: '{pki.ca}'}}}}\n"
                f"spool: {{path: '{probe.root / 'var/lib/zonewatch/spool.db'}'}}\nmetrics: {{enabled: false}}\n"
                "remote_config: {deadman: 1s}\n"
                f"update: {{source: '{kit.index_url}', health_timeout: {HEALTH_TIMEOUT_S}s}}\n")
            agent = probe.home / "current" / "bin" / "zonewatch-agent"
            log = tmp / probe.name / f"agent-{probe.name}.log"
            with open(log, "ab") as sink:
                proc = subprocess.Popen([sys.executable, str(STANDIN), str(agent), "-c", str(probe.config), "run"],
                                        stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        cwd=tmp / probe.name,
                                        env={**kit.env, "ZW_MQTT_PASSWORD": PASSWORDS[probe.name]})
            probe.standin = services.Service(f"agent-{probe.name}", proc, 0, tmp / probe.name, log)
            self.started.append(probe.standin)
        self.watcher = threading.Thread(target=self._path_units, name="path-units", daemon=True)
        self.watcher.start()

    def install(self, probe: Probe) -> str:
        proc = subprocess.run(["bash", str(INSTALL), "agent", "--from", str(self.kit.wheel_old), *self.options(probe)],
                              capture_output=True, text=True, timeout=180, env=self.kit.env, stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        return proc.stdout

    def options(self, probe: Probe) -> list[str]:
        return ["--root", str(probe.root), "--python", BASE_PYTHON, "--wheels", str(self.kit.wheels)]

    # ------------------------------------------------------------------------------------ zonewatch-agent-update.path

    def _path_units(self) -> None:
        """What each probe's path unit does: run the updater (a oneshot) whenever request.json exists."""
        while not self.stop_updaters.wait(0.1):
            for probe in self.probes.values():
                if probe.request.exists():
                    self._updater(probe)

    def _updater(self, probe: Probe) -> None:
        assert probe.standin is not None
        restart = shlex.join([sys.executable, "-c", f"import os, signal; os.kill({probe.standin.pid}, "
                                                     "signal.SIGHUP)"])
        argv = [str(probe.home / "current/bin/zonewatch-agent-update"), "-c", str(probe.config),
                "--install", str(probe.home / "deploy/install.sh"), "--restart-command", restart, "--",
                *self.options(probe)]
        started = time.monotonic()
        with open(self.tmp / probe.name / "updater.log", "ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env={**self.kit.env, "ZW_MQTT_PASSWORD": PASSWORDS[probe.name]},
                                    start_new_session=True)   # its own group: install.sh and pip go with it
        self.running[probe.name] = proc
        try:
            code = proc.wait(240)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            code = proc.wait()
        finally:
            self.running.pop(probe.name, None)
        probe.updates.append((started, time.monotonic(), code))

    def close(self) -> None:
        self.stop_updaters.set()
        for proc in list(self.running.values()):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        watcher = getattr(self, "watcher", None)
        if watcher is not None:
            watcher.join(30)
        for part in reversed(self.started):
            try:
                part.stop()
            except Exception:  # noqa: BLE001 - stop everything else all the same
                pass

    # ---------------------------------------------------------------------------------------------- the centre

    def fleet_cmd(self, *args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "collector", "-c", str(self.collector_config), "fleet", *args],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    def software(self) -> dict[str, Any]:
        try:
            doc: dict[str, Any] = json.loads((self.fleet / "software-state.json").read_text())
            return doc
        except (OSError, ValueError):
            return {}

    def seen(self, probe: str) -> dict[str, Any]:
        seen: dict[str, Any] = self.software().get("seen", {}).get(probe, {})
        return seen

    def rollout(self) -> dict[str, Any]:
        return self.software().get("rollout") or {}

    def audit(self) -> list[dict[str, Any]]:
        try:
            return [json.loads(line) for line in (self.fleet / "audit.jsonl").read_text().splitlines()]
        except OSError:
            return []

    def entry(self, action: str, probe: str | None = None, **match: Any) -> dict[str, Any] | None:
        return next((e for e in self.audit() if e["action"] == action and (probe is None or e.get("probe") == probe)
                     and all(e.get(k) == v for k, v in match.items())), None)

    def noc(self, alertname: str) -> list[dict[str, Any]]:
        return [a for h in self.hooks.at("/noc") for a in h.body["alerts"] if a["labels"]["alertname"] == alertname]

    def wait(self, condition: Any, what: str, timeout: float = WAIT) -> None:
        try:
            services.wait_for(condition, timeout, what, interval=0.1)
        except TimeoutError as exc:
            logs = "\n".join(f"--- {p.name} updater:\n{_tail(self.tmp / p.name / 'updater.log')}\n--- {p.name} agent:\n"
                             f"{_tail(self.tmp / p.name / f'agent-{p.name}.log')}" for p in self.probes.values())
            raise AssertionError(f"{exc}\n{logs}\n--- collector:\n{_tail(self.tmp / 'collector/collector.log')}") \
                from None


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(none)"


def verify_unit(root: Path, name: str) -> None:
    proc = subprocess.run([services.require("systemd-analyze"), "verify", f"--root={root}", "--recursive-errors=no",
                           f"/etc/systemd/system/{name}"], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, ""), proc.stdout + proc.stderr


@pytest.fixture
def zone(tmp_path: Path, kit: Kit) -> Iterator[Zone]:
    z = Zone(tmp_path, kit)
    yield z
    z.close()


def test_a_release_rolls_out_in_waves_and_a_broken_one_is_rolled_back_and_stops_the_rollout(zone: Zone,
                                                                                          kit: Kit) -> None:
    p1, p2 = zone.probes["p1"], zone.probes["p2"]
    unit = (p1.root / "etc/systemd/system/zonewatch-agent-update.service").read_text()
    assert "ExecStart=/opt/zonewatch/agent/current/bin/zonewatch-agent-update -c /etc/zonewatch/agent.yaml" \
           in unit and "--install /opt/zonewatch/agent/deploy/install.sh" in unit
    for name in ("p1", "p2"):
        zone.wait(lambda n=name: zone.seen(n).get("running") == kit.old and zone.seen(n).get("status") == "online",
                  f"{name} to run {kit.old}, online")

    # 1. the first wave, then the rest once the first has run it healthy for the soak
    out = zone.fleet_cmd("update", "--version", kit.new, "--first", "1", "--soak", SOAK, "--deadline", "2m",
                         "--by", "alice")
    assert f"wave 1: p1 (now)\nwave 2: p2 (once wave 1 is healthy for {SOAK})" in out, out
    zone.wait(lambda: zone.rollout().get("state") == "done", "the rollout of NEW to finish", timeout=120)
    published = {name: zone.entry("publish", name, software=kit.new) for name in ("p1", "p2")}
    assert published["p1"] is not None and published["p2"] is not None
    running = {name: zone.seen(name)["running_since_ns"] for name in ("p1", "p2")}
    assert all(zone.seen(name)["running"] == kit.new for name in ("p1", "p2"))
    soak_ns = 3 * 10**9
    wave2 = zone.entry("wave", software=kit.new)
    assert wave2 is not None and wave2["probes"] == ["p2"]
    # p2 was not asked before p1 had run NEW, online, for the soak
    assert published["p2"]["at_ns"] >= wave2["at_ns"] >= running["p1"] + soak_ns
    assert p1.links() == (f"releases/{kit.new}", f"releases/{kit.old}")
    assert p2.links() == (f"releases/{kit.new}", f"releases/{kit.old}")
    installed = {name: zone.entry("update_installed", name, software=kit.new) for name in ("p1", "p2")}
    asked = {name: zone.entry("update_requested", name, software=kit.new) for name in ("p1", "p2")}
    assert all(installed.values()) and all(asked.values())
    assert [code for _, _, code in p1.updates] == [0] and [code for _, _, code in p2.updates] == [0]

    # 2. a broken release: rolled back on the probe, the rollout stops, the NOC is paged
    zone.fleet_cmd("update", "--version", kit.broken, "--first", "1", "--soak", SOAK, "--by", "bob")
    zone.wait(lambda: zone.rollout().get("state") == "failed" and zone.rollout().get("version") == kit.broken,
              "the rollout of BROKEN to fail", timeout=120)
    rolled = zone.entry("update_rolled_back", "p1", software=kit.broken)
    assert rolled is not None and rolled["running"] == kit.new
    assert rolled["error"].startswith(f"release {kit.broken} did not start, or did not say so, within "
                                      f"{HEALTH_TIMEOUT_S}s; rolled back to the release before"), rolled
    assert p1.links() == (f"releases/{kit.new}", f"releases/{kit.broken}")
    assert zone.entry("publish", "p2", software=kit.broken) is None     # no further wave began
    zone.wait(lambda: bool(zone.noc("ProbeUpdateFailed")), "ProbeUpdateFailed at the NOC")
    alert = zone.noc("ProbeUpdateFailed")[0]
    assert alert["labels"]["probe"] == "p1" and alert["status"] == "firing"
    assert {a["labels"]["probe"] for a in zone.noc("ProbeUpdateFailed")} == {"p1"}
    assert f"it reported the update to {kit.broken} rolled back" in alert["annotations"]["description"]
    zone.wait(lambda: zone.seen("p1").get("running") == kit.new and zone.seen("p1").get("status") == "online",
              "p1 back on NEW, online")
    status = zone.fleet_cmd("status")
    assert f"rollout of {kit.broken} by bob" in status and "FAILED at wave 1 of 2" in status, status
    line = next(x for x in status.splitlines() if x.startswith("p1 "))
    assert f"release: desired {kit.broken}, runs {kit.new}" in line and "rolled back" in line, line

    def after(entry: dict[str, Any] | None, since: dict[str, Any] | None) -> float:
        assert entry is not None and since is not None
        return (int(entry["at_ns"]) - int(since["at_ns"])) / 1e9

    parts = [f"{name} {(running[name] - int(published[name]['at_ns'])) / 1e9:.1f} s (asked "  # type: ignore[index]
             f"{after(asked[name], published[name]):.1f} s after publishing, the configuration's 1 s trial "
             f"included; the updater's run {p.updates[0][1] - p.updates[0][0]:.1f} s)"
             for name, p in zone.probes.items()]
    broken = after(rolled, zone.entry("publish", "p1", software=kit.broken))
    gap = (int(wave2["at_ns"]) - running["p1"]) / 1e9
    print("\nupdate timings: desired release published -> the collector sees the probe run it: " + "; ".join(parts)
          + f"; wave 2 began {gap:.1f} s after p1 was first seen on the release (soak {SOAK}); BROKEN published -> "
          f"rolled_back report {broken:.1f} s (health timeout {HEALTH_TIMEOUT_S} s)")
