"""Measurement sources: one module per ``type`` in the agent configuration.

Registry: ``SOURCES`` maps the config ``type`` to the module's ``(ConfigModel, SourceClass)``; the config
type, the module name and the test module share one name (``snmp`` -> ``agent/sources/snmp.py`` ->
``SnmpSource``/``SnmpConfig`` -> ``tests/agent/sources/test_snmp.py``).

The contract every source follows (see ``Source``):

- The constructor takes its validated config and does no I/O.
- ``collect(now_ns)`` polls once and returns the samples, each stamped with its own measurement time
  (``now_ns`` unless the peer gave a better one). It never sleeps between tries and never retries: the
  runner schedules and retries. It raises ``SourceError`` when the peer cannot be read at all; a partial
  answer gives the samples it could make.
- ``close()`` releases what ``collect`` opened; it may be called when nothing was opened.
- The runner never calls ``collect`` twice at once on one source, but different sources run concurrently.
"""

from __future__ import annotations

from typing import Protocol

from agent.wire import Sample


class SourceError(Exception):
    """The peer could not be read; the message says which peer and what to check."""


class Source(Protocol):
    name: str

    async def collect(self, now_ns: int) -> list[Sample]:
        """Poll the peer once; called by the runner, never concurrently with itself."""
        ...

    async def close(self) -> None:
        """Release connections; called once when the agent stops."""
        ...
