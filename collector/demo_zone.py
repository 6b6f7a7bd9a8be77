"""The demo's zone: what it is made of and what its scenario does to it.

The modems (carrier, base signal, cell), the SNMP devices and their sites, the zone's inventory, the scripted
timeline of faults and the MIB objects a fault sets on a simulated device (``snmp_set``), and the NOC's webhook
receiver that shows what the alerts paged. ``collector.demo`` starts the zone and plays the timeline.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "demo_data"
MODEMS = [  # name, PLMN as the modem prints it, PLMN tag, base RSRP, cell; with --wander 6 Viettel stays good
    ("viettel", "45204", "452-04", -84.0, "5F1EA15"),   # (>= -90 dBm) and VinaPhone fair (-100 to -90): no
    ("vinaphone", "45202", "452-02", -93.0, "2B0C40A"),  # WeakSignal or CoverageHole the scenario did not make
    ("mobifone", "45201", "452-01", -82.0, "3C0A11B"),   # good signal, and no traffic: demo_qos.BROKEN
]
DEVICES = ["bts-01", "sw-core", "ups-01"]
SITES = {"bts-01": "bts-dv-01", "sw-core": "pop-dv", "ups-01": "bts-dv-01"}

INVENTORY = """\
zones:
  demo-park: {name: Demo Industrial Park, areas: [gate-a, logistics]}
carriers:
  viettel: {plmn: 452-04, name: Viettel}
  vinaphone: {plmn: 452-02, name: VinaPhone}
  mobifone: {plmn: 452-01, name: MobiFone}
sites:
  bts-dv-01: {zone: demo-park, area: gate-a, kind: bts, owners: [viettel, vinaphone]}   # shared BTS
  pop-dv: {zone: demo-park, area: logistics, kind: fibre_pop, owners: [viettel]}
devices:
  sw-core: {site: pop-dv, kind: switch, owners: [viettel], probe: p1}
  bts-01: {site: bts-dv-01, kind: bts, owners: [viettel, vinaphone], parent: sw-core, probe: p1}
  ups-01: {site: bts-dv-01, kind: ups, owners: [viettel, vinaphone], probe: p1}
links:
  vt-primary: {device: sw-core, ifname: xe-0/1/0, carriers: [viettel]}
  vt-backup: {device: sw-core, ifname: xe-0/1/1, carriers: [viettel]}
redundancy_groups:
  vt-fibre:
    zone: demo-park
    carriers: [viettel]
    description: Viettel's two fibre routes into the park
    members: [{link: vt-primary}, {link: vt-backup}]
probes:
  p1:
    zone: demo-park
    area: gate-a
    modems: [{name: viettel, carrier: viettel}, {name: vinaphone, carrier: vinaphone},
             {name: mobifone, carrier: mobifone}]
"""

IF_OPER_STATUS = "1.3.6.1.2.1.2.2.1.8"
UPS_BATTERY_STATUS, UPS_SECONDS_ON_BATTERY = "1.3.6.1.2.1.33.1.2.1.0", "1.3.6.1.2.1.33.1.2.2.0"
UPS_MINUTES_REMAINING, UPS_OUTPUT_SOURCE = "1.3.6.1.2.1.33.1.2.3.0", "1.3.6.1.2.1.33.1.4.1.0"

SCENARIO: list[tuple[float, str, str]] = [   # seconds after the start, what, action (collector.demo)
    (30, "Viettel's primary fibre into the park is cut (sw-core xe-0/1/0)", "fibre:down"),
    (50, "mains power fails at the shared BTS site bts-dv-01 (ups-01 on battery)", "mains:off"),
    (70, "VinaPhone's signal at gate A drops into a coverage hole", "coverage:vinaphone:hole"),
    (100, "the fibre is spliced", "fibre:up"),
    (120, "mains power is back at bts-dv-01", "mains:on"),
    (140, "VinaPhone's signal at gate A recovers", "coverage:vinaphone:ok"),
]


def snmp_set(port: int, device: str, oid: str, value: int) -> None:
    """Set an integer on a simulated device served on 127.0.0.1:``port`` (what the fault would do to the real
    one's MIB)."""
    import asyncio

    from pysnmp.hlapi.v3arch.asyncio import (
        CommunityData,
        ContextData,
        ObjectIdentity,
        ObjectType,
        SnmpEngine,
        UdpTransportTarget,
        set_cmd,
    )
    from pysnmp.proto.rfc1902 import Integer32

    async def go() -> None:
        engine = SnmpEngine()
        try:
            target = await UdpTransportTarget.create(("127.0.0.1", port), timeout=2, retries=2)
            error, status, _index, _binds = await set_cmd(engine, CommunityData(device), target, ContextData(),
                                                          ObjectType(ObjectIdentity(oid), Integer32(value)))
            if error or status:
                raise RuntimeError(f"SNMP set {device} {oid}={value} failed: {error or status}")
        finally:
            engine.close_dispatcher()

    asyncio.run(go())


class NocReceiver:
    """The NOC's webhook receiver, in this process: keeps what it got, newest last."""

    def __init__(self) -> None:
        self.got: list[tuple[float, dict[str, Any]]] = []
        self.url = ""
        self._server: Any = None
        self._lock = threading.Lock()

    def start(self) -> NocReceiver:
        import json
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                with receiver._lock:
                    receiver.got.extend((time.time(), a) for a in body.get("alerts", []))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, name="demo-noc", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def recent(self, count: int = 8) -> list[tuple[float, dict[str, Any]]]:
        with self._lock:
            return list(self.got[-count:])
