"""Alert truth end to end, real parts: snmpsim devices, mosquitto behind TLS with the rendered ACL and passwords,
a real agent and collector, VictoriaMetrics and a webhook per carrier and for the NOC.

The zone: switch ``agg-2`` (Viettel's) and the shared BTS ``bts-7`` behind it (inventory ``parent``; owned
by Viettel and VinaPhone), both served by one snmpsim process that the test freezes (SIGSTOP: nothing
answers, as when the switch in front of the BTS dies) and thaws (SIGCONT: both answer again at the same
moment; whichever the probe polls first is its own schedule's business, as in the field).

What must hold:
- the switch pages Viettel; the BTS behind it is muted, and VinaPhone (which owns the BTS, not the switch)
  hears of the switch once, naming its BTS; when both come back the BTS never pages anyone, in whatever
  order they are polled;
- an alert muted for its whole life ends in the store too (``firing`` 0 in VictoriaMetrics, and the Alerts
  dashboard's history query says so);
- a fault that cleared while the collector was down resolves within a poll of its restart, not when the
  restart grace (120 s, the default) is over, and ``endsAt`` is when it cleared;
- a probe stopped on purpose (SIGTERM) and restarted pages nobody; a probe killed (SIGKILL) pages the NOC.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import services
from tests.centre import Centre
from tests.dashboards import grafana

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
WAIT = 30.0


def inventory_text(hooks: str) -> str:
    return f"""\
zones:
  truth: {{name: Truth Park, areas: [gate-a]}}
carriers:
  viettel: {{plmn: 452-04, name: Viettel, notify: [{{type: webhook, url: "{hooks}/viettel"}}]}}
  vinaphone: {{plmn: 452-02, name: VinaPhone, notify: [{{type: webhook, url: "{hooks}/vinaphone"}}]}}
sites:
  pop-1: {{zone: truth, area: gate-a, kind: fibre_pop, owners: [viettel]}}
  bts-site-7: {{zone: truth, area: gate-a, kind: bts, owners: [viettel, vinaphone]}}
devices:
  agg-2: {{site: pop-1, kind: switch, owners: [viettel], probe: p1}}
  bts-7: {{site: bts-site-7, kind: bts, owners: [viettel, vinaphone], parent: agg-2, probe: p1}}
probes:
  p1: {{zone: truth, area: gate-a}}
