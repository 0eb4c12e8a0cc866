"""`wasmfilter dev`: the inner loop. Owns the watch → build → push → ACK cycle and its one-line reports: the crate and
filter.yaml are watched (watchfiles); a source change rebuilds incrementally (build.cargo.build) and pushes the new
module (content-addressed, its sha256 in the file name), a filter.yaml change pushes the new plugin config; each
ends in `live in N ms (build X ms, push+ack Y ms)` or in the reason the last good filter still serves. Builds use the
workspace's `fast` cargo profile (no LTO, incremental: ~1 s after a one-line edit) when it defines one, the shipped
release profile otherwise or with release=True; `test`, `package` and `bench` always build the release profile. The
control plane, Envoy and echo upstreams come from harness/ecds.py; Ctrl-C (KeyboardInterrupt) stops all of them."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wasmfilter.build import toolchain
from wasmfilter.build.cargo import FAST_PROFILE, build, has_profile
from wasmfilter.console import out
from wasmfilter.envoy.binary import resolve
from wasmfilter.envoy.xds.process import check_port
from wasmfilter.errors import CargoBuildError, WasmfilterError
from wasmfilter.harness.ecds import EcdsStack
from wasmfilter.harness.stack import StackSpec
from wasmfilter.manifest import Manifest, load_manifest
from wasmfilter.overrides import plugin_config

WATCHED_NAMES = {"Cargo.toml", "Cargo.lock", "filter.yaml"}


@dataclass
class Cycle:
    """One change and what came of it."""
    kind: str  # "module" or "config"
    ok: bool
    line: str
    detail: str = ""
    total_ms: float = 0.0
    build_ms: float = 0.0
    push_ms: float = 0.0


def watched(path: Path) -> bool:
    """Sources that change the filter: Rust files, Cargo.toml/lock, filter.yaml — never anything under target/."""
    return "target" not in path.parts and (path.suffix == ".rs" or path.name in WATCHED_NAMES)


def path_dependencies(crate: Path) -> list[Path]:
    """Directories of CRATE's path dependencies (cargo metadata); none if cargo cannot say."""
    tc = toolchain.detect()
    out = subprocess.run([tc.cargo, "metadata", "--format-version", "1", "--no-deps"], cwd=crate,
                         env=tc.cargo_env(wasm=False), capture_output=True, text=True)
    if out.returncode != 0:
        return []
    manifest = str((crate / "Cargo.toml").resolve())
    for package in json.loads(out.stdout).get("packages", []):
        if package.get("manifest_path") == manifest:
            return [Path(d["path"]).resolve() for d in package.get("dependencies", []) if d.get("path")]
    return []


