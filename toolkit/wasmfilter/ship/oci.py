"""Wasm filters as OCI images: package (reproducibly), push, pull, and extract plugin.wasm the way Istio does.

Image shapes follow the Wasm Image Specification (solo-io/wasm spec, spec-compat.md) as Istio's image fetcher
(`pkg/wasm/imagefetcher.go`) reads them:

- ``compat`` (default): OCI manifest, one ``application/vnd.oci.image.layer.v1.tar+gzip`` layer whose tar holds
  ``plugin.wasm`` (+ ``runtime-config.json``), manifest annotation ``module.wasm.image/variant=compat``.
- ``docker``: the same layer as a Docker schema 2 image (``application/vnd.docker.distribution.manifest.v2+json``,
  layer ``application/vnd.docker.image.rootfs.diff.tar.gzip``) — what ``docker build`` of ``FROM scratch`` gives.
- ``oci``: config media type ``application/vnd.module.wasm.config.v1+json`` and exactly two layers, the runtime
  config (same media type) and the raw module (``application/vnd.module.wasm.content.layer.v1+wasm``). Istio's
  fetcher requires exactly two layers for this variant, so the config blob is also listed as a layer.

Everything is reproducible: the same .wasm gives the same manifest digest (tar entries with mtime 0, uid/gid 0,
no user names, sorted; gzip with mtime 0; no timestamps in any config or manifest).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin

from wasmfilter.errors import RegistryError, UsageError, WasmfilterError

# Media types (OCI image spec, Docker schema 2, Wasm image spec).
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
WASM_CONFIG = "application/vnd.module.wasm.config.v1+json"
WASM_LAYER = "application/vnd.module.wasm.content.layer.v1+wasm"
VARIANT_ANNOTATION = "module.wasm.image/variant"
TITLE_ANNOTATION = "org.opencontainers.image.title"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
MANIFEST_ACCEPT = ", ".join([OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_LIST])

PLUGIN_FILE = "plugin.wasm"
RUNTIME_CONFIG_FILE = "runtime-config.json"
VARIANTS = ("compat", "docker", "oci")
WASM_MAGIC = b"\0asm"
TAG_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
REPO_PATTERN = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
DIGEST_PATTERN = re.compile(r"^sha256:[a-f0-9]{64}$")

Progress = Callable[[str], None]


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


# --------------------------------------------------------------------------------------------------- images


@dataclass
class Image:
    """One image: its manifest bytes and every blob it references, keyed by digest."""
    manifest: bytes
    media_type: str
    blobs: dict[str, bytes] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return sha256_digest(self.manifest)

    @property
    def manifest_json(self) -> dict[str, Any]:
        return json.loads(self.manifest)

    @property
    def variant(self) -> str:
        return detect_variant(self.manifest_json)

    @property
    def size(self) -> int:
        return len(self.manifest) + sum(len(b) for b in self.blobs.values())


def _descriptor(media_type: str, data: bytes, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    desc: dict[str, Any] = {"mediaType": media_type, "digest": sha256_digest(data), "size": len(data)}
    if annotations:
        desc["annotations"] = annotations
    return desc


def _runtime_config(root_id: str | None, abi_version: str | None) -> bytes:
    # The Wasm image spec's runtime config: type, abiVersions, config.root_ids.
    cfg: dict[str, Any] = {"type": "envoy_proxy"}
    if abi_version:
        cfg["abiVersions"] = [abi_version]
    if root_id:
        cfg["config"] = {"root_ids": [root_id]}
    return _canonical_json(cfg)


def _layer_tar(files: dict[str, bytes]) -> bytes:
    """A tar with fixed metadata: sorted names, mtime 0, uid/gid 0, no owner names, mode 0644."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size = len(files[name])
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(files[name]))
    return buf.getvalue()


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9, mtime=0)


