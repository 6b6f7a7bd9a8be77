"""The demo's service tests: a zone test server on loopback, and one carrier whose bearer passes no traffic.

The demo has no modems with real bearers and runs without root or network namespaces, so every simulated
carrier's ``qos`` source binds its tests to the loopback interface (binding a socket to a device needs no
privilege on Linux 5.7 and later) and reaches the zone's test server there: a small HTTP server in the demo's
process. The carrier in ``BROKEN`` is registered with a good signal, but its tests go to a port that is held
closed for the demo's life (a socket bound and never listening: every connection is refused), as a bearer
that passes no traffic would fail them. Its access tests fail; DataAccessFailure pages that carrier, and no
other. Not imported by production code.
"""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

BROKEN: Final = "mobifone"        # the carrier whose data service is broken in the demo
TARGET: Final = "zone-test-server"
ALERTING_SETTINGS: Final = "qos: {access_window: 30s, access_min_tests: 3}"   # judged within seconds, not 30 min


class ZoneTestServer:
    """The zone's test server (HTTP on 127.0.0.1), and the closed port the broken carrier's tests go to."""

    def __init__(self) -> None:
        self.port = 0
        self.closed_port = 0
        self._server: ThreadingHTTPServer | None = None
        self._closed: socket.socket | None = None

    def start(self) -> ZoneTestServer:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                body = b"zonewatch demo test server\n"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, name="demo-test-server", daemon=True).start()
        self._closed = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._closed.bind(("127.0.0.1", 0))          # held, never listening: connections are refused
        self.closed_port = int(self._closed.getsockname()[1])
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._closed is not None:
            self._closed.close()
            self._closed = None

    def sources(self, modems: list[tuple[str, str]], workdir: Path) -> str:
        """Return the agent's ``qos`` sources (YAML list items) for ``modems`` as (name, PLMN tag)."""
        out = []
        for name, plmn in modems:
            port = self.closed_port if name == BROKEN else self.port
            out.append(
                f"  - {{type: qos, name: qos-{name}, modem: {name}, carrier: '{plmn}', interface: lo, "
                f"dns: [127.0.0.1], interval: 5s, short_every: 5s, timeout: 2s, budget: {{monthly: 100MB}}, "
                f"state_path: '{workdir / f'qos-{name}.json'}', tests: ["
                f"{{test: tcp, host: 127.0.0.1, port: {port}, target: {TARGET}}}, "
                f"{{test: http, url: 'http://127.0.0.1:{port}/', target: {TARGET}}}]}}\n")
        return "".join(out)
