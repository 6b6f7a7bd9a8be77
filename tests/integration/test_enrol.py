"""Enrolment end to end with real parts: a new probe goes from its zone's bootstrap credential to credentials of
its own, and what a bootstrap credential cannot do.

Real mosquitto behind TLS with the password file and ACL that ``zonewatch-collector render-mosquitto`` writes
(and that ``probes approve``/``retire`` rewrite, reloading the broker with SIGHUP), the collector process (SQLite
store), and two agent processes on simulated modems (ptys) that share the zone's bootstrap user: ``p7``, which
the inventory expects, runs ``zonewatch-agent run``; the other runs ``zonewatch-agent enrol`` and is rejected.
The test itself is a thief with the bootstrap password (a paho client) and, once, an honest probe that is not
running (a key pair of its own).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, SealedBox

from agent.fleet.enrol import open_reply
from agent.sim.modem import IDENTITIES, SimModem
from collector.mosquitto.listener import ListenerTls, render_listener_options
from tests import services
from tests.tlsbroker import Peer, connect, write_server_pki
from zonewatch import wire

pytestmark = pytest.mark.integration

ZONE = "ez"
WAIT = 30.0
PASSWORDS = {"collector": "collector-secret-pw-1", "enrol-ez": "bootstrap-secret-pw-2"}
MACHINE_IDS = {"p7": "7" * 32, "p8": "8" * 32}
INVENTORY = f"""\
zones:
  {ZONE}: {{name: Enrol Park, areas: [gate-a]}}
  other: {{name: Other Park}}
carriers:
  viettel: {{plmn: 452-04, name: Viettel}}
probes:
  p1: {{zone: {ZONE}, area: gate-a, modems: [{{name: vt, carrier: viettel}}]}}
  p7: {{zone: {ZONE}, area: gate-a, modems: [{{name: vt, carrier: viettel}}]}}
