"""HTTP/1.1 over a raw socket: sends exactly the bytes a fuzz request renders to (no client library fixes up the
framing) and reads back every response on the connection — status, headers, body by content-length, chunked
coding or close — or notes that the server closed it without answering."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

MAX_RESPONSE_BYTES = 4 * 1024 * 1024


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k == name.lower()]
        return ", ".join(values) if values else None


class ResponseParseError(Exception):
    """The server's bytes are not an HTTP/1.1 response (a finding in itself: Envoy never answers that way)."""


def exchange(host: str, port: int, data: bytes, *, methods: list[str], timeout: float = 5.0) -> list[RawResponse]:
    """Send DATA (one request per METHODS entry, pipelined) on a new connection; read a response for each (fewer
    when the server closes first). A socket timeout propagates: a server that neither answers nor closes."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may refuse early (e.g. headers too large) and still have answered: read on
        reader = _Reader(sock)
        responses: list[RawResponse] = []
        while len(responses) < len(methods):
            response = reader.response(head=methods[len(responses)].upper() == "HEAD")
            if response is None:
                break
            responses.append(response)
            if (response.header("connection") or "").lower() == "close":
                break
        return responses


class _Reader:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""
        self.closed = False

    def _fill(self) -> bool:
        if self.closed:
            return False
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.closed = True
            return False
        self.buf += chunk
        if len(self.buf) > MAX_RESPONSE_BYTES:
            raise ResponseParseError(f"response larger than {MAX_RESPONSE_BYTES} bytes")
        return True

    def _line(self) -> bytes | None:
        while b"\r\n" not in self.buf:
            if not self._fill():
                return None
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise ResponseParseError(f"connection closed {n - len(self.buf)} bytes before the body's end")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self, *, head: bool = False) -> RawResponse | None:
        status_line = self._line()
        if status_line is None:
            if self.buf:
                raise ResponseParseError(f"incomplete status line {self.buf[:80]!r}")
            return None
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise ResponseParseError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
        resp = RawResponse(int(parts[1]))
        while True:
            line = self._line()
            if line is None:
                raise ResponseParseError("connection closed inside the response headers")
            if not line:
                break
            name, _, value = line.decode("latin-1").partition(":")
            resp.headers.append((name.strip().lower(), value.strip()))
        resp.body = b"" if head else self._body(resp)
        return resp

    def _body(self, resp: RawResponse) -> bytes:
        if resp.status in (204, 304) or 100 <= resp.status < 200:
            return b""
        if (resp.header("transfer-encoding") or "").lower() == "chunked":
            body = b""
            while True:
                size_line = self._line()
                if size_line is None:
                    raise ResponseParseError("connection closed inside a chunked body")
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while (self._line() or b"") != b"":
                        pass
                    return body
                body += self._exactly(size)
                self._exactly(2)
        length = resp.header("content-length")
        if length is not None:
            return self._exactly(int(length))
        while self._fill():
            pass
        out, self.buf = self.buf, b""
        return out
