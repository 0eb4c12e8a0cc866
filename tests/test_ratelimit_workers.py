"""The rate-limit filter across Envoy worker threads (real Envoy, real builds): exact limits with 4 workers,
a negative control proving the test can tell per-worker buckets apart, the idle-key sweep run by several
workers at once, and invalid configurations refused with the field named."""

from __future__ import annotations

import re
import threading
from collections import Counter

import pytest

from tests.conftest import FILTERS
from wasmfilter.envoy.protocol import wait_until
from wasmfilter.errors import EnvoyStartError
from wasmfilter.harness import scenario
from wasmfilter.harness.client import Client

RATELIMIT = FILTERS / "ratelimit"
LIMIT = 40
CLIENTS = 8
REQUESTS = 200
# One token per hour: refill cannot change the count during the test.
EXACT_CONFIG = {"default_rule": {"name": "global", "rate": 1, "unit": "hour", "burst": LIMIT}}


UPSTREAM_CONNECT_FAILED = "upstream connect error"


def burst(url: str, path: str = "/burst") -> Counter[int]:
    """REQUESTS requests from CLIENTS threads, each on its own kept-alive connection, started together.
    A request the filter let through but whose upstream connect timed out (the in-process echo upstream can
    be slow to accept a burst of connections on a loaded machine) counts as allowed (status 0 here)."""
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    start = threading.Barrier(CLIENTS)
    errors: list[BaseException] = []

    def client() -> None:
        c = Client(url)
        try:
            start.wait()
            got = []
            for _ in range(REQUESTS // CLIENTS):
                r = c.send(scenario.Request(path=path))
                passed_filter = r.status == 503 and UPSTREAM_CONNECT_FAILED in r.body.decode(errors="replace")
                got.append(0 if passed_filter else r.status)
            with lock:
                statuses.update(got)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            c.close()

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return statuses


def workers_used(stack) -> int:
    """How many Envoy workers accepted downstream connections (per-worker listener stats)."""
    stats = stack.envoy.admin.stats(r"worker_\d+\.downstream_cx_total")
    return sum(1 for name, value in stats.items() if re.search(r"\.worker_\d+\.downstream_cx_total$", name) and value)


def test_exact_limit_across_four_workers(envoy_stack):
    stack = envoy_stack(RATELIMIT, plugin_config=EXACT_CONFIG, concurrency=4)
    statuses = burst(stack.url)
    assert workers_used(stack) >= 2, "the clients must be spread over several workers for this test to mean anything"
    assert statuses[429] == REQUESTS - LIMIT, statuses
    assert statuses[200] + statuses[0] == LIMIT, statuses
    stats = stack.envoy.admin.stats("wasmfilter_ratelimit")
    assert stats["wasmcustom.wasmfilter_ratelimit.allowed"] == LIMIT
    assert stats["wasmcustom.wasmfilter_ratelimit.limited"] == REQUESTS - LIMIT
    assert stats["wasmcustom.wasmfilter_ratelimit.cas_exhausted"] == 0


def test_per_worker_buckets_would_fail_the_exact_test(envoy_stack):
    """Negative control: the same load against the known-wrong design (buckets in each worker's VM) lets
    more than the limit through, so the exact test above can fail."""
    stack = envoy_stack(RATELIMIT, plugin_config=EXACT_CONFIG, concurrency=4, features=["test-local-buckets"])
    statuses = burst(stack.url)
    assert workers_used(stack) >= 2
    assert statuses[200] + statuses[0] > LIMIT, statuses


def test_idle_keys_are_swept_once_by_concurrent_workers(envoy_stack):
    config = {"default_rule": {"name": "u", "key": [{"source": "header", "name": "x-user"}], "rate": 10,
                               "burst": 1}, "idle_timeout_ms": 200, "sweep_interval_ms": 20, "max_keys": 64}
    stack = envoy_stack(RATELIMIT, plugin_config=config, concurrency=4)
    client = Client(stack.url)
    users = [f"user{i}" for i in range(6)]
    for user in users:
        assert client.send(scenario.Request(path="/", headers={"x-user": user})).status == 200
    client.close()

    def swept() -> int:
        return stack.envoy.admin.stats("wasmfilter_ratelimit.swept").get("wasmcustom.wasmfilter_ratelimit.swept", 0)

    assert wait_until(lambda: swept() >= len(users), timeout=10), f"swept {swept()} of {len(users)} idle keys"
    # Four workers sweep every 20 ms; compare-and-swap makes each removal count once. Wait for one more key's
    # removal (by then every worker has swept the first keys' groups many times) and check nothing was
    # counted twice.
    client = Client(stack.url)
    assert client.send(scenario.Request(path="/", headers={"x-user": "late"})).status == 200
    client.close()
    assert wait_until(lambda: swept() >= len(users) + 1, timeout=10)
    assert swept() == len(users) + 1


def test_shadow_log_line_and_configurable_log_level(envoy_stack):
    rule = {"name": "trial", "rate": 1, "unit": "hour", "burst": 1}
    quiet = envoy_stack(RATELIMIT, plugin_config={"default_rule": rule, "shadow_mode": True}, concurrency=1)
    loud = envoy_stack(RATELIMIT, plugin_config={"default_rule": rule, "log_level": "debug"}, concurrency=1)
    for stack in (quiet, loud):
        client = Client(stack.url)
        statuses = [client.send(scenario.Request(path="/")).status for _ in range(2)]
        client.close()
        assert statuses == ([200, 200] if stack is quiet else [200, 429])

    def logged(stack, text: str) -> bool:
        return any(text in line for line in stack.envoy.filter_logs())

    assert wait_until(lambda: logged(quiet, "shadow mode: rule trial would limit this request"), timeout=15)
    assert wait_until(lambda: logged(loud, "rate limited by rule trial"), timeout=15)
    assert logged(loud, "allowed by rule trial")
    # At the default level (info) the per-request debug lines are not written.
    assert not logged(quiet, "allowed by rule")


@pytest.mark.parametrize("config, field", [
    ({"default_rule": {"name": "a", "rate": 0}}, "field `default_rule.rate`"),
    ({"rules": [{"name": "a", "rate": 1, "burst": 0}]}, "field `rules[0].burst`"),
    ({"default_rule": {"name": "a", "rate": 1, "key": [{"source": "cookie"}]}}, "field `default_rule.key[0].source`"),
    ({"default_rule": {"name": "a", "rate": 1}, "max_keyz": 5}, "unknown field `max_keyz`"),
    ({"default_rule": {"name": "a", "rate": 1, "unit": "week"}}, "field `default_rule.unit`: unknown variant `week`"),
])
def test_invalid_config_is_refused_naming_the_field(envoy_stack, config, field):
    with pytest.raises(EnvoyStartError) as err:
        envoy_stack(RATELIMIT, plugin_config=config, concurrency=1)
    assert field in (err.value.detail or ""), err.value.detail
