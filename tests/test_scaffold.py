"""`wasmfilter new`: generated files equal the reference crates except the documented renames; bad input is a
one-line error that writes nothing; a failure half-way leaves nothing behind. (Builds: test_scaffold_build.py.)"""

from __future__ import annotations

import os
import re
import shutil
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.conftest import FILTERS, REPO, assert_one_line_error, run_cli
from wasmfilter.errors import TemplateError, UsageError, WasmfilterError
from wasmfilter.manifest import load_manifest
from wasmfilter.scaffold.localize import localize
from wasmfilter.scaffold.project import new
from wasmfilter.scaffold.templates import list_templates

TEMPLATES_DIR = REPO / "templates"
AVAILABLE = [t.name for t in list_templates(FILTERS)]
# Files every project gets from templates/scaffold (rendered) besides the reference crate's own files.
SCAFFOLD_FILES = {"Cargo.toml", "Cargo.lock", "README.md", "clippy.toml", ".gitignore", ".github/workflows/filter.yml"}
NEW = "acme-gate"  # hyphenated on purpose: crate ident and metric prefix become acme_gate


def reference_files(template: str) -> dict[str, bytes]:
    """What `new` copies, spelled out independently of wasmfilter.scaffold: everything in the crate except Cargo.toml,
    Cargo.lock, target/, dot-files and README.md (README.md is embedded into the rendered README)."""
    crate = FILTERS / template
    out = {}
    for path in sorted(crate.rglob("*")):
        rel = path.relative_to(crate)
        if not path.is_file() or rel.parts[0] in {"Cargo.toml", "Cargo.lock", "target", "README.md"}:
            continue
        if any(p.startswith(".") or p == "__pycache__" for p in rel.parts) or path.suffix == ".pyc":
            continue
        out[rel.as_posix()] = path.read_bytes()
    return out


def vendored_common() -> dict[str, bytes]:
    """filters/common, the shared crate every project vendors as common/: all of it, Cargo.toml included."""
    crate = FILTERS / "common"
    out = {}
    for path in sorted(crate.rglob("*")):
        rel = path.relative_to(crate)
        if not path.is_file() or rel.parts[0] in {"target", "Cargo.lock"} or any(p.startswith(".") for p in rel.parts):
            continue
        out[f"common/{rel.as_posix()}"] = path.read_bytes()
    return out


