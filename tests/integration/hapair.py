"""The central side of an HA pair, as production runs it, for tests: real parts on loopback.

::

    probe p1 (a paho client, TLS, its own user) ──► mosquitto (TLS, ACL and passwords rendered with an HA peer)
                                                       │ every message to both sessions
                          ┌────────────────────────────┴─────────────────────────┐
                collector A (collector-a, primary)                 collector B (collector-b, secondary)
                  │  both write to VictoriaMetrics (-dedup.minScrapeInterval=1ms)  │
                  │  both send every alert to both Alertmanager peers              │
                  ▼                                                                ▼
          Alertmanager am[0] ◄──── gossip (--cluster.peer) ────► Alertmanager am[1]
          relay: collector A                                     relay: collector B
                  └── webhooks: the carrier's and the NOC's (WebhookServer), and the carrier's MQTT topic
                      through the relay of the collector beside the peer that sends

Each Alertmanager peer's configuration is rendered by ``collector.alerting.amconfig`` from the same inventory,
naming its own host's collector as the MQTT relay. A ``watcher`` user (test only) reads the carrier's alert
topic. Every process is stopped by PID in ``close()``, whatever happened.
"""

from __future__ import annotations

import collections
import json
import sqlite3
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from collector import mosquitto
from collector.alerting import amconfig
from collector.config import CollectorConfig
from collector.inventory import Inventory
from collector.mosquitto.listener import ListenerTls, render_listener_options
from collector.mosquitto.passwd import render_passwd
from tests import services
from tests.services import WebhookServer
from tests.tlsbroker import Peer, connect, write_server_pki
from zonewatch import wire
from zonewatch.strict import load

ZONE = "ha"
TOPIC = "alerts/viettel"
USERS = ("collector-a", "collector-b")
PASSWORDS = {"collector-a": "pw-a", "collector-a-urgent": "pw-a", "collector-b": "pw-b", "collector-b-urgent": "pw-b",
             "p1": "p1-pw", "watcher": "watcher-pw"}
# group_interval above the peers' peer_timeout (1 s), as Alertmanager's defaults are (1m and 15s): see
# services.start_alertmanager_peer
TIMING = amconfig.Timing(group_wait="1s", group_interval="3s", repeat_interval="24h")
GAP_SEQ = 20   # never published: each collector must count exactly one lost seq


def inventory_text(hooks: str) -> str:
    return f"""\
zones:
  {ZONE}: {{name: HA Park, areas: [a]}}
carriers:
  viettel:
    plmn: 452-04
    name: Viettel
    notify: [{{type: webhook, url: "{hooks}/viettel"}}, {{type: mqtt, topic: {TOPIC}}}]
sites:
  pop: {{zone: {ZONE}, area: a, kind: fibre_pop, owners: [viettel]}}
devices:
  sw-a: {{site: pop, kind: switch, owners: [viettel], probe: p1}}
  sw-b: {{site: pop, kind: switch, owners: [viettel], probe: p1}}
links:
  vt-1: {{device: sw-a, ifname: xe-1, carriers: [viettel]}}
  vt-2: {{device: sw-a, ifname: xe-2, carriers: [viettel]}}
  vt-3: {{device: sw-b, ifname: xe-1, carriers: [viettel]}}
  vt-4: {{device: sw-b, ifname: xe-2, carriers: [viettel]}}
redundancy_groups:
  vt-routes: {{zone: {ZONE}, carriers: [viettel], members: [{{link: vt-1}}, {{link: vt-2}}]}}
  vt-routes-b: {{zone: {ZONE}, carriers: [viettel], members: [{{link: vt-3}}, {{link: vt-4}}]}}
probes:
  p1: {{zone: {ZONE}, area: a}}
"""


