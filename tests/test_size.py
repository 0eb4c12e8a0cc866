"""`wasmfilter build --opt` (the size build, docs/size.md): each reference filter's optimized module passes the
ABI check and the filter's own scenario files in a real Envoy, never replaces the default build's module, and
stays within the size target where the filter reaches it, and lacks the callback exports its filter.yaml declares
never received (`never_receives`, build/exports.py).

The optimized builds compile in their own target directory (filters/target/size): the first run compiles std and
the dependencies there once; after that an unchanged filter costs a cargo no-op (wasm-opt is skipped when its
input did not change)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import FILTERS
from wasmfilter.build import abi, exports, size
from wasmfilter.build.cargo import BuildResult, build
from wasmfilter.envoy.binary import resolve
from wasmfilter.errors import ManifestError, ToolchainError
from wasmfilter.files import sha256_file
from wasmfilter.harness import scenario
from wasmfilter.harness.runner import run_file, stack_spec
from wasmfilter.harness.stack import start_stack
from wasmfilter.manifest import load_manifest

REFERENCE = ("auth", "ratelimit", "routing")
SIZE_TARGET = 150_000  # bytes: the "<= 150 KB after `wasmfilter build --opt`", read strictly (1 KB = 1000 B)
# Filters whose --opt module reaches SIZE_TARGET (measured in docs/size.md). A filter missing from here does not
# reach it yet; its size is reported there, not asserted as a number it misses.
# ratelimit reaches it since the filters read JSON with wasmfilter_common::json instead of serde_json, auth since it
# dropped B-trees, `core`'s Debug escaping and iterator-collect code for smaller equivalents; blank, the scaffold's
# minimal filter (serde config too), is what every new filter starts from; routing since the callback exports it
# never receives are removed (it was 648 B over, docs/size.md).
MEETS_SIZE_TARGET: tuple[str, ...] = ("blank", "ratelimit", "auth", "routing")
# What Envoy calls on every HTTP filter: never in a callback group, so never removed.
ALWAYS_CALLED = ("_initialize", "memory", "proxy_on_memory_allocate", "proxy_on_context_create", "proxy_on_vm_start",
                 "proxy_on_configure", "proxy_on_request_headers", "proxy_on_response_headers", "proxy_on_done",
                 "proxy_on_log", "proxy_on_delete")

_builds: dict[tuple[str, tuple[str, ...]], BuildResult] = {}


def opt_build(name: str, features: tuple[str, ...] = ()) -> BuildResult:
    key = (name, tuple(sorted(features)))
    if key not in _builds:
        _builds[key] = build(FILTERS / name, features=features, opt=True)
    return _builds[key]


def _scenario_files() -> list:
    params = []
    for name in REFERENCE:
        for path in scenario.discover(load_manifest(FILTERS / name).scenario_dir):
            params.append(pytest.param(name, path, id=f"{name}/{path.stem}"))
    return params


@pytest.mark.parametrize("name", REFERENCE)
def test_opt_module_passes_abi_check_and_keeps_the_default_module(name):
    plain = build(FILTERS / name)
    optimized = opt_build(name)
    assert optimized.optimized and optimized.wasm.name == f"{name}.opt.wasm"
    assert optimized.wasm.parent == plain.wasm.parent
    assert optimized.size < plain.size, (optimized.size, plain.size)
    report = abi.check(optimized.wasm)
    assert report.ok, report
    # The size build (other flags, other target dir, other file) left the default build's module as it was.
    assert optimized.wasm != plain.wasm and sha256_file(plain.wasm) == plain.sha256


@pytest.mark.parametrize("name", MEETS_SIZE_TARGET)
def test_opt_module_meets_size_target(name):
    size = opt_build(name).size
    assert size <= SIZE_TARGET, f"{name}: {size} bytes after --opt > {SIZE_TARGET}"


@pytest.mark.parametrize("name,path", _scenario_files())
def test_opt_module_passes_scenarios(name: str, path: Path):
    manifest = load_manifest(FILTERS / name)
    sfile = scenario.load(path)
    wasm = opt_build(name, tuple(sfile.features)).wasm
    with start_stack(stack_spec(manifest, sfile, wasm), binary=resolve(manifest.envoy_version)) as stack:
        results = run_file(stack, sfile)
    assert results, f"{path} ran no case"
    failed = [f"{r.name}: {'; '.join(r.problems)}\n  filter log: {r.filter_logs}" for r in results if not r.passed]
    assert not failed, "\n".join(failed)


@pytest.mark.parametrize("name", REFERENCE)
def test_opt_module_lacks_the_callbacks_it_never_receives(name):
    # The scenario files above run these same modules in Envoy: what is left is enough for every case.
    declared = load_manifest(FILTERS / name).never_receives
    assert declared, f"{name} declares no never_receives"
    module = opt_build(name).wasm
    names = set(abi.inspect(module).exports)
    stripped = exports.stripped_exports(declared)
    assert not names & set(stripped), sorted(names & set(stripped))
    assert set(ALWAYS_CALLED) <= names, sorted(set(ALWAYS_CALLED) - names)
    # Groups not declared keep their exports (auth's remote JWKS needs its http_call response and tick).
    kept = exports.stripped_exports([g for g in exports.CallbackGroup if g not in declared])
    assert set(kept) <= names, sorted(set(kept) - names)
    # The declaration is part of the cache key: a stamp made without it never passes for this module.
    stamp = module.with_name(module.name + ".stamp").read_text()
    assert all(f"remove-export {export}" in stamp for export in stripped), stamp


def test_never_receives_unknown_group_is_one_line_naming_the_groups(tmp_path):
    (tmp_path / "Cargo.toml").write_text("")
    (tmp_path / "filter.yaml").write_text("name: x\nnever_receives: [grpc, timer]\n")
    with pytest.raises(ManifestError) as err:
        load_manifest(tmp_path)
    message = str(err.value)
    assert "\n" not in message and "never_receives.1" in message, message
    assert all(f"'{group.value}'" in message for group in exports.CallbackGroup), message


def test_stripping_without_wasm_metadce_is_a_toolchain_error(tmp_path, monkeypatch):
    wasm_opt = shutil.which("wasm-opt")
    assert wasm_opt, "binaryen is part of the dev setup"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(wasm_opt, bin_dir / "wasm-opt")
    monkeypatch.setenv("PATH", str(bin_dir))
    src = opt_build("blank").wasm
    with pytest.raises(ToolchainError, match="wasm-metadce"):
        size.wasm_opt_cached(src, tmp_path / "out.wasm", strip=("proxy_on_tick",))
    size.wasm_opt_cached(src, tmp_path / "plain.wasm")  # nothing to remove: no wasm-metadce needed
