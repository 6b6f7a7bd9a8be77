"""What a probe's configuration says about its software, and the files its agent and its updater share.

Two sections of the agent configuration::

    software:   {version: V}    the release this probe should run. The centre says it (``zonewatch-collector fleet
                                update``, in the desired configuration); a local file may say it too, to pin a
                                probe that is not managed from the centre
    update:     (local only)    this probe takes versions from the centre, and from where: ``source``, the zone's
                                package index (http://, https:// or file://, PEP 503 pages); ``health_timeout``,
                                how long a new version has to come up healthy before it is rolled back

The agent runs unprivileged and cannot install anything. It hands a version to the updater (``agent.fleet.updater``,
run as root by ``zonewatch-agent-update.service`` when ``zonewatch-agent-update.path`` sees a request) through
one folder, ``update/`` beside the spool (``/var/lib/zonewatch/update``)::

    request.json    agent -> updater: the version wanted, the version running, a request id. The updater takes
                    it (removes it) before it acts, so the path unit does not start it twice
    health.json     agent -> updater: the version this agent runs, when it started, how many batches the broker
                    acknowledged since, how many of its sources polled and failed. The updater reads it before
                    an install (the old version's baseline) and after (is the new one healthy?)
    result.json     updater -> agent: what became of a request (installed, rolled back, failed, with why); the
                    agent reports it to the centre (an ``update`` event) once
    agent.json      the agent's own memory: which (version, configuration version) it asked for already, and
                    which results it reported

The folder belongs to the agent's user: the updater, as root, trusts nothing in it. It reads only regular files
of bounded size, never through a symbolic link, takes no path or command from them, takes the package source
from the configuration file (root's), and writes its result under a new name renamed into place (a link
planted as ``result.json`` is replaced, its target untouched).
"""

from __future__ import annotations

import json
import os
import stat
import uuid
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from zonewatch import wire
from zonewatch.strict import Duration, Strict

__all__ = ["SoftwareWanted", "UpdateSettings", "update_dir", "REQUEST", "HEALTH", "RESULT", "AGENT_STATE",
           "MAX_FILE_BYTES", "read_json", "write_json", "remove"]

REQUEST, HEALTH, RESULT, AGENT_STATE = "request.json", "health.json", "result.json", "agent.json"
MAX_FILE_BYTES = 16 * 1024   # none of them is larger; a larger one is not read


class SoftwareWanted(Strict):
    """``software:``: the release this probe should run."""

    version: str

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not wire.valid_version(value):
            raise ValueError(f"expected a release version such as 0.2.0 or 0.2.0+zone1 (a digit first, then letters, "
                             f"digits and . + ! _ -, at most 64), got {value!r}")
        return value


class UpdateSettings(Strict):
    """``update:`` of the local file: this probe takes software versions from the centre, from ``source``."""

    source: str
    health_timeout: Duration = Field(default=120.0, gt=0)    # a new version must be healthy within this
    request_timeout: Duration = Field(default=600.0, gt=0)   # a request no updater took by then is reported failed

    @field_validator("source")
    @classmethod
    def _index(cls, value: str) -> str:
        if not value.startswith(("http://", "https://", "file:///")) or any(c.isspace() for c in value):
            raise ValueError(f"expected the zone's package index as an http://, https:// or file:/// URL, got "
                             f"{value!r}")
        return value


def update_dir(spool_path: str) -> Path:
    """Return the folder the agent and the updater share: ``update/`` beside the spool."""
    return Path(spool_path).parent / "update"


def _open_dir(folder: Path) -> int:
    """Open ``folder`` without following a link at its last step (it belongs to the agent's user)."""
    return os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)


def read_json(folder: Path, name: str) -> dict[str, Any] | None:
    """Return the JSON object in ``folder/name``, None if there is none; raise ValueError (naming the file, not
    quoting it) if it is a link, not a regular file, larger than ``MAX_FILE_BYTES`` or not a JSON object."""
    try:
        dir_fd = _open_dir(folder)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ValueError(f"{folder}: not a folder that can be read ({exc.strerror})") from None
    try:
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ValueError(f"{folder / name}: cannot be opened ({exc.strerror}; a link is never followed)") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise ValueError(f"{folder / name}: not a regular file")
            if info.st_size > MAX_FILE_BYTES:
                raise ValueError(f"{folder / name}: {info.st_size} bytes, at most {MAX_FILE_BYTES}")
            data = os.read(fd, MAX_FILE_BYTES + 1)
        finally:
            os.close(fd)
    finally:
        os.close(dir_fd)
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        raise ValueError(f"{folder / name}: not JSON") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{folder / name}: not a JSON object")
    return doc


def write_json(folder: Path, name: str, doc: dict[str, Any], mode: int = 0o640) -> None:
    """Replace ``folder/name`` with ``doc``: written under a new name beside it (never through a link), synced,
    renamed over it."""
    data = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"{folder / name}: {len(data)} bytes to write, at most {MAX_FILE_BYTES}")
    folder.mkdir(mode=0o750, parents=True, exist_ok=True)
    dir_fd = _open_dir(folder)
    try:
        tmp = f".{name}.{uuid.uuid4().hex}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode, dir_fd=dir_fd)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def remove(folder: Path, name: str) -> bool:
    """Remove ``folder/name`` (a link itself, never its target); return False if there was none."""
    try:
        dir_fd = _open_dir(folder)
    except FileNotFoundError:
        return False
    try:
        os.unlink(name, dir_fd=dir_fd)
        return True
    except FileNotFoundError:
        return False
    finally:
        os.close(dir_fd)
