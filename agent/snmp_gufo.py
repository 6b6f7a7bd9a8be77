"""``SnmpClient`` over gufo-snmp (v2c, or v3 authPriv): a Rust BER codec on a non-blocking UDP socket.

gufo-snmp encodes and decodes in Rust and waits for its socket through the running event loop, so a
walk costs about as much CPU per varbind as net-snmp's own ``snmpbulkwalk`` and nothing blocks the loop.
Each client owns one connected UDP socket; clients of different devices run concurrently.

What this adapter adds to gufo-snmp, which has neither retries nor name resolution:

- ``retries``: a request that times out is sent again (with a new request id; a late answer to the
  old one is dropped), ``retries`` times; then ``SnmpTimeout``. The socket is connected, so a host that
  answers "port unreachable" (ICMP) fails the request at once instead of after the timeout.
- a timeout for the whole request: gufo-snmp's own timeout starts again at each datagram it drops (an
  answer to another request, a wrong community), so a device that keeps sending those would hold a
  request for ever. ``BoundedSession`` makes ``timeout`` a deadline from the send to the answer.
- host names: resolved with the event loop's ``getaddrinfo`` when the socket is opened, and again
  after a timeout, since the address may have moved.
- SNMPv3 time window: the agent's engine boots and time are learnt at the first request and again
  when the socket has been idle for two minutes or the agent answers with a report (it restarted, or
  the window expired); the request is then sent once more.
- answers that do not fit: gufo-snmp reads at most 4,080 bytes and asks a v3 agent for answers of at
  most 1,500, so a GETBULK answer of long values either fails to decode or comes back as tooBig, which
  gufo-snmp does not report (it would end the walk there, silently). An empty answer is therefore
  checked with a one-varbind GETBULK from the last row; if the agent names a next OID, the walk starts
  again asking half as many varbinds at a time (rows already taken are skipped), and that subtree keeps
  the lower figure for this client.
- walks check that OIDs increase, so that a looping agent cannot keep a walk going for ever.

Known limit (gufo-snmp 0.13): the error-status of an answer is not passed on. An agent that answers a
GET with genErr (or tooBig) gives None for each OID, and one that keeps answering genErr at one row ends
the walk there, where pysnmp and net-snmp report the error. Devices rarely do this;
``make_client(target, "pysnmp")`` is the way out for one that does.

The walk reads whole GETBULK answers through gufo-snmp's session internals (``_send``, ``_recv``,
``_sock``, ``GetIter``): the public iterator cannot tell the end of a subtree from an empty answer. Every
use of them is in ``agent._compat.gufo``, whose contract test (tests/agent/test_compat.py) fails loudly if
an upgrade changes them; the version range in pyproject.toml is narrow for that reason.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, Final, TypeVar

from gufo.snmp import (
    Aes128Key,
    Aes256Key,
    BaseAuthKey,
    BasePrivKey,
    DesKey,
    KeyExpansion,
    Md5Key,
    Sha1Key,
    Sha256Key,
    SnmpAuthError,
    SnmpDecodeError,
    User,
)
from gufo.snmp import SnmpError as GufoError
from gufo.snmp.aio import SnmpSession
from gufo.snmp.typing import ValueType

from agent._compat.gufo import INCOMPLETE, RECEIVE_BUFFER, TOO_BIG, BoundedSession, GetIter
from agent._compat.gufo import fetch as fetch_bulk
from agent.snmpclient import SnmpError, SnmpTarget, SnmpTimeout, SnmpValue, oid_key

__all__ = ["GufoClient"]

T = TypeVar("T")

_AUTH: Final[dict[str, type[BaseAuthKey]]] = {"SHA": Sha1Key, "SHA256": Sha256Key, "MD5": Md5Key}
# AES256 is the draft-blumenthal key extension, as net-snmp's "AES-256" (not Cisco's "AES-256-C").
_PRIV: Final[dict[str, type[BasePrivKey]]] = {"AES": Aes128Key, "AES256": Aes256Key, "DES": DesKey}
# RFC 3414 drops a message whose engine time is 150 s off the agent's; learn it again well before that.
_V3_IDLE_REFRESH: Final = 120.0
# gufo-snmp's socket is connected, so an ICMP port unreachable reaches it: it raises TimeoutError with this.
_REFUSED: Final = "connection refused"


class GufoClient:
    """``SnmpClient`` over gufo-snmp's asyncio session."""

    def __init__(self, target: SnmpTarget) -> None:
        self.target = target
        self._session: SnmpSession | None = None
        self._used_at = 0.0  # monotonic time of the last answer on the v3 session
        self._user: User | None = None
        self._repetitions: dict[str, int] = {}  # root -> max-repetitions, lowered when an answer did not fit
        if target.version == "v2c":
            if not target.community:
                raise ValueError(f"{target.label}: v2c needs a community")
        else:
            if not (target.user and target.auth_key and target.priv_key):
                raise ValueError(f"{target.label}: v3 authPriv needs a user, an auth key and a priv key")
            self._user = User(
                target.user,
                auth_key=_AUTH[target.auth_protocol](target.auth_key.encode()),
                priv_key=_PRIV[target.priv_protocol](target.priv_key.encode()),
                key_expansion=KeyExpansion.Blumenthal,
            )

    def __repr__(self) -> str:
        return f"GufoClient({self.target!r})"

    async def get(self, oids: Sequence[str]) -> dict[str, SnmpValue]:
        """GET ``oids`` in one request."""
        wanted = {oid: _dotted(oid_key(oid)) for oid in oids}
        if not wanted:
            return {}
        request = list(dict.fromkeys(wanted.values()))
        values = await self._retry(lambda session: session.get_many(request), rediscover=True)
        return {oid: _value(values.get(name)) for oid, name in wanted.items()}

    async def walk(self, root: str) -> list[tuple[str, SnmpValue]]:
        """Walk the subtree under ``root`` with GETBULK (or GETNEXT), in OID order."""
        start = _dotted(oid_key(root))
        session = await self._retry(_itself, rediscover=True)
        if not self.target.bulk:
            return await self._walk_next(session, root, start)
        walk = _Walk(self, root, start)
        while True:
            repetitions = self._repetitions.get(start, self.target.max_repetitions)
            fetch = partial(fetch_bulk, ctx=GetIter(start, repetitions))
            while True:
                batch = await self._retry(fetch)
                if batch is TOO_BIG or (batch is None and await self._successor_exists(walk.previous)):
                    # the answer did not fit (or was an error we cannot see): ask for fewer at a time
                    if repetitions == 1:
                        raise SnmpError(self.target.label, f"walking {root}, the agent's answer after"
                                        f" {walk.previous} does not fit in one response")
                    self._repetitions[start] = repetitions // 2
                    walk.restart()
                    break
                if batch is None or not walk.take(batch):
                    return walk.rows

    async def _walk_next(self, session: SnmpSession, root: str, start: str) -> list[tuple[str, SnmpValue]]:
        """Walk with GETNEXT, one varbind per request."""
        step = session.getnext(start).__anext__
        walk = _Walk(self, root, start)
        while True:
            try:
                row = await self._retry(lambda _: step())
            except StopAsyncIteration:
                return walk.rows
            walk.take([row])

    async def _successor_exists(self, oid: str) -> bool:
        """Return True if the agent names a next OID after ``oid`` (False: endOfMibView, or an error)."""
        return await self._retry(partial(fetch_bulk, ctx=GetIter(oid, 1))) is not None

    def close(self) -> None:
        """Drop the session; its socket closes with it."""
        self._session = None

    async def _open(self, fresh: bool) -> SnmpSession:
        """Return the session; open a new one when ``fresh`` or none is open; learn a v3 agent's engine."""
        if fresh or self._session is None:
            self._session = await self._new_session()
            self._used_at = 0.0
        session = self._session
        if self._user is not None and time.monotonic() - self._used_at >= _V3_IDLE_REFRESH:
            await session.refresh()
            self._used_at = time.monotonic()
        return session

    async def _new_session(self) -> SnmpSession:
        target = self.target
        loop = asyncio.get_running_loop()
        found: list[Any] = []
        failure: OSError | None = None
        for family in (socket.AF_INET, socket.AF_UNSPEC):  # IPv4 first, as PysnmpClient; then IPv6
            try:
                found = await loop.getaddrinfo(target.host, target.port, family=family, type=socket.SOCK_DGRAM)
                break
            except OSError as exc:
                failure = exc
        if not found:
            raise SnmpError(target.label, f"cannot resolve {target.host}: {failure}")
        address = str(found[0][4][0])
        try:
            return BoundedSession(
                addr=address,
                port=target.port,
                community=target.community or "",
                user=self._user,
                timeout=target.timeout,
                max_repetitions=target.max_repetitions,
                allow_bulk=target.bulk,
            )
        except (OSError, ValueError, GufoError) as exc:
            raise SnmpError(target.label, target.scrub(f"cannot open a socket: {exc}")) from None

    async def _retry(self, call: Callable[[SnmpSession], Awaitable[T]], *, rediscover: bool = False,
                     failed: BaseException | None = None) -> T:
        """Await ``call(session)``; again on timeout (``retries`` times) and once after a v3 report.

        ``failed`` is what a first try, made by the caller, raised. With ``rediscover``, a v3 try after a
        timeout opens a new socket and learns the agent's engine again: an agent that restarted may come
        back with a new engine ID, and then it drops every message for the old one.
        """
        target = self.target
        tries, reported, fresh = 0, False, False
        while True:
            try:
                if failed is not None:
                    error, failed = failed, None
                    raise error
                session = await self._open(fresh)
                fresh = False
                result = await call(session)
            except TimeoutError as exc:
                tries += 1
                if tries <= target.retries:
                    fresh = rediscover and self._user is not None
                    continue
                self._session = None  # resolve the host again next time: its address may have moved
                if _REFUSED in (str(exc), str(exc.__cause__)):  # gufo-snmp re-raises it from its wait
                    raise SnmpTimeout(target.label, f"port {target.port} unreachable: the host answered"
                                      f" (ICMP) that nothing listens there, {target.retries + 1} tries") from None
                hint = "wrong community?" if target.version == "v2c" else "wrong priv key?"
                raise SnmpTimeout(
                    target.label,
                    f"no response in {target.timeout:g}s after {target.retries + 1} tries"
                    f" (host down, port closed or {hint})",
                ) from None
            except SnmpAuthError:
                # A report: wrong user or auth key, or the agent restarted or the time window expired.
                if reported:
                    raise SnmpError(target.label, "authentication failed (unknown user or wrong auth key?)") from None
                reported, self._used_at = True, 0.0  # learn the engine boots and time again, then retry
                continue
            except SnmpDecodeError as exc:
                raise SnmpError(target.label, target.scrub(f"bad response: {_undecodable(exc)}")) from None
            except GufoError as exc:
                raise SnmpError(target.label, target.scrub(f"bad response: {exc}")) from None
            except OSError as exc:
                self._session = None
                raise SnmpError(target.label, target.scrub(f"cannot send: {exc}")) from None
            if self._user is not None:
                self._used_at = time.monotonic()
            return result


