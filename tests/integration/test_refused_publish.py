"""A broker that refuses what a probe publishes (real mosquitto and its ACL): the probe keeps the refused
batches, holds that kind back with one trial at a time, keeps sending the other kind, and delivers every batch
once the ACL is mended. Before, each refused batch kept its place in flight for good: after ``max_inflight``
refusals the probe sent nothing more, without a word, until it restarted."""

from __future__ import annotations

import logging
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from agent import uplink as uplink_module
from agent.spool import Spool
from agent.uplink import Uplink
from tests import services
from zonewatch import wire
from zonewatch.mqtt import MqttConfig, make_client

pytestmark = pytest.mark.integration

S = 10**9
PASSWORDS = {"p1": "probe-one-secret", "collector": "collector-secret"}
ALL_OF_P1 = wire.topic("z1", "p1", "data").rsplit("/", 1)[0] + "/+"


def _acl(data: bool) -> str:
    """The broker's ACL: the probe may publish its status and events, and its data only when ``data``."""
    kinds = ("status", "events", "data") if data else ("status", "events")
    probe = [f"topic write {wire.topic('z1', 'p1', kind)}" for kind in kinds]
    return "\n".join(["user p1", *probe, f"topic read {wire.topic('z1', 'p1', 'command')}",
                      "user collector", f"topic read {ALL_OF_P1}", ""])


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[tuple[services.Service, Path]]:
    folder = tmp_path / "mosquitto"
    folder.mkdir()
    passwd, acl = folder / "passwd", folder / "acl"
    binary = services.require("mosquitto_passwd")
    for i, (user, secret) in enumerate(PASSWORDS.items()):
        subprocess.run([binary, *(["-c"] if i == 0 else []), "-b", str(passwd), user, secret], check=True,
                       timeout=30, capture_output=True)
    acl.write_text(_acl(data=False))
    svc = services.start_mosquitto(folder, listener_options=f"allow_anonymous false\npassword_file {passwd}\n"
                                                            f"acl_file {acl}")
    yield svc, acl
    svc.stop()


def _cfg(port: int, user: str) -> MqttConfig:
    return MqttConfig.model_validate({"host": "127.0.0.1", "port": port, "username": user,
                                      "password": PASSWORDS[user]})


def test_a_probe_refused_by_the_acl_holds_its_data_back_sends_its_events_and_catches_up_once_mended(
        tmp_path: Path, broker: tuple[services.Service, Path], caplog: pytest.LogCaptureFixture) -> None:
    svc, acl = broker
    received: list[tuple[str, int]] = []
    watcher = make_client(_cfg(svc.port, "collector"), "collector")

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        kind = message.topic.rsplit("/", 1)[1]
        if kind in ("data", "events"):   # not the status
            received.append((kind, wire.decode(message.payload).seq))

    watcher.on_message = on_message
    watcher.on_connect = lambda c, u, f, r, p: c.subscribe(ALL_OF_P1, qos=1)
    watcher.connect("127.0.0.1", svc.port)
    watcher.loop_start()
    spool = Spool(tmp_path / "spool.db", "z1", "p1")
    uplink = Uplink(_cfg(svc.port, "p1"), spool, "z1", "p1", max_inflight=10)
    try:
        t0 = time.time_ns()
        data = [spool.append("data", t0, (wire.Sample("probe", {}, {"up": True}, t0),)) for _ in range(20)]
        caplog.set_level(logging.INFO, logger="agent.uplink")
        uplink.start()
        services.wait_for(lambda: uplink.pump(t0) >= 0 and uplink.refused >= 10, 20,
                          "the broker refusing the first window of data batches")
        assert uplink.published == 10 and uplink.inflight() == 0    # their places are free again
        events = [spool.append("events", t0, events=(wire.Event("link_down", {"device": "sw1"}, {}, t0),))
                  for _ in range(2)]
        services.wait_for(lambda: uplink.pump(t0) >= 0 and sorted(received) == [("events", e) for e in events], 20,
                          "the events, while data are held back")
        assert uplink.published == 12   # no data batch went again meanwhile
        for _ in range(20):             # nor until the first wait is over ...
            uplink.pump(t0 + int(uplink_module.RETRY_FIRST_S * S) - 1)
        assert uplink.published == 12
        first_wait = t0 + int(uplink_module.RETRY_FIRST_S * S)
        services.wait_for(lambda: uplink.pump(first_wait) >= 0 and uplink.refused == 11, 20,
                          "... then one batch tried, and refused")
        assert uplink.published == 13 and spool.depth() == 20

        acl.write_text(_acl(data=True))   # the ACL is mended and the broker told to read it again
        svc.proc.send_signal(signal.SIGHUP)
        clock = [first_wait]

        def caught_up() -> bool:
            clock[0] += int(uplink_module.RETRY_MAX_S * S)   # every wait over: the next trial goes now
            uplink.pump(clock[0])
            return sorted(seq for kind, seq in received if kind == "data") == data

        services.wait_for(caught_up, 30, "every data batch delivered once the ACL lets them through")
        services.wait_for(lambda: uplink.pump(clock[0]) >= 0 and spool.depth() == 0, 10, "an empty spool")
        assert len(received) == 22   # each batch once: none of the refused ones reached anybody
        assert any("takes zw/" in r.getMessage() and "again" in r.getMessage() for r in caplog.records)
        assert [kind for kind, _ in uplink.take_refused()] == ["data"] * uplink.refused
    finally:
        uplink.stop(planned=True)
        spool.close()
        watcher.disconnect()
        watcher.loop_stop()
