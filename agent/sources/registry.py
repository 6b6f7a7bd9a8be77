"""Source registry: config ``type`` -> (config model, source class). A meta-test keeps it complete."""

from __future__ import annotations

from typing import Any

from agent.sources.cellular import CellularConfig, CellularSource
from agent.sources.snmp import SnmpConfig, SnmpSource

SOURCES: dict[str, tuple[type[Any], type[Any]]] = {
    "cellular": (CellularConfig, CellularSource),
    "snmp": (SnmpConfig, SnmpSource),
}


def make_source(config: Any) -> Any:
    """Return the source object for one validated source config (no I/O)."""
    return SOURCES[config.type][1](config)
