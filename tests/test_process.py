"""``zonewatch.process.ServiceNotifier``: what reaches the service manager's notification socket, and when.

The socket is a real unix datagram socket, as systemd's is; the watchdog's pacing is driven by the ``now``
each call passes, so nothing here sleeps."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from zonewatch.process import ServiceNotifier


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """A notification socket as systemd binds it: (its path, the bound socket to read from)."""
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)  # a datagram already sent is there at once; this only bounds a failing test
    yield path, sock
    sock.close()


def received(sock: socket.socket) -> list[str]:
    """Every datagram waiting on ``sock``, decoded, without blocking."""
    got = []
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        while True:
            got.append(sock.recv(4096).decode())
    except BlockingIOError:
        return got
    finally:
        sock.settimeout(timeout)


def test_ready_watchdog_pings_and_stopping_arrive_as_systemd_reads_them(manager: tuple[str, socket.socket]) -> None:
    path, sock = manager
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "4242"}
    notifier = ServiceNotifier.from_environment(env, pid=4242)
    assert notifier.enabled and notifier.watchdog_s == 10.0
    notifier.ready("polling 3 sources")
    assert sock.recv(4096).decode() == "READY=1\nSTATUS=polling 3 sources"
    # Half the interval between pings, whatever the loop's own pace: a loop turning every 0.1 s pings every 5 s.
    sent = [now for now in (100.0, 100.1, 103.0, 104.9, 105.0, 109.9, 110.0, 130.0) if notifier.watchdog(now)]
    assert sent == [100.0, 105.0, 110.0, 130.0]
    assert received(sock) == ["WATCHDOG=1"] * 4
    notifier.stopping()
    assert received(sock) == ["STOPPING=1"]


def test_an_abstract_socket_name_is_reached(tmp_path: Path) -> None:
    name = f"zw-test-{os.getpid()}-{tmp_path.name}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        notifier = ServiceNotifier.from_environment({"NOTIFY_SOCKET": "@" + name})
        notifier.ready()
        notifier.stopping()
        assert received(sock) == ["READY=1", "STOPPING=1"]


def test_a_child_that_inherited_the_watchdog_variables_does_not_ping(manager: tuple[str, socket.socket]) -> None:
    path, sock = manager
    child = ServiceNotifier.from_environment({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000",
                                              "WATCHDOG_PID": "4242"}, pid=4243)
    assert child.watchdog_s is None and not child.watchdog(100.0)
    assert received(sock) == []


def test_without_a_service_manager_every_call_does_nothing() -> None:
    notifier = ServiceNotifier.from_environment({"WATCHDOG_USEC": "10000000"})
    assert not notifier.enabled
    notifier.ready("x")
    assert not notifier.watchdog(1.0)
    notifier.stopping()


def test_a_bad_watchdog_interval_is_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    notifier = ServiceNotifier.from_environment({"NOTIFY_SOCKET": "/nonexistent/notify", "WATCHDOG_USEC": "soon"})
    assert notifier.watchdog_s is None
    assert "WATCHDOG_USEC='soon' is not a number of microseconds" in caplog.text


def test_a_manager_that_went_away_is_logged_once_and_never_raises(manager: tuple[str, socket.socket],
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    path, sock = manager
    notifier = ServiceNotifier(path, watchdog_s=1.0)
    notifier.ready()
    assert received(sock) == ["READY=1"]
    sock.close()
    os.unlink(path)
    for now in (10.0, 20.0, 30.0):
        assert notifier.watchdog(now)       # tried, and failed quietly
    notifier.stopping()
    warnings = [r for r in caplog.records if "cannot notify the service manager" in r.getMessage()]
    assert len(warnings) == 1, caplog.text
