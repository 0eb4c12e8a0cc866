"""The `wasmfilter profile` command over bench/guest_cost.py: which bench definitions, building the filter, and the
tables (rich on a TTY, plain lines otherwise) and JSON file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from wasmfilter.bench import guest_cost
from wasmfilter.bench.definition import all_definitions, load_definition, resolve_definition
from wasmfilter.bench.report import plain_table
from wasmfilter.console import out
from wasmfilter.errors import UsageError


def show(doc: dict[str, Any]) -> None:
    if out.is_terminal:
        table = Table(*guest_cost.header(doc), title=guest_cost.title(doc))
        for row in guest_cost.rows(doc):
            table.add_row(*row)
        out.print(table)
    else:
        print(guest_cost.title(doc))
        print(plain_table(guest_cost.header(doc), guest_cost.rows(doc)))


def profile_command(path: Path | None, *, scenario_file: Path | None = None, all_: bool = False,
                    only: list[str] | None = None, wasm: Path | None = None,
                    requests: int = guest_cost.DEFAULT_REQUESTS, warmup: int = guest_cost.DEFAULT_WARMUP,
                    json_out: Path | None = None) -> list[dict[str, Any]]:
    if (path is not None) + (scenario_file is not None) + all_ > 1:
        raise UsageError("give one of PATH, --scenario FILE or --all", fix="drop the others")
    if all_:
        definitions = [load_definition(f) for f in all_definitions()]
    elif scenario_file is not None:
        if not scenario_file.is_file():
            raise UsageError(f"scenario file '{scenario_file}' does not exist",
                             fix="pass a bench file from benchmarks/, e.g. benchmarks/auth.yaml")
        definitions = [load_definition(scenario_file)]
    else:
        definitions = [resolve_definition(path)]
    if wasm is not None and len(definitions) > 1:
        raise UsageError("--wasm profiles one module: give one filter, not --all", fix="drop --all or --wasm")
    docs = []
    for d in definitions:
        kwargs: dict[str, Any] = {"requests": requests, "warmup": warmup, "only": only or None}
        result = guest_cost.profile(d, wasm, **kwargs) if wasm is not None else guest_cost.profile_filter(d, **kwargs)
        doc = result.to_json()
        show(doc)
        docs.append(doc)
    if json_out is not None:
        guest_cost.write_json(docs, json_out)
        out.print(f"json: {json_out}", markup=False)
    return docs
