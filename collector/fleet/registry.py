"""The enrolment registry: every probe that asked to be admitted, and what became of it, in one SQLite file.

States and what moves an entry between them (one method each; every time comes in as ``now_ns``)::

    new key ──receive──► pending ──approve──► approved ──retire──► retired
                            │
                            └─────reject────► rejected
    pending, not heard from for ``pending_ttl`` ──forget_stale──► forgotten (the row goes)

An entry is keyed by its request id, the id of the probe's public key (``zonewatch.wire.enrol_request_id``), so a
probe sending its request again is the same entry (``receive`` says ``repeat``), and a probe that lost its key
asks anew. One probe id is approved at most once at a time (a unique index); a retired id may be approved again
for new hardware.

What the registry keeps of an approval: the password's hash in mosquitto's format, never the password; and,
until the probe has logged in with it, the sealed reply (the answer sealed to the probe's key, which only the
probe can open). The running collector publishes a held reply (``to_publish``), clears it from the broker once
the probe logged in, it was retired, or ``reply_ttl`` passed (``to_clear``). A probe that asks again while its
reply is held finds it on the broker as it subscribes (``receive`` says ``repeat``), or has it published again if
it was cleared meanwhile (``resend``). A request from a key that is retired, or approved and already used, is
``replayed``: refused.

Who writes: the collector's enrolment thread (requests, publication) and the ``probes`` commands (decisions),
from two processes. Each change is one ``BEGIN IMMEDIATE`` transaction, and readers never wait (WAL). A decision
that must change files as well (the broker's password file and ACL) runs that change inside its transaction
(``then``): if the files cannot be written, the decision is not made.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from zonewatch import wire

__all__ = ["Entry", "Registry", "RegistryError", "Received", "State", "STATES"]

State = Literal["pending", "approved", "rejected", "retired"]
STATES: tuple[State, ...] = ("pending", "approved", "rejected", "retired")
Received = Literal["new", "repeat", "resend", "replayed", "too_many_pending", "zone_mismatch"]
MIN_SELECTOR = 6   # hex digits of a request id that may stand for it, if no other id starts with them

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests(
    request TEXT PRIMARY KEY, zone TEXT NOT NULL, key BLOB NOT NULL, asked_id TEXT, hardware TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'rejected', 'retired')),
    probe TEXT, area TEXT, password_hash TEXT, reason TEXT,
    reply BLOB, reply_published_ns INTEGER, reply_cleared_ns INTEGER, delivered_ns INTEGER,
    first_seen_ns INTEGER NOT NULL, last_seen_ns INTEGER NOT NULL, requests INTEGER NOT NULL,
    probe_clock_ns INTEGER NOT NULL, decided_ns INTEGER);
CREATE UNIQUE INDEX IF NOT EXISTS one_approval ON requests(probe) WHERE state = 'approved';
CREATE INDEX IF NOT EXISTS by_zone_state ON requests(zone, state);
CREATE TABLE IF NOT EXISTS refused(
    reason TEXT PRIMARY KEY, count INTEGER NOT NULL, last_ns INTEGER NOT NULL, last_detail TEXT NOT NULL);
"""
_COLUMNS = ("request, zone, key, asked_id, hardware, state, probe, area, password_hash, reason, reply, "
            "reply_published_ns, reply_cleared_ns, delivered_ns, first_seen_ns, last_seen_ns, requests, "
            "probe_clock_ns, decided_ns")


class RegistryError(ValueError):
    """A decision that cannot be made (unknown or ambiguous request, wrong state, id taken); says why."""


@dataclass(frozen=True)
class Entry:
    """One request and what became of it."""

    request: str
    zone: str
    key: bytes
    asked_id: str | None            # the id the probe asked for
    machine_id: str | None
    modems: tuple[wire.ModemIdentity, ...]
    state: State
    probe: str | None               # the id it was approved as
    area: str | None
    password_hash: str | None
    reason: str | None              # why it was rejected
    reply: bytes | None             # the sealed reply, while it is to be delivered
    reply_published_ns: int | None
    reply_cleared_ns: int | None
    delivered_ns: int | None        # when the probe first logged in with its credentials
    first_seen_ns: int
    last_seen_ns: int
    requests: int                   # how many times it was received
    probe_clock_ns: int             # the probe's clock in its latest request
    decided_ns: int | None

    @property
    def fingerprint(self) -> str:
        """Return the key's fingerprint, as the probe prints it."""
        return wire.enrol_fingerprint(self.key)

    @property
    def name(self) -> str | None:
        """Return ``zone/probe`` once approved (or retired), else None."""
        return f"{self.zone}/{self.probe}" if self.probe is not None else None


