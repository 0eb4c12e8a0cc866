"""`wasmfilter run`, the interactive one: the filter in a real Envoy for a person to try, its log streamed, until
Ctrl-C."""

from __future__ import annotations

import time
from pathlib import Path

from wasmfilter import console
from wasmfilter.build.cargo import build
from wasmfilter.console import out
from wasmfilter.envoy import crash
from wasmfilter.envoy.binary import resolve
from wasmfilter.envoy.protocol import filter_log_lines
from wasmfilter.errors import UsageError
from wasmfilter.harness.stack import BackendOptions, StackSpec, start_stack
from wasmfilter.manifest import load_manifest
from wasmfilter.overrides import plugin_config


def run_interactive(path: str | Path | None = None, *, envoy_version: str | None = None, backend: str = "process",
                    port: int = 0, allow_fail_open: bool = False, duration: float | None = None,
                    options: BackendOptions | None = None, concurrency: int = 2,
                    config_file: str | Path | None = None, sets: list[str] | None = None,
                    debug_info: bool = False) -> None:
    if backend == "emulator":
        raise UsageError("the emulator backend has no listener to send requests to",
                         fix="use `wasmfilter test --backend emulator`; `run` needs --backend process or docker")
    manifest = load_manifest(path)
    config = plugin_config(manifest.config, config_file=config_file, sets=sets)  # bad overrides fail before cargo
    with console.progress("building with cargo") as step:
        result = build(manifest.crate_dir, progress=step, debug_info=debug_info)
    binary = resolve(envoy_version or manifest.envoy_version)
    spec = StackSpec(manifest=manifest, wasm_path=result.wasm, allow_fail_open=allow_fail_open, listener_port=port,
                     plugin_config=config, concurrency=concurrency)
    with start_stack(spec, backend=backend, binary=binary, options=options) as stack:
        out.print(f"{manifest.name}: {result.wasm} ({result.size} bytes) in {binary.describe()} [{backend}]")
        out.print(f"  listener  {stack.url}")
        out.print(f"  admin     {stack.envoy.admin.url}")
        out.print(f"  try       curl -i {stack.url}/")
        out.print("filter logs follow; Ctrl-C stops")
        seen = crashed = 0
        deadline = time.monotonic() + duration if duration else None
        try:
            while deadline is None or time.monotonic() < deadline:
                logs = stack.envoy.logs()
                lines = filter_log_lines(logs)
                for line in lines[seen:]:
                    out.print(line, markup=False)
                seen = len(lines)
                crashes = crash.find_crashes(logs)
                for c in crashes[crashed:]:  # a readable report, not Envoy's raw frames
                    for line in crash.readable(c, result.wasm):
                        out.print(line, markup=False)
                crashed = len(crashes)
                time.sleep(0.2)
        except KeyboardInterrupt:
            out.print("stopping")
    out.print("stopped")