def build_image(wasm: bytes, *, variant: str = "compat", root_id: str | None = None, abi_version: str | None = None,
                title: str | None = None, check_wasm: bool = True) -> Image:
    """The image for module bytes WASM in VARIANT. Deterministic: equal inputs give equal bytes."""
    if variant not in VARIANTS:
        raise UsageError(f"unknown image variant '{variant}'", fix="use one of: " + ", ".join(VARIANTS))
    if check_wasm and not wasm.startswith(WASM_MAGIC):
        raise UsageError("the module to package is not a WebAssembly binary (no \\0asm header)",
                         fix="package the .wasm that `wasmfilter build` produced")
    runtime = _runtime_config(root_id, abi_version)
    blobs: dict[str, bytes] = {}
    annotations = {TITLE_ANNOTATION: title} if title else {}
    if variant in ("compat", "docker"):
        tar = _layer_tar({PLUGIN_FILE: wasm, RUNTIME_CONFIG_FILE: runtime})
        layer = _gzip(tar)
        config = _canonical_json({"architecture": "wasm", "os": "wasip1", "config": {},
                                  "rootfs": {"type": "layers", "diff_ids": [sha256_digest(tar)]}})
        blobs = {sha256_digest(config): config, sha256_digest(layer): layer}
        if variant == "compat":
            manifest: dict[str, Any] = {
                "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": _descriptor(OCI_CONFIG, config),
                "layers": [_descriptor(OCI_LAYER_GZIP, layer)],
                "annotations": {VARIANT_ANNOTATION: "compat", **annotations},
            }
            media_type = OCI_MANIFEST
        else:
            manifest = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                        "config": _descriptor(DOCKER_CONFIG, config),
                        "layers": [_descriptor(DOCKER_LAYER_GZIP, layer)]}
            media_type = DOCKER_MANIFEST
    else:
        blobs = {sha256_digest(runtime): runtime, sha256_digest(wasm): wasm}
        manifest = {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": _descriptor(WASM_CONFIG, runtime),
            "layers": [_descriptor(WASM_CONFIG, runtime, {TITLE_ANNOTATION: RUNTIME_CONFIG_FILE}),
                       _descriptor(WASM_LAYER, wasm, {TITLE_ANNOTATION: PLUGIN_FILE})],
        }
        if annotations:
            manifest["annotations"] = annotations
        media_type = OCI_MANIFEST
    return Image(manifest=_canonical_json(manifest), media_type=media_type, blobs=blobs)


def detect_variant(manifest: dict[str, Any]) -> str:
    layers = manifest.get("layers") or []
    if manifest.get("mediaType") == DOCKER_MANIFEST:
        return "docker"
    if any(layer.get("mediaType") == WASM_LAYER for layer in layers):
        return "oci"
    return "compat"


# ------------------------------------------------------------------------------------- extraction (Istio's way)


def extract_wasm(manifest: dict[str, Any], fetch: Callable[[dict[str, Any]], bytes]) -> tuple[bytes, str]:
    """plugin.wasm from an image, trying the shapes in the order Istio's image fetcher does: a Docker schema 2
    manifest (last layer docker tar+gzip), else OCI compat (last layer OCI tar+gzip), else the oci variant (exactly
    two layers, one of them the raw Wasm layer). FETCH returns a descriptor's (verified) blob. Returns the module
    bytes and the variant name ("docker", "compat" or "oci")."""
    layers = manifest.get("layers") or []
    if manifest.get("mediaType") == DOCKER_MANIFEST:
        try:
            wasm = _extract_compat(layers, DOCKER_LAYER_GZIP, fetch)
        except _ShapeError as e:
            raise RegistryError(f"the Docker image is not a Wasm image ({e})",
                                fix="push an image made by `wasmfilter package` (Wasm Image Specification)") from e
        return _checked_wasm(wasm, "docker"), "docker"
    errors = []
    try:
        return _checked_wasm(_extract_compat(layers, OCI_LAYER_GZIP, fetch), "compat"), "compat"
    except _ShapeError as e:
        errors.append(f"not the compat variant ({e})")
    try:
        return _checked_wasm(_extract_oci(layers, fetch), "oci"), "oci"
    except _ShapeError as e:
        errors.append(f"not the oci variant ({e})")
    raise RegistryError("the image is not a Wasm image: " + "; ".join(errors),
                        fix="push an image made by `wasmfilter package` (Wasm Image Specification)")


class _ShapeError(Exception):
    pass


def _extract_compat(layers: list[dict[str, Any]], media_type: str, fetch: Callable[[dict[str, Any]], bytes]
                    ) -> bytes:
    if not layers:
        raise _ShapeError("the image has no layers")
    last = layers[-1]
    if last.get("mediaType") != media_type:
        raise _ShapeError(f"last layer is {last.get('mediaType')}, expected {media_type}")
    blob = fetch(last)
    try:
        raw = gzip.decompress(blob)
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            for member in tar:
                if member.isfile() and os.path.basename(member.name) == PLUGIN_FILE:
                    handle = tar.extractfile(member)
                    if handle is not None:
                        return handle.read()
    except (OSError, EOFError, tarfile.TarError) as e:
        raise RegistryError(f"the image layer {last.get('digest')} is not a tar+gzip archive ({e})",
                            fix="rebuild the image with `wasmfilter package`") from e
    raise RegistryError(f"the image layer {last.get('digest')} holds no {PLUGIN_FILE}",
                        fix=f"the compat variant needs a single layer with {PLUGIN_FILE} in it")


