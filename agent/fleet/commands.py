"""Commands from the centre (``zonewatch.wire``, "Commands"): checked, counted, acted on.

``Commands.handle(payload, sources, now_ns)`` is called by the agent's loop (one thread, never concurrently) for
each payload of the probe's ``command`` topic (``agent.uplink.Uplink.take_commands``); it never raises and does no
I/O. What it decides, in order::

    malformed       not JSON, a key missing or unknown, a bad value (``zonewatch.wire.decode_command``): refused
    unknown_kind    a kind this agent does not know (a newer collector): refused
    not_this_probe  addressed to another zone or probe (the broker's ACL should make this impossible): refused
    expired         past its ``expires_ns`` by this probe's clock (a probe back from an outage): refused
    duplicate       an id already taken (QoS 1 delivers at least once): ignored
    no_source       a diagnostic round for a carrier none of this probe's qos sources runs on: refused
    accepted        each qos source on the carrier's modem is asked for a round (``QosSource.request_round``)

Every message is counted in ``zonewatch_commands{kind, result}`` (the malformed ones under the ``WireError``'s
reason); a refusal is logged the first time its result occurs, not at every message. A diagnostic round names the
modem as the inventory does; if no qos source has that ``modem``, every qos source on the carrier takes it.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from prometheus_client import Counter

from zonewatch import wire

__all__ = ["Commands", "REMEMBER"]

log = logging.getLogger(__name__)

REMEMBER = 256   # command ids kept to spot a repeat


class Commands:
    """See the module docstring."""

    def __init__(self, zone: str, probe: str, counter: Counter | None = None) -> None:
        self.zone, self.probe, self.counter = zone, probe, counter
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._logged: set[str] = set()
        self.counts: dict[tuple[str, str], int] = {}   # (kind, result) -> messages (tests read it too)

    def handle(self, payload: bytes, sources: Mapping[str, tuple[Any, Any]], now_ns: int) -> list[str]:
        """Check one command payload and act on it; return the names of the sources asked for a round (to be
        polled at once). ``sources`` is the agent's polled sources by name, as (config, source)."""
        try:
            command = wire.decode_command(payload)
        except wire.WireError as exc:
            self._refuse("other", exc.reason, str(exc))
            return []
        kind = command.kind
        if (command.zone, command.probe) != (self.zone, self.probe):
            self._refuse(kind, "not_this_probe", f"command {command.id} is for {command.zone}/{command.probe}")
            return []
        if command.expired(now_ns):
            late = (now_ns - command.expires_ns) / 1e9
            self._refuse(kind, "expired", f"command {command.id} expired {late:.0f} s ago (a stale round is not run)")
            return []
        if command.id in self._seen:
            self._count(kind, "duplicate")
            return []
        self._seen[command.id] = None
        while len(self._seen) > REMEMBER:
            self._seen.popitem(last=False)
        action = command.action
        chosen = _qos_sources(sources, action.carrier, action.modem)
        if not chosen:
            self._refuse(kind, "no_source", f"diagnostic round {command.id}: no qos source on carrier "
                                            f"{action.carrier}" + (f" (modem {action.modem})" if action.modem else ""))
            return []
        for name in chosen:
            sources[name][1].request_round(action.transfers)
        self._count(kind, "accepted")
        log.info("diagnostic round %s asked by the centre for %s (carrier %s%s): %s", command.id, action.reason,
                 action.carrier, ", with transfers" if action.transfers else "", ", ".join(chosen))
        return chosen

    def _count(self, kind: str, result: str) -> None:
        self.counts[(kind, result)] = self.counts.get((kind, result), 0) + 1
        if self.counter is not None:
            self.counter.labels(kind, result).inc()

    def _refuse(self, kind: str, result: str, detail: str) -> None:
        self._count(kind, result)
        if result not in self._logged:
            self._logged.add(result)
            log.warning("refused a command from the centre (%s): %s; further ones like it are only counted in "
                        "zonewatch_commands", result, detail)


def _qos_sources(sources: Mapping[str, tuple[Any, Any]], carrier: str, modem: str) -> list[str]:
    """Return the qos sources on ``carrier`` with modem ``modem`` (all the carrier's if none has that name)."""
    on_carrier = [name for name, (config, source) in sources.items()
                  if getattr(config, "type", None) == "qos" and getattr(config, "carrier", None) == carrier
                  and hasattr(source, "request_round")]
    named = [name for name in on_carrier if modem and sources[name][0].modem == modem]
    return named or on_carrier
