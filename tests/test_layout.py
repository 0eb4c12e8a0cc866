"""The package's house rules, checked: a folder per stage with a docstring saying what it owns, one reader of the
WASMFILTER_* variables, no environment writes, signal handlers only in the CLI (and the reaper's own main), and
imports without side effects."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "toolkit" / "wasmfilter"
STAGES = ("build", "envoy", "harness", "ship", "bench", "scaffold", "emulator")


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "_data" not in p.parts)


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_is_a_folder_that_says_what_it_owns(stage):
    init = PACKAGE / stage / "__init__.py"
    assert init.is_file(), f"{stage}/ is not a package"
    doc = ast.get_docstring(_tree(init))
    assert doc and len(doc.split()) >= 8, f"{stage}/__init__.py needs a paragraph saying what the stage owns"


def test_every_module_starts_with_a_docstring():
    missing = [str(p.relative_to(PACKAGE)) for p in _modules()
               if p.name != "__init__.py" and not ast.get_docstring(_tree(p))]
    assert not missing, f"modules without a docstring saying what they own: {missing}"


def _calls(path: Path) -> list[tuple[str, ast.Call]]:
    out = []
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Call):
            out.append((ast.unparse(node.func), node))
    return out


def test_only_settings_reads_wasmfilter_variables():
    readers = []
    for path in _modules():
        if path == PACKAGE / "settings.py":
            continue
        for node in ast.walk(_tree(path)):
            read = None
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("os.getenv", "os.environ.get") and node.args:
                read = node.args[0]
            elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
                read = node.slice
            if read is not None and not (isinstance(read, ast.Constant) and str(read.value).startswith(
                    ("DOCKER_", "XDG_", "HOME", "PATH"))):
                readers.append(f"{path.relative_to(PACKAGE)}: {ast.unparse(node)}")
    assert not readers, f"environment read outside settings.py (WASMFILTER_* belong there): {readers}"


def test_the_toolkit_never_writes_the_environment():
    writers = []
    for path in _modules():
        for node in ast.walk(_tree(path)):
            if isinstance(node, (ast.Assign, ast.AugAssign, ast.Delete)):
                targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
                writers += [f"{path.relative_to(PACKAGE)}: {ast.unparse(t)}" for t in targets
                            if isinstance(t, ast.Subscript) and ast.unparse(t.value) == "os.environ"]
        writers += [f"{path.relative_to(PACKAGE)}: {name}" for name, _ in _calls(path)
                    if name in ("os.environ.update", "os.environ.setdefault", "os.environ.pop", "os.putenv",
                                "os.unsetenv")]
    assert not writers, f"environment writes in the toolkit: {writers}"


def test_signal_handlers_only_in_the_cli_and_the_reaper_program():
    allowed = {PACKAGE / "cli.py", PACKAGE / "harness" / "reaper.py"}
    found = [f"{p.relative_to(PACKAGE)}" for p in _modules() if p not in allowed
             for name, _ in _calls(p) if name == "signal.signal"]
    assert not found, f"signal handlers installed in library code: {found}"


IMPORT_ALL = """
import importlib, json, os, pkgutil, signal, sys, threading
import wasmfilter
before = (dict(os.environ), {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)},
          threading.active_count())
names = [m.name for m in pkgutil.walk_packages(wasmfilter.__path__, "wasmfilter.")]
for name in names:
    importlib.import_module(name)
after = (dict(os.environ), {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)},
         threading.active_count())
print(json.dumps({"modules": len(names), "environ": before[0] == after[0], "signals": before[1] == after[1],
                  "threads": before[2] == after[2]}))
"""


def test_importing_every_module_changes_nothing():
    out = subprocess.run([sys.executable, "-c", IMPORT_ALL], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["modules"] >= 40
    assert result == {**result, "environ": True, "signals": True, "threads": True}, result


def test_readme_lists_every_variable():
    from wasmfilter.settings import VARIABLES

    readme = (REPO / "README.md").read_text()
    missing = [name for name in VARIABLES if f"`{name}`" not in readme]
    assert not missing, f"README's Environment table lacks {missing}"


def test_settings_are_read_from_the_environment_given():
    from wasmfilter.settings import Settings

    s = Settings.from_env({"WASMFILTER_ENVOY_IMAGE": "img:1", "WASMFILTER_BACKENDS": "process, docker,",
                           "WASMFILTER_KEEP_WORKDIR": "1", "XDG_CACHE_HOME": "/x", "WASMFILTER_AUTH_PORT": "1"})
    assert s.envoy_image == "img:1" and s.backends == ("process", "docker") and s.keep_workdir
    assert s.cache_dir == Path("/x/wasmfilter") and ("WASMFILTER_AUTH_PORT", "1") in s.compose_env
    empty = Settings.from_env({"HOME": "/h"})
    assert empty.envoy_image is None and empty.backends == ("process",) and not empty.keep_workdir


def test_cli_start_up_loads_no_heavy_library():
    # Start-up cost is measured in docs/benchmarks.md; this keeps the reason it is low: each command imports what it
    # needs when it runs, so `wasmfilter --help` never loads wasmtime, docker, pydantic, jinja2, requests or yaml.
    code = ("import sys, wasmfilter.cli; print(','.join(m for m in ('wasmtime', 'docker', 'pydantic', 'jinja2', "
            "'requests', 'yaml', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"`import wasmfilter.cli` loads {out.stdout.strip()}"
