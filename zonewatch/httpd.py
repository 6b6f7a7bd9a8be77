"""The HTTP server both programs use for ``/metrics``: bounded in connections, in time and in size.

A thread per connection and no timeout (what ``prometheus_client.start_http_server`` runs) let anyone who can
reach the port hold a thread and a file descriptor for as long as they like: about 1,000 half-open connections
used up the collector's descriptors, and its storage writes and webhook deliveries failed with "Too many open
files". This server bounds what callers can hold, whatever they do:

- at most ``max_connections`` connections at a time; one more is closed as soon as it is accepted (``refused``);
- a request's head (request line and headers) must arrive whole within ``read_timeout`` seconds of the
  connection being taken up, and within ``max_head`` bytes; otherwise the connection is closed (``timeout``)
  or answered 431 and closed (``too_large``);
- sending the answer may take at most ``write_timeout`` seconds a write, or the connection is closed
  (``timeout``);
- a request's body is read only up to ``max_body`` bytes (0, the default: none; ``/metrics`` takes none), and
  it too must arrive within ``read_timeout`` of the connection being taken up; a longer one is answered 413
  (``too_large``);
- one request per connection (the answer is HTTP/1.0).

So it holds at most ``max_connections`` + 1 descriptors (the listening socket) and as many threads, each for at
most ``read_timeout`` plus the time to answer. Every connection closed unanswered is reported to
``on_drop(reason)`` with one of ``DROP_REASONS``; each program counts them in its own registry as
``DROPPED_METRIC`` (``zonewatch_http_dropped_connections_total{reason}``). The first refusal after a quiet
spell is logged, and so is the end of the spell, never each connection.

The application is any WSGI callable: both programs pass ``prometheus_client.make_wsgi_app(registry)``, which
keeps the exposition's content negotiation (text or OpenMetrics) and gzip. Standard library only; this
module imports neither ``agent`` nor ``collector``.

``start()`` binds and serves from a thread of its own; ``stop()`` ends the accept loop, closes the listening
socket, shuts down the connections in progress (so their threads end at once) and joins every thread.
"""

from __future__ import annotations

import io
import logging
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import IO, Any, Protocol, cast
from wsgiref.handlers import BaseHandler
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

__all__ = [
    "DROP_REASONS",
    "DROPPED_HELP",
    "DROPPED_METRIC",
    "BoundedHttpServer",
    "HeadTimeout",
    "HeadTooLarge",
    "HttpLimits",
    "read_head",
]

log = logging.getLogger(__name__)

DROP_REASONS = ("refused", "timeout", "too_large")
DROPPED_METRIC = "zonewatch_http_dropped_connections"
DROPPED_HELP = ("HTTP connections closed unanswered, by reason: refused (over the connection cap), timeout "
                "(request not received or answer not sent in time), too_large (request head over its limit)")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Spawn = Callable[[Callable[[], object], str], threading.Thread]


@dataclass(frozen=True)
class HttpLimits:
    """What one server allows: connections at once, seconds to receive a request's head and to send each write
    of the answer, and the bytes of a request's head."""

    max_connections: int = 16
    read_timeout: float = 5.0
    write_timeout: float = 10.0
    max_head: int = 16 * 1024
    max_body: int = 0

    def __post_init__(self) -> None:
        for name in ("max_connections", "read_timeout", "write_timeout", "max_head"):
            if not getattr(self, name) > 0:
                raise ValueError(f"HttpLimits.{name} must be positive, got {getattr(self, name)!r}")
        if self.max_body < 0:
            raise ValueError(f"HttpLimits.max_body must not be negative, got {self.max_body!r}")


class HeadTimeout(Exception):
    """The request's head did not arrive whole in time."""


class HeadTooLarge(Exception):
    """The request's head is longer than allowed."""


class Receiver(Protocol):
    """The part of a socket that ``read_head`` uses."""

    def settimeout(self, value: float | None, /) -> None:
        """Bound the next blocking call to ``value`` seconds."""

    def recv(self, bufsize: int, /) -> bytes:
        """Return up to ``bufsize`` bytes; b"" once the peer has closed; raise TimeoutError past the timeout."""
        ...


def _head_end(data: bytes) -> int:
    """Return the length of the head in ``data`` (through the blank line after the headers), or -1."""
    ends = [i + len(mark) for mark in (b"\r\n\r\n", b"\n\n") if (i := data.find(mark)) >= 0]
    return min(ends) if ends else -1


