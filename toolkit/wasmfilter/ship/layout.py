"""OCI image layouts on disk: `write_layout` (a directory or a reproducible .tar of one, never half-written, never
over an existing path without force) and `read_layout` (every blob checked against its digest)."""

from __future__ import annotations

import json
import shutil
import tarfile
import tempfile
from pathlib import Path

from wasmfilter.errors import UsageError
from wasmfilter.files import refuse_existing
from wasmfilter.ship.image import OCI_INDEX, REF_NAME_ANNOTATION, Image, canonical_json, descriptor, tar_bytes, verified
from wasmfilter.ship.reference import TAG_PATTERN


def write_layout(image: Image, dest: Path, *, tag: str = "latest", force: bool = False) -> Path:
    """Write IMAGE as an OCI image layout: a directory, or a tarball of one when DEST ends in .tar."""
    dest = Path(dest)
    is_tar = dest.suffix == ".tar"
    refuse_existing(dest, force=force)
    if is_tar and dest.is_dir():
        raise UsageError(f"'{dest}' is a directory", fix="choose another -o")
    files = _layout_files(image, tag)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if is_tar:
        tmp = dest.with_name(dest.name + ".partial")
        tmp.write_bytes(tar_bytes(files))
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
    desc = descriptor(image.media_type, image.manifest, {REF_NAME_ANNOTATION: tag})
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [desc]}
    files = {"oci-layout": canonical_json({"imageLayoutVersion": "1.0.0"}), "index.json": canonical_json(index),
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
    manifest = verified(read(_blob_path(desc["digest"])), desc, f"layout '{src}'")
    parsed = json.loads(manifest)
    image = Image(manifest=manifest, media_type=desc["mediaType"])
    for d in [parsed["config"], *parsed.get("layers", [])]:
        image.blobs[d["digest"]] = verified(read(_blob_path(d["digest"])), d, f"layout '{src}'")
    return image
