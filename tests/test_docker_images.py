"""Locally built images (FROM scratch, no registry): content-hash tags, the choice of Envoy image, and the echo
upstream image speaking exactly the JSON of the Python echo upstream."""

from __future__ import annotations

import http.client
import json
import time

import pytest

from wasmfilter.envoy import engine, images
from wasmfilter.envoy.binary import resolve
from wasmfilter.harness.docker import DockerSession
from wasmfilter.harness.upstream import EchoUpstream

pytestmark = pytest.mark.docker


def test_envoy_image_is_reused_by_content_hash():
    binary = resolve()
    first = images.ensure_envoy_image(binary)
    again = images.ensure_envoy_image(binary)
    assert again.tag == first.tag and not again.built
    assert again.tag.startswith(f"{images.ENVOY_REPO}:{binary.version}-")
    assert again.inputs_hash in again.tag
    image = engine.client().images.get(again.tag)
    assert f"{images.ENVOY_REPO}:{binary.version}" in image.tags
    assert image.labels[images.IMAGE_LABEL] == "envoy"
    assert image.attrs["Config"]["Entrypoint"] == [images.ENVOY_IN_IMAGE]


def test_envoy_image_holds_the_wheel_binary_and_its_loader():
    files = {f.dest for f in images.envoy_image_files(resolve())}
    assert images.ENVOY_IN_IMAGE in files
    assert any("ld-linux" in f for f in files), files
    assert any("/libc.so" in f for f in files), files
    # and it really runs: Envoy prints its version from inside the image
    api = engine.client()
    out = api.containers.run(images.ensure_envoy_image().tag, ["--version"], remove=True, network_mode="none",
                             labels=DockerSession().labels("version-check"))
    assert resolve().version in out.decode()


def test_echo_image_is_reused_by_source_hash(monkeypatch):
    first = images.ensure_echo_image()

    def no_cargo() -> None:
        raise AssertionError("cargo must not run when the source hash is unchanged")

    monkeypatch.setattr(images, "build_echo_binary", no_cargo)
    again = images.ensure_echo_image()
    assert again.tag == first.tag and not again.built  # a tag lookup only
    assert images.ECHO_LATEST in engine.client().images.get(again.tag).tags


def test_image_choice_falls_back_to_the_local_build_and_says_why():
    lines: list[str] = []
    choice = images.choose_envoy_image(resolve(), announce=lines.append)
    official = images.OFFICIAL_ENVOY.format(version=resolve().version)
    if images.image_exists(official):
        assert choice.tag == official
    else:
        assert choice.tag == images.ensure_envoy_image().tag
        assert len(lines) == 1 and official in lines[0] and "built locally" in lines[0]


def test_explicit_image_is_used_as_given(wasmfilter_env):
    tag = images.ensure_envoy_image().tag
    assert images.choose_envoy_image(resolve(), override=tag).tag == tag
    wasmfilter_env("WASMFILTER_ENVOY_IMAGE", tag)  # the variable reaches a docker session through the settings
    with DockerSession() as session:
        assert session.envoy_image(resolve()).tag == tag


REQUESTS = [
    ("GET", "/", {}, b""),
    ("GET", "/search?q=a%20b&x=1", {"X-Mixed-Case": "Value", "x-api-key": "k"}, b""),
    ("POST", "/orders", {"content-type": "application/json"}, '{"n": "hé\\n", "q": "\\"x\\""}'.encode()),
    ("POST", "/bin", {}, b"\xff\xfe bytes \x00 \x7f"),
    ("PUT", "/status/418", {}, b"teapot"),
    ("GET", "/status/abc", {}, b""),
    ("GET", "/status/99", {}, b""),
    ("DELETE", "/status/503?retry=1", {}, b""),
    ("HEAD", "/head", {}, b""),
]


def _ask(port: int, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, str, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", "echo.test")
        for k, v in headers.items():
            conn.putheader(k, v)
        if body or method in ("POST", "PUT"):
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body or None)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, resp.getheader("content-type", ""), resp.getheader("x-wasmfilter-upstream", ""), data
    finally:
        conn.close()


def test_echo_container_answers_exactly_like_the_python_echo_upstream():
    api = engine.client()
    echo = api.containers.run(images.ensure_echo_image().tag, ["--name", "parity", "--port", "8000"], detach=True,
                              ports={"8000/tcp": ("127.0.0.1", None)}, labels=DockerSession().labels("echo-parity"))
    try:
        deadline = time.monotonic() + 20
        while "echo upstream" not in echo.logs().decode() and time.monotonic() < deadline:
            time.sleep(0.02)
        echo.reload()
        port = int(echo.ports["8000/tcp"][0]["HostPort"])
        with EchoUpstream("parity") as python_echo:
            for method, path, headers, body in REQUESTS:
                want = _ask(python_echo.port, method, path, headers, body)
                got = _ask(port, method, path, headers, body)
                assert got == want, f"{method} {path}: container {got!r} != python {want!r}"
                if method != "HEAD":
                    parsed = json.loads(got[3])
                    assert parsed["upstream"] == "parity" and parsed["path"] == path
    finally:
        echo.remove(force=True)


def test_image_build_cli_is_fast_when_nothing_changed():
    from tests.conftest import run_cli

    images.ensure_envoy_image()
    images.ensure_echo_image()
    result = run_cli("image", "build", timeout=300)
    assert result.code == 0, result.stdout + result.stderr
    assert result.stdout.count("up to date") == 2, result.stdout


def test_content_hash_follows_every_input(tmp_path):
    a = tmp_path / "a"
    a.write_bytes(b"one")
    files = [images.RootfsFile("/bin/a", source=a, mode=0o755), images.RootfsFile("/etc/x", data=b"x")]
    base = images._inputs_hash(files, "FROM scratch\n")
    assert images._inputs_hash(files, "FROM scratch\n") == base
    assert images._inputs_hash(files, "FROM scratch\nCMD []\n") != base
    assert images._inputs_hash([files[0], images.RootfsFile("/etc/x", data=b"y")], "FROM scratch\n") != base
    assert images._inputs_hash([images.RootfsFile("/bin/a", source=a, mode=0o700), files[1]], "FROM scratch\n") != base
    a.write_bytes(b"two")
    assert images._inputs_hash(files, "FROM scratch\n") != base


def test_official_image_is_preferred_when_present_locally():
    from wasmfilter.envoy.binary import EnvoyBinary

    real = resolve()
    fake = EnvoyBinary(real.path, "9.9.9", real.source)  # a version nobody else uses: its "official" tag is ours
    official = images.OFFICIAL_ENVOY.format(version="9.9.9")
    api = engine.client()
    api.images.get(images.ensure_envoy_image(real).tag).tag("envoyproxy/envoy", "v9.9.9")
    try:
        lines: list[str] = []
        choice = images.choose_envoy_image(fake, announce=lines.append)
        assert choice.tag == official and "official, present locally" in lines[0]
    finally:
        api.images.remove(official, noprune=True)


def test_echo_crate_unit_tests_pass():
    import os
    import subprocess

    from wasmfilter.paths import cache_dir

    cargo = images._host_cargo()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARGO_TARGET_") and k != "RUSTC_BOOTSTRAP"}
    env["CARGO_TARGET_DIR"] = str(cache_dir() / "echo-target")
    out = subprocess.run([cargo, "test", "--quiet", "--manifest-path", str(images.echo_source_dir() / "Cargo.toml")],
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "test result: ok" in out.stdout
