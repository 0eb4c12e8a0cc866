"""A registry behind htpasswd (bcrypt) auth: 401 without or with wrong credentials, success with flags or with
credentials from a Docker config file (auths.<host>.auth = base64 user:password)."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from tests.conftest import assert_one_line_error, run_cli
from wasmfilter.errors import RegistryError, UsageError
from wasmfilter.ship.credentials import credentials_for
from wasmfilter.ship.image import build_image
from wasmfilter.ship.layout import write_layout
from wasmfilter.ship.registry import LocalRegistry
from wasmfilter.ship.transfer import pull, push_image

pytestmark = pytest.mark.skipif(not Path("/usr/bin/docker-registry").exists(),
                                reason="docker-registry not installed (make toolchain)")

USER, PASSWORD = "ci-bot", "s3cret-pass"


@pytest.fixture(scope="module")
def auth_build(frozen_auth_build):
    return frozen_auth_build


@pytest.fixture(scope="module")
def registry():
    with LocalRegistry(users={USER: PASSWORD}) as reg:
        yield reg


@pytest.fixture(scope="module")
def image(auth_build):
    return build_image(auth_build.wasm.read_bytes(), root_id="auth")


def _docker_config(tmp_path: Path, host: str, user: str, password: str) -> Path:
    directory = tmp_path / "docker"
    directory.mkdir()
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (directory / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return directory


def test_anonymous_push_and_pull_get_401(registry, image, tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {"DOCKER_CONFIG": str(empty)}
    monkeypatch.setenv("DOCKER_CONFIG", str(empty))
    with pytest.raises(RegistryError, match="requires authentication"):
        push_image(image, f"{registry.host}/auth/anon:v1", insecure=True)
    res = run_cli("pull", f"{registry.host}/auth/anon:v1", "--insecure", "-o", str(tmp_path / "p.wasm"), env=env)
    assert_one_line_error(res, "requires authentication (401)", "--username")


def test_wrong_password_is_rejected(registry, image, tmp_path):
    with pytest.raises(RegistryError, match="rejected the credentials"):
        push_image(image, f"{registry.host}/auth/wrong:v1", insecure=True, username=USER, password="nope")
    res = run_cli("push", f"{registry.host}/auth/wrong:v1", str(tmp_path), "--insecure", "-u", USER, "-p", "nope",
                  env={"DOCKER_CONFIG": str(tmp_path)})
    # tmp_path holds no filter: the CLI fails on input before talking to the registry
    assert res.code != 0
    layout = tmp_path / "auth.tar"
    write_layout(image, layout)
    res = run_cli("push", f"{registry.host}/auth/wrong:v1", str(layout), "--insecure", "-u", USER, "-p", "nope")
    assert_one_line_error(res, "rejected the credentials", USER)
    # nothing was tagged
    with pytest.raises(RegistryError, match="not found"):
        pull(f"{registry.host}/auth/wrong:v1", insecure=True, username=USER, password=PASSWORD)


def test_flags_authenticate(registry, image, tmp_path):
    ref = f"{registry.host}/auth/flags:v1"
    pushed = push_image(image, ref, insecure=True, username=USER, password=PASSWORD)
    pulled = pull(ref, insecure=True, username=USER, password=PASSWORD)
    assert pulled.digest == pushed.digest == image.digest
    env = {"DOCKER_CONFIG": str(tmp_path), "WASMFILTER_REGISTRY_USERNAME": USER,
           "WASMFILTER_REGISTRY_PASSWORD": PASSWORD}
    res = run_cli("pull", ref, "--insecure", "-o", str(tmp_path / "env.wasm"), env=env)
    assert res.code == 0, res.stderr
    assert (tmp_path / "env.wasm").read_bytes() == pulled.wasm


def test_docker_config_file_authenticates(registry, image, auth_build, tmp_path):
    docker_dir = _docker_config(tmp_path, registry.host, USER, PASSWORD)
    layout = tmp_path / "auth.tar"
    write_layout(image, layout)
    ref = f"{registry.host}/auth/dockercfg:v1"
    res = run_cli("push", ref, str(layout), "--insecure", env={"DOCKER_CONFIG": str(docker_dir)})
    assert res.code == 0, res.stderr
    res = run_cli("pull", ref, "--insecure", "-o", str(tmp_path / "p.wasm"),
                  "--docker-config", str(docker_dir / "config.json"))
    assert res.code == 0, res.stderr
    assert (tmp_path / "p.wasm").read_bytes() == auth_build.wasm.read_bytes()
    # a config entry with the wrong password is a 401 too
    (tmp_path / "bad").mkdir()
    bad_dir = _docker_config(tmp_path / "bad", registry.host, USER, "wrong")
    with pytest.raises(RegistryError, match="rejected the credentials"):
        pull(ref, insecure=True, docker_config=bad_dir / "config.json")


def test_credentials_lookup_rules(tmp_path):
    cfg = tmp_path / "config.json"
    auth = base64.b64encode(b"u:p:with:colons").decode()
    cfg.write_text(json.dumps({"auths": {"https://reg.example:5000": {"auth": auth},
                                         "other.example": {"username": "x", "password": "y"}}}))
    c = credentials_for("reg.example:5000", docker_config=cfg)
    assert c is not None and (c.username, c.password) == ("u", "p:with:colons")
    c = credentials_for("other.example", docker_config=cfg)
    assert c is not None and (c.username, c.password) == ("x", "y")
    assert credentials_for("nobody.example", docker_config=cfg) is None
    flags = credentials_for("reg.example:5000", username="f", password="g", docker_config=cfg)
    assert flags is not None and flags.username == "f"
    with pytest.raises(UsageError, match="go together"):
        credentials_for("reg.example:5000", username="f")
    cfg.write_text("{not json")
    with pytest.raises(UsageError, match="not valid JSON"):
        credentials_for("reg.example:5000", docker_config=cfg)


# ------------------------------------------------- Docker's own config resolution: helpers, credsStore, auths


def credential_helper(bin_dir: Path, name: str, answers: dict[str, tuple[str, str]]) -> Path:
    """A real `docker-credential-NAME` executable in BIN_DIR (put it on PATH): `get` reads the server on stdin and
    prints {"ServerURL", "Username", "Secret"} from ANSWERS, or says "credentials not found" and exits 1, the way
    Docker's helpers do. Every server asked for is appended to the returned log file."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    log = bin_dir / f"{name}.log"
    cases = "".join(
        f"  {server}) echo '{json.dumps({'ServerURL': server, 'Username': user, 'Secret': secret})}' ;;\n"
        for server, (user, secret) in answers.items())
    script = bin_dir / f"docker-credential-{name}"
    script.write_text(f"#!/bin/sh\n[ \"$1\" = get ] || exit 3\nserver=$(cat)\necho \"$server\" >> '{log}'\n"
                      f"case \"$server\" in\n{cases}"
                      "  *) echo 'credentials not found in native keychain'; exit 1 ;;\nesac\n")
    script.chmod(0o755)
    return log


