"""The demo's children: how it starts them and how it ends them.

Every child runs in a process group of its own and, on Linux, is tied to the demo (``tied``: the kernel kills it
when the demo dies, ``PR_SET_PDEATHSIG``); ``end`` stops children by PID and reaps them. Also the free loopback
ports the zone listens on and the simulated devices' command line.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

# Run before a child's own program (Linux): ask the kernel to SIGKILL this process when the thread that started
# it ends (the demo's main thread, which lives as long as the demo), then check that the demo did not die
# before that request was in place, then become the child's program (the request survives exec).
_ORPHAN_GUARD = """\
import ctypes, os, signal, sys
if ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0) != 0:  # PR_SET_PDEATHSIG
    sys.exit(f"cannot tie this process to the demo: prctl failed with errno {ctypes.get_errno()}")
if os.getppid() != int(sys.argv[1]):
    sys.exit(0)
os.execv(sys.argv[2], sys.argv[2:])
"""


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def snmpsim_command(data: Path, cache: Path, port: int, verbose: bool = False) -> list[str]:
    """Return the command line of the simulated devices: snmpsim serving every walk in ``data`` (community =
    file name) on 127.0.0.1:``port``, each device with a state of its own (``python -m agent.sim.device``)."""
    return [sys.executable, "-m", "agent.sim.device", "--data-dir", str(data), "--cache-dir", str(cache),
            "--port", str(port), *(["--verbose"] if verbose else [])]


def tied(argv: list[str]) -> list[str]:
    """Return ``argv`` run so that it dies with this process (``_ORPHAN_GUARD``); unchanged where that is not
    Linux."""
    if not sys.platform.startswith("linux"):
        return argv
    return [sys.executable, "-I", "-S", "-c", _ORPHAN_GUARD, str(os.getpid()), *argv]


def end(children: list[tuple[str, subprocess.Popen[bytes]]], wait_s: float = 10.0) -> None:
    """SIGTERM every child still running, wait for each (SIGKILL after ``wait_s``) and reap it."""
    for _name, proc in children:
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + wait_s
    for _name, proc in children:
        try:
            proc.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()