def _extract_oci(layers: list[dict[str, Any]], fetch: Callable[[dict[str, Any]], bytes]) -> bytes:
    if len(layers) != 2:
        raise _ShapeError(f"the oci variant has exactly 2 layers, this image has {len(layers)}")
    for layer in layers:
        if layer.get("mediaType") == WASM_LAYER:
            return fetch(layer)
    raise _ShapeError(f"no layer of type {WASM_LAYER}")


def _checked_wasm(wasm: bytes, variant: str) -> bytes:
    # Istio's cache does the same check after extraction (isValidWasmBinary: 8-byte header, \0asm magic).
    if len(wasm) < 8 or not wasm.startswith(WASM_MAGIC):
        raise RegistryError(f"the {PLUGIN_FILE} in this {variant} image is not a WebAssembly module "
                            f"(starts with {wasm[:4]!r})", fix="push an image holding a built filter")
    return wasm


# ------------------------------------------------------------------------------------------- image layouts


def write_layout(image: Image, dest: Path, *, tag: str = "latest", force: bool = False) -> Path:
    """Write IMAGE as an OCI image layout: a directory, or a tarball of one when DEST ends in .tar."""
    dest = Path(dest)
    is_tar = dest.suffix == ".tar"
    if dest.exists():
        if not force:
            raise UsageError(f"'{dest}' already exists", fix="pass --force to overwrite it, or choose another -o")
        if is_tar and dest.is_dir():
            raise UsageError(f"'{dest}' is a directory", fix="choose another -o")
    files = _layout_files(image, tag)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if is_tar:
        tmp = dest.with_name(dest.name + ".partial")
        tmp.write_bytes(_layer_tar(files))
        tmp.replace(dest)
    else:
        if dest.exists():
            if not (dest / "oci-layout").is_file():
                raise UsageError(f"'{dest}' exists and is not an OCI image layout", fix="choose another -o")
            shutil.rmtree(dest)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
        try:
            for name, data in files.items():
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                (tmp / name).write_bytes(data)
            tmp.replace(dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return dest


def _layout_files(image: Image, tag: str) -> dict[str, bytes]:
    if not TAG_PATTERN.match(tag):
        raise UsageError(f"'{tag}' is not a valid tag", fix="use letters, digits, '_', '.', '-' (max 128)")
    desc = _descriptor(image.media_type, image.manifest, {REF_NAME_ANNOTATION: tag})
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [desc]}
    files = {"oci-layout": _canonical_json({"imageLayoutVersion": "1.0.0"}), "index.json": _canonical_json(index),
             _blob_path(image.digest): image.manifest}
    for digest, data in image.blobs.items():
        files[_blob_path(digest)] = data
    return files


