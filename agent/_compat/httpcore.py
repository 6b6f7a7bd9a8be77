"""httpcore's internals, read here and nowhere else (``tests/agent/test_compat_httpcore.py`` checks them).

The QoS tests (``agent.sources.qosnet``) connect their own socket: bound to the modem's interface before the
connect, to an address the bearer's DNS gave. httpcore's public ``SyncBackend`` binds nothing and sets socket
options only after connecting (the SYN would already have left through the default route), so the QoS backend
makes the socket itself and hands it to httpcore wrapped in httpcore's own stream type, ``SyncStream`` of
``httpcore._backends.sync``: reads, writes, TLS (with the URL's host as the server name) and closing stay
httpcore's. An upgrade that moves or changes it fails the contract test by name.
"""

from __future__ import annotations

import socket
from typing import Any, Final

from httpcore._backends.sync import SyncStream

__all__ = ["stream", "INTERNALS"]

# What this module reads of httpcore: (name, what it must be). The contract test checks them.
INTERNALS: Final = (("httpcore._backends.sync.SyncStream", "NetworkStream over a connected socket"),)


def stream(sock: socket.socket) -> Any:
    """Return httpcore's network stream over the connected socket ``sock`` (it owns the socket from now on)."""
    return SyncStream(sock)