class DevSession:
    """The running loop's state: the manifest, the overrides, the live stack. `cycle(changed)` does one round."""

    def __init__(self, path: str | Path | None = None, *, envoy_version: str | None = None, concurrency: int = 2,
                 config_file: str | Path | None = None, sets: list[str] | None = None, xds_port: int = 0,
                 scenarios: list[Path] | None = None, say: Callable[[str], None] | None = None,
                 release: bool = False):
        self.path = path
        self.release = release
        self.fast = False  # decided at start(): the `fast` profile unless release or the workspace lacks it
        self.envoy_version = envoy_version
        self.concurrency = concurrency
        self.config_file = config_file
        self.sets = sets or []
        self.xds_port = xds_port
        self.scenarios = scenarios or []
        self.say = say or (lambda line: out.print(line, markup=False, soft_wrap=True))
        self.manifest: Manifest = load_manifest(path)
        self.live: EcdsStack | None = None
        self.cycles: list[Cycle] = []
        self._snapshot: dict[Path, float] = {}
        self._paths: list[Path] | None = None

    def config(self, manifest: Manifest) -> Any:
        return plugin_config(manifest.config, config_file=self.config_file, sets=self.sets)

    def start(self) -> DevSession:
        """Build, start the control plane, Envoy and upstreams, push the first filter: any failure here is an error
        (there is no last good filter yet)."""
        started = time.perf_counter()
        self._snapshot = self.sources()  # edits made before the watcher runs are caught up with (run())
        config = self.config(self.manifest)  # bad overrides and a busy port fail before the build
        check_port("127.0.0.1", self.xds_port)
        self.fast = not self.release and has_profile(self.manifest.directory, FAST_PROFILE)
        if not self.release and not self.fast and self.manifest.wasm is None:
            self.say(f"no [profile.{FAST_PROFILE}] in the workspace's Cargo.toml: building the release profile "
                     "(copy [profile.fast] from the toolkit's filters/Cargo.toml for ~1 s rebuilds)")
        result = build(self.manifest.crate_dir, fast=self.fast)
        binary = resolve(self.envoy_version or self.manifest.envoy_version)
        spec = StackSpec(manifest=self.manifest, wasm_path=result.wasm, plugin_config=config,
                         concurrency=self.concurrency)
        self.live = EcdsStack(spec, binary=binary, xds_port=self.xds_port).start()
        assert self.live.xds is not None and self.live.stack is not None
        profile = FAST_PROFILE if self.fast else "release"
        self.say(f"{self.manifest.name}: live in {(time.perf_counter() - started) * 1000:.0f} ms "
                 f"(build {result.seconds * 1000:.0f} ms, {profile} profile) in {binary.describe()}")
        self.say(f"  listener  {self.live.url}")
        self.say(f"  admin     {self.live.stack.envoy.admin.url}")
        self.say(f"  xds       {self.live.xds.address} (ADS; the filter is ECDS resource '{self.manifest.name}')")
        self.rerun_scenarios()
        return self

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def sources(self) -> dict[Path, float]:
        """The watched files and their modification times."""
        found: dict[Path, float] = {}
        for root in self.watch_paths():
            for folder, dirs, files in os.walk(root):
                dirs[:] = [d for d in dirs if d not in ("target", ".git")]
                for name in files:
                    path = Path(folder) / name
                    if watched(path.relative_to(root)):
                        found[path] = path.stat().st_mtime
        return found

    def watch_paths(self) -> list[Path]:
        """The crate, filter.yaml's directory and the crate's path dependencies (e.g. filters/common)."""
        if self._paths is None:
            self._paths = sorted({self.manifest.crate_dir.resolve(), self.manifest.directory.resolve(),
                                  *path_dependencies(self.manifest.crate_dir)})
        return self._paths

    def cycle(self, changed: Iterable[Path], edited_at: float | None = None) -> Cycle:
        """One round for the CHANGED files: rebuild + push the module if a source changed, else push the config.
        EDITED_AT (time.time() of the newest edit) starts the clock; a failure keeps the last good filter."""
        assert self.live is not None
        start_wall = edited_at or time.time()
        changed = list(changed)
        sources = [p for p in changed if p.name != "filter.yaml"]
        kind = "module" if sources else "config"
        build_ms = 0.0
        try:
            manifest = load_manifest(self.manifest.directory)
            config = self.config(manifest)
            wasm: Path | None = None
            if sources:
                result = build(manifest.crate_dir, fast=self.fast)
                build_ms = result.seconds * 1000
                wasm = result.wasm
            push = self.live.push(wasm=wasm, config=config)
        except CargoBuildError as e:
            cycle = Cycle(kind, False, f"build failed: {e.problem}; the last good filter keeps serving",
                        detail=e.detail or "", build_ms=build_ms)
        except WasmfilterError as e:
            cycle = Cycle(kind, False, f"not applied: {e.problem}; the last good filter keeps serving",
                        detail=e.detail or "", build_ms=build_ms)
        else:
            self.manifest = manifest
            total = (time.time() - start_wall) * 1000
            cycle = Cycle(kind, True, f"live in {total:.0f} ms (build {build_ms:.0f} ms, push+ack "
                        f"{push.seconds * 1000:.0f} ms) — {kind} sha256:{self.live.sha256[:12]}",
                        total_ms=total, build_ms=build_ms, push_ms=push.seconds * 1000)
        self.cycles.append(cycle)
        if cycle.detail:
            self.say(cycle.detail)
        self.say(cycle.line)
        if cycle.ok:
            self.rerun_scenarios()
        return cycle

    def rerun_scenarios(self) -> None:
        """Each --scenario file's cases against the live filter as it is now (its file-level config is not pushed:
        the config under development is)."""
        if not self.scenarios or self.live is None or self.live.stack is None:
            return
        from wasmfilter.harness import scenario
        from wasmfilter.harness.runner import run_file

        for file in self.scenarios:
            try:
                sfile = scenario.load(file)
            except WasmfilterError as e:
                self.say(f"scenario {file}: {e}")
                continue
            results = run_file(self.live.stack, sfile)
            failed = [r for r in results if not r.passed]
            self.say(f"scenario {Path(file).name}: {len(results) - len(failed)}/{len(results)} passed")
            for r in failed:
                self.say(f"  FAIL {r.name}: " + "; ".join(r.problems))

    def run(self, *, stop: threading.Event | None = None, duration: float | None = None) -> None:
        """Watch and cycle until STOP is set, DURATION passes or Ctrl-C (KeyboardInterrupt, which propagates)."""
        import watchfiles

        stop = stop or threading.Event()
        timer = threading.Timer(duration, stop.set) if duration else None
        if timer:
            timer.start()
        announced = False
        try:
            for changes in watchfiles.watch(*self.watch_paths(), watch_filter=lambda _c, p: watched(Path(p)),
                                            stop_event=stop, step=20, rust_timeout=200, yield_on_timeout=True):
                paths = [Path(p) for _, p in changes]
                if not announced:  # the watcher runs now: say so, and catch up with edits made before it did
                    announced = True
                    now = self.sources()
                    paths += [p for p, mtime in now.items() if self._snapshot.get(p) != mtime and p not in paths]
                    self.say(f"  watching  {', '.join(str(p) for p in self.watch_paths())}; Ctrl-C stops")
                if not paths:
                    continue
                times = [p.stat().st_mtime for p in paths if p.exists()]
                self.cycle(paths, max(times) if times else None)
        finally:
            if timer:
                timer.cancel()


def dev(path: str | Path | None = None, *, duration: float | None = None, **options: Any) -> list[Cycle]:
    """`wasmfilter dev`: start, watch until Ctrl-C (or DURATION), stop everything; the cycles run."""
    session = DevSession(path, **options)
    try:
        session.start()
        session.run(duration=duration)
    finally:
        session.stop()
    return session.cycles
