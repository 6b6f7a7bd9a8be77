"""Network namespaces for tests: made with unique names, torn down on every exit, and processes inside them.

Used by the namespace labs (``tests/integration/qoslab.py``, ``tests/integration/test_reach_netns.py``). Only
addresses inside the namespaces a test makes are used; nothing leaves the machine.

- ``ip(...)`` and ``run_in(ns, ...)`` run a command and fail with its message.
- ``namespaces()`` is a context manager giving a ``make(name)`` that adds a namespace with its loopback up (IPv6
  off with ``quiet=True``, so no router solicitation or MLD report moves an interface's counters); on exit every
  namespace made is deleted (and with it its veth ends and their peers) and none may be left behind.
- ``veth(...)`` adds a pair with an address at each end (``static_neighbours``: each end knows the other's MAC,
  so no ARP either).
- ``NsProcess`` is a process inside a namespace that speaks in lines on stdin/stdout, stopped by PID.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def ip(*args: str) -> None:
    """Run ``ip args``; fail with ip's message if it fails."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise AssertionError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def run_in(ns: str, *cmd: str) -> None:
    """Run ``cmd`` inside ``ns``; fail with its message if it fails."""
    done = subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise AssertionError(f"{ns}: {' '.join(cmd)}: {done.stderr.strip()}")


def require_root(*tools: tuple[str, str]) -> None:
    """Fail (never skip) without root, ``ip``, or one of ``tools`` ((command, Debian package) pairs)."""
    if os.geteuid() != 0:
        raise AssertionError("network namespaces need root (CI runs these tests as root)")
    for tool, package in (("ip", "iproute2"), *tools):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            raise AssertionError(f"{tool} is not installed ({package}): run scripts/setup.sh")


def run_tag(prefix: str) -> str:
    """Return a name prefix unique to this test process: ``prefix`` and five digits (interface names made from it
    stay within Linux's 15 characters when ``prefix`` is short)."""
    return f"{prefix}{os.getpid() % 100000:05d}"


@contextmanager
def namespaces() -> Iterator[Callable[..., str]]:
    """Yield ``make(name, quiet=False)``; delete every namespace it made on exit, and check none is left."""
    made: list[str] = []

    def make(name: str, quiet: bool = False) -> str:
        ip("netns", "add", name)
        made.append(name)
        ip("-n", name, "link", "set", "lo", "up")
        if quiet:
            run_in(name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
        return name

    try:
        yield make
    finally:
        for ns in made:   # deleting a namespace deletes its veth ends, and with them their peers
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout.split()
        assert not [ns for ns in made if ns in left], f"namespaces left behind: {left}"


def veth(a: str, a_ns: str, a_addr: str, b: str, b_ns: str, b_addr: str, static_neighbours: bool = False) -> None:
    """Add the veth pair ``a`` (in ``a_ns``) - ``b`` (in ``b_ns``), each end with its address and up. With
    ``static_neighbours`` each end's neighbour entry for the other is permanent: no ARP (a probe may come seconds
    after a test), so the counters move only with IP traffic."""
    ip("link", "add", a, "netns", a_ns, "type", "veth", "peer", "name", b, "netns", b_ns)
    macs = {}
    for name, ns, addr in ((a, a_ns, a_addr), (b, b_ns, b_addr)):
        ip("-n", ns, "addr", "add", addr, "dev", name)
        ip("-n", ns, "link", "set", name, "up")
        if static_neighbours:
            shown = subprocess.run(["ip", "-n", ns, "-j", "link", "show", "dev", name], capture_output=True,
                                   text=True, timeout=10, check=True).stdout
            macs[name] = json.loads(shown)[0]["address"]
    if static_neighbours:
        for name, ns, peer, peer_addr in ((a, a_ns, b, b_addr), (b, b_ns, a, a_addr)):
            ip("-n", ns, "neigh", "replace", peer_addr.split("/")[0], "lladdr", macs[peer], "dev", name,
               "nud", "permanent")


class NsProcess:
    """A process inside a namespace, answering in lines; stopped by PID (stdin closed, then SIGTERM, then
    SIGKILL). Its stderr goes to ``log``, shown when it fails to answer."""

    def __init__(self, ns: str, args: list[str], log: Path) -> None:
        self.log = log
        self._err = open(log, "w")  # closed in stop()
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns, *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._err, text=True, cwd=ROOT,
                                     env={**os.environ, "PYTHONPATH": str(ROOT)})

    def read(self, timeout: float) -> str:
        """Return the next line it prints, waiting at most ``timeout`` seconds (then stop it and fail)."""
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.stop()
            raise AssertionError(f"{self.log.name}: no answer within {timeout:g}s:\n{self.log.read_text()[-3000:]}")
        return line

    def send(self, line: str) -> None:
        """Write one line to its stdin."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        """Stop it and close its pipes; safe to call twice."""
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(2)
            except (subprocess.TimeoutExpired, BrokenPipeError):
                self.proc.terminate()
                try:
                    self.proc.wait(3)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(3)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._err.close()
