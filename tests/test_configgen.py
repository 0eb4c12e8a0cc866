"""Every config the toolkit generates for a reference filter passes `envoy --mode validate`."""

from __future__ import annotations

import pytest
import yaml

from tests.conftest import FILTERS
from wasmfilter.envoy.bootstrap import CLUSTER_HEADER
from wasmfilter.envoy.hardening import SAFE, read_back
from wasmfilter.envoy.standalone import bootstrap_for
from wasmfilter.envoy.validate import validate_text
from wasmfilter.harness.pytest_plugin import cached_build

REFERENCE = sorted(p.parent.name for p in FILTERS.glob("*/filter.yaml"))


@pytest.mark.parametrize("name", REFERENCE)
def test_generated_bootstrap_validates(name, pytestconfig):
    wasm = cached_build(pytestconfig, FILTERS / name).wasm
    text = bootstrap_for(FILTERS / name, wasm=wasm, port=10000, admin_port=9901, upstream="127.0.0.1:8000")
    config = yaml.safe_load(text)
    listener = config["static_resources"]["listeners"][0]
    assert listener["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 10000}
    assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    assert read_back(config, CLUSTER_HEADER) == SAFE  # docs/security.md
    assert "OK" in validate_text(text)
