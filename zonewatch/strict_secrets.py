"""Secrets in a configuration: where a ``Secret`` value comes from, and how a secret file is read.

``{env: NAME}`` reads a variable, ``{file: /path}`` a file (``read_secret_file``: a regular file of at most
``MAX_SECRET_BYTES`` that only its owner may write), a plain string is taken as it is (a lab). A configuration
written elsewhere is read under a ``SecretPolicy`` (the validation context's ``SECRET_POLICY``): references only,
a file by name inside the policy's folder, a variable with its prefix. ``zonewatch.strict`` gives the ``Secret``
type and these names, and documents them with the rest of the loader. A value is never echoed.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr, ValidationInfo

MAX_SECRET_BYTES = 64 * 2**10  # a secret file

log = logging.getLogger("zonewatch.strict")   # the loader's logger, whose name operators' settings may use

SECRET_POLICY = "zonewatch.strict.secret_policy"  # the context key of a SecretPolicy (see the module docstring)


@dataclass(frozen=True)
class SecretPolicy:
    """Where the secrets of a configuration written elsewhere may come from (its reader's own rules).

    ``folder``: ``{file: NAME}`` is a name inside this folder, read without following links
    (``read_secret_file(NAME, root=folder)``); None refuses files. ``env_prefix``: ``{env: NAME}`` must start
    with it. A plain string is always refused. ``folder_setting`` and ``prefix_setting`` name, in errors, the
    settings that decide them."""

    folder: str | None
    env_prefix: str
    folder_setting: str = "the reader's configuration"
    prefix_setting: str = "the reader's configuration"


def read_secret(value: Any, info: ValidationInfo) -> SecretStr:
    """Return the secret ``value`` gives (the ``Secret`` type's validator); raise ValueError."""
    if isinstance(value, SecretStr):
        return value
    policy = (info.context or {}).get(SECRET_POLICY)
    if isinstance(policy, SecretPolicy):
        return _read_secret_under(value, policy)
    if isinstance(value, str):
        return SecretStr(value)
    if isinstance(value, dict) and len(value) == 1:
        ((kind, ref),) = value.items()
        if kind == "env" and isinstance(ref, str):
            if ref not in os.environ:
                raise ValueError(f"environment variable {ref} is not set")
            return SecretStr(os.environ[ref])
        if kind == "file" and isinstance(ref, str):
            return SecretStr(read_secret_file(ref))
    raise ValueError("expected {env: VARIABLE}, {file: /path/to/secret} or a string")


def _read_secret_under(value: Any, policy: SecretPolicy) -> SecretStr:
    """Read a secret reference of a configuration written elsewhere, as ``policy`` allows; never echo a value."""
    if isinstance(value, str):
        raise ValueError("a secret may not be written out here: give {env: NAME} or {file: NAME}, read where the "
                         "configuration is used")
    if isinstance(value, dict) and len(value) == 1:
        ((kind, ref),) = value.items()
        if kind == "env" and isinstance(ref, str):
            if not policy.env_prefix or not ref.startswith(policy.env_prefix):
                raise ValueError(f"environment variable {ref} may not be read here: its name must start with "
                                 f"{policy.env_prefix!r} (set by {policy.prefix_setting})")
            if ref not in os.environ:
                raise ValueError(f"environment variable {ref} is not set")
            return SecretStr(os.environ[ref])
        if kind == "file" and isinstance(ref, str):
            if policy.folder is None:
                raise ValueError(f"no secret file may be read here: {policy.folder_setting} names no folder")
            return SecretStr(read_secret_file(ref, root=policy.folder))
    raise ValueError("expected {env: VARIABLE} or {file: NAME}")


_READ = os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK  # NONBLOCK: a FIFO must not hang the open
_FOLDER = os.O_RDONLY | os.O_CLOEXEC | os.O_DIRECTORY


def read_secret_file(path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> str:
    """Return the secret held in a file, without its trailing line break; raise ValueError naming the file.

    Refused: anything but a regular file (a device such as ``/dev/zero``, a FIFO, a folder: checked on the open
    file, so it cannot be swapped after the check), a file its group or others may write (they could choose the
    secret), a file larger than ``MAX_SECRET_BYTES`` and one that is not UTF-8. A file every user may read is
    taken, with a warning logged: the secret is out already, and refusing would not take it back.

    With ``root``, ``path`` is a name relative to that folder and must stay inside it: no leading ``/``, no
    ``..``, and no symbolic link on the way (each step is opened with ``O_NOFOLLOW`` from the one before, so a
    link planted in the folder, or a step swapped for one, cannot send the read elsewhere). The folders on the
    way may not be writable by group or others either.
    """
    name = os.fspath(path)
    shown = os.path.join(os.fspath(root), name) if root is not None else name
    try:
        fd = os.open(name, _READ) if root is None else _open_beneath(os.fspath(root), name)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and root is not None:
            raise ValueError(f"cannot read secret file {shown}: it, or a folder on the way, is a symbolic link "
                             f"(it must be a file inside {os.fspath(root)} itself)") from None
        raise ValueError(f"cannot read secret file {shown}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        _check_secret_mode(info, shown)
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_SECRET_BYTES:
            chunk = os.read(fd, MAX_SECRET_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise ValueError(f"cannot read secret file {shown}: {exc.strerror}") from None
    finally:
        os.close(fd)
    if size > MAX_SECRET_BYTES:
        raise ValueError(f"secret file {shown} is larger than {MAX_SECRET_BYTES // 1024} KiB")
    try:
        return b"".join(chunks).decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise ValueError(f"secret file {shown} is not UTF-8 text") from None


def _open_beneath(root: str, name: str) -> int:
    """Open ``name`` inside the folder ``root``, one step at a time and following no symbolic link."""
    parts = name.split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\0" in name:
        raise ValueError(f"secret file {name!r} must be a name inside {root} (no leading '/', no '.' or '..')")
    fd = os.open(root, _FOLDER)
    try:
        _check_folder(os.fstat(fd), root)
        for i, part in enumerate(parts[:-1]):
            step = os.open(part, _FOLDER | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = step
            _check_folder(os.fstat(fd), os.path.join(root, *parts[: i + 1]))
        return os.open(parts[-1], _READ | os.O_NOFOLLOW, dir_fd=fd)
    finally:
        os.close(fd)


def _check_folder(info: os.stat_result, shown: str) -> None:
    if info.st_mode & 0o022:
        raise ValueError(f"secret folder {shown} may be written by {_writers(info.st_mode)} (mode "
                         f"{stat.S_IMODE(info.st_mode):04o}): anyone who may write it may plant a secret; "
                         "make it writable by its owner only (chmod go-w)")


def _check_secret_mode(info: os.stat_result, shown: str) -> None:
    mode = info.st_mode
    if not stat.S_ISREG(mode):
        raise ValueError(f"secret file {shown} is not a regular file (it is {_kind(mode)})")
    if mode & 0o022:
        raise ValueError(f"secret file {shown} may be written by {_writers(mode)} (mode {stat.S_IMODE(mode):04o}): "
                         "make it writable by its owner only (chmod go-w)")
    if mode & 0o004:
        log.warning("secret file %s may be read by every user (mode %04o): chmod o-r", shown, stat.S_IMODE(mode))


def _writers(mode: int) -> str:
    return {0o020: "its group", 0o002: "every user"}.get(mode & 0o022, "its group and every user")


def _kind(mode: int) -> str:
    for test, kind in ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a file"
