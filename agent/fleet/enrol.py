"""Enrolment, the probe's side: from the zone's bootstrap credential to MQTT credentials of its own.

With an ``enrol:`` section in the local configuration and no credentials in its ``state_dir`` yet,
``zonewatch-agent run`` (and ``zonewatch-agent enrol``) first::

    1. makes a key pair (X25519, PyNaCl), kept in state_dir/key (mode 0600), and logs its fingerprint: the
       field engineer compares it with ``zonewatch-collector probes list`` before anyone approves;
    2. reads the hardware identity: /etc/machine-id (``machine_id_file``), and each AT modem's IMEI
       (``AT+CGSN``) and SIM ICCID (``AT+CCID``, ``AT+QCCID``, ``AT!ICCID?``: the first readable answer), through
       the cellular source's own port handling;
    3. logs in as the bootstrap user (``enrol-<zone>`` unless ``username`` says otherwise), subscribes to its reply
       topic and publishes its request (``zonewatch.wire``, "Enrolment"); sends it again after ``resend``, doubling up
       to ``resend_max``, each wait spread by ±25 % so that probes switched on together drift apart;
    4. opens the reply (sealed to its key: nobody else can), and on approval writes state_dir/password and
       state_dir/credentials.json (0600; credentials.json last, so a half-written state is no state), then runs
       as the probe it was approved as. A rejection is kept too (state_dir/rejected.json): the agent stops with
       exit code 3 at every start until that folder is cleared, instead of asking again and again.

The bootstrap user is one per zone, and the broker ties the client id to the username: two probes enrolling at
once throw each other off. Each goes back on with paho's backoff (from a random 1–3 s, doubling to 60 s), sends
its request again (the same request: its id is its key's) and gets its retained reply whenever it is connected.

Once enrolled, the probe runs with ``probe.id`` the approved id, and ``mqtt.username``/``mqtt.password`` its own:
the password file can be named in a configuration without ``enrol`` as ``password: {file: <state_dir>/password}``.

One module: it is the one procedure above (``ensure``), in short sections (the settings, the pure parsing, the
state files, the bootstrap session), which share ``EnrolError`` and the state folder's layout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, SealedBox
from pydantic import Field, SecretStr, field_validator

from zonewatch import wire
from zonewatch.backoff import Backoff
from zonewatch.mqtt import MqttConfig
from zonewatch.process import ServiceNotifier
from zonewatch.strict import Duration, Secret, Strict

if TYPE_CHECKING:
    from agent.config import AgentConfig
    from agent.sources.vendors import Reply

__all__ = ["EnrolSettings", "Credentials", "EnrolError", "Rejected", "Resend", "parse_imei", "parse_iccid",
           "read_machine_id", "read_modems", "load_or_make_key", "open_reply", "read_credentials",
           "write_credentials", "enrolled", "ensure", "IDENTITY_COMMANDS"]

log = logging.getLogger(__name__)

KEY_FILE, PASSWORD_FILE, CREDENTIALS_FILE, REJECTED_FILE = "key", "password", "credentials.json", "rejected.json"
IMEI_COMMAND = "AT+CGSN"
ICCID_COMMANDS = ("AT+CCID", "AT+QCCID", "AT!ICCID?")   # 3GPP-ish, Quectel, Sierra: the first readable answer wins
IDENTITY_COMMANDS = (IMEI_COMMAND, *ICCID_COMMANDS)
_IMEI = re.compile(r"^[0-9]{14,16}$")
_ICCID = re.compile(r"^[0-9]{18,22}F?$")


class EnrolSettings(Strict):
    """``enrol:`` of the agent's local configuration: the zone's bootstrap credential, and where the probe keeps
    what enrolment gives it."""

    password: Secret                           # the zone's bootstrap password
    username: str | None = None                # default: enrol-<probe.zone>
    state_dir: str = "/var/lib/zonewatch/enrol"
    machine_id_file: str = "/etc/machine-id"
    resend: Duration = Field(default=10.0, gt=0)       # the first wait before the request is sent again
    resend_max: Duration = Field(default=300.0, gt=0)  # the longest wait between two sends

    @field_validator("state_dir", "machine_id_file")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not os.path.isabs(value):
            raise ValueError(f"expected an absolute path, got {value!r}")
        return value

    def bootstrap_user(self, zone: str) -> str:
        """Return the bootstrap username for ``zone``."""
        return self.username or f"enrol-{zone}"


class EnrolError(RuntimeError):
    """Enrolment cannot go on (a state file that cannot be read or written, a stop asked for); says why."""


class Rejected(EnrolError):
    """The centre rejected this probe's request."""


