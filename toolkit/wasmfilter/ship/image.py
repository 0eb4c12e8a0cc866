"""The Wasm image itself: media types, the `Image` (manifest + blobs), reproducible `build_image` in the three
shapes of the Wasm Image Specification, the deterministic tar/gzip it uses, variant detection, blob digest checks,
and `extract_wasm`, which takes plugin.wasm out of an image in the order Istio's image fetcher does.

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

import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from wasmfilter.errors import RegistryError, UsageError

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


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(obj: Any) -> bytes:
    """JSON with sorted keys and no whitespace: equal objects give equal bytes."""
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


def descriptor(media_type: str, data: bytes, annotations: dict[str, str] | None = None) -> dict[str, Any]:
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
    return canonical_json(cfg)


def tar_bytes(files: dict[str, bytes]) -> bytes:
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


def gzip_bytes(data: bytes) -> bytes:
    """Gzip at level 9 with mtime 0 and no file name: equal input gives equal bytes."""
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
        tar = tar_bytes({PLUGIN_FILE: wasm, RUNTIME_CONFIG_FILE: runtime})
        layer = gzip_bytes(tar)
        config = canonical_json({"architecture": "wasm", "os": "wasip1", "config": {},
                                  "rootfs": {"type": "layers", "diff_ids": [sha256_digest(tar)]}})
        blobs = {sha256_digest(config): config, sha256_digest(layer): layer}
        if variant == "compat":
            manifest: dict[str, Any] = {
                "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": descriptor(OCI_CONFIG, config),
                "layers": [descriptor(OCI_LAYER_GZIP, layer)],
                "annotations": {VARIANT_ANNOTATION: "compat", **annotations},
            }
            media_type = OCI_MANIFEST
        else:
            manifest = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                        "config": descriptor(DOCKER_CONFIG, config),
                        "layers": [descriptor(DOCKER_LAYER_GZIP, layer)]}
            media_type = DOCKER_MANIFEST
    else:
        blobs = {sha256_digest(runtime): runtime, sha256_digest(wasm): wasm}
        manifest = {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": descriptor(WASM_CONFIG, runtime),
            "layers": [descriptor(WASM_CONFIG, runtime, {TITLE_ANNOTATION: RUNTIME_CONFIG_FILE}),
                       descriptor(WASM_LAYER, wasm, {TITLE_ANNOTATION: PLUGIN_FILE})],
        }
        if annotations:
            manifest["annotations"] = annotations
        media_type = OCI_MANIFEST
    return Image(manifest=canonical_json(manifest), media_type=media_type, blobs=blobs)


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
    not_wasm = "push an image made by `wasmfilter package` (Wasm Image Specification)"
    if manifest.get("mediaType") == DOCKER_MANIFEST:
        problem = _compat_shape_problem(layers, DOCKER_LAYER_GZIP)
        if problem:
            raise RegistryError(f"the Docker image is not a Wasm image ({problem})", fix=not_wasm)
        return _checked_wasm(_extract_compat(layers[-1], fetch), "docker"), "docker"
    compat_problem = _compat_shape_problem(layers, OCI_LAYER_GZIP)
    if not compat_problem:
        return _checked_wasm(_extract_compat(layers[-1], fetch), "compat"), "compat"
    wasm_layers = [layer for layer in layers if layer.get("mediaType") == WASM_LAYER]
    if len(layers) == 2 and wasm_layers:
        return _checked_wasm(fetch(wasm_layers[0]), "oci"), "oci"
    oci_problem = (f"the oci variant has exactly 2 layers, this image has {len(layers)}" if len(layers) != 2
                   else f"no layer of type {WASM_LAYER}")
    raise RegistryError(f"the image is not a Wasm image: not the compat variant ({compat_problem}); "
                        f"not the oci variant ({oci_problem})", fix=not_wasm)


def _compat_shape_problem(layers: list[dict[str, Any]], media_type: str) -> str | None:
    """Why LAYERS are not the compat (or docker) shape, None if they are: the last layer is a tar+gzip."""
    if not layers:
        return "the image has no layers"
    if layers[-1].get("mediaType") != media_type:
        return f"last layer is {layers[-1].get('mediaType')}, expected {media_type}"
    return None


def _extract_compat(last: dict[str, Any], fetch: Callable[[dict[str, Any]], bytes]) -> bytes:
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


def _checked_wasm(wasm: bytes, variant: str) -> bytes:
    # Istio's cache does the same check after extraction (isValidWasmBinary: 8-byte header, \0asm magic).
    if len(wasm) < 8 or not wasm.startswith(WASM_MAGIC):
        raise RegistryError(f"the {PLUGIN_FILE} in this {variant} image is not a WebAssembly module "
                            f"(starts with {wasm[:4]!r})", fix="push an image holding a built filter")
    return wasm


# --------------------------------------------------------------------------------------------- blob digests


def verified(data: bytes, desc: dict[str, Any], where: str) -> bytes:
    """DATA, after checking it against the digest and size of its descriptor DESC (WHERE names its source)."""
    actual = sha256_digest(data)
    if actual != desc.get("digest"):
        raise RegistryError(f"digest mismatch in {where}: blob {desc.get('digest')} has content {actual}",
                            fix="the content was altered or corrupted; re-create or re-push it")
    if "size" in desc and len(data) != desc["size"]:
        raise RegistryError(f"size mismatch in {where}: blob {desc.get('digest')} is {len(data)} bytes, "
                            f"expected {desc['size']}", fix="the content was altered or corrupted; re-push it")
    return data
