"""What a simulated SNMP device answers that changes while it runs: snmpsim variation ``zonewatch``.

snmpsim serves each simulated device from a ``.snmprec`` walk (file name = community). Its own variation
modules make a poor zone: ``numeric`` with ``cumulative`` adds the whole time since its start at every read,
so a counter grows with the square of time and with how often it is polled; ``writecache`` keeps what a SET
wrote per OID for the whole process, so cutting one device's interface 1 cuts every device's interface 1; and
no counter knows that its interface is down. Here each device's state is its own (snmpsim hands a variation
module one context per data file), a counter counts only while its interface is up, and the time comes in as
``now``, so the logic is tested without waiting. The value after ``|<tag>:zonewatch|`` says what a record is::

    uptime=<ticks>               sysUpTime: <ticks> plus the hundredths of a second since the simulator started
    state=<n>                    an integer a SET changes (ifOperStatus, the UPS's status); starts as <n>
    octets=<Mbit/s>[,base=<n>]   an interface's octet counter: <base> plus what went through at about that
                                 rate (it swings smoothly by ``SWING`` either side over ``PERIOD_S`` of up
                                 time) while the interface's ifOperStatus (``1.3.6.1.2.1.2.2.1.8.<ifIndex>``,
                                 ``state=``; up(1) if the walk has none) is up(1), and nothing while it is not.
                                 Counter32 (tag 65) wraps at 2^32, Counter64 (tag 70) at 2^64, both from the
                                 same count: ifInOctets is ifHCInOctets modulo 2^32, as on a real device.

A SET is accepted on ``state=`` records only (an integer value); anything else answers with the request's
error status. ``variation/zonewatch.py`` beside this module is the file snmpsim loads (``VARIATION``, the
folder to give it as ``--variation-modules-dir``): it hands its globals to ``snmpsim_hooks``. Run as a
program, this module is snmpsim's command responder with that folder (and none of snmpsim's own modules)::

    python -m agent.sim.device --data-dir DIR --cache-dir DIR --port 16161    # serves until SIGTERM or Ctrl-C
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from zonewatch.extras import MissingExtra, require

__all__ = ["NAME", "IF_OPER_STATUS", "SWING", "PERIOD_S", "VARIATION", "SimDevice", "NotWritable", "parse",
           "initial_states", "snmpsim_hooks", "main"]

NAME: Final = "zonewatch"                      # the variation's name in the walks: ``<tag>:zonewatch``
IF_OPER_STATUS: Final = "1.3.6.1.2.1.2.2.1.8"  # IF-MIB ifOperStatus; up(1), down(2)
UP: Final = 1
SWING: Final = 0.1        # an interface's rate wanders this fraction either side of its nominal rate ...
PERIOD_S: Final = 120.0   # ... and back, over this many seconds of up time
_GOLDEN_ANGLE: Final = 2.399963   # radians: neighbouring interfaces swing out of step
_WRAP: Final = {"65": 2**32, "70": 2**64}
_KINDS: Final = ("uptime", "state", "octets")
_KEYS: Final = frozenset((*_KINDS, "base"))
VARIATION: Final = Path(__file__).with_name("variation")   # the folder snmpsim loads ``zonewatch`` from


class NotWritable(Exception):
    """A SET on a record that is not ``state=``."""


def parse(value: str) -> dict[str, str]:
    """Return the options of a record's value (``octets=180,base=42``); ValueError names what is wrong."""
    spec: dict[str, str] = {}
    for item in value.split(","):
        key, sep, text = item.strip().partition("=")
        if not sep or key not in _KEYS:
            raise ValueError(f"{NAME}: {item!r} in {value!r}: expected key=value with a key of {sorted(_KEYS)}")
        spec[key] = text
    kinds = [k for k in _KINDS if k in spec]
    if len(kinds) != 1:
        raise ValueError(f"{NAME}: {value!r} must have exactly one of {', '.join(_KINDS)}")
    return spec


def initial_states(snmprec: str) -> dict[str, int]:
    """Return every ``state=`` record of a walk's text (``oid|tag:zonewatch|state=n``): OID -> its first value."""
    states: dict[str, int] = {}
    for line in snmprec.splitlines():
        parts = line.strip().split("|", 2)
        if len(parts) == 3 and parts[1].endswith(f":{NAME}") and "state=" in parts[2]:
            states[parts[0].strip(".")] = int(parse(parts[2])["state"])
    return states


@dataclass
class _Uptime:
    """How long an interface has been up: ``up_s`` until ``since``, and whether it is up since then."""

    up: bool
    up_s: float
    since: float

    def seconds(self, now: float) -> float:
        return self.up_s + (max(now - self.since, 0.0) if self.up else 0.0)

    def change(self, up: bool, now: float) -> None:
        self.up_s, self.since, self.up = self.seconds(now), max(now, self.since), up


