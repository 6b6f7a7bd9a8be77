"""``zonewatch.mqtt.make_client``: the one place a paho client is built from an ``MqttConfig``.

paho shows the session options it was given (client id, clean session (3.1.1 only), manual acknowledgement, reconnect
back-off, TLS context) only in private attributes, read here in ``_options`` alone. TLS is checked by what it
does: an in-memory handshake (no socket) against a server with a certificate from the configured CA, which
requires the client's certificate.

The client reads its socket through ``zonewatch.mqtt_socket.BufferedSocket``: unit tests over a socket pair read
packets from it as paho does (the command byte, the remaining length a byte at a time, then the rest), and clients
from ``make_client`` exchange large and many small messages through the real broker, plain and over TLS.
"""

from __future__ import annotations

import random
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.uplink import make_client as agent_client
from collector.alerting.notify.mqtt import MqttPublisher
from tests import services
from tests.tlsbroker import PASSWORDS, ServerPki, start_tls_broker, write_client_pki
from zonewatch.mqtt import MqttConfig, make_client
from zonewatch.mqtt_socket import READ_SIZE, BufferedSocket


def _options(client: mqtt.Client) -> dict[str, Any]:
    return {"client_id": client._client_id.decode(), "clean_session": getattr(client, "_clean_session", None),
            "manual_ack": client._manual_ack, "reconnect": (client._reconnect_min_delay, client._reconnect_max_delay)}


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
@pytest.mark.parametrize("persistent", [False, True])
def test_options_for_either_protocol(protocol: str, persistent: bool) -> None:
    cfg = MqttConfig.model_validate({"protocol": protocol, "client_id": "ignored-here"})
    client = make_client(cfg, "zonewatch-collector", persistent=persistent, manual_ack=persistent)
    assert client.callback_api_version == CallbackAPIVersion.VERSION2
    assert client.protocol == (mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311)
    # MQTT 5 has no clean session flag (the session is chosen when connecting); 3.1.1 has it, on unless persistent
    assert _options(client) == {"client_id": "zonewatch-collector",
                                "clean_session": None if protocol == "5" else not persistent,
                                "manual_ack": persistent, "reconnect": (1, 120)}   # paho's own back-off
    assert client._ssl_context is None


def test_reconnect_back_off() -> None:
    client = make_client(MqttConfig(), "c", reconnect=(2.5, 60))
    assert _options(client)["reconnect"] == (2.5, 60)


def test_credentials_are_the_configs_or_another_user_name_with_the_configs_password() -> None:
    cfg = MqttConfig.model_validate({"username": "collector", "password": "s3cret"})
    client = make_client(cfg, "c")
    assert (client.username, client.password) == ("collector", "s3cret")
    client = make_client(cfg, "c-urgent", username="collector-urgent")
    assert (client.username, client.password) == ("collector-urgent", "s3cret")
    for no_login in (make_client(MqttConfig(), "c"), make_client(cfg, "c", username="")):
        assert (no_login.username, no_login.password) == (None, None)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    files = write_client_pki(tmp_path_factory.mktemp("pki"))
    return {"ca.crt": files.ca, "other-ca.crt": files.other_ca, "server.crt": files.server_cert,
            "server.key": files.server_key, "client.crt": files.client_cert, "client.key": files.client_key}


