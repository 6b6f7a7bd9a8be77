"""Source registry: config ``type`` -> (config model, source class). A meta-test keeps it complete.

A class with ``collect`` is polled on its ``interval``; a class with ``start``/``stop`` listens (see
``agent.sources.Listener``).
"""

from __future__ import annotations

from typing import Any

from agent.sources.cellular import CellularConfig, CellularSource
from agent.sources.qos import QosConfig, QosSource
from agent.sources.reach import ReachConfig, ReachSource
from agent.sources.snmp import SnmpConfig, SnmpSource
from agent.sources.telemetry import TelemetryConfig, TelemetrySource
from agent.sources.traps import TrapsConfig, TrapsSource

SOURCES: dict[str, tuple[type[Any], type[Any]]] = {
    "cellular": (CellularConfig, CellularSource),
    "snmp": (SnmpConfig, SnmpSource),
    "reach": (ReachConfig, ReachSource),
    "qos": (QosConfig, QosSource),
    "traps": (TrapsConfig, TrapsSource),
    "telemetry": (TelemetryConfig, TelemetrySource),
}


def make_source(config: Any) -> Any:
    """Return the source object for one validated source config (no I/O)."""
    return SOURCES[config.type][1](config)


def is_listener(source: Any) -> bool:
    """Return True if ``source`` listens (start/stop) rather than being polled (collect)."""
    return hasattr(source, "start") and not hasattr(source, "collect")
