"""Run every fuzz target with many examples and print, per target, the inputs tried, the crashes and the time.

    python tests/fuzz/run_long.py --examples 100000 [--target wire --target at ...]

A crash does not stop the run: each distinct one is printed once with the shortest input that caused it. Known
bugs (pinned by the xfail tests in test_fuzz.py) are counted apart. The exit status is 1 if any target crashed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

TARGETS = {
    "wire": "test_wire_decode",
    "fastpath": "test_ingest_fast_path",
    "fastdecode": "test_engine_fast_decode",
    "at": "test_at_parsers",
    "transcript": "test_transcript",
    "mmcli": "test_mmcli",
    "snmp": "test_snmp_profiles",
    "snmp_value": "test_snmp_value_conversion",
    "trap_event": "test_trap_event",
    "traps": "test_trap_datagrams",
    "config": "test_config_loader",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=100_000, help="examples per target (default 100000)")
    parser.add_argument("--target", action="append", choices=sorted(TARGETS), help="run only this target (repeatable)")
    args = parser.parse_args(argv)
    os.environ["ZW_FUZZ_EXAMPLES"] = str(args.examples)  # read when the test module is imported
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

    import logging

    logging.disable(logging.CRITICAL)  # drops are logged once per sender and reason; not wanted here
    from tests.fuzz import test_fuzz as fuzz

    fuzz.COLLECT = True
    crashed = False
    print(f"{'target':<12} {'inputs':>9} {'crashes':>8} {'known':>7} {'seconds':>8}", flush=True)
    for name in args.target or list(TARGETS):
        started = time.monotonic()
        getattr(fuzz, TARGETS[name])()
        seconds = time.monotonic() - started
        tally = fuzz.TALLY.get(name, fuzz.Tally())
        known = sum(tally.known.values())
        print(f"{name:<12} {tally.tried:>9} {tally.crashes:>8} {known:>7} {seconds:>8.1f}", flush=True)
        for signature, shortest in sorted(tally.smallest.items()):
            print(f"    {signature}\n        shortest input: {shortest[:400]}", flush=True)
        crashed = crashed or tally.crashes > 0
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
