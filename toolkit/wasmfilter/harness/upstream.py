"""An echo upstream: answers every request with JSON describing what it received, so a test sees the
headers, path and body the filter forwarded. Runs in a thread (the process backend) or standalone as
`python -m wasmfilter.harness.upstream`; the docker backend runs its byte-for-byte Rust twin (docker/echo)."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ECHO_HEADER = "x-wasmfilter-upstream"


def _handler(name: str) -> type[BaseHTTPRequestHandler]:
    class EchoHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else each response waits ~40 ms for a delayed ACK

        def _echo(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            status = 200
            if self.path.startswith("/status/"):
                code = self.path.split("/")[2].split("?")[0]
                status = int(code) if code.isdigit() and 200 <= int(code) <= 599 else 400
            payload = json.dumps({
                "upstream": name,
                "method": self.command,
                "path": self.path,
                "headers": [[k.lower(), v] for k, v in self.headers.items()],
                "body": body.decode("utf-8", "replace"),
            }).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.send_header(ECHO_HEADER, name)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _echo

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - signature of the base class
            pass

    return EchoHandler


class _Server(ThreadingHTTPServer):
    # The default listen backlog (5) overflows under a burst of new connections from several Envoy workers,
    # and Envoy's connect timeout then turns requests the filter allowed into 503s.
    request_queue_size = 512
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """Envoy closing a connection mid-response (a reset stream, a fuzz request it refused) is not an error of
        the upstream: no traceback on stderr for it; anything else as the base class reports it."""
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


class EchoUpstream:
    """`with EchoUpstream("default") as up: up.port`. Binds port 0 on HOST: the kernel picks a free one."""

    def __init__(self, name: str = "default", host: str = "127.0.0.1", port: int = 0):
        self.name = name
        self._server = _Server((host, port), _handler(name))
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"echo-{name}", daemon=True)

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> EchoUpstream:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> EchoUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="wasmfilter echo upstream")
    parser.add_argument("--name", default="default")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    upstream = EchoUpstream(args.name, args.host, args.port)
    print(f"echo upstream '{args.name}' on {args.host}:{upstream.port}", flush=True)
    upstream._server.serve_forever()


if __name__ == "__main__":
    main()
