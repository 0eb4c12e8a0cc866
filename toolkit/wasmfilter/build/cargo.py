"""cargo for a filter crate: the wasm32-wasip1 build (the module's path, size and sha256; one artifact per feature
set, copied out under a lock), the --opt size build through build/size.py, and the host unit tests + clippy."""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from wasmfilter.build import exports, prebuilt, size, standalone, toolchain
from wasmfilter.errors import CargoBuildError, ToolchainError, UsageError, tail
from wasmfilter.files import sha256_file
from wasmfilter.manifest import MANIFEST_NAME, load_manifest

Progress = Callable[[str], None]

# --opt builds: their own cargo target directory under the workspace's (see build()).
SIZE_TARGET_SUBDIR = "size"
# --debug-info builds: the name section and DWARF line tables kept (crash backtraces with names and file:line,
# build/symbols.py), in their own target directory for the same reason.
DEBUG_TARGET_SUBDIR = "debug-info"
DEBUG_PROFILE_ENV = {"CARGO_PROFILE_RELEASE_STRIP": "none", "CARGO_PROFILE_RELEASE_DEBUG": "line-tables-only"}
# --fast builds: the workspace's `fast` cargo profile (no LTO, 16 codegen units, incremental), the edit-build loop
# only; what is tested, packaged and benchmarked is the release (size-tuned) build.
FAST_PROFILE = "fast"


@dataclass(frozen=True)
class BuildResult:
    wasm: Path
    size: int
    sha256: str
    seconds: float
    features: tuple[str, ...]
    optimized: bool


def _directory(path: str | Path | None) -> Path:
    """PATH (the current directory by default), or the directory of the file it names."""
    target = Path(path) if path is not None else Path.cwd()
    return target.parent if target.is_file() else target


def crate_dir_for(path: str | Path | None) -> Path:
    """A crate directory from PATH: the manifest's crate, or a directory with a Cargo.toml."""
    target = _directory(path)
    if not target.exists():
        raise UsageError(f"path '{target}' does not exist", fix="pass the filter's directory")
    if (target / MANIFEST_NAME).is_file():
        return load_manifest(target).crate_dir
    if (target / "Cargo.toml").is_file():
        return target.resolve()
    raise UsageError(f"'{target}' holds neither a filter.yaml nor a Cargo.toml",
                     fix="pass a filter directory, or create one with `wasmfilter new blank NAME`")


