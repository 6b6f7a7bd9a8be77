"""The bounded HTTP server reading a request's body (what the MQTT relay takes from Alertmanager), over real
loopback sockets: a body that comes in pieces is read whole, one over ``max_body`` is answered 413, one that does
not arrive within the deadline is dropped, and a server with no ``max_body`` (``/metrics``) reads none."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from zonewatch.httpd import BoundedHttpServer, HttpLimits

pytestmark = pytest.mark.integration


def echo(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


@pytest.fixture
def serve() -> Iterator[Callable[[HttpLimits], tuple[int, list[str]]]]:
    servers: list[BoundedHttpServer] = []

    def start(limits: HttpLimits) -> tuple[int, list[str]]:
        dropped: list[str] = []
        server = BoundedHttpServer("127.0.0.1:0", echo, limits, on_drop=dropped.append)
        server.start()
        servers.append(server)
        return server.port, dropped

    yield start
    for server in servers:
        server.stop()


def post(port: int, head: bytes, *pieces: bytes, gap: float = 0.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(head)
        for piece in pieces:
            time.sleep(gap)
            s.sendall(piece)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    return answer


def head(length: int) -> bytes:
    return f"POST /relay HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode()


def test_a_body_in_pieces_is_read_whole_and_one_too_long_is_refused(serve: Any) -> None:
    port, dropped = serve(HttpLimits(max_body=1000, read_timeout=2.0))
    answer = post(port, head(600) + b"a" * 100, b"b" * 300, b"c" * 200, gap=0.05)
    assert answer.startswith(b"HTTP/1.0 200") and answer.endswith(b"a" * 100 + b"b" * 300 + b"c" * 200)
    assert post(port, head(1001) + b"x" * 1001).startswith(b"HTTP/1.0 413")
    assert dropped == ["too_large"]


def test_a_body_that_does_not_come_in_time_is_dropped(serve: Any) -> None:
    port, dropped = serve(HttpLimits(max_body=1000, read_timeout=0.5))
    started = time.monotonic()
    assert post(port, head(100) + b"x" * 10) == b""
    assert time.monotonic() - started < 3 and dropped == ["timeout"]


def test_without_max_body_no_body_is_read(serve: Any) -> None:
    port, _ = serve(HttpLimits())
    answer = post(port, head(5) + b"hello")
    assert answer.startswith(b"HTTP/1.0 200") and answer.endswith(b"\r\n\r\nhello")   # only what came with the head
