"""istio-agent's part of Wasm delivery, on this machine: pull the filter's image from a registry with the pull code
Istio's image fetcher follows (ship/transfer.pull: every blob checked, the variant shapes in Istio's order), verify
the manifest digest the plugin pins (WasmPlugin `sha256`), cache the module by that digest, and hand it to Envoy over
ECDS (harness/ecds.py) as a local file. Any failure — image missing, registry unreachable, digest mismatch, a layer
that is not Wasm — applies nothing: the last good filter keeps serving (before any, the fail-closed default denies)
and the error names the reason. Istio instead replaces the filter with a deny-all RBAC filter on a fetch failure
(pkg/wasm/convert.go); we keep the last good one because the module it last verified is still the pinned one's
predecessor, not an unverified one — docs/dev.md."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wasmfilter.envoy.xds.server import Push
from wasmfilter.harness.ecds import EcdsStack
from wasmfilter.ship.transfer import pull


@dataclass(frozen=True)
class Delivery:
    reference: str
    digest: str  # the image manifest's
    module: Path  # the cached module file
    cached: bool  # served from the cache: no registry round trip
    pull_seconds: float
    push: Push

    def line(self) -> str:
        source = "cache" if self.cached else f"registry in {self.pull_seconds * 1000:.0f} ms"
        return (f"live: {self.reference} ({self.digest[:19]}, from {source}), push+ack "
                f"{self.push.seconds * 1000:.0f} ms")


class WasmCache:
    """Modules by image digest: `<directory>/<hex>.wasm`; a pinned digest already here needs no registry."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def path(self, digest: str) -> Path:
        return self.directory / f"{digest.removeprefix('sha256:')}.wasm"

    def fetch(self, reference: str, *, sha256: str | None = None, insecure: bool = False,
              docker_config: Path | None = None) -> tuple[Path, str, bool, float]:
        """The module of REFERENCE (pinned to SHA256, the manifest digest, when given): path, digest, cached?,
        pull seconds. Raises RegistryError (nothing written) when the registry or the image fails the checks."""
        if sha256:
            digest = sha256 if sha256.startswith("sha256:") else "sha256:" + sha256
            if self.path(digest).is_file():
                return self.path(digest), digest, True, 0.0
        started = time.perf_counter()
        result = pull(reference, insecure=insecure, docker_config=docker_config, expect_digest=sha256)
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self.path(result.digest)
        tmp = target.with_name(target.name + ".partial")
        tmp.write_bytes(result.wasm)
        tmp.replace(target)
        return target, result.digest, False, time.perf_counter() - started


def deliver(live: EcdsStack, reference: str, *, cache: WasmCache, sha256: str | None = None, insecure: bool = False,
            docker_config: Path | None = None, timeout: float | None = None) -> Delivery:
    """Pull (or take from CACHE) REFERENCE's module, verified against SHA256, and push it to LIVE; wait for the ACK.
    Raises (RegistryError, PushRejected, …) with nothing applied when any step fails."""
    module, digest, cached, seconds = cache.fetch(reference, sha256=sha256, insecure=insecure,
                                                  docker_config=docker_config)
    push = live.push(wasm=module, timeout=timeout)
    return Delivery(reference, digest, module, cached, seconds, push)


def run_agent(path: str | Path | None, image: str, *, sha256: str | None = None, insecure: bool = False,
              docker_config: Path | None = None, concurrency: int = 2, config_file: str | Path | None = None,
              sets: list[str] | None = None, xds_port: int = 0, envoy_version: str | None = None,
              cache_dir: Path | None = None, duration: float | None = None,
              say: Callable[[str], None] | None = None) -> Delivery:
    """`wasmfilter agent`: Envoy (the filter as an ECDS stub, fail-closed until delivery) + echo upstreams + the xDS
    server; deliver IMAGE once, then serve until Ctrl-C or DURATION. A failed delivery is the error (after which
    everything is stopped)."""
    from wasmfilter import paths
    from wasmfilter.console import out
    from wasmfilter.envoy.binary import resolve
    from wasmfilter.harness.stack import StackSpec
    from wasmfilter.manifest import load_manifest
    from wasmfilter.overrides import plugin_config

    say = say or (lambda line: out.print(line, markup=False, soft_wrap=True))
    manifest = load_manifest(path)
    cache = WasmCache(cache_dir or paths.cache_dir() / "wasm-by-digest")
    config = plugin_config(manifest.config, config_file=config_file, sets=sets)
    spec = StackSpec(manifest=manifest, wasm_path=cache.directory, plugin_config=config, concurrency=concurrency)
    binary = resolve(envoy_version or manifest.envoy_version)
    with EcdsStack(spec, binary=binary, xds_port=xds_port, initial_push=False) as live:
        assert live.xds is not None
        say(f"{manifest.name}: Envoy at {live.url} (fail-closed until delivery), xDS {live.xds.address}")
        delivery = deliver(live, image, cache=cache, sha256=sha256, insecure=insecure, docker_config=docker_config)
        say(delivery.line())
        stop = threading.Event()
        stop.wait(duration)  # None: until Ctrl-C
    return delivery