def _handshake(client: mqtt.Client, pki: dict[str, Path]) -> dict[str, Any] | None:
    """Shake hands in memory with a broker showing ``server.crt`` (for 127.0.0.1) and asking for a client
    certificate from ``ca.crt``; return the client certificate it received (None if none came)."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(pki["server.crt"], pki["server.key"])
    server_ctx.load_verify_locations(pki["ca.crt"])
    server_ctx.verify_mode = ssl.CERT_OPTIONAL
    pipes = [(ssl.MemoryBIO(), ssl.MemoryBIO()) for _ in range(2)]   # (client to server, server to client)
    to_server, to_client = pipes[0][0], pipes[1][0]
    tls_client = client._ssl_context.wrap_bio(to_client, to_server, server_hostname="127.0.0.1")
    tls_server = server_ctx.wrap_bio(to_server, to_client, server_side=True)
    assert handshake(tls_client, tls_server), "the handshake did not finish"
    return tls_server.getpeercert()


def handshake(*ends: ssl.SSLObject | ssl.SSLSocket) -> bool:
    """Drive the TLS handshakes of ``ends`` (in memory, or over non-blocking sockets) by turns, 20 rounds at most;
    return True if every one finished."""
    done = dict.fromkeys(ends, False)
    for _ in range(20):
        for end in ends:
            if not done[end]:
                try:
                    end.do_handshake()
                    done[end] = True
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    pass
        if all(done.values()):
            return True
    return False


def test_tls_verifies_the_broker_against_the_configured_ca_and_presents_the_client_certificate(
        pki: dict[str, Path]) -> None:
    cfg = MqttConfig.model_validate({"tls": {"ca_file": str(pki["ca.crt"]), "cert_file": str(pki["client.crt"]),
                                             "key_file": str(pki["client.key"])}})
    client = make_client(cfg, "p1")
    assert client._ssl_context.verify_mode == ssl.CERT_REQUIRED
    peer = _handshake(client, pki)
    assert peer is not None and dict(x[0] for x in peer["subject"])["commonName"] == "p1"

    without_cert = make_client(MqttConfig.model_validate({"tls": {"ca_file": str(pki["ca.crt"])}}), "p1")
    assert _handshake(without_cert, pki) is None   # none presented

    other_ca = make_client(MqttConfig.model_validate({"tls": {"ca_file": str(pki["other-ca.crt"])}}), "p1")
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(other_ca, pki)


def test_the_callers_keep_their_client_ids_and_options() -> None:
    cfg = MqttConfig.model_validate({"protocol": "3.1.1"})
    agent = agent_client(cfg, "zw-z1-p1")
    assert _options(agent)["client_id"] == "zw-z1-p1" and _options(agent)["clean_session"] is True
    low, high = _options(agent)["reconnect"]
    assert 1.0 <= low <= 3.0 and high == 60
    named = agent_client(cfg.model_copy(update={"client_id": "own"}), "zw-z1-p1")
    assert _options(named)["client_id"] == "own"

    notify = MqttPublisher(cfg.model_copy(update={"client_id": "central"})).client
    assert _options(notify) == {"client_id": "central-notify", "clean_session": True, "manual_ack": False,
                                "reconnect": (1, 30)}
    assert _options(MqttPublisher(cfg).client)["client_id"] == "zonewatch-collector-notify"


# ---------------------------------------------------------------------------------------------- buffered reads


def _packet(body: bytes, command: int = 0x30) -> bytes:
    """Return an MQTT packet: the command byte, the remaining length (1 to 4 bytes), then ``body``."""
    out, length = bytearray([command]), len(body)
    while True:
        byte, length = length % 128, length // 128
        out.append(byte | (128 if length else 0))
        if not length:
            return bytes(out) + body


def _packets(*sizes: int) -> list[bytes]:
    return [_packet(random.Random(size).randbytes(size)) for size in sizes]


class PahoReads:
    """Reads packets off a socket as paho's ``_packet_read`` does: the command byte, the remaining length a byte
    at a time, then the rest in as many reads as it takes, each asking for what is missing."""

    def __init__(self, sock: BufferedSocket) -> None:
        self.sock = sock
        self.packets: list[bytes] = []
        self.pending: list[int] = []   # sock.pending() after each read
        self._part = bytearray()
        self._rest: int | None = None  # what the packet still lacks, once its remaining length is known

    def until_blocked(self) -> None:
        """Read until the socket has nothing more to give."""
        try:
            while True:
                if self._rest is None:
                    self._part += self._recv(1)
                    if len(self._part) > 1 and self._part[-1] < 128:
                        self._rest = sum((b & 127) << 7 * i for i, b in enumerate(self._part[1:]))
                elif self._rest:
                    data = self._recv(self._rest)
                    self._part += data
                    self._rest -= len(data)
                if self._rest == 0:
                    self.packets.append(bytes(self._part))
                    self._part, self._rest = bytearray(), None
        except (BlockingIOError, ssl.SSLWantReadError):
            pass

    def _recv(self, n: int) -> bytes:
        data = self.sock.recv(n)
        assert 0 < len(data) <= n
        self.pending.append(self.sock.pending())
        return data


@pytest.fixture
def pair() -> Iterator[tuple[BufferedSocket, socket.socket]]:
    """A non-blocking ``BufferedSocket`` and the socket that writes to it."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    try:
        yield BufferedSocket(ours), theirs
    finally:
        ours.close()
        theirs.close()


def test_packets_split_anywhere_come_out_whole(pair: tuple[BufferedSocket, socket.socket]) -> None:
    sock, writer = pair
    packets = _packets(0, 5, 127, 128, 300, 20_000, 70_000, 3)  # remaining lengths of 1, 2 and 3 bytes
    stream, reads = b"".join(packets), PahoReads(sock)
    at = 0
    for size in [1, 1, 2, 3, 1, 7, 500, 1] * 1000:   # cuts inside command bytes, lengths and bodies
        if at == len(stream):
            break
        writer.sendall(stream[at:at + size])
        at += len(stream[at:at + size])
        reads.until_blocked()
    assert at == len(stream) and reads.packets == packets


def test_packets_in_one_read_are_served_from_it_and_counted_as_pending(
        pair: tuple[BufferedSocket, socket.socket]) -> None:
    sock, writer = pair
    packets = _packets(*range(0, 600, 7))
    stream, reads = b"".join(packets), PahoReads(sock)
    assert len(stream) < READ_SIZE and sock.pending() == 0
    writer.sendall(stream)
    reads.until_blocked()
    assert reads.packets == packets
    # the first read took the whole stream; every later one was served from it
    assert reads.pending == sorted(reads.pending, reverse=True)
    assert reads.pending[0] == len(stream) - 1 and reads.pending[-1] == 0
    with pytest.raises(BlockingIOError):
        sock.recv(1)


