"""``zonewatch-collector render-bridge``, ``backup`` and ``restore``: beyond one machine (README: Deployment)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from zonewatch.strict import parse_duration

if TYPE_CHECKING:
    from collector.config import CollectorConfig
    from collector.inventory import Inventory

COMMANDS = ("render-bridge", "backup", "restore")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the commands to the collector's command line."""
    br = sub.add_parser("render-bridge", help="write a park broker's configuration: its probes' listener and ACL, "
                                              "and its bridge to the central broker")
    br.add_argument("--zone", required=True, help="the park's zone (its probes are the ones this broker serves)")
    br.add_argument("--remote", required=True, help="the central broker's TLS listener, HOST:PORT")
    br.add_argument("--out", required=True, help="folder to write passwd, acl, mosquitto-listener.conf, "
                                                 "mosquitto-limits.conf and bridge.conf into")
    br.add_argument("--secrets", required=True, help="folder with the password files of the zone's probes and of "
                                                     "bridge-ZONE (render-mosquitto --bridge ZONE makes it)")
    br.add_argument("--remote-cafile", default="/etc/mosquitto/ca_certificates/zonewatch-central.crt",
                    help="the CA of the central broker's certificate, on the park host")
    br.add_argument("--port", type=int, default=8883, help="the probes' TLS listener port (default 8883)")
    br.add_argument("--bind", help="address the probes' listener binds to (default: all)")
    br.add_argument("--broker-dir", help="where the park broker will read acl and passwd (default: OUT)")
    br.add_argument("--cafile", default="/etc/mosquitto/ca_certificates/ca.crt", help="CA file for the listener")
    br.add_argument("--certfile", default="/etc/mosquitto/certs/server.crt", help="the park broker's certificate")
    br.add_argument("--keyfile", default="/etc/mosquitto/certs/server.key", help="its private key")
    br.add_argument("--hold", default="30m", help="the longest uplink outage the park broker's queue must bridge "
                                                  "(default 30m)")
    br.add_argument("--probe-rate", type=float, default=2.0, help="messages a probe sends per second (default 2)")
    br.add_argument("--keepalive", default="30s", help="the bridge's keepalive (default 30s)")
    br.add_argument("--retry", default="5s", help="the bridge's first wait before reconnecting, doubled up to 60s "
                                                  "(default 5s)")
    bk = sub.add_parser("backup", help="copy the collector's state (intake, alert state, outboxes, enrolment, fleet) "
                                       "into a new folder, while it runs")
    bk.add_argument("--out", required=True, help="the new folder")
    bk.add_argument("--with-store", action="store_true", help="also the SQLite store (storage type sqlite)")
    rs = sub.add_parser("restore", help="put a backup's state where this configuration keeps it (collector stopped)")
    rs.add_argument("--from", dest="source", required=True, help="the backup folder")
    rs.add_argument("--force", action="store_true", help="replace state that is there already")


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--remote: expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def run(args: argparse.Namespace, cfg: CollectorConfig, inventory: Inventory | None) -> int:
    """Run one of ``COMMANDS``; return the exit code (2 for what cannot be done, with the reason)."""
    from collector import backup, bridge
    from collector.mosquitto.listener import ListenerTls

    try:
        if args.command == "backup":
            manifest = backup.backup(cfg, Path(args.out), args.config, args.with_store)
            files = manifest["files"]
            assert isinstance(files, list)
            print(f"backed up {len(files)} files into {args.out} ({sum(int(f['bytes']) for f in files)} bytes)")
            return 0
        if args.command == "restore":
            for path in backup.restore(cfg, Path(args.source), args.force):
                print(f"restored {path}")
            return 0
        if inventory is None:
            raise ValueError(f"{args.config} names no inventory: nothing to render")
        host, port = _host_port(args.remote)
        low = parse_duration(args.retry)
        target = bridge.BridgeTarget(host, port, args.remote_cafile, max(1, round(parse_duration(args.keepalive))),
                                     (max(1, round(low)), max(60, round(low))))
        if args.probe_rate <= 0:
            raise ValueError(f"--probe-rate must be more than 0, got {args.probe_rate:g}")
        tls = ListenerTls(args.cafile, args.certfile, args.keyfile)
        written = bridge.write_park(inventory, args.zone, Path(args.out), target, tls, Path(args.secrets),
                                    port=args.port, bind=args.bind, broker_dir=args.broker_dir, rate=args.probe_rate,
                                    hold_s=parse_duration(args.hold))
    except (ValueError, OSError) as exc:
        print(f"zonewatch-collector: {args.command}: {exc}", file=sys.stderr)
        return 2
    for item in written:
        print(f"wrote {item.path}: {item.what}")
    return 0