def expected_copy(template: str, rel: str, data: bytes, name: str) -> bytes:
    """The documented substitutions (docs/scaffolding.md), and nothing else."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return data
    if rel == "filter.yaml":
        text = re.sub(rf"(?m)^name: {template}$", f"name: {name}", text)
        text = re.sub(rf"(?m)^root_id: {template}$", f"root_id: {name}", text)
    text = re.sub(rf"\bwasmfilter_{template}\b", name.replace("-", "_"), text)
    return text.encode()


def generated(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_templates_are_the_reference_crates():
    assert AVAILABLE[:2] == ["blank", "auth"], AVAILABLE
    for t in list_templates(FILTERS):
        assert t.crate_dir == FILTERS / t.name
        assert t.description == tomllib.loads((t.crate_dir / "Cargo.toml").read_text())["package"]["description"]


def test_list_shows_each_template_with_a_one_line_description():
    result = run_cli("new", "--list")
    assert result.code == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == AVAILABLE
    for line, t in zip(lines, list_templates(FILTERS)):
        assert line.split(None, 1)[1] == t.description


@pytest.mark.parametrize("template", AVAILABLE)
def test_generated_project_is_the_reference_plus_documented_renames(template, tmp_path):
    dest = tmp_path / NEW
    result = new(template, NEW, dest)
    files = generated(dest)
    ref = reference_files(template)
    extra = {f"examples/{NEW}.plugin-config.json"}
    common = vendored_common()
    assert "common/Cargo.toml" in common and "common/src/lib.rs" in common
    assert set(files) == set(ref) | SCAFFOLD_FILES | extra | set(common)
    assert {f.path.as_posix() for f in result.files} == set(files)
    for rel, data in ref.items():
        assert files[rel] == expected_copy(template, rel, data, NEW), f"{rel} drifted from filters/{template}/{rel}"
    # The shared crate is vendored exactly (no renames), and the project depends on that copy by path.
    for rel, data in common.items():
        assert files[rel] == data, f"{rel} drifted from filters/{rel}"
    cargo_toml = tomllib.loads(files["Cargo.toml"].decode())
    assert cargo_toml["dependencies"]["wasmfilter-common"] == {"path": "common"}
    def inherits(table: object) -> bool:  # any `x.workspace = true` / `x = { workspace = true }`
        return isinstance(table, dict) and ("workspace" in table or any(inherits(v) for v in table.values()))
    assert not inherits(tomllib.loads(files["common/Cargo.toml"].decode())), "common/Cargo.toml must be standalone"
    # The renames really happened: no reference name or metric prefix is left where the new name belongs.
    manifest = load_manifest(dest)
    assert manifest.name == NEW and manifest.effective_root_id == NEW
    for rel, data in files.items():
        assert f"wasmfilter_{template}".encode() not in data, rel
    assert files["clippy.toml"] == (FILTERS / "clippy.toml").read_bytes()
    assert files["Cargo.lock"] == (FILTERS / "Cargo.lock").read_bytes()  # the versions the reference is tested with
    # The plugin configuration example is filter.yaml's config, as JSON.
    assert yaml.safe_load(files[f"examples/{NEW}.plugin-config.json"]) == manifest.config
    readme = files["README.md"].decode()
    for section in ("## Build", "## Test", "## Run", "## Ship", "wasmfilter build", "wasmfilter test"):
        assert section in readme
    if (FILTERS / template / "README.md").is_file():
        body = (FILTERS / template / "README.md").read_text().split("\n", 1)[1].strip()
        # plus the checkout's commands made the project's own (scaffold/localize.py)
        assert localize(expected_copy(template, "README.md", body.encode(), NEW).decode(), template,
                        NEW.replace("-", "_")) in readme


@pytest.mark.parametrize("template", AVAILABLE)
def test_cargo_toml_spells_out_what_the_workspace_gives(template, tmp_path):
    new(template, NEW, tmp_path / NEW)
    cargo = tomllib.loads((tmp_path / NEW / "Cargo.toml").read_text())
    workspace = tomllib.loads((FILTERS / "Cargo.toml").read_text())
    reference = tomllib.loads((FILTERS / template / "Cargo.toml").read_text())
    assert cargo["package"]["name"] == NEW
    assert cargo["package"]["edition"] == "2024"
    assert cargo["workspace"] == {}  # standalone, even when created inside another workspace
    assert cargo["dependencies"]["proxy-wasm"] == workspace["workspace"]["dependencies"]["proxy-wasm"] == "=0.2.5"
    assert set(cargo["dependencies"]) == set(reference["dependencies"])
    for dep, spec in cargo["dependencies"].items():
        own = reference["dependencies"][dep]
        if not (isinstance(own, dict) and own.get("workspace")):
            assert spec == own, dep  # the crate's own dependency, as written
            continue
        ws = workspace["workspace"]["dependencies"][dep]
        ws = dict(ws) if isinstance(ws, dict) else {"version": ws}
        extra = {k: v for k, v in own.items() if k != "workspace"}
        ws["features"] = ws.get("features", []) + extra.pop("features", [])
        expected = {**ws, **extra} if ws["features"] else {k: v for k, v in {**ws, **extra}.items() if k != "features"}
        assert (spec if isinstance(spec, dict) else {"version": spec}) == expected, dep
    release = dict(cargo["profile"]["release"])
    overrides = release.pop("package", {})
    ws_release = dict(workspace["profile"]["release"])
    ws_overrides = ws_release.pop("package", {})
    assert release == ws_release
    assert {"lto": True, "opt-level": "s", "codegen-units": 1, "panic": "abort", "strip": True}.items() <= \
        release.items()
    # Per-package overrides: the workspace's, for the packages this crate builds (per Cargo.lock) only.
    lock = tomllib.loads((FILTERS / "Cargo.lock").read_text())["package"]
    assert all(ws_overrides[k] == v for k, v in overrides.items())
    assert all(any(p["name"] == k for p in lock) for k in overrides)
    if template == "auth":
        assert "p256" in overrides
    if template == "blank":
        assert not overrides
    assert cargo["lints"] == workspace["workspace"]["lints"]
    assert cargo["lints"]["clippy"]["unwrap_used"] == "deny"
    assert cargo["lib"] == reference["lib"] and cargo["features"] == reference.get("features", {})


def test_workflow_builds_tests_and_uploads_junit(tmp_path):
    new("blank", NEW, tmp_path / NEW)
    text = (tmp_path / NEW / ".github/workflows/filter.yml").read_text()
    workflow = yaml.safe_load(text)
    job = workflow["jobs"]["filter"]
    steps = job["steps"]
    runs = [s.get("run", "") for s in steps]
    assert any("pip install" in r and "$WASMFILTER" in r for r in runs)
    # installed from this checkout (editable): the workflow names where it came from, never a release that
    # does not exist on PyPI
    assert workflow["env"]["WASMFILTER"] == f"wasmfilter @ {REPO.as_uri()}"
    assert "# NOTE: " in text and "is a checkout on the machine that ran `wasmfilter new`" in text
    # a job per Envoy minor, 1.36 up to the pinned one; each uploads its own JUnit directory
    assert job["strategy"]["matrix"]["envoy"] == ["1.36", "1.37", "1.38", "1.39", "1.40"]
    test_run = "wasmfilter test --envoy-version ${{ matrix.envoy }} --junit junit"
    assert "wasmfilter build" in runs and test_run in runs
    assert runs.index("wasmfilter build") < runs.index(test_run)
    upload = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert upload and upload[0]["with"]["path"] == "junit/" and upload[0]["if"] == "always()"
    assert upload[0]["with"]["name"] == f"junit-{NEW}-envoy-${{{{ matrix.envoy }}}}"
    unit = next(s for s in steps if s.get("run") == "wasmfilter unittest")
    assert unit["if"] == "matrix.envoy == '1.40'"
    assert "${{ runner.os }}" in text  # GitHub expressions survive jinja ({% raw %})
    assert (tmp_path / NEW / ".gitignore").read_text().startswith("# Build output")


def _filters_with_common(tmp_path: Path, *, dep_path: str = "common", common_toml: str | None = None) -> Path:
    """A copy of filters/ (blank + common only) whose workspace or shared crate is altered."""
    filters = tmp_path / "filters"
    shutil.copytree(FILTERS / "blank", filters / "blank", ignore=shutil.ignore_patterns("target"))
    shutil.copytree(FILTERS / "common", filters / "common", ignore=shutil.ignore_patterns("target"))
    workspace = (FILTERS / "Cargo.toml").read_text()
    assert 'wasmfilter-common = { path = "common" }' in workspace
    (filters / "Cargo.toml").write_text(workspace.replace('wasmfilter-common = { path = "common" }',
                                                          f'wasmfilter-common = {{ path = "{dep_path}" }}'))
    if common_toml is not None:
        (filters / "common" / "Cargo.toml").write_text(common_toml)
    return filters


@pytest.mark.parametrize("dep_path, common_toml, why", [
    ("../elsewhere", None, "outside filters/"),
    ("common", (FILTERS / "common" / "Cargo.toml").read_text().replace('edition = "2024"', "edition.workspace = true"),
     "inherits from the workspace"),
])
def test_a_shared_crate_that_cannot_be_vendored_is_refused_and_nothing_is_written(tmp_path, dep_path, common_toml,
                                                                                   why):
    filters = _filters_with_common(tmp_path, dep_path=dep_path, common_toml=common_toml)
    dest = tmp_path / "out"
    with pytest.raises(TemplateError) as e:
        new("blank", NEW, dest, filters_dir=filters)
    assert why in e.value.problem and "\n" not in str(e.value)
    assert not dest.exists()


def test_no_filter_code_lives_in_templates():
    """One source of truth: the filter code is only in filters/; templates/ holds what really varies."""
    rust = [p for p in TEMPLATES_DIR.rglob("*.rs")] + [p for p in TEMPLATES_DIR.rglob("*.rs.jinja")]
    assert not rust, rust
    crates = [d for d in FILTERS.iterdir() if (d / "Cargo.toml").is_file()]
    reference = {p.read_bytes() for d in crates for p in d.rglob("*") if p.is_file() and p.stat().st_size > 64}
    for path in TEMPLATES_DIR.rglob("*"):
        if path.is_file():
            text = path.read_bytes()
            assert text not in reference, f"{path} duplicates a file of filters/"
            assert b"proxy_wasm::" not in text, path
    assert not (TEMPLATES_DIR / "blank").exists(), "blank is the reference crate filters/blank"


# --- bad input: one line, non-zero exit, nothing written ---------------------------------------------------------

@pytest.mark.parametrize("name, why", [
    ("MyFilter", "upper-case"),
    ("1filter", "starts with a digit"),
    ("fn", "Rust keyword"),
    ("self", "Rust keyword"),
    ("gen", "Rust keyword"),  # reserved in edition 2024
    ("test", "reserved"),
    ("std", "reserved"),
    ("has space", "characters other than"),
    ("dot.name", "characters other than"),
    ("x" * 64, "longer than 63"),
    ("serde", "one of its dependencies"),
    ("proxy_wasm", "one of its dependencies"),
    ("../evil", "is a path"),
    ("/tmp/evil", "is a path"),
    ("a/b", "is a path"),
    (".hidden", "is a path"),
])
def test_bad_name_is_refused_and_writes_nothing(name, why, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    with pytest.raises(UsageError) as info:
        new("blank", name)
    assert why in str(info.value) and "\n" not in str(info.value)
    assert list(tmp_path.rglob("*")) == [work]
    assert not Path("/tmp/evil").exists()


@pytest.mark.parametrize("name, why", [("MyFilter", "upper-case"), ("fn", "Rust keyword"), ("../evil", "is a path")])
def test_bad_name_through_the_cli(name, why, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    assert_one_line_error(run_cli("new", "blank", name, cwd=work), why)
    assert list(tmp_path.rglob("*")) == [work]


def test_empty_name_is_refused(tmp_path):
    assert_one_line_error(run_cli("new", "blank", "", cwd=tmp_path), "name is empty")
    assert not any(tmp_path.iterdir())


def test_unknown_template_names_the_choices(tmp_path):
    result = run_cli("new", "nosuch", "x", cwd=tmp_path)
    assert_one_line_error(result, "unknown template 'nosuch'", "blank", "auth")
    assert not any(tmp_path.iterdir())


def test_missing_arguments(tmp_path):
    assert_one_line_error(run_cli("new", "blank", cwd=tmp_path), "needs a TEMPLATE and a NAME", "--list")
    assert not any(tmp_path.iterdir())


def test_existing_non_empty_directory_needs_force(tmp_path):
    dest = tmp_path / "gate"
    dest.mkdir()
    (dest / "notes.txt").write_text("precious")
    (dest / "filter.yaml").write_text("mine")
    result = run_cli("new", "blank", "gate", cwd=tmp_path)
    assert_one_line_error(result, "exists and is not empty", "--force")
    assert sorted(p.name for p in dest.iterdir()) == ["filter.yaml", "notes.txt"]
    assert (dest / "filter.yaml").read_text() == "mine"

    result = run_cli("new", "blank", "gate", "--force", cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert (dest / "notes.txt").read_text() == "precious"  # --force overwrites same-named files only
    assert load_manifest(dest).name == "gate"


def test_empty_existing_directory_is_fine_and_dir_option(tmp_path):
    dest = tmp_path / "somewhere" / "else"
    dest.mkdir(parents=True)
    result = run_cli("new", "blank", "gate", "--dir", str(dest), cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert (dest / "Cargo.toml").is_file() and not (tmp_path / "gate").exists()


def test_destination_that_is_a_file(tmp_path):
    (tmp_path / "gate").write_text("x")
    assert_one_line_error(run_cli("new", "blank", "gate", cwd=tmp_path), "is not a directory")
    assert (tmp_path / "gate").read_text() == "x"


def test_dry_run_lists_files_and_writes_nothing(tmp_path):
    result = run_cli("new", "auth", "gate", "--dry-run", cwd=tmp_path)
    assert result.code == 0, result.stderr
    listed = {line.split("would write ", 1)[1] for line in result.stdout.splitlines() if "would write " in line}
    assert str(tmp_path / "gate" / "Cargo.toml") in listed
    assert str(tmp_path / "gate" / "src" / "lib.rs") in listed
    assert len(listed) == len(reference_files("auth")) + len(SCAFFOLD_FILES) + len(vendored_common()) + 1
    assert not any(tmp_path.iterdir())


# --- the renderer, with scaffolds made for the purpose -------------------------------------------------------------

def make_scaffold(root: Path, files: dict[str, bytes | str]) -> Path:
    for rel, data in files.items():
        path = root / "scaffold" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return root


def test_only_jinja_files_are_rendered_and_binaries_are_copied_byte_for_byte(tmp_path):
    binary = bytes(range(256)) + b"{{ name }}\xff\xfe"
    templates = make_scaffold(tmp_path / "tpl", {
        "logo.bin": binary,
        "literal.txt": "{{ name }} stays as written\n",
        "hello.txt.jinja": "hello {{ name }} ({{ ident }})\n",
        "{{ ident }}_data/info.md.jinja": "{{ template }}\n",
        "{{ '' }}/dropped.txt": "a directory whose name renders empty drops its files\n",
    })
    result = new("blank", "my-gate", tmp_path / "out", templates_dir=templates, filters_dir=FILTERS)
    out = tmp_path / "out"
    assert (out / "logo.bin").read_bytes() == binary
    assert (out / "literal.txt").read_text() == "{{ name }} stays as written\n"
    assert (out / "hello.txt").read_text() == "hello my-gate (my_gate)\n"
    assert (out / "my_gate_data" / "info.md").read_text() == "blank\n"
    assert not (out / "dropped.txt").exists() and not (out / "hello.txt.jinja").exists()
    assert "rendered from scaffold/hello.txt.jinja" in {f.source for f in result.files}


@pytest.mark.parametrize("files, message", [
    ({"{{ '..' }}/escape.txt": "x"}, "leaves the destination"),
    ({"{{ '\\x2ftmp' }}": "x"}, "leaves the destination"),
    ({"bad.txt.jinja": "{{ nope }}"}, "'nope' is undefined"),
    ({"a.txt": "fine", "bad.txt.jinja": "{% for %}"}, "bad.txt.jinja"),
    ({"sandbox.txt.jinja": "{{ ''.__class__.__mro__[1].__subclasses__() }}"}, "unsafe"),
])
def test_template_problems_write_nothing(files, message, tmp_path):
    templates = make_scaffold(tmp_path / "tpl", files)
    with pytest.raises(WasmfilterError) as info:
        new("blank", "gate", tmp_path / "out", templates_dir=templates, filters_dir=FILTERS)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "out").exists() and not (tmp_path / "escape.txt").exists()
    assert not Path("/tmp/escape.txt").exists()


def test_failure_half_way_removes_what_this_run_created(tmp_path):
    # `a.txt` is written, then a 300-character file name fails in the kernel (ENAMETOOLONG).
    templates = make_scaffold(tmp_path / "tpl", {"a.txt": "new", "{{ 'x' * 300 }}.txt.jinja": "boom"})
    dest = tmp_path / "deep" / "out"
    with pytest.raises(UsageError) as info:
        new("blank", "gate", dest, templates_dir=templates, filters_dir=FILTERS)
    assert "nothing was left behind" in str(info.value)
    assert not (tmp_path / "deep").exists()  # created by this run, so removed

    # With --force into an existing directory: its own files survive, overwritten ones are restored.
    dest.mkdir(parents=True)
    (dest / "a.txt").write_text("precious")
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(UsageError):
        new("blank", "gate", dest, force=True, templates_dir=templates, filters_dir=FILTERS)
    assert sorted(p.name for p in dest.iterdir()) == ["a.txt", "keep.txt"]
    assert (dest / "a.txt").read_text() == "precious"


def test_symlink_in_destination_is_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "gate"
    dest.mkdir()
    os.symlink(outside, dest / "src")
    with pytest.raises(UsageError) as info:
        new("blank", "gate", dest, force=True)
    assert "outside" in str(info.value) or "symlink" in str(info.value)
    assert not any(outside.iterdir())
