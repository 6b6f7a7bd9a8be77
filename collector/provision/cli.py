"""``zonewatch-collector render-vmauth`` and ``render-grafana``: giving each carrier access to its own data."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collector.config import CollectorConfig
    from collector.inventory import Inventory

COMMANDS = ("render-vmauth", "render-grafana")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the commands to the collector's command line."""
    va = sub.add_parser("render-vmauth", help="write vmauth's users: each carrier filtered to its own series, the "
                                              "zone authority unfiltered, read API only")
    va.add_argument("--out", required=True, help="folder to write auth.yml and vmauth.env into (and secrets/)")
    va.add_argument("--secrets", help="folder with one password file per user and vmauth-admin-key (default: "
                                      "OUT/secrets, missing ones generated there with mode 0600)")
    va.add_argument("--vm-url", help="VictoriaMetrics' URL as vmauth reaches it (default: storage.url of the "
                                     "configuration)")
    va.add_argument("--listen", default="127.0.0.1:8427", help="vmauth's listen address (default 127.0.0.1:8427)")
    va.add_argument("--config-dir", help="where vmauth will read auth.yml (default: OUT)")
    gr = sub.add_parser("render-grafana", help="write Grafana provisioning: an organisation per carrier with its "
                                               "datasource through vmauth and the dashboards")
    gr.add_argument("--out", required=True, help="folder to write provisioning/, grafana.env and orgs.txt into")
    gr.add_argument("--secrets", required=True, help="render-vmauth's password folder (its OUT/secrets)")
    gr.add_argument("--vmauth-url", default="http://127.0.0.1:8427", help="vmauth's URL as Grafana's server "
                                                                          "reaches it (default http://127.0.0.1:8427)")
    gr.add_argument("--first-org-id", type=int, default=2, help="the id of the first carrier organisation "
                                                                "(default 2: the first one made after Main Org)")
    gr.add_argument("--org-id", action="append", default=[], metavar="CARRIER=ID",
                    help="the id of an organisation that exists already (again for each)")


def run(args: argparse.Namespace, cfg: CollectorConfig, inventory: Inventory | None) -> int:
    """Run one of ``COMMANDS``; return the exit code (2 for what cannot be done, with the reason)."""
    from collector.provision import grafana, vmauth

    if inventory is None:
        print(f"zonewatch-collector: {args.config} names no inventory: nothing to render", file=sys.stderr)
        return 2
    try:
        if args.command == "render-vmauth":
            url = args.vm_url or (cfg.storage.url if cfg.storage.type == "victoriametrics" else None)
            if url is None:
                raise ValueError(f"the configuration's storage is {cfg.storage.type}: give --vm-url")
            written = vmauth.write(inventory, Path(args.out), url, listen=args.listen, config_dir=args.config_dir,
                                   secrets_dir=Path(args.secrets) if args.secrets else None)
        else:
            given: dict[str, int] = {}
            for item in args.org_id:
                key, sep, value = item.partition("=")
                if not sep or not value.isdigit():
                    raise ValueError(f"--org-id {item!r}: expected CARRIER=ID, e.g. viettel=4")
                given[key] = int(value)
            written = grafana.write(inventory, Path(args.out), args.vmauth_url, secrets_dir=Path(args.secrets),
                                    first_id=args.first_org_id, org_ids=given)
    except (ValueError, OSError) as exc:
        print(f"zonewatch-collector: {args.command}: {exc}", file=sys.stderr)
        return 2
    for item in written:
        print(f"wrote {item.path}: {item.what}")
    return 0
