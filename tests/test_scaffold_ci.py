"""What the scaffold tells CI and the README: where wasmfilter is installed from (pip's PEP 610 record), and the
reference README's commands as the new project's own."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import FILTERS
from wasmfilter.scaffold.install_source import current, from_direct_url
from wasmfilter.scaffold.localize import localize
from wasmfilter.scaffold.plan import plan
from wasmfilter.scaffold.templates import get_template, list_templates


def test_each_kind_of_install_record():
    vcs = {"url": "https://github.com/acme/wasmfilter.git", "subdirectory": "tk",
           "vcs_info": {"vcs": "git", "commit_id": "4f2a9c1", "requested_revision": "main"}}
    assert from_direct_url(vcs, "0.1.0").requirement == \
        "wasmfilter @ git+https://github.com/acme/wasmfilter.git@4f2a9c1#subdirectory=tk"
    wheel = {"url": "https://files.example/wasmfilter-0.1.0-py3-none-any.whl", "archive_info": {}}
    assert from_direct_url(wheel, "0.1.0").requirement == f"wasmfilter @ {wheel['url']}"
    assert not from_direct_url(wheel, "0.1.0").note
    local_wheel = from_direct_url({"url": "file:///tmp/w/wasmfilter-0.1.0-py3-none-any.whl", "archive_info": {}}, "0")
    assert "/tmp/w/wasmfilter-0.1.0-py3-none-any.whl is a file on the machine" in local_wheel.note
    local = from_direct_url({"url": "file:///home/me/wasmfilter", "dir_info": {"editable": True}}, "0.1.0")
    assert local.requirement == "wasmfilter @ file:///home/me/wasmfilter" and local.kind == "local"
    # no record: pip installed it from an index, where that version therefore exists
    assert from_direct_url(None, "0.3.1").requirement == "wasmfilter==0.3.1"


def test_this_install_is_read_from_pips_own_record():
    """The real record pip wrote for this environment's wasmfilter (an editable install of the checkout)."""
    out = subprocess.run([sys.executable, "-c", "import importlib.metadata as m; "
                          "print(m.distribution('wasmfilter').read_text('direct_url.json'))"],
                         capture_output=True, text=True, check=True)
    record = json.loads(out.stdout)
    assert current().requirement == f"wasmfilter @ {record['url']}"


@pytest.mark.parametrize("template", [t.name for t in list_templates(FILTERS)])
def test_readme_shows_the_projects_own_commands(template):
    files = {f.path.as_posix(): f.data.decode() for f in plan(get_template(template, FILTERS), "my-filter")}
    readme = files["README.md"]
    assert "filters/" not in readme.replace("registry.example.com/filters/", ""), \
        [line for line in readme.splitlines() if "filters/" in line]
    assert ".venv/bin" not in readme
    assert "wasmfilter==" not in readme and "pip install wasmfilter " not in readme
    assert "wasmfilter build" in readme and "wasmfilter test --envoy-version all" in readme


def test_localize_keeps_flags_and_other_text():
    text = "wasmfilter build --opt filters/auth    # x\nsee filters/authz and filters/target/wasmfilter/auth.opt.wasm"
    assert localize(text, "auth", "my_auth") == \
        "wasmfilter build --opt    # x\nsee filters/authz and target/wasmfilter/my_auth.opt.wasm"
