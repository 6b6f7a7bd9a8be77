"""A test zone's TLS side: certificates made with ``cryptography``, mosquitto started with the ACL and password
file ``render-mosquitto`` writes, and a paho client (``Peer``) that records what its callbacks saw.

Every integration test that needs the production broker set-up (TLS, the rendered ACL, per-client limits)
starts it from here, so there is one way of doing it; ``tests/centre.py`` builds the whole centre (this broker,
the webhook receiver, the collector) on it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from paho.mqtt.enums import CallbackAPIVersion

from collector import mosquitto
from collector.inventory import Inventory
from collector.mosquitto.listener import ListenerTls, render_listener_options
from collector.mosquitto.passwd import render_passwd
from tests import services
from zonewatch.strict import load

# The collector's two sessions and two probes, as most tests name them.
PASSWORDS = {"collector": "collector-pw", "collector-urgent": "collector-pw", "p1": "p1-pw", "p2": "p2-pw"}
WAIT = 10.0


# ---------------------------------------------------------------------------------------------- certificates


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_ca(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Return a self-signed CA certificate and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(_name(common_name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def make_server_cert(ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, not_before: dt.datetime,
                     not_after: dt.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Return a server certificate for 127.0.0.1 (IP SAN) signed by ``ca``, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("zonewatch-test-broker")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert, key


@dataclass
class ServerPki:
    """A CA and a server certificate for 127.0.0.1 it signed, as files."""

    ca: Path
    cert: Path
    key: Path


def write_server_pki(folder: Path, ca_name: str = "zonewatch test CA") -> ServerPki:
    """Write a new CA (``ca.crt``) and a server certificate for 127.0.0.1 valid for a day (``server.crt``,
    ``server.key`` mode 0600) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = make_ca(ca_name)
    now = dt.datetime.now(dt.timezone.utc)
    server, server_key = make_server_cert(ca, ca_key, now - dt.timedelta(hours=1), now + dt.timedelta(days=1))
    pki = ServerPki(folder / "ca.crt", folder / "server.crt", folder / "server.key")
    pki.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.cert.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    pki.key.write_bytes(pem_key(server_key))
    pki.key.chmod(0o600)
    return pki


@dataclass
class ClientPki:
    """A CA with a server certificate for 127.0.0.1 and a client certificate for ``p1``; a second, unrelated CA and a
    client certificate of its own (PEM files, 0600)."""

    ca: Path
    other_ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    foreign_cert: Path  # a client certificate from the other CA
    foreign_key: Path


def write_client_pki(folder: Path) -> ClientPki:
    """Write a ``ClientPki`` into ``folder`` and return its files."""
    from tests.hostile import make_client_cert

    ca, ca_key = make_ca("zonewatch test CA")
    other, other_key = make_ca("unrelated CA")
    now = dt.datetime.now(dt.timezone.utc)
    server, server_key = make_server_cert(ca, ca_key, now - dt.timedelta(hours=1), now + dt.timedelta(days=1))
    client_cert, client_key = make_client_cert(ca, ca_key, "p1")
    foreign_cert, foreign_key = make_client_cert(other, other_key, "p1")
    files = {"ca.crt": ca.public_bytes(serialization.Encoding.PEM),
             "other-ca.crt": other.public_bytes(serialization.Encoding.PEM),
             "server.crt": server.public_bytes(serialization.Encoding.PEM), "server.key": pem_key(server_key),
             "client.crt": client_cert, "client.key": client_key,
             "foreign.crt": foreign_cert, "foreign.key": foreign_key}
    for name, data in files.items():
        (folder / name).write_bytes(data)
        (folder / name).chmod(0o600)
    return ClientPki(*(folder / name for name in files))


# ---------------------------------------------------------------------------------------------- broker


def start_tls_broker(workdir: Path, inventory_yaml: str, passwords: dict[str, str], pki: ServerPki,
                     **options: Any) -> services.Service:
    """Start mosquitto on a TLS listener with the ACL and hashed password file rendered for
    ``inventory_yaml`` and ``passwords`` (``options`` go to ``services.start_mosquitto``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "acl").write_text(mosquitto.render_acl(load(Inventory, inventory_yaml)))
    (workdir / "passwd").write_text(render_passwd(passwords))
    (workdir / "passwd").chmod(0o600)
    tls = ListenerTls(str(pki.ca), str(pki.cert), str(pki.key))
    listener = render_listener_options(str(workdir / "passwd"), str(workdir / "acl"), tls)
    return services.start_mosquitto(workdir, listener_options=listener, **options)


# ---------------------------------------------------------------------------------------------- clients


@dataclass
class Peer:
    """A paho client with what its callbacks saw."""

    client: mqtt.Client
    connected: threading.Event = field(default_factory=threading.Event)
    connack: Any = None
    subscribed: threading.Event = field(default_factory=threading.Event)
    pubacks: dict[int, Any] = field(default_factory=dict)
    received: list[tuple[str, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def publish(self, topic: str, payload: bytes) -> Any:
        """Publish at QoS 1 and return the broker's PUBACK reason code."""
        info = self.client.publish(topic, payload, qos=1)
        services.wait_for(lambda: info.mid in self.pubacks, WAIT, f"PUBACK for {topic}")
        return self.pubacks[info.mid]

    def messages(self) -> list[tuple[str, bytes]]:
        with self.lock:
            return list(self.received)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def peer(ca: Path, username: str | None, client_id: str, passwords: dict[str, str] | None = None) -> Peer:
    """Return a TLS client that verifies the broker against ``ca`` (not connected yet); its password is
    ``passwords[username]`` (default ``PASSWORDS``), or a wrong one for a user not there."""
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.tls_set(ca_certs=str(ca), cert_reqs=ssl.CERT_REQUIRED)
    if username is not None:
        c.username_pw_set(username, (PASSWORDS if passwords is None else passwords).get(username, "wrong"))
    p = Peer(c)

    def on_connect(cl: mqtt.Client, ud: Any, flags: Any, reason: Any, props: Any) -> None:
        p.connack = reason
        p.connected.set()

    def on_publish(cl: mqtt.Client, ud: Any, mid: int, reason: Any, props: Any) -> None:
        p.pubacks[mid] = reason

    def on_message(cl: mqtt.Client, ud: Any, msg: mqtt.MQTTMessage) -> None:
        with p.lock:
            p.received.append((msg.topic, bytes(msg.payload)))

    c.on_connect, c.on_publish, c.on_message = on_connect, on_publish, on_message
    c.on_subscribe = lambda cl, ud, mid, codes, props: p.subscribed.set()
    return p


def connect(port: int, ca: Path, username: str | None, client_id: str,
            passwords: dict[str, str] | None = None) -> Peer:
    """Connect over TLS and wait (bounded) for the CONNACK, whatever it says."""
    p = peer(ca, username, client_id, passwords)
    p.client.connect("127.0.0.1", port, keepalive=10)
    p.client.loop_start()
    if not p.connected.wait(WAIT):
        p.close()
        raise TimeoutError(f"no CONNACK for {client_id}")
    return p
