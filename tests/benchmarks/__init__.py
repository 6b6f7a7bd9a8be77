"""Benchmarks, run by hand from the repository root (pytest does not collect them); each says how and what.

    bench_snmp.py     CPU per varbind of each SNMP client against net-snmp's snmpbulkwalk (goal: <= 5x)
    bench_memory.py   RSS of an agent polling 50 SNMP devices and 4 modems (goal: <= 60 MB)
    bench_spool.py    probe spool write rate and backlog drain
    bench_ingest.py   collector ingest throughput
    snmprec.py        simulated switches for snmpsim (bench_snmp, bench_memory)
"""
