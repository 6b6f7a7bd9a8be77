"""Process-wide settings that each program applies once, when it starts.

- ``raise_open_files_limit``: the soft limit on open files goes up to the hard limit. Systemd starts a service
  with a soft limit of 1,024 and a hard one of 524,288 unless its unit sets ``LimitNOFILE`` (the units in
  ``deploy/`` set both, deliberately). The headroom is for surges, not for normal running: paho's
  network loop uses select(), which cannot watch a descriptor numbered 1,024 or more, so an MQTT connection
  made while over a thousand descriptors are open fails (and is retried). Every HTTP endpoint is bounded
  besides (``zonewatch.httpd``), so no caller can push a program there.
- ``ServiceNotifier``: tells the service manager how the program is, by the sd_notify(3) protocol: ``READY=1``
  once it runs, ``WATCHDOG=1`` while its main loop turns, ``STOPPING=1`` on the way out. The units in
  ``deploy/`` are ``Type=notify`` with ``WatchdogSec=``: a program that hangs (its loop stops turning) is
  killed and restarted, not left running deaf. Outside systemd (no ``NOTIFY_SOCKET``) it does nothing.

Standard library only; imports neither ``agent`` nor ``collector``.
"""

from __future__ import annotations

import logging
import os
import resource
import socket
from collections.abc import Callable, Mapping

__all__ = ["ServiceNotifier", "raise_open_files_limit"]

log = logging.getLogger(__name__)

Limits = tuple[int, int]


def _show(limit: int) -> str:
    return "unlimited" if limit == resource.RLIM_INFINITY else str(limit)


def raise_open_files_limit(getrlimit: Callable[[int], Limits] = resource.getrlimit,
                           setrlimit: Callable[[int, Limits], None] = resource.setrlimit) -> Limits:
    """Raise this process's soft limit on open files to its hard limit, log the figure and return the limits
    in force (soft, hard). A hard limit the kernel will not grant as a soft one (``unlimited`` over
    ``fs.nr_open``) leaves the soft limit as it was, with a warning."""
    soft, hard = getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        log.info("open files: at most %s (soft limit = hard limit)", _show(soft))
        return soft, hard
    try:
        setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:
        log.warning("open files: at most %s; could not raise it to the hard limit %s: %s (set LimitNOFILE in the "
                    "service's unit)", _show(soft), _show(hard), exc)
        return soft, hard
    log.info("open files: at most %s (raised from %s to the hard limit)", _show(hard), _show(soft))
    return hard, hard


class ServiceNotifier:
    """Speak the service manager's notification protocol (sd_notify(3)): one datagram per message on the unix
    socket named by ``NOTIFY_SOCKET`` (a path, or ``@name`` in the abstract namespace).

    Called from the program's outer loop only, on one thread. A message that cannot be sent is logged once and
    never raised: a program must not stop because its supervisor went away. With no socket every call does
    nothing, so ``run`` behaves the same in a terminal, a test or a container.
    """

    def __init__(self, address: str | None, watchdog_s: float | None = None) -> None:
        self.address = address
        self.watchdog_s = watchdog_s          # the unit's WatchdogSec, when this process is the one watched
        self._socket: socket.socket | None = None
        self._last_ping: float | None = None
        self._warned = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None, pid: int | None = None) -> ServiceNotifier:
        """Return the notifier systemd asked for through the environment of process ``pid`` (default: this one).

        ``WATCHDOG_USEC`` counts only when ``WATCHDOG_PID`` is unset or names this process (a child that inherited
        the variables is not the one watched), as sd_watchdog_enabled(3) does."""
        env = os.environ if environ is None else environ
        watchdog_s: float | None = None
        usec, watched = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
        if usec and (not watched or watched == str(os.getpid() if pid is None else pid)):
            try:
                watchdog_s = int(usec) / 1e6 if int(usec) > 0 else None
            except ValueError:
                log.warning("WATCHDOG_USEC=%r is not a number of microseconds; no watchdog pings", usec)
        return cls(env.get("NOTIFY_SOCKET") or None, watchdog_s)

    @property
    def enabled(self) -> bool:
        """True when a service manager listens."""
        return self.address is not None

    def ready(self, status: str = "") -> None:
        """Say that start-up is complete (``systemctl start`` returns now), with a one-line status for
        ``systemctl status``."""
        self._send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def watchdog(self, now: float) -> bool:
        """Ping the watchdog if half its interval has passed since the last ping (``now``: monotonic seconds);
        return True if a ping was sent. Call it from the loop whose turning proves the program is alive."""
        if self.watchdog_s is None or self.address is None:
            return False
        if self._last_ping is not None and now - self._last_ping < self.watchdog_s / 2:
            return False
        self._last_ping = now
        self._send("WATCHDOG=1")
        return True

    def stopping(self) -> None:
        """Say that the program is shutting down on purpose, then close the socket."""
        self._send("STOPPING=1")
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _send(self, message: str) -> None:
        if self.address is None:
            return
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._socket.sendto(message.encode(), target)
        except OSError as exc:
            if not self._warned:
                log.warning("cannot notify the service manager at %s: %s (the watchdog may restart this program)",
                            self.address, exc)
                self._warned = True
