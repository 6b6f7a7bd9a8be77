"""The rendered ACL and password file in real mosquitto behind TLS: a probe publishes only as itself.

Certificates (``tests.tlsbroker``): a CA with a server certificate for 127.0.0.1 (IP SAN), a second unrelated
CA, and an expired server certificate from the first CA.
"""

from __future__ import annotations

import base64
import datetime as dt
import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from collector.mosquitto.passwd import hash_password
from tests import services
from tests.tlsbroker import (
    PASSWORDS,
    WAIT,
    Peer,
    ServerPki,
    connect,
    make_ca,
    make_server_cert,
    peer,
    pem_key,
    start_tls_broker,
)

pytestmark = pytest.mark.integration

INVENTORY = "zones:\n  z1: {name: one}\nprobes:\n  p1: {zone: z1}\n  p2: {zone: z1}\n"
NOT_AUTHORIZED = 135


@dataclass
class Pki:
    """Where the test's certificate files are."""

    ca: Path
    other_ca: Path
    server_cert: Path
    server_key: Path
    expired_cert: Path
    expired_key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca, ca_key = make_ca("zonewatch test CA")
    other, _ = make_ca("unrelated CA")
    now = dt.datetime.now(dt.timezone.utc)
    server, server_key = make_server_cert(ca, ca_key, now - dt.timedelta(hours=1), now + dt.timedelta(days=1))
    expired, expired_key = make_server_cert(ca, ca_key, now - dt.timedelta(days=10), now - dt.timedelta(days=1))
    files = {"ca.crt": ca.public_bytes(serialization.Encoding.PEM),
             "other-ca.crt": other.public_bytes(serialization.Encoding.PEM),
             "server.crt": server.public_bytes(serialization.Encoding.PEM), "server.key": pem_key(server_key),
             "expired.crt": expired.public_bytes(serialization.Encoding.PEM), "expired.key": pem_key(expired_key)}
    for name, data in files.items():
        (folder / name).write_bytes(data)
        (folder / name).chmod(0o600)
    return Pki(folder / "ca.crt", folder / "other-ca.crt", folder / "server.crt", folder / "server.key",
               folder / "expired.crt", folder / "expired.key")


# ---------------------------------------------------------------------------------------------- broker


def start_broker(workdir: Path, cert: Path, key: Path, ca: Path) -> services.Service:
    """Start mosquitto with the rendered ACL and password file on a TLS listener."""
    return start_tls_broker(workdir, INVENTORY, PASSWORDS, ServerPki(ca, cert, key))


@pytest.fixture
def broker(tmp_path: Path, pki: Pki) -> Iterator[services.Service]:
    svc = start_broker(tmp_path / "mosquitto", pki.server_cert, pki.server_key, pki.ca)
    yield svc
    svc.stop()


# ---------------------------------------------------------------------------------------------- clients


@pytest.fixture
def collector(broker: services.Service, pki: Pki) -> Iterator[Peer]:
    c = connect(broker.port, pki.ca, "collector", "zw-collector")
    assert not c.connack.is_failure, c.connack
    c.client.subscribe([(f"zw/v1/+/+/{kind}", 1) for kind in ("status", "data", "events")])
    assert c.subscribed.wait(WAIT)
    yield c
    c.close()


# ---------------------------------------------------------------------------------------------- tests


def test_a_probe_publishes_as_itself_and_the_collector_receives_it(broker: services.Service, pki: Pki,
                                                                     collector: Peer) -> None:
    p1 = connect(broker.port, pki.ca, "p1", "zw-z1-p1")
    try:
        assert not p1.connack.is_failure, p1.connack
        assert p1.publish("zw/v1/z1/p1/data", b"own-1").value == 0  # Success: the collector is subscribed
        services.wait_for(lambda: ("zw/v1/z1/p1/data", b"own-1") in collector.messages(), WAIT,
                          "the collector to receive p1's batch")
    finally:
        p1.close()


