"""The templates ship inside the package: build the wheel, install it into a fresh venv (not this checkout's),
run `wasmfilter new` there from a directory outside this repository, and compare with the checkout's output."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.conftest import FILTERS, REPO
from wasmfilter.scaffold.plan import plan
from wasmfilter.scaffold.templates import get_template, list_templates

pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_installed_wheel_creates_projects_outside_the_checkout(tmp_path):
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(REPO), "-w", str(wheels)], cwd=tmp_path)
    (wheel,) = wheels.glob("wasmfilter-*.whl")

    names = zipfile.ZipFile(wheel).namelist()
    data = "wasmfilter/_data/"
    assert f"{data}templates/scaffold/Cargo.toml.jinja" in names
    assert f"{data}templates/scaffold/.gitignore.jinja" in names  # dot-files ship too
    assert f"{data}templates/scaffold/.github/workflows/filter.yml.jinja" in names
    assert f"{data}filters/Cargo.toml" in names and f"{data}filters/clippy.toml" in names
    assert f"{data}filters/Cargo.lock" in names
    assert not [n for n in names if "/target/" in n or n.endswith((".wasm", ".rlib"))], "build output shipped"
    available = [t.name for t in list_templates(FILTERS)]
    for template in available:
        assert f"{data}filters/{template}/filter.yaml" in names, f"template {template} is not in the wheel"

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)  # a plain venv: nothing from this checkout
    _run([str(venv / "bin" / "pip"), "install", "-q", "--no-compile", str(wheel)], cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    wasmfilter = str(venv / "bin" / "wasmfilter")

    where = _run([str(venv / "bin" / "python"), "-c", "import wasmfilter, wasmfilter.paths as p; "
                  "print(wasmfilter.__file__); print(p.data_dir('templates')); print(p.data_dir('filters'))"],
                 cwd=elsewhere).stdout.split()
    assert all(str(venv) in w for w in where), where  # the installed copy, not the checkout

    listed = _run([wasmfilter, "new", "--list"], cwd=elsewhere).stdout
    assert [line.split()[0] for line in listed.strip().splitlines()] == available

    _run([wasmfilter, "new", "blank", "x"], cwd=elsewhere)
    project = elsewhere / "x"
    installed = {p.relative_to(project).as_posix(): p.read_bytes() for p in project.rglob("*") if p.is_file()}
    expected = {f.path.as_posix(): f.data for f in plan(get_template("blank", FILTERS), "x")}
    assert installed.keys() == expected.keys()
    # CI installs wasmfilter from where this one came from: pip's PEP 610 record of the wheel file
    workflow = yaml.safe_load(installed[".github/workflows/filter.yml"])
    assert workflow["env"]["WASMFILTER"] == f"wasmfilter @ {wheel.resolve().as_uri()}"
    assert f'pip install "wasmfilter @ {wheel.resolve().as_uri()}"'.encode() in installed["README.md"]
    for rel, content in expected.items():
        if rel in (".github/workflows/filter.yml", "README.md"):
            continue  # they name the install source, which differs from this checkout's
        assert installed[rel] == content, f"{rel} differs between the wheel and the checkout"