def _blob_path(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    return f"blobs/{algo}/{hexpart}"


def read_layout(src: Path, *, tag: str | None = None) -> Image:
    """An image from an OCI image layout (directory or .tar); every blob's digest is checked."""
    src = Path(src)
    if not src.exists():
        raise UsageError(f"'{src}' does not exist", fix="pass a layout made by `wasmfilter package`")
    if src.is_dir():
        def read(name: str) -> bytes:
            try:
                return (src / name).read_bytes()
            except OSError as e:
                raise UsageError(f"'{src}' is not a complete OCI image layout: {name} is missing",
                                 fix="re-create it with `wasmfilter package`") from e
    else:
        try:
            with tarfile.open(src) as tar:
                members = {m.name.removeprefix("./"): tar.extractfile(m).read()  # type: ignore[union-attr]
                           for m in tar.getmembers() if m.isfile()}
        except (tarfile.TarError, OSError) as e:
            raise UsageError(f"'{src}' is not a tar archive ({e})", fix="pass a layout made by `wasmfilter package`"
                             ) from e

        def read(name: str) -> bytes:
            if name not in members:
                raise UsageError(f"'{src}' is not a complete OCI image layout: {name} is missing",
                                 fix="re-create it with `wasmfilter package`")
            return members[name]
    try:
        index = json.loads(read("index.json"))
        manifests = index["manifests"]
    except (ValueError, KeyError, TypeError) as e:
        raise UsageError(f"'{src}': index.json is not an OCI image index", fix="re-create it with `wasmfilter package`"
                         ) from e
    if tag is not None:
        manifests = [m for m in manifests if (m.get("annotations") or {}).get(REF_NAME_ANNOTATION) == tag]
    if len(manifests) != 1:
        raise UsageError(f"'{src}' holds {len(manifests)} matching images, expected one",
                         fix="pass a layout made by `wasmfilter package`")
    desc = manifests[0]
    manifest = _verified(read(_blob_path(desc["digest"])), desc, f"layout '{src}'")
    parsed = json.loads(manifest)
    image = Image(manifest=manifest, media_type=desc["mediaType"])
    for d in [parsed["config"], *parsed.get("layers", [])]:
        image.blobs[d["digest"]] = _verified(read(_blob_path(d["digest"])), d, f"layout '{src}'")
    return image


def _verified(data: bytes, desc: dict[str, Any], where: str) -> bytes:
    actual = sha256_digest(data)
    if actual != desc.get("digest"):
        raise RegistryError(f"digest mismatch in {where}: blob {desc.get('digest')} has content {actual}",
                            fix="the content was altered or corrupted; re-create or re-push it")
    if "size" in desc and len(data) != desc["size"]:
        raise RegistryError(f"size mismatch in {where}: blob {desc.get('digest')} is {len(data)} bytes, "
                            f"expected {desc['size']}", fix="the content was altered or corrupted; re-push it")
    return data


# ------------------------------------------------------------------------------------------------- package


@dataclass(frozen=True)
class PackageResult:
    image: Image
    output: Path | None
    wasm: Path
    wasm_sha256: str
    variant: str
    seconds: float

    @property
    def digest(self) -> str:
        return self.image.digest


def image_for_filter(path: str | Path | None = None, *, variant: str = "compat", wasm: Path | None = None,
                     progress: Progress | None = None) -> tuple[Image, Path]:
    """Build the filter (or take WASM), check it would load in Envoy, and return its image and module path."""
    from wasmfilter.build import abi
    from wasmfilter.manifest import load_manifest

    manifest = load_manifest(path)
    if wasm is None:
        from wasmfilter.build.cargo import build

        wasm = build(manifest.directory, progress=progress).wasm
    elif not Path(wasm).is_file():
        raise UsageError(f"module '{wasm}' does not exist", fix="pass the .wasm that `wasmfilter build` produced")
    data = Path(wasm).read_bytes()
    if not data.startswith(WASM_MAGIC):
        raise UsageError(f"'{wasm}' is not a WebAssembly binary", fix="pass the .wasm that `wasmfilter build` produced")
    report = abi.check(wasm)
    image = build_image(data, variant=variant, root_id=manifest.effective_root_id, abi_version=report.abi_version,
                        title=manifest.name)
    return image, Path(wasm)


def package(path: str | Path | None = None, *, output: Path | None = None, variant: str = "compat",
            wasm: Path | None = None, tag: str = "latest", force: bool = False,
            progress: Progress | None = None) -> PackageResult:
    """`wasmfilter package`: the built filter as an OCI image layout directory, or a .tar of one."""
    start = time.perf_counter()
    if output is not None and Path(output).exists() and not force:  # before any build: nothing is overwritten
        raise UsageError(f"'{output}' already exists", fix="pass --force to overwrite it, or choose another -o")
    image, wasm_path = image_for_filter(path, variant=variant, wasm=wasm, progress=progress)
    written = write_layout(image, output, tag=tag, force=force) if output is not None else None
    return PackageResult(image=image, output=written, wasm=wasm_path,
                         wasm_sha256=hashlib.sha256(wasm_path.read_bytes()).hexdigest(), variant=variant,
                         seconds=time.perf_counter() - start)


# ------------------------------------------------------------------------------------------------ references


@dataclass(frozen=True)
class Reference:
    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        """What goes after /manifests/: the digest if given, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        out = f"{self.registry}/{self.repository}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.repository, self.tag, digest)


DOCKER_HUB = "docker.io"


def parse_reference(text: str) -> Reference:
    """HOST[:PORT]/REPO[:TAG][@sha256:DIGEST], with an optional oci:// prefix; no host means Docker Hub."""
    raw = text.strip().removeprefix("oci://")
    bad = UsageError(f"'{text}' is not an image reference",
                     fix="use HOST[:PORT]/NAME[:TAG][@sha256:DIGEST], e.g. 127.0.0.1:5000/filters/auth:v1")
    if not raw or "://" in raw or any(c.isspace() for c in raw):
        raise bad
    digest = None
    if "@" in raw:
        raw, digest = raw.split("@", 1)
        if not DIGEST_PATTERN.match(digest):
            raise UsageError(f"'{digest}' in '{text}' is not a sha256 digest", fix="use @sha256:<64 hex digits>")
    first, _, rest = raw.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, rest
    else:
        registry, path = DOCKER_HUB, raw
    tag = None
    last_slash = path.rfind("/")
    if ":" in path[last_slash + 1:]:
        path, tag = path.rsplit(":", 1)
        if not TAG_PATTERN.match(tag):
            raise UsageError(f"'{tag}' in '{text}' is not a valid tag", fix="use letters, digits, '_', '.', '-'")
    if registry == DOCKER_HUB and "/" not in path:
        path = "library/" + path
    if not REPO_PATTERN.match(path):
        raise bad
    if tag is None and digest is None:
        tag = "latest"
    return Reference(registry, path, tag, digest)


# ----------------------------------------------------------------------------------------------- credentials


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    source: str = "flags"


def docker_config_path(explicit: Path | None = None) -> Path:
    if explicit is not None:
        return Path(explicit)
    base = os.environ.get("DOCKER_CONFIG")
    return (Path(base) if base else Path.home() / ".docker") / "config.json"


def credentials_for(registry: str, *, username: str | None = None, password: str | None = None,
                    docker_config: Path | None = None) -> Credentials | None:
    """Flags win; else the Docker config file's `auths` entry (or credential helper) for REGISTRY; else None."""
    if username is not None or password is not None:
        if not username or password is None:
            raise UsageError("--username and --password go together", fix="pass both, or neither")
        return Credentials(username, password)
    path = docker_config_path(docker_config)
    if not path.is_file():
        if docker_config is not None:
            raise UsageError(f"Docker config '{path}' does not exist", fix="pass an existing config.json")
        return None
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UsageError(f"Docker config '{path}' is not valid JSON ({e})", fix="fix or remove the file") from e
    keys = [registry, f"https://{registry}", f"http://{registry}", f"https://{registry}/v1/", f"https://{registry}/v2/"]
    if registry == DOCKER_HUB:
        keys = ["https://index.docker.io/v1/", "index.docker.io", "docker.io", *keys]
    helper = (cfg.get("credHelpers") or {}).get(registry)
    auths = cfg.get("auths") or {}
    for key in keys:
        entry = auths.get(key)
        if not entry:
            continue
        if entry.get("auth"):
            try:
                user, _, pwd = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError) as e:
                raise UsageError(f"Docker config '{path}': the auth for {key} is not base64 user:password",
                                 fix="run `docker login` again") from e
            return Credentials(user, pwd, f"{path} ({key})")
        if entry.get("username") and entry.get("password") is not None:
            return Credentials(entry["username"], entry["password"], f"{path} ({key})")
    helper = helper or cfg.get("credsStore")
    if helper:
        return _credential_helper(helper, registry)
    return None


