"""``zonewatch-collector``: the central side's command line."""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from collector import central_cli, maintenance_cli
from collector.alerting import ack_cli
from collector.fleet import config_cli as fleet_cli
from collector.fleet import enrol, enrol_cli
from collector.provision import cli as provision_cli
from collector.report import cli as report_cli
from collector.report import map_cli
from zonewatch.extras import MissingExtra
from zonewatch.strict import ConfigError, load_file, parse_duration

if TYPE_CHECKING:
    from collector.config import CollectorConfig
    from collector.inventory import Inventory

DEFAULT_CONFIG = "/etc/zonewatch/collector.yaml"
LOG_LEVELS = ["debug", "info", "warning", "error"]

DESCRIPTION = """\
ZoneWatch collector: receives every probe's batches over MQTT, checks them, and writes them to the
time-series store (VictoriaMetrics or InfluxDB through influxdb-client; SQLite when none is configured).

commands:
  run           ingest until stopped (SIGTERM or Ctrl-C). With no `mqtt` section it runs an embedded
                MQTT 3.1.1 broker; with no `storage` section it writes to SQLite.
  check-config  validate the collector configuration (and the inventory it names) and exit
  demo          run a whole simulated zone on this machine (broker, collector, agent, simulated SNMP
                devices and modems) and show readings live; Ctrl-C stops everything
  render-mosquitto  write the broker's access control for the inventory into --out: an ACL (each
                probe may publish only under its own zone/probe topics, the collector reads them all),
                a hashed password file (passwords from --secrets, or generated into OUT/secrets with
                mode 0600) and a TLS listener section for mosquitto.conf; prints the files it wrote,
                never the passwords
  render-alertmanager  write an Alertmanager configuration for the inventory to --out: a route per
                carrier (its webhook and email receivers) that continues to the NOC route, grouping by
                alertname/zone/carrier/group/device, and ServiceOutage inhibiting RedundancyLost; secrets
                go to files of their own (mode 0600) that the configuration names
  probes        enrolment (needs an enrol section): `probes list` shows every probe that asked to be
                admitted (with its key fingerprint and hardware identity) and what became of it; `probes
                approve REQUEST [--id ID] [--area AREA]` gives it its own MQTT credentials (written into the
                broker's password file and ACL, broker reloaded); `probes reject REQUEST`; `probes retire ID`
                takes an enrolled probe's credentials away and refuses whatever it still sends
  fleet         each probe's configuration from the centre (inventory `probes.<id>.config` over
                `probe_defaults`): `fleet status` shows per probe its desired version and hash, what it runs,
                its last report (applied; rejected, with the key and line; rolled back by the dead-man rule)
                and drift; `fleet render PROBE` prints the text the inventory gives it; `fleet push [--by NAME]
                [--again PROBE...]` checks the inventory and has the running collector publish the changes
                now; `fleet update --version V [--first N | --probes P...]` rolls a software release out in
                waves (the next once the one before runs it healthy; `--abort` ends it); `fleet audit [--probe
                P]` prints who changed what, and when
  alerts        the alerts that paged and are still firing: REF, alert, carrier, object, since when, and
                who acknowledged it (`--carrier PLMN`, `--json`)
  ack           `ack REF --by NAME [--comment TEXT]`: acknowledge a firing alert: no further escalation,
                and its notifications from then on (the resolve too) say who took it and when
  report        write a zone's monthly report for the zone authority (HTML with plots, and CSV): coverage
                per carrier and area against each threshold, no-service minutes, availability of each site
                and link, time without redundancy, every outage; from the configured store (SQLite or
                VictoriaMetrics) or --sqlite / --victoriametrics; `--carrier X` writes that carrier's private
                report (its own assets only; competitors pooled only if carrier_access.competitors allows);
                with QCVN 81:2019's indicators per carrier (kpi.csv) and, where the zone has positions, a
                coverage map per carrier beside it
  coverage-map  `coverage-map --zone Z --carrier C --out FILE.html [--month YYYY-MM] [--survey ID]`: one
                carrier's coverage map, ONE HTML file over the park's own plan image that opens offline
                (Leaflet inline, no tiles, no network): probes and walk-survey readings coloured by level,
                areas with no measurement grey and hatched (unmeasured); same stores as `report`
  render-vmauth  write vmauth's users into --out (auth.yml, vmauth.env, secrets/ mode 0600): one per carrier,
                its owner label forced on every read, and the zone authority's (unfiltered); read API only
  render-grafana  write Grafana provisioning into --out: an organisation per carrier, its one datasource
                through vmauth as that carrier, and the dashboards in it (passwords from render-vmauth's
                secrets, into grafana.env mode 0600)
  maintenance   planned works: `maintenance add (--site S | --device D | --link L | --group G | --area A |
                --carrier-wide C) --start TIME (--end TIME | --duration 4h [--every daily|weekly|monthly])
                --tz Asia/Ho_Chi_Minh --ticket T --by NAME [--carrier X]` declares a window (with --carrier,
                acting as that carrier: its own assets only); `maintenance list`; `maintenance end ID`. Alerts
                in an open window are stored muted; the running collector picks changes up without a restart

A command whose optional package is not installed says which extra brings it (report: matplotlib,
zonewatch[report]; demo: zonewatch[agent,collector,demo]) and exits 1.
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zonewatch-collector", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG,
                   help=f"collector configuration file (default {DEFAULT_CONFIG})")
    p.add_argument("--log-level", default=None, choices=LOG_LEVELS,
                   help="how much to log to stderr (default info; the demo: warning, and its folder's "
                        "collector.log has info)")
    sub = p.add_subparsers(dest="command", required=True, metavar="command")
    sub.add_parser("run", help="ingest until stopped")
    sub.add_parser("check-config", help="validate the configuration and inventory and exit")
    demo = sub.add_parser("demo", help="run a simulated zone and show readings live")
    demo.add_argument("--workdir", help="where the demo keeps its files (default: a new temporary folder)")
    demo.add_argument("--seconds", type=float, default=0,
                      help="stop by itself after this many seconds (default: run until Ctrl-C)")
    demo.add_argument("--plain", action="store_true", help="print plain lines instead of a live table")
    demo.add_argument("--no-scenario", action="store_true",
                      help="no scripted faults (fibre cut, power failure, coverage hole): readings only")
    demo.add_argument("--pace", type=float, default=1.0,
                      help="scale the scenario's timeline (0.5 runs it twice as fast; default 1)")
    demo.add_argument("--log-level", default=argparse.SUPPRESS, choices=LOG_LEVELS,
                      help="as before the command: what the screen shows (default warning); the demo's folder's "
                           "collector.log gets info, or debug")
    mq = sub.add_parser("render-mosquitto", help="write mosquitto's ACL, password file and TLS listener")
    mq.add_argument("--out", required=True, help="folder to write acl, passwd, mosquitto-listener.conf into")
    mq.add_argument("--secrets", help="folder with one password file per user (default: OUT/secrets, "
                    "missing passwords generated there)")
    mq.add_argument("--collector-user", help="the collector's broker username (default: mqtt.username of the "
                    "configuration, else 'collector')")
    mq.add_argument("--port", type=int, default=8883, help="TLS listener port (default 8883)")
    mq.add_argument("--bind", help="address the listener binds to (default: all)")
    mq.add_argument("--broker-dir", help="where the broker will read acl and passwd (default: OUT)")
    mq.add_argument("--cafile", default="/etc/mosquitto/ca_certificates/ca.crt", help="CA file on the broker")
    mq.add_argument("--certfile", default="/etc/mosquitto/certs/server.crt", help="server certificate")
    mq.add_argument("--keyfile", default="/etc/mosquitto/certs/server.key", help="server private key")
    mq.add_argument("--hold", default="30m", help="the longest collector outage the broker's queue must bridge "
                    "(default 30m): sizes max_queued_messages and max_queued_bytes")
    mq.add_argument("--probe-rate", type=float, default=2.0,
                    help="messages a probe sends per second (default 2: 50 SNMP devices and 4 modems every 30 s)")
    mq.add_argument("--require-certificate", action="store_true",
                    help="also require a client certificate signed by the CA")
    mq.add_argument("--peer", action="append", default=[], metavar="USER",
                    help="the broker username of another collector of an HA pair (again for each)")
    mq.add_argument("--bridge", action="append", default=[], metavar="ZONE",
                    help="a zone whose park broker bridges to this one: user bridge-ZONE (again for each)")
    am = sub.add_parser("render-alertmanager", help="write an Alertmanager configuration for the inventory")
    am.add_argument("--out", required=True, help="the configuration file to write (alertmanager.yml)")
    am.add_argument("--secrets-dir", help="folder for the secret files the configuration names "
                    "(default: alertmanager-secrets beside OUT)")
    am.add_argument("--relay-url", help="with alerting.mqtt_delivery alertmanager: the collector beside this "
                    "Alertmanager, whose relay publishes MQTT notifications (default: http://<http.listen>)")
    report_cli.add_parser(sub)
    map_cli.add_parser(sub)
    maintenance_cli.add_parser(sub)
    enrol_cli.add_parser(sub)
    fleet_cli.add_parser(sub)
    central_cli.add_parser(sub)
    ack_cli.add_parser(sub)
    provision_cli.add_parser(sub)
    return p


def _render_alertmanager(args: argparse.Namespace, cfg: CollectorConfig, inventory: Inventory | None) -> int:
    """Write the Alertmanager configuration and its secret files; return the exit code."""
    from collector.alerting import amconfig

    if inventory is None:
        print(f"zonewatch-collector: {args.config} names no inventory: nothing to render", file=sys.stderr)
        return 2
    try:
        host, _, port = cfg.http.listen.rpartition(":")
        relay = args.relay_url or f"http://{'127.0.0.1' if host in ('0.0.0.0', '[::]', '::') else host}:{port}"
        written = amconfig.write(inventory, cfg.alerting, Path(args.out),
                                 Path(args.secrets_dir) if args.secrets_dir else None, relay=relay)
    except (ValueError, OSError) as exc:
        print(f"zonewatch-collector: render-alertmanager: {exc}", file=sys.stderr)
        return 2
    for path, what in written:
        print(f"wrote {path}: {what}")
    return 0


def _render_mosquitto(args: argparse.Namespace, cfg: CollectorConfig, inventory: Inventory | None) -> int:
    """Write the broker's ACL, password file and listener section; return the exit code."""
    from collector import mosquitto
    from collector.mosquitto.bundle import write_bundle
    from collector.mosquitto.limits import QueueSizing
    from collector.mosquitto.listener import ListenerTls

    if inventory is None:
        print(f"zonewatch-collector: {args.config} names no inventory: nothing to render", file=sys.stderr)
        return 2
    collector = args.collector_user or (cfg.mqtt.username if cfg.mqtt and cfg.mqtt.username else None)
    tls = ListenerTls(args.cafile, args.certfile, args.keyfile, args.require_certificate)
    try:
        enrolment = enrol.current_access(cfg)   # enrolment's users: bootstrap, approved, retired
        if args.probe_rate <= 0:
            raise ValueError(f"--probe-rate must be more than 0, got {args.probe_rate:g}")
        try:
            hold = parse_duration(args.hold)
        except ValueError as exc:
            raise ValueError(f"--hold: {exc}") from None
        written = write_bundle(
            inventory, Path(args.out), tls, collector=collector or mosquitto.DEFAULT_COLLECTOR,
            secrets_dir=Path(args.secrets) if args.secrets else None, port=args.port, bind=args.bind,
            broker_dir=args.broker_dir, noc=cfg.alerting.noc,
            sizing=QueueSizing(len(mosquitto.broker_probes(inventory, enrolment)), args.probe_rate, hold),
            enrolment=enrolment, layout=mosquitto.Layout(tuple(args.peer), tuple(args.bridge)))
    except (ValueError, OSError) as exc:
        print(f"zonewatch-collector: render-mosquitto: {exc}", file=sys.stderr)
        return 2
    for item in written:
        print(f"wrote {item.path}: {item.what}")
    return 0