@dataclass(frozen=True)
class Credentials:
    """What enrolment gave this probe: who it is and its MQTT user (the password is in its own file)."""

    zone: str
    probe: str
    username: str
    request: str


# ---------------------------------------------------------------------------------------------- pure logic


def parse_imei(lines: Sequence[str]) -> str | None:
    """Return the IMEI in an answer to ``AT+CGSN`` (``867962040012345``, ``+CGSN: 86...``, quoted), or None."""
    for line in lines:
        value = line.split(":", 1)[-1].strip().strip('"').strip()
        if _IMEI.match(value):
            return value
    return None


def parse_iccid(lines: Sequence[str]) -> str | None:
    """Return the ICCID in an answer to ``AT+CCID``/``AT+QCCID``/``AT!ICCID?`` (prefixed or bare, quoted or not,
    an ``f`` pad made ``F``), or None."""
    for line in lines:
        value = line.split(":", 1)[-1].strip().strip('"').strip().upper()
        if _ICCID.match(value):
            return value
    return None


def identity_from(name: str, replies: Sequence[Reply]) -> wire.ModemIdentity:
    """Return one modem's identity from its replies to ``IDENTITY_COMMANDS``."""
    imei = next((parse_imei(r.lines) for r in replies if r.command == IMEI_COMMAND and r.ok), None)
    iccid = next((found for r in replies if r.command in ICCID_COMMANDS and r.ok
                  if (found := parse_iccid(r.lines)) is not None), None)
    return wire.ModemIdentity(name, imei, iccid)


@dataclass(frozen=True)
class Resend(Backoff):
    """When to send the request again: ``first`` doubling to ``maximum``, each wait times a random 0.75 to 1.25
    (``delay(attempt, rng)``: the wait after the ``attempt``-th send, 0 for the first)."""

    jitter: float = 0.25


def open_reply(key: PrivateKey, request: str, payload: bytes) -> wire.EnrolAnswer | None:
    """Return the answer in a reply to ``request``, or None for an empty (cleared) one; raise EnrolError for one
    that is not for this key or not well formed."""
    if not payload:
        return None
    try:
        rid, sealed = wire.decode_enrol_reply(payload)
        if rid != request:
            raise EnrolError(f"a reply for request {rid[:12]} came on this probe's topic")
        answer = wire.decode_enrol_answer(SealedBox(key).decrypt(sealed))
    except wire.WireError as exc:
        raise EnrolError(f"a reply that is not well formed: {exc}") from None
    except CryptoError:
        raise EnrolError("a reply that this probe's key cannot open (sealed to another key, or damaged)") from None
    if answer.request != request:
        raise EnrolError(f"the sealed answer is for request {answer.request[:12]}, not this probe's")
    return answer


def enrolled(cfg: AgentConfig, creds: Credentials, password: str) -> AgentConfig:
    """Return ``cfg`` as the enrolled probe runs it: its approved id and zone, its own MQTT user."""
    probe = cfg.probe.model_copy(update={"id": creds.probe, "zone": creds.zone})
    mqtt_cfg = cfg.mqtt.model_copy(update={"username": creds.username, "password": SecretStr(password)})
    return cfg.model_copy(update={"probe": probe, "mqtt": mqtt_cfg})