def test_a_packet_larger_than_one_read_comes_out_whole(pair: tuple[BufferedSocket, socket.socket]) -> None:
    sock, writer = pair
    packets = _packets(3 * READ_SIZE // 2, 10)
    reads = PahoReads(sock)
    writer.sendall(b"".join(packets))
    reads.until_blocked()
    assert reads.packets == packets


def test_nothing_to_read_raises_as_the_socket_does(pair: tuple[BufferedSocket, socket.socket]) -> None:
    sock, _ = pair
    with pytest.raises(BlockingIOError):
        sock.recv(1)
    assert sock.pending() == 0


def test_the_peer_closing_reads_as_empty_after_what_it_sent(pair: tuple[BufferedSocket, socket.socket]) -> None:
    sock, writer = pair
    stream = b"".join(_packets(10, 20))
    writer.sendall(stream)
    writer.close()
    assert sock.recv(1) == stream[:1]
    assert sock.recv(1000) == stream[1:]   # what is held, less than asked
    assert sock.recv(1) == b"" and sock.recv(1) == b""


def test_tls_reads_are_buffered_and_want_read_reaches_paho_unchanged(pki: dict[str, Path]) -> None:
    cfg = MqttConfig.model_validate({"tls": {"ca_file": str(pki["ca.crt"])}})
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(pki["server.crt"], pki["server.key"])
    ours, theirs = socket.socketpair()
    for s in (ours, theirs):
        s.setblocking(False)
    client = make_client(cfg, "p1")._ssl_context.wrap_socket(ours, server_hostname="127.0.0.1",
                                                             do_handshake_on_connect=False)
    server = server_ctx.wrap_socket(theirs, server_side=True, do_handshake_on_connect=False)
    try:
        assert handshake(client, server)
        sock = BufferedSocket(client)
        with pytest.raises(ssl.SSLWantReadError):   # paho takes it for "nothing yet"
            sock.recv(1)
        packets = _packets(*range(0, 3000, 100))
        reads = PahoReads(sock)
        server.sendall(b"".join(packets))
        reads.until_blocked()
        assert reads.packets == packets
    finally:
        client.close()
        server.close()


# ---------------------------------------------------------------------------------------------- real broker


@pytest.fixture(params=["plain", "tls"])
def broker(request: pytest.FixtureRequest, tmp_path: Path,
           pki: dict[str, Path]) -> Iterator[tuple[MqttConfig, MqttConfig, str]]:
    """A real mosquitto, plain or TLS (the rendered ACL: p1 publishes its data, the collector reads it), and the
    publisher's and the subscriber's settings and the topic."""
    if request.param == "plain":
        svc = services.start_mosquitto(tmp_path / "mosquitto")
        tls: dict[str, str] = {}
    else:
        inventory = "zones:\n  z1: {name: one}\nprobes:\n  p1: {zone: z1}\n"
        svc = start_tls_broker(tmp_path / "mosquitto", inventory, PASSWORDS,
                               ServerPki(pki["ca.crt"], pki["server.crt"], pki["server.key"]))
        tls = {"ca_file": str(pki["ca.crt"])}
    try:
        def cfg(user: str) -> MqttConfig:
            login = {"username": user, "password": PASSWORDS[user], "tls": tls} if tls else {}
            return MqttConfig.model_validate({"port": svc.port, **login})

        yield cfg("p1"), cfg("collector"), "zw/v1/z1/p1/data"
    finally:
        svc.stop()


@pytest.mark.integration
def test_clients_exchange_large_and_many_small_messages(broker: tuple[MqttConfig, MqttConfig, str]) -> None:
    pub_cfg, sub_cfg, topic = broker
    big = [random.Random(n).randbytes(300 * 1024) for n in range(2)]
    small = [random.Random(n).randbytes(20 + n % 300) for n in range(2000)]
    sent = [big[0], *small[:1000], big[1], *small[1000:]]
    received: list[bytes] = []
    subscribed = threading.Event()
    sub, pub = make_client(sub_cfg, "buffered-sub"), make_client(pub_cfg, "buffered-pub")
    sub.on_connect = lambda c, ud, flags, reason, props: c.subscribe(topic, 1)
    sub.on_subscribe = lambda c, ud, mid, codes, props: subscribed.set()
    sub.on_message = lambda c, ud, msg: received.append(msg.payload)
    try:
        for client in (sub, pub):
            client.connect("127.0.0.1", sub_cfg.port)
            client.loop_start()
        assert subscribed.wait(10), "no SUBACK"
        assert isinstance(sub.socket(), BufferedSocket) and isinstance(pub.socket(), BufferedSocket)
        for payload in sent:
            pub.publish(topic, payload, qos=1)
        # back to back, many arrive in one read: the last of them only come out if paho asks pending()
        services.wait_for(lambda: len(received) >= len(sent), 30, f"{len(sent)} messages")
        assert received == sent
    finally:
        for client in (pub, sub):
            client.disconnect()
            client.loop_stop()
