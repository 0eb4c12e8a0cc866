"""Every bootstrap the toolkit generates (`config`, `run`/`test`/scenario stacks on both backends, `compose`, the bench
and its native baselines) carries the safe request hardening of envoy/hardening.py; a scenario file can relax it
only explicitly, and a bad setting is a one-line error. (test_configgen.py validates each filter's `config` output
with Envoy; the scenario files prove the behaviour through a real Envoy.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import FILTERS
from wasmfilter.bench.definition import all_definitions, load_definition
from wasmfilter.bench.runner import _bootstrap, variants_of
from wasmfilter.envoy.bootstrap import CLUSTER_HEADER, Bootstrap, Upstream
from wasmfilter.envoy.hardening import SAFE, RequestHardening, read_back
from wasmfilter.envoy.standalone import bootstrap_for
from wasmfilter.envoy.validate import validate_text
from wasmfilter.errors import ScenarioError
from wasmfilter.harness import compose, scenario
from wasmfilter.harness.docker import container_bootstrap
from wasmfilter.harness.runner import stack_spec
from wasmfilter.manifest import load_manifest

REPO = FILTERS.parent
REFERENCE = sorted(p.parent.name for p in FILTERS.glob("*/filter.yaml"))
RELAXED = RequestHardening(normalize_path=False, merge_slashes=False, path_with_escaped_slashes_action="KEEP_UNCHANGED",
                           headers_with_underscores_action="ALLOW", strip_cluster_header=False)


def hardening(text: str) -> RequestHardening:
    return read_back(yaml.safe_load(text), CLUSTER_HEADER)


def test_the_safe_settings_are_the_ones_docs_security_names():
    expected = RequestHardening(normalize_path=True, merge_slashes=True,
                                path_with_escaped_slashes_action="REJECT_REQUEST",
                                headers_with_underscores_action="REJECT_REQUEST", strip_cluster_header=True)
    assert expected == SAFE
    doc = (REPO / "docs" / "security.md").read_text()
    for setting in ["normalize_path: true", "merge_slashes: true", "path_with_escaped_slashes_action: REJECT_REQUEST",
                    "headers_with_underscores_action: REJECT_REQUEST", "early_header_mutation_extensions"]:
        assert setting in doc, setting


@pytest.mark.parametrize("name", REFERENCE)
def test_config_command_output_is_hardened(name, tmp_path):
    wasm = tmp_path / "filter.wasm"
    wasm.write_bytes(b"\0asm")
    assert hardening(bootstrap_for(FILTERS / name, wasm=wasm)) == SAFE


def test_scenario_and_run_stacks_are_hardened_on_both_backends(tmp_path):
    manifest = load_manifest(FILTERS / "auth")
    plain = scenario.ScenarioFile(cases=[scenario.Case(name="c", request=scenario.Request(), expect=scenario.Expect())])
    spec = stack_spec(manifest, plain, tmp_path / "x.wasm")
    assert spec.hardening == SAFE
    up = [Upstream("default", "127.0.0.1", 9)]
    assert hardening(Bootstrap(upstreams=up, hardening=spec.hardening).render()) == SAFE
    assert hardening(container_bootstrap(up, [])) == SAFE
    assert hardening(container_bootstrap(up, [], RELAXED)) == RELAXED


def test_compose_configs_are_hardened():
    for f in compose.compose_filters(REPO):
        assert hardening(compose.envoy_config(f)) == SAFE, f.manifest.name
    for committed in sorted((REPO / "envoy-configs").glob("*.yaml")):
        assert hardening(committed.read_text()) == SAFE, committed.name


def test_bench_configs_and_native_baselines_are_hardened(tmp_path):
    checked = 0
    for file in all_definitions(REPO / "benchmarks"):
        definition = load_definition(file)
        for variant in variants_of(definition):
            text = _bootstrap(definition, variant, definition.scenarios[0], tmp_path / "x.wasm")
            assert hardening(text) == SAFE, f"{file.name}: {variant.name}"
            checked += 1
    assert checked >= 8  # baseline, wasm and the natives of four bench files


def test_a_scenario_file_relaxes_it_only_explicitly(tmp_path):
    text = Bootstrap(upstreams=[Upstream("default", "127.0.0.1", 9)], hardening=RELAXED).render()
    assert hardening(text) == RELAXED
    assert "early_header_mutation_extensions" not in text
    assert "OK" in validate_text(text)
    sfile = scenario.load(FILTERS / "auth" / "scenarios" / "path_differentials.yaml")
    assert sfile.request_hardening.normalize_path is False
    assert sfile.request_hardening.strip_cluster_header is True


@pytest.mark.parametrize(("setting", "message"), [
    ("{normalize_paths: false}", "normalize_paths"),
    ("{path_with_escaped_slashes_action: DROP}", "path_with_escaped_slashes_action"),
    ("{headers_with_underscores_action: allow}", "headers_with_underscores_action"),
])
def test_a_bad_hardening_setting_is_a_one_line_error(tmp_path: Path, setting: str, message: str):
    file = tmp_path / "s.yaml"
    case = "{name: c, request: {path: /}, expect: {status: 200}}"
    file.write_text(f"request_hardening: {setting}\ncases: [{case}]\n")
    with pytest.raises(ScenarioError) as e:
        scenario.load(file)
    assert message in str(e.value) and "\n" not in str(e.value)


# What docs/security.md's table says Envoy does before any filter, checked with raw request lines (no client
# normalisation) against a real Envoy and the echo upstream: request target → path the upstream got, or 400.
ENVOY_TABLE = [
    ("/admin/../public", "/public"), ("/admin/%2e%2e/public", "/public"), ("/admin/x\\..\\..\\public", "/public"),
    ("/admin/..;/public", "/public"), ("/a/..;x/b", "/b"), ("/%61dmin", "/admin"), ("/A/%7e", "/A/~"),
    ("/..", "/"), ("/%2e%2e/x", "/x"), ("/a//b", "/a/b"),
    ("/admin/..%2fpublic", 400), ("/x%5cy", 400), ("/A%2FB", 400), ("/healthz%00/admin", 400), ("/a\x01", 400),
    ("/a#frag", 400),
    ("/a;x/b", "/a;x/b"), ("/healthz;jsessionid=1", "/healthz;jsessionid=1"), ("/a/%2e%2e;/b", "/a/..;/b"),
    ("/a%3bb", "/a%3bb"), ("/%c0%ae%c0%ae/x", "/%c0%ae%c0%ae/x"), ("/healthz/%zz", "/healthz/%zz"),
    ("/x/%252e%252e/y", "/x/%252e%252e/y"), ("/caf%c3%a9", "/caf%c3%a9"), ("/a+b", "/a+b"),
]


def _raw(port: int, target: str, headers: bytes = b"") -> tuple[int, dict | None]:
    import json
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET " + target.encode() + b" HTTP/1.1\r\nhost: x\r\n" + headers + b"connection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body) if status == 200 else None


def test_envoy_does_what_docs_security_says():
    from wasmfilter.envoy.process import EnvoyProcess
    from wasmfilter.harness.upstream import EchoUpstream

    with EchoUpstream("default") as default, EchoUpstream("other") as other:
        ups = [Upstream("default", default.host, default.port), Upstream("other", other.host, other.port)]
        with EnvoyProcess(Bootstrap(upstreams=ups).render()) as envoy:
            port = envoy.listener_port
            assert port is not None
            for target, want in ENVOY_TABLE:
                status, echo = _raw(port, target)
                got = echo["path"] if echo else status
                assert got == want, f"{target!r}: {got!r}"
            status, echo = _raw(port, "/p", b"x-wasmfilter-cluster: other\r\n")
            assert echo is not None and echo["upstream"] == "default"
            assert all(name != CLUSTER_HEADER for name, _ in echo["headers"])
            for name in (b"x_auth_identity", b"x_wasmfilter_cluster"):
                assert _raw(port, "/p", name + b": root\r\n")[0] == 400, name
