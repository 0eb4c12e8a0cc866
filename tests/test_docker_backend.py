"""The docker backend behind the harness: Envoy + echo upstreams in containers on a private network, only the
listener and admin published on loopback, the .wasm and config mounted read-only, everything labelled and
removed at stop."""

from __future__ import annotations

import json

import pytest

from tests.conftest import AUTH
from tests.conftest import http_get as _get
from wasmfilter.envoy import container, engine
from wasmfilter.envoy.hardening import RequestHardening
from wasmfilter.harness import docker
from wasmfilter.harness import stack as harness
from wasmfilter.harness.stack import StackSpec, start_stack
from wasmfilter.manifest import load_manifest

pytestmark = pytest.mark.docker


def test_docker_is_a_registered_backend():
    assert "docker" in harness.BACKENDS and "process" in harness.BACKENDS


def test_stack_runs_the_filter_in_containers_and_leaves_nothing(auth_build):
    manifest = load_manifest(AUTH)
    with start_stack(StackSpec(manifest=manifest, wasm_path=auth_build.wasm), backend="docker") as stack:
        envoy = stack.envoy
        assert envoy.backend == "docker" and envoy.start_seconds and envoy.start_seconds > 0
        run_id = stack.run_id

        # the filter works through the container: denied without a key, forwarded with one
        status, _, _ = _get(stack.url + "/orders")
        assert status == 401
        status, headers, body = _get(stack.url + "/orders", {"x-api-key": "alice-secret"})
        assert status == 200 and headers["x-wasmfilter-upstream"] == "default"
        echo = json.loads(body)
        assert echo["path"] == "/orders" and ["x-auth-identity", "alice"] in echo["headers"]
        assert envoy.admin.stats()["wasmcustom.wasmfilter_auth.allowed"] >= 1
        assert any("][wasm]" in line for line in envoy.logs().splitlines())

        api = engine.client()
        ours = api.containers.list(filters={"label": f"{docker.RUN_LABEL}={run_id}"})
        assert len(ours) == 2  # Envoy + one echo upstream
        env = next(c for c in ours if c.name.endswith("-envoy"))
        env.reload()
        published = {k: v for k, v in env.attrs["NetworkSettings"]["Ports"].items() if v}
        assert set(published) == {"10000/tcp", "9901/tcp"}
        assert all(b["HostIp"] == "127.0.0.1" for binds in published.values() for b in binds)
        assert envoy.admin.host == "127.0.0.1" and stack.url.startswith("http://127.0.0.1:")
        mounts = {m["Destination"]: m for m in env.attrs["Mounts"]}
        assert mounts[container.CONFIG_DIR]["RW"] is False
        assert mounts[f"{container.WASM_DIR}/{auth_build.wasm.name}"]["RW"] is False
        echo_c = next(c for c in ours if "-echo-" in c.name)
        echo_c.reload()
        assert not any(echo_c.attrs["NetworkSettings"]["Ports"].values())  # the upstream is not published
        networks = api.networks.list(filters={"label": f"{docker.RUN_LABEL}={run_id}"})
        assert len(networks) == 1 and set(env.attrs["NetworkSettings"]["Networks"]) == {networks[0].name}
        assert docker.leftovers(run=run_id) != {"containers": [], "networks": []}
    assert docker.leftovers(run=run_id) == {"containers": [], "networks": []}
    assert "starting main dispatch loop" in envoy.logs()  # the logs survive the container


def test_several_upstreams_each_in_its_own_container(auth_build):
    manifest = load_manifest(AUTH).model_copy(update={"upstreams": ["stable", "canary"]})
    # The client picks the cluster itself here: only with Envoy's strip of x-wasmfilter-cluster turned off
    # (docs/security.md; every generated config has it on).
    open_cluster = RequestHardening(strip_cluster_header=False)
    with start_stack(StackSpec(manifest=manifest, wasm_path=auth_build.wasm, hardening=open_cluster),
                     backend="docker") as stack:
        key = {"x-api-key": "bob-secret"}
        _, headers, _ = _get(stack.url + "/", key)
        assert headers["x-wasmfilter-upstream"] == "stable"
        _, headers, body = _get(stack.url + "/x", {**key, "x-wasmfilter-cluster": "canary"})
        assert headers["x-wasmfilter-upstream"] == "canary" and json.loads(body)["upstream"] == "canary"


def test_fixed_listener_port_is_published_on_loopback(auth_build):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    manifest = load_manifest(AUTH)
    with start_stack(StackSpec(manifest=manifest, wasm_path=auth_build.wasm, listener_port=port),
                     backend="docker") as stack:
        assert stack.url == f"http://127.0.0.1:{port}"
        assert _get(stack.url + "/")[0] == 401
