"""pytest fixtures for unit tests of a compiled filter on the emulator (registered by the wasmfilter pytest plugin):

- `filter_host("filters/auth", config=..., features=[...], **load_options)` builds the crate (cached per session)
  and loads it in a FilterHost (filter.yaml's `answers:` script its upstreams); `filter_host(wasm="path/or/bytes",
  ...)` loads a given module. After the test, every answer the test scripted (`host.answer`, `answers=`) must have
  been used (an unused one fails the test, naming it)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from wasmfilter.emulator.host import FilterHost


@pytest.fixture
def filter_host(pytestconfig: pytest.Config) -> Iterator[Callable[..., FilterHost]]:
    hosts: list[tuple[FilterHost, bool]] = []

    def _load(path: str | Path | None = None, *, wasm: str | Path | bytes | None = None,
              features: tuple[str, ...] | list[str] = (), config: Any = None, **options: Any) -> FilterHost:
        from wasmfilter.harness.pytest_plugin import cached_build
        from wasmfilter.manifest import load_manifest

        own_rules = "answers" in options  # filter.yaml's default answers need not all be used by one test
        if wasm is None:
            manifest = load_manifest(path)
            wasm = cached_build(pytestconfig, manifest.crate_dir, features).wasm
            options.setdefault("name", manifest.name)
            options.setdefault("root_id", manifest.effective_root_id)
            options.setdefault("vm_id", manifest.name)
            options.setdefault("clusters", manifest.upstreams)
            options.setdefault("answers", manifest.answers)
            config = manifest.config if config is None else config
        host = FilterHost.load(wasm, config=config, **options)
        hosts.append((host, own_rules))
        return host

    yield _load
    for host, own_rules in hosts:
        host.check_answers_used(rules=own_rules)
