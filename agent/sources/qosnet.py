"""Active tests through one network interface: every socket bound to it, names resolved by its bearer's DNS.

``InterfaceBearer(interface)`` is the real backend of ``agent.sources.qos``. Each method runs one test and
blocks until it is over (the source calls it from a worker thread); none of them retries. The binding:

- Every socket is bound to the modem's interface with ``SO_BINDTODEVICE`` before it sends anything (the
  DNS and UDP sockets, the TCP sockets of the connect test and of HTTP, the raw ICMP socket). The kernel
  then sends through that device only, whatever the routing table says: traffic for the zone's test server
  never takes the park Ethernet or another carrier's modem, even when those hold the default route, and a
  modem whose link is gone fails its tests instead of passing them through another path. It needs
  ``CAP_NET_RAW`` (the agent's unit has it). The alternative, a source address plus policy routing (``ip rule
  from <modem address> table <n>``), needs a rule and a table per modem kept in step with the addresses the
  carrier hands out anew on every attach, outside the agent; a missing or stale rule would leak silently.
  Binding to the device cannot leak.
- Names are resolved here, by dnspython, with queries to the bearer's own DNS servers sent through the bound
  interface, never by the system resolver (which would ask the park's DNS through the default route); the HTTP
  client connects to the address itself. Redirects are not followed (a new host would need a new lookup) and
  no proxy is used.
- IPv4 only: A records, IPv4 sockets.

What each test returns (``Lookup``, ``Access``, ``Transfer``, or round-trip times) is a measurement, also when
the network failed (an error text says why). ``SourceError`` is raised only when a test cannot run at all:
the interface does not exist, the agent lacks ``CAP_NET_RAW``, or a library of the agent extra is missing.

Libraries: httpcore for HTTP/1.1 (with a network backend of our own that connects the bound socket to the
resolved address; TLS verifies the URL's host name; timings from its trace hooks); dnspython for DNS; icmplib
for ICMP echo (its public ``sock`` is bound to the device after it is made). Each is imported on first use.

One module: it is one class, ``InterfaceBearer``, whose tests all take their sockets from ``_socket`` (bound to
the interface) and turn a failure to bind into the same ``SourceError`` (``_cannot``); the HTTP helpers below it
(``_Exchange``, ``_BoundBackend``) exist only to put httpcore on such a socket.
"""

from __future__ import annotations

import errno
import os
import random
import select
import socket
import ssl
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, cast
from urllib.parse import urlsplit

from agent._compat.httpcore import stream

if TYPE_CHECKING:
    import httpcore as httpcore_types
from agent.sources import SourceError

__all__ = ["Lookup", "Access", "Transfer", "InterfaceBearer", "url_host_port"]

_UDP_MAGIC: Final = 0x5A57514F   # "ZWQO": marks the agent's UDP echo probes
_UDP_PROBE: Final = struct.Struct("!IIQ")
_CHUNK: Final = bytes(random.Random(0x5A57).randbytes(65536))   # upload payload (not all zeros: no link compresses it)
_SYS_NET: Final = "/sys/class/net"


@dataclass(frozen=True, slots=True)
class Lookup:
    """One DNS resolution: the A records, or why there are none."""

    addresses: tuple[str, ...]
    ms: float | None             # from the first query to the answer that decided (None: no answer)
    error: str | None = None     # "timeout", "NXDOMAIN", "SERVFAIL", "no A record", an OS error


@dataclass(frozen=True, slots=True)
class Access:
    """One service access: a TCP connect, or an HTTP request up to its response."""

    ok: bool
    ms: float | None             # tcp: connect time; http: from the start of the connect to the first response byte
    connect_ms: float | None = None
    tls_ms: float | None = None
    status: int | None = None
    bytes: int = 0
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Transfer:
    """One HTTP download or upload of a set size.

    ``started``: the server was reached and the transfer began (download: a 2xx response began; upload: the
    body began to go out). ``completed``: every byte moved and (upload) the server answered 2xx. A transfer
    that started and did not complete was dropped.
    """

    started: bool
    completed: bool
    bytes: int                   # payload bytes moved (also of a dropped transfer)
    seconds: float | None        # from the request to the last byte, when completed
    first_ms: float | None       # access time: connect start to the first response byte (download) or to the
                                 # request going out (upload)
    error: str | None = None


