"""Contract test of the httpcore internal the QoS tests rely on (agent._compat.httpcore): it fails by name when an
upgrade moves or changes httpcore's stream over a connected socket, before a QoS test fails in the field."""

from __future__ import annotations

import socket

from agent._compat import httpcore as compat


def test_httpcores_sync_stream_wraps_a_connected_socket_and_owns_it() -> None:
    assert [name for name, _ in compat.INTERNALS] == ["httpcore._backends.sync.SyncStream"]
    ours, theirs = socket.socketpair()
    stream = compat.stream(ours)
    try:
        stream.write(b"ping", timeout=1.0)
        assert theirs.recv(4) == b"ping"
        theirs.sendall(b"pong")
        assert stream.read(4, timeout=1.0) == b"pong"
        assert stream.get_extra_info("socket") is ours
        assert callable(stream.start_tls)   # TLS with the URL's host name stays httpcore's
    finally:
        stream.close()
        theirs.close()
    assert ours.fileno() == -1   # closing the stream closed the socket
