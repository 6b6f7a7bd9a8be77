"""paho's client as ``zonewatch.mqtt.make_client`` builds it: one that reads its socket 64 KiB at a time.

paho reads each MQTT packet with three or four ``recv`` calls (the command byte, the remaining length a byte at a
time, then the rest), each a system call that lets go of the GIL and takes it back, which costs the most where
other threads want the GIL too, as in the collector. ``BufferedClient`` gives paho a ``BufferedSocket`` over the
connection instead: one read brings as much as is there (up to 64 KiB), and paho's small reads are then served
from memory. On agent-shaped data messages (about 4.6 KB each) a bare subscriber took 6 to 7% less CPU a message
(about 52 to 49 µs).

What this relies on of paho (2.x; pyproject pins it below 3), checked against the real broker by
``tests/test_mqtt_factory.py``:

- ``Client._create_socket``, a private method: it returns the connected socket (TLS: handshake done) that paho
  then reads, writes, selects on and closes. ``BufferedClient`` overrides it.
- paho's loop asks its socket for ``pending()`` before it waits in select (as it does for a TLS socket's own
  buffer) and reads at once when there is something: bytes held in the buffer do not make the socket readable.

The websockets transport is left as paho makes it: paho's own wrapper buffers already. Writes are not touched.
"""

from __future__ import annotations

import socket
import ssl
from typing import TYPE_CHECKING

import paho.mqtt.client as mqtt

if TYPE_CHECKING:
    from paho.mqtt.client import SocketLike

__all__ = ["READ_SIZE", "BufferedClient", "BufferedSocket"]

READ_SIZE = 65536   # the most one read of the socket asks for (more when paho asks for more at once)


class BufferedSocket:
    """A connected socket, plain or TLS, read ``READ_SIZE`` bytes at a time and served to ``recv`` from there.

    Only paho's network thread reads (``recv``, ``pending``). ``send`` goes straight to the socket, from any
    thread; it shares nothing with reading. Whoever waits for the socket to be readable must ask ``pending()``
    first, as paho's loop does: what is held here does not show in select.
    """

    __slots__ = ("_sock", "_tls", "_buf", "_pos")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._tls = sock if isinstance(sock, ssl.SSLSocket) else None
        self._buf = b""   # the last read of the socket; what is left of it starts at _pos
        self._pos = 0

    def recv(self, bufsize: int) -> bytes:
        """Return at most ``bufsize`` bytes: what is left of the last read, or else what one read of the socket
        brings (b"" once the broker closed the connection).

        When nothing is held and the socket has nothing either, raise what the socket raises (non-blocking:
        BlockingIOError; TLS: ssl.SSLWantReadError or ssl.SSLWantWriteError, which paho handles as such).
        """
        buf, pos = self._buf, self._pos
        if pos == len(buf):
            data = self._sock.recv(max(bufsize, READ_SIZE))
            if len(data) <= bufsize:
                return data   # all of it was asked for: nothing to hold
            self._buf, buf, pos = data, data, 0
        chunk = buf[pos:pos + bufsize]
        self._pos = pos + len(chunk)
        return chunk

    def pending(self) -> int:
        """Return how many bytes can be read without the socket being readable: held here, and by TLS."""
        held = len(self._buf) - self._pos
        return held + self._tls.pending() if self._tls is not None else held

    def send(self, data: bytes | bytearray) -> int:
        """Send on the socket (as ``socket.send``)."""
        return self._sock.send(data)

    def fileno(self) -> int:
        """Return the socket's file descriptor (for select)."""
        return self._sock.fileno()

    def setblocking(self, flag: bool) -> None:
        """Set the socket blocking or not (paho: not, once connected)."""
        self._sock.setblocking(flag)

    def close(self) -> None:
        """Close the socket (paho then drops this object, and what it still held)."""
        self._sock.close()


class BufferedClient(mqtt.Client):
    """paho's client, reading through a ``BufferedSocket``."""

    def _create_socket(self) -> SocketLike:
        # A private method of paho (2.x; pyproject pins paho-mqtt below 3): the connected socket paho will use.
        sock = super()._create_socket()
        # websockets: paho's own wrapper, which buffers already (and is no socket.socket)
        return BufferedSocket(sock) if isinstance(sock, socket.socket) else sock