class Centre:
    """The pair and everything around it; see the module docstring."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started: list[Any] = []
        self.links = {(device, ifname): True for device in ("sw-a", "sw-b") for ifname in ("xe-1", "xe-2")}
        self.seq = 0
        self.published = 0          # samples acknowledged by the broker
        self._last_ns = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    # ---------------------------------------------------------------------------------------------- set-up

    def _start(self) -> None:
        tmp = self.tmp
        pki = write_server_pki(tmp / "pki", "ha test CA")
        self.ca = pki.ca
        self.hooks = WebhookServer().start()
        self.started.append(self.hooks)
        text = inventory_text(self.hooks.url)
        (tmp / "inventory.yaml").write_text(text)
        inventory = load(Inventory, text)
        self.vm = services.start_victoriametrics(tmp / "vm")
        self.started.append(self.vm)
        broker = tmp / "mosquitto"
        broker.mkdir()
        acl = mosquitto.render_acl(inventory, USERS[0], layout=mosquitto.Layout(peers=USERS[1:]))
        (broker / "acl").write_text(acl + f"\n# test only: reads the carrier's alert topic\nuser watcher\n"
                                          f"topic read {TOPIC}\n")
        (broker / "passwd").write_text(render_passwd(PASSWORDS))
        (broker / "passwd").chmod(0o600)
        tls = ListenerTls(str(pki.ca), str(pki.cert), str(pki.key))
        self.broker = services.start_mosquitto(broker, listener_options=render_listener_options(
            str(broker / "passwd"), str(broker / "acl"), tls))
        self.started.append(self.broker)
        self.am_ports = [services.free_port() for _ in USERS]
        self.gossip_ports = [services.free_port() for _ in USERS]
        self.http_ports = [services.free_port() for _ in USERS]
        self.relay_token = tmp / "relay-token"   # what each Alertmanager peer sends its collector's relay
        self.relay_token.write_text("relay-token-for-the-test\n")
        self.relay_token.chmod(0o600)
        self.configs = [self._config(i) for i in range(len(USERS))]
        with ThreadPoolExecutor(4) as pool:   # each waits for its own readiness: side by side, not one after the other
            ams = [pool.submit(self.start_am, i) for i in range(len(USERS))]
            collectors = [pool.submit(self.start_collector, i) for i in range(len(USERS))]
            self.am: list[services.Service] = [f.result() for f in ams]
            self.collectors: list[services.Service] = [f.result() for f in collectors]
        self.probe = connect(self.broker.port, self.ca, "p1", "p1", PASSWORDS)
        self.started.append(self.probe)
        self.watcher = connect(self.broker.port, self.ca, "watcher", "watcher", PASSWORDS)
        self.started.append(self.watcher)
        self.watcher.client.subscribe(TOPIC, qos=1)
        services.wait_for(self.watcher.subscribed.is_set, 10, "the watcher's subscription")

    def _config(self, i: int) -> Path:
        user = USERS[i]
        folder = self.tmp / user
        folder.mkdir()
        others = [f"http://127.0.0.1:{p}" for j, p in enumerate(self.am_ports) if j != i]
        path = self.tmp / f"{user}.yaml"
        path.write_text(
            f"mqtt: {{host: 127.0.0.1, port: {self.broker.port}, username: {user}, password: {PASSWORDS[user]},\n"
            f"       client_id: {user}, tls: {{ca_file: '{self.ca}'}}}}\n"
            f"storage: {{type: victoriametrics, url: '{self.vm.url}'}}\n"
            f"queue: {{path: '{folder / 'intake.db'}'}}\nhttp: {{listen: '127.0.0.1:{self.http_ports[i]}'}}\n"
            f"inventory: inventory.yaml\nha: {{role: {'primary' if i == 0 else 'secondary'}}}\n"
            "alerting:\n  interval: 500ms\n  restart_grace: 10s\n  settings: {probe_timeout: 1h}\n"
            f"  alertmanager: {{url: 'http://127.0.0.1:{self.am_ports[i]}', peers: {json.dumps(others)}}}\n"
            "  mqtt_delivery: alertmanager\n"
            f"  relay_token: {{file: '{self.relay_token}'}}\n"
            f"  noc: [{{type: webhook, url: '{self.hooks.url}/noc'}}]\n")
        return path

    def start_am(self, i: int) -> services.Service:
        """Start (or restart) Alertmanager peer ``i``, configured with collector ``i`` as its MQTT relay."""
        cfg = load(CollectorConfig, self.configs[i].read_text())
        inventory = load(Inventory, (self.tmp / "inventory.yaml").read_text())
        folder = self.tmp / f"am{i}"
        amconfig.write(inventory, cfg.alerting, folder / "alertmanager.yml", folder / "secrets", TIMING,
                       relay=f"http://127.0.0.1:{self.http_ports[i]}")
        peers = [p for j, p in enumerate(self.gossip_ports) if j != i]
        service = services.start_alertmanager_peer(folder, (folder / "alertmanager.yml").read_text(),
                                                   self.am_ports[i], self.gossip_ports[i], peers)
        self.started.append(service)
        return service

    def start_collector(self, i: int) -> services.Service:
        """Start (or restart) collector ``i`` as a process of its own."""
        service = services.start_collector(self.configs[i], self.tmp / USERS[i] / "run")
        self.started.append(service)
        return service

    def close(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(10)
        for part in reversed(self.started):
            try:
                part.close() if isinstance(part, Peer) else part.stop()
            except Exception:  # noqa: BLE001 - stop everything else all the same
                pass

    # ---------------------------------------------------------------------------------------------- the probe

    def start_polling(self, every: float = 0.1) -> None:
        """Publish a poll of both switches (up, their interfaces as ``links`` says) every ``every`` seconds."""

        def loop() -> None:
            while not self._stop.wait(every):
                self.poll()

        self._poller = threading.Thread(target=loop, name="ha-probe", daemon=True)
        self._poller.start()

    def poll(self) -> None:
        """Publish one poll as p1 and wait for the broker's acknowledgement (seq ``GAP_SEQ`` is skipped)."""
        with self._lock:
            self.seq += 1 + (self.seq + 1 == GAP_SEQ)
            t = max(time.time_ns(), self._last_ns + 1_000_000)   # one sample a millisecond at most, per series
            self._last_ns = t
            samples = [wire.Sample("device", {"device": device, "site": "pop"}, {"up": True}, t)
                       for device in ("sw-a", "sw-b")]
            samples += [wire.Sample("interface", {"device": dev, "ifname": ifname},
                                    {"oper_up": up, "admin_up": True}, t) for (dev, ifname), up in self.links.items()]
            payload = wire.encode(wire.Batch(ZONE, "p1", self.seq, t, tuple(samples)))
            reason = self.probe.publish(f"zw/v1/{ZONE}/p1/data", payload)
            assert not reason.is_failure, reason
            self.published += 2 + 2 * len(self.links)

    # ---------------------------------------------------------------------------------------------- what came out

    def notified(self) -> dict[str, collections.Counter[tuple[str, str]]]:
        """Return, per receiver (the carrier's webhook, the NOC's, the carrier's MQTT topic), how often each
        (status, alertname) arrived."""
        mqtt: collections.Counter[tuple[str, str]] = collections.Counter()
        for _, payload in self.watcher.messages():
            for alert in json.loads(payload)["alerts"]:
                mqtt[(alert["status"], alert["labels"]["alertname"])] += 1
        return {"viettel": collections.Counter(self.hooks.alerts("/viettel")),
                "noc": collections.Counter(self.hooks.alerts("/noc")), "mqtt": mqtt}

    def alert_state(self, i: int) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
        """Return collector ``i``'s tracked alerts as (state, labels), from its state file."""
        path = self.tmp / USERS[i] / "alerts.db"
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
                docs = [json.loads(doc) for (doc,) in db.execute("SELECT doc FROM alert")]
        except sqlite3.Error:
            return set()
        return {(d["state"], tuple(sorted(d["labels"].items()))) for d in docs}

    def metric(self, i: int, name: str, **labels: str) -> float | None:
        """Return one sample of collector ``i``'s /metrics (None when it is not there)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_ports[i]}/metrics", timeout=5) as r:
            text = r.read().decode()
        want = ",".join(f'{k}="{v}"' for k, v in labels.items())
        head = f"{name}{{{want}}}" if want else name
        for line in text.splitlines():
            if line.startswith(head + " "):
                return float(line.rsplit(" ", 1)[1])
        return None

    def stored(self) -> int:
        """Return how many of p1's samples VictoriaMetrics holds (each distinct point once)."""
        names = "device_up|interface_oper_up|interface_admin_up"
        rows = services.vm_query(self.vm.url, f'sum(count_over_time({{__name__=~"{names}",zone="{ZONE}"}}[1h]))')
        return int(float(rows[0]["value"][1])) if rows else 0  # type: ignore[index]
