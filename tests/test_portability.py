"""Portability: every reference filter's scenario files on every Envoy of `all` (the pinned one runs in the rest of
the suite, through the pytest plugin), as one matrix per filter — the README's "Portability" table."""

from __future__ import annotations

import pytest

from tests.conftest import FILTERS, run_cli
from wasmfilter.envoy.versions import pick_versions

pytestmark = pytest.mark.slow

# blank runs on every version in tests/test_envoy_matrix.py
REFERENCE = ["auth", "ratelimit", "routing"]


@pytest.mark.parametrize("name", REFERENCE)
def test_reference_filter_passes_on_every_version(name, tmp_path):
    others = [p.version for p in pick_versions(["all"])[:-1]]  # the pinned (last) one runs elsewhere
    assert len(others) == 4 and all(others), others
    result = run_cli("test", str(FILTERS / name), "--envoy-version", ",".join(str(v) for v in others), "--jobs", "2",
                     "--junit", str(tmp_path))
    assert result.code == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"envoy-{v}.xml" for v in others)
