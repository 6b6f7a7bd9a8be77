"""The collector's threads, named for the operating system too.

Python names a thread for itself only; ``named`` also sets the kernel's name of the thread (15 characters),
so ``top -H``, ``ps -L -o tid,comm,time`` and ``/proc/<pid>/task/<tid>/comm`` tell which part of the
collector is busy (``zw-prepare``, ``zw-intake``, ``zw-alerts`` ...). The ingest benchmark reads them to
print each thread's CPU.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import setproctitle

__all__ = ["named"]


def named(target: Callable[[], object], name: str) -> threading.Thread:
    """Return a daemon thread (not started) that runs ``target`` under ``name``, in Python and in the kernel."""

    def run() -> None:
        setproctitle.setthreadtitle(name)
        target()

    return threading.Thread(target=run, name=name, daemon=True)
