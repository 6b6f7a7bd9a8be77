"""gufo-snmp's internals, read here and nowhere else (``tests/agent/test_compat.py`` checks each one).

The agent's SNMP client (``agent.snmp_gufo``) needs two things gufo-snmp does not offer in public:

- one deadline per request: its session waits ``timeout`` again after every datagram it drops, so
  ``BoundedSession`` overrides the session's ``_send``/``_recv`` and reads its ``_timeout`` and ``_fd``;
- whole GETBULK answers: its public iterator hides the difference between the end of a subtree, an empty
  answer and an answer too large for its buffer, so ``fetch`` drives ``_send``/``_recv`` with the session's
  ``_sock`` and ``gufo.snmp._fast.GetIter`` itself.

An upgrade that renames or changes any of these fails the contract test by name, rather than a walk in the
field.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final, TypeVar

from gufo.snmp import SnmpDecodeError
from gufo.snmp._fast import GetIter
from gufo.snmp.aio import SnmpSession
from gufo.snmp.typing import ValueType

__all__ = ["BoundedSession", "GetIter", "fetch", "TOO_BIG", "INCOMPLETE", "RECEIVE_BUFFER", "INTERNALS"]

T = TypeVar("T")

# What this module reads of gufo-snmp's session: (attribute, what it must be). The contract test checks them.
INTERNALS: Final = (("_send", "coroutine function"), ("_recv", "coroutine function"), ("_sock", "attribute"),
                    ("_fd", "attribute"), ("_timeout", "attribute"))


class BoundedSession(SnmpSession):
    """gufo-snmp's session with one deadline per request, ``timeout`` after its send.

    gufo-snmp's ``_recv`` waits ``timeout`` for the socket to be readable, and when the datagram is not
    the answer (another request id, another community) it drops it and waits ``timeout`` again: a device
    that keeps sending stale answers holds a request for ever, and one late answer doubles the wait. Every
    request (GET, GETNEXT, GETBULK, the v3 engine discovery) is one ``_send`` then one ``_recv``, so the
    deadline is set at the send. The wait is a timer that fails the future, not a cancellation, which
    Python 3.11's ``wait_for`` can lose when the datagram and the deadline come together.
    """

    _deadline = 0.0

    async def _send(self, sender: Callable[[], None]) -> None:
        self._deadline = asyncio.get_running_loop().time() + self._timeout
        await super()._send(sender)

    async def _recv(self, receiver: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        while True:
            # True when the socket is readable, False at the deadline. (Not an exception set on the future:
            # its traceback would hold this frame, which holds the future, and the session would wait for
            # the garbage collector to close its socket.)
            waiter: asyncio.Future[bool] = loop.create_future()
            loop.add_reader(self._fd, _settle, waiter, True)
            timer = loop.call_at(self._deadline, _settle, waiter, False)
            try:
                if not await waiter:
                    raise TimeoutError()
                return receiver()
            except BlockingIOError:  # a datagram that was not the answer: wait for the rest of the time
                continue
            finally:
                timer.cancel()
                loop.remove_reader(self._fd)


def _settle(waiter: asyncio.Future[bool], readable: bool) -> None:
    if not waiter.done():
        waiter.set_result(readable)


TOO_BIG: Final[list[tuple[str, ValueType] | None]] = []
INCOMPLETE: Final = "incomplete"
RECEIVE_BUFFER: Final = 4080


async def fetch(session: SnmpSession, ctx: GetIter) -> list[tuple[str, ValueType] | None] | None:
    """Send one GETBULK for ``ctx`` and return its rows; ``None`` ends the subtree at a row.

    Returns None when every varbind was NULL, noSuch* or endOfMibView (end of the MIB view, or an error
    answer), and ``TOO_BIG`` when the answer did not fit gufo-snmp's buffer. Uses gufo-snmp's session
    internals (``_send``, ``_recv``, ``_sock``): its public iterator hides the difference between those
    ends, and a walk cannot be correct without it.
    """
    sock = session._sock
    await session._send(lambda: sock.send_get_bulk(ctx))
    try:
        return await session._recv(lambda: sock.recv_get_bulk(ctx))
    except StopAsyncIteration:
        return None
    except SnmpDecodeError as exc:
        if str(exc) == INCOMPLETE:
            return TOO_BIG
        raise