def read_head(conn: Receiver, deadline: float, clock: Callable[[], float], max_head: int) -> bytes | None:
    """Return a request's head and whatever came with it in the same reads, or None if the peer closed first.

    Raise HeadTimeout once ``clock()`` reaches ``deadline`` (the whole head's deadline, not each read's), and
    HeadTooLarge once ``max_head`` bytes have come without the end of the head."""
    data = b""
    while True:
        end = _head_end(data)
        if end > max_head or (end < 0 and len(data) >= max_head):
            raise HeadTooLarge(f"request head over {max_head} bytes")
        if end >= 0:
            return data
        remaining = deadline - clock()
        if remaining <= 0:
            raise HeadTimeout(f"request head incomplete after {len(data)} bytes")
        conn.settimeout(remaining)
        try:
            chunk = conn.recv(4096)
        except TimeoutError:
            raise HeadTimeout(f"request head incomplete after {len(data)} bytes") from None
        except OSError:  # reset by the peer, or shut down by stop()
            return None
        if not chunk:
            return None
        data += chunk


class BoundedHttpServer:
    """Serve one WSGI application on ``listen`` ("host:port") within ``limits``; ``start()``, then ``stop()``.

    Both are called from one thread (the program's), never from a request. ``on_drop`` is called from the
    server's threads, once for each connection closed unanswered; it must be quick and must not raise."""

    def __init__(self, listen: str, app: WsgiApp, limits: HttpLimits | None = None,
                 on_drop: Callable[[str], None] = lambda reason: None) -> None:
        host, sep, port = listen.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError(f"expected host:port like '127.0.0.1:9109', got {listen!r}")
        self.host, self.port = host.strip("[]"), int(port)
        self.app = app
        self.limits = limits or HttpLimits()
        self.on_drop = on_drop
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self, spawn: Spawn | None = None) -> None:
        """Bind and serve from a thread of its own (made by ``spawn(target, name)`` if given); raise OSError if
        the address cannot be bound. ``port`` is then the bound port (useful with port 0)."""
        family, _, _, _, address = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM,
                                                      flags=socket.AI_PASSIVE)[0]
        server = _Server((str(address[0]), int(address[1])), family, self.limits, self.on_drop)
        server.set_app(self.app)
        self.port = int(server.server_address[1])
        self._server = server

        def serve() -> None:
            server.serve_forever(poll_interval=0.25)

        if spawn is None:
            self._thread = threading.Thread(target=serve, name="zw-http", daemon=True)
        else:
            self._thread = spawn(serve, "zw-http")
        self._thread.start()
        log.info("serving /metrics on %s:%d (at most %d connections, %gs to send a request)", self.host, self.port,
                 self.limits.max_connections, self.limits.read_timeout)

    def stop(self) -> None:
        """Stop accepting, close every connection and the listening socket, and join every thread."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        if self._thread is not None:
            self._thread.join()
        server.server_close()

    def connections(self) -> int:
        """Return how many connections are being served now."""
        return self._server.connections() if self._server is not None else 0


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    """A WSGI server with a thread per connection, at most ``limits.max_connections`` of them."""

    daemon_threads = False  # server_close() joins them; each lives a bounded time
    block_on_close = True
    request_queue_size = 128  # the kernel's backlog: a burst of connections is accepted (and refused) quickly

    def __init__(self, address: tuple[str, int], family: socket.AddressFamily, limits: HttpLimits,
                 on_drop: Callable[[str], None]) -> None:
        self.address_family = family
        self.limits = limits
        self._on_drop = on_drop
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._closing = False
        self._refused = 0  # since the cap was last reached
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup of our own address (it can stall a probe's start-up)."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)
        self.setup_environ()

    def drop(self, reason: str) -> None:
        """Report one connection closed unanswered."""
        self._on_drop(reason)

    def connections(self) -> int:
        """Return how many connections are open now."""
        with self._lock:
            return len(self._open)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve ``request`` in a thread of its own, or close it at once when the cap is reached."""
        with self._lock:
            admit = not self._closing and len(self._open) < self.limits.max_connections
            if admit:
                self._open.add(request)
            refused, self._refused = self._refused, (0 if admit else self._refused + 1)
        if not admit:
            if refused == 0:
                log.warning("HTTP: %d connections open, the most allowed: closing new ones at once until one ends",
                            self.limits.max_connections)
            self.drop("refused")
            self.shutdown_request(request)
            return
        if refused:
            log.info("HTTP: serving again after refusing %d connections", refused)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        """Close ``request`` (under the lock's protection from ``close_connections``)."""
        with self._lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Refuse new connections and wake every thread still reading or writing one (it then ends)."""
        with self._lock:
            self._closing = True
            for sock in self._open:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def server_close(self) -> None:
        """Close the listening socket and every connection, and join their threads."""
        self.close_connections()
        super().server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log what a request's thread raised (socketserver would print it to stderr)."""
        log.error("HTTP: request from %s failed", client_address, exc_info=True)


