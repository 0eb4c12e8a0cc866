"""The istio-agent-like delivery against the real local registry (docker-registry) and a real Envoy: fail-closed
until the first delivery, pull + pinned digest + cache by digest + ECDS push; a digest mismatch, a missing image, a
non-Wasm layer and an unreachable registry apply nothing and the last good filter keeps serving; a cached pinned
module needs no registry. The CLI form fails in one line and leaves nothing running."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.conftest import AUTH, assert_one_line_error, run_cli
from tests.test_ecds import ALICE, status
from wasmfilter.errors import RegistryError
from wasmfilter.harness.ecds import EcdsStack
from wasmfilter.harness.stack import StackSpec
from wasmfilter.harness.swaps import with_custom_section
from wasmfilter.manifest import load_manifest
from wasmfilter.ship.agent import WasmCache, deliver
from wasmfilter.ship.image import build_image
from wasmfilter.ship.registry import LocalRegistry
from wasmfilter.ship.transfer import push_image

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not Path("/usr/bin/docker-registry").exists(),
                                                   reason="docker-registry not installed (make toolchain)")]


@pytest.fixture(scope="module")
def registry():
    with LocalRegistry() as reg:
        yield reg


@pytest.fixture(scope="module")
def images(registry: LocalRegistry, frozen_auth_build) -> dict[str, str]:
    wasm = frozen_auth_build.wasm.read_bytes()
    digests = {}
    for tag, module in (("v1", wasm), ("v2", with_custom_section(wasm, "v2"))):
        image = build_image(module, root_id="auth")
        push_image(image, f"{registry.host}/filters/auth:{tag}", insecure=True)
        digests[tag] = image.digest
    push_image(build_image(b"MZ\x90\x00 not wasm", check_wasm=False), f"{registry.host}/filters/auth:notwasm",
               insecure=True)
    return digests


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_agent_delivers_verifies_caches_and_keeps_the_last_good_filter(registry, images, frozen_auth_build,
                                                                       tmp_path: Path) -> None:
    spec = StackSpec(manifest=load_manifest(AUTH), wasm_path=frozen_auth_build.wasm)
    cache = WasmCache(tmp_path / "cache")
    repo = f"{registry.host}/filters/auth"
    with EcdsStack(spec, initial_push=False) as live:
        assert live.xds is not None
        assert status(live.url, ALICE) == 403  # nothing delivered yet: fail-closed

        first = deliver(live, f"{repo}:v1", cache=cache, sha256=images["v1"], insecure=True)
        assert first.push.state == "acked" and not first.cached and first.module.is_file()
        assert first.digest == images["v1"] and status(live.url, ALICE) == 200
        good, pushes = live.sha256, len(live.xds.pushes)

        failures = {
            "digest mismatch": dict(reference=f"{repo}:v2", sha256=images["v1"].replace("sha256:", "sha256:0")[:71]),
            "not found": dict(reference=f"{repo}:no-such-tag", sha256=None),
            "not a WebAssembly module": dict(reference=f"{repo}:notwasm", sha256=None),
            "cannot connect to registry": dict(reference=f"127.0.0.1:{closed_port()}/filters/auth:v1", sha256=None),
        }
        for reason, args in failures.items():
            with pytest.raises(RegistryError, match=reason) as info:
                deliver(live, args["reference"], cache=cache, sha256=args["sha256"], insecure=True)
            assert "\n" not in str(info.value)
            assert len(live.xds.pushes) == pushes and live.sha256 == good, f"{reason}: something was applied"
            assert status(live.url, ALICE) == 200

        # The tag moved to v2: its pin verifies, it is delivered.
        second = deliver(live, f"{repo}:v2", cache=cache, sha256=images["v2"], insecure=True)
        assert second.push.state == "acked" and live.sha256 != good and status(live.url, ALICE) == 200

        # A pinned module already in the cache needs no registry (it is down for this one).
        again = deliver(live, f"127.0.0.1:{closed_port()}/filters/auth:v1", cache=cache, sha256=images["v1"],
                        insecure=True)
        assert again.cached and again.push.state == "acked" and live.sha256 == good


def test_agent_cli_delivers_and_a_mismatch_is_one_line(registry, images, tmp_path: Path) -> None:
    ref = f"{registry.host}/filters/auth:v1"
    ok = run_cli("agent", str(AUTH), "--image", ref, "--sha256", images["v1"], "--insecure", "--duration", "0.1")
    assert ok.code == 0, ok.stderr
    assert f"live: {ref}" in ok.stdout
    bad = run_cli("agent", str(AUTH), "--image", ref, "--sha256", "0" * 64, "--insecure")
    assert_one_line_error(bad, "digest mismatch")
