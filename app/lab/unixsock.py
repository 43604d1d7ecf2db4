"""One request and its reply over a unix stream socket (the relay's and wireguard-go's)."""

from __future__ import annotations

import socket
from pathlib import Path


def ask(path: Path, request: bytes, end: bytes, timeout: float) -> bytes:
    """Send ``request``; read until the reply ends with ``end`` or the peer closes."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(request)
        reply = b""
        while not reply.endswith(end):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    return reply
