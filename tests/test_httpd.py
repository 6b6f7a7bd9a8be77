"""The bounded /metrics server's rules, with fakes: a request head's deadline covers the whole head (a caller
sending a byte now and then is cut off all the same), its size is capped, the limits are checked at
construction, and the open-files limit is raised to the hard limit. Real sockets: tests/integration/
test_http_bounds.py."""

from __future__ import annotations

import resource

import pytest

from zonewatch.httpd import BoundedHttpServer, HeadTimeout, HeadTooLarge, HttpLimits, read_head
from zonewatch.process import raise_open_files_limit


class FakeClock:
    """Seconds that move only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeConnection:
    """A peer that sends ``chunks``, each ``gap`` seconds after the previous one, then stays silent (or closes).

    ``recv`` advances the clock as a blocking read would: to the next chunk, or by the whole timeout."""

    def __init__(self, clock: FakeClock, chunks: list[bytes], gap: float = 0.0, closes: bool = False) -> None:
        self.clock, self.chunks, self.gap, self.closes = clock, list(chunks), gap, closes
        self.timeouts: list[float] = []

    def settimeout(self, value: float | None) -> None:
        assert value is not None and value > 0
        self.timeouts.append(value)

    def recv(self, bufsize: int) -> bytes:
        timeout = self.timeouts[-1]
        if self.chunks and self.gap < timeout:
            self.clock.advance(self.gap)
            chunk = self.chunks.pop(0)
            assert len(chunk) <= bufsize
            return chunk
        if not self.chunks and self.closes:
            return b""
        self.clock.advance(timeout)
        raise TimeoutError("timed out")


HEAD = b"GET /metrics HTTP/1.1\r\nHost: probe\r\nAccept-Encoding: gzip\r\n\r\n"


def test_a_head_in_pieces_is_read_through_its_blank_line() -> None:
    clock = FakeClock()
    conn = FakeConnection(clock, [HEAD[:10], HEAD[10:30], HEAD[30:]], gap=0.5)
    assert read_head(conn, clock() + 5, clock, 16384) == HEAD
    assert conn.timeouts == [5, 4.5, 4]   # each read waits only for what is left of the head's deadline


def test_bytes_after_the_head_come_with_it_and_bare_newlines_end_a_head_too() -> None:
    clock = FakeClock()
    assert read_head(FakeConnection(clock, [HEAD + b"body"]), clock() + 5, clock, 16384) == HEAD + b"body"
    assert read_head(FakeConnection(clock, [b"GET / HTTP/1.0\n\n"]), clock() + 5, clock, 16384) == b"GET / HTTP/1.0\n\n"


def test_a_half_open_connection_times_out_at_the_deadline() -> None:
    clock = FakeClock()
    start = clock()
    conn = FakeConnection(clock, [b"GET /metr"])
    with pytest.raises(HeadTimeout, match="after 9 bytes"):
        read_head(conn, start + 5, clock, 16384)
    assert clock() - start == 5


def test_a_byte_now_and_then_does_not_stretch_the_deadline() -> None:
    # A slow sender whose every read would succeed within a per-read timeout: the deadline is for the head.
    clock = FakeClock()
    start = clock()
    conn = FakeConnection(clock, [bytes([c]) for c in HEAD], gap=1.5)
    with pytest.raises(HeadTimeout, match="after 3 bytes"):
        read_head(conn, start + 5, clock, 16384)
    assert clock() - start == 5
    assert conn.timeouts == [5, 3.5, 2, 0.5]


def test_a_peer_that_closes_first_gives_none() -> None:
    clock = FakeClock()
    assert read_head(FakeConnection(clock, [b"GET / HT"], closes=True), clock() + 5, clock, 16384) is None


def test_a_head_over_its_size_is_refused_with_or_without_its_end() -> None:
    clock = FakeClock()
    endless = FakeConnection(clock, [b"X" * 4096] * 10)
    with pytest.raises(HeadTooLarge):
        read_head(endless, clock() + 5, clock, 16384)
    assert len(endless.chunks) == 6    # stopped reading at the limit
    long = b"GET / HTTP/1.1\r\nX: " + b"a" * 3000 + b"\r\n\r\n"
    with pytest.raises(HeadTooLarge):
        read_head(FakeConnection(clock, [long]), clock() + 5, clock, 2048)
    assert read_head(FakeConnection(clock, [long]), clock() + 5, clock, len(long)) == long


@pytest.mark.parametrize("field", ["max_connections", "read_timeout", "write_timeout", "max_head"])
def test_limits_must_be_positive(field: str) -> None:
    with pytest.raises(ValueError, match=f"HttpLimits.{field} must be positive"):
        HttpLimits(**{field: 0})


def test_the_defaults_bound_a_server_to_a_few_descriptors_and_seconds() -> None:
    limits = HttpLimits()
    assert (limits.max_connections, limits.read_timeout, limits.write_timeout) == (16, 5.0, 10.0)


@pytest.mark.parametrize("listen", ["9109", ":9109", "127.0.0.1", "127.0.0.1:port", "127.0.0.1:70000"])
def test_the_address_is_checked_at_construction_without_binding(listen: str) -> None:
    with pytest.raises(ValueError, match="expected host:port"):
        BoundedHttpServer(listen, lambda environ, start: [b""])


def test_an_ipv6_address_may_be_bracketed() -> None:
    server = BoundedHttpServer("[::1]:9109", lambda environ, start: [b""])
    assert (server.host, server.port, server.connections()) == ("::1", 9109, 0)
    server.stop()   # never started: nothing to do


def test_the_soft_open_files_limit_is_raised_to_the_hard_one(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[tuple[int, tuple[int, int]]] = []
    caplog.set_level("INFO", logger="zonewatch.process")
    got = raise_open_files_limit(lambda which: (1024, 65536), lambda which, limits: calls.append((which, limits)))
    assert got == (65536, 65536)
    assert calls == [(resource.RLIMIT_NOFILE, (65536, 65536))]
    assert "open files: at most 65536 (raised from 1024 to the hard limit)" in caplog.text


def test_an_equal_or_ungrantable_hard_limit_leaves_the_soft_one(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="zonewatch.process")

    def refuse(which: int, limits: tuple[int, int]) -> None:
        raise ValueError("not allowed to raise maximum limit")

    assert raise_open_files_limit(lambda which: (512, 512), refuse) == (512, 512)
    assert "open files: at most 512 (soft limit = hard limit)" in caplog.text
    inf = resource.RLIM_INFINITY
    assert raise_open_files_limit(lambda which: (1024, inf), refuse) == (1024, inf)
    assert "could not raise it to the hard limit unlimited: not allowed" in caplog.text
