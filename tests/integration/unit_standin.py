"""A stand-in for systemd's handling of one service, for tests on a machine where systemd does not run.

``python unit_standin.py PROGRAM ARGS...`` runs the program as ``zonewatch-agent.service`` would be run:

- ``Restart=always``, ``RestartSec=1s``: when the program exits by itself, it is started again a second later;
- ``systemctl restart``: SIGHUP to this process stops the program (SIGTERM, then SIGKILL after 8 s) and starts it
  again, from the path given (so a ``current`` link switched meanwhile starts the new release);
- ``systemctl stop``: SIGTERM (or SIGINT) to this process stops the program and ends this one.

Every start is printed (``unit-standin: started PID``), so the log shows the restarts. Standard library only.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from types import FrameType

RESTART_SEC = 1.0
STOP_TIMEOUT = 8.0   # within the 10 s tests/services.py gives a process to stop before it kills it


def main(argv: list[str]) -> int:
    """Run ``argv`` until told to stop; return 0."""
    wanted = {"stop": False, "restart": False}

    def on_stop(signum: int, frame: FrameType | None) -> None:
        wanted["stop"] = True

    def on_restart(signum: int, frame: FrameType | None) -> None:
        wanted["restart"] = True

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_restart)
    while not wanted["stop"]:
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        print(f"unit-standin: started {child.pid}", flush=True)
        while not (wanted["stop"] or wanted["restart"]) and child.poll() is None:
            time.sleep(0.05)
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        elif not (wanted["stop"] or wanted["restart"]):
            print(f"unit-standin: {child.pid} exited {child.returncode}; starting again in {RESTART_SEC:g}s",
                  flush=True)
            end = time.monotonic() + RESTART_SEC
            while not wanted["stop"] and time.monotonic() < end:
                time.sleep(0.05)
        wanted["restart"] = False
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
