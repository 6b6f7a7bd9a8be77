"""Backup and restore of the collector's state (README: Backup and restore), as an operator moves it.

Real mosquitto, VictoriaMetrics and collector processes, a probe publishing a poll every 50 ms throughout, and
the NOC's webhook. An outage fires (paged once); ``zonewatch-collector backup`` copies the running collector's
state; the collector is stopped; ``restore`` puts the backup into another machine's folders (another
configuration, the same MQTT client id); the collector starts there, the outage ends. Nothing may be paged
twice, the resolve must come once, every sample the probe published must be in VictoriaMetrics once, and the
seqs the old collector took after the backup must not count as lost.
"""

from __future__ import annotations

import collections
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests import services
from tests.services import WebhookServer
from zonewatch import wire

pytestmark = pytest.mark.integration

ZONE = "bz"
WAIT = 30.0
INVENTORY = f"""\
zones:
  {ZONE}: {{name: Backup Park}}
carriers:
  viettel: {{plmn: 452-04, name: Viettel}}
sites:
  pop: {{zone: {ZONE}, kind: fibre_pop, owners: [viettel]}}
devices:
  sw-a: {{site: pop, kind: switch, owners: [viettel], probe: p1}}
links:
  vt-1: {{device: sw-a, ifname: xe-1, carriers: [viettel]}}
  vt-2: {{device: sw-a, ifname: xe-2, carriers: [viettel]}}
redundancy_groups:
  vt-routes: {{zone: {ZONE}, carriers: [viettel], members: [{{link: vt-1}}, {{link: vt-2}}]}}
probes:
  p1: {{zone: {ZONE}}}
"""


def zonewatch(config: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "collector", "-c", str(config), *args], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


