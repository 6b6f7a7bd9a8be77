"""The broker's files on disk: what ``render-mosquitto`` writes, and the rewrite after an enrolment change.

``write_bundle`` writes the password file, the ACL, the listener section, the limits and the layout into one
folder, with a password file per user it made (``secrets/<user>``, mode 0600); ``write_access`` rewrites the
password file and ACL after an approval or a retirement, keeping every other user's hash. Every file is replaced
atomically, keeping the owner of the file it replaces where it may (the broker reloads it as its own user).
``Written``, ``write_file`` and ``read_password`` serve the other renderers of central files too.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from collector.inventory import Inventory, Receiver
from collector.mosquitto import (
    DEFAULT_COLLECTOR,
    ENROL_SUFFIX,
    LAYOUT_FILE,
    URGENT_SUFFIX,
    Enrolment,
    Layout,
    broker_probes,
    render_acl,
    usernames,
)
from collector.mosquitto.limits import QueueSizing, max_packet_size, render_limits
from collector.mosquitto.listener import ListenerTls, render_listener
from collector.mosquitto.passwd import hash_password, new_password, parse_passwd, render_passwd_hashed
from zonewatch.strict import read_secret_file

ACL_FILE = "acl"
LIMITS_FILE = "mosquitto-limits.conf"
PASSWD_FILE = "passwd"
LISTENER_FILE = "mosquitto-listener.conf"
SECRETS_DIR = "secrets"
_NO_LAYOUT = Layout()   # no HA peers, no park bridges


@dataclass(frozen=True)
class Written:
    """One file the command wrote, and what it is (never its content)."""

    path: Path
    what: str


def _write(path: Path, text: str, mode: int) -> None:
    """Replace ``path`` atomically with ``text``, created with ``mode`` from the start, and with the owner of the
    file it replaces where this user may give it (the broker, reloading as its own user, must still read it)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        before: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        before = None
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # an older leftover may have had a wider mode
        if before is not None and (before.st_uid, before.st_gid) != (os.geteuid(), os.getegid()):
            try:
                os.fchown(fd, before.st_uid, before.st_gid)
            except PermissionError:
                pass   # not root: the file becomes this user's, as a first rendering would make it
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _read_secret(folder: Path, user: str) -> str:
    """Return the password stored in ``folder/user`` (one line; a trailing newline is not part of it), read as
    every secret file is (``strict.read_secret_file``): a regular file inside ``folder`` itself (no symbolic
    link out of it), not writable by group or others, of a bounded size."""
    value = read_secret_file(user, root=folder)
    if not value or "\n" in value:
        raise ValueError(f"{folder / user}: expected one non-empty line with the password")
    return value


def read_password(folder: Path, user: str) -> str:
    """Return ``user``'s password kept in ``folder`` (as ``write_bundle`` reads it; the park bridge's files too)."""
    return _read_secret(folder, user)


def write_file(path: Path, text: str, mode: int) -> None:
    """Replace ``path`` atomically with ``text`` and ``mode`` (as ``write_bundle`` writes; the park bridge's too)."""
    _write(path, text, mode)


