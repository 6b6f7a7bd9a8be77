"""The listener section of mosquitto.conf: no anonymous clients, the password file, the ACL and TLS.

The listener sets ``use_username_as_clientid true`` (see the ACL model in ``collector.mosquitto``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ListenerTls:
    """The broker's TLS files, as paths on the broker host."""

    cafile: str
    certfile: str
    keyfile: str
    require_certificate: bool = False



def render_listener_options(passwd_file: str, acl_file: str, tls: ListenerTls) -> str:
    """Return the settings that follow a ``listener`` line: no anonymous clients, passwords, ACL and TLS."""
    return "\n".join([
        "allow_anonymous false",
        f"password_file {passwd_file}",
        f"acl_file {acl_file}",
        "use_username_as_clientid true",
        f"cafile {tls.cafile}",
        f"certfile {tls.certfile}",
        f"keyfile {tls.keyfile}",
        "tls_version tlsv1.2",
        f"require_certificate {'true' if tls.require_certificate else 'false'}",
    ]) + "\n"


def render_listener(port: int, passwd_file: str, acl_file: str, tls: ListenerTls, bind: str | None = None) -> str:
    """Return a whole listener section for mosquitto.conf, with a comment on where it goes."""
    head = [
        "# ZoneWatch listener, rendered by `zonewatch-collector render-mosquitto`.",
        "# Put `per_listener_settings true` near the top of mosquitto.conf (before any listener) so that",
        "# the password file and ACL below apply to this listener; or make this the broker's only listener.",
        "# tls_version is the minimum version; the broker user must be able to read every file named here.",
        f"listener {port}" + (f" {bind}" if bind else ""),
    ]
    return "\n".join(head) + "\n" + render_listener_options(passwd_file, acl_file, tls)