def run_cargo(crate: Path, args: list[str], *, wasm: bool, on_line: Progress | None = None,
              env: dict[str, str] | None = None) -> str:
    """Run cargo in CRATE with the detected toolchain (ENV: a full environment instead of the toolchain's);
    raise CargoBuildError with its output on failure."""
    tc = toolchain.detect()
    cmd = [tc.cargo, *args]
    try:
        proc = subprocess.Popen(cmd, cwd=crate, env=env or tc.cargo_env(wasm=wasm), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    except OSError as e:
        raise ToolchainError(f"cannot run {tc.cargo}: {e}", fix=toolchain.INSTALL_FIX) from e
    lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if on_line:
            on_line(line.rstrip("\n"))
    code = proc.wait()
    output = "\n".join(lines)
    if code != 0:
        raise CargoBuildError(f"cargo {args[0]} failed in {crate} (exit {code})",
                              fix="fix the errors shown above", detail=tail(_human_output(output), 60))
    return output


def _human_output(output: str) -> str:
    """Drop cargo's JSON messages; keep the rendered diagnostics."""
    return "\n".join(line for line in output.splitlines() if not line.startswith("{"))


@contextmanager
def _artifact_lock(directory: Path, name: str = ".lock") -> Iterator[None]:
    # Builds with different features uplift to the same cargo path; hold a lock from cargo to our copy.
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / name, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def build(path: str | Path | None = None, *, features: list[str] | tuple[str, ...] = (), opt: bool = False,
          progress: Progress | None = None, debug_info: bool = False, fast: bool = False) -> BuildResult:
    """cargo build --release for wasm32-wasip1. The module is copied to <target>/wasmfilter/<crate>[+features].wasm
    so builds with different features never overwrite each other.

    opt=True is the size build (docs/size.md): cargo with the size flags of toolchain.size_cargo() in its own
    target directory <target>/size (the flags change cargo's fingerprints; sharing <target> would rebuild std and
    every dependency of the default build on each switch), then wasm-opt -Oz, written to
    <target>/wasmfilter/<crate>[+features].opt.wasm (never over the default build's module), without the callback
    exports filter.yaml's `never_receives` names (build/exports.py)."""
    if fast and opt:
        raise UsageError("--fast and --opt exclude each other", fix="pick one: --fast to iterate, --opt to ship")
    # `--features a,b` and `--features a --features b` are one set (cargo reads both), so one module name.
    features = tuple(sorted({f.strip() for group in features for f in group.split(",") if f.strip()}))
    prebuilt_filter = prebuilt.prebuilt_manifest(path)
    if prebuilt_filter is not None:  # `wasm:` in filter.yaml: any language, no cargo (build/prebuilt.py)
        module, seconds = prebuilt.build_prebuilt(prebuilt_filter, features=features, opt=opt, progress=progress)
        size_bytes, digest = prebuilt.module_digest(module)
        return BuildResult(wasm=module, size=size_bytes, sha256=digest, seconds=seconds, features=(), optimized=False)
    crate = standalone.buildable(crate_dir_for(path))
    tc = toolchain.detect()
    target_dir = _target_dir(crate)
    args = ["build", "--release", "--target", toolchain.TARGET, "--message-format", "json-render-diagnostics",
            *tc.build_args]
    env = None
    if opt:
        size.wasm_opt_path()  # missing wasm-opt: say so before minutes of cargo
        size_args, env = tc.size_cargo()
        args = ["build", "--release", "--target", toolchain.TARGET, "--message-format", "json-render-diagnostics",
                *size_args, "--target-dir", str(target_dir / SIZE_TARGET_SUBDIR)]
    if debug_info:
        if opt:
            raise UsageError("--debug-info and --opt do not go together (the size build strips everything)",
                             fix="drop one of them")
        env = {**tc.cargo_env(wasm=True), **DEBUG_PROFILE_ENV}
        args += ["--target-dir", str(target_dir / DEBUG_TARGET_SUBDIR)]
    if fast:
        if not has_profile(crate, FAST_PROFILE):
            raise UsageError(f"--fast: no [profile.{FAST_PROFILE}] in the Cargo.toml of {crate}'s workspace",
                             fix="copy [profile.fast] from the toolkit's filters/Cargo.toml, or build without --fast")
        args[args.index("--release")] = f"--profile={FAST_PROFILE}"
    if features:
        args += ["--features", ",".join(features)]
    out_dir = target_dir / "wasmfilter"
    start = time.perf_counter()
    # --opt builds uplift in their own target dir: a lock of their own, so they never hold up a default build.
    with _artifact_lock(out_dir, ".opt-lock" if opt else ".debug-lock" if debug_info else ".lock"):
        output = run_cargo(crate, args, wasm=True, on_line=_progress_lines(progress), env=env)
        artifact = _find_artifact(output, crate)
        name = standalone.module_stem(crate, artifact.stem) + ("+" + "+".join(features) if features else "")
        if opt:
            final = out_dir / f"{name}.opt.wasm"
            size.wasm_opt_cached(artifact, final, strip=_never_received(path))
        else:
            final = out_dir / f"{name}{'.debug' if debug_info else ''}{'.fast' if fast else ''}.wasm"
            shutil.copyfile(artifact, final)
    seconds = time.perf_counter() - start
    return BuildResult(wasm=final, size=final.stat().st_size, sha256=sha256_file(final), seconds=seconds,
                       features=features, optimized=opt)


def _never_received(path: str | Path | None) -> tuple[str, ...]:
    """The callback exports PATH's filter.yaml declares Envoy never calls; none for a bare crate."""
    target = _directory(path)
    if not (target / MANIFEST_NAME).is_file():
        return ()
    return exports.stripped_exports(load_manifest(target).never_receives)


def _metadata(crate: Path) -> dict[str, str]:
    tc = toolchain.detect()
    out = subprocess.run([tc.cargo, "metadata", "--format-version", "1", "--no-deps"], cwd=crate,
                         env=tc.cargo_env(wasm=False), capture_output=True, text=True)
    if out.returncode != 0:
        raise CargoBuildError(f"cargo metadata failed in {crate}", fix="fix Cargo.toml",
                              detail=tail(out.stderr, 30))
    meta = json.loads(out.stdout)
    return {"target_directory": meta["target_directory"], "workspace_root": meta["workspace_root"]}


def _target_dir(crate: Path) -> Path:
    return Path(_metadata(crate)["target_directory"])


def has_profile(path: str | Path | None, profile: str) -> bool:
    """Whether the workspace of the crate at PATH (a mirror for a standalone crate) defines [profile.PROFILE]; a
    prebuilt (`wasm:`) filter has no cargo profiles."""
    if prebuilt.prebuilt_manifest(path) is not None:
        return False
    crate = standalone.buildable(crate_dir_for(path))
    root = Path(_metadata(crate)["workspace_root"]) / "Cargo.toml"
    return profile in tomllib.loads(root.read_text()).get("profile", {})


def _find_artifact(output: str, crate: Path) -> Path:
    manifest = str((crate / "Cargo.toml").resolve())
    for line in output.splitlines():
        if not line.startswith("{"):
            continue
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        if msg.get("reason") == "compiler-artifact" and msg.get("manifest_path") == manifest:
            wasm = [f for f in msg.get("filenames", []) if f.endswith(".wasm")]
            if wasm:
                return Path(wasm[0])
    raise CargoBuildError(f"cargo built no .wasm for {crate}",
                          fix='add `[lib] crate-type = ["cdylib"]` to Cargo.toml')


def _progress_lines(progress: Progress | None) -> Progress | None:
    if progress is None:
        return None

    def on_line(line: str) -> None:
        if line.startswith("{"):
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                return
            if msg.get("reason") == "compiler-artifact" and not msg.get("fresh"):
                progress(f"compiled {msg['target']['name']}")
        elif line.strip().startswith(("Compiling", "Downloaded", "Updating")):
            progress(line.strip())

    return on_line


def unit_test(path: str | Path | None = None, *, tests: bool = True, clippy: bool = True,
              progress: Progress | None = None) -> str:
    """The filter's plain-Rust tests on the host (TESTS), then clippy with warnings as errors (CLIPPY). PATH may be
    a workspace: then every member."""
    if prebuilt.prebuilt_manifest(path) is not None:
        raise UsageError(f"'{path}' is a prebuilt module (wasm: in filter.yaml): there are no cargo tests to run",
                         fix="test it with `wasmfilter test` (its scenario files)")
    crate = standalone.buildable(crate_dir_for(path))
    if not (tests or clippy):
        raise UsageError("nothing to run: both the tests and clippy are off", fix="drop --no-clippy or --clippy-only")
    output = ""
    if tests:
        output += run_cargo(crate, ["test", "--all-features"], wasm=False, on_line=progress)
    if clippy:
        output += "\n" + run_cargo(crate, ["clippy", "--all-targets", "--all-features", "--", "-D", "warnings"],
                                   wasm=False, on_line=progress)
    return output
