"""The harness itself: every real service starts, answers and is gone after stop()."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests import services
from tests.conftest import SNMP_V3_USER

pytestmark = pytest.mark.integration


def test_snmpd_answers_v2c_and_v3(snmpd: services.Service) -> None:
    v2 = subprocess.run(["snmpget", "-v2c", "-c", "public", "-On", f"127.0.0.1:{snmpd.port}", "1.3.6.1.2.1.1.5.0"],
                        capture_output=True, text=True, check=True)
    assert "zw-test-snmpd" in v2.stdout
    user, auth, priv = SNMP_V3_USER
    v3 = subprocess.run(["snmpget", "-v3", "-l", "authPriv", "-u", user, "-a", "SHA", "-A", auth, "-x", "AES",
                         "-X", priv, f"127.0.0.1:{snmpd.port}", "1.3.6.1.2.1.1.5.0"],
                        capture_output=True, text=True, check=True)
    assert "zw-test-snmpd" in v3.stdout


def test_stop_ends_the_process(tmp_path: Path) -> None:
    svc = services.start_mosquitto(tmp_path / "m")
    assert svc.alive()
    svc.stop()
    assert not svc.alive()
    assert not services._tcp_open(svc.port)


def test_victoriametrics_and_alertmanager_are_ready(victoriametrics: services.Service, tmp_path: Path) -> None:
    assert services._http_ok(f"{victoriametrics.url}/health")
    am = services.start_alertmanager(tmp_path / "am", "route: {receiver: none}\nreceivers: [{name: none}]\n")
    try:
        assert services._http_ok(f"{am.url}/-/ready")
    finally:
        am.stop()
    assert not am.alive()


def test_missing_binary_is_a_failure_not_a_skip() -> None:
    with pytest.raises(services.ServiceError, match="not installed"):
        services.require("no-such-zonewatch-binary")
