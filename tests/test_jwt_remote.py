"""The auth filter's remote JWKS and verified-token cache through a real Envoy: a JWKS server this test runs (a
plain http.server on loopback, behind an Envoy cluster) is down at start, then answers garbage, an oversized set,
too slowly, the right set, a rotated set without the token's kid, and garbage again — and the filter fails closed
before its first good fetch (503), serves after it, follows the rotation, and keeps the last good set when a
refresh fails. Then a token cache far smaller than the distinct tokens sent stays correct."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import AUTH, http_get
from wasmfilter.bench.runner import direct_routes
from wasmfilter.envoy.bootstrap import Bootstrap, Upstream, WasmFilter
from wasmfilter.envoy.process import EnvoyProcess

FIXTURES = json.loads((AUTH / "testdata" / "jwt_fixtures.json").read_text())
JWT = FIXTURES["config"]["jwt"]
TOKENS = FIXTURES["tokens"]
STAT = "wasmcustom.wasmfilter_auth."


class JwksServer:
    """Answers GET /jwks by `mode`: down (closes the connection), garbage, oversized, slow, full, rotated."""

    def __init__(self) -> None:
        self.mode = "down"
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server.requests += 1
                mode = server.mode
                if mode == "down":
                    self.close_connection = True
                    self.connection.close()
                    return
                keys = JWT["jwks"]["keys"]
                body = {
                    "garbage": b"<html>502 from a proxy</html>",
                    "oversized": json.dumps({"keys": keys, "padding": "x" * 8192}).encode(),
                    "full": json.dumps({"keys": keys}).encode(),
                    "slow": json.dumps({"keys": keys}).encode(),
                    "rotated": json.dumps({"keys": [k for k in keys if k.get("kid") != "rs1"]}).encode(),
                }[mode]
                if mode == "slow":
                    time.sleep(1.0)  # longer than the filter's timeout_ms (300)
                try:
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # Envoy gave up (timeout)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> JwksServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def envoy_with(wasm: str, config: dict, jwks_port: int | None = None) -> EnvoyProcess:
    upstreams = [Upstream("default", "127.0.0.1", 9)]
    if jwks_port is not None:
        upstreams.append(Upstream("idp", "127.0.0.1", jwks_port))
    wasm_filter = WasmFilter(name="auth", wasm_path=wasm, plugin_config=config, root_id="auth", vm_id="auth")
    text = Bootstrap(upstreams=upstreams, http_filters=[wasm_filter.fragment()],
                     routes=direct_routes(["default"])).render()
    return EnvoyProcess(text, concurrency=1)


def status_of(envoy: EnvoyProcess, token: str) -> int:
    return http_get(envoy.listener_url + "/orders", {"authorization": f"Bearer {token}"})[0]


def eventually(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Poll a real signal (a response, a counter) until it holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout}s: {what}")


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    with JwksServer() as server:
        yield server


def test_remote_jwks_fails_closed_then_serves_rotates_and_survives_bad_answers(auth_build, jwks_server):
    remote = {"cluster": "idp", "path": "/jwks", "refresh_s": 1, "retry_s": 1, "timeout_ms": 300,
              "max_bytes": 4096, "max_keys": 8}
    jwt = {k: v for k, v in JWT.items() if k != "jwks"} | {"remote_jwks": remote}
    config = {"identity_header": "x-auth-identity", "jwt": jwt, "log_level": "debug"}
    with envoy_with(str(auth_build.wasm), config, jwks_server.port) as envoy:
        def failed() -> int:
            return envoy.admin.stats("wasmcustom").get(STAT + "jwks.fetch_failed", 0)

        # Down at start, then garbage, oversized, slower than the timeout: every answer refused, fail closed.
        for mode in ("down", "garbage", "oversized", "slow"):
            jwks_server.mode = mode
            before = failed()
            eventually(lambda b=before: failed() > b, f"a refused fetch while the JWKS server is {mode}")
            assert status_of(envoy, TOKENS["rs256"]) == 503, mode
            assert http_get(envoy.listener_url + "/orders")[0] == 401  # no token: still 401
        logs = envoy.logs()
        # down: Envoy's own 503 (connection reset); slow: its 504 after timeout_ms.
        for reason in ("status 503", "not JSON", "larger than max_bytes 4096", "status 504"):
            assert reason in logs, reason
        # The right set: served.
        jwks_server.mode = "full"
        eventually(lambda: status_of(envoy, TOKENS["rs256"]) == 200, "RS256 accepted after a good fetch")
        assert status_of(envoy, TOKENS["es256"]) == 200 and status_of(envoy, TOKENS["wrong_rsa_key"]) == 403
        # Rotation: rs1 is gone, its tokens become unknown (and the token cache forgot them).
        jwks_server.mode = "rotated"
        eventually(lambda: status_of(envoy, TOKENS["rs256"]) == 403, "rs1 tokens refused after the rotation")
        assert envoy.admin.stats("wasmcustom").get(STAT + "reason.unknown_kid", 0) >= 1
        # Garbage on refresh: the last good (rotated) set stays in use.
        jwks_server.mode = "garbage"
        before = failed()
        eventually(lambda: failed() > before, "a refused refresh")
        assert status_of(envoy, TOKENS["es256"]) == 200 and status_of(envoy, TOKENS["rs256"]) == 403


def _hs256(claims: dict) -> str:
    def enc(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    key = next(k for k in JWT["jwks"]["keys"] if k["kty"] == "oct")
    secret = base64.urlsafe_b64decode(key["k"] + "=" * (-len(key["k"]) % 4))
    signing_input = f"{enc({'alg': 'HS256', 'kid': key['kid']})}.{enc(claims)}"
    sig = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"


def test_token_cache_full_of_distinct_tokens_stays_correct(auth_build):
    """A cache of 8 entries against 200 distinct valid tokens, then a forged one: every valid token is accepted
    with its own identity, the forged one is refused, and Envoy's memory does not grow with the tokens."""
    config = {"identity_header": "x-auth-identity", "jwt": JWT, "jwt_cache": {"max_entries": 8}}
    base = {"iss": JWT["issuer"], "aud": JWT["audiences"][0], "exp": 4102444800}
    tokens = [_hs256(base | {"sub": f"user-{i}"}) for i in range(200)]
    with envoy_with(str(auth_build.wasm), config) as envoy:
        assert all(status_of(envoy, t) == 200 for t in tokens[:20])
        rss_before = envoy.rss_kb()
        assert all(status_of(envoy, t) == 200 for t in tokens[20:])
        assert status_of(envoy, tokens[0]) == 200  # evicted long ago: verified again
        forged = tokens[1].rsplit(".", 1)[0] + "." + tokens[2].rsplit(".", 1)[1]
        assert status_of(envoy, forged) == 403
        assert envoy.rss_kb() - rss_before < 4096, "memory grew with the number of distinct tokens"
