"""One poll of an SNMP source against a simulated device, for the device tests: the samples it gives, each checked
against the measurement catalogue (names, kinds, physical bounds)."""

from __future__ import annotations

import asyncio

from agent.sources.snmp import SnmpConfig, SnmpSource
from zonewatch.measurements import problems
from zonewatch.wire import Sample


def poll_checked(config: SnmpConfig, now_ns: int) -> list[Sample]:
    """Poll once at ``now_ns`` and close the source; fail if a sample is outside the measurement catalogue."""
    async def main() -> list[Sample]:
        source = SnmpSource(config)
        try:
            return await source.collect(now_ns)
        finally:
            await source.close()

    samples = asyncio.run(main())
    for s in samples:
        assert problems(s.measurement, s.tags, s.fields) == [], s
    return samples