class _Handler(WSGIRequestHandler):
    """One connection: read the head within the deadline, then answer it through the WSGI application."""

    server: _Server

    def setup(self) -> None:
        """Take up the connection: every send is bounded by ``write_timeout``; the head is read by ``handle``."""
        super().setup()
        self.connection.settimeout(self.server.limits.write_timeout)

    def handle(self) -> None:
        """Serve one request, or close the connection when it breaks a limit."""
        limits = self.server.limits
        deadline = time.monotonic() + limits.read_timeout
        try:
            head = read_head(self.connection, deadline, time.monotonic, limits.max_head)
        except HeadTimeout:
            self.server.drop("timeout")
            return
        except HeadTooLarge:
            self.server.drop("too_large")
            self._refuse_head()
            return
        if head is None:
            return
        self.connection.settimeout(limits.write_timeout)
        self.rfile.close()  # the socket's file object: left open, it would keep the descriptor after close()
        self.rfile = io.BytesIO(head)
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if not self.parse_request():  # it has answered the error (400, 414, ...)
                return
            if limits.max_body and not self._read_body(deadline, limits.max_body):
                return
            app = self.server.get_app()
            assert app is not None  # set by BoundedHttpServer.start before serving
            answer = _Answer(self.rfile, cast(IO[bytes], self.wfile), sys.stderr, self.get_environ(),
                             multithread=True)
            answer.request_handler = self
            answer.run(app)
            if answer.timed_out:
                self.server.drop("timeout")
        except TimeoutError:
            self.server.drop("timeout")
        except OSError:  # the peer went away
            pass

    def _read_body(self, deadline: float, max_body: int) -> bool:
        """Read the body the head announces (Content-Length) into ``rfile`` by ``deadline``; return False, having
        answered or dropped the connection, when it is too long or late."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > max_body:
            self.server.drop("too_large")
            self.send_error(413 if length > max_body else 400)
            return False
        body = self.rfile.read()   # what came with the head
        while len(body) < length:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.server.drop("timeout")
                return False
            self.connection.settimeout(remaining)
            try:
                chunk = self.connection.recv(min(65536, length - len(body)))
            except TimeoutError:
                self.server.drop("timeout")
                return False
            if not chunk:
                return False
            body += chunk
        self.connection.settimeout(self.server.limits.write_timeout)
        self.rfile = io.BytesIO(body[:length])
        return True

    def _refuse_head(self) -> None:
        """Answer 431 to a head that is too large, if the peer takes it in time."""
        try:
            self.connection.settimeout(self.server.limits.write_timeout)
            self.connection.sendall(b"HTTP/1.0 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n"
                                    b"Connection: close\r\n\r\n")
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        """Log at debug level, never on stderr (a caller could fill the log)."""
        log.debug("HTTP %s: " + format, self.address_string(), *args)


class _Answer(ServerHandler):
    """wsgiref's handler, quiet: a peer too slow to take the answer ends it without a traceback."""

    timed_out = False
    request_handler: WSGIRequestHandler  # what wsgiref's ServerHandler logs the request through
    headers_sent: bool
    environ: dict[str, Any]

    def handle_error(self) -> None:
        """Close on a socket error (nothing more can be sent); otherwise log the application's failure and
        answer 500 if nothing has been sent yet."""
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            self.timed_out = isinstance(error, TimeoutError)
            BaseHandler.close(self)
            return
        log.error("HTTP: the application failed", exc_info=True)
        if not self.headers_sent:
            self.result = self.error_output(self.environ, self.start_response)
            self.finish_response()

    def log_exception(self, exc_info: Any) -> None:
        """Say nothing: ``handle_error`` has logged it."""
