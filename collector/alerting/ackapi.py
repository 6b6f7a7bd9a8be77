"""The acknowledgement API, served beside ``/metrics`` by the collector's bounded HTTP server (``http.listen``,
loopback by default)::

    GET  /api/v1/alerts                  the firing alerts the token may see: {"alerts": [...]}
    POST /api/v1/alerts/<ref>/ack        {"by": "NAME", "comment": "..."}: acknowledge one; answers the alert

Every request carries ``Authorization: Bearer <token>``, one of ``alerting.acks.tokens``. An operator's token
(no ``carrier``) sees and acknowledges every alert; a carrier's token only the alerts labelled with its PLMN:
another carrier's alert is "not found" to it, as one that does not exist (a competitor learns nothing of it).
``by`` defaults to the token's name; the acknowledgement records ``api:<token name>`` as the way it came.

Answers (plain JSON): 200; 400 a body that is not what is expected, or an ambiguous reference; 401 no token, or
not one of the configured ones (none configured: every request); 404 no such firing alert (for this token);
405 the wrong method; 409 acknowledged already (says by whom).

Threads: the server calls the application from one thread per connection; ``AckStore`` is thread-safe. The
clock is read here (``clock``), at the edge, and handed to the store.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter

from collector.alerting.ackconfig import AckToken
from collector.alerting.acks import AckError, AckStore

__all__ = ["API_PATH", "MAX_BODY", "AckApi", "with_acks"]

log = logging.getLogger(__name__)

API_PATH: Final = "/api/v1/alerts"
MAX_BODY: Final = 4096
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
_REASONS: Final = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
                   405: "Method Not Allowed", 409: "Conflict"}
_STATUS: Final = {"unknown": 404, "ambiguous": 400, "acked": 409, "invalid": 400}


class AckApi:
    """The WSGI application; see the module docstring."""

    def __init__(self, store: AckStore, tokens: Mapping[str, AckToken], registry: CollectorRegistry,
                 clock: Callable[[], int] = time.time_ns) -> None:
        self.store, self.clock = store, clock
        self._tokens = [(name, f"Bearer {t.token.get_secret_value()}".encode(), t.carrier)
                        for name, t in tokens.items()]
        self.requests = Counter("zonewatch_ack_requests", "Requests to the acknowledgement API, by result "
                                "(listed, acknowledged, unauthorized, refused)", ["result"], registry=registry)

    def _holder(self, environ: Mapping[str, Any]) -> tuple[str, str | None] | None:
        """Return (token name, carrier) of the request's bearer token, or None."""
        given = str(environ.get("HTTP_AUTHORIZATION", "")).encode()
        found = None
        for name, expected, carrier in self._tokens:   # every one compared: the time says nothing of which
            if hmac.compare_digest(given, expected):
                found = (name, carrier)
        return found

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", "")).rstrip("/")
        method = environ.get("REQUEST_METHOD")
        holder = self._holder(environ)
        if holder is None:
            self.requests.labels("unauthorized").inc()
            why = ("no token is configured (alerting.acks.tokens)" if not self._tokens else
                   "give one of the collector's acknowledgement tokens as Authorization: Bearer <token>")
            return _answer(start_response, 401, {"error": why}, [("WWW-Authenticate", 'Bearer realm="zonewatch"')])
        name, carrier = holder
        if path == API_PATH:
            if method != "GET":
                return _answer(start_response, 405, {"error": "GET the list; POST .../<ref>/ack to acknowledge"})
            alerts = [i.to_json() for i in self.store.open_incidents() if carrier is None or i.carrier == carrier]
            self.requests.labels("listed").inc()
            return _answer(start_response, 200, {"alerts": alerts})
        ref, _, action = path[len(API_PATH) + 1:].partition("/") if path.startswith(API_PATH + "/") else ("", "", "")
        if not ref or action != "ack":
            return _answer(start_response, 404, {"error": f"no such resource {path!r}: {API_PATH} or "
                                                 f"{API_PATH}/<ref>/ack"})
        if method != "POST":
            return _answer(start_response, 405, {"error": "POST {\"by\": NAME, \"comment\": TEXT} to acknowledge"})
        try:
            body = _body(environ)
            by, comment = body.get("by", name), body.get("comment", "")
            if not isinstance(by, str) or not isinstance(comment, str):
                raise AckError("by and comment must be strings", "invalid")
            incident = self.store.acknowledge(ref, by, f"api:{name}", self.clock(), comment, carrier=carrier)
        except AckError as exc:
            self.requests.labels("refused").inc()
            log.info("ack API (%s): refused an acknowledgement of %r: %s", name, ref[:32], exc)
            return _answer(start_response, _STATUS[exc.reason], {"error": str(exc)})
        self.requests.labels("acknowledged").inc()
        log.info("alert %s %s acknowledged by %s (api:%s)", incident.ref, incident.labels.get("alertname"),
                 incident.acked_by, name)
        return _answer(start_response, 200, incident.to_json())


def _body(environ: Mapping[str, Any]) -> dict[str, Any]:
    """Return the request's JSON object (an empty body is an empty object)."""
    raw = environ["wsgi.input"].read(MAX_BODY + 1) if environ.get("wsgi.input") is not None else b""
    if len(raw) > MAX_BODY:
        raise AckError(f"the body is over {MAX_BODY} bytes", "invalid")
    if not raw.strip():
        return {}
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise AckError('the body is not JSON: send {"by": "NAME", "comment": "TEXT"}', "invalid") from None
    if not isinstance(doc, dict) or set(doc) - {"by", "comment"}:
        raise AckError('expected {"by": "NAME", "comment": "TEXT"} (both optional, nothing else)', "invalid")
    return doc


def _answer(start_response: Callable[..., Any], code: int, doc: object,
            headers: list[tuple[str, str]] | None = None) -> list[bytes]:
    body = (json.dumps(doc, sort_keys=True) + "\n").encode()
    start_response(f"{code} {_REASONS[code]}", [("Content-Type", "application/json"),
                                                ("Content-Length", str(len(body))), *(headers or [])])
    return [body]


def with_acks(api: WsgiApp, other: WsgiApp) -> WsgiApp:
    """Return one application: ``api`` for paths under ``API_PATH``, ``other`` (``/metrics``...) for the rest."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if str(environ.get("PATH_INFO", "")).startswith(API_PATH):
            return api(environ, start_response)
        return other(environ, start_response)

    return app
