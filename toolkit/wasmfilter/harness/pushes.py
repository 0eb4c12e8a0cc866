"""Push steps of scenario files (`push:` between cases, docs/scenarios.md): turn one into a new module and/or plugin
config for a running `EcdsStack`, push it, and compare Envoy's answer (ACK, or NACK with its reason) with what the
step expects — one line per difference, like a case."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from wasmfilter.errors import PushRejected, WasmfilterError
from wasmfilter.harness.ecds import KEEP, EcdsStack
from wasmfilter.harness.scenario import Case, ScenarioFile, deep_merge

# features -> the built module (the runner's BuildCache, the pytest plugin's session cache)
Builder = Callable[[tuple[str, ...]], Path]


class Pusher:
    def __init__(self, live: EcdsStack, sfile: ScenarioFile, build: Builder, allowed_features: list[str]):
        self.live = live
        self.sfile = sfile
        self.build = build
        self.allowed_features = allowed_features

    def run(self, case: Case) -> list[str]:
        """Apply CASE's push step; the problems, none when Envoy answered as the step expects."""
        step = case.push
        assert step is not None
        config: Any = KEEP
        if step.config is not None:
            config = step.config
        elif step.config_patch is not None:
            config = deep_merge(self.live.plugin_config, step.config_patch)
        try:
            wasm = self._module(step.module, step.features)
            push = self.live.push(wasm=wasm, config=config)
        except PushRejected as e:
            if step.expect == "ack":
                return [f"push: expected an ACK, Envoy rejected it: {e.problem}"]
            if step.error_contains and step.error_contains not in e.problem:
                return [f"push: NACK reason expected to contain {step.error_contains!r}, got {e.problem!r}"]
            return []
        except WasmfilterError as e:
            return [f"push: {e}"]
        if step.expect == "nack":
            return [f"push: expected a NACK, Envoy accepted version {push.version} ({push.description})"]
        return []

    def _module(self, module: str | None, features: list[str] | None) -> Path | None:
        if module is not None:
            return (self.sfile.path.parent / module).resolve()
        if features is None:
            return None
        unknown = [f for f in features if f not in self.allowed_features]
        if unknown:
            raise WasmfilterError(f"push asks for cargo feature(s) {', '.join(unknown)}, which filter.yaml's "
                                  "test_features does not list", fix="add them to test_features, or drop them")
        return self.build(tuple(sorted(set(features))))
