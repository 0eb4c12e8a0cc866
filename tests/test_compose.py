"""docker-compose.yml and envoy-configs/: generated (no drift), accepted by Envoy in its image, and brought up
for real with requests that exercise the filters, then always taken down."""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.request

import pytest
import yaml

from tests.conftest import REPO
from tests.conftest import http_get as _get
from wasmfilter.envoy import container, engine, images
from wasmfilter.harness import compose
from wasmfilter.harness.docker import new_run_id

pytestmark = pytest.mark.docker


def test_committed_compose_files_match_the_generator():
    generated = compose.render(REPO)
    assert set(generated) == {"docker-compose.yml", *(f"envoy-configs/{n}.yaml" for n in compose.COMPOSE_FILTERS)}
    for rel, text in generated.items():
        assert (REPO / rel).read_text() == text, f"{rel} drifted: run `wasmfilter compose config`"
    assert compose.drift(REPO) == []
    committed = sorted(p.name for p in (REPO / "envoy-configs").glob("*.yaml"))
    assert committed == sorted(f"{n}.yaml" for n in compose.COMPOSE_FILTERS)


def test_drift_is_detected(tmp_path):
    for rel, text in compose.render(REPO).items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    (tmp_path / "filters").symlink_to(REPO / "filters")
    assert compose.drift(tmp_path) == []
    (tmp_path / "envoy-configs" / "auth.yaml").write_text("# edited by hand\n")
    with pytest.raises(Exception) as info:
        compose.write(tmp_path, check=True)
    assert "envoy-configs/auth.yaml" in str(info.value) and "wasmfilter compose config" in str(info.value)


def test_compose_file_shape():
    doc = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = doc["services"]
    for name in compose.COMPOSE_FILTERS:
        svc = services[f"envoy-{name}"]
        assert all(p.startswith("127.0.0.1:") for p in svc["ports"])  # loopback only
        assert all(v.endswith(":ro") for v in svc["volumes"])
    for key, svc in services.items():
        if key.startswith("echo-"):
            assert "ports" not in svc  # upstreams are reachable only on the compose network


@pytest.mark.parametrize("name", compose.COMPOSE_FILTERS)
def test_envoy_in_its_image_accepts_the_config(name, docker_session):
    from wasmfilter.build.cargo import build

    wasm = build(REPO / "filters" / name).wasm
    assert wasm.parent == REPO / compose.WASM_HOST_DIR
    run_id = new_run_id()
    line = container.validate_in_container(REPO / "envoy-configs" / f"{name}.yaml",
                                           image=images.choose_envoy_image().tag,
                                           name=f"wasmfilter-{run_id}-validate", labels=docker_session.labels(run_id),
                                           config_path=compose.CONFIG_IN_CONTAINER,
                                           mounts={wasm.parent: compose.WASM_DIR})
    assert "OK" in line


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str) -> int:
    req = urllib.request.Request(url, data=b"{}", method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


def test_compose_up_serves_the_filters_then_down_removes_everything():
    project = f"wftest{os.getpid()}"
    env = {}
    for f in compose.compose_filters(REPO):
        env[f"{f.env_prefix}_PORT"] = str(_free_port())
        env[f"{f.env_prefix}_ADMIN_PORT"] = str(_free_port())
    api = engine.client()
    try:
        endpoints = {ep.filter: ep for ep in compose.up(REPO, project=project, env=env)}
        assert set(endpoints) == set(compose.COMPOSE_FILTERS)
        auth = endpoints["auth"]
        assert _get(auth.url + "/orders")[0] == 401
        status, headers, body = _get(auth.url + "/orders", {"x-api-key": "alice-secret"})
        assert status == 200 and headers["x-wasmfilter-upstream"] == "default"
        assert ["x-auth-identity", "alice"] in json.loads(body)["headers"]
        assert auth.admin.stats()["wasmcustom.wasmfilter_auth.allowed"] >= 1
        if "ratelimit" in endpoints:
            rl = endpoints["ratelimit"]
            status, headers, _ = _get(rl.url + "/orders", {"x-user": "compose"})
            assert status == 200 and "ratelimit-remaining" in headers
            login = next((r for r in compose.compose_filters(REPO)[list(endpoints).index("ratelimit")]
                          .manifest.config.get("rules", []) if r.get("name") == "login"), None)
            if login:  # POST /login is limited per client address: burst passes, the next one is 429
                codes = [_post(rl.url + "/login") for _ in range(int(login["burst"]) + 1)]
                assert codes[:-1] == [200] * int(login["burst"]) and codes[-1] == 429, codes
        if "routing" in endpoints:
            status, headers, body = _get(endpoints["routing"].url + "/api/v2/users/42")
            assert status == 200 and headers.get("x-wasmfilter-upstream") == "canary"
            assert json.loads(body)["path"] == "/v2/users/42"
            _, headers, _ = _get(endpoints["routing"].url + "/orders")
            assert headers.get("x-wasmfilter-upstream") == "stable"
        running = api.containers.list(filters={"label": f"com.docker.compose.project={project}"})
        assert len(running) == len(compose.COMPOSE_FILTERS) + len(
            {u for f in compose.compose_filters(REPO) for u in f.manifest.upstreams})
    finally:
        compose.down(REPO, project=project, env=env)
    label = {"label": f"com.docker.compose.project={project}"}
    assert api.containers.list(all=True, filters=label) == []
    assert api.networks.list(filters=label) == []


def test_compose_config_check_cli():
    from tests.conftest import run_cli

    result = run_cli("compose", "config", "--check", timeout=120)
    assert result.code == 0 and "up to date" in result.stdout, result.stdout + result.stderr
