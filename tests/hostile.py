"""Hostile peers for integration tests: what a real device, modem or broker cannot be made to do.

Each double runs in a thread of the test process, on a free 127.0.0.1 port (or a pty), and is stopped by
``stop()``; the agent under test is a real process that talks to it over a real socket.

    HostileSnmpDevice(behaviour)   a UDP "SNMP agent" with one defect (BEHAVIOURS); real BER where it answers
    FloodingModem(behaviour)       a pty "modem" that floods lines, never says OK, or sends binary garbage
    DroppingBroker(...)            a TCP "MQTT broker" that accepts CONNECT, then drops the connection part
                                   way through a PUBLISH, a number of times, then hands over to a real broker
                                   (a byte pipe to it)

Plus ``BatchSubscriber``, a paho client that collects and decodes what probes publish, and ``fd_count(pid)``
and ``rss_kb(pid)`` to watch a process from outside (``/proc``).
"""

from __future__ import annotations

import os
import random
import select
import socket
import threading
import time
import tty
from typing import Any, Final, Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto import api

from zonewatch import wire

__all__ = ["HostileSnmpDevice", "BEHAVIOURS", "FloodingModem", "FLOODS", "DroppingBroker", "BatchSubscriber",
           "make_client_cert", "fd_count", "rss_kb"]

SYS_UPTIME: Final = "1.3.6.1.2.1.1.3.0"

#: What each hostile SNMP device does with every request it gets.
BEHAVIOURS: Final[dict[str, str]] = {
    "garbage": "answers bytes that are not BER",
    "wrong-request-id": "answers a well-formed response whose request-id is not the request's",
    "stale-storm": "answers each request with a stream of well-formed responses to other requests, one every"
                   " `delay` seconds for 3 s (a confused device, or a flood from a spoofer)",
    "huge": "answers a well-formed response of about 64 KB of varbinds",
    "slow": "answers correctly, but only after `delay` seconds (beyond the client's timeout)",
    "silent": "never answers",
    "wrong-community": "answers a well-formed response with another community than the request's",
    "wrong-version": "answers a well-formed SNMPv1 response to an SNMPv2c request",
}


def fd_count(pid: int) -> int:
    """Return how many file descriptors process ``pid`` has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kb(pid: int) -> int:
    """Return the resident set size of process ``pid`` in KiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


class BatchSubscriber:
    """A paho client subscribed to every probe's data topic; ``batches()`` are what arrived, decoded."""

    def __init__(self, port: int, client_id: str = "zw-test-subscriber") -> None:
        self._lock = threading.Lock()
        self._batches: list[wire.Batch] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, u, f, reason, p: c.subscribe(wire.subscription("data"), qos=1)
        self.client.on_subscribe = lambda c, u, mid, codes, p: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        if not self.subscribed.wait(10):
            self.close()
            raise TimeoutError(f"could not subscribe at 127.0.0.1:{port}")

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        batch = wire.decode(msg.payload)
        with self._lock:
            self._batches.append(batch)

    def batches(self) -> list[wire.Batch]:
        with self._lock:
            return list(self._batches)

    def samples(self, measurement: str, **tags: str) -> list[wire.Sample]:
        """Return the samples of ``measurement`` whose tags include ``tags``, in arrival order."""
        return [s for b in self.batches() for s in b.samples
                if s.measurement == measurement and all(s.tags.get(k) == v for k, v in tags.items())]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# ---------------------------------------------------------------------------------------------- SNMP


