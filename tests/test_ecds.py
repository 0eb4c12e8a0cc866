"""ECDS delivery (docs/dev.md) through a real Envoy and the in-process ADS server: what requests get before the first
push, ACK/NACK per push, a NACK keeps the last good filter, later pushes still apply, a busy port, a vanished module,
the bootstrap passes `envoy --mode validate`, and no request lost or 5xx across 20 swaps under load."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.conftest import AUTH
from wasmfilter.build.cargo import build
from wasmfilter.envoy.standalone import bootstrap_for
from wasmfilter.envoy.validate import validate_text
from wasmfilter.envoy.xds.process import XdsProcess
from wasmfilter.envoy.xds.server import ACKED, NACKED
from wasmfilter.errors import PushRejected, UsageError, XdsError
from wasmfilter.harness.client import Client
from wasmfilter.harness.ecds import EcdsStack
from wasmfilter.harness.scenario import Request
from wasmfilter.harness.stack import StackSpec
from wasmfilter.harness.swaps import swaps_under_load, with_custom_section
from wasmfilter.manifest import load_manifest

ALICE = Request(path="/orders", headers={"x-api-key": "alice-secret"})
NO_KEY = Request(path="/orders")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def auth_spec() -> StackSpec:
    manifest = load_manifest(AUTH)
    return StackSpec(manifest=manifest, wasm_path=build(manifest.crate_dir).wasm)


@pytest.fixture(scope="module")
def live(auth_spec: StackSpec):
    with EcdsStack(auth_spec) as stack:
        yield stack


def status(url: str, request: Request) -> int:
    client = Client(url)
    try:
        return client.send(request).status
    finally:
        client.close()


def test_before_the_first_push_requests_are_denied_never_passed(auth_spec: StackSpec) -> None:
    # The security-relevant auth filter has not arrived: the deny-all default answers, not an unfiltered chain.
    with EcdsStack(auth_spec, initial_push=False) as stack:
        resp = Client(stack.url).send(ALICE)
        assert resp.status == 403
        assert resp.echo() is None  # the upstream never saw it
        assert b"RBAC" in resp.body
        push = stack.push()
        assert push.state == ACKED
        assert status(stack.url, ALICE) == 200
        assert status(stack.url, NO_KEY) == 401


def test_config_push_is_acked_and_live(live: EcdsStack) -> None:
    config = dict(live.plugin_config)
    before = len(live.xds.pushes) if live.xds else 0
    push = live.push(config={**config, "default_require": "public"})
    assert push.state == ACKED and push.nonce and int(push.version) > 0
    assert status(live.url, NO_KEY) == 200  # everything public now
    live.push(config=config)
    assert status(live.url, NO_KEY) == 401
    assert live.xds is not None and len(live.xds.pushes) == before + 2


def test_nack_keeps_the_last_good_filter_and_later_pushes_apply(live: EcdsStack) -> None:
    good = live.sha256
    with pytest.raises(PushRejected) as info:
        live.push(config={"no_such_field": 1})
    message = str(info.value)
    assert "\n" not in message and "Envoy rejected auth" in message and "Unable to create Wasm" in message
    assert live.xds is not None and live.xds.pushes[-1].state == NACKED
    assert status(live.url, NO_KEY) == 401 and status(live.url, ALICE) == 200  # the last good filter serves
    # A module that is not Wasm: NACKed too, still the last good filter.
    with pytest.raises(PushRejected):
        live.push(wasm=b"\x00asm-not-really")
    assert live.sha256 == good and status(live.url, ALICE) == 200
    # One bad push does not block later ones (Envoy 36802): a new module is ACKed and serves.
    push = live.push(wasm=with_custom_section(Path(live.spec.wasm_path).read_bytes(), "after-nack"))
    assert push.state == ACKED and live.sha256 != good
    assert status(live.url, NO_KEY) == 401 and status(live.url, ALICE) == 200


def test_module_file_vanishing_before_the_push_pushes_nothing(live: EcdsStack, tmp_path: Path) -> None:
    assert live.xds is not None
    count, good = len(live.xds.pushes), live.sha256
    with pytest.raises(UsageError, match="cannot be read.*nothing was pushed"):
        live.push(wasm=tmp_path / "gone.wasm")
    assert len(live.xds.pushes) == count and live.sha256 == good
    assert status(live.url, ALICE) == 200


def test_busy_port_is_one_clear_error() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(XdsError, match=f"cannot listen on 127.0.0.1:{port}"):
            XdsProcess(port=port).start()


def test_push_without_envoy_times_out_with_the_reason() -> None:
    from wasmfilter.envoy.xds.resources import WasmResource

    resource = WasmResource(name="f", root_id="f", vm_id="f", wasm_path=Path("/x.wasm"), sha256="0" * 64,
                            plugin_config={})
    with XdsProcess() as xds:
        with pytest.raises(XdsError, match="no answer within 0.2 s .no Envoy connected"):
            xds.apply(resource, timeout=0.2)


def test_the_test_process_never_loads_grpc() -> None:
    # gRPC lives in the xDS server's own process: forks of Envoy from this one stay safe (envoy/xds/process.py).
    import sys

    assert "grpc" not in sys.modules and "envoy_data_plane" not in sys.modules


def test_ecds_bootstrap_passes_envoy_validate() -> None:
    text = bootstrap_for(AUTH, xds="127.0.0.1:18000")
    assert "config_discovery" in text and "wasmfilter_xds" in text
    validate_text(text)


def test_no_request_lost_across_20_swaps_under_load(live: EcdsStack) -> None:
    wasm = Path(live.spec.wasm_path).read_bytes()
    modules = [with_custom_section(wasm, "swap-a"), with_custom_section(wasm, "swap-b")]
    config = dict(live.plugin_config)
    configs = [config, {**config, "identity_header": "x-auth-who"}]

    def swap(i: int):  # alternate: new module, new config
        return live.push(wasm=modules[i % 2]) if i % 2 else live.push(config=configs[(i // 2) % 2])

    report = swaps_under_load(live.url, swap, swaps=20, connections=4, request=ALICE)
    assert len(report.pushes) == 20 and all(p.state == ACKED for p in report.pushes)
    assert report.lost == 0, report.errors[:5]
    assert report.server_errors == 0 and set(report.statuses) == {200}, report.statuses
    assert report.requests > 100