def url_host_port(url: str) -> tuple[str, int]:
    """Return the host and port of an http(s) URL (80 and 443 when not given)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return host, parts.port or (443 if parts.scheme == "https" else 80)


class InterfaceBearer:
    """Tests bound to one network interface (see the module docstring); no I/O when made."""

    def __init__(self, interface: str, ca_file: str | None = None) -> None:
        self.interface = interface
        self._device = interface.encode()
        self._ca_file = ca_file
        self._ssl: ssl.SSLContext | None = None

    # ------------------------------------------------------------------------------------------ interface

    def present(self) -> bool:
        """Return True if the interface exists now."""
        return os.path.isdir(os.path.join(_SYS_NET, self.interface))

    def counters(self) -> int | None:
        """Return the bytes the interface received and sent so far (None if they cannot be read)."""
        total = 0
        for name in ("rx_bytes", "tx_bytes"):
            try:
                with open(os.path.join(_SYS_NET, self.interface, "statistics", name)) as f:
                    total += int(f.read().strip())
            except (OSError, ValueError):
                return None
        return total

    def _socket(self, kind: int, proto: int = 0) -> socket.socket:
        """Return an IPv4 socket bound to the interface; SourceError when that is impossible."""
        sock = socket.socket(socket.AF_INET, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self._device)
        except OSError as exc:
            sock.close()
            raise self._cannot(exc) from None
        return sock

    def _cannot(self, exc: OSError) -> SourceError:
        if exc.errno in (errno.EPERM, errno.EACCES):
            return SourceError(f"binding a socket to {self.interface} needs CAP_NET_RAW (or root): {exc}")
        if exc.errno == errno.ENODEV:
            return SourceError(f"interface {self.interface} does not exist (modem unplugged or renamed?)")
        return SourceError(f"cannot bind a socket to {self.interface}: {exc}")

    # ------------------------------------------------------------------------------------------ DNS

    def resolve(self, name: str, servers: Sequence[str], timeout: float) -> Lookup:
        """Resolve ``name`` (A) through ``servers`` in turn: the next one after a timeout, SERVFAIL or REFUSED;
        an NXDOMAIN or an answer without A records decides at once."""
        try:
            import dns.exception
            import dns.message
            import dns.query
            import dns.rcode
            import dns.rdatatype
        except ImportError as exc:
            raise SourceError(f"qos needs dnspython ({exc}): install the agent extra, zonewatch[agent]") from None
        query = dns.message.make_query(name, dns.rdatatype.A)
        started = time.perf_counter()
        error = "no DNS server"
        for server in servers:
            sock = self._socket(socket.SOCK_DGRAM)
            sock.setblocking(False)
            try:
                answer = dns.query.udp(query, server, timeout=timeout, sock=sock)
            except dns.exception.Timeout:
                error = f"timeout ({server})"
                continue
            except (OSError, dns.exception.DNSException) as exc:
                error = f"{server}: {exc}"
                continue
            finally:
                sock.close()
            ms = (time.perf_counter() - started) * 1000
            rcode = answer.rcode()
            if rcode in (dns.rcode.SERVFAIL, dns.rcode.REFUSED):
                error = f"{dns.rcode.to_text(rcode)} ({server})"
                continue
            if rcode != dns.rcode.NOERROR:
                return Lookup((), ms, dns.rcode.to_text(rcode))
            addresses = tuple(str(rr) for rrset in answer.answer if rrset.rdtype == dns.rdatatype.A for rr in rrset)
            return Lookup(addresses, ms, None if addresses else "no A record")
        return Lookup((), None, error)

    # ------------------------------------------------------------------------------------------ TCP

    def tcp(self, address: str, port: int, timeout: float) -> Access:
        """Open a TCP connection to ``address:port`` and close it; ``ms`` is the connect time."""
        sock = self._socket(socket.SOCK_STREAM)
        sock.settimeout(timeout)
        started = time.perf_counter()
        try:
            sock.connect((address, port))
        except TimeoutError:
            return Access(False, None, error="timeout")
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                raise self._cannot(exc) from None
            return Access(False, None, error=exc.strerror or str(exc))
        finally:
            sock.close()
        ms = (time.perf_counter() - started) * 1000
        return Access(True, ms, connect_ms=ms)

    # ------------------------------------------------------------------------------------------ echo

    def ping(self, address: str, count: int, spacing: float, timeout: float) -> list[float | None]:
        """Send ``count`` ICMP echo requests ``spacing`` seconds apart; return each one's round trip in ms (None:
        no reply within ``timeout`` of it)."""
        try:
            from icmplib import ICMPLibError, ICMPRequest, ICMPv4Socket, SocketPermissionError, TimeoutExceeded
        except ImportError as exc:
            raise SourceError(f"qos needs icmplib ({exc}): install the agent extra, zonewatch[agent]") from None
        try:
            icmp = ICMPv4Socket(privileged=True)
        except SocketPermissionError as exc:
            raise SourceError(f"ICMP needs CAP_NET_RAW (or root): {exc}") from None
        try:
            try:
                icmp.sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self._device)
            except OSError as exc:
                raise self._cannot(exc) from None
            ident = random.randrange(1, 0x10000)
            sent: dict[int, float] = {}
            rtts: list[float | None] = [None] * count

            def send(seq: int) -> None:
                request = ICMPRequest(address, ident, seq, payload_size=56)
                try:
                    icmp.send(request)
                except ICMPLibError:
                    return   # no route through the interface now: a loss
                sent[seq] = request.time

            def take(wait: float) -> bool:
                try:
                    reply = icmp.receive(None, wait)
                except TimeoutExceeded:
                    return False
                except ICMPLibError:
                    return False
                if reply.id == ident and reply.type == 0 and reply.source == address and reply.sequence in sent:
                    rtts[reply.sequence] = max(0.0, (reply.time - sent[reply.sequence]) * 1000)
                return True

            _paced(count, spacing, timeout, send, take, lambda: sum(r is not None for r in rtts) == len(sent))
            return rtts
        finally:
            icmp.close()

    def udp(self, address: str, port: int, count: int, spacing: float, timeout: float) -> list[float | None]:
        """Send ``count`` datagrams to a UDP echo service (RFC 862) ``spacing`` seconds apart; return each one's
        round trip in ms (None: not echoed within ``timeout`` of it)."""
        sock = self._socket(socket.SOCK_DGRAM)
        sock.setblocking(False)
        nonce = random.getrandbits(64)
        sent: dict[int, float] = {}
        rtts: list[float | None] = [None] * count

        def send(seq: int) -> None:
            try:
                sock.sendto(_UDP_PROBE.pack(_UDP_MAGIC, seq, nonce), (address, port))
            except OSError as exc:
                if exc.errno == errno.ENODEV:
                    raise self._cannot(exc) from None
                return
            sent[seq] = time.perf_counter()

        def take(wait: float) -> bool:
            if not select.select([sock], [], [], wait)[0]:
                return False
            try:
                data, peer = sock.recvfrom(2048)
            except OSError:
                return True   # an ICMP error queued on the socket: the datagram is lost
            now = time.perf_counter()
            if peer[0] == address and len(data) == _UDP_PROBE.size:
                magic, seq, echoed = _UDP_PROBE.unpack(data)
                if magic == _UDP_MAGIC and echoed == nonce and seq in sent and rtts[seq] is None:
                    rtts[seq] = (now - sent[seq]) * 1000
            return True

        try:
            _paced(count, spacing, timeout, send, take, lambda: sum(r is not None for r in rtts) == len(sent))
        finally:
            sock.close()
        return rtts

    # ------------------------------------------------------------------------------------------ HTTP

    def http(self, url: str, address: str, timeout: float, max_bytes: int) -> Access:
        """GET ``url`` from ``address`` and read at most ``max_bytes`` of the body; ok for a 2xx or 3xx answer."""
        x = self._exchange("GET", url, address, timeout, timeout, max_bytes)
        if x.error is not None and not x.stopped:
            return Access(False, None, x.connect_ms, x.tls_ms, x.status, x.received, x.error)
        ok = x.status is not None and 200 <= x.status < 400
        return Access(ok, x.first_ms, x.connect_ms, x.tls_ms, x.status, x.received, None if ok else f"HTTP {x.status}")

    def download(self, url: str, address: str, size: int, timeout: float, stall: float) -> Transfer:
        """GET ``url`` (a file of ``size`` bytes) from ``address``; anything but exactly ``size`` bytes of a 2xx
        answer within ``timeout`` is not completed (more is cut off: the budget would pay for it)."""
        x = self._exchange("GET", url, address, timeout, stall, size)
        if x.status is None or not 200 <= x.status < 300:
            return Transfer(False, False, x.received, None, None, x.error or f"HTTP {x.status}")
        if x.error is None and x.received == size:
            return Transfer(True, True, x.received, x.last - x.request, x.first_ms)
        why = "more bytes than expected" if x.stopped else x.error or f"{x.received} of {size} bytes"
        return Transfer(True, False, x.received, None, x.first_ms, why)

    def upload(self, url: str, address: str, size: int, timeout: float, stall: float) -> Transfer:
        """POST ``size`` bytes to ``url`` at ``address``; completed when all went and the answer is 2xx."""
        x = self._exchange("POST", url, address, timeout, stall, 1 << 20, size)
        if not x.sent:
            return Transfer(False, False, 0, None, None, x.error or f"HTTP {x.status}")
        request_ms = (x.request - x.start) * 1000
        if x.error is None and x.sent == size and x.status is not None and 200 <= x.status < 300:
            return Transfer(True, True, x.sent, x.answered - x.request, request_ms)
        why = x.error or (f"HTTP {x.status}" if x.sent == size else f"{x.sent} of {size} bytes")
        return Transfer(True, False, x.sent, None, request_ms, why)

    def _exchange(self, method: str, url: str, address: str, timeout: float, stall: float, limit: int,
                  upload: int | None = None) -> _Exchange:
        """Run one HTTP/1.1 request on a new connection to ``address``, bound to the interface, with httpcore;
        read at most ``limit`` bytes of the answer. Never raises for the network: the error is in the result."""
        try:
            import httpcore
        except ImportError as exc:
            raise SourceError(f"qos needs httpcore ({exc}): install the agent extra, zonewatch[agent]") from None
        x = _Exchange(time.perf_counter())
        marks: dict[str, float] = {}

        def trace(name: str, info: Any) -> None:
            marks.setdefault(name, time.perf_counter())

        def body() -> Iterator[bytes]:
            assert upload is not None
            while x.sent < upload:
                if time.perf_counter() - x.start > timeout:
                    raise TimeoutError("the upload took longer than its timeout")
                piece = _CHUNK[: min(len(_CHUNK), upload - x.sent)]
                x.sent += len(piece)
                yield piece

        headers = [(b"Cache-Control", b"no-cache")]
        if upload is not None:
            headers.append((b"Content-Length", str(upload).encode()))
        backend = _BoundBackend(self, address, x)
        waits = {"connect": min(timeout, stall), "read": stall, "write": stall, "pool": timeout}
        try:
            with httpcore.ConnectionPool(ssl_context=self._tls() if url.startswith("https:") else None,
                                         network_backend=cast("httpcore_types.NetworkBackend", backend),
                                         max_connections=1, retries=0) as pool:
                with pool.stream(method, url, headers=headers, content=body() if upload is not None else None,
                                 extensions={"timeout": waits, "trace": trace}) as response:
                    x.status = response.status
                    x.answered = time.perf_counter()
                    for chunk in response.iter_stream():
                        x.received += len(chunk)
                        if x.received > limit:
                            x.received, x.stopped, x.error = limit, True, "more bytes than expected"
                            break
                        if time.perf_counter() - x.start > timeout:
                            x.error = "the transfer took longer than its timeout"
                            break
                    x.last = time.perf_counter()
        except SourceError:
            raise
        except (httpcore.TimeoutException, TimeoutError) as exc:
            x.error = f"timeout ({exc})" if str(exc) else "timeout"
        except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol, OSError) as exc:
            x.error = str(exc) or type(exc).__name__
        x.request = marks.get("http11.send_request_headers.started", x.start)
        if "connection.start_tls.complete" in marks:
            x.tls_ms = (marks["connection.start_tls.complete"] - marks["connection.start_tls.started"]) * 1000
        if "http11.receive_response_headers.complete" in marks:
            x.first_ms = (marks["http11.receive_response_headers.complete"] - x.start) * 1000
        return x

    def _tls(self) -> ssl.SSLContext:
        """Return the TLS context for https tests (made once: loading the CA bundle costs time and memory)."""
        if self._ssl is None:
            self._ssl = ssl.create_default_context(cafile=self._ca_file)
        return self._ssl


@dataclass(slots=True)
class _Exchange:
    """What one HTTP exchange did; times are ``time.perf_counter`` readings."""

    start: float
    status: int | None = None
    received: int = 0
    sent: int = 0
    stopped: bool = False           # the answer went past its limit and was cut off
    error: str | None = None
    connect_ms: float | None = None
    tls_ms: float | None = None
    first_ms: float | None = None   # from the start of the connect to the answer's head
    request: float = 0.0            # when the request began to go out
    answered: float = 0.0           # when the answer's head came
    last: float = 0.0               # when the last byte of the answer came


class _BoundBackend:
    """httpcore's network backend for one exchange: connects to the resolved address with a socket bound to the
    interface before the connect (httpcore's own backend sets socket options only after connecting)."""

    def __init__(self, bearer: InterfaceBearer, address: str, exchange: _Exchange) -> None:
        self._bearer, self._address, self._exchange = bearer, address, exchange

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> Any:
        import httpcore

        sock = self._bearer._socket(socket.SOCK_STREAM)
        sock.settimeout(timeout)
        started = time.perf_counter()
        try:
            sock.connect((self._address, port))   # ``host`` stays the URL's: the Host header and TLS name
        except TimeoutError:
            sock.close()
            raise httpcore.ConnectTimeout(f"connect to {self._address}:{port}") from None
        except OSError as exc:
            sock.close()
            if exc.errno == errno.ENODEV:
                raise self._bearer._cannot(exc) from None
            raise httpcore.ConnectError(exc.strerror or str(exc)) from None
        self._exchange.connect_ms = (time.perf_counter() - started) * 1000
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return stream(sock)

    def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> Any:
        raise NotImplementedError("the QoS tests use TCP only")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def _paced(count: int, spacing: float, timeout: float, send: Callable[[int], None], take: Callable[[float], bool],
           done: Callable[[], bool]) -> None:
    """Call ``send(seq)`` for seq 0..count-1, ``spacing`` seconds apart, taking replies (``take(wait)``) in between
    and for up to ``timeout`` after the last send, or until every sent probe was answered."""
    start = time.perf_counter()
    for seq in range(count):
        send(seq)
        until = start + (seq + 1) * spacing if seq < count - 1 else time.perf_counter() + timeout
        while (left := until - time.perf_counter()) > 0:
            if seq == count - 1 and done():
                return
            take(left)