class Site:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started: list[services.Service] = []
        self.hooks = WebhookServer().start()
        self.xe1 = True
        self.seq = 0
        self.published = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.client: mqtt.Client | None = None
        try:
            self.broker = services.start_mosquitto(tmp / "mosquitto")
            self.started.append(self.broker)
            self.vm = services.start_victoriametrics(tmp / "vm")
            self.started.append(self.vm)
            (tmp / "inventory.yaml").write_text(INVENTORY)
            self.port = services.free_port()
            self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="p1",
                                      protocol=mqtt.MQTTv5)
            self.client.connect("127.0.0.1", self.broker.port)
            self.client.loop_start()
        except BaseException:
            self.close()
            raise

    def config(self, machine: str) -> Path:
        """Write the configuration of the collector on ``machine`` (its own folders, the same client id)."""
        folder = self.tmp / machine
        folder.mkdir(exist_ok=True)
        path = self.tmp / f"{machine}.yaml"
        path.write_text(
            f"mqtt: {{port: {self.broker.port}, client_id: central}}\n"
            f"storage: {{type: victoriametrics, url: '{self.vm.url}'}}\n"
            f"queue: {{path: '{folder / 'state' / 'intake.db'}'}}\nhttp: {{listen: '127.0.0.1:{self.port}'}}\n"
            "inventory: inventory.yaml\n"
            "alerting:\n  interval: 500ms\n  restart_grace: 10s\n  settings: {probe_timeout: 1h}\n  delivery: direct\n"
            f"  noc: [{{type: webhook, url: '{self.hooks.url}/noc'}}]\n")
        return path

    def start(self, config: Path) -> services.Service:
        service = services.start_collector(config, config.with_suffix(""))
        self.started.append(service)
        return service

    def close(self) -> None:
        self.stop_polling()
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
        for service in reversed(self.started):
            service.stop()
        self.hooks.stop()

    def start_polling(self) -> None:
        def loop() -> None:
            while not self._stop.wait(0.05):
                self.poll()

        self._thread = threading.Thread(target=loop, name="backup-probe", daemon=True)
        self._thread.start()

    def stop_polling(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def poll(self) -> None:
        assert self.client is not None
        self.seq += 1
        t = time.time_ns()
        samples = (wire.Sample("device", {"device": "sw-a", "site": "pop"}, {"up": True}, t),
                   wire.Sample("interface", {"device": "sw-a", "ifname": "xe-1"}, {"oper_up": self.xe1}, t),
                   wire.Sample("interface", {"device": "sw-a", "ifname": "xe-2"}, {"oper_up": True}, t))
        info = self.client.publish(wire.topic(ZONE, "p1", "data"),
                                   wire.encode(wire.Batch(ZONE, "p1", self.seq, t, samples)), qos=1)
        info.wait_for_publish(10)
        self.published += len(samples)

    def paged(self) -> collections.Counter[tuple[str, str]]:
        return collections.Counter(self.hooks.alerts("/noc"))

    def stored(self) -> int:
        rows = services.vm_query(self.vm.url, f'sum(count_over_time({{__name__=~"device_up|interface_oper_up",'
                                              f'zone="{ZONE}"}}[1h]))')
        return int(float(rows[0]["value"][1])) if rows else 0  # type: ignore[index]

    def gaps(self) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(f'zonewatch_probe_seq_gaps{{probe="{ZONE}/p1"}} '):
                    return float(line.split()[-1])
        raise AssertionError("no seq gap count for p1")


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    s = Site(tmp_path)
    try:
        yield s
    finally:
        s.close()


def test_a_backup_taken_while_it_runs_restores_on_another_machine_with_nothing_lost_or_sent_twice(site: Site) -> None:
    s = site
    old = s.config("old")
    collector = s.start(old)
    s.start_polling()
    s.xe1 = False
    fired = collections.Counter({("firing", "LinkDown"): 1, ("firing", "RedundancyLost"): 1})
    services.wait_for(lambda: s.paged() == fired, WAIT, f"the outage paged (have {s.paged()})")
    printed = zonewatch(old, "backup", "--out", str(s.tmp / "backup"))   # while it runs, the probe publishing
    assert printed.startswith("backed up ")
    time.sleep(0.5)    # the old collector goes on taking polls after the backup
    collector.stop()   # the old machine is shut down
    new = s.config("new")
    restored = zonewatch(new, "restore", "--from", str(s.tmp / "backup"))
    assert f"restored {s.tmp / 'new' / 'state' / 'intake.db'}" in restored
    assert f"restored {s.tmp / 'new' / 'state' / 'alerts.db'}" in restored
    s.start(new)
    time.sleep(2.0)
    assert s.paged() == fired, f"the restored collector paged again: {s.paged()}"
    s.xe1 = True
    services.wait_for(lambda: s.paged() == fired + collections.Counter({("resolved", "LinkDown"): 1,
                                                                        ("resolved", "RedundancyLost"): 1}),
                      WAIT, f"the resolve, once (have {s.paged()})")
    s.stop_polling()
    published = s.published
    services.wait_for(lambda: s.stored() == published, WAIT, f"all {published} samples stored (have {s.stored()})")
    assert s.gaps() == 0.0, "seqs the old collector took after the backup were counted as lost"
    time.sleep(1.0)
    assert s.stored() == published and s.paged()[("resolved", "LinkDown")] == 1


def test_restore_refuses_to_overwrite_state_and_a_damaged_backup(site: Site) -> None:
    s = site
    old = s.config("old")
    collector = s.start(old)
    zonewatch(old, "backup", "--out", str(s.tmp / "backup"))
    collector.stop()
    done = subprocess.run([sys.executable, "-m", "collector", "-c", str(old), "restore", "--from",
                           str(s.tmp / "backup")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "state is already there" in done.stderr
    damaged = next((s.tmp / "backup" / "files" / "intake").iterdir())
    data = damaged.read_bytes()
    damaged.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))   # one bit-rotten byte
    new = s.config("new")
    done = subprocess.run([sys.executable, "-m", "collector", "-c", str(new), "restore", "--from",
                           str(s.tmp / "backup")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "missing or damaged" in done.stderr
    assert not (s.tmp / "new" / "state" / "intake.db").exists(), "a damaged backup was partly restored"