def _config(tmp_path: Path, cfg: dict) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    return path


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_every_auths_form_is_read(tmp_path):
    cfg = _config(tmp_path, {"auths": {
        "base64.example": {"auth": _b64("alice:a-pass")},
        "https://fields.example/v1/": {"username": "bob", "password": "b-pass"},
        "token.example": {"auth": _b64("00000000-0000-0000-0000-000000000000:"), "identitytoken": "refresh-123"},
    }})
    c = credentials_for("base64.example", docker_config=cfg)
    assert c is not None and (c.username, c.password, c.identity_token) == ("alice", "a-pass", None)
    c = credentials_for("fields.example", docker_config=cfg)
    assert c is not None and (c.username, c.password) == ("bob", "b-pass")
    c = credentials_for("token.example", docker_config=cfg)
    assert c is not None and c.identity_token == "refresh-123"
    assert str(cfg) in c.source


def test_credential_helper_beats_auths_and_token_user_is_an_identity_token(tmp_path, monkeypatch):
    log = credential_helper(tmp_path / "bin", "wftest", {"helper.example": ("helper-user", "helper-pass"),
                                                         "acr.example": ("<token>", "refresh-from-helper")})
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    cfg = _config(tmp_path, {"auths": {"helper.example": {"auth": _b64("auths-user:auths-pass")},
                                       "plain.example": {"auth": _b64("plain:p")}},
                             "credHelpers": {"helper.example": "wftest", "acr.example": "wftest"}})
    c = credentials_for("helper.example", docker_config=cfg)
    assert c is not None and (c.username, c.password) == ("helper-user", "helper-pass")
    assert c.source == "docker-credential-wftest"
    c = credentials_for("acr.example", docker_config=cfg)
    assert c is not None and c.identity_token == "refresh-from-helper"
    c = credentials_for("plain.example", docker_config=cfg)  # no helper for it: auths
    assert c is not None and c.username == "plain"
    assert log.read_text().split() == ["helper.example", "acr.example"]


