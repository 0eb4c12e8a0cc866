"""Bad input and faults of the docker backend, each with a one-line error that says what to do."""

from __future__ import annotations

import pytest

from tests.conftest import AUTH, assert_one_line_error, run_cli
from wasmfilter.envoy import container, engine, images
from wasmfilter.errors import DockerError, EnvoyStartError
from wasmfilter.harness import docker
from wasmfilter.harness.stack import BackendOptions, StackSpec, start_stack
from wasmfilter.manifest import load_manifest

pytestmark = pytest.mark.docker

DEAD_SOCKET = "unix:///tmp/wasmfilter-no-docker-here.sock"


def test_unreachable_engine_names_the_socket(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", DEAD_SOCKET)
    with pytest.raises(DockerError) as info:
        engine.client()
    assert DEAD_SOCKET in str(info.value) and "no such socket" in str(info.value)
    assert "DOCKER_HOST" in info.value.fix


def test_unreachable_engine_cli_is_one_line_error():
    result = run_cli("test", str(AUTH), "--backend", "docker", env={"DOCKER_HOST": DEAD_SOCKET}, timeout=120)
    assert_one_line_error(result, "cannot reach the Docker engine", DEAD_SOCKET, "DOCKER_HOST")


def test_refused_tcp_engine_cli():
    result = run_cli("image", "build", env={"DOCKER_HOST": "tcp://127.0.0.1:9"}, timeout=120)
    assert_one_line_error(result, "tcp://127.0.0.1:9", "connection refused")


def test_missing_unpullable_image_says_how_to_build_it(auth_build, wasmfilter_env):
    wasmfilter_env("WASMFILTER_ENVOY_IMAGE", "wasmfilter/no-such-envoy:0.0.0")
    with pytest.raises(DockerError) as info:
        start_stack(StackSpec(manifest=load_manifest(AUTH), wasm_path=auth_build.wasm), backend="docker")
    assert "wasmfilter/no-such-envoy:0.0.0" in str(info.value)
    assert "cannot be pulled" in str(info.value) and "wasmfilter image build" in str(info.value)


def test_missing_image_cli(auth_build):
    result = run_cli("run", str(AUTH), "--backend", "docker", "--envoy-image", "wasmfilter/no-such-envoy:0.0.0",
                     timeout=300)
    assert_one_line_error(result, "wasmfilter/no-such-envoy:0.0.0", "cannot be pulled", "wasmfilter image build")


def _envoy_container(session: docker.DockerSession, config: str, **kwargs) -> container.EnvoyContainer:
    run_id = docker.new_run_id()
    return container.EnvoyContainer(config, image=images.choose_envoy_image().tag, name=f"wasmfilter-{run_id}-envoy",
                                    labels=session.labels(run_id), **kwargs)


def test_container_exiting_at_start_attaches_its_logs(docker_session):
    bad = "static_resources:\n  listenerz: []\n"
    envoy = _envoy_container(docker_session, bad)
    with pytest.raises(EnvoyStartError) as info:
        envoy.start()
    e = info.value
    assert "exited during start-up" in str(e) and "listenerz" in str(e)
    assert e.detail and "listenerz" in e.detail  # Envoy's own log lines, read from the container
    assert docker.leftovers(session=docker_session.id) == {"containers": [], "networks": []}


def test_plugin_config_envoy_rejects_fails_the_stack_with_the_filter_reason(auth_build, docker_session):
    spec = StackSpec(manifest=load_manifest(AUTH), wasm_path=auth_build.wasm,
                     plugin_config={"key_header": "x-api-key", "no_such_field": 1})
    before = docker.leftovers(session=docker_session.id)
    with pytest.raises(EnvoyStartError) as info:
        start_stack(spec, backend="docker", options=BackendOptions(docker=docker_session))
    assert info.value.detail and "no_such_field" in info.value.detail
    assert docker.leftovers(session=docker_session.id) == before  # network and echo removed too


def test_missing_wasm_file_is_refused_before_docker_creates_a_directory(tmp_path, docker_session):
    missing = tmp_path / "nope.wasm"
    envoy = _envoy_container(docker_session, "{}", mounts={missing: "/wasm/nope.wasm"})
    with pytest.raises(DockerError) as info:
        envoy.start()
    assert "nope.wasm" in str(info.value) and "wasmfilter build" in str(info.value)
    assert not missing.exists()


def test_container_whose_start_fails_is_removed(auth_build, docker_session):
    # a file mounted inside the read-only config mount: the engine creates the container, then refuses to start it
    envoy = _envoy_container(docker_session, "{}", mounts={auth_build.wasm: f"{container.CONFIG_DIR}/x/a.wasm"})
    with pytest.raises(DockerError) as info:
        envoy.start()
    assert "cannot start an Envoy container" in str(info.value)
    assert docker.leftovers(session=docker_session.id) == {"containers": [], "networks": []}


def test_echo_container_exiting_at_start_shows_its_output(docker_session):
    run_id = docker.new_run_id()
    network = docker.create_network(run_id, docker_session.labels(run_id))
    try:
        # the Envoy image does not understand the echo's arguments and exits at once
        echo = docker.EchoContainer("broken", image=images.choose_envoy_image().tag, network=network.name,
                                    run_id=run_id, labels=docker_session.labels(run_id))
        with pytest.raises(DockerError) as info:
            echo.start()
        echo.stop()
        assert "exited at start" in str(info.value) and info.value.detail
    finally:
        network.remove()
    assert docker.leftovers(run=run_id) == {"containers": [], "networks": []}