def _entry(row: tuple[Any, ...]) -> Entry:
    """Return the entry of one row of ``SELECT _COLUMNS``."""
    (request, zone, key, asked_id, hardware_json, state, probe, area, password_hash, reason, reply, published,
     cleared, delivered, first_seen, last_seen, requests, probe_clock, decided) = row
    hardware = json.loads(hardware_json)
    modems = tuple(wire.ModemIdentity(m["name"], m.get("imei"), m.get("iccid")) for m in hardware.get("modems", []))
    return Entry(request, zone, bytes(key), asked_id, hardware.get("machine_id"), modems, state, probe, area,
                 password_hash, reason, None if reply is None else bytes(reply), published, cleared, delivered,
                 first_seen, last_seen, requests, probe_clock, decided)


def _hardware(request: wire.EnrolRequest) -> str:
    return json.dumps({"machine_id": request.machine_id,
                       "modems": [{"name": m.name, "imei": m.imei, "iccid": m.iccid} for m in request.modems]})


class Registry:
    """The registry file; one object per thread or process (``close`` when done)."""

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        path = Path(path)
        if not create and not path.exists():
            raise RegistryError(f"{path}: no enrolment registry (the collector makes it when it starts with an "
                                "enrol section)")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # It holds password hashes: made 0600 before SQLite opens it, so its -wal and -shm files (which SQLite
        # gives the database file's mode) are private from the start too.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        self.db = sqlite3.connect(path, isolation_level=None, timeout=10.0, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _change(self) -> Iterator[sqlite3.Connection]:
        """Run a block as one write transaction: committed if it returns, rolled back if it raises."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _select(self, where: str = "1", *args: object) -> list[Entry]:
        rows = self.db.execute(f"SELECT {_COLUMNS} FROM requests WHERE {where} ORDER BY first_seen_ns, request",
                               args).fetchall()
        return [_entry(r) for r in rows]

    # ------------------------------------------------------------------------------------------ requests

    def receive(self, request: wire.EnrolRequest, now_ns: int, max_pending: int) -> Received:
        """Take a checked request into the registry; return what it was (see the module docstring)."""
        rid = request.request_id
        with self._change() as db:
            found = self._select("request = ?", rid)
            if not found:
                pending = db.execute("SELECT count(*) FROM requests WHERE zone = ? AND state = 'pending'",
                                     (request.zone,)).fetchone()[0]
                if pending >= max_pending:
                    return "too_many_pending"
                db.execute(f"INSERT INTO requests ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, 'pending', NULL, NULL, NULL, "
                           "NULL, NULL, NULL, NULL, NULL, ?, ?, 1, ?, NULL)",
                           (rid, request.zone, request.key, request.probe, _hardware(request), now_ns, now_ns,
                            request.sent_ns))
                return "new"
            entry = found[0]
            if entry.zone != request.zone:
                return "zone_mismatch"
            if entry.state == "retired" or (entry.state == "approved" and entry.reply is None):
                return "replayed"
            seen = "last_seen_ns = ?, requests = requests + 1, probe_clock_ns = ?"
            if entry.state == "pending":   # what the probe says of itself may change until it is decided
                db.execute(f"UPDATE requests SET {seen}, asked_id = ?, hardware = ? WHERE request = ?",
                           (now_ns, request.sent_ns, request.probe, _hardware(request), rid))
                return "repeat"
            # approved but not used yet, or rejected: the reply is held. On the broker still, the probe gets it as
            # it subscribes; cleared (``reply_ttl`` passed), it is published again.
            cleared = entry.reply_published_ns is not None and entry.reply_cleared_ns is not None
            db.execute(f"UPDATE requests SET {seen}{', reply_published_ns = NULL' if cleared else ''} "
                       "WHERE request = ?", (now_ns, request.sent_ns, rid))
            return "resend" if cleared else "repeat"

    def count(self, reason: str, now_ns: int, detail: str, n: int = 1) -> None:
        """Count ``n`` requests refused for ``reason`` (kept across restarts; ``detail`` says the last one)."""
        with self._change() as db:
            db.execute("INSERT INTO refused VALUES (?, ?, ?, ?) ON CONFLICT(reason) DO UPDATE SET "
                       "count = count + excluded.count, last_ns = excluded.last_ns, last_detail = excluded.last_detail",
                       (reason, n, now_ns, detail[:300]))

    def refusals(self) -> dict[str, tuple[int, int, str]]:
        """Return reason -> (count, when last, what last) of every refused request."""
        rows = self.db.execute("SELECT reason, count, last_ns, last_detail FROM refused ORDER BY reason").fetchall()
        return {str(r[0]): (int(r[1]), int(r[2]), str(r[3])) for r in rows}

    def forget_stale(self, now_ns: int, ttl_ns: int) -> int:
        """Delete pending requests not received for ``ttl_ns``; return how many (a live probe asks again)."""
        with self._change() as db:
            return db.execute("DELETE FROM requests WHERE state = 'pending' AND last_seen_ns <= ?",
                              (now_ns - ttl_ns,)).rowcount

    # ------------------------------------------------------------------------------------------ decisions

    def find(self, selector: str) -> Entry:
        """Return the entry a request id, a unique prefix of one (at least MIN_SELECTOR hex digits) or its
        fingerprint as printed (spaces allowed) names; raise RegistryError saying why not."""
        text = selector.replace(" ", "").lower()
        if len(text) < MIN_SELECTOR or any(c not in "0123456789abcdef" for c in text) or len(text) > 32:
            raise RegistryError(f"{selector!r} is not a request id: give at least {MIN_SELECTOR} of its hex digits "
                                "(as `probes list` shows them)")
        found = self._select("substr(request, 1, ?) = ?", len(text), text)
        if not found:
            raise RegistryError(f"no request {selector!r} (see `zonewatch-collector probes list`)")
        if len(found) > 1:
            raise RegistryError(f"{selector!r} names {len(found)} requests ({', '.join(e.request[:12] for e in found)})"
                                ": give more digits")
        return found[0]

    def approve(self, selector: str, probe: str, area: str | None, password_hash: str, reply: bytes, now_ns: int,
                then: Callable[[Registry], object] | None = None) -> Entry:
        """Approve a pending request as ``probe``: keep the password hash and the sealed reply. ``then`` runs
        inside the transaction, on the registry as it will be (it writes the broker's files); if it raises,
        nothing is approved."""
        with self._change() as db:
            entry = self.find(selector)
            _must_be_pending(entry)
            taken = self._select("probe = ? AND state = 'approved'", probe)
            if taken:
                raise RegistryError(f"probe id {probe!r} is enrolled already (request {taken[0].request[:12]} in zone "
                                    f"{taken[0].zone}): retire it first, or choose another --id")
            db.execute("UPDATE requests SET state = 'approved', probe = ?, area = ?, password_hash = ?, reply = ?, "
                       "reply_published_ns = NULL, reply_cleared_ns = NULL, delivered_ns = NULL, decided_ns = ? "
                       "WHERE request = ?", (probe, area, password_hash, reply, now_ns, entry.request))
            if then is not None:
                then(self)
            return self._select("request = ?", entry.request)[0]

    def reject(self, selector: str, reason: str | None, reply: bytes, now_ns: int) -> Entry:
        """Reject a pending request; the sealed reply tells the probe so."""
        with self._change() as db:
            entry = self.find(selector)
            _must_be_pending(entry)
            db.execute("UPDATE requests SET state = 'rejected', reason = ?, reply = ?, reply_published_ns = NULL, "
                       "reply_cleared_ns = NULL, decided_ns = ? WHERE request = ?", (reason, reply, now_ns,
                                                                                   entry.request))
            return self._select("request = ?", entry.request)[0]

    def retire(self, probe: str, now_ns: int, then: Callable[[Registry], object] | None = None) -> Entry:
        """Retire the approved probe ``probe``: its reply is no longer held. ``then`` as for ``approve``."""
        with self._change() as db:
            found = self._select("probe = ? AND state = 'approved'", probe)
            if not found:
                known = ", ".join(sorted(e.probe for e in self._select("state = 'approved'") if e.probe)) or "none"
                raise RegistryError(f"no enrolled probe {probe!r} (enrolled: {known}); a probe only the inventory "
                                    "lists is retired by taking it out of the inventory and running render-mosquitto")
            db.execute("UPDATE requests SET state = 'retired', reply = NULL, decided_ns = ? WHERE request = ?",
                       (now_ns, found[0].request))
            if then is not None:
                then(self)
            return self._select("request = ?", found[0].request)[0]

    # ------------------------------------------------------------------------------------------ reading

    def entries(self, state: State | None = None) -> list[Entry]:
        """Return every entry (of one state), oldest first."""
        return self._select("state = ?", state) if state is not None else self._select()

    def approved(self) -> dict[str, tuple[str, str]]:
        """Return probe id -> (zone, password hash) of every approved probe."""
        return {e.probe: (e.zone, e.password_hash) for e in self._select("state = 'approved'")
                if e.probe is not None and e.password_hash is not None}

    def retired(self) -> frozenset[str]:
        """Return the ids of retired probes not approved again since."""
        live = set(self.approved())
        return frozenset(e.probe for e in self._select("state = 'retired'") if e.probe and e.probe not in live)

    def retired_names(self) -> frozenset[str]:
        """Return ``zone/probe`` of every retired probe not approved again since (in that zone)."""
        live = {f"{zone}/{probe}" for probe, (zone, _) in self.approved().items()}
        return frozenset(n for e in self._select("state = 'retired'") if (n := e.name) and n not in live)

    # ------------------------------------------------------------------------------------------ replies

    def to_publish(self) -> list[Entry]:
        """Return the entries whose reply is held and not on the broker."""
        return self._select("state IN ('approved', 'rejected') AND reply IS NOT NULL AND reply_published_ns IS NULL")

    def published(self, request: str, now_ns: int) -> None:
        """Note that ``request``'s reply is on the broker (retained) since ``now_ns``."""
        with self._change() as db:
            db.execute("UPDATE requests SET reply_published_ns = ?, reply_cleared_ns = NULL WHERE request = ?",
                       (now_ns, request))

    def to_clear(self, now_ns: int, ttl_ns: int) -> list[Entry]:
        """Return the entries whose reply is on the broker and should go: the probe logged in, it was retired,
        or the reply has been there for ``ttl_ns``."""
        return self._select("reply_published_ns IS NOT NULL AND reply_cleared_ns IS NULL AND (reply IS NULL "
                            "OR reply_published_ns <= ?)", now_ns - ttl_ns)

    def cleared(self, request: str, now_ns: int) -> None:
        """Note that ``request``'s reply is off the broker."""
        with self._change() as db:
            db.execute("UPDATE requests SET reply_cleared_ns = ? WHERE request = ?", (now_ns, request))

    def awaiting_login(self) -> dict[str, str]:
        """Return ``zone/probe`` -> request of every approved probe whose credentials are not used yet."""
        return {e.name: e.request for e in self._select("state = 'approved' AND reply IS NOT NULL") if e.name}

    def logged_in(self, zone: str, probe: str, now_ns: int) -> bool:
        """Note that approved probe ``zone/probe`` logged in with its credentials: its reply is no longer held.
        Return True if that was news."""
        with self._change() as db:
            return db.execute("UPDATE requests SET delivered_ns = ?, reply = NULL WHERE state = 'approved' AND "
                              "zone = ? AND probe = ? AND reply IS NOT NULL", (now_ns, zone, probe)).rowcount > 0


def _must_be_pending(entry: Entry) -> None:
    if entry.state == "pending":
        return
    what = {"approved": f"approved already, as {entry.probe}", "rejected": "rejected already",
            "retired": f"retired (it was {entry.probe})"}[entry.state]
    raise RegistryError(f"request {entry.request[:12]} is {what}: only a pending request can be decided")