def test_creds_store_then_auths(tmp_path, monkeypatch):
    log = credential_helper(tmp_path / "bin", "wfstore", {"store.example": ("store-user", "store-pass")})
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    cfg = _config(tmp_path, {"auths": {"store.example": {"auth": _b64("auths-user:x")},
                                       "other.example": {"auth": _b64("other:o")}},
                             "credsStore": "wfstore"})
    c = credentials_for("store.example", docker_config=cfg)
    assert c is not None and (c.username, c.password) == ("store-user", "store-pass")
    c = credentials_for("other.example", docker_config=cfg)  # the store has none: auths
    assert c is not None and c.username == "other"
    assert credentials_for("nobody.example", docker_config=cfg) is None
    assert log.read_text().split() == ["store.example", "other.example", "nobody.example"]


def test_flags_and_settings_beat_the_helper(tmp_path, monkeypatch):
    from wasmfilter import settings

    log = credential_helper(tmp_path / "bin", "wftest", {"helper.example": ("helper-user", "helper-pass")})
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    cfg = _config(tmp_path, {"credHelpers": {"helper.example": "wftest"}})
    c = credentials_for("helper.example", username="flag-user", password="flag-pass", docker_config=cfg)
    assert c is not None and c.username == "flag-user"
    monkeypatch.setenv("WASMFILTER_REGISTRY_USERNAME", "env-user")
    monkeypatch.setenv("WASMFILTER_REGISTRY_PASSWORD", "env-pass")
    settings.reload()
    try:
        c = credentials_for("helper.example", docker_config=cfg)
        assert c is not None and (c.username, c.password) == ("env-user", "env-pass")
    finally:
        monkeypatch.undo()
        settings.reload()
    assert not log.exists()


def test_broken_or_missing_helper_is_a_one_line_error(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    credential_helper(bin_dir, "wftest", {})
    broken = bin_dir / "docker-credential-broken"
    broken.write_text("#!/bin/sh\necho 'keychain locked'\nexit 2\n")
    broken.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    cfg = _config(tmp_path, {"credHelpers": {"a.example": "broken", "b.example": "not-installed"},
                             "credsStore": "also-not-installed", "auths": {"c.example": {"auth": _b64("c:c")}}})
    with pytest.raises(UsageError, match="credential helper for a.example failed .*keychain locked") as info:
        credentials_for("a.example", docker_config=cfg)
    assert "\n" not in str(info.value)
    with pytest.raises(UsageError, match="docker-credential-not-installed not installed"):
        credentials_for("b.example", docker_config=cfg)
    # a credsStore that is not installed is skipped, as before: auths still work, anonymous stays anonymous
    c = credentials_for("c.example", docker_config=cfg)
    assert c is not None and c.username == "c"
    assert credentials_for("d.example", docker_config=cfg) is None
    cfg.write_text(json.dumps({"auths": {"e.example": {"auth": "not base64 at all!"}}}))
    with pytest.raises(UsageError, match="not base64 user:password"):
        credentials_for("e.example", docker_config=cfg)
    with pytest.raises(UsageError, match="does not exist"):
        credentials_for("e.example", docker_config=tmp_path / "missing.json")


def test_credential_helper_authenticates_push_and_pull(registry, image, auth_build, tmp_path):
    """End to end through the CLI: DOCKER_CONFIG names a credsStore, the helper on PATH answers for the registry."""
    bin_dir = tmp_path / "bin"
    log = credential_helper(bin_dir, "wfci", {registry.host: (USER, PASSWORD)})
    docker_dir = tmp_path / "docker"
    docker_dir.mkdir()
    (docker_dir / "config.json").write_text(json.dumps({
        "credsStore": "wfci", "auths": {registry.host: {"auth": _b64(f"{USER}:wrong")}}}))
    env = {"DOCKER_CONFIG": str(docker_dir), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    layout = tmp_path / "auth.tar"
    write_layout(image, layout)
    ref = f"{registry.host}/auth/helper:v1"
    res = run_cli("push", ref, str(layout), "--insecure", env=env)
    assert res.code == 0, res.stderr
    res = run_cli("pull", ref, "--insecure", "-o", str(tmp_path / "p.wasm"), env=env)
    assert res.code == 0, res.stderr
    assert (tmp_path / "p.wasm").read_bytes() == auth_build.wasm.read_bytes()
    assert registry.host in log.read_text().split()
