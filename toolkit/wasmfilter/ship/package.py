"""The package step: build the filter (or take a given .wasm), check that Envoy would load it, make its image
(`image_for_filter`), and `package` it as an OCI image layout; the output is checked before any build, so an
existing path is never overwritten without force."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wasmfilter.errors import UsageError
from wasmfilter.files import refuse_existing
from wasmfilter.ship.image import WASM_MAGIC, Image, build_image
from wasmfilter.ship.layout import write_layout

Progress = Callable[[str], None]


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
    if output is not None:
        refuse_existing(output, force=force)  # before any build: nothing is overwritten
    image, wasm_path = image_for_filter(path, variant=variant, wasm=wasm, progress=progress)
    written = write_layout(image, output, tag=tag, force=force) if output is not None else None
    return PackageResult(image=image, output=written, wasm=wasm_path,
                         wasm_sha256=hashlib.sha256(wasm_path.read_bytes()).hexdigest(), variant=variant,
                         seconds=time.perf_counter() - start)