def _tune_for_ingest() -> None:
    """Tune this process's interpreter for ingest, once every part of the collector has started (``run`` only:
    both settings are process-wide, so they belong to the program, not to a part that tests or the demo build)."""
    # Everything made so far (imports, configuration, inventory, the parts' start-up state) lives as long as the
    # process: keep it out of the garbage collector's full passes, which the decoder's many short-lived dicts trigger.
    gc.freeze()
    # A thread waiting for the GIL gets it after at most this long (default 5 ms). The sender and the
    # intake mostly wait on sockets and disk, and each time one wakes it waits for the preparer to let go
    # of the GIL: at 5 ms the store saw requests late enough to cost about a tenth of the throughput
    # (tests/benchmarks/bench_ingest.py). Process-wide, like gc.freeze; the collector is this process.
    sys.setswitchinterval(0.001)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the collector command line; return the exit code."""
    args = _parser().parse_args(argv)
    try:
        return _command(args)
    except MissingExtra as exc:   # an optional package the command needs: one line naming the extra, no traceback
        print(exc, file=sys.stderr)
        return 1


def _command(args: argparse.Namespace) -> int:
    """Run the command ``args`` names; return its exit code."""
    if args.command == "demo":   # it logs to a file in its folder and shows warnings above its live view
        from collector.demo import run_demo

        return run_demo(workdir=args.workdir, seconds=args.seconds, plain=args.plain, scenario=not args.no_scenario,
                        pace=args.pace, log_level=args.log_level)
    logging.basicConfig(level=(args.log_level or "info").upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, logging.getLogger().level))
    if args.command == "report":
        return report_cli.run(args)
    if args.command == "coverage-map":
        return map_cli.run(args)

    from collector.config import CollectorConfig
    from collector.inventory import load_inventory

    try:
        cfg = load_file(CollectorConfig, args.config)
        inventory_path = Path(args.config).parent / cfg.inventory if cfg.inventory else None
        inventory = load_inventory(inventory_path, cfg.secrets) if inventory_path else None
        if inventory is not None and inventory_path is not None:
            from collector.alerting.notify.routing import problems

            for where, message in problems(cfg.alerting, inventory, has_mqtt=True):
                source = args.config if where[0] == "alerting" else str(inventory_path)
                raise ConfigError(source, None, where, message)
        for where, message in enrol.problems(cfg, inventory):
            raise ConfigError(args.config, None, where, message)
        if inventory is not None:
            from collector.shard import problems as shard_problems

            for where, message in shard_problems(inventory, cfg.zones):   # zones: this collector's shard
                source = args.config if where[0] == "zones" else str(inventory_path)
                raise ConfigError(source, None, where, message)
    except ConfigError as exc:
        print(f"zonewatch-collector: {exc}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        extra = f", inventory {inventory_path}: {len(inventory.devices)} devices" if inventory else ""
        print(f"{args.config}: ok (storage {cfg.storage.type}{extra})")
        return 0

    if args.command == "render-mosquitto":
        return _render_mosquitto(args, cfg, inventory)
    if args.command == "render-alertmanager":
        return _render_alertmanager(args, cfg, inventory)
    if args.command == "probes":
        return enrol_cli.run_command(args, cfg, inventory)
    if args.command == "fleet":
        return fleet_cli.run(args, cfg, inventory, inventory_path)
    if args.command == "maintenance":
        return maintenance_cli.run(args, cfg, inventory)
    if args.command in central_cli.COMMANDS:
        return central_cli.run(args, cfg, inventory)
    if args.command in ack_cli.COMMANDS:
        return ack_cli.run(args, cfg, inventory)
    if args.command in provision_cli.COMMANDS:
        return provision_cli.run(args, cfg, inventory)

    from collector.app import Collector

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        Collector(cfg, inventory, inventory_path).run_until(stop, started=_tune_for_ingest)
    except RuntimeError as exc:
        print(f"zonewatch-collector: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
