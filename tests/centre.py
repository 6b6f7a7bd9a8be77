"""The centre an integration test runs against, set up as production sets it up: mosquitto behind TLS with the ACL and
password file rendered for the test's inventory (``tlsbroker.start_tls_broker``), one webhook receiver for the
carriers and the NOC, the collector's configuration written around them, and the collector as a process of its own.

    with Centre(tmp, inventory_text) as centre:          # PKI, webhook receiver, inventory.yaml, the broker
        centre.write_config(alerting={"interval": "500ms"})   # collector.yaml, alerts to the NOC's webhook
        centre.start_collector()
        p1 = centre.connect("p1")                        # a TLS client with p1's password

Leaving the ``with`` stops, latest first, everything the centre started and everything handed to ``keep`` (agents,
modems, other services, clients), on every exit path. Building a ``Centre`` starts nothing.

Files, under the test's folder: ``pki/``, ``mosquitto/`` (the broker), ``inventory.yaml``, ``collector.yaml``,
``store.db`` (the SQLite store), ``centre/`` (the collector's intake queue and state: ``alerts.db``, ``fleet/``) and
``collector/`` (the collector's working folder and log).
"""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TypeVar

import yaml

from tests import services
from tests.services import WebhookServer
from tests.tlsbroker import PASSWORDS, Peer, ServerPki, connect, start_tls_broker, write_server_pki

T = TypeVar("T")


class Centre:
    """Broker, webhook receiver and collector of one test; a context manager that stops all it started.

    ``inventory`` is the inventory's YAML, or a function that returns it given the webhook receiver's URL (for the
    carriers' ``notify``); ``passwords`` are the broker's users (the collector's two sessions among them)."""

    pki: ServerPki
    hooks: WebhookServer
    broker: services.Service
    collector: services.Service

    def __init__(self, tmp: Path, inventory: str | Callable[[str], str], passwords: dict[str, str] = PASSWORDS,
                 ca_name: str = "zonewatch test CA") -> None:
        self.tmp = tmp
        self.passwords = passwords
        self.inventory = tmp / "inventory.yaml"
        self.config = tmp / "collector.yaml"
        self.store = tmp / "store.db"
        self.data = tmp / "centre"
        self.metrics_port = services.free_port()
        self.stack = ExitStack()   # what close() undoes, latest first
        self._inventory_text = inventory
        self._ca_name = ca_name

    def __enter__(self) -> Centre:
        """Write the PKI and the inventory; start the webhook receiver and the broker."""
        try:
            self.pki = write_server_pki(self.tmp / "pki", self._ca_name)
            self.hooks = self.keep(WebhookServer().start())
            text = self._inventory_text
            text = text if isinstance(text, str) else text(self.hooks.url)
            self.inventory.write_text(text)
            self.broker = self.keep(start_tls_broker(self.tmp / "mosquitto", text, self.passwords, self.pki))
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop everything started or kept, latest first (each one even if another failed to stop)."""
        self.stack.close()

    def keep(self, part: T) -> T:
        """Stop ``part`` (its ``stop()``, or else its ``close()``) when the centre closes; return it."""
        stop = getattr(part, "stop", None) or part.close  # type: ignore[attr-defined]
        self.stack.callback(stop)
        return part

    @property
    def ca(self) -> Path:
        """The CA certificate that signed the broker's: what every client verifies it with."""
        return self.pki.ca

    # ---------------------------------------------------------------------------------------------- the collector

    def write_config(self, alerting: dict[str, Any] | None = None, **sections: Any) -> Path:
        """Write ``collector.yaml``: sessions as ``collector`` over TLS, the SQLite store, the intake queue in
        ``centre/``, /metrics on ``metrics_port`` and the inventory; ``alerting`` is that section's settings, with
        direct delivery to the NOC's webhook (``/noc``) unless they say otherwise (None: alerting off).
        ``sections`` add top-level sections or replace these (``storage=``, ``diagnostics=``...)."""
        noc = {"delivery": "direct", "noc": [{"type": "webhook", "url": f"{self.hooks.url}/noc"}]}
        config = {
            "mqtt": {"host": "127.0.0.1", "port": self.broker.port, "username": "collector",
                     "password": self.passwords["collector"], "client_id": "collector",
                     "tls": {"ca_file": str(self.ca)}},
            "storage": {"type": "sqlite", "path": str(self.store)},
            "queue": {"path": str(self.data / "intake.db")},
            "http": {"listen": f"127.0.0.1:{self.metrics_port}"},
            "inventory": self.inventory.name,
            "alerting": {"enabled": False} if alerting is None else {**noc, **alerting},
            **sections,
        }
        self.config.write_text(yaml.safe_dump(config, sort_keys=False))
        return self.config

    def start_collector(self) -> services.Service:
        """Start the collector with ``collector.yaml`` (again, once the last one stopped); ready once subscribed."""
        self.collector = self.keep(services.start_collector(self.config, self.tmp / "collector"))
        return self.collector

    def cli(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """Run ``zonewatch-collector -c collector.yaml <argv>`` as an operator would."""
        return subprocess.run([sys.executable, "-m", "collector", "-c", str(self.config), *argv],
                              capture_output=True, text=True, timeout=60)

    def metric(self, name: str) -> float:
        """Return the sum of the collector's /metrics samples whose line starts with ``name`` (labels and all)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            lines = r.read().decode().splitlines()
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(name))

    # ---------------------------------------------------------------------------------------------- clients

    def connect(self, username: str, client_id: str | None = None) -> Peer:
        """Connect a TLS client as ``username`` with its password (a wrong one for a user not in ``passwords``),
        waiting for the CONNACK; it is closed with the centre."""
        return self.keep(connect(self.broker.port, self.ca, username, client_id or username, self.passwords))
