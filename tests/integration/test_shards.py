"""Zone sharding (README: Sharding): two collectors on one broker, each given the zones it owns.

Real mosquitto, two collector processes (``zones: [north]`` and ``zones: [south]``), each with a SQLite store of
its own so that what each one wrote can be told apart, one webhook for both (each collector's ``external_url``
names it in every notification it sends). Each zone has a switch with two fibre routes (a redundancy group)
and a probe watching it. A route goes down in each zone: each zone's LinkDown and RedundancyLost must come
from its own shard, each store must hold its own zone's readings and derived series (``redundancy``,
``alert``) and nothing of the other zone, and each shard must have taken only its zone's messages.
"""

from __future__ import annotations

import json
import sqlite3
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

ZONES = ("north", "south")
WAIT = 20.0
ROUNDS = 12


def inventory() -> str:
    parts = ["zones:\n  north: {name: North Park}\n  south: {name: South Park}\n"
             "carriers:\n  viettel: {plmn: 452-04, name: Viettel}\n"]
    sites, devices, links, groups, probes = ["sites:"], ["devices:"], ["links:"], ["redundancy_groups:"], ["probes:"]
    for zone in ZONES:
        sites.append(f"  pop-{zone}: {{zone: {zone}, kind: fibre_pop, owners: [viettel]}}")
        devices.append(f"  sw-{zone}: {{site: pop-{zone}, kind: switch, owners: [viettel], probe: p-{zone}}}")
        links += [f"  {zone}-1: {{device: sw-{zone}, ifname: xe-1, carriers: [viettel]}}",
                  f"  {zone}-2: {{device: sw-{zone}, ifname: xe-2, carriers: [viettel]}}"]
        groups.append(f"  routes-{zone}: {{zone: {zone}, carriers: [viettel], members: [{{link: {zone}-1}}, "
                      f"{{link: {zone}-2}}]}}")
        probes.append(f"  p-{zone}: {{zone: {zone}}}")
    return "".join(parts) + "\n".join(sites + devices + links + groups + probes) + "\n"


class Shards:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started: list[services.Service] = []
        self.hooks = WebhookServer().start()
        self.publisher: mqtt.Client | None = None
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        self.broker = services.start_mosquitto(self.tmp / "mosquitto")
        self.started.append(self.broker)
        (self.tmp / "inventory.yaml").write_text(inventory())
        self.ports = {zone: services.free_port() for zone in ZONES}
        for zone in ZONES:
            folder = self.tmp / zone
            folder.mkdir()
            config = self.tmp / f"{zone}.yaml"
            config.write_text(
                f"mqtt: {{port: {self.broker.port}, client_id: shard-{zone}}}\n"
                f"storage: {{type: sqlite, path: '{folder / 'store.db'}'}}\n"
                f"queue: {{path: '{folder / 'intake.db'}'}}\nhttp: {{listen: '127.0.0.1:{self.ports[zone]}'}}\n"
                f"inventory: inventory.yaml\nzones: [{zone}]\n"
                "alerting:\n  interval: 500ms\n  restart_grace: 0s\n  settings: {probe_timeout: 1h}\n"
                f"  external_url: 'http://shard-{zone}.example'\n"
                f"  noc: [{{type: webhook, url: '{self.hooks.url}/noc'}}]\n")
            self.started.append(services.start_collector(config, folder / "run"))
        self.publisher = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="shard-probes",
                                     protocol=mqtt.MQTTv5)
        self.publisher.connect("127.0.0.1", self.broker.port)
        self.publisher.loop_start()

    def close(self) -> None:
        if self.publisher is not None:
            self.publisher.disconnect()
            self.publisher.loop_stop()
        for service in reversed(self.started):
            service.stop()
        self.hooks.stop()

    def poll(self, zone: str, seq: int, xe1: bool) -> None:
        assert self.publisher is not None
        t = time.time_ns()
        samples = (wire.Sample("device", {"device": f"sw-{zone}", "site": f"pop-{zone}"}, {"up": True}, t),
                   wire.Sample("interface", {"device": f"sw-{zone}", "ifname": "xe-1"}, {"oper_up": xe1}, t),
                   wire.Sample("interface", {"device": f"sw-{zone}", "ifname": "xe-2"}, {"oper_up": True}, t))
        batch = wire.Batch(zone, f"p-{zone}", seq, t, samples)
        self.publisher.publish(wire.topic(zone, f"p-{zone}", "data"), wire.encode(batch), qos=1).wait_for_publish(10)

    def rows(self, zone: str) -> list[tuple[str, dict[str, str]]]:
        """Return (measurement, tags) of every series shard ``zone`` stored."""
        with sqlite3.connect(f"file:{self.tmp / zone / 'store.db'}?mode=ro", uri=True) as db:
            return [(m, json.loads(t)) for m, t in db.execute("SELECT measurement, tags FROM series")]

    def points(self, zone: str, measurement: str) -> int:
        with sqlite3.connect(f"file:{self.tmp / zone / 'store.db'}?mode=ro", uri=True) as db:
            (n,) = db.execute("SELECT count(*) FROM points JOIN series ON series.id = series_id WHERE measurement = ?",
                              (measurement,)).fetchone()
        return int(n)

    def metric(self, zone: str, name: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports[zone]}/metrics", timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        raise AssertionError(f"{name} not in shard {zone}'s /metrics")


@pytest.fixture
def shards(tmp_path: Path) -> Iterator[Shards]:
    s = Shards(tmp_path)
    try:
        yield s
    finally:
        s.close()


def test_each_zone_is_judged_stored_and_paged_by_its_own_shard_only(shards: Shards) -> None:
    s = shards
    for seq in range(1, ROUNDS + 1):   # each zone loses its first route half-way
        for zone in ZONES:
            s.poll(zone, seq, xe1=seq <= ROUNDS // 2)
        time.sleep(0.05)

    def paged() -> set[tuple[str, str]]:
        return {(a["labels"]["zone"], a["labels"]["alertname"]) for h in s.hooks.at("/noc")
                for a in h.body["alerts"]}

    expected = {(zone, name) for zone in ZONES for name in ("LinkDown", "RedundancyLost")}
    services.wait_for(lambda: paged() == expected, WAIT, f"both zones' alerts (have {paged()})")
    for hook in s.hooks.at("/noc"):   # who sent each notification: its externalURL names the shard
        zones = {a["labels"]["zone"] for a in hook.body["alerts"]}
        assert zones == {hook.body["externalURL"].removeprefix("http://shard-").removesuffix(".example")}, \
            f"a notification about {zones} came from {hook.body['externalURL']}"
    for zone in ZONES:
        services.wait_for(lambda z=zone: s.points(z, "device") == ROUNDS, WAIT, f"shard {zone} to store its polls")
        services.wait_for(lambda z=zone: s.points(z, "redundancy") > 0, WAIT, f"shard {zone}'s redundancy series")
        rows = s.rows(zone)
        assert {tags.get("zone") for _, tags in rows} == {zone}, f"shard {zone} stored another zone's series"
        measurements = {m for m, _ in rows}
        assert {"device", "interface", "redundancy", "alert"} <= measurements, measurements
        groups = {tags.get("group") for m, tags in rows if m == "redundancy"}
        assert groups == {f"routes-{zone}"}, f"shard {zone} judged groups {groups}"
        assert s.metric(zone, "zonewatch_ingest_messages_total") == ROUNDS, "a shard took the other zone's messages"
