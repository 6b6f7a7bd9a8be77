"""Measurement sources: one module per ``type`` in the agent configuration.

Registry: ``SOURCES`` maps the config ``type`` to the module's ``(ConfigModel, SourceClass)``; the config
type, the module name and the test module share one name (``snmp`` -> ``agent/sources/snmp.py`` ->
``SnmpSource``/``SnmpConfig`` -> ``tests/agent/sources/test_snmp.py``).

The contract every source follows (see ``Source``):

- The constructor takes its validated config and does no I/O.
- ``collect(now_ns)`` polls once and returns the samples, each stamped with its own measurement time
  (``now_ns`` unless the peer gave a better one). It never sleeps between tries and never retries: the
  runner schedules and retries. It raises ``SourceError`` when the peer cannot be read at all; a partial
  answer gives the samples it could make. A ``SourceError`` may carry ``samples``, what the failure itself
  says (the modem source's ``modem`` sample with ``answering`` false), which the runner spools.
- ``close()`` releases what ``collect`` opened; it may be called when nothing was opened.
- The runner never calls ``collect`` twice at once on one source, but different sources run concurrently.

Some sources are not polled but listen (SNMP traps, local MQTT telemetry). They follow ``Listener``:

- The constructor takes its validated config and does no I/O.
- ``start(emit)`` binds what it listens on and returns once it is listening (raising ``SourceError`` if it
  cannot, e.g. the port is taken). From then on it calls ``emit(kind, samples, events)`` on the event loop's
  thread whenever something arrives: ``kind="events"`` for what must travel at once (a trap, a link going
  down: the spool sends events ahead of any data backlog), ``kind="data"`` for ordinary readings. ``emit``
  never blocks and never raises.
- A malformed input is counted and logged (once per sender and reason), never fatal.
- ``stop()`` closes what ``start`` opened; it may be called when ``start`` failed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, Protocol

from zonewatch.wire import Event, Sample

Emit = Callable[[Literal["data", "events"], Sequence[Sample], Sequence[Event]], None]


class SourceError(Exception):
    """The peer could not be read; the message says which peer and what to check."""


class Source(Protocol):
    name: str

    async def collect(self, now_ns: int) -> list[Sample]:
        """Poll the peer once; called by the runner, never concurrently with itself.

        A source may also define ``unanswered(now_ns) -> list[Sample]``: what to report when the runner
        cancels a poll that ran past its interval (the SNMP source says ``device up=False``, so that a device
        that answers too slowly is seen as down rather than simply missing).
        """
        ...

    async def close(self) -> None:
        """Release connections; called once when the agent stops."""
        ...


class Listener(Protocol):
    name: str

    async def start(self, emit: Emit) -> None:
        """Begin listening; called once by the runner, on its event loop, before any emit."""
        ...

    async def stop(self) -> None:
        """Stop listening and release sockets; called once when the agent stops."""
        ...
