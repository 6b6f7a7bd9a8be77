"""End to end through real parts: modem (pty) and snmpd -> agent -> spool -> mosquitto -> collector ->
VictoriaMetrics (read back with PromQL) or SQLite; every value compared with what the peers served.

The expected values come from the peers, not from our code: interface names and counters from net-snmp's
own ``snmpbulkwalk``, signal from the raw ``+CESQ`` numbers the simulated modem answers, converted here by
hand as 3GPP TS 27.007 defines (RSRP = raw - 141 dBm, RSRQ = raw / 2 - 20 dB, 255 = unknown).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.sim.modem import SimModem
from collector.storage import SqliteStorage
from collector.storage.sqlite import SqliteWriter
from tests import services
from tests.conftest import SNMP_V3_USER

pytestmark = pytest.mark.integration

IF_NAME, IF_ADMIN, IF_OPER = "1.3.6.1.2.1.31.1.1.1.1", "1.3.6.1.2.1.2.2.1.7", "1.3.6.1.2.1.2.2.1.8"
IF_HC_IN, IF_HC_OUT = "1.3.6.1.2.1.31.1.1.1.6", "1.3.6.1.2.1.31.1.1.1.10"


def walk(port: int, oid: str) -> dict[str, str]:
    """Return ifIndex -> value of one column, as net-snmp's snmpbulkwalk prints it."""
    out = subprocess.run(["snmpbulkwalk", "-v2c", "-c", "public", "-On", "-Oqe", f"127.0.0.1:{port}", oid],
                         capture_output=True, text=True, check=True).stdout
    rows = (line.split(" ", 1) for line in out.splitlines() if line.startswith(f".{oid}."))
    return {name.rsplit(".", 1)[1]: value.strip().strip('"') for name, value in rows}


@pytest.fixture
def modems() -> Iterator[tuple[SimModem, SimModem]]:
    good, blind = SimModem(), SimModem()
    good.cesq = (99, 99, 255, 255, 19, 46)  # RSRQ raw 19 -> -10.5 dB, RSRP raw 46 -> -95 dBm
    good.csq = (17, 99)  # RSSI -79 dBm
    good.set_registered(True, plmn="45204", cell="5F1EA15")
    blind.cesq = (99, 99, 255, 255, 255, 255)  # the modem knows neither: no field, never a number
    blind.csq = (99, 99)
    blind.set_registered(True, plmn="45202", cell="2B0C40A")
    with good, blind:
        yield good, blind


def agent_yaml(tmp: Path, broker: int, snmp_port: int, good: SimModem, blind: SimModem) -> Path:
    user, auth, priv = SNMP_V3_USER
    path = tmp / "agent.yaml"
    path.write_text(f"""
probe: {{id: p1, zone: test-zone, area: gate-a}}
mqtt: {{host: 127.0.0.1, port: {broker}}}
spool: {{path: {tmp / 'spool.db'}}}
metrics: {{enabled: false}}
self_interval: 1h
sources:
  - {{type: cellular, name: viettel, port: {good.port}, interval: 2s, timeout: 1s}}
  - {{type: cellular, name: vinaphone, port: {blind.port}, interval: 2s, timeout: 1s}}
  - type: snmp
    name: bts-01
    host: 127.0.0.1
    port: {snmp_port}
    user: {user}
    auth_key: {{env: ZW_TEST_AUTH}}
    priv_key: {{env: ZW_TEST_PRIV}}
    interval: 2s
    site: site-a
""")
    return path


def run_slice(tmp: Path, broker: int, snmpd: services.Service, modems: tuple[SimModem, SimModem],
              storage_yaml: str) -> dict[str, dict[str, str]]:
    """Run collector and agent until ``ready`` holds; return the snmpd walks taken before and after."""
    user, auth, priv = SNMP_V3_USER
    before = {oid: walk(snmpd.port, oid) for oid in (IF_HC_IN, IF_HC_OUT)}
    coll_cfg = tmp / "collector.yaml"
    coll_cfg.write_text(f"mqtt: {{host: 127.0.0.1, port: {broker}, client_id: zw-e2e}}\n{storage_yaml}\n"
                        f"queue: {{path: '{tmp / 'intake.db'}'}}\nhttp: {{enabled: false}}\n")
    env = {"ZW_TEST_AUTH": auth, "ZW_TEST_PRIV": priv}
    collector = services.start_zonewatch("collector", ["-c", str(coll_cfg), "run"], tmp)
    agent = services.start_zonewatch("agent", ["-c", str(agent_yaml(tmp, broker, snmpd.port, *modems)), "run"], tmp,
                                     env=env)
    spool = tmp / "spool.db"
    try:

        def delivered() -> int:
            """Return the last seq out of the spool (acknowledged by the broker) with none before it waiting."""
            db = sqlite3.connect(spool)
            try:
                last = db.execute("SELECT value FROM meta WHERE key='seq'").fetchone()[0]
                first_waiting = db.execute("SELECT min(id) FROM entries").fetchone()[0]
            finally:
                db.close()
            return int(last if first_waiting is None else first_waiting - 1)

        # Three batches out: the polls of 5 s each (spool.coalesce), at least two polls of every source.
        services.wait_for(lambda: delivered() >= 3, 60, "the agent to deliver two rounds of polls")
        sent = delivered()

        def stored() -> bool:
            # The broker has them; the collector may still be taking them in: stopping it now would leave the
            # last ones at the broker. Its bookkeeping says what it has written (stored with the deletion).
            db = sqlite3.connect(f"file:{tmp / 'intake.db'}?mode=ro", uri=True)
            try:
                rows = db.execute("SELECT watermark, above FROM seqstate WHERE probe = 'test-zone/p1'").fetchall()
            finally:
                db.close()
            tops = [max([mark, *(hi for _, hi in json.loads(above))]) for mark, above in rows]
            return max(tops, default=0) >= sent

        services.wait_for(stored, 60, "the collector to write everything the agent delivered")
    finally:
        agent.stop()
        collector.stop()  # it writes what it received before it exits
    assert agent.proc.returncode == 0, agent.log_tail(40)
    assert collector.proc.returncode == 0, collector.log_tail(40)
    after = {oid: walk(snmpd.port, oid) for oid in (IF_HC_IN, IF_HC_OUT)}
    return {"in_before": before[IF_HC_IN], "in_after": after[IF_HC_IN],
            "out_before": before[IF_HC_OUT], "out_after": after[IF_HC_OUT]}


