"""Simulated devices for the benchmarks: snmpsim ``.snmprec`` text for a switch with N interfaces.

Each device has the system group, ifNumber, a full ifTable (22 columns) and ifXTable (19 columns), with
64-bit counters past 2^32 and a few interfaces down, in numeric OID order as snmpsim wants::

    interface_device("sw-07", 50)  -> text of sw-07.snmprec (2,060 varbinds: 41 per interface + 10)
"""

from __future__ import annotations

import random

SYSTEM = "1.3.6.1.2.1.1"
IF_TABLE = "1.3.6.1.2.1.2.2.1"
IFX_TABLE = "1.3.6.1.2.1.31.1.1.1"

# column -> snmprec tag: 2 INTEGER, 4 OCTET STRING (4x in hex), 6 OID, 65 Counter32, 66 Gauge32,
# 67 TimeTicks, 70 Counter64
_IF_COLUMNS = {1: "2", 2: "4", 3: "2", 4: "2", 5: "66", 6: "4x", 7: "2", 8: "2", 9: "67", 10: "65", 11: "65",
               12: "65", 13: "65", 14: "65", 15: "65", 16: "65", 17: "65", 18: "65", 19: "65", 20: "65",
               21: "66", 22: "6"}
_IFX_COLUMNS = {1: "4", 2: "65", 3: "65", 4: "65", 5: "65", 6: "70", 7: "70", 8: "70", 9: "70", 10: "70",
                11: "70", 12: "70", 13: "70", 14: "2", 15: "66", 16: "2", 17: "2", 18: "4", 19: "67"}


def _if_value(column: int, index: int, name: str, rng: random.Random) -> str:
    down = index % 7 == 0
    if column == 1:
        return str(index)
    if column == 2:
        return name
    if column == 3:
        return "6"  # ethernetCsmacd
    if column == 4:
        return "1500"
    if column == 5:
        return "4294967295"  # 10G: ifSpeed saturates, ifHighSpeed tells
    if column == 6:
        return f"0024d4{index:06x}"
    if column == 7:
        return "2" if index % 11 == 0 else "1"
    if column == 8:
        return "2" if down else "1"
    if column == 9:
        return str(rng.randrange(1, 10**8))
    if column == 21:
        return "0"
    if column == 22:
        return "0.0"
    return str(rng.randrange(0, 2**32))


def _ifx_value(column: int, index: int, name: str, rng: random.Random) -> str:
    if column == 1:
        return name
    if column in (14, 17):
        return "1"
    if column == 15:
        return "10000"
    if column == 16:
        return "2"
    if column == 18:
        return f"uplink to site {index}" if index % 3 == 0 else ""
    if column == 19:
        return "0"
    if 6 <= column <= 13:
        return str(rng.randrange(2**32, 2**63))
    return str(rng.randrange(0, 2**32))


def interface_device(name: str, interfaces: int, seed: int = 0) -> str:
    """Return the ``.snmprec`` text of a switch called ``name`` with ``interfaces`` ports."""
    rng = random.Random(f"{name}/{seed}")
    lines = [
        f"{SYSTEM}.1.0|4|ZoneWatch bench switch {name}",
        f"{SYSTEM}.2.0|6|1.3.6.1.4.1.8072.3.2.10",
        f"{SYSTEM}.3.0|67|{rng.randrange(10**6, 10**9)}",
        f"{SYSTEM}.4.0|4|noc@example.invalid",
        f"{SYSTEM}.5.0|4|{name}",
        f"{SYSTEM}.6.0|4|bench rack",
        f"{SYSTEM}.7.0|2|6",
        "1.3.6.1.2.1.2.1.0|2|" + str(interfaces),
    ]
    names = {i: f"ge-0/0/{i - 1}" for i in range(1, interfaces + 1)}
    for column, tag in _IF_COLUMNS.items():
        lines += [f"{IF_TABLE}.{column}.{i}|{tag}|{_if_value(column, i, names[i], rng)}" for i in names]
    for column, tag in _IFX_COLUMNS.items():
        lines += [f"{IFX_TABLE}.{column}.{i}|{tag}|{_ifx_value(column, i, names[i], rng)}" for i in names]
    lines += ["1.3.6.1.2.1.31.1.5.0|67|0", "1.3.6.1.6.3.10.2.1.3.0|2|" + str(rng.randrange(1, 10**6))]
    return "\n".join(lines) + "\n"