def test_a_probe_cannot_publish_for_another_even_with_its_client_id(broker: services.Service, pki: Pki,
                                                                      collector: Peer) -> None:
    p1 = connect(broker.port, pki.ca, "p1", "zw-z1-p1")
    try:
        reason = p1.publish("zw/v1/z1/p2/data", b"forged-topic")
        assert (reason.value, str(reason)) == (NOT_AUTHORIZED, "Not authorized")
        assert p1.publish("zw/v1/z1/p1/config", b"not-mine-to-write").value == NOT_AUTHORIZED
    finally:
        p1.close()
    spoof = connect(broker.port, pki.ca, "p1", "p2")  # p1's password, p2's client id
    try:
        assert not spoof.connack.is_failure, spoof.connack
        assert spoof.publish("zw/v1/z1/p2/data", b"forged-client-id").value == NOT_AUTHORIZED
        assert spoof.publish("zw/v1/z1/p2/status", b"offline").value == NOT_AUTHORIZED
        # a marker on p1's own topic, sent after the refused ones, shows everything before it was handled
        assert spoof.publish("zw/v1/z1/p1/data", b"marker").value == 0
        services.wait_for(lambda: ("zw/v1/z1/p1/data", b"marker") in collector.messages(), WAIT, "the marker")
    finally:
        spoof.close()
    assert collector.messages() == [("zw/v1/z1/p1/data", b"marker")]
    # and the collector reads probes' topics but cannot write them
    assert collector.publish("zw/v1/z1/p1/data", b"collector-forged").value == NOT_AUTHORIZED


def test_clients_without_valid_credentials_are_refused_at_connect(broker: services.Service, pki: Pki) -> None:
    for username, client_id in ((None, "anonymous"), ("p1-unknown", "x"), ("p1", "p1-wrong")):
        p = peer(pki.ca, username, client_id)
        if client_id == "p1-wrong":
            p.client.username_pw_set("p1", "not-p1-pw")
        p.client.connect("127.0.0.1", broker.port, keepalive=10)
        p.client.loop_start()
        try:
            assert p.connected.wait(WAIT), f"no CONNACK for {client_id}"
            assert p.connack.is_failure, client_id
            assert p.connack.value in (134, NOT_AUTHORIZED), (client_id, str(p.connack))  # bad credentials
        finally:
            p.close()


def handshake_failure(p: Peer, port: int) -> str:
    """Connect and return why the client refused the broker's certificate; fail if it accepted it."""
    try:
        p.client.connect("127.0.0.1", port, keepalive=10)
    except ssl.SSLCertVerificationError as exc:
        # paho leaves the socket whose handshake failed open: close it (pytest turns the leak into an error)
        tb = exc.__traceback__
        while tb is not None:
            for value in tb.tb_frame.f_locals.values():
                if isinstance(value, socket.socket):
                    value.close()
            tb = tb.tb_next
        return str(exc.verify_message)
    p.client.disconnect()
    raise AssertionError("the client accepted the broker's certificate")


def test_a_client_that_trusts_another_ca_fails_the_handshake(broker: services.Service, pki: Pki) -> None:
    # mosquitto sends its CA along with its certificate, so OpenSSL sees a self-signed root it does not trust
    reason = handshake_failure(peer(pki.other_ca, "p1", "p1"), broker.port)
    assert reason in ("self-signed certificate in certificate chain", "unable to get local issuer certificate")
    # the same client with the right CA gets through: the refusal above is about the CA alone
    ok = connect(broker.port, pki.ca, "p1", "p1")
    ok.close()
    assert not ok.connack.is_failure


def test_a_broker_with_an_expired_certificate_is_refused(tmp_path: Path, pki: Pki) -> None:
    svc = start_broker(tmp_path / "expired", pki.expired_cert, pki.expired_key, pki.ca)
    try:
        assert handshake_failure(peer(pki.ca, "p1", "p1"), svc.port) == "certificate has expired"
    finally:
        svc.stop()


def test_python_hash_equals_mosquitto_passwd_for_the_same_salt(tmp_path: Path) -> None:
    binary = services.require("mosquitto_passwd")
    passwd = tmp_path / "passwd"
    subprocess.run([binary, "-c", "-b", str(passwd), "probe-x", "pä ss:w$rd"], check=True, capture_output=True)
    user, entry = passwd.read_text().strip().split(":", 1)
    salt = base64.b64decode(entry.split("$")[3])
    assert (user, hash_password("pä ss:w$rd", salt)) == ("probe-x", entry)
