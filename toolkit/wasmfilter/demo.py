"""`wasmfilter demo` (and `make demo`): build the reference filters, run each in a real Envoy with echo
upstreams, send the requests in its demo.yaml and show what came back and what the upstream saw."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from rich.table import Table

from wasmfilter import console
from wasmfilter.build.cargo import build
from wasmfilter.console import out
from wasmfilter.envoy.binary import resolve
from wasmfilter.errors import ScenarioError
from wasmfilter.harness import scenario
from wasmfilter.harness.client import Client
from wasmfilter.harness.stack import StackSpec, start_stack
from wasmfilter.manifest import load_manifest
from wasmfilter.paths import data_dir
from wasmfilter.yamlmodel import load_model

DEMO_FILE = "demo.yaml"


class DemoStep(BaseModel):
    model_config = ConfigDict(extra="forbid")
    say: str
    request: scenario.Request
    show: list[str] = Field(default_factory=list)  # response headers worth showing
    show_upstream: list[str] = Field(default_factory=list)  # headers the upstream saw worth showing


class Demo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str
    steps: list[DemoStep]


def demo_filters(root: Path | None = None) -> list[Path]:
    root = root or data_dir("filters")
    return sorted(p.parent for p in root.glob(f"*/{DEMO_FILE}") if (p.parent / "filter.yaml").is_file())


def load_demo(filter_dir: Path) -> Demo:
    return load_model(filter_dir / DEMO_FILE, Demo, error=ScenarioError, what="demo file",
                      shape="a mapping with a title and steps", example="filters/auth/demo.yaml",
                      field_fix="correct that field; see filters/auth/demo.yaml")


def run_demo(filters: list[Path] | None = None) -> None:
    binary = resolve()
    for filter_dir in filters or demo_filters():
        manifest = load_manifest(filter_dir)
        demo = load_demo(filter_dir)
        with console.progress(f"building {manifest.name}") as step:
            result = build(manifest.crate_dir, progress=step)
        with start_stack(StackSpec(manifest=manifest, wasm_path=result.wasm), binary=binary) as stack:
            out.rule(f"{manifest.name}: {demo.title}")
            out.print(f"{result.wasm.name} ({result.size} bytes) in {binary.describe()}, listener {stack.url}")
            table = Table("what", "request", "status", "response headers", "upstream saw")
            client = Client(stack.url)
            try:
                for s in demo.steps:
                    resp = client.send(s.request)
                    echo = resp.echo()
                    shown = "\n".join(f"{h}: {resp.header(h)}" for h in s.show if resp.header(h) is not None)
                    if echo is None:
                        saw = "(not reached)"
                    else:
                        seen = dict(echo["headers"])
                        saw = "\n".join([f"{echo['upstream']} {echo['path']}",
                                         *(f"{h}: {seen[h]}" for h in s.show_upstream if h in seen)])
                    req = f"{s.request.method} {s.request.path}" + "".join(
                        f"\n{k}: {v}" for k, v in s.request.header_pairs())
                    table.add_row(s.say, req, str(resp.status), shown, saw)
            finally:
                client.close()
            out.print(table)
    out.print("demo done: every Envoy and upstream has been stopped")
