"""The requests of one SNMP poll (``agent.sources.snmp``): GETs in batches, each column walked once, what failed.

A ``Poll`` keeps what one poll has read (values by OID, walks by column OID) and the first thing that went wrong.
A GET of ``GET_BATCH`` OIDs that the agent refuses is retried one OID at a time; a timeout stops the poll's
further requests (each would wait as long), and what was read so far is kept. ``read_table`` walks a profile
table's columns and, if it has rows, its joins; ``detect_profiles`` asks the device who it is and walks the
``has_table`` columns detection still needs, for the same poll to use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Final

from agent.profiles import Profile, Table
from agent.snmpclient import SnmpClient, SnmpError, SnmpTimeout, SnmpValue
from agent.sources import detect
from agent.sources.snmpeval import INDEX

__all__ = ["GET_BATCH", "Poll", "by_index", "detect_profiles", "read_table"]

GET_BATCH: Final = 16  # OIDs per GET request


class Poll:
    """The requests of one poll: values read so far, walks by column OID, and what went wrong."""

    def __init__(self, client: SnmpClient) -> None:
        self.client = client
        self.values: dict[str, SnmpValue] = {}
        self.walks: dict[str, dict[str, SnmpValue]] = {}
        self.failure: str | None = None
        self.stopped = False

    async def get(self, oids: Sequence[str]) -> None:
        """GET the OIDs not read yet, in batches; a batch the agent refuses is retried one OID at a time."""
        todo = list(dict.fromkeys(oid for oid in oids if oid not in self.values))
        for start in range(0, len(todo), GET_BATCH):
            batch = todo[start : start + GET_BATCH]
            if not await self._get(batch) and len(batch) > 1:
                for oid in batch:
                    await self._get([oid])

    async def _get(self, request: list[str]) -> bool:
        """GET once; return False if the agent answered with an error."""
        if self.stopped:
            return True
        try:
            self.values.update(await self.client.get(request))
        except SnmpTimeout as exc:
            self._stop(exc)
        except SnmpError as exc:
            if len(request) == 1:
                self.failure = f"answered, but {request[0]} could not be read: {exc.reason}"
            return False
        return True

    async def walk(self, oid: str) -> dict[str, SnmpValue]:
        """Walk one column (once per poll) and return its values by index; nothing after a timeout."""
        if oid in self.walks:
            return self.walks[oid]
        if self.stopped:
            return {}
        try:
            column = by_index(await self.client.walk(oid), oid)
        except SnmpTimeout as exc:  # it stopped answering: each further column would wait as long
            self._stop(exc)
            return {}
        except SnmpError as exc:
            self.failure = f"answered, but {oid} could not be read: {exc.reason}"
            column = {}
        self.walks[oid] = column
        return column

    def _stop(self, exc: SnmpError) -> None:
        self.failure = f"stopped answering during the poll: {exc.reason}"
        self.stopped = True


async def read_table(
    poll: Poll, table: Table
) -> tuple[dict[str, dict[str, SnmpValue]], dict[str, dict[str, SnmpValue]]]:
    """Walk a table's columns in order, then its joins if it has rows."""
    columns: dict[str, dict[str, SnmpValue]] = {}
    for name, column in table.columns.items():
        if column.only_if_empty is not None:
            if poll.failure is not None or columns.get(column.only_if_empty):
                continue
        columns[name] = await poll.walk(column.oid)
    joins: dict[str, dict[str, SnmpValue]] = {}
    if any(columns.values()):
        for name, join in table.joins.items():
            joins[name] = await poll.walk(join.oid)
    return columns, joins


async def detect_profiles(poll: Poll, known: Mapping[str, Profile], now_ns: int) -> detect.Detection:
    """Ask the device who it is (one GET) and walk the has_table columns still undecided (kept for the poll)."""
    await poll.get([detect.SYS_OBJECT_ID, detect.SYS_DESCR])
    identity = detect.identify(poll.values.get(detect.SYS_OBJECT_ID), poll.values.get(detect.SYS_DESCR))
    present = [oid for oid in detect.tables_to_walk(known, identity)
               if any(value is not None for value in (await poll.walk(oid)).values())]
    identity = replace(identity, tables=frozenset(present))
    return detect.Detection(identity, tuple(detect.select(known, identity)), now_ns)


def by_index(rows: list[tuple[str, SnmpValue]], column: str) -> dict[str, SnmpValue]:
    """Map the rows of one column by index (the sub-identifiers after the column OID)."""
    prefix = column + "."
    out: dict[str, SnmpValue] = {}
    for oid, value in rows:
        suffix = oid[len(prefix) :] if oid.startswith(prefix) else ""
        if INDEX.match(suffix):
            out[suffix] = value
    return out
