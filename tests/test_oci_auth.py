"""A registry behind htpasswd (bcrypt) auth: 401 without or with wrong credentials, success with flags or with
credentials from a Docker config file (auths.<host>.auth = base64 user:password)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from conftest import assert_one_line_error, run_cli

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