"""


def private(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


class Closing:
    """Something to close with the rest (a socket)."""

    def __init__(self, thing: socket.socket) -> None:
        self.thing = thing

    def stop(self) -> None:
        self.thing.close()


class Centre:
    """The broker (rendered access), the collector, and the agents; every process stopped by PID on close."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started: list[Any] = []
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        tmp = self.tmp
        self.pki = write_server_pki(tmp / "pki", "enrolment test CA")
        self.broker_dir = tmp / "broker"
        for user, password in PASSWORDS.items():   # render-mosquitto keeps existing passwords, makes the rest
            private(self.broker_dir / "secrets" / user, password)
        (tmp / "inventory.yaml").write_text(INVENTORY)
        self.write_config(["true"], port=1)   # render-mosquitto reads no port; the broker is not started yet
        rendered = self.cli("render-mosquitto", "--out", str(self.broker_dir), "--cafile", str(self.pki.ca),
                            "--certfile", str(self.pki.cert), "--keyfile", str(self.pki.key))
        assert rendered.returncode == 0, rendered.stderr
        tls = ListenerTls(str(self.pki.ca), str(self.pki.cert), str(self.pki.key))
        self.broker = services.start_mosquitto(tmp / "mosquitto", listener_options=render_listener_options(
            str(self.broker_dir / "passwd"), str(self.broker_dir / "acl"), tls))
        self.started.append(self.broker)
        # how approve and retire reload this broker
        self.write_config(["kill", "-HUP", str(self.broker.pid)], self.broker.port)
        self.collector = services.start_collector(tmp / "collector.yaml", tmp / "collector")
        self.started.append(self.collector)
        services.wait_for(lambda: "enrolment open for zones ez" in self.collector.log.read_text(), WAIT,
                          "the collector's enrolment session")

    def write_config(self, reload: list[str], port: int) -> None:
        tmp = self.tmp
        (tmp / "collector.yaml").write_text(
            f"mqtt: {{host: 127.0.0.1, port: {port}, username: "
            f"collector, password: {{file: '{self.broker_dir / 'secrets' / 'collector'}'}}, client_id: collector,\n"
            f"       tls: {{ca_file: '{self.pki.ca}'}}}}\n"
            f"storage: {{type: sqlite, path: '{tmp / 'store.db'}'}}\n"
            f"queue: {{path: '{tmp / 'data' / 'intake.db'}'}}\nhttp: {{enabled: false}}\n"
            "inventory: inventory.yaml\nalerting: {enabled: false}\n"
            f"enrol: {{zones: [{ZONE}], broker_dir: '{self.broker_dir}', reload_command: {json.dumps(reload)}}}\n")

    def cli(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "collector", "-c", str(self.tmp / "collector.yaml"), *argv],
                              capture_output=True, text=True, timeout=60, cwd=self.tmp)

    def listing(self) -> dict[str, Any]:
        done = self.cli("probes", "list", "--json")
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))

    def requests(self, state: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.listing()["requests"] if state is None or r["state"] == state]

    def agent(self, name: str, modem: SimModem, command: list[str],
              env: dict[str, str] | None = None) -> services.Service:
        """Start an agent asking to be ``name`` with the bootstrap credential, reading ``modem``."""
        folder = self.tmp / name
        machine_id = folder / "machine-id"
        folder.mkdir(parents=True, exist_ok=True)
        machine_id.write_text(MACHINE_IDS[name] + "\n")
        bootstrap = private(folder / "bootstrap", PASSWORDS["enrol-ez"])
        config = folder / "agent.yaml"
        config.write_text(f"""\
probe: {{id: {name}, zone: {ZONE}}}
mqtt: {{host: 127.0.0.1, port: {self.broker.port}, keepalive: 5s, tls: {{ca_file: '{self.pki.ca}'}}}}
spool: {{path: '{folder / 'spool.db'}'}}
metrics: {{enabled: false}}
self_interval: 1s
enrol: {{password: {{file: '{bootstrap}'}}, state_dir: '{folder / 'state'}', machine_id_file: '{machine_id}',
        resend: 1s, resend_max: 2s}}
sources:
  - {{type: cellular, name: vt, port: '{modem.port}', carrier: "452-04", interval: 1s, timeout: 1s}}
""")
        service = services.start_zonewatch("agent", ["-c", str(config), *command], folder, env=env)
        self.started.append(service)
        return service

    def points(self, probe: str, measurement: str | None = None) -> int:
        """Samples stored under ``probe`` (of one measurement, or any)."""
        try:
            with sqlite3.connect(f"file:{self.tmp / 'store.db'}?mode=ro", uri=True) as db:
                row = db.execute("SELECT count(*) FROM points JOIN series ON series.id = series_id WHERE tags LIKE ? "
                                 "AND (? IS NULL OR measurement = ?)", (f'%"probe":"{probe}"%', measurement,
                                                                        measurement)).fetchone()
                return int(row[0])
        except sqlite3.Error:
            return 0

    def spooled(self, probe: str) -> int:
        """Samples ``probe``'s spool has taken in, ever (its polls are joined in batches: ``spool.coalesce``)."""
        with sqlite3.connect(f"file:{self.tmp / probe / 'spool.db'}?mode=ro", uri=True) as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'appended_samples'").fetchone()
            return int(row[0]) if row else 0

    def close(self) -> None:
        for part in reversed(self.started):
            try:
                part.close() if isinstance(part, Peer) else part.stop()
            except Exception:  # noqa: BLE001 - stop everything else all the same
                pass


@pytest.fixture
def centre(tmp_path: Path) -> Iterator[Centre]:
    c = Centre(tmp_path)
    try:
        yield c
    finally:
        c.close()


def bootstrap_peer(centre: Centre) -> Peer:
    peer = connect(centre.broker.port, centre.pki.ca, "enrol-ez", "enrol-ez", PASSWORDS)
    centre.started.append(peer)
    assert not peer.connack.is_failure, peer.connack
    return peer


def refused_count(centre: Centre, reason: str) -> int:
    return int(centre.listing()["refused"].get(reason, {}).get("count", 0))


