"""Benchmarks, run by hand from the repository root (pytest does not collect them); each says how and what.

    bench_snmp.py     CPU per varbind of each SNMP client against net-snmp's snmpbulkwalk (goal: <= 5x)
    bench_memory.py   RSS of an agent polling 50 SNMP devices and 4 modems (goal: <= 60 MB)
    bench_spool.py    probe spool write rate and backlog drain
    bench_ingest.py   collector ingest throughput
    snmprec.py        simulated switches for snmpsim (bench_snmp, bench_memory)

The ones with services keep their queues, logs and stores in a work directory that ``done_with`` removes at the end
(a run leaves up to hundreds of MB), unless asked to keep it.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def done_with(work: Path, keep: bool = False) -> None:
    """Remove a benchmark run's work directory, or, if ``keep``, say where it is."""
    if keep:
        print(f"kept {work} (logs, queues, stores)")
    else:
        shutil.rmtree(work, ignore_errors=True)
