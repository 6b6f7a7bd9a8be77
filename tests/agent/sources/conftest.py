"""Fixtures of the cellular source's tests: a simulated modem on a real pty (``agent.sim.modem``) and a maker of
sources that closes each one it made."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest

from agent.sim.modem import SimModem
from agent.sources.cellular import CellularConfig, CellularSource


@pytest.fixture
def modem() -> Iterator[SimModem]:
    """A generic modem answering on a pty; stopped (its pty closed) after the test."""
    with SimModem() as sim:
        yield sim


@pytest.fixture
def new_source() -> Iterator[Callable[[CellularConfig], CellularSource]]:
    """Return a function that makes a ``CellularSource``; every source it made is closed after the test."""
    made: list[CellularSource] = []

    def new(config: CellularConfig) -> CellularSource:
        made.append(CellularSource(config))
        return made[-1]

    yield new
    for source in made:
        asyncio.run(source.close())
