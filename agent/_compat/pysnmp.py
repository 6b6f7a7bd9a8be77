"""pysnmp's dispatcher internals, read here and nowhere else (``tests/agent/test_compat.py`` checks each one).

The trap receiver (``agent.sources.traps``) hands every datagram to pysnmp itself, so that each one it drops
is counted with its sender and reason; pysnmp has no public way to do that. It:

- replaces the transport dispatcher's receive callback (``route_datagrams``), and feeds the datagram to
  the engine's message dispatcher (``feed_datagram``);
- reads the security model and level of the message being processed from the engine's observer
  (``request_context``), to refuse an SNMPv3 notification that is not authPriv;
- reads the engine's own drop counters (``counter_value``: the MIB object's ``syntax``);
- closes the dispatcher when it is done (``close``), as the SNMP client does for its shared engine.

An upgrade that renames or changes any of these fails the contract test by name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

__all__ = ["route_datagrams", "feed_datagram", "request_context", "counter_value", "close", "INTERNALS"]

# What this module relies on: (where, name). The contract test checks each against a real engine.
INTERNALS: Final = (("SnmpEngine", "transport_dispatcher"), ("SnmpEngine", "message_dispatcher"),
                    ("SnmpEngine", "observer"), ("SnmpEngine", "close_dispatcher"),
                    ("transport dispatcher", "register_recv_callback"),
                    ("transport dispatcher", "unregister_recv_callback"),
                    ("message dispatcher", "receive_message"), ("observer", "get_execution_context"),
                    ("MIB counter", "syntax"))
RECEIVE_CONTEXT: Final = "rfc3412.receiveMessage:request"


def route_datagrams(engine: Any, callback: Callable[[Any, Any, Any, bytes], None]) -> None:
    """Have every datagram of ``engine``'s transports go to ``callback(dispatcher, domain, address, data)``."""
    dispatcher = engine.transport_dispatcher
    dispatcher.unregister_recv_callback()
    dispatcher.register_recv_callback(callback)


def feed_datagram(engine: Any, domain: Any, address: Any, datagram: bytes) -> None:
    """Have ``engine`` process one datagram as if its transport had received it."""
    engine.message_dispatcher.receive_message(engine, domain, address, datagram)


def request_context(engine: Any) -> Any:
    """Return what the engine knows of the message it is processing (``securityModel``, ``securityLevel``,
    ``securityName`` ...): valid inside a notification callback."""
    return engine.observer.get_execution_context(RECEIVE_CONTEXT)


def counter_value(counter: Any) -> int:
    """Return the value of one of the engine's MIB counters (``builder.import_symbols``)."""
    return int(counter.syntax)


def close(engine: Any) -> None:
    """Close ``engine``'s transport dispatcher, if it has one."""
    if engine.transport_dispatcher is not None:
        engine.close_dispatcher()
