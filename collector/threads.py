"""The collector's threads: named for the operating system too, and supervised.

Python names a thread for itself only; ``named`` also sets the kernel's name of the thread (15 characters),
so ``top -H``, ``ps -L -o tid,comm,time`` and ``/proc/<pid>/task/<tid>/comm`` tell which part of the
collector is busy (``zw-prepare``, ``zw-intake``, ``zw-alerts`` ...). The ingest benchmark reads them to
print each thread's CPU.

Supervision: every thread's work is meant to run until the collector stops, and each catches what it can
carry on from (a bad message, an unavailable store). An exception that still escapes means the thread is
gone and the part it runs has stopped (intake, storage or alerting) while the process looks alive: that
must never go unnoticed. ``named`` logs it as critical, with its traceback, and tells every handler
registered with ``on_death`` (the collector stops, loudly, with a non-zero exit: the service manager
restarts it, and the next start raises CollectorFault).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import setproctitle

__all__ = ["named", "on_death"]

log = logging.getLogger(__name__)

Handler = Callable[[str, BaseException], None]
_handlers: list[Handler] = []
_handlers_lock = threading.Lock()


def on_death(handler: Handler) -> Callable[[], None]:
    """Call ``handler(thread name, exception)`` when a thread made by ``named`` dies of an exception; return a
    function that unregisters it."""
    with _handlers_lock:
        _handlers.append(handler)

    def remove() -> None:
        with _handlers_lock:
            if handler in _handlers:
                _handlers.remove(handler)

    return remove


def named(target: Callable[[], object], name: str) -> threading.Thread:
    """Return a daemon thread (not started) that runs ``target`` under ``name``, in Python and in the kernel,
    and reports its death by an exception (see the module docstring)."""

    def run() -> None:
        setproctitle.setthreadtitle(name)
        try:
            target()
        except BaseException as exc:  # noqa: BLE001  # whatever it is, the thread is gone: say so and act
            log.critical("collector thread %s died: %s: %s", name, type(exc).__name__, exc, exc_info=exc)
            with _handlers_lock:
                handlers = list(_handlers)
            for handler in handlers:
                try:
                    handler(name, exc)
                except Exception:  # a handler's own failure must not hide the first one
                    log.exception("handling the death of thread %s failed", name)

    return threading.Thread(target=run, name=name, daemon=True)
