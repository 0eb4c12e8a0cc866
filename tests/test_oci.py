"""Wasm OCI images against a real registry (Debian's docker-registry) and a real Envoy: package reproducibly, push,
pull back the way Istio's image fetcher does (docker / compat / oci variants), run the pulled module's scenarios,
and every failure mode gives a one-line RegistryError / non-zero exit."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import socket
import tarfile
from pathlib import Path

import pytest

from tests.conftest import AUTH, assert_one_line_error, run_cli
from wasmfilter.errors import RegistryError, UsageError
from wasmfilter.ship.client import RegistryClient
from wasmfilter.ship.image import (
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    VARIANT_ANNOTATION,
    VARIANTS,
    WASM_CONFIG,
    WASM_LAYER,
    Image,
    build_image,
    extract_wasm,
    gzip_bytes,
    sha256_digest,
    tar_bytes,
)
from wasmfilter.ship.layout import read_layout
from wasmfilter.ship.package import image_for_filter, package
from wasmfilter.ship.reference import parse_reference
from wasmfilter.ship.registry import LocalRegistry
from wasmfilter.ship.transfer import pull, push, push_image, resolve_digest

pytestmark = pytest.mark.skipif(not Path("/usr/bin/docker-registry").exists(),
                                reason="docker-registry not installed (make toolchain)")


@pytest.fixture(scope="module")
def auth_build(frozen_auth_build):
    return frozen_auth_build


@pytest.fixture(scope="module")
def registry():
    with LocalRegistry() as reg:
        yield reg


@pytest.fixture(scope="module")
def auth_wasm(auth_build) -> bytes:
    return auth_build.wasm.read_bytes()


# ---------------------------------------------------------------------------------------------- image shapes


@pytest.mark.parametrize("variant", VARIANTS)
def test_package_is_reproducible_and_follows_the_spec(auth_build, tmp_path, variant):
    a = package(AUTH, output=tmp_path / "a.tar", variant=variant, wasm=auth_build.wasm)
    b = package(AUTH, output=tmp_path / "b", variant=variant, wasm=auth_build.wasm)
    assert a.digest == b.digest
    again = package(AUTH, output=tmp_path / "c.tar", variant=variant, wasm=auth_build.wasm)
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "c.tar").read_bytes()
    assert read_layout(tmp_path / "a.tar").digest == read_layout(tmp_path / "b").digest == again.digest
    assert a.wasm_sha256 == auth_build.sha256

    m = a.image.manifest_json
    assert "created" not in json.dumps(m) and "created" not in json.dumps(
        [json.loads(a.image.blobs[m["config"]["digest"]])])
    if variant == "compat":
        assert m["mediaType"] == OCI_MANIFEST
        assert m["annotations"][VARIANT_ANNOTATION] == "compat"
        assert [layer["mediaType"] for layer in m["layers"]] == [OCI_LAYER_GZIP]
    elif variant == "docker":
        assert m["mediaType"] == DOCKER_MANIFEST
        assert [layer["mediaType"] for layer in m["layers"]] == [DOCKER_LAYER_GZIP]
    else:
        assert m["config"]["mediaType"] == WASM_CONFIG
        assert [layer["mediaType"] for layer in m["layers"]] == [WASM_CONFIG, WASM_LAYER]
        assert a.image.blobs[m["layers"][1]["digest"]] == auth_build.wasm.read_bytes()
    if variant != "oci":
        layer = a.image.blobs[m["layers"][0]["digest"]]
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer))) as tar:
            members = tar.getmembers()
            assert [t.name for t in members] == ["plugin.wasm", "runtime-config.json"]
            assert all(t.mtime == 0 and t.uid == 0 and t.gid == 0 and t.uname == "" for t in members)
            assert tar.extractfile("plugin.wasm").read() == auth_build.wasm.read_bytes()  # type: ignore[union-attr]
            runtime = json.loads(tar.extractfile("runtime-config.json").read())  # type: ignore[union-attr]
        assert runtime["type"] == "envoy_proxy" and runtime["config"]["root_ids"] == ["auth"]


def test_package_refuses_a_non_wasm_module_and_existing_output(auth_build, tmp_path):
    fake = tmp_path / "fake.wasm"
    fake.write_bytes(b"#!/bin/sh\necho not wasm\n")
    with pytest.raises(UsageError, match="not a WebAssembly binary"):
        package(AUTH, output=tmp_path / "x.tar", wasm=fake)
    assert not (tmp_path / "x.tar").exists()
    existing = tmp_path / "out.tar"
    existing.write_text("keep me")
    with pytest.raises(UsageError, match="already exists"):
        package(AUTH, output=existing, wasm=auth_build.wasm)
    assert existing.read_text() == "keep me"
    res = run_cli("package", str(AUTH), "-o", str(existing), "--wasm", str(auth_build.wasm))
    assert_one_line_error(res, "already exists", "--force")
    assert existing.read_text() == "keep me"
    res = run_cli("package", str(AUTH), "-o", str(tmp_path / "y.tar"), "--wasm", str(fake))
    assert_one_line_error(res, "not a WebAssembly binary")


def test_layout_with_a_tampered_blob_is_refused(auth_build, tmp_path):
    res = package(AUTH, output=tmp_path / "img", wasm=auth_build.wasm)
    layer = res.image.manifest_json["layers"][0]["digest"]
    blob = tmp_path / "img" / "blobs" / "sha256" / layer.removeprefix("sha256:")
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(RegistryError, match="digest mismatch"):
        read_layout(tmp_path / "img")


def test_references_parse():
    r = parse_reference("oci://127.0.0.1:5000/filters/auth:v1")
    assert (r.registry, r.repository, r.tag, r.digest) == ("127.0.0.1:5000", "filters/auth", "v1", None)
    r = parse_reference("ghcr.io/org/auth@sha256:" + "a" * 64)
    assert (r.registry, r.repository, r.tag) == ("ghcr.io", "org/auth", None)
    assert parse_reference("auth").repository == "library/auth"
    assert parse_reference("localhost:5000/auth").tag == "latest"
    for bad in ["", "http://x/y", "reg:5000/UPPER:v1", "reg.io/a@sha256:abc", "reg.io/a:bad tag"]:
        with pytest.raises(UsageError):
            parse_reference(bad)


# ------------------------------------------------------------------------------------ push / pull / real Envoy


@pytest.mark.parametrize("variant", VARIANTS)
def test_push_pull_roundtrip_and_pulled_module_passes_scenarios(registry, auth_build, auth_wasm, tmp_path, variant):
    from wasmfilter.harness import scenario
    from wasmfilter.harness.runner import run_file, stack_spec
    from wasmfilter.harness.stack import start_stack
    from wasmfilter.manifest import load_manifest

    image = build_image(auth_wasm, variant=variant, root_id="auth")
    ref = f"{registry.host}/filters/auth:{variant}"
    pushed = push_image(image, ref, insecure=True)
    assert pushed.digest == image.digest

    pulled = pull(ref, insecure=True, output=tmp_path / "plugin.wasm", expect_digest=image.digest)
    assert pulled.variant == variant
    assert pulled.digest == image.digest
    assert (tmp_path / "plugin.wasm").read_bytes() == auth_wasm
    assert pulled.wasm_sha256 == auth_build.sha256 == hashlib.sha256(auth_wasm).hexdigest()
    # pull by digest too
    assert pull(f"{registry.host}/filters/auth@{image.digest}", insecure=True).wasm == auth_wasm

    manifest = load_manifest(AUTH)
    files = [f for f in scenario.discover(manifest.scenario_dir) if not scenario.load(f).features]
    assert files, "auth has scenario files without extra cargo features"
    # Every feature-less scenario file of auth on the compat image (Istio's default shape); one file per other shape.
    for path in files if variant == "compat" else files[:1]:
        sfile = scenario.load(path)
        with start_stack(stack_spec(manifest, sfile, tmp_path / "plugin.wasm")) as stack:
            results = run_file(stack, sfile)
        failed = [(r.name, r.problems) for r in results if not r.passed]
        assert results and not failed, (path.name, failed)


def test_second_push_uploads_nothing_new(registry, auth_wasm):
    image = build_image(auth_wasm, variant="compat", root_id="auth")
    push_image(image, f"{registry.host}/filters/again:v1", insecure=True)
    again = push_image(image, f"{registry.host}/filters/again:v2", insecure=True)
    assert again.uploaded == 0
    assert resolve_digest(f"{registry.host}/filters/again:v2", insecure=True) == image.digest


def test_cli_package_push_pull(registry, auth_build, tmp_path):
    layout = tmp_path / "auth.tar"
    res = run_cli("package", str(AUTH), "-o", str(layout), "--wasm", str(auth_build.wasm))
    assert res.code == 0, res.stderr
    digest = read_layout(layout).digest
    assert digest in res.stdout
    ref = f"{registry.host}/cli/auth:v1"
    res = run_cli("push", ref, str(layout), "--insecure")
    assert res.code == 0, res.stderr
    assert digest in res.stdout
    out = tmp_path / "pulled.wasm"
    res = run_cli("pull", ref, "-o", str(out), "--insecure", "--sha256", digest)
    assert res.code == 0, res.stderr
    assert out.read_bytes() == auth_build.wasm.read_bytes()
    # the existing output is kept
    res = run_cli("pull", ref, "-o", str(out), "--insecure")
    assert_one_line_error(res, "already exists")
    # a different expected digest is refused
    res = run_cli("pull", ref, "-o", str(tmp_path / "other.wasm"), "--insecure", "--sha256", "0" * 64)
    assert_one_line_error(res, "digest mismatch")
    assert not (tmp_path / "other.wasm").exists()


# ------------------------------------------------------------------------------------------------------ faults


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_registry_down_is_a_one_line_error(auth_wasm, tmp_path):
    ref = f"127.0.0.1:{_closed_port()}/filters/auth:v1"
    with pytest.raises(RegistryError, match="cannot connect to registry"):
        push_image(build_image(auth_wasm), ref, insecure=True)
    res = run_cli("pull", ref, "--insecure", "-o", str(tmp_path / "p.wasm"))
    assert_one_line_error(res, "cannot connect to registry", "Connection refused")
    assert not (tmp_path / "p.wasm").exists()


def test_tls_to_a_plain_http_registry_says_insecure(registry):
    with pytest.raises(RegistryError, match="--insecure"):
        pull(f"{registry.host}/filters/auth:compat")


def test_missing_tag_is_manifest_unknown(registry, tmp_path):
    res = run_cli("pull", f"{registry.host}/filters/auth:no-such-tag", "--insecure", "-o", str(tmp_path / "p.wasm"))
    assert_one_line_error(res, "not found", "MANIFEST_UNKNOWN")


def test_tampered_blob_in_registry_storage_is_detected(registry, auth_wasm):
    variant_wasm = auth_wasm + b"\0"  # a distinct blob so the tampering touches no other test's image
    image = build_image(variant_wasm, variant="oci", root_id="auth")
    ref = f"{registry.host}/filters/tampered:v1"
    push_image(image, ref, insecure=True)
    wasm_desc = image.manifest_json["layers"][1]
    path = registry.blob_path(wasm_desc["digest"])
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF  # same size, different content
    path.write_bytes(bytes(data))
    with pytest.raises(RegistryError, match="digest mismatch"):
        pull(ref, insecure=True)


def test_non_wasm_layer_is_refused(registry):
    for variant in VARIANTS:
        image = build_image(b"MZ\x90\x00 definitely not wasm", variant=variant, check_wasm=False)
        ref = f"{registry.host}/filters/notwasm:{variant}"
        push_image(image, ref, insecure=True)
        with pytest.raises(RegistryError, match="not a WebAssembly module"):
            pull(ref, insecure=True)


def test_image_of_another_shape_is_refused(registry):
    # A plain OCI image whose single layer is an uncompressed tar: neither compat nor oci variant.
    config = b"{}"
    layer = b"just bytes"
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": sha256_digest(config), "size": len(config)},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                            "digest": sha256_digest(layer), "size": len(layer)}]}
    image = Image(manifest=json.dumps(manifest).encode(), media_type=OCI_MANIFEST,
                      blobs={sha256_digest(config): config, sha256_digest(layer): layer})
    ref = f"{registry.host}/filters/other:v1"
    push_image(image, ref, insecure=True)
    with pytest.raises(RegistryError, match="not a Wasm image"):
        pull(ref, insecure=True)


def test_failed_push_leaves_no_tag(registry, auth_wasm):
    image = build_image(auth_wasm + b"\1", root_id="auth")
    layer = image.manifest_json["layers"][0]["digest"]
    image.blobs[layer] = image.blobs[layer][:-1] + bytes([image.blobs[layer][-1] ^ 1])  # corrupt before upload
    ref = f"{registry.host}/filters/half:v1"
    with pytest.raises(RegistryError, match="digest mismatch"):
        push_image(image, ref, insecure=True)
    with pytest.raises(RegistryError, match="not found"):
        pull(ref, insecure=True)


def test_registry_verifies_the_digest_of_an_upload(registry, auth_wasm):
    with RegistryClient(registry.host, insecure=True) as client:
        with pytest.raises(RegistryError, match="DIGEST_INVALID"):
            client.upload_blob("filters/baddigest", auth_wasm, sha256_digest(auth_wasm + b"x"))
    with pytest.raises(RegistryError, match="not found"):
        pull(f"{registry.host}/filters/baddigest:latest", insecure=True)


def test_push_from_a_filter_directory_packages_the_build(registry, auth_build, tmp_path):
    pushed = push(f"{registry.host}/filters/fromdir:v1", AUTH, insecure=True)
    pulled = pull(f"{registry.host}/filters/fromdir:v1", insecure=True, output=tmp_path / "p.wasm")
    # Reproducible: packaging the module that came back gives exactly the pushed image. (Compared with the pulled
    # module, not the session build: the filter's source may change under a long session.)
    expected, _ = image_for_filter(AUTH, wasm=tmp_path / "p.wasm")
    assert pushed.digest == pulled.digest == expected.digest


def _tar_gz(files: dict[str, bytes]) -> bytes:
    return gzip_bytes(tar_bytes(files))


@pytest.mark.parametrize("manifest_type,layers,blobs,error", [
    # Docker manifest whose layer is an OCI layer: Istio's docker path wants the docker layer type
    (DOCKER_MANIFEST, [OCI_LAYER_GZIP], [_tar_gz({"plugin.wasm": b"\0asm\1\0\0\0"})], "Docker image is not"),
    # compat layer without plugin.wasm
    (OCI_MANIFEST, [OCI_LAYER_GZIP], [_tar_gz({"other.wasm": b"\0asm\1\0\0\0"})], "holds no plugin.wasm"),
    # compat layer that is not gzip
    (OCI_MANIFEST, [OCI_LAYER_GZIP], [b"plain bytes"], r"not a tar\+gzip"),
    # oci variant with one layer only (Istio requires two)
    (OCI_MANIFEST, [WASM_LAYER], [b"\0asm\1\0\0\0"], "exactly 2 layers"),
    # no layers at all
    (OCI_MANIFEST, [], [], "no layers"),
    # 4-byte module: Istio's isValidWasmBinary wants the 8-byte header
    (OCI_MANIFEST, [WASM_CONFIG, WASM_LAYER], [b"{}", b"\0asm"], "not a WebAssembly module"),
])
def test_extraction_follows_istio(manifest_type, layers, blobs, error):
    descs = [{"mediaType": mt, "digest": sha256_digest(b), "size": len(b)} for mt, b in zip(layers, blobs)]
    store = {d["digest"]: b for d, b in zip(descs, blobs)}
    manifest = {"schemaVersion": 2, "mediaType": manifest_type, "layers": descs}
    with pytest.raises(RegistryError, match=error):
        extract_wasm(manifest, lambda d: store[d["digest"]])


def test_extraction_finds_plugin_wasm_by_base_name():
    layer = _tar_gz({"./runtime-config.json": b"{}", "./plugin.wasm": b"\0asm\1\0\0\0rest"})
    desc = {"mediaType": DOCKER_LAYER_GZIP, "digest": sha256_digest(layer), "size": len(layer)}
    wasm, variant = extract_wasm({"mediaType": DOCKER_MANIFEST, "layers": [desc]}, lambda d: layer)
    assert (wasm, variant) == (b"\0asm\1\0\0\0rest", "docker")
