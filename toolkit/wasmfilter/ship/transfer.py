"""Moving images between here and a registry: `push_image` (blobs first, the tag last, so a failed push never
leaves a tag on a half-uploaded image), `push` (a filter directory or a layout), `pull` (the manifest and blobs,
every digest checked, plugin.wasm extracted the way Istio does) and `resolve_digest` (what a tag points at)."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wasmfilter.errors import RegistryError, UsageError
from wasmfilter.files import refuse_existing
from wasmfilter.ship.client import RegistryClient
from wasmfilter.ship.credentials import credentials_for
from wasmfilter.ship.image import DOCKER_LIST, OCI_INDEX, Image, extract_wasm, sha256_digest, verified
from wasmfilter.ship.layout import read_layout
from wasmfilter.ship.package import Progress, image_for_filter
from wasmfilter.ship.reference import Reference, parse_reference


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
            data = verified(image.blobs[desc["digest"]], desc, "the local image")
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
    if output is not None:
        refuse_existing(output, force=force)
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
