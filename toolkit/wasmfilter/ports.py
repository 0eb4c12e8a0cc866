"""Loopback ports: whether a fixed port can be bound, asked before anything slow starts (the caller words the error)."""

from __future__ import annotations

import socket


def bind_error(host: str, port: int) -> OSError | None:
    """Why HOST:PORT cannot be bound now, or None (port 0, or free)."""
    if port == 0:
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as e:
            return e
    return None