"""


class Zone:
    """The centre (broker, collector, webhooks), VictoriaMetrics, snmpsim and the agent; all of it stopped with the
    centre (snmpsim thawed first)."""

    def __init__(self, centre: Centre) -> None:
        self.centre = centre
        self.tmp = tmp = centre.tmp
        self.hooks = centre.hooks
        data = tmp / "snmprec"
        data.mkdir()
        shutil.copy(ROOT / "collector" / "demo_data" / "sw-core.snmprec", data / "agg-2.snmprec")
        shutil.copy(ROOT / "collector" / "demo_data" / "bts-01.snmprec", data / "bts-7.snmprec")
        self.snmpsim = centre.keep(services.start_snmpsim(   # the demo's walks need its variation module
            tmp / "snmpsim", data, variation=ROOT / "agent" / "sim" / "variation"))
        self.frozen = False
        centre.stack.callback(self.thaw)   # before snmpsim stops: a frozen process does not act on SIGTERM
        self.vm = centre.keep(services.start_victoriametrics(tmp / "vm"))
        centre.write_config(alerting={
            "interval": "500ms", "restart_grace": "120s",
            "settings": {"probe_timeout": "15s", "device_down_polls": 2, "planned_stop_max": "60s"},
            "flap": {"changes": 20},   # the same switch fails three times here: flap control is not tested here
        }, storage={"type": "victoriametrics", "url": self.vm.url})
        self.collector = self.start_collector()
        sources = "".join(
            f"  - {{type: snmp, name: {name}, host: 127.0.0.1, port: {self.snmpsim.port}, version: v2c, "
            f"community: {name}, interval: 1s, timeout: 500ms, retries: 0, site: {site}}}\n"
            for name, site in (("agg-2", "pop-1"), ("bts-7", "bts-site-7")))
        (tmp / "agent.yaml").write_text(
            "probe: {id: p1, zone: truth, area: gate-a}\n"
            f"mqtt: {{host: 127.0.0.1, port: {centre.broker.port}, username: p1, password: {{env: ZW_MQTT_PASSWORD}}, "
            f"keepalive: 5s, tls: {{ca_file: '{centre.ca}'}}}}\n"
            f"spool: {{path: '{tmp / 'spool.db'}'}}\nmetrics: {{enabled: false}}\nself_interval: 2s\n"
            f"sources:\n{sources}")
        self.agent = self.start_agent()

    # ------------------------------------------------------------------------------------------ parts

    def start_collector(self) -> services.Service:
        return self.centre.start_collector()

    def start_agent(self) -> services.Service:
        log = self.tmp / "agent" / "agent.log"
        seen = log.read_text().count(" running ") if log.exists() else 0
        return self.centre.keep(services.start_zonewatch(
            "agent", ["-c", str(self.tmp / "agent.yaml"), "run"], self.tmp / "agent",
            env={"ZW_MQTT_PASSWORD": self.centre.passwords["p1"]},
            ready=lambda: log.read_text().count(" running ") > seen))

    def freeze(self) -> None:
        """Nothing answers: both devices stop at once (the switch in front of the BTS is dead)."""
        os.kill(self.snmpsim.pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        if self.frozen:
            os.kill(self.snmpsim.pid, signal.SIGCONT)
        self.frozen = False

    # ------------------------------------------------------------------------------------------ reading

    def sent(self, path: str) -> list[dict[str, Any]]:
        """Every alert ZoneWatch sent to the webhook at ``/path``, in arrival order."""
        return [a for h in self.hooks.at(f"/{path}") for a in h.body["alerts"]]

    def has(self, path: str, status: str, alertname: str, **labels: str) -> bool:
        return any(a["status"] == status and a["labels"]["alertname"] == alertname
                   and all(a["labels"].get(k) == v for k, v in labels.items()) for a in self.sent(path))

    def count(self, path: str, status: str, alertname: str) -> int:
        return sum(1 for a in self.sent(path) if a["status"] == status and a["labels"]["alertname"] == alertname)

    def wait(self, path: str, status: str, alertname: str, what: str, timeout: float = WAIT,
             **labels: str) -> None:
        services.wait_for(lambda: self.has(path, status, alertname, **labels), timeout,
                          f"{what}; /{path} got {[(a['status'], a['labels']) for a in self.sent(path)]}")

    def stored(self, field: str, **labels: str) -> float | None:
        """Return the newest value of ``alert_<field>`` for the one alert series matching ``labels``."""
        matchers = ",".join(f'{k}="{v}"' for k, v in labels.items())
        result = services.vm_query(self.vm.url, f"last_over_time(alert_{field}{{{matchers}}}[1h])")
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None  # type: ignore[index]

    def pages_about(self, device: str) -> list[tuple[str, str, str]]:
        """(receiver, status, alertname) of every notification about ``device`` itself, anywhere."""
        return [(path, a["status"], a["labels"]["alertname"]) for path in ("viettel", "vinaphone", "noc")
                for a in self.sent(path) if a["labels"].get("device") == device]


def _time(text: str) -> float:
    """Return an RFC 3339 time with up to nanoseconds (``2026-12-06T20:30:00.123456789Z``) as epoch seconds."""
    whole, _, frac = text.removesuffix("Z").partition(".")
    return dt.datetime.fromisoformat(whole + "+00:00").timestamp() + float(f"0.{frac or 0}")


@pytest.fixture(scope="module")
def zone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zone]:
    with Centre(tmp_path_factory.mktemp("truth"), inventory_text, ca_name="truth test CA") as centre:
        z = Zone(centre)
        # The collector has judged both devices up from the probe's polls (DeviceDown cannot have fired).
        services.wait_for(lambda: (z.tmp / "collector" / "collector.log").exists() and services.vm_query(
            z.vm.url, 'count(last_over_time(device_up{device=~"agg-2|bts-7"}[1m]) == 1)') != [], 60,
                          "the probe's polls of both devices in VictoriaMetrics")
        yield z


def outage(zone: Zone, cycle: int) -> None:
    """Freeze both devices until agg-2 has paged (the BTS is muted under it), then thaw them."""
    zone.freeze()
    services.wait_for(lambda: zone.count("viettel", "firing", "DeviceDown") >= cycle, WAIT,
                      f"DeviceDown agg-2 to Viettel (outage {cycle})")
    services.wait_for(lambda: zone.stored("muted", alertname="DeviceDown", device="bts-7", carrier="452-02") == 1
                      and zone.stored("firing", alertname="DeviceDown", device="bts-7", carrier="452-02") == 1,
                      WAIT, "bts-7's DeviceDown stored firing and muted")
    zone.thaw()
    services.wait_for(lambda: zone.count("viettel", "resolved", "DeviceDown") >= cycle, WAIT,
                      f"DeviceDown agg-2 resolved (outage {cycle})")
    services.wait_for(lambda: zone.stored("firing", alertname="DeviceDown", device="bts-7", carrier="452-02") == 0,
                      WAIT, "bts-7's DeviceDown ended in the store")


def test_1_a_parent_s_recovery_never_pages_its_children(zone: Zone) -> None:
    for cycle in (1, 2):   # two recoveries: the probe's poll order is its own, so give both orders a chance
        outage(zone, cycle)
        time.sleep(2)  # a few evaluations and polls after the recovery: a stale page would have gone out
        assert zone.pages_about("bts-7") == [], zone.pages_about("bts-7")
    assert [a["labels"]["device"] for a in zone.sent("viettel")] == ["agg-2"] * 4
    # VinaPhone owns the BTS, not the switch: it heard of the switch, naming its BTS, once per outage.
    notices = [a for a in zone.sent("vinaphone") if a["status"] == "firing"]
    assert [(a["labels"]["alertname"], a["labels"]["device"]) for a in notices] == [("DeviceDown", "agg-2")] * 2
    assert all("bts-7" in a["annotations"]["summary"] for a in notices)


def test_2_an_alert_muted_for_its_whole_life_ends_in_the_store_and_on_the_dashboard(zone: Zone) -> None:
    for carrier in ("452-04", "452-02"):
        assert zone.stored("firing", alertname="DeviceDown", device="bts-7", carrier=carrier) == 0
    (history,) = [t for t in grafana.targets() if t.uid == "zw-alerts" and t.panel == "Alert history"
                  and t.ref == "C"]   # "still firing" of every alert with a sample in the range
    expr = grafana.interpolate(history.expr, {"zone": "truth", "carrier": ".*", "severity": ".*",
                                              **grafana.hour_range()})
    rows = {(r["metric"].get("alertname"), r["metric"].get("device"), r["metric"].get("carrier")):  # type: ignore[union-attr]
            float(r["value"][1]) for r in services.vm_query(zone.vm.url, expr)}  # type: ignore[index]
    assert rows[("DeviceDown", "bts-7", "452-04")] == 0 and rows[("DeviceDown", "bts-7", "452-02")] == 0, rows
    assert all(value == 0 for value in rows.values()), rows


def test_3_a_fault_cleared_while_the_collector_was_down_resolves_at_once_with_its_real_end(zone: Zone) -> None:
    before = zone.count("viettel", "firing", "DeviceDown")
    zone.freeze()
    services.wait_for(lambda: zone.count("viettel", "firing", "DeviceDown") > before, WAIT,
                      "DeviceDown agg-2 to Viettel")
    zone.collector.stop()
    zone.thaw()
    back = time.time()
    time.sleep(3)   # the probe polls both devices up a few times; the broker keeps it for the collector
    started = time.monotonic()
    zone.collector = zone.start_collector()
    services.wait_for(lambda: zone.count("viettel", "resolved", "DeviceDown") > before, WAIT,
                      "DeviceDown agg-2 resolved after the restart")
    took = time.monotonic() - started
    assert took < 20, f"resolved {took:.1f} s after the restart: the restart grace (120 s) held it"
    resolved = [a for a in zone.sent("viettel") if a["status"] == "resolved"][-1]
    ends = _time(resolved["endsAt"])
    assert back - 1.5 <= ends <= back + 2.0, f"endsAt {resolved['endsAt']} but the devices answered at {back}"
    assert zone.count("viettel", "firing", "DeviceDown") == before + 1   # no second page after the restart
    assert zone.pages_about("bts-7") == []


def test_4_a_probe_stopped_on_purpose_pages_nobody_a_killed_one_pages_the_noc(zone: Zone) -> None:
    zone.agent.stop(signal.SIGTERM)   # systemctl restart, an upgrade: it says "stopping" before it goes
    services.wait_for(lambda: zone.stored("muted", alertname="ProbeDown", probe="p1") == 1, WAIT,
                      "ProbeDown stored muted (a planned stop)")
    time.sleep(2)
    zone.agent = zone.start_agent()
    services.wait_for(lambda: zone.stored("firing", alertname="ProbeDown", probe="p1") == 0, WAIT,
                      "ProbeDown ended once the probe is back")
    assert not zone.has("noc", "firing", "ProbeDown"), zone.sent("noc")
    zone.agent.proc.send_signal(signal.SIGKILL)   # a crash: the broker publishes its last will
    zone.agent.proc.wait(10)
    zone.wait("noc", "firing", "ProbeDown", "ProbeDown to the NOC after SIGKILL", probe="p1")