def test_a_probe_enrols_publishes_and_is_retired_and_a_bootstrap_credential_can_only_ask(centre: Centre) -> None:
    with SimModem() as modem7, SimModem("quectel-lte") as modem8:
        # Two new probes switched on together, with one bootstrap user: they throw each other off the broker,
        # and both requests arrive all the same.
        systemd = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)   # a stand-in for systemd's notify socket
        centre.started.append(Closing(systemd))
        systemd.bind(str(centre.tmp / "notify"))
        systemd.settimeout(0.1)
        p7 = centre.agent("p7", modem7, ["run"], env={"NOTIFY_SOCKET": str(centre.tmp / "notify")})
        p8 = centre.agent("p8", modem8, ["enrol", "--timeout", "90s"])
        services.wait_for(lambda: len(centre.requests("pending")) == 2, WAIT, "both requests pending")
        # Waiting for a decision (maybe days) counts as started for systemd, so Type=notify does not time out.
        said: list[bytes] = []
        services.wait_for(lambda: said.append(systemd.recv(4096)) or b"waiting for enrolment approval" in said[-1],
                          WAIT, "READY with the enrolment status")
        assert said[-1].startswith(b"READY=1\nSTATUS=waiting for enrolment approval (request ")
        pending = {r["asked_id"]: r for r in centre.requests("pending")}
        imei7, _, iccid7 = IDENTITIES["generic"]
        assert pending["p7"]["machine_id"] == MACHINE_IDS["p7"]
        assert pending["p7"]["modems"] == [{"name": "vt", "imei": imei7, "iccid": iccid7.split(": ")[1]}]
        assert pending["p8"]["modems"][0]["iccid"] == IDENTITIES["quectel-lte"][2].split(": ")[1]   # AT+QCCID
        # The field engineer compares what the probe printed with the list before approving.
        assert f"key fingerprint {pending['p7']['fingerprint']}" in p7.log.read_text()
        assert centre.points("p7") == 0

        # Rejection: the other probe is told, and stops with exit code 3.
        rejected = centre.cli("probes", "reject", pending["p8"]["request"], "--reason", "not ours")
        assert rejected.returncode == 0, rejected.stderr
        services.wait_for(lambda: not p8.alive(), WAIT, "the rejected probe to stop")
        assert p8.proc.returncode == 3, p8.log_tail()
        assert "rejected this probe's request" in p8.log.read_text() and "not ours" in p8.log.read_text()

        # Approval: credentials of its own, the broker reloaded; the probe publishes and its data is stored.
        started = time.monotonic()
        approved = centre.cli("probes", "approve", pending["p7"]["request"][:8])
        returned = time.monotonic()
        assert approved.returncode == 0, approved.stderr
        assert "approved request" in approved.stdout and "broker reloaded" in approved.stdout
        services.wait_for(lambda: centre.points("p7") > 0, WAIT, "p7's first data stored", interval=0.02)
        stored = time.monotonic()
        print(f"\napproval to first stored data: {stored - returned:.2f} s after `probes approve` returned "
              f"({stored - started:.2f} s from its start, {returned - started:.2f} s of it the command)")
        services.wait_for(lambda: centre.points("p7", "cellular") > 0, WAIT, "p7's modem readings stored")
        services.wait_for(lambda: centre.requests("approved")[0]["logged_in"] is not None, WAIT,
                          "the collector to see p7 log in")
        assert "running as probe" not in p7.log.read_text()   # it asked for p7 and was approved as p7
        state = centre.tmp / "p7" / "state"
        assert {f: oct(os.stat(state / f).st_mode & 0o777) for f in ("key", "password", "credentials.json")} == {
            "key": "0o600", "password": "0o600", "credentials.json": "0o600"}
        password7 = (state / "password").read_text().strip()
        assert password7 not in (centre.broker_dir / "passwd").read_text()

        # A thief with the bootstrap password: it can ask, and nothing else.
        thief = bootstrap_peer(centre)
        thief.client.subscribe([(wire.enrol_subscription("reply", ZONE), 1), (wire.subscription("data", ZONE), 1),
                                (wire.subscription("status", ZONE), 1), (wire.enrol_subscription("request", ZONE), 1)])
        services.wait_for(lambda: thief.subscribed.is_set(), WAIT, "the thief's SUBACK")
        for topic in (wire.topic(ZONE, "p1", "data"), wire.topic(ZONE, "p1", "status"),
                      wire.topic(ZONE, "p1", "events"), wire.topic(ZONE, "p7", "data"),
                      wire.topic(ZONE, "enrol-ez", "data"), wire.topic(ZONE, "p7", "config"),
                      wire.enrol_topic(ZONE, pending["p8"]["request"], "reply"),
                      wire.enrol_topic("other", pending["p8"]["request"], "request"), "zonewatch/tick/collector"):
            assert str(thief.publish(topic, b"x")) == "Not authorized", topic
        # a request on another probe's id, with a key of its own: refused and counted
        thief_key = PrivateKey.generate()
        forged = wire.encode_enrol_request(wire.EnrolRequest(ZONE, bytes(thief_key.public_key), "p1"))
        before = refused_count(centre, "identity_mismatch")
        assert not thief.publish(wire.enrol_topic(ZONE, pending["p8"]["request"], "request"),
                                 forged).is_failure
        services.wait_for(lambda: refused_count(centre, "identity_mismatch") == before + 1, WAIT,
                          "the forged request counted")
        # The replies it can read: p8's rejection (retained), not p7's credentials (cleared once p7 logged in).
        services.wait_for(lambda: any(t.endswith("/reply") for t, _ in thief.messages()), WAIT, "a retained reply")
        replies = {t.split("/")[4]: p for t, p in thief.messages() if t.endswith("/reply") and p}
        assert set(replies) == {pending["p8"]["request"]}
        with pytest.raises(CryptoError):
            SealedBox(thief_key).decrypt(wire.decode_enrol_reply(replies[pending["p8"]["request"]])[1])
        # An honest probe that is not connected right now asks through the same user; its approval, with a
        # password in it, reaches every bootstrap holder, and only that probe's key opens it.
        honest = PrivateKey.generate()
        request = wire.EnrolRequest(ZONE, bytes(honest.public_key), "px", "a" * 32, (), time.time_ns())
        assert not thief.publish(wire.enrol_topic(ZONE, request.request_id, "request"),
                                 wire.encode_enrol_request(request)).is_failure
        services.wait_for(lambda: any(r["request"] == request.request_id for r in centre.requests("pending")), WAIT,
                          "the honest request pending")
        done = centre.cli("probes", "approve", request.request_id, "--area", "gate-a")
        assert done.returncode == 0 and "the inventory does not list it yet" in done.stdout, done.stderr
        services.wait_for(lambda: any(request.request_id in t and p for t, p in thief.messages()), WAIT,
                          "the honest probe's reply")
        reply = next(p for t, p in thief.messages() if request.request_id in t and p)
        with pytest.raises(CryptoError):
            SealedBox(thief_key).decrypt(wire.decode_enrol_reply(reply)[1])
        answer = open_reply(honest, request.request_id, reply)
        assert answer is not None and answer.password is not None and answer.password.encode() not in reply
        # it saw no probe's data or status, and no other request
        assert [t for t, _ in thief.messages() if not t.endswith("/reply")] == []
        thief.close()

        # Retirement: the probe is thrown off the broker and cannot come back; nothing more of it is stored.
        retired = centre.cli("probes", "retire", "p7")
        assert retired.returncode == 0, retired.stderr
        assert "the inventory still lists p7" in retired.stdout
        services.wait_for(lambda: "refused the connection: Not authorized" in p7.log.read_text(), WAIT,
                          "p7 refused by the broker")
        services.wait_for(lambda: "retired probes, refused whatever they send: ez/p7" in
                          centre.collector.log.read_text(), WAIT, "the collector to refuse p7")
        settled, spooled = centre.points("p7"), centre.spooled("p7")
        # p7 polls every second and keeps what it cannot send: three more readings go to its spool, none is stored
        services.wait_for(lambda: centre.spooled("p7") >= spooled + 3, WAIT, "p7 to spool three more readings")
        assert centre.points("p7") == settled
        again = connect(centre.broker.port, centre.pki.ca, "p7", "p7-again", {"p7": password7})
        centre.started.append(again)
        assert str(again.connack) == "Not authorized"
        assert p7.alive()   # it keeps its spool and keeps trying; the operator stops it
        listed = {r["probe"]: r["state"] for r in centre.requests() if r["probe"]}
        assert listed == {"p7": "retired", "px": "approved"}
