"""A bad auth configuration is refused by a real Envoy, and the reason names the offending field.

The filter's `on_configure` logs `invalid auth configuration: ... field ...` and returns false; Envoy then refuses
the plugin. Checked with `envoy --mode validate` (cheap) and once with a real start.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from wasmfilter.envoy.bootstrap import Bootstrap, Upstream, WasmFilter
from wasmfilter.envoy.validate import validate_text
from wasmfilter.errors import ConfigInvalidError, EnvoyStartError
from wasmfilter.manifest import load_manifest

FILTER_DIR = Path(__file__).resolve().parent.parent
FIXTURES = json.loads((FILTER_DIR / "testdata" / "jwt_fixtures.json").read_text())


@pytest.fixture(scope="module")
def manifest():
    return load_manifest(FILTER_DIR)


@pytest.fixture
def wasm(manifest, wasmfilter_build) -> Path:
    return wasmfilter_build(FILTER_DIR).wasm


def bootstrap(manifest, wasm: Path, plugin_config: dict) -> str:
    fragment = WasmFilter.from_manifest(manifest, wasm, plugin_config=plugin_config).fragment()
    return Bootstrap(upstreams=[Upstream("default", "127.0.0.1", 9)], http_filters=[fragment]).render()


def full_config(manifest) -> dict:
    config = copy.deepcopy(manifest.config)
    config["jwt"] = copy.deepcopy(FIXTURES["config"]["jwt"])
    return config


def test_good_config_validates(manifest, wasm):
    validate_text(bootstrap(manifest, wasm, full_config(manifest)))


def _with(config: dict, path: list, value) -> dict:
    target = config
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return config


@pytest.mark.parametrize(("path", "value", "field"), [
    (["key_headr"], "x-key", "key_headr"),
    (["jwt", "isuer"], "https://issuer.example", "isuer"),
    (["rules"], [{"prefix": "/admin", "require": "any", "method": ["GET"]}], "method"),
    (["jwt", "jwks", "keys", 1, "d"], "AQAB", "jwt.jwks.keys[1].d"),
    (["jwt", "jwks", "keys", 0, "alg"], "RS256", "jwt.jwks.keys[0].alg"),
    (["rules"], [{"prefix": "/a/../admin", "require": "any"}], "rules[0].prefix"),
])
def test_envoy_refuses_bad_config_naming_the_field(manifest, wasm, path, value, field):
    config = _with(full_config(manifest), path, value)
    with pytest.raises(ConfigInvalidError) as err:
        validate_text(bootstrap(manifest, wasm, config))
    assert field in str(err.value), str(err.value)
    # Never echo secret material into the error.
    assert FIXTURES["config"]["jwt"]["jwks"]["keys"][0]["k"] not in str(err.value) + (err.value.detail or "")


def test_envoy_start_fails_naming_the_field(manifest, envoy_stack):
    config = copy.deepcopy(manifest.config)
    config["identity_headr"] = "x-who"
    with pytest.raises(EnvoyStartError) as err:
        envoy_stack(FILTER_DIR, plugin_config=config)
    assert "unknown field `identity_headr`" in str(err.value), str(err.value)