async def _itself(session: SnmpSession) -> SnmpSession:
    return session


# gufo-snmp's receive buffer is 4,080 bytes and its SNMPv3 messages ask for answers of at most 1,500: a
# bigger answer fails to decode ("incomplete"), or the agent answers tooBig, which gufo-snmp does not report
# (every varbind comes back NULL, and it ends the walk). Both are met by asking for fewer varbinds at a time.
class _Walk:
    """The rows of one walk so far; checks that OIDs increase and skips rows it has after a restart."""

    def __init__(self, client: GufoClient, root: str, start: str) -> None:
        self.client, self.root = client, root
        self.rows: list[tuple[str, SnmpValue]] = []
        self.previous = start
        self.parent, _, arc = start.rpartition(".")
        self.number = int(arc)
        self.previous_key: tuple[int, ...] | None = None
        self.skip_to: tuple[int, ...] | None = None  # after a restart: rows up to here are known

    def take(self, batch: Sequence[tuple[str, ValueType] | None]) -> bool:
        """Add the rows of one answer; return False at the first OID outside the subtree."""
        for item in batch:
            if item is None:  # gufo-snmp ends the subtree here
                return False
            oid, value = item
            if self.skip_to is not None:
                if _key(oid) <= self.skip_to:
                    continue
                self.skip_to = None
            # Most steps change the last arc only, which is cheap to compare.
            head, _, arc = oid.rpartition(".")
            if head == self.parent:
                number = int(arc)
                if number <= self.number:
                    self._not_increasing(oid)
                self.number, self.previous_key = number, None
            else:
                key = _key(oid)
                if key <= (self.previous_key or _key(self.previous)):
                    self._not_increasing(oid)
                self.parent, self.number, self.previous_key = head, key[-1], key
            self.previous = oid
            self.rows.append((oid, None if isinstance(value, float) else value))
        return True

    def restart(self) -> None:
        """Expect the rows from the start again: the ones already taken are skipped."""
        if self.rows:
            self.skip_to = _key(self.previous)

    def _not_increasing(self, oid: str) -> None:
        raise SnmpError(self.client.target.label, f"walking {self.root}, the agent returned {oid} after"
                        f" {self.previous} (OIDs must increase)")


def _undecodable(exc: SnmpDecodeError) -> str:
    """Say why an answer could not be decoded, in the words of someone looking at the device."""
    if str(exc) == INCOMPLETE:
        return (f"{INCOMPLETE}: the answer is larger than the {RECEIVE_BUFFER:,} bytes this client reads,"
                " or was cut short")
    return f"{exc}: not a well-formed SNMP message"


def _value(value: object) -> SnmpValue:
    """Return gufo-snmp's value as an ``SnmpValue`` (it gives int, str, bytes, or float for REAL)."""
    if isinstance(value, (int, str, bytes)):
        return value
    return None


def _key(oid: str) -> tuple[int, ...]:
    """Return the sort key of an OID that gufo-snmp decoded (so well formed)."""
    return tuple(map(int, oid.split(".")))


def _dotted(key: tuple[int, ...]) -> str:
    return ".".join(map(str, key))
