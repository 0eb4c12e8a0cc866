"""Bounded retries on 429/502/503/504 against the real registry behind a stub proxy on 127.0.0.1: the proxy answers
503, then 429 with `Retry-After: 0`, to the first requests of each method and path and then forwards to
docker-registry. Push and pull get through (a retried PUT re-sends its body: the registry checks every upload's
digest); a proxy that always answers 503 gives one line naming the status after exactly RETRIES + 1 attempts."""

from __future__ import annotations

import http.client
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.conftest import assert_one_line_error, run_cli
from wasmfilter.errors import RegistryError
from wasmfilter.ship.client import RETRIES
from wasmfilter.ship.image import build_image
from wasmfilter.ship.registry import LocalRegistry
from wasmfilter.ship.transfer import pull, push_image

pytestmark = pytest.mark.skipif(not Path("/usr/bin/docker-registry").exists(),
                                reason="docker-registry not installed (make toolchain)")

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


class FlakyProxy:
    """A threaded HTTP proxy in front of UPSTREAM. The first FAILURES requests of each (method, path) get 503 and
    429 (`Retry-After: 0`) in turn; FAILURES None fails every request with 503. Counts what it failed and records
    what it forwarded (method, path, request body length, upstream status)."""

    def __init__(self, upstream: str, failures: int | None):
        self.upstream = upstream
        self.failures = failures
        self.seen: Counter[tuple[str, str]] = Counter()
        self.failed: Counter[int] = Counter()  # status -> how many answered
        self.forwarded: list[tuple[str, str, int, int]] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def handle_one(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                key = (self.command, urlparse(self.path).path)
                with proxy.lock:
                    n = proxy.seen[key]
                    proxy.seen[key] += 1
                if proxy.failures is None or n < proxy.failures:
                    status = 503 if proxy.failures is None or n % 2 == 0 else 429
                    with proxy.lock:
                        proxy.failed[status] += 1
                    self.send_response(status)
                    if status == 429:
                        self.send_header("Retry-After", "0")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                conn = http.client.HTTPConnection(proxy.upstream, timeout=30)
                try:  # the Host header goes along, so the registry's upload URLs point at the proxy
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                with proxy.lock:
                    proxy.forwarded.append((self.command, key[1], len(body), resp.status))
                self.send_response(resp.status)
                for name, value in resp.getheaders():
                    if name.lower() not in HOP_BY_HOP | {"content-length", "date", "server"}:
                        self.send_header(name, value)
                length = resp.getheader("Content-Length", "0") if self.command == "HEAD" else str(len(data))
                self.send_header("Content-Length", length)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = handle_one  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FlakyProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def registry():
    with LocalRegistry() as reg:
        yield reg


@pytest.fixture(scope="module")
def auth_wasm(frozen_auth_build) -> bytes:
    return frozen_auth_build.wasm.read_bytes()


def test_push_and_pull_get_through_503_and_429(registry, auth_wasm):
    image = build_image(auth_wasm, root_id="auth")
    with FlakyProxy(registry.host, failures=2) as proxy:
        ref = f"{proxy.host}/retry/auth:v1"
        pushed = push_image(image, ref, insecure=True)
        pulled = pull(ref, insecure=True, expect_digest=image.digest)
    assert pulled.wasm == auth_wasm and pushed.digest == pulled.digest == image.digest
    assert pushed.uploaded == 2
    # every (method, path) was failed twice, once with each status, before it got through
    assert proxy.failed == {503: len(proxy.seen), 429: len(proxy.seen)}
    assert {key for key, n in proxy.seen.items() if n >= 3} == {(m, p) for m, p, _, _ in proxy.forwarded}
    assert proxy.failed[503] >= 6  # HEAD x2, POST, PUT x2 (blobs), PUT manifest, GET manifest, GET blob ...
    # the retried PUTs carried their bodies: each blob upload arrived whole (the registry checked its digest)
    uploads = sorted(n for m, p, n, status in proxy.forwarded if m == "PUT" and "/blobs/uploads/" in p)
    assert uploads == sorted(len(b) for b in image.blobs.values())
    assert all(status < 500 for _, _, _, status in proxy.forwarded)


def test_a_registry_that_stays_unavailable_is_one_line_after_bounded_attempts(registry, tmp_path):
    with FlakyProxy(registry.host, failures=None) as proxy:
        ref = f"{proxy.host}/retry/auth:v1"
        with pytest.raises(RegistryError, match=r"\(503\)") as info:
            pull(ref, insecure=True)
        assert "\n" not in str(info.value)
        assert proxy.failed == {503: RETRIES + 1}  # the bound is real: RETRIES retries, then the last answer
        res = run_cli("pull", ref, "--insecure", "-o", str(tmp_path / "p.wasm"))
        assert_one_line_error(res, "503", proxy.host)
        assert proxy.failed == {503: 2 * (RETRIES + 1)}
        assert not proxy.forwarded
    assert not (tmp_path / "p.wasm").exists()
