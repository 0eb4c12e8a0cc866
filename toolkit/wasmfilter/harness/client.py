"""The scenario client: HTTP/1.1 with exact control of the path and headers (no normalisation, repeats kept), and
the response with what the echo upstream reported seeing."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any

from wasmfilter.harness.scenario import Headers, Request
from wasmfilter.harness.upstream import ECHO_HEADER


@dataclass
class Response:
    status: int
    headers: Headers
    body: bytes

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(values) if values else None

    def echo(self) -> dict[str, Any] | None:
        """What the echo upstream saw, when the response came from it."""
        if self.header(ECHO_HEADER) is None:
            return None
        try:
            return json.loads(self.body)
        except json.JSONDecodeError:
            return None


class Client:
    """HTTP/1.1 with exact control of path and headers (no normalisation, repeats kept), one kept-alive
    connection per thread."""

    def __init__(self, base_url: str, timeout: float = 10.0):
        host_port = base_url.split("://", 1)[-1].rstrip("/")
        self.host, _, port = host_port.rpartition(":")
        self.port = int(port)
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def send(self, request: Request) -> Response:
        for attempt in range(2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                return self._send_once(self._conn, request)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()  # the server closed a kept-alive connection: retry once on a new one
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def _send_once(self, conn: http.client.HTTPConnection, request: Request) -> Response:
        pairs = request.header_pairs()
        body = request.body.encode()
        conn.putrequest(request.method, request.path, skip_host=True, skip_accept_encoding=True)
        if not any(k.lower() == "host" for k, _ in pairs):
            conn.putheader("host", "localhost")
        for name, value in pairs:
            conn.putheader(name, value)
        if body or request.method in ("POST", "PUT", "PATCH"):
            conn.putheader("content-length", str(len(body)))
        conn.endheaders(body or None)
        resp = conn.getresponse()
        data = resp.read()
        if resp.getheader("connection", "").lower() == "close":
            self.close()
        return Response(resp.status, [(k.lower(), v) for k, v in resp.getheaders()], data)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
