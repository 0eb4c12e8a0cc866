"""Every template, out of the box: `wasmfilter new` in a directory outside this repository, then `build`, `check`,
`test` through a real Envoy, `unittest` (cargo test + clippy), `config`/`validate` and `package`, all through the
real CLI. The generated projects share one CARGO_TARGET_DIR
(in the wasmfilter cache, so later sessions are warm too): each is a standalone crate, and with the build-std
fallback every fresh target directory would rebuild std first."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import FILTERS, run_cli
from wasmfilter import paths
from wasmfilter.scaffold.templates import TEMPLATE_NAMES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def shared_target_dir() -> Path:
    target = paths.cache_dir() / "scaffold-target"
    target.mkdir(parents=True, exist_ok=True)
    return target


@pytest.mark.parametrize("template", TEMPLATE_NAMES)
def test_new_project_builds_checks_and_passes_its_scenarios(template, tmp_path_factory, shared_target_dir):
    if not (FILTERS / template / "filter.yaml").is_file():
        pytest.skip(f"the reference crate filters/{template} does not exist yet")
    work = tmp_path_factory.mktemp(f"new-{template}")
    name = f"my-{template}"
    env = {"CARGO_TARGET_DIR": str(shared_target_dir)}

    created = run_cli("new", template, name, cwd=work)
    assert created.code == 0, created.stderr
    project = work / name

    built = run_cli("build", cwd=project, env=env)
    assert built.code == 0, built.stdout + built.stderr
    wasm = Path(re.search(r"^built (\S+\.wasm)$", built.stdout, re.MULTILINE).group(1))
    # wasmfilter build honours CARGO_TARGET_DIR (it asks cargo metadata for the target directory).
    assert wasm == shared_target_dir / "wasmfilter" / f"{name.replace('-', '_')}.wasm"
    assert not (project / "target").exists()

    checked = run_cli("check", str(wasm), cwd=project, env=env)
    assert checked.code == 0, checked.stdout + checked.stderr
    assert "loads in Envoy" in checked.stdout

    report = project / "report.xml"
    tested = run_cli("test", "--junit", str(report), cwd=project, env=env)
    assert tested.code == 0, tested.stdout + tested.stderr
    suite = ET.parse(report).getroot().find("testsuite")
    assert int(suite.get("tests")) > 0 and suite.get("failures") == "0", ET.tostring(suite).decode()[:2000]
    assert f"{suite.get('tests')} passed, 0 failed" in tested.stdout

    # The workflow's first step: the plain-Rust unit tests and clippy with the project's own lints and clippy.toml.
    unit = run_cli("unittest", cwd=project, env=env)
    assert unit.code == 0, unit.stdout[-5000:] + unit.stderr[-5000:]

    # What the generated README says about running and shipping works as written.
    configured = run_cli("config", "-o", "envoy.yaml", cwd=project, env=env)
    assert configured.code == 0, configured.stdout + configured.stderr
    validated = run_cli("validate", "envoy.yaml", cwd=project, env=env)
    assert validated.code == 0 and "valid" in validated.stdout, validated.stdout + validated.stderr
    packaged = run_cli("package", "-o", f"{name}.tar", cwd=project, env=env)
    assert packaged.code == 0 and (project / f"{name}.tar").is_file(), packaged.stdout + packaged.stderr
