"""Mosquitto's password file: one ``user:hash`` line per user.

Passwords are never in the inventory. The passwd file is hashed here, in the format mosquitto 2's
``mosquitto_passwd`` writes by default (``$7$``: PBKDF2-HMAC-SHA512, 101 iterations, 12-byte salt), so that
the collector host needs no mosquitto package and no password is ever put on a command line (where
``mosquitto_passwd -b`` would show it to every user of the host). Mosquitto 1.6 and older cannot read it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
from collections.abc import Callable, Mapping

from collector.mosquitto import check_name

PBKDF2_ITERATIONS = 101  # what mosquitto_passwd 2.x writes
SALT_BYTES = 12
_HASH = re.compile(r"^\$[0-9]+\$[0-9]+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+\Z")   # $7$<iterations>$<salt>$<digest>


def hash_password(password: str, salt: bytes | None = None) -> str:
    """Return ``password`` hashed as mosquitto 2's ``$7$`` (PBKDF2-HMAC-SHA512) password file entry."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, PBKDF2_ITERATIONS)
    return f"$7${PBKDF2_ITERATIONS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def render_passwd(passwords: Mapping[str, str], salt: Callable[[], bytes] = lambda: os.urandom(SALT_BYTES)) -> str:
    """Return the password file: one ``user:hash`` line per user, in the order given."""
    lines = []
    for user, password in passwords.items():
        check_name("user", user)
        if not password:
            raise ValueError(f"the password of {user!r} is empty")
        lines.append(f"{user}:{hash_password(password, salt())}")
    return "\n".join(lines) + "\n"


def render_passwd_hashed(hashes: Mapping[str, str]) -> str:
    """Return the password file from hashes already made (``hash_password``): one ``user:hash`` line per user."""
    lines = []
    for user, hashed in hashes.items():
        check_name("user", user)
        if not _HASH.match(hashed):
            raise ValueError(f"the password hash of {user!r} is not in mosquitto's format ($7$...)")
        lines.append(f"{user}:{hashed}")
    return "\n".join(lines) + "\n"


def parse_passwd(text: str) -> dict[str, str]:
    """Return user -> hash of a password file (blank lines and ``#`` comments skipped)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        user, sep, hashed = line.strip().partition(":")
        if sep and user and not user.startswith("#"):
            out[user] = hashed
    return out


def new_password() -> str:
    """Return a random password (32 URL-safe characters, 192 bits)."""
    return secrets.token_urlsafe(24)