def _credential_helper(helper: str, registry: str) -> Credentials | None:
    exe = shutil.which(f"docker-credential-{helper}")
    if exe is None:
        return None
    out = subprocess.run([exe, "get"], input=registry, capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        return None
    try:
        data = json.loads(out.stdout)
    except ValueError:
        return None
    return Credentials(data.get("Username", ""), data.get("Secret", ""), f"docker-credential-{helper}")


# ---------------------------------------------------------------------------------------- distribution client


class RegistryClient:
    """A small OCI distribution API client (blobs, manifests) with Basic and Bearer-token auth."""

    def __init__(self, registry: str, *, insecure: bool = False, credentials: Credentials | None = None,
                 timeout: float = 30.0):
        import requests

        self.registry = registry
        self.insecure = insecure
        self.credentials = credentials
        self.timeout = timeout
        host = "registry-1.docker.io" if registry == DOCKER_HUB else registry
        self.base = f"{'http' if insecure else 'https'}://{host}"
        self.session = requests.Session()
        self._auth: dict[str, str] = {}  # scope -> Authorization header

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport

    def _request(self, method: str, url: str, *, scope: str, expect: tuple[int, ...], what: str,
                 **kwargs: Any) -> Any:
        import requests

        if not url.startswith("http"):
            url = urljoin(self.base + "/", url.lstrip("/"))
        headers = dict(kwargs.pop("headers", {}) or {})
        for attempt in range(2):
            if scope in self._auth:
                headers["Authorization"] = self._auth[scope]
            try:
                resp = self.session.request(method, url, headers=headers, timeout=self.timeout,
                                            allow_redirects=True, **kwargs)
            except requests.exceptions.SSLError as e:
                raise RegistryError(f"TLS to {self.registry} failed ({_short(e)})",
                                    fix="for a plain-HTTP registry pass --insecure") from e
            except requests.exceptions.ConnectionError as e:
                raise RegistryError(f"cannot connect to registry {self.registry} ({_short(e)})",
                                    fix="check the registry address and that it is running") from e
            except requests.exceptions.RequestException as e:
                raise RegistryError(f"request to registry {self.registry} failed ({_short(e)})",
                                    fix="check the registry address and network") from e
            if resp.status_code == 401 and attempt == 0:
                self._authenticate(resp, scope)
                continue
            break
        if resp.status_code in expect:
            return resp
        raise self._error(resp, what)

    def _authenticate(self, resp: Any, scope: str) -> None:
        challenge = resp.headers.get("WWW-Authenticate", "")
        scheme, _, params_text = challenge.partition(" ")
        params = dict(re.findall(r'(\w+)="([^"]*)"', params_text))
        creds = self.credentials
        if scheme.lower() == "basic":
            if creds is None:
                raise RegistryError(f"registry {self.registry} requires authentication (401)",
                                    fix="pass --username/--password, or `docker login` so ~/.docker/config.json "
                                        "holds credentials for it")
            token = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
            self._auth[scope] = f"Basic {token}"
            return
        if scheme.lower() == "bearer" and params.get("realm"):
            query = {"service": params.get("service", "")}
            if scope:
                query["scope"] = scope
            auth = (creds.username, creds.password) if creds else None
            import requests

            try:
                tok = self.session.get(params["realm"] + "?" + urlencode(query), auth=auth, timeout=self.timeout)
            except requests.exceptions.RequestException as e:
                raise RegistryError(f"cannot reach the token service of {self.registry} ({_short(e)})",
                                    fix="check network access to " + params["realm"]) from e
            if tok.status_code == 401 and creds is None:
                raise RegistryError(f"registry {self.registry} requires authentication (401 from its token service)",
                                    fix="pass --username/--password, or `docker login` so ~/.docker/config.json "
                                        "holds credentials for it")
            if tok.status_code == 401:
                raise RegistryError(f"registry {self.registry} rejected the credentials (401 from its token service)",
                                    fix="check --username/--password or the Docker config entry")
            if tok.status_code != 200:
                raise RegistryError(f"token service of {self.registry} answered {tok.status_code}",
                                    fix="check the credentials and repository name")
            body = tok.json()
            token = body.get("token") or body.get("access_token")
            if not token:
                raise RegistryError(f"token service of {self.registry} returned no token", fix="check credentials")
            self._auth[scope] = f"Bearer {token}"
            return
        raise RegistryError(f"registry {self.registry} requires authentication with an unsupported scheme "
                            f"('{challenge[:60]}')", fix="use a registry with Basic or Bearer token auth")

    def _error(self, resp: Any, what: str) -> RegistryError:
        code = ""
        message = ""
        try:
            errs = resp.json().get("errors") or []
            if errs:
                code = errs[0].get("code", "")
                message = errs[0].get("message", "")
        except ValueError:
            pass
        reason = f"{resp.status_code}{' ' + code if code else ''}{': ' + message if message else ''}"
        if resp.status_code == 401:
            who = f" for user '{self.credentials.username}'" if self.credentials else ""
            return RegistryError(f"registry {self.registry} rejected the credentials{who} ({reason}) on {what}",
                                 fix="check --username/--password or the Docker config entry for " + self.registry)
        if resp.status_code == 403:
            return RegistryError(f"registry {self.registry} denied {what} ({reason})",
                                 fix="the account needs push/pull rights on that repository")
        if resp.status_code == 404:
            return RegistryError(f"{what}: not found on {self.registry} ({reason})",
                                 fix="check the repository name and tag (push it first?)")
        return RegistryError(f"registry {self.registry} failed {what} ({reason})",
                             fix="see the registry's logs", detail=resp.text[:2000] or None)

    # -- API

    def ping(self) -> None:
        self._request("GET", "/v2/", scope="", expect=(200,), what="the API check GET /v2/")

    def blob_exists(self, repo: str, desc: dict[str, Any]) -> bool:
        resp = self._request("HEAD", f"/v2/{repo}/blobs/{desc['digest']}", scope=f"repository:{repo}:pull,push",
                             expect=(200, 404), what=f"HEAD blob {desc['digest']}")
        return resp.status_code == 200 and int(resp.headers.get("Content-Length", -1)) == desc["size"]

    def upload_blob(self, repo: str, data: bytes, digest: str) -> None:
        scope = f"repository:{repo}:pull,push"
        start = self._request("POST", f"/v2/{repo}/blobs/uploads/", scope=scope, expect=(202,),
                              what=f"starting the upload of {digest}")
        location = start.headers.get("Location")
        if not location:
            raise RegistryError(f"registry {self.registry} gave no upload location", fix="use another registry")
        url = urljoin(self.base + "/", location)
        url += ("&" if "?" in url else "?") + urlencode({"digest": digest})
        done = self._request("PUT", url, scope=scope, expect=(201,), what=f"uploading blob {digest}", data=data,
                             headers={"Content-Type": "application/octet-stream"})
        echoed = done.headers.get("Docker-Content-Digest")
        if echoed and echoed != digest:
            raise RegistryError(f"registry stored blob {digest} as {echoed}", fix="the upload was corrupted; retry")

    def put_manifest(self, repo: str, reference: str, image: Image) -> str:
        resp = self._request("PUT", f"/v2/{repo}/manifests/{reference}", scope=f"repository:{repo}:pull,push",
                             expect=(201,), what=f"putting the manifest {repo}:{reference}", data=image.manifest,
                             headers={"Content-Type": image.media_type})
        echoed = resp.headers.get("Docker-Content-Digest")
        if echoed and echoed != image.digest:
            raise RegistryError(f"registry stored the manifest as {echoed}, expected {image.digest}",
                                fix="the upload was corrupted; retry")
        return image.digest

    def get_manifest(self, ref: Reference) -> tuple[bytes, str]:
        resp = self._request("GET", f"/v2/{ref.repository}/manifests/{ref.reference}",
                             scope=f"repository:{ref.repository}:pull", expect=(200,),
                             what=f"manifest {ref}", headers={"Accept": MANIFEST_ACCEPT})
        body = resp.content
        actual = sha256_digest(body)
        echoed = resp.headers.get("Docker-Content-Digest")
        if ref.digest and actual != ref.digest:
            raise RegistryError(f"digest mismatch: manifest of {ref} has digest {actual}",
                                fix="the registry served other content than requested; do not use it")
        if echoed and echoed != actual:
            raise RegistryError(f"digest mismatch: registry says manifest {echoed}, content is {actual}",
                                fix="the manifest was altered in transit or storage")
        media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        return body, media_type

    def head_manifest(self, ref: Reference) -> str:
        body, _ = self.get_manifest(ref)
        return sha256_digest(body)

    def get_blob(self, repo: str, desc: dict[str, Any]) -> bytes:
        resp = self._request("GET", f"/v2/{repo}/blobs/{desc['digest']}", scope=f"repository:{repo}:pull",
                             expect=(200,), what=f"blob {desc['digest']} of {repo}")
        return _verified(resp.content, desc, f"registry {self.registry} ({repo})")


def _short(e: Exception) -> str:
    text = str(e)
    m = re.search(r"\[Errno -?\d+\] [^'\")]+|Connection refused|Name or service not known|timed out", text)
    return m.group(0) if m else text.splitlines()[0][:160]


# ---------------------------------------------------------------------------------------------- push / pull


@dataclass(frozen=True)
class PushResult:
    reference: Reference
    digest: str
    variant: str
    size: int
    uploaded: int  # blobs actually sent (the rest were already there)
    seconds: float


def client_for(ref: Reference, *, insecure: bool = False, username: str | None = None, password: str | None = None,
               docker_config: Path | None = None) -> RegistryClient:
    creds = credentials_for(ref.registry, username=username, password=password, docker_config=docker_config)
    return RegistryClient(ref.registry, insecure=insecure, credentials=creds)


def push_image(image: Image, reference: str | Reference, *, insecure: bool = False, username: str | None = None,
               password: str | None = None, docker_config: Path | None = None) -> PushResult:
    """Upload IMAGE's blobs (skipping ones the registry has), then its manifest under the tag. The tag only
    appears after every blob is in, so a failed push never leaves a tag pointing at a half-uploaded image."""
    ref = parse_reference(reference) if isinstance(reference, str) else reference
    if ref.digest and ref.digest != image.digest:
        raise UsageError(f"'{ref}' names digest {ref.digest} but the image is {image.digest}",
                         fix="push by tag, or use the image's own digest")
    start = time.perf_counter()
    uploaded = 0
    manifest = image.manifest_json
    with client_for(ref, insecure=insecure, username=username, password=password,
                    docker_config=docker_config) as client:
        for desc in _unique([manifest["config"], *manifest.get("layers", [])]):
            data = _verified(image.blobs[desc["digest"]], desc, "the local image")
            if client.blob_exists(ref.repository, desc):
                continue
            client.upload_blob(ref.repository, data, desc["digest"])
            uploaded += 1
        client.put_manifest(ref.repository, ref.tag or image.digest, image)
    return PushResult(ref.with_digest(image.digest), image.digest, image.variant, image.size, uploaded,
                      time.perf_counter() - start)


def _unique(descs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    out = []
    for d in descs:
        if d["digest"] not in seen:
            seen.add(d["digest"])
            out.append(d)
    return out


def push(reference: str, source: str | Path | None = None, *, variant: str = "compat", insecure: bool = False,
         username: str | None = None, password: str | None = None, docker_config: Path | None = None,
         progress: Progress | None = None) -> PushResult:
    """`wasmfilter push`: SOURCE is a filter directory (built and packaged here) or a layout from `package`."""
    ref = parse_reference(reference)  # a bad reference fails before any build
    src = Path(source) if source is not None else Path.cwd()
    if not src.exists():
        raise UsageError(f"'{src}' does not exist", fix="pass a filter directory or an OCI layout from `package`")
    if src.is_file() and src.suffix == ".tar" or (src / "oci-layout").is_file():
        image = read_layout(src)
    else:
        image, _ = image_for_filter(src, variant=variant, progress=progress)
    return push_image(image, ref, insecure=insecure, username=username, password=password,
                      docker_config=docker_config)


@dataclass(frozen=True)
class PullResult:
    reference: Reference
    digest: str
    variant: str
    wasm: bytes
    output: Path | None
    seconds: float

    @property
    def wasm_sha256(self) -> str:
        return hashlib.sha256(self.wasm).hexdigest()


def pull(reference: str, *, output: Path | None = None, insecure: bool = False, username: str | None = None,
         password: str | None = None, docker_config: Path | None = None, expect_digest: str | None = None,
         force: bool = False) -> PullResult:
    """`wasmfilter pull`: fetch the image as Istio's image fetcher does and write its plugin.wasm to OUTPUT.
    Every blob and the manifest are checked against their digests; EXPECT_DIGEST pins the manifest."""
    ref = parse_reference(reference)
    if output is not None and Path(output).exists() and not force:
        raise UsageError(f"'{output}' already exists", fix="pass --force to overwrite it, or choose another -o")
    start = time.perf_counter()
    with client_for(ref, insecure=insecure, username=username, password=password,
                    docker_config=docker_config) as client:
        body, media_type = client.get_manifest(ref)
        digest = sha256_digest(body)
        if expect_digest:
            want = expect_digest if expect_digest.startswith("sha256:") else "sha256:" + expect_digest
            if want != digest:
                raise RegistryError(f"digest mismatch: {ref} is {digest}, expected {want}",
                                    fix="the tag now points at another image; pull by digest or update sha256")
        try:
            manifest = json.loads(body)
        except ValueError as e:
            raise RegistryError(f"the manifest of {ref} is not JSON", fix="push the image again") from e
        kind = manifest.get("mediaType") or media_type
        if kind in (OCI_INDEX, DOCKER_LIST) or "manifests" in manifest:
            raise RegistryError(f"{ref} is an image index (multi-platform), not a single Wasm image",
                                fix="pull the platform-specific image by digest")
        wasm, variant = extract_wasm(manifest, lambda desc: client.get_blob(ref.repository, desc))
    if output is not None:
        out = Path(output)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".partial")
        tmp.write_bytes(wasm)
        tmp.replace(out)
    return PullResult(ref.with_digest(digest), digest, variant, wasm, Path(output) if output else None,
                      time.perf_counter() - start)


def resolve_digest(reference: str, *, insecure: bool = False, username: str | None = None,
                   password: str | None = None, docker_config: Path | None = None) -> str:
    """The manifest digest a tag points at (verified against the content)."""
    ref = parse_reference(reference)
    with client_for(ref, insecure=insecure, username=username, password=password,
                    docker_config=docker_config) as client:
        return client.head_manifest(ref)


__all__ = ["Image", "Reference", "RegistryError", "WasmfilterError", "build_image", "extract_wasm", "package",
           "parse_reference", "pull", "push", "push_image", "read_layout", "write_layout", "resolve_digest"]
