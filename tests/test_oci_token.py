"""Bearer-token auth, the flow of Docker Hub, GHCR and Harbor, against the real registry in token mode: the registry
answers 401 `Bearer realm=…,service=…,scope=…`; the client asks the token service (a small HTTP server here that
checks Basic credentials on GET, or an identity token on POST with the OAuth2 refresh-token grant as ACR-style
logins use, and signs an RS256 JWT with a throwaway key whose certificate the registry trusts)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from tests.conftest import assert_one_line_error, run_cli
from wasmfilter.errors import RegistryError
from wasmfilter.ship.image import build_image
from wasmfilter.ship.registry import LocalRegistry
from wasmfilter.ship.transfer import pull, push_image

pytestmark = pytest.mark.skipif(not Path("/usr/bin/docker-registry").exists() or not Path("/usr/bin/openssl").exists(),
                                reason="needs docker-registry and openssl")

USER, PASSWORD = "robot", "token-pass"
REFRESH_TOKEN = "identity-token-for-robot"  # what `docker login` keeps as `identitytoken` for ACR-style registries
SERVICE, ISSUER = "wasmfilter-registry", "wasmfilter-test-issuer"


@pytest.fixture(scope="module")
def auth_build(auth_build, tmp_path_factory):
    """A private copy of the session build, so a concurrent rebuild of filters/auth cannot change it mid-module."""
    frozen = tmp_path_factory.mktemp("auth-build") / "auth.wasm"
    shutil.copyfile(auth_build.wasm, frozen)
    return dataclasses.replace(auth_build, wasm=frozen, sha256=hashlib.sha256(frozen.read_bytes()).hexdigest())


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenService:
    def __init__(self, workdir: Path):
        self.key = workdir / "key.pem"
        self.cert = workdir / "cert.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(self.key),
                        "-out", str(self.cert), "-days", "1", "-subj", "/CN=wasmfilter-token-test"],
                       check=True, capture_output=True)
        der = subprocess.run(["openssl", "x509", "-in", str(self.cert), "-outform", "DER"], check=True,
                             capture_output=True).stdout
        self.x5c = base64.b64encode(der).decode()
        self.requests: list[dict] = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                query = parse_qs(urlparse(self.path).query)
                auth = self.headers.get("Authorization", "")
                service.requests.append({"method": "GET", "query": query, "auth": auth})
                expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
                if auth != expected:
                    self.send_response(401)
                    self.end_headers()
                    return
                self.answer(200, {"token": service.sign(query.get("scope", []))})

            def do_POST(self) -> None:  # noqa: N802
                """The OAuth2 refresh-token grant (distribution's token spec, `docker login` with an identity
                token): a form with grant_type, refresh_token, service, scope (space-separated) and client_id."""
                form = parse_qs(self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode())
                service.requests.append({"method": "POST", "query": form, "auth": self.headers.get("Authorization")})
                if form.get("grant_type") != ["refresh_token"] or not form.get("client_id") or \
                        form.get("service") != [SERVICE]:
                    self.answer(400, {"error": "unsupported_grant_type"})
                elif form.get("refresh_token") != [REFRESH_TOKEN]:
                    self.answer(400, {"error": "invalid_grant", "error_description": "unknown refresh token"})
                else:
                    scopes = [s for text in form.get("scope", []) for s in text.split()]
                    self.answer(200, {"access_token": service.sign(scopes), "refresh_token": REFRESH_TOKEN,
                                      "expires_in": 300})

            def answer(self, status: int, payload: dict) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/token"

    def sign(self, scopes: list[str]) -> str:
        access = []
        for scope in scopes:
            kind, name, actions = scope.split(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        claims = {"iss": ISSUER, "sub": USER, "aud": SERVICE, "exp": now + 300, "nbf": now - 10, "iat": now,
                  "jti": uuid.uuid4().hex, "access": access}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)], input=signing_input.encode(),
                             check=True, capture_output=True).stdout
        return f"{signing_input}.{_b64url(sig)}"


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory):
    tokens = TokenService(tmp_path_factory.mktemp("token"))
    tokens.thread.start()
    auth = {"token": {"realm": tokens.realm, "service": SERVICE, "issuer": ISSUER,
                      "rootcertbundle": str(tokens.cert)}}
    try:
        with LocalRegistry(auth=auth) as reg:
            yield reg, tokens
    finally:
        tokens.server.shutdown()
        tokens.server.server_close()


def test_bearer_token_push_and_pull(token_registry, auth_build):
    reg, tokens = token_registry
    image = build_image(auth_build.wasm.read_bytes(), root_id="auth")
    ref = f"{reg.host}/filters/auth:v1"
    pushed = push_image(image, ref, insecure=True, username=USER, password=PASSWORD)
    pulled = pull(ref, insecure=True, username=USER, password=PASSWORD)
    assert pushed.digest == pulled.digest == image.digest
    assert pulled.wasm == auth_build.wasm.read_bytes()
    scopes = {s for r in tokens.requests for s in r["query"].get("scope", [])}
    assert "repository:filters/auth:pull,push" in scopes and "repository:filters/auth:pull" in scopes
    assert all(r["query"]["service"] == [SERVICE] for r in tokens.requests)


def test_bearer_token_with_wrong_password_is_a_one_line_error(token_registry, auth_build):
    reg, _ = token_registry
    image = build_image(auth_build.wasm.read_bytes(), root_id="auth")
    with pytest.raises(RegistryError, match="rejected the credentials") as info:
        push_image(image, f"{reg.host}/filters/denied:v1", insecure=True, username=USER, password="wrong")
    assert "\n" not in str(info.value)


def test_bearer_token_anonymous_is_asked_for_credentials(token_registry, monkeypatch, tmp_path):
    reg, _ = token_registry
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    with pytest.raises(RegistryError, match="requires authentication"):
        pull(f"{reg.host}/filters/auth:v1", insecure=True)


# ------------------------------------------------------------------ identity tokens: the refresh-token grant


def _identity_token_config(tmp_path: Path, host: str, token: str) -> Path:
    """A Docker config as `docker login` writes it for an ACR-style registry: a placeholder user and the identity
    token."""
    path = tmp_path / "config.json"
    placeholder = base64.b64encode(b"00000000-0000-0000-0000-000000000000:").decode()
    path.write_text(json.dumps({"auths": {host: {"auth": placeholder, "identitytoken": token}}}))
    return path


def test_identity_token_push_and_pull(token_registry, auth_build, tmp_path):
    reg, tokens = token_registry
    tokens.requests.clear()
    config = _identity_token_config(tmp_path, reg.host, REFRESH_TOKEN)
    image = build_image(auth_build.wasm.read_bytes(), root_id="auth")
    ref = f"{reg.host}/filters/identity:v1"
    pushed = push_image(image, ref, insecure=True, docker_config=config)
    pulled = pull(ref, insecure=True, docker_config=config)
    assert pushed.digest == pulled.digest == image.digest
    assert pulled.wasm == auth_build.wasm.read_bytes()
    assert tokens.requests and all(r["method"] == "POST" and r["auth"] is None for r in tokens.requests)
    scopes = {s for r in tokens.requests for s in r["query"].get("scope", [])}
    assert "repository:filters/identity:pull,push" in scopes and "repository:filters/identity:pull" in scopes
    assert all(r["query"]["client_id"] == ["wasmfilter"] and r["query"]["refresh_token"] == [REFRESH_TOKEN]
               for r in tokens.requests)


def test_identity_token_from_a_credential_helper(token_registry, auth_build, tmp_path):
    """The helper answers with the user `<token>`: its secret is an identity token (CLI end to end)."""
    from test_oci_auth import credential_helper

    reg, tokens = token_registry
    image = build_image(auth_build.wasm.read_bytes(), root_id="auth")
    push_image(image, f"{reg.host}/filters/helper:v1", insecure=True, username=USER, password=PASSWORD)
    bin_dir = tmp_path / "bin"
    log = credential_helper(bin_dir, "wfacr", {reg.host: ("<token>", REFRESH_TOKEN)})
    (tmp_path / "config.json").write_text(json.dumps({"credHelpers": {reg.host: "wfacr"}}))
    tokens.requests.clear()
    res = run_cli("pull", f"{reg.host}/filters/helper:v1", "--insecure", "-o", str(tmp_path / "p.wasm"),
                  env={"DOCKER_CONFIG": str(tmp_path), "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert res.code == 0, res.stderr
    assert (tmp_path / "p.wasm").read_bytes() == auth_build.wasm.read_bytes()
    assert log.read_text().split() == [reg.host]
    assert [r["method"] for r in tokens.requests] == ["POST"]


def test_wrong_identity_token_is_a_one_line_error(token_registry, auth_build, tmp_path):
    reg, tokens = token_registry
    config = _identity_token_config(tmp_path, reg.host, "stale-refresh-token")
    with pytest.raises(RegistryError, match="rejected the identity token .*400 invalid_grant") as info:
        pull(f"{reg.host}/filters/auth:v1", insecure=True, docker_config=config)
    assert "\n" not in str(info.value)
    res = run_cli("pull", f"{reg.host}/filters/auth:v1", "--insecure", "-o", str(tmp_path / "p.wasm"),
                  "--docker-config", str(config))
    assert_one_line_error(res, "rejected the identity token", "invalid_grant", "docker login")
    assert not (tmp_path / "p.wasm").exists()
