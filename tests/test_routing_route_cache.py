"""What Envoy 1.40 needs for the routing filter's header changes to take effect (real Envoy, real clusters).

Envoy computes the route before the HTTP filters run and caches it; the route table reads the cluster from
x-wasmfilter-cluster. Control: a NATIVE header_mutation filter sets that header to `canary` without clearing the
cache, and the request still ends at `stable` (the cached route). Then: the same request where the Wasm filter
mutates a request header (with its `clear_route_cache` foreign-function call switched off) ends at `canary`, so a
Wasm request-header mutation clears the route cache by itself. The foreign function exists in Envoy 1.40 and
succeeds (no warning logged when it is on)."""

from __future__ import annotations

import pytest

from tests.conftest import FILTERS
from wasmfilter.harness import scenario
from wasmfilter.harness.client import Client

ROUTING = FILTERS / "routing"

# A native filter placed before the Wasm filter; it never clears the route cache.
SET_CLUSTER_NATIVELY = """\
- name: envoy.filters.http.header_mutation
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation
    mutations:
      request_mutations:
      - append:
          header: {key: x-wasmfilter-cluster, value: canary}
          append_action: OVERWRITE_IF_EXISTS_OR_ADD
"""


def config(clear: bool) -> dict:
    # The filter writes its own cluster choice to another header, so it leaves x-wasmfilter-cluster alone.
    return {
        "cluster_header": "x-filter-choice",
        "clear_route_cache": clear,
        "rules": [{"name": "touch", "match": {"path_prefix": "/touch"}, "cluster": "legacy",
                   "set_headers": {"x-touched": "1"}}],
    }


def upstream_of(url: str, path: str) -> dict:
    client = Client(url)
    try:
        echo = client.send(scenario.Request(path=path)).echo()
    finally:
        client.close()
    assert echo is not None, f"{path}: no upstream answered"
    return echo


@pytest.mark.parametrize("clear", [False, True], ids=["no-foreign-call", "foreign-call"])
def test_route_is_recomputed_only_after_a_wasm_header_mutation(envoy_stack, clear):
    stack = envoy_stack(ROUTING, plugin_config=config(clear), concurrency=1,
                        extra_http_filters=[SET_CLUSTER_NATIVELY])
    # Control: the header says canary, but nothing cleared the cached route -> stable.
    plain = upstream_of(stack.url, "/plain")
    assert ["x-wasmfilter-cluster", "canary"] in plain["headers"]
    assert plain["upstream"] == "stable"
    # The Wasm filter changes request headers -> Envoy re-routes on the current x-wasmfilter-cluster.
    touched = upstream_of(stack.url, "/touch")
    assert ["x-touched", "1"] in touched["headers"]
    assert touched["upstream"] == "canary"
    if clear:
        assert "clear_route_cache foreign function failed" not in stack.envoy.logs()