# ---------------------------------------------------------------------------------------------- state files


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably, mode 0600 from the start."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _folder(state_dir: str) -> Path:
    folder = Path(state_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise EnrolError(f"cannot make the enrolment folder {folder}: {exc.strerror}") from None
    return folder


def load_or_make_key(state_dir: str) -> PrivateKey:
    """Return this probe's private key from state_dir/key, made (0600) the first time."""
    path = _folder(state_dir) / KEY_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        key = PrivateKey.generate()
        try:
            _write_private(path, bytes(key))
        except OSError as exc:
            raise EnrolError(f"cannot write the probe's key to {path}: {exc.strerror}") from None
        return key
    except OSError as exc:
        raise EnrolError(f"cannot read the probe's key {path}: {exc.strerror}") from None
    if len(raw) != 32:
        raise EnrolError(f"{path} holds {len(raw)} bytes, not a 32-byte key: remove the folder's files to enrol anew")
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
        log.warning("enrolment key %s could be read by others; made 0600", path)
    return PrivateKey(raw)


def read_credentials(state_dir: str) -> tuple[Credentials, str] | None:
    """Return the credentials enrolment wrote, with the password, or None if there are none yet."""
    folder = Path(state_dir)
    try:
        doc = json.loads((folder / CREDENTIALS_FILE).read_text(encoding="utf-8"))
        password = (folder / PASSWORD_FILE).read_text(encoding="utf-8").rstrip("\r\n")
        creds = Credentials(str(doc["zone"]), str(doc["probe"]), str(doc["username"]), str(doc["request"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EnrolError(f"cannot read the enrolment state in {folder}: {exc}") from None
    return creds, password


def write_credentials(state_dir: str, answer: wire.EnrolAnswer) -> Credentials:
    """Keep an approval: the password (its own file, for ``{file: ...}``), then who the probe is."""
    assert answer.zone and answer.probe and answer.username and answer.password
    folder = _folder(state_dir)
    creds = Credentials(answer.zone, answer.probe, answer.username, answer.request)
    try:
        _write_private(folder / PASSWORD_FILE, answer.password.encode("utf-8") + b"\n")
        _write_private(folder / CREDENTIALS_FILE, json.dumps(
            {"v": 1, "zone": creds.zone, "probe": creds.probe, "username": creds.username,
             "request": creds.request}).encode("utf-8"))
    except OSError as exc:
        raise EnrolError(f"cannot write the credentials into {folder}: {exc.strerror}") from None
    return creds


def read_machine_id(path: str) -> str | None:
    """Return the machine id in ``path`` (systemd's /etc/machine-id: 32 hex digits), or None."""
    try:
        text = Path(path).read_text(encoding="ascii", errors="replace")[:100].strip().lower()
    except OSError as exc:
        log.warning("enrolment: no machine id from %s: %s", path, exc.strerror)
        return None
    if not re.fullmatch(r"[0-9a-f]{32}", text):
        log.warning("enrolment: %s does not hold a machine id (32 hex digits)", path)
        return None
    return text


async def read_modems(cfg: AgentConfig) -> tuple[wire.ModemIdentity, ...]:
    """Return the identity of every modem the configuration reads over AT (one that does not answer is listed
    with none: the request goes out all the same)."""
    from agent.sources import SourceError
    from agent.sources.cellular import CellularConfig, CellularSource

    found: list[wire.ModemIdentity] = []
    for config in cfg.sources:
        if not isinstance(config, CellularConfig) or config.backend != "at":
            continue
        source = CellularSource(config)
        try:
            found.append(identity_from(config.name, await source.ask(IDENTITY_COMMANDS)))
        except (SourceError, OSError) as exc:
            log.warning("enrolment: modem %s gave no identity: %s", config.name, exc)
            found.append(wire.ModemIdentity(config.name))
        finally:
            await source.close()
    return tuple(found[:wire.ENROL_MAX_MODEMS])


# ---------------------------------------------------------------------------------------------- the exchange


class Exchange:
    """The bootstrap session: subscribe to the reply, send the request until a reply opens (see the module
    docstring). ``run`` is the outer loop and reads the clock; paho's thread only queues what arrives."""

    def __init__(self, mqtt_cfg: MqttConfig, settings: EnrolSettings, request: wire.EnrolRequest, key: PrivateKey,
                 rng: random.Random | None = None) -> None:
        from agent.uplink import make_client

        self.key, self.request_id = key, request.request_id
        self.user = settings.bootstrap_user(request.zone)
        self.topic = wire.enrol_topic(request.zone, self.request_id, "request")
        self.reply_topic = wire.enrol_topic(request.zone, self.request_id, "reply")
        self.payload = wire.encode_enrol_request(request)
        self.resend = Resend(settings.resend, settings.resend_max)
        self.rng = rng or random.Random()
        self.cfg = mqtt_cfg.model_copy(update={"username": self.user, "password": settings.password,
                                               "client_id": self.user})
        self.client = make_client(self.cfg, client_id=self.user)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        self._inbox: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()   # ("ready" | "reply", payload)
        self._said: str | None = None
        self._leaving = False

    # paho's thread
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self._say(f"broker {self.cfg.host}:{self.cfg.port} refused the bootstrap user {self.user}: {reason} (is "
                      "enrol.password the zone's bootstrap password?); retrying")
            return
        client.subscribe(self.reply_topic, qos=1)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        self._inbox.put(("ready", None))

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == self.reply_topic:
            self._inbox.put(("reply", bytes(msg.payload)))

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if self._leaving:
            return
        log.info("enrolment: off the broker (%s): another probe enrolling with the same bootstrap user takes the "
                 "connection over, or the link dropped; back on after a random wait", reason)

    def _say(self, message: str) -> None:
        if message != self._said:
            log.error("enrolment: %s", message)
        self._said = message

    def run(self, stop: threading.Event, timeout: float | None = None, clock: Callable[[], float] = time.monotonic,
            alive: Callable[[float], object] = lambda now: None) -> wire.EnrolAnswer:
        """Send the request until an answer opens, ``stop`` is set or ``timeout`` passes (EnrolError). ``alive`` is
        called with the clock at every turn of the loop (the service manager's watchdog)."""
        deadline = None if timeout is None else clock() + timeout
        attempt, next_send = 0, None
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=int(self.cfg.keepalive))
        self.client.loop_start()
        try:
            while True:
                if stop.is_set():
                    raise EnrolError("stopped while waiting for the enrolment reply")
                if deadline is not None and clock() > deadline:
                    raise EnrolError(f"no enrolment reply within {timeout:g} s")
                try:
                    what, payload = self._inbox.get(timeout=0.2)
                except queue.Empty:
                    what, payload = "", None
                now = clock()
                alive(now)
                if what == "reply":
                    try:
                        answer = open_reply(self.key, self.request_id, payload)
                    except EnrolError as exc:
                        log.warning("enrolment: %s; waiting on", exc)
                        continue
                    if answer is not None:
                        return answer
                if what == "ready" or (next_send is not None and now >= next_send and self.client.is_connected()):
                    self.client.publish(self.topic, self.payload, qos=1)
                    next_send = now + self.resend.delay(attempt, self.rng)
                    attempt += 1
        finally:
            self._leaving = True
            self.client.disconnect()
            self.client.loop_stop()


# ---------------------------------------------------------------------------------------------- the whole


def ensure(cfg: AgentConfig, stop: threading.Event, timeout: float | None = None,
           notifier: ServiceNotifier | None = None) -> AgentConfig:
    """Return ``cfg`` as the enrolled probe runs it, enrolling first if no credentials are kept yet; raise
    Rejected if the centre said no (now, or before), EnrolError if enrolment cannot finish.

    Under systemd (``notifier``) the wait for a decision, which may take days, counts as started: READY is said
    with the status "waiting for enrolment approval", and the watchdog is fed while waiting."""
    settings = cfg.enrol
    assert settings is not None
    kept = read_credentials(settings.state_dir)
    if kept is None:
        rejected = Path(settings.state_dir) / REJECTED_FILE
        if rejected.exists():
            raise Rejected(f"the centre rejected this probe's request before ({rejected}); to ask again with a new "
                           f"key, remove the files in {settings.state_dir}")
        key = load_or_make_key(settings.state_dir)
        public = bytes(key.public_key)
        machine_id = read_machine_id(settings.machine_id_file)
        modems = asyncio.run(read_modems(cfg))
        request = wire.EnrolRequest(cfg.probe.zone, public, cfg.probe.id, machine_id, modems, time.time_ns())
        log.info("enrolment: asking zone %s to admit this probe as %s (request %s, key fingerprint %s; machine %s; "
                 "%s): compare the fingerprint with `zonewatch-collector probes list` before approving",
                 cfg.probe.zone, cfg.probe.id, request.request_id[:12], wire.enrol_fingerprint(public),
                 machine_id or "unknown", "; ".join(f"modem {m.name} IMEI {m.imei or '?'} ICCID {m.iccid or '?'}"
                                                   for m in modems) or "no modems")
        if cfg.mqtt.tls is None:
            log.warning("enrolment: mqtt.tls is not set: the bootstrap password crosses the network in the clear")
        notifier = notifier or ServiceNotifier(None)
        notifier.ready(f"waiting for enrolment approval (request {request.request_id[:12]}, key fingerprint "
                       f"{wire.enrol_fingerprint(public)})")
        answer = Exchange(cfg.mqtt, settings, request, key).run(stop, timeout, alive=notifier.watchdog)
        if answer.status == "rejected":
            doc = {"request": answer.request, "reason": answer.reason, "at_ns": time.time_ns()}
            try:
                _write_private(Path(settings.state_dir) / REJECTED_FILE, json.dumps(doc).encode("utf-8"))
            except OSError as exc:
                log.error("enrolment: cannot note the rejection: %s", exc.strerror)
            raise Rejected(f"the centre rejected this probe's request {answer.request[:12]}"
                           + (f": {answer.reason}" if answer.reason else ""))
        creds = write_credentials(settings.state_dir, answer)
        log.info("enrolment: approved as probe %s/%s; credentials kept in %s", creds.zone, creds.probe,
                 settings.state_dir)
        assert answer.password is not None
        kept = creds, answer.password
    creds, password = kept
    if (creds.zone, creds.probe) != (cfg.probe.zone, cfg.probe.id):
        log.info("enrolment: running as probe %s/%s (the configuration asks for %s/%s; the approval decides)",
                 creds.zone, creds.probe, cfg.probe.zone, cfg.probe.id)
    return enrolled(cfg, creds, password)
