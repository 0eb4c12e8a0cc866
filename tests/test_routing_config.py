"""The routing filter's configuration through a real Envoy: invalid configs are refused with the field named
in the filter's error log, and the log level is configurable."""

from __future__ import annotations

import pytest

from tests.conftest import FILTERS
from wasmfilter.errors import EnvoyStartError

ROUTING = FILTERS / "routing"
SPLIT = {"targets": [{"cluster": "stable", "weight": 90}, {"cluster": "canary", "weight": 20}]}


@pytest.mark.parametrize("config, field", [
    ({"rules": [{"name": "r", "match": {"path_regex": "/users/(["}, "cluster": "canary"}]},
     "field `rules[0].match.path_regex` is not a valid regex"),
    ({"rules": [{"name": "r", "split": SPLIT}]}, "field `rules[0].split.targets` weights must sum to 100"),
    ({"clusters": ["stable"], "rules": [{"name": "r", "cluster": "canary"}]},
     "field `rules[0].cluster` names unknown cluster `canary`"),
    ({"rules": [], "default_clustr": "stable"}, "unknown field `default_clustr`"),
], ids=["bad-regex", "weights", "unknown-cluster", "unknown-field"])
def test_invalid_config_is_refused_naming_the_field(envoy_stack, config, field):
    with pytest.raises(EnvoyStartError) as err:
        envoy_stack(ROUTING, plugin_config=config, concurrency=1)
    assert field in (err.value.detail or ""), err.value.detail


@pytest.mark.parametrize("level, shown", [("info", True), ("error", False)])
def test_log_level_is_configurable(envoy_stack, level, shown):
    stack = envoy_stack(ROUTING, plugin_config={"log_level": level}, concurrency=1)
    assert ("routing configured: 0 rule(s)" in stack.envoy.logs()) is shown
