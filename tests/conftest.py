"""Fixtures for real services; each is started on free loopback ports and stopped by PID afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import services

SNMP_V3_USER = ("zwtest", "auth-pass-123", "priv-pass-456")


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[services.Service]:
    svc = services.start_mosquitto(tmp_path / "mosquitto")
    yield svc
    svc.stop()


@pytest.fixture
def snmpd(tmp_path: Path) -> Iterator[services.Service]:
    svc = services.start_snmpd(tmp_path / "snmpd", community="public", v3_user=SNMP_V3_USER)
    yield svc
    svc.stop()


@pytest.fixture
def victoriametrics(tmp_path: Path) -> Iterator[services.Service]:
    svc = services.start_victoriametrics(tmp_path / "vm")
    yield svc
    svc.stop()