class SimDevice:
    """One simulated device's changing values; ``boot`` is when it started, on the clock ``now`` comes from.

    Not thread-safe: snmpsim answers one request at a time.
    """

    def __init__(self, boot: float, states: Mapping[str, int]) -> None:
        self.boot = boot
        self.states = dict(states)
        self._uptime: dict[str, _Uptime] = {}   # ifIndex -> how long that interface has been up

    def get(self, oid: str, tag: str, value: str, now: float) -> int:
        """Return what record ``oid`` (type ``tag``, options ``value``) answers at ``now``."""
        spec = parse(value)
        if "uptime" in spec:
            return (int(spec["uptime"]) + int((now - self.boot) * 100)) % 2**32
        if "state" in spec:
            return self.states.get(oid, int(spec["state"]))
        wrap = _WRAP.get(tag)
        if wrap is None:
            raise ValueError(f"{NAME}: {oid}: octets= needs a counter (tag 65 or 70), not tag {tag}")
        index = oid.rsplit(".", 1)[-1]
        up_s = self._interface(index).seconds(now)
        phase = _GOLDEN_ANGLE * int(index)
        # The integral of rate * (1 + SWING * sin(2 pi t / PERIOD_S + phase)) over the up time: never decreasing.
        swung = up_s + SWING * PERIOD_S / (2 * math.pi) * (math.cos(phase) - math.cos(2 * math.pi * up_s / PERIOD_S
                                                                                       + phase))
        return (int(spec.get("base", "0")) + int(float(spec["octets"]) * 1e6 / 8 * swung)) % wrap

    def set(self, oid: str, value: str, new: int, now: float) -> int:
        """Store ``new`` for record ``oid`` at ``now`` (an ifOperStatus also starts or stops its counters)."""
        if "state" not in parse(value):
            raise NotWritable(oid)
        if oid.startswith(IF_OPER_STATUS + "."):
            self._interface(oid.rsplit(".", 1)[-1]).change(new == UP, now)
        self.states[oid] = new
        return new

    def _interface(self, index: str) -> _Uptime:
        uptime = self._uptime.get(index)
        if uptime is None:   # made before any SET changes its state: from the walk's value, since boot
            up = self.states.get(f"{IF_OPER_STATUS}.{index}", UP) == UP
            uptime = self._uptime[index] = _Uptime(up, 0.0, self.boot)
        return uptime


Variate = Callable[..., tuple[Any, str, Any]]


def snmpsim_hooks(namespace: MutableMapping[str, Any], clock: Callable[[], float] = time.monotonic
                  ) -> tuple[Callable[..., None], Variate, Callable[..., None]]:
    """Return snmpsim's ``init``, ``variate`` and ``shutdown`` for the variation file whose globals are
    ``namespace``: snmpsim puts the requested device's own ``agentContext`` there before each ``variate``,
    and the device's state lives in it, made from its walk (``dataFile``) at its first request."""
    boot = clock()

    def init(**_context: Any) -> None:
        """Nothing to prepare: a device's state is made at its first request."""

    def variate(oid: Any, tag: str, value: str, **context: Any) -> tuple[Any, str, Any]:
        if not context["nextFlag"] and not context["exactMatch"]:
            return context["origOid"], tag, context["errorStatus"]
        own: MutableMapping[str, Any] = namespace["agentContext"]
        device = own.get(NAME)
        if not isinstance(device, SimDevice):
            device = own[NAME] = SimDevice(boot, initial_states(Path(context["dataFile"]).read_text()))
        if context["setFlag"]:
            try:
                return oid, tag, device.set(str(oid), value, int(context["origValue"]), clock())
            except (NotWritable, TypeError, ValueError):
                return context["origOid"], tag, context["errorStatus"]
        return oid, tag, device.get(str(oid), tag, value, clock())

    def shutdown(**_context: Any) -> None:
        """Nothing to release: the state is in memory and goes with the process."""

    return init, variate, shutdown


def main(argv: list[str] | None = None) -> int:
    """Serve the walks of ``--data-dir`` on 127.0.0.1 with snmpsim and this variation; return its exit code."""
    parser = argparse.ArgumentParser(prog="python -m agent.sim.device", description=main.__doc__)
    parser.add_argument("--data-dir", required=True, help="folder of <community>.snmprec walks")
    parser.add_argument("--cache-dir", required=True, help="folder for snmpsim's indexes")
    parser.add_argument("--port", type=int, required=True, help="UDP port on 127.0.0.1")
    parser.add_argument("--verbose", action="store_true", help="log every answer (default: errors only)")
    args = parser.parse_args(argv)
    try:
        require("snmpsim.commands.responder", "python -m agent.sim.device")
    except MissingExtra as exc:
        print(exc, file=sys.stderr)
        return 1
    from snmpsim.commands import responder  # the demo extra; it reads its arguments from sys.argv

    sys.argv = ["snmpsim-command-responder", f"--data-dir={args.data_dir}", f"--cache-dir={args.cache_dir}",
                f"--variation-modules-dir={VARIATION}", f"--agent-udpv4-endpoint=127.0.0.1:{args.port}",
                f"--log-level={'info' if args.verbose else 'error'}"]
    return int(responder.main() or 0)


if __name__ == "__main__":
    sys.exit(main())