def check_interfaces(points: dict[str, dict[str, int]], port: int, walks: dict[str, dict[str, str]]) -> None:
    """Compare the stored interface samples (ifname -> field -> newest value) with net-snmp's walks."""
    names = walk(port, IF_NAME)
    admin, oper = walk(port, IF_ADMIN), walk(port, IF_OPER)
    assert set(points) == set(names.values())  # every interface, by its ifName, nothing else
    for index, name in names.items():
        stored = points[name]
        assert stored["admin_up"] == (1 if admin[index] == "1" else 0), name
        assert stored["oper_up"] == (1 if oper[index] == "1" else 0), name
        for field, key in (("in_octets", "in"), ("out_octets", "out")):
            low, high = int(walks[f"{key}_before"][index]), int(walks[f"{key}_after"][index])
            if low == high:  # a quiet interface: its counter must be exactly what snmpd served
                assert stored[field] == low, (name, field)
            else:  # loopback carries our own SNMP traffic; the stored value lies between the two walks
                assert low <= stored[field] <= high, (name, field, low, stored[field], high)


def test_readings_reach_victoriametrics_exactly(tmp_path: Path, mosquitto: services.Service, snmpd: services.Service,
                                               victoriametrics: services.Service,
                                               modems: tuple[SimModem, SimModem]) -> None:
    walks = run_slice(tmp_path, mosquitto.port, snmpd, modems,
                      f"storage: {{type: victoriametrics, url: '{victoriametrics.url}'}}")
    url = victoriametrics.url

    def one(promql: str) -> float:
        result = services.vm_query(url, promql)
        assert len(result) == 1, (promql, result)
        return float(result[0]["value"][1])  # type: ignore[index]

    services.wait_for(lambda: bool(services.vm_query(url, "cellular_rsrp_dbm")), 10, "cellular_rsrp_dbm in VM")
    sel = '{zone="test-zone",probe="p1",modem="viettel",carrier="452-04",rat="lte",cell="5F1EA15"}'
    assert one(f"last_over_time(cellular_rsrp_dbm{sel}[10m])") == -95.0
    assert one(f"last_over_time(cellular_rsrq_db{sel}[10m])") == -10.5
    assert one(f"last_over_time(cellular_rssi_dbm{sel}[10m])") == -79.0
    assert one(f"last_over_time(cellular_registered{sel}[10m])") == 1.0
    # The blind modem: registered, on VinaPhone, and no signal series at all (255 and 99 are not numbers).
    assert one('last_over_time(cellular_registered{modem="vinaphone",carrier="452-02"}[10m])') == 1.0
    for field in ("rsrp_dbm", "rsrq_db", "rssi_dbm"):
        assert services.vm_query(url, f'cellular_{field}{{modem="vinaphone"}}') == []

    assert one('last_over_time(device_up{device="bts-01",site="site-a",zone="test-zone"}[10m])') == 1.0
    assert one('last_over_time(device_uptime_s{device="bts-01"}[10m])') > 0
    points: dict[str, dict[str, int]] = {}
    for field in ("admin_up", "oper_up", "in_octets", "out_octets"):
        for row in services.vm_query(url, f'last_over_time(interface_{field}{{device="bts-01"}}[10m])'):
            labels = row["metric"]  # type: ignore[index]
            assert labels["zone"] == "test-zone" and labels["probe"] == "p1"  # type: ignore[index]
            points.setdefault(labels["ifname"], {})[field] = int(float(row["value"][1]))  # type: ignore[index]
    check_interfaces(points, snmpd.port, walks)


def test_readings_reach_sqlite_when_no_tsdb_is_configured(tmp_path: Path, mosquitto: services.Service,
                                                          snmpd: services.Service,
                                                          modems: tuple[SimModem, SimModem]) -> None:
    db = tmp_path / "zw.db"
    walks = run_slice(tmp_path, mosquitto.port, snmpd, modems, f"storage: {{type: sqlite, path: '{db}'}}")
    store = SqliteWriter(SqliteStorage(type="sqlite", path=str(db)))
    try:
        rsrp = store.latest("cellular", "rsrp_dbm")
        assert [(p.tags["modem"], p.tags["carrier"], p.value) for p in rsrp] == [("viettel", "452-04", -95)]
        assert [p.value for p in store.latest("cellular", "rsrq_db")] == [-10.5]
        assert {p.tags["modem"]: p.value for p in store.latest("cellular", "registered")} == {"viettel": 1,
                                                                                              "vinaphone": 1}
        assert store.latest("cellular", "rssi_dbm", {"modem": "vinaphone"}) == []
        points: dict[str, dict[str, int]] = {}
        for field in ("admin_up", "oper_up", "in_octets", "out_octets"):
            for p in store.latest("interface", field, {"device": "bts-01"}):
                assert (p.tags["zone"], p.tags["probe"]) == ("test-zone", "p1")
                points.setdefault(p.tags["ifname"], {})[field] = int(p.value)
        check_interfaces(points, snmpd.port, walks)
    finally:
        store.close()
