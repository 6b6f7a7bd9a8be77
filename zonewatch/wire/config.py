"""The desired configuration a collector gives a probe, and the probe's ``config`` report (the contract:
``zonewatch.wire``, "Desired configuration")."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Final

from zonewatch.wire.core import _NAME, MAX_SEQ, MAX_TAG_VALUE, Event, FieldValue, WireError, read_envelope, valid_name

# ---------------------------------------------------------------------------------------------- configuration

CONFIG_SCHEMA_VERSION: Final = 1
MAX_CONFIG_BYTES: Final = 2**20   # a desired configuration's payload; the broker takes 1 MiB plus the header
# Keys of the agent configuration whose values are secrets: in a desired configuration each holds a reference
# ({env: NAME} or {file: NAME}, or a list of them), never the secret itself.
SECRET_KEYS: Final = frozenset({"password", "community", "communities", "auth_key", "priv_key"})
CONFIG_EVENT: Final = "config"
CONFIG_RESULTS: Final = ("applied", "rejected", "rolled_back")
LOCAL_CONFIG: Final = "local"     # the ``running`` tag of a probe that runs its own configuration file
_HASH = re.compile(r"^sha256:[0-9a-f]{64}\Z")
_CONFIG_KEYS: Final = frozenset({"v", "zone", "probe", "version", "hash", "issued_ns", "yaml"})


def config_hash(text: str) -> str:
    """Return the hash that names a configuration text: ``sha256:`` and the hex digest of its UTF-8 bytes."""
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class DesiredConfig:
    """What the collector wants one probe to run (the retained message on its ``config`` topic)."""

    zone: str
    probe: str
    version: int
    hash: str
    issued_ns: int
    yaml: str
    v: int = CONFIG_SCHEMA_VERSION


def encode_config(config: DesiredConfig) -> bytes:
    """Encode a desired configuration; raise WireError if it breaks the contract (``too_large`` past
    ``MAX_CONFIG_BYTES``, ``bad_hash`` if ``hash`` is not the text's)."""
    for what, value in (("zone", config.zone), ("probe", config.probe)):
        if not valid_name(value):
            raise WireError("bad_name", f"{what} {value!r} must match {_NAME.pattern}")
    if config.hash != config_hash(config.yaml):
        raise WireError("bad_hash", f"probe {config.zone}/{config.probe}: {config.hash} is not the hash of its text")
    if type(config.version) is not int or not 0 < config.version <= MAX_SEQ:
        raise WireError("bad_schema", f"version {config.version!r} must be a positive 63-bit integer")
    payload = json.dumps({"v": config.v, "zone": config.zone, "probe": config.probe, "version": config.version,
                          "hash": config.hash, "issued_ns": config.issued_ns, "yaml": config.yaml},
                         separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(payload) > MAX_CONFIG_BYTES:
        raise WireError("too_large", f"the desired configuration of probe {config.zone}/{config.probe} is "
                                     f"{len(payload)} bytes, at most {MAX_CONFIG_BYTES} (the broker's packet limit)")
    return payload


def decode_config(payload: bytes | bytearray | str) -> DesiredConfig:
    """Decode and check a desired configuration; raise WireError naming what is wrong."""
    doc = read_envelope(payload, MAX_CONFIG_BYTES, CONFIG_SCHEMA_VERSION, _CONFIG_KEYS, "config")
    zone, probe, text, hash_ = doc["zone"], doc["probe"], doc["yaml"], doc["hash"]
    for what, value in (("zone", zone), ("probe", probe)):
        if not isinstance(value, str) or not valid_name(value):
            raise WireError("bad_schema", f"'{what}' {value!r} must be a string matching {_NAME.pattern}")
    version, issued = doc["version"], doc["issued_ns"]
    if type(version) is not int or not 0 < version <= MAX_SEQ:
        raise WireError("bad_schema", f"'version' {version!r} must be a positive 63-bit integer")
    if type(issued) is not int or issued < 0:
        raise WireError("bad_schema", f"'issued_ns' {issued!r} must be a non-negative integer")
    if not isinstance(text, str) or not isinstance(hash_, str) or not _HASH.match(hash_):
        raise WireError("bad_schema", "'yaml' must be text and 'hash' sha256:<64 hex digits>")
    if config_hash(text) != hash_:
        raise WireError("bad_hash", f"the text does not match its hash {hash_}")
    return DesiredConfig(zone, probe, version, hash_, issued, text)


@dataclass(frozen=True, slots=True)
class ConfigReport:
    """What a probe said about a desired configuration (the ``config`` event)."""

    result: str              # one of CONFIG_RESULTS
    hash: str                # the configuration the report is about
    version: int
    running: str             # the hash running now, or LOCAL_CONFIG
    running_version: int     # 0 for the local file
    error: str = ""
    seconds: float = 0.0
    time_ns: int = 0


def config_report(report: ConfigReport) -> Event:
    """Return the ``config`` event that carries ``report`` (its error on one line, cut to ``MAX_TAG_VALUE``)."""
    if report.result not in CONFIG_RESULTS:
        raise WireError("bad_tag", f"config result {report.result!r} is not one of {', '.join(CONFIG_RESULTS)}")
    tags = {"result": report.result, "hash": report.hash, "running": report.running}
    error = " ".join(report.error.split())
    if error:
        tags["error"] = error if len(error) <= MAX_TAG_VALUE else error[: MAX_TAG_VALUE - 1] + "\u2026"
    fields: dict[str, FieldValue] = {"version": report.version, "running_version": report.running_version,
                                     "seconds": round(report.seconds, 3)}
    return Event(CONFIG_EVENT, tags, fields, report.time_ns)


def read_config_report(event: Event) -> ConfigReport | None:
    """Return the report a ``config`` event carries, or None if ``event`` is not one (or not a whole one)."""
    if event.name != CONFIG_EVENT:
        return None
    tags, fields = event.tags, event.fields
    result, hash_, running = tags.get("result"), tags.get("hash"), tags.get("running")
    version, running_version = fields.get("version"), fields.get("running_version", 0)
    seconds = fields.get("seconds", 0)
    if result not in CONFIG_RESULTS or hash_ is None or running is None or type(version) is not int \
            or type(running_version) is not int or isinstance(seconds, bool):
        return None
    return ConfigReport(result, hash_, version, running, running_version, tags.get("error", ""), float(seconds),
                        event.time_ns)