def _response(request: bytes, behaviour: str, uptime: int) -> bytes | None:
    """Return this behaviour's datagram for one request, or None to stay silent."""
    if behaviour == "silent":
        return None
    if behaviour == "garbage":
        return bytes(random.Random(len(request)).getrandbits(8) for _ in range(200))
    version = int(api.decodeMessageVersion(request))
    module = api.PROTOCOL_MODULES[version]
    message, _ = decoder.decode(request, asn1Spec=module.Message())
    pdu = module.apiMessage.get_pdu(message)
    response = module.apiMessage.get_response(message)
    answer = module.apiMessage.get_pdu(response)
    varbinds = []
    for oid, _value in module.apiPDU.get_varbinds(pdu):
        value = module.TimeTicks(uptime) if str(oid) == SYS_UPTIME else module.Integer(1)
        varbinds.append((oid, value))
    if behaviour == "huge":  # the requested values, then padding up to about 64 KB (a UDP datagram's limit)
        filler = module.OctetString(b"x" * 1000)
        varbinds += [(module.ObjectIdentifier(f"1.3.6.1.4.1.99999.9.{i}"), filler) for i in range(62)]
    module.apiPDU.set_varbinds(answer, varbinds)
    if behaviour in ("wrong-request-id", "stale-storm"):
        module.apiPDU.set_request_id(answer, (int(module.apiPDU.get_request_id(pdu)) + 7919) % 2**31)
    if behaviour == "wrong-community":
        module.apiMessage.set_community(response, b"somebody-else")
    if behaviour == "wrong-version":
        v1 = api.PROTOCOL_MODULES[api.SNMP_VERSION_1]
        old = v1.Message()
        v1.apiMessage.set_defaults(old)
        v1.apiMessage.set_community(old, module.apiMessage.get_community(message))
        old_pdu = v1.GetResponsePDU()
        v1.apiPDU.set_defaults(old_pdu)
        v1.apiPDU.set_request_id(old_pdu, module.apiPDU.get_request_id(pdu))
        v1.apiPDU.set_varbinds(old_pdu, [(oid, v1.TimeTicks(uptime)) for oid, _ in varbinds])
        v1.apiMessage.set_pdu(old, old_pdu)
        return bytes(encoder.encode(old))
    return bytes(encoder.encode(response))


class _Peer:
    """What every hostile peer here shares: one serving thread, started and stopped with the peer, or by
    ``with``. A subclass sets ``_thread`` (targeting its ``_serve``) and ``_stop``, and closes what it
    opened in ``_close``, which runs after the thread has stopped."""

    _thread: threading.Thread
    _stop: threading.Event

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._close()

    def _close(self) -> None:
        raise NotImplementedError


class HostileSnmpDevice(_Peer):
    """A UDP responder on 127.0.0.1 that answers every SNMP request with one kind of defect."""

    def __init__(self, behaviour: str, delay: float = 0.0) -> None:
        if behaviour not in BEHAVIOURS:
            raise ValueError(f"unknown behaviour {behaviour!r}; known: {', '.join(BEHAVIOURS)}")
        self.behaviour = behaviour
        self.delay = delay
        self.requests = 0
        self.errors: list[str] = []  # requests it could not even decode (a test bug, not the agent's)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        self._stop = threading.Event()
        self._timers: list[threading.Timer] = []
        self._thread = threading.Thread(target=self._serve, name=f"hostile-snmp {behaviour}", daemon=True)

    def _close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._sock.close()

    def _serve(self) -> None:
        started = time.monotonic()
        while not self._stop.is_set():
            ready, _, _ = select.select([self._sock], [], [], 0.1)
            if not ready:
                continue
            try:
                request, peer = self._sock.recvfrom(65535)
            except OSError:
                return
            self.requests += 1
            try:
                datagram = _response(request, self.behaviour, int((time.monotonic() - started) * 100))
            except Exception as exc:  # noqa: BLE001 - recorded for the test to show
                self.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            if datagram is None:
                continue
            if self.behaviour == "stale-storm":
                for k in range(max(1, int(3.0 / max(self.delay, 0.01)))):
                    self._later(k * self.delay, datagram, peer)
            elif self.delay:
                self._later(self.delay, datagram, peer)
            else:
                self._send(datagram, peer)

    def _later(self, delay: float, datagram: bytes, peer: tuple[str, int]) -> None:
        if delay <= 0:
            self._send(datagram, peer)
            return
        timer = threading.Timer(delay, self._send, (datagram, peer))
        timer.daemon = True
        self._timers = [t for t in self._timers if t.is_alive()] + [timer]
        timer.start()

    def _send(self, datagram: bytes, peer: tuple[str, int]) -> None:
        try:
            self._sock.sendto(datagram, peer)
        except OSError:
            pass  # stopped, or the peer is gone


# ---------------------------------------------------------------------------------------------- modem

#: What each flooding modem does once it has received a command.
FLOODS: Final[dict[str, str]] = {
    "lines": "answers every command with endless +CSQ lines and never a final result code",
    "no-final": "answers the information line of a command but never OK or ERROR, and stays quiet",
    "binary": "sends endless binary garbage (no line breaks, bytes above 0x7f)",
}


