"""An echo upstream: answers every request with JSON describing what it received, so a test sees the
headers, path and body the filter forwarded. Runs in a thread (the process backend) or standalone as
`python -m wasmfilter.harness.upstream`; the docker backend runs its byte-for-byte Rust twin (docker/echo).
Given answer rules (harness/answers.py), a request a rule matches gets that rule's scripted answer instead."""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import sys
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from wasmfilter.harness.answers import Answer, AnswerRule, answer_for

ECHO_HEADER = "x-wasmfilter-upstream"


def _handler(name: str, rules: Sequence[AnswerRule] = ()) -> type[BaseHTTPRequestHandler]:
    class EchoHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else each response waits ~40 ms for a delayed ACK

        def _echo(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            answer = answer_for(rules, self.command, self.path, self.headers.items()) if rules else None
            if answer is not None:
                self._scripted(answer)
                return
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

        def _scripted(self, answer: Answer) -> None:
            if answer.delay_ms:
                time.sleep(answer.delay_ms / 1000)  # the scripted delay itself, not a wait for readiness
            if answer.reset:
                # SO_LINGER 0: close() sends a TCP reset; nothing more is written on this connection.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                os.close(self.connection.detach())  # the socket object is left without a descriptor to reuse
                return
            payload = answer.body_bytes()
            self.send_response_only(answer.status)
            for key, value in [*answer.header_pairs(), ("content-length", str(len(payload))), (ECHO_HEADER, name)]:
                self.send_header(key, value)
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


class EchoUpstream:
    """`with EchoUpstream("default") as up: up.port`. Binds port 0 on HOST: the kernel picks a free one."""

    def __init__(self, name: str = "default", host: str = "127.0.0.1", port: int = 0,
                 rules: Sequence[AnswerRule] = ()):
        self.name = name
        self._server = _Server((host, port), _handler(name, list(rules)))
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
    parser.add_argument("--rules", type=Path, default=None, help="answer rules file (answers.wire_rules JSON)")
    parser.add_argument("--rules-json", default=None, help="answer rules as JSON text (answers.wire_rules)")
    args = parser.parse_args()
    from wasmfilter.errors import WasmfilterError
    from wasmfilter.harness.answers import read_wire, read_wire_file

    try:
        rules = (read_wire_file(args.rules) if args.rules is not None else
                 read_wire(args.rules_json, "given by --rules-json") if args.rules_json is not None else [])
    except WasmfilterError as e:
        print(f"echo: {e}", file=sys.stderr)
        sys.exit(2)
    upstream = EchoUpstream(args.name, args.host, args.port, rules=rules)
    print(f"echo upstream '{args.name}' on {args.host}:{upstream.port}", flush=True)
    upstream._server.serve_forever()


if __name__ == "__main__":
    main()