def write_bundle(inventory: Inventory, out: Path, tls: ListenerTls, *, collector: str = DEFAULT_COLLECTOR,
                 secrets_dir: Path | None = None, port: int = 8883, bind: str | None = None,
                 broker_dir: str | None = None, noc: Sequence[Receiver] = (),
                 sizing: QueueSizing | None = None, enrolment: Enrolment | None = None,
                 layout: Layout = _NO_LAYOUT) -> list[Written]:
    """Write acl, passwd, the listener section, the queue limits, the layout and any new passwords into ``out``;
    return what was written. ``sizing`` defaults to the broker's probes at the ``QueueSizing`` defaults."""
    # With ``secrets_dir`` every user's password is read from ``secrets_dir/<user>``, and a missing file is an
    # error. Without it, passwords live in ``out/secrets/<user>`` (mode 0600): existing ones are kept, missing
    # ones generated. ``broker_dir`` is where the broker will find acl and passwd (default: ``out``). An approved
    # probe (``enrolment``) needs no password file: its hash is the approval's.
    users = usernames(inventory, collector, enrolment, layout)
    shared = {collector + URGENT_SUFFIX: collector, collector + ENROL_SUFFIX: collector}   # a collector's password
    shared.update({peer + URGENT_SUFFIX: peer for peer in layout.peers})
    hashed = dict(enrolment.approved) if enrolment is not None else {}
    plain = [u for u in users if u not in shared and u not in hashed]
    acl = render_acl(inventory, collector, noc, enrolment, layout)
    written: list[Written] = []
    passwords: dict[str, str] = {}
    if secrets_dir is not None:
        missing = [u for u in plain if not (secrets_dir / u).is_file()]
        if missing:
            raise ValueError(f"{secrets_dir}: no password file for {', '.join(missing)}")
        passwords = {u: _read_secret(secrets_dir, u) for u in plain}
    else:
        own = out / SECRETS_DIR
        own.mkdir(parents=True, exist_ok=True, mode=0o700)
        for user in plain:
            path = own / user
            if path.is_file():
                passwords[user] = _read_secret(own, user)
                continue
            passwords[user] = new_password()
            _write(path, passwords[user] + "\n", 0o600)
            written.append(Written(path, f"new password of {user} (mode 0600)"))
    hashes = {user: hashed[user][1] if user in hashed
              else hash_password(passwords[shared.get(user, user)]) for user in users}
    out.mkdir(parents=True, exist_ok=True)
    where = broker_dir if broker_dir is not None else str(out.resolve())
    listener = render_listener(port, f"{where}/{PASSWD_FILE}", f"{where}/{ACL_FILE}", tls, bind)
    _write(out / PASSWD_FILE, render_passwd_hashed(hashes), 0o600)
    _write(out / ACL_FILE, acl, 0o644)
    _write(out / LISTENER_FILE, listener, 0o644)
    probes = len(broker_probes(inventory, enrolment))
    sizing = sizing or QueueSizing(probes)
    _write(out / LIMITS_FILE, render_limits(sizing), 0o644)
    if layout != Layout():
        _write(out / LAYOUT_FILE, layout.to_json(), 0o644)
    else:   # a layout from an earlier rendering must not bring its users back at the next approval
        (out / LAYOUT_FILE).unlink(missing_ok=True)
    sessions = "three sessions" if enrolment is not None else "two sessions"
    boot = f", {len(enrolment.zones)} bootstrap user(s)" if enrolment is not None else ""
    written += [
        Written(out / PASSWD_FILE, f"mosquitto password file, {len(users)} users (hashed, mode 0600)"),
        Written(out / ACL_FILE, f"mosquitto ACL: collector {collector!r} ({sessions}), {probes} probe(s){boot}"),
        Written(out / LISTENER_FILE, f"listener section for mosquitto.conf (port {port}, TLS)"),
        Written(out / LIMITS_FILE, f"limits for mosquitto.conf: packets up to {max_packet_size()} bytes; "
                                   f"{sizing.messages} messages, {sizing.bytes / 2**20:,.0f} MiB queued for "
                                   "the collector's session"),
    ]
    if layout != Layout():
        written.append(Written(out / LAYOUT_FILE, f"the other collectors ({', '.join(layout.peers) or 'none'}) and "
                                                  f"park bridges ({', '.join(layout.bridges) or 'none'}), for "
                                                  "`probes approve` and `retire`"))
    return written


def write_access(out: Path, inventory: Inventory, enrolment: Enrolment, collector: str = DEFAULT_COLLECTOR,
                 noc: Sequence[Receiver] = ()) -> list[Written]:
    """Rewrite ``out``'s password file and ACL after an enrolment change (an approval, a retirement): every user
    keeps the hash the file holds, an approved probe gets its approval's, a retired one is left out; the ACL is
    rendered again. Raise ValueError when the file lacks a user that needs a password from ``render-mosquitto``."""
    path = out / PASSWD_FILE
    try:
        held = parse_passwd(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: no password file: run `zonewatch-collector render-mosquitto --out {out}` "
                         "first") from None
    layout = Layout.read(out)   # as render-mosquitto wrote it: an HA peer's or a bridge's user stays
    users = usernames(inventory, collector, enrolment, layout)
    hashes: dict[str, str] = {}
    for user in users:
        if user in enrolment.approved:
            hashes[user] = enrolment.approved[user][1]
        elif user in held:
            hashes[user] = held[user]
    missing = [u for u in users if u not in hashes]
    if missing:
        raise ValueError(f"{path} has no password for {', '.join(missing)}: run `zonewatch-collector render-mosquitto "
                         f"--out {out}` again (with the same --secrets), which writes every user")
    acl = render_acl(inventory, collector, noc, enrolment, layout)
    _write(path, render_passwd_hashed(hashes), 0o600)
    _write(out / ACL_FILE, acl, 0o644)
    return [Written(path, f"mosquitto password file, {len(users)} users (hashed, mode 0600)"),
            Written(out / ACL_FILE, f"mosquitto ACL: {len(broker_probes(inventory, enrolment))} probe(s), "
                                    f"{len(enrolment.zones)} bootstrap user(s)")]