class FloodingModem(_Peer):
    """A pty "modem" that answers commands with floods; ``written`` counts the bytes it sent."""

    def __init__(self, behaviour: str, chunk: int = 16384) -> None:
        if behaviour not in FLOODS:
            raise ValueError(f"unknown behaviour {behaviour!r}; known: {', '.join(FLOODS)}")
        self.behaviour = behaviour
        self.written = 0
        self.commands: list[str] = []
        self._chunk = chunk
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.port = os.ttyname(self._slave)
        os.set_blocking(self._master, False)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"flooding-modem {behaviour}", daemon=True)

    def _close(self) -> None:
        for fd in (self._master, self._slave):
            os.close(fd)

    def _payload(self) -> bytes:
        if self.behaviour == "lines":
            return b"+CSQ: 18,99\r\n" * (self._chunk // 13)
        rng = random.Random(self.written)
        return bytes(rng.randrange(0x80, 0x100) for _ in range(self._chunk))  # never \r or \n

    def _serve(self) -> None:
        buffer = b""
        flooding = False
        while not self._stop.is_set():
            wants_write = flooding and self.behaviour != "no-final"
            readable, writable, _ = select.select([self._master], [self._master] if wants_write else [], [], 0.05)
            if readable:
                try:
                    data = os.read(self._master, 4096)
                except OSError:
                    data = b""
                buffer += data
                while b"\r" in buffer:
                    raw, buffer = buffer.split(b"\r", 1)
                    command = raw.decode("ascii", errors="replace").strip()
                    if not command:
                        continue
                    self.commands.append(command)
                    flooding = True
                    if self.behaviour == "no-final":
                        self._write(b"\r\n+CSQ: 18,99\r\n")
            if writable:
                self._write(self._payload())

    def _write(self, data: bytes) -> None:
        try:
            self.written += os.write(self._master, data)
        except (BlockingIOError, OSError):
            pass  # the reader is not keeping up (or went away): the pty's buffer is full


# ---------------------------------------------------------------------------------------------- broker


class DroppingBroker(_Peer):
    """A TCP front for a real broker that breaks the first ``drops`` connections part way through a PUBLISH.

    Each connection is piped byte for byte to the real broker at ``upstream_port``. For the first ``drops``
    connections, once the client has sent CONNECT (and got its CONNACK) and then at least ``after_bytes``
    more bytes of which part is a PUBLISH, both sides are closed in the middle of that PUBLISH: the broker
    sees a truncated packet and the client a dead socket. Later connections are piped whole.
    """

    def __init__(self, upstream_port: int, drops: int, after_bytes: int = 2000) -> None:
        self.upstream_port = upstream_port
        self.drops_left = drops
        self.after_bytes = after_bytes
        self.connections = 0
        self.dropped = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._thread = threading.Thread(target=self._serve, name="dropping-broker", daemon=True)

    def _close(self) -> None:
        self._server.close()
        for thread in self._threads:
            thread.join(5)

    def _serve(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._server], [], [], 0.1)
            if not ready:
                continue
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                drop = self.drops_left > 0
                if drop:
                    self.drops_left -= 1
            thread = threading.Thread(target=self._pipe, args=(client, drop), daemon=True)
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            thread.start()

    def _pipe(self, client: socket.socket, drop: bool) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
        except OSError:
            client.close()
            return
        sent_after_connect = 0
        connected = False  # the client's CONNECT has gone through
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([client, upstream], [], [], 0.1)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is upstream:
                        client.sendall(data)
                        continue
                    if drop and connected:
                        publish = _publish_offset(data)
                        if publish is not None and sent_after_connect + len(data) >= self.after_bytes:
                            # forward the start of the PUBLISH only, then cut both ways
                            upstream.sendall(data[: publish + 3])
                            with self._lock:
                                self.dropped += 1
                            return
                        sent_after_connect += len(data)
                    connected = True  # the first read holds the CONNECT
                    upstream.sendall(data)
        except OSError:
            return
        finally:
            for sock in (client, upstream):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()


def _publish_offset(data: bytes) -> int | None:
    """Return where the first PUBLISH packet starts in ``data`` (walking MQTT fixed headers), or None."""
    at = 0
    while at < len(data):
        kind = data[at] >> 4
        if kind == 3:
            return at
        length, multiplier, i = 0, 1, at + 1
        while i < len(data):  # the remaining length: 1 to 4 bytes, 7 bits each
            byte = data[i]
            length += (byte & 0x7F) * multiplier
            multiplier *= 128
            i += 1
            if not byte & 0x80:
                break
        else:
            return None
        at = i + length
    return None


# ---------------------------------------------------------------------------------------------- TLS


def make_client_cert(ca: Any, ca_key: Any, common_name: str) -> tuple[bytes, bytes]:
    """Return (certificate PEM, key PEM) of a TLS client certificate for ``common_name`` signed by ``ca``."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem
