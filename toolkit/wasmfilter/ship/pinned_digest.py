"""The sha256 a mesh object pins: the manifest digest of the image as pushed (Istio compares it with the image
manifest digest for oci:// URLs, pkg/wasm/cache.go).

- `--sha256 HEX`: taken as given (it must agree with an `@sha256:` in --image);
- default: asked from the registry --image names (tag or digest); an unreachable registry is an error, never a
  silent fallback. With an explicit --variant the pushed image must be that variant, and with --wasm it must
  hold that module: a pushed image that differs from what is being rendered is refused;
- `--local`: packaged here from the local module (--wasm or a build) as --variant (default compat) —
  reproducible, so it is what `wasmfilter push --variant V` uploads; an `@sha256:` in --image must match it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from wasmfilter.errors import RegistryError, UsageError
from wasmfilter.ship.reference import Reference

SHA256_HEX = re.compile(r"^[a-f0-9]{64}$")
VARIANTS = ("compat", "docker", "oci")


def _hex(digest: str) -> str:
    return digest.removeprefix("sha256:")


def explicit(ref: Reference, sha256: str) -> str:
    if not SHA256_HEX.match(_hex(sha256)):
        raise UsageError(f"'{sha256}' is not a sha256 digest", fix="pass 64 lowercase hex digits")
    if ref.digest and _hex(ref.digest) != _hex(sha256):
        raise UsageError(f"--sha256 {_hex(sha256)} differs from the digest in --image ({ref.digest})",
                         fix="drop --sha256 (the --image digest is used) or pin the image to the same digest")
    return _hex(sha256)


def local(ref: Reference, filter_dir: Path, *, variant: str | None, wasm: Path | None) -> str:
    """The digest of the local module packaged as VARIANT; an @sha256: in REF must be it."""
    from wasmfilter.ship.package import image_for_filter

    chosen = variant or "compat"
    image, module = image_for_filter(filter_dir, variant=chosen, wasm=wasm)
    if ref.digest and ref.digest != image.digest:
        others = {v: image_for_filter(filter_dir, variant=v, wasm=module)[0].digest for v in VARIANTS if v != chosen}
        hit = next((v for v, d in others.items() if d == ref.digest), None)
        fix = (f"the pinned digest is this module as --variant {hit}: pass --variant {hit}" if hit else
               "push this module and pin the digest `wasmfilter push` printed, or rebuild the module that was pushed")
        raise UsageError(f"--image is pinned to {ref.digest}, but the local module packaged as --variant {chosen} is "
                         f"{image.digest}", fix=fix)
    return _hex(image.digest)


def from_registry(ref: Reference, filter_dir: Path, *, variant: str | None, wasm: Path | None, insecure: bool,
                  username: str | None, password: str | None, docker_config: Path | None) -> str:
    """The manifest digest of REF as pushed; refused when the pushed variant/module differs from what is rendered."""
    from wasmfilter.ship.image import detect_variant, sha256_digest
    from wasmfilter.ship.transfer import client_for

    try:
        with client_for(ref, insecure=insecure, username=username, password=password,
                        docker_config=docker_config) as client:
            body, _ = client.get_manifest(ref)
    except RegistryError as e:
        raise RegistryError(f"cannot pin the digest of {ref}: {e.problem}",
                            fix="push the image first (wasmfilter push), or pass --local to pin the local module's "
                                "digest, or --sha256", detail=e.detail) from None
    digest = sha256_digest(body)
    try:
        pushed_variant = detect_variant(json.loads(body))
    except (ValueError, AttributeError):
        raise RegistryError(f"the manifest of {ref} is not an image manifest", fix="push a Wasm image") from None
    if variant is not None and variant != pushed_variant:
        raise UsageError(f"{ref} was pushed as the {pushed_variant} variant, but --variant {variant} was given",
                         fix=f"pass --variant {pushed_variant} (or push again with --variant {variant})")
    if wasm is not None:
        local_digest = "sha256:" + local(Reference(ref.registry, ref.repository, ref.tag), filter_dir,
                                         variant=pushed_variant, wasm=wasm)
        if local_digest != digest:
            raise UsageError(f"{ref} ({digest}) does not hold --wasm {wasm} (as the {pushed_variant} variant: "
                             f"{local_digest})", fix="push this module first, or drop --wasm to pin what was pushed")
    return _hex(digest)


def pinned(ref: Reference, filter_dir: Path, *, sha256: str | None = None, use_local: bool = False,
           variant: str | None = None, wasm: Path | None = None, insecure: bool = False,
           username: str | None = None, password: str | None = None, docker_config: Path | None = None) -> str:
    """The 64-hex sha256 to put in the objects (module docstring)."""
    if variant is not None and variant not in VARIANTS:
        raise UsageError(f"--variant '{variant}' is not valid", fix="use one of: " + ", ".join(VARIANTS))
    if sha256 is not None:
        return explicit(ref, sha256)
    if use_local:
        return local(ref, filter_dir, variant=variant, wasm=wasm)
    return from_registry(ref, filter_dir, variant=variant, wasm=wasm, insecure=insecure, username=username,
                         password=password, docker_config=docker_config)
