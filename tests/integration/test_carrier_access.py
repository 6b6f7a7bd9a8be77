"""Each carrier sees only its own data: the zone scenario written through mosquitto and a collector with the
inventory (so the owner labels are added the real way) into a real VictoriaMetrics (its query cache on, as in
production), read through a real vmauth configured by ``render-vmauth``.

Viettel (452-04) and VinaPhone (452-02) share the BTS bts-a1 and the switch sw-pop; each has its own fibre
links and uplink group, and both the core-paths group; the UPS ups-a, the camera cam-l and the probes belong
to the zone. MobiFone (452-01) is a carrier of the inventory with no assets. Every panel query of every
dashboard is replayed as each carrier, then hostile requests: no carrier ever receives a series of an asset
it does not own, both owners see the shared BTS, the carrier without assets gets empty answers (not errors),
and writes and admin calls are refused. The zone authority's user reads exactly what VictoriaMetrics holds."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest

from collector.inventory import Inventory
from collector.provision import vmauth
from tests import services
from tests.dashboards import grafana
from tests.integration import zone_scenario as scn
from zonewatch.measurements import OWNER_LABEL_PREFIX, owner_label
from zonewatch.strict import load

pytestmark = pytest.mark.integration

VT, VN, MB = scn.VT, scn.VN, "452-01"
INVENTORY_YAML = scn.INVENTORY_YAML.replace("carriers:\n", f"carriers:\n  mobifone: {{plmn: '{MB}', name: MobiFone}}\n")
USERS = {VT: "viettel", VN: "vinaphone", MB: "mobifone"}
# What each carrier owns in the scenario, written out by hand from its inventory.
OWNS: dict[str, dict[str, set[str]]] = {
    VT: {"device": {"bts-a1", "sw-pop"}, "site": {"bts-a", "pop-l"}, "link": {"vt-fiber-1", "vt-fiber-2"},
         "group": {"vt-uplink", "core-paths"}, "port": {"ge-0/0/1", "ge-0/0/2", "ge-0/0/24"}},
    VN: {"device": {"bts-a1", "sw-pop"}, "site": {"bts-a", "pop-l"}, "link": {"vn-fiber-1", "vn-mw-1"},
         "group": {"vn-uplink", "core-paths"}, "port": {"ge-0/0/3", "ge-0/0/24", "eth1"}},
    MB: {"device": set(), "site": set(), "link": set(), "group": set(), "port": set()},
}
ALL = {"zone": scn.ZONE, "area": ".*", "carrier": ".*", "site": ".*", "device": ".*", "severity": ".*"}


@dataclass(frozen=True)
class Lab:
    vm: str
    vmauth: str
    passwords: dict[str, str]
    t0_s: int

    @property
    def now_s(self) -> float:
        return self.t0_s + scn.EVAL_OFFSET_S


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp("carrier-access")
    inventory = load(Inventory, INVENTORY_YAML, "inventory.yaml")
    t0_ns = scn.start_minute_ns(time.time())
    started: list[services.Service] = []
    try:
        started.append(broker := services.start_mosquitto(tmp / "mosquitto"))
        started.append(vm := services.start_victoriametrics(tmp / "vm", cache=True))
        scn.fill(broker.port, tmp, {"vm": f"storage: {{type: victoriametrics, url: '{vm.url}'}}\n"
                                          "alerting: {enabled: false}"}, t0_ns, inventory=inventory)
        scn.wait_for_vm(vm.url, t0_ns)
        out = tmp / "vmauth"
        vmauth.write(inventory, out, vm.url)
        started.append(proxy := services.start_vmauth(tmp / "vmauth-run", out / "vmauth.env"))
        passwords = {user: (out / "secrets" / user).read_text().strip()
                     for user in [*USERS.values(), vmauth.AUTHORITY]}
        yield Lab(vm.url, proxy.url, passwords, t0_ns // 10**9)
    finally:
        for service in reversed(started):
            service.stop()


def call(lab: Lab, user: str | None, path: str, params: dict[str, Any] | None = None, *, post: bool = True,
         query: str = "", password: str | None = None) -> tuple[int, bytes]:
    """Send a request to vmauth as ``user`` (POST form like Grafana's datasource, or GET); return status, body."""
    data = urlencode(params or {}, doseq=True).encode() if post else None
    url = f"{lab.vmauth}{path}" + (f"?{query}" if query else "" if post else f"?{urlencode(params or {}, doseq=True)}")
    request = urllib.request.Request(url, data=data, method="POST" if post else "GET")
    if user is not None:
        secret = password if password is not None else lab.passwords[user]
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def data(lab: Lab, user: str, path: str, params: dict[str, Any], **kw: Any) -> Any:
    status, body = call(lab, user, path, params, **kw)
    assert status == 200, f"{user} {path}: HTTP {status} {body[:200]!r}"
    doc = json.loads(body)
    assert doc["status"] == "success", doc
    return doc["data"]


def panel(lab: Lab, user: str, target: grafana.Target) -> list[dict[str, str]]:
    """Run ``target`` as Grafana would for the scenario hour, as ``user``; return the label sets it answered."""
    expr = grafana.interpolate(target.expr, {**ALL, **grafana.hour_range()})
    if target.instant:
        result = data(lab, user, "/api/v1/query", {"query": expr, "time": lab.now_s})["result"]
    else:
        result = data(lab, user, "/api/v1/query_range", {"query": expr, "start": lab.t0_s,
                                                          "end": lab.t0_s + (scn.MINUTES - 1) * scn.STEP_S,
                                                          "step": f"{scn.STEP_S}s"})["result"]
    return [r["metric"] for r in result]


def foreign(labels: dict[str, str], plmn: str) -> str | None:
    """Return why ``labels`` describe something carrier ``plmn`` does not own (None: its own, or no asset)."""
    owns = OWNS[plmn]
    for label in labels:
        if label.startswith(OWNER_LABEL_PREFIX) and label != owner_label(plmn) and owner_label(plmn) not in labels:
            return f"owner label {label}"
    if labels.get("carrier") and labels["carrier"] != plmn:
        return f"carrier {labels['carrier']}"
    for key in ("link", "group", "site", "device"):
        if labels.get(key) and labels[key] not in owns[key]:
            return f"{key} {labels[key]}"
    port = labels.get("ifname") or labels.get("port")
    if port and port not in owns["port"]:
        return f"port {port}"
    assets = ("carrier", "link", "group", "site", "device", "target", "area")
    if labels.get("probe") and not any(labels.get(k) for k in assets):
        return f"probe {labels['probe']}"   # a probe's own health is the zone's
    return None


def owned(metric: dict[str, str], plmn: str) -> bool:
    return metric.get(owner_label(plmn)) == "1"


@pytest.mark.parametrize("plmn", [VT, VN, MB])
def test_every_panel_shows_a_carrier_only_what_it_owns(lab: Lab, plmn: str) -> None:
    user = USERS[plmn]
    problems = []
    answered = 0
    for target in grafana.targets():
        for labels in panel(lab, user, target):
            answered += 1
            why = foreign(labels, plmn)
            if why is not None:
                problems.append(f"{target}: {why} in {labels}")
            if plmn == MB and any(k for k in labels if k != "__name__"):
                problems.append(f"{target}: a carrier without assets got {labels}")
    assert not problems, "\n".join(problems[:20])
    if plmn != MB:
        assert answered > 50   # the carriers' panels are not empty


@pytest.mark.parametrize("plmn", [VT, VN])
def test_both_owners_see_the_shared_bts_and_neither_sees_the_zone_s_equipment(lab: Lab, plmn: str) -> None:
    devices = next(t for t in grafana.targets() if t.uid == "zw-equipment" and t.panel == "Devices")
    assert {(r["site"], r["device"]) for r in panel(lab, USERS[plmn], devices)} == {("bts-a", "bts-a1"),
                                                                                   ("pop-l", "sw-pop")}
    values = data(lab, USERS[plmn], "/api/v1/label/device/values", {}, post=False)
    assert set(values) == {"bts-a1", "sw-pop"}
    links = data(lab, USERS[plmn], "/api/v1/label/link/values", {}, post=False)
    assert set(links) == OWNS[plmn]["link"]


def test_counts_without_labels_count_only_the_carrier_s_own(lab: Lab) -> None:
    firing = next(t for t in grafana.targets() if t.uid == "zw-zone-overview" and t.panel == "Firing alerts")
    expr = grafana.interpolate(firing.expr, {**ALL, **grafana.hour_range()})
    counts = {}
    for user in [*USERS.values(), vmauth.AUTHORITY]:
        result = data(lab, user, "/api/v1/query", {"query": expr, "time": lab.now_s})["result"]
        counts[user] = [float(r["value"][1]) for r in result]
    # firing at the end of the hour: core-paths (both), OpticalDegraded (VT), WeakSignal (VN), ProbeDown and
    # cam-l's DeviceDown (the zone's)
    assert counts == {"viettel": [2.0], "vinaphone": [2.0], "mobifone": [0.0], vmauth.AUTHORITY: [6.0]}


def test_the_zone_authority_reads_exactly_what_victoriametrics_holds(lab: Lab) -> None:
    for target in grafana.targets():
        expr = grafana.interpolate(target.expr, {**ALL, **grafana.hour_range()})
        via = panel(lab, vmauth.AUTHORITY, target)
        direct = scn.vm_api(lab.vm, "query" if target.instant else "query_range", query=expr,
                            **({"time": lab.now_s} if target.instant else
                               {"start": lab.t0_s, "end": lab.t0_s + (scn.MINUTES - 1) * scn.STEP_S,
                                "step": f"{scn.STEP_S}s"}))["result"]
        assert sorted(map(str, via)) == sorted(str(r["metric"]) for r in direct), str(target)


@pytest.mark.parametrize("plmn", [VT, VN, MB])
def test_hostile_reads_return_only_the_carrier_s_own_series(lab: Lab, plmn: str) -> None:
    user = USERS[plmn]
    window = {"start": lab.t0_s, "end": int(lab.now_s)}
    everything = {"query": '{__name__=~".+"}', "time": lab.now_s}
    seen: list[dict[str, str]] = []
    seen += [r["metric"] for r in data(lab, user, "/api/v1/query", everything)["result"]]
    # widening attempts: an OR-ed extra filter (form body and query string), another owner's extra_label
    seen += [r["metric"] for r in data(lab, user, "/api/v1/query",
                                       {**everything, "extra_filters[]": '{__name__=~".+"}'})["result"]]
    seen += [r["metric"] for r in data(lab, user, "/api/v1/query", everything,
                                       query=urlencode({"extra_filters": '{__name__=~".+"}'}))["result"]]
    seen += [r["metric"] for r in data(lab, user, "/api/v1/query", everything, post=False,
                                       query="")["result"]]
    other = next(p for p in (VT, VN) if p != plmn)
    seen += [r["metric"] for r in data(lab, user, "/api/v1/query", {
        **everything, "extra_label": f"{owner_label(other)}=1"})["result"]]
    seen += [r["metric"] for r in data(lab, user, "/api/v1/query_range", {
        "query": '{__name__=~".+"}', **window, "step": "600s"})["result"]]
    seen += data(lab, user, "/api/v1/series", {"match[]": '{__name__=~".+"}', **window})
    status, body = call(lab, user, "/api/v1/export", {"match[]": '{__name__=~".+"}', **window})
    assert status == 200
    seen += [json.loads(line)["metric"] for line in body.decode().splitlines() if line]
    assert all(owned(m, plmn) for m in seen), [m for m in seen if not owned(m, plmn)][:5]
    assert all(foreign(m, plmn) is None for m in seen), [m for m in seen if foreign(m, plmn)][:5]
    if plmn == MB:
        assert seen == []
    else:
        assert len(seen) > 100
    alone = data(lab, user, "/api/v1/query", {"query": "up or on() vector(1)", "time": lab.now_s})["result"]
    assert [r["metric"] for r in alone] == [{}]   # the constant, and nothing of anybody's
    labels = data(lab, user, "/api/v1/labels", window)
    assert ("probe" in labels) is (plmn != MB) and "version" not in labels   # probe health is the zone's
    names = data(lab, user, "/api/v1/label/__name__/values", window)
    assert not any(n.startswith(("probe_", "power_")) for n in names), names
    assert (names == []) is (plmn == MB)


@pytest.mark.parametrize("plmn", [VT, MB])
def test_writes_admin_and_everything_else_are_refused(lab: Lab, plmn: str) -> None:
    user = USERS[plmn]
    line = json.dumps({"metric": {"__name__": "forged_total", "zone": scn.ZONE}, "values": [1], "timestamps":
                       [int(lab.now_s * 1000)]})
    for path, params in [("/api/v1/import", None), ("/api/v1/admin/tsdb/delete_series", {"match[]": '{zone=~".+"}'}),
                         ("/api/v2/write", None), ("/write", None), ("/api/v1/status/tsdb", {}),
                         ("/federate", {"match[]": '{__name__=~".+"}'}), ("/metrics", {}), ("/vmui/", {}),
                         ("/prometheus/api/v1/query", {"query": "1"}),
                         ("/api/v1/label/x/../../../api/v1/import", None)]:
        if params is None:
            request = urllib.request.Request(f"{lab.vmauth}{path}", data=line.encode(), method="POST")
            request.add_header("Authorization", "Basic " + base64.b64encode(
                f"{user}:{lab.passwords[user]}".encode()).decode())
            try:
                with urllib.request.urlopen(request, timeout=10) as r:
                    status = r.status
            except urllib.error.HTTPError as exc:
                status = exc.code
        else:
            status, _ = call(lab, user, path, params)
        assert status >= 400, f"{path} answered {status} to {user}"
    assert scn.vm_api(lab.vm, "query", query="forged_total", time=lab.now_s)["result"] == []
    assert scn.vm_api(lab.vm, "query", query=f'count({{zone="{scn.ZONE}"}})', time=lab.now_s)["result"]


def test_no_password_or_a_wrong_one_is_refused(lab: Lab) -> None:
    assert call(lab, None, "/api/v1/query", {"query": "1"})[0] == 401
    for password in ("guess", lab.passwords["vinaphone"]):   # vmauth 1.79 answers 400 to unknown credentials
        status, body = call(lab, "viettel", "/api/v1/query", {"query": "1"}, password=password)
        assert status in (400, 401) and b"success" not in body, (status, body)


def test_vmauth_s_own_endpoints_need_the_admin_key(lab: Lab) -> None:
    for path in ("/metrics", "/flags", "/debug/pprof/"):
        try:
            with urllib.request.urlopen(f"{lab.vmauth}{path}", timeout=5) as r:
                status = r.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        assert status == 401, path   # /metrics would list every carrier's user name
