"""Hostile modems: a modem that floods its port costs one failed poll, a clear message, and bounded memory.

A real agent process reads four modems every second: a healthy simulated modem (``agent.sim.modem``) and three
ptys that answer every AT command with a flood (``tests.hostile.FloodingModem``): endless ``+CSQ`` lines and
never a final result code, one information line and then silence, or endless binary garbage with no line
break. What a user would notice:

- the healthy modem's readings keep arriving at its poll cadence;
- each flooding modem fails every poll (no readings), and the agent logs once, naming the modem, its port, the
  command and what is wrong with the answer;
- the agent reads a bounded amount per command: it stays alive and its memory and file descriptors do not
  grow, while the floods write megabytes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.sim.modem import SimModem
from tests import services
from tests.hostile import FLOODS, BatchSubscriber, FloodingModem, fd_count, rss_kb

pytestmark = pytest.mark.integration

# What the agent's log says about each flooding modem, after "source <name> (cellular) failed: modem <name> on
# <port>: ".
EXPECTED_LOG = {
    "lines": "ATE0 answered more than 256 lines without OK or ERROR",
    "no-final": "no answer to ATE0 within 500ms",
    "binary": "ATE0 answered more than 4096 bytes without a line break",
}


@pytest.fixture
def floods() -> Iterator[dict[str, FloodingModem]]:
    modems: dict[str, FloodingModem] = {}
    try:
        for behaviour in FLOODS:
            modems[behaviour] = FloodingModem(behaviour)
            modems[behaviour].start()
        yield modems
    finally:
        for modem in modems.values():
            modem.stop()


@pytest.fixture
def healthy_modem() -> Iterator[SimModem]:
    with SimModem() as modem:
        modem.set_registered(True)
        yield modem


def test_flooding_modems_fail_alone_with_a_clear_message_and_bounded_memory(
        tmp_path: Path, mosquitto: services.Service, healthy_modem: SimModem,
        floods: dict[str, FloodingModem]) -> None:
    sources = [f"  - {{type: cellular, name: healthy, port: {healthy_modem.port}, interval: 1s, timeout: 1s}}\n"]
    sources += [f"  - {{type: cellular, name: {name}, port: {m.port}, interval: 1s, timeout: 500ms}}\n"
                for name, m in floods.items()]
    config = tmp_path / "agent.yaml"
    config.write_text("probe: {id: p1, zone: hostile}\n"
                      f"mqtt: {{host: 127.0.0.1, port: {mosquitto.port}, keepalive: 5s}}\n"
                      f"spool: {{path: '{tmp_path / 'spool.db'}', coalesce: 0s}}\n"   # each poll counted as it comes
                      "metrics: {enabled: false}\nself_interval: 5s\nsources:\n" + "".join(sources))
    subscriber = BatchSubscriber(mosquitto.port)
    agent = services.start_zonewatch("agent", ["-c", str(config), "run"], tmp_path / "agent")
    try:
        def readings(name: str) -> int:
            return len(subscriber.samples("cellular", modem=name))

        services.wait_for(lambda: readings("healthy") >= 3, 30, "the healthy modem's first readings")
        services.wait_for(lambda: all(len(m.commands) >= 2 for m in floods.values()), 30,
                          "every flooding modem to be polled twice")
        warm_rss, warm_fds = rss_kb(agent.pid), fd_count(agent.pid)
        written = sum(m.written for m in floods.values())
        start, began = readings("healthy"), time.monotonic()
        services.wait_for(lambda: readings("healthy") >= start + 10 or not agent.alive(), 20,
                          "10 more readings of the healthy modem")
        window = time.monotonic() - began
        assert agent.alive(), agent.log_tail(40)

        log = agent.log.read_text()
        for name, modem in floods.items():
            assert len(modem.commands) >= 4, (name, modem.commands)  # polled all along, and failing each time
            assert readings(name) == 0, name
            line = f"source {name} (cellular) failed: modem {name} on {modem.port}: {EXPECTED_LOG[name]}"
            assert line in log, f"no line like {line!r} in the agent's log:\n{agent.log_tail(60)}"
            assert log.count(f"source {name} (cellular) failed") == 1, f"{name} reported more than once:\n{log}"
        assert "Traceback" not in log, log
        assert "source healthy" not in log, log

        flooded = floods["lines"].written + floods["binary"].written
        assert flooded > 10 * 4096, "the floods did not flood"  # the agent was offered plenty
        grew_kb, grew_fds = rss_kb(agent.pid) - warm_rss, fd_count(agent.pid) - warm_fds
        assert grew_kb < 20_000, (f"the agent's memory grew by {grew_kb} KiB in {window:.0f}s while the modems"
                                  f" wrote {sum(m.written for m in floods.values()) - written} bytes")
        assert grew_fds <= 4, f"the agent opened {grew_fds} more file descriptors"
    finally:
        agent.stop()
        subscriber.close()
    assert agent.proc.returncode == 0, agent.log_tail(40)
