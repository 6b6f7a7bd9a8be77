"""Contract tests of the library internals the agent relies on (agent._compat): each fails by name when an
upgrade of gufo-snmp or pysnmp renames or changes one, before a walk or a trap fails in the field."""

from __future__ import annotations

import asyncio
import inspect
import socket
from typing import Any

import pytest
from pysnmp.carrier.asyncio.dgram import udp
from pysnmp.entity import config as snmp_config
from pysnmp.entity import engine as snmp_engine

from agent._compat import gufo, pysnmp


@pytest.mark.parametrize(("name", "what"), gufo.INTERNALS, ids=[n for n, _ in gufo.INTERNALS])
def test_gufo_session_internals_are_there(name: str, what: str) -> None:
    async def make() -> gufo.BoundedSession:
        return gufo.BoundedSession(addr="127.0.0.1", port=9, community="public", timeout=1.0)

    session = asyncio.run(make())
    try:
        member = getattr(session, name, None)
        assert member is not None, f"gufo-snmp's session has no {name} any more"
        if what == "coroutine function":
            assert inspect.iscoroutinefunction(getattr(type(session).__mro__[1], name)), f"{name} is not async"
            assert len(inspect.signature(member).parameters) == 1, f"{name} takes other arguments now"
    finally:
        session._sock = None  # type: ignore[assignment]  # let its socket go with the object


def test_gufo_fetch_reads_a_whole_getbulk_answer_from_a_real_agent_socket() -> None:
    """``fetch`` drives ``_send``/``_recv``/``_sock`` itself: a request to a port nothing answers times out
    through them (the bounded deadline), which is their whole contract."""
    port = _free_udp_port()

    async def run() -> None:
        session = gufo.BoundedSession(addr="127.0.0.1", port=port, community="public", timeout=0.2)
        with pytest.raises((TimeoutError, OSError)):
            await gufo.fetch(session, gufo.GetIter("1.3.6.1.2.1.1", 5))

    asyncio.run(run())


async def _engine_on_a_socket() -> tuple[object, socket.socket]:
    """A pysnmp engine with a UDP transport on a loopback socket, as the trap receiver makes one."""
    engine = snmp_engine.SnmpEngine()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    snmp_config.add_transport(engine, udp.DOMAIN_NAME, udp.UdpTransport().open_server_mode(sock=sock))
    return engine, sock


async def _closed(engine: object, sock: socket.socket) -> None:
    pysnmp.close(engine)
    sock.close()
    await asyncio.sleep(0)   # the transport's close callbacks


@pytest.mark.parametrize(("where", "name"), pysnmp.INTERNALS, ids=[f"{w}.{n}" for w, n in pysnmp.INTERNALS])
def test_pysnmp_dispatcher_internals_are_there(where: str, name: str) -> None:
    async def check() -> None:
        engine, sock = await _engine_on_a_socket()
        e: Any = engine
        try:
            if where == "MIB counter":
                counter = e.get_mib_builder().import_symbols("__SNMPv2-MIB", "snmpInASNParseErrs")[0]
                assert getattr(counter, name, None) is not None, f"pysnmp's MIB counters have no {name} any more"
                assert pysnmp.counter_value(counter) == 0
                return
            holders = {"SnmpEngine": e, "transport dispatcher": e.transport_dispatcher,
                       "message dispatcher": e.message_dispatcher, "observer": e.observer}
            assert getattr(holders[where], name, None) is not None, f"pysnmp's {where} has no {name} any more"
        finally:
            await _closed(engine, sock)

    asyncio.run(check())


def test_pysnmp_hands_datagrams_to_our_callback_and_counts_what_we_feed_it() -> None:
    seen: list[bytes] = []

    async def run() -> int:
        engine, sock = await _engine_on_a_socket()
        e: Any = engine
        try:
            pysnmp.route_datagrams(e, lambda d, domain, address, data: seen.append(bytes(data)))
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
                sender.sendto(b"\x30\x03garbage", sock.getsockname())
            for _ in range(200):
                if seen:
                    break
                await asyncio.sleep(0.01)
            counter = e.get_mib_builder().import_symbols("__SNMPv2-MIB", "snmpInASNParseErrs")[0]
            try:
                pysnmp.feed_datagram(e, udp.DOMAIN_NAME, ("127.0.0.1", 9), seen[0])
            except Exception:  # noqa: BLE001 - pysnmp may raise on garbage instead of counting it
                pass
            return pysnmp.counter_value(counter)
        finally:
            await _closed(engine, sock)

    parse_errors = asyncio.run(run())
    assert seen == [b"\x30\x03garbage"]
    assert parse_errors == 1


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
