"""The `docker` backend's stacks: a private bridge network per run, one echo upstream container per manifest
upstream, and an `EnvoyContainer` with the generated config — and who removes them.

Everything created carries labels: `wasmfilter.run` (one stack), `wasmfilter.session` (one `DockerSession`),
`wasmfilter.pid` / `wasmfilter.host` (its owner process). Removal happens in `Stack.stop()` (finally), when the
session closes, and — whatever ends the owner, SIGKILL included — by the session's reaper: a small process
(`python -m wasmfilter.harness.reaper`) that waits on a pipe from its owner and sweeps the session's resources
when the pipe closes (testcontainers' Ryuk, without an image). If the reaper itself is killed with its owner, the
next session sweeps what owners that are gone left behind (`sweep(stale=True)`)."""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wasmfilter.envoy import images
from wasmfilter.envoy.binary import EnvoyBinary, resolve
from wasmfilter.envoy.bootstrap import Bootstrap, Upstream
from wasmfilter.envoy.container import (
    ADMIN_PORT,
    LISTENER_PORT,
    EnvoyContainer,
    logs_of,
    remove,
    status_of,
    wasm_path_in_container,
)
from wasmfilter.envoy.engine import client, short
from wasmfilter.envoy.hardening import SAFE, RequestHardening
from wasmfilter.envoy.protocol import log_tail, wait_until
from wasmfilter.errors import DockerError
from wasmfilter.harness.answers import wire_rules
from wasmfilter.settings import current

if TYPE_CHECKING:  # pragma: no cover
    from docker.models.containers import Container

    from wasmfilter.harness.stack import Stack, StackSpec

OWNER_LABEL = "wasmfilter"
RUN_LABEL = "wasmfilter.run"
SESSION_LABEL = "wasmfilter.session"
PID_LABEL = "wasmfilter.pid"
HOST_LABEL = "wasmfilter.host"


def new_run_id() -> str:
    return secrets.token_hex(5)


class DockerSession:
    """What one program's docker stacks share: the labels that mark what they create, the images chosen once, the
    stale sweep done once, and the reaper that removes everything if the program dies. Made by whoever starts
    docker stacks (a CLI command, the pytest plugin) and closed by it; `close()` sweeps what is left of it."""

    def __init__(self, *, envoy_image: str | None = None, echo_image: str | None = None,
                 announce: images.Announce | None = None):
        self.id = f"{os.getpid()}-{secrets.token_hex(4)}"
        self.envoy_image_override = envoy_image if envoy_image is not None else current().envoy_image
        self.echo_image_override = echo_image if echo_image is not None else current().echo_image
        self.announce = announce
        self._pull_failures: dict[str, str] = {}
        self._envoy_images: dict[str, images.ImageChoice] = {}
        self._echo_image: images.BuiltImage | None = None
        self._reaper: subprocess.Popen[bytes] | None = None
        self._stale_swept = False

    def labels(self, run_id: str) -> dict[str, str]:
        return {OWNER_LABEL: "1", RUN_LABEL: run_id, SESSION_LABEL: self.id, PID_LABEL: str(os.getpid()),
                HOST_LABEL: socket.gethostname()}

    def prepare(self) -> None:
        """Before the first stack: the engine must answer, the reaper must watch, old owners' leftovers go."""
        client()
        if self._reaper is None:
            # stdin is the pipe the reaper waits on; it is not inherited by any other child (close_fds).
            self._reaper = subprocess.Popen([sys.executable, "-m", "wasmfilter.harness.reaper", self.id],
                                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        if not self._stale_swept:
            self._stale_swept = True
            removed = sweep(stale=True)
            if removed and self.announce:
                self.announce(f"removed {len(removed)} container(s)/network(s) left by wasmfilter runs that died: "
                              + ", ".join(removed))

    def envoy_image(self, binary: EnvoyBinary) -> images.ImageChoice:
        if binary.version not in self._envoy_images:
            self._envoy_images[binary.version] = images.choose_envoy_image(
                binary, override=self.envoy_image_override, announce=self.announce,
                pull_failures=self._pull_failures)
        return self._envoy_images[binary.version]

    def echo_image(self) -> images.BuiltImage:
        if self._echo_image is None:
            self._echo_image = images.ensure_echo_image(override=self.echo_image_override, announce=self.announce)
        return self._echo_image

    def close(self) -> None:
        """Remove whatever this session still has; never raises (the engine may be gone at exit)."""
        try:
            sweep(session=self.id)
        except Exception:  # noqa: BLE001 - nothing more to do
            pass
        if self._reaper is not None:
            if self._reaper.stdin is not None:
                self._reaper.stdin.close()  # the reaper sweeps (nothing left by now) and exits
            try:
                self._reaper.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._reaper.kill()
                self._reaper.wait()
            self._reaper = None

    def __enter__(self) -> DockerSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- sweeping ---------------------------------------------------------------------------------------------

def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _selector(session: str | None, run: str | None) -> str:
    return f"{RUN_LABEL}={run}" if run else f"{SESSION_LABEL}={session}" if session else OWNER_LABEL


def leftovers(*, session: str | None = None, run: str | None = None) -> dict[str, list[str]]:
    """Names of wasmfilter containers and networks that still exist (all, or of one SESSION / RUN)."""
    api = client()
    label = _selector(session, run)
    # ignore_removed: a container that goes between the list and its inspect (a reaper at work) is not left over.
    containers = api.containers.list(all=True, filters={"label": label}, ignore_removed=True)
    return {"containers": [c.name for c in containers],
            "networks": [n.name for n in api.networks.list(filters={"label": label})]}


def sweep(*, session: str | None = None, run: str | None = None, stale: bool = False) -> list[str]:
    """Remove wasmfilter containers, then networks: those of SESSION or RUN, or (STALE) those whose owner
    process on this host is gone. Returns what was removed. Never touches another live run."""
    import docker

    if not (session or run or stale):
        raise ValueError("sweep needs session, run or stale")
    api = client()
    selector = [_selector(session, run)] if (session or run) else [OWNER_LABEL, f"{HOST_LABEL}={socket.gethostname()}"]

    def wanted(attrs_labels: dict[str, str]) -> bool:
        if not stale:
            return True
        pid = attrs_labels.get(PID_LABEL, "")
        return pid.isdigit() and not _pid_alive(int(pid))

    removed: list[str] = []
    for c in api.containers.list(all=True, filters={"label": selector}, ignore_removed=True):
        if wanted(c.labels):
            try:
                c.remove(force=True, v=True)
                removed.append(c.name)
            except docker.errors.NotFound:
                pass
    for n in api.networks.list(filters={"label": selector}):
        if wanted(n.attrs.get("Labels") or {}):
            try:
                n.remove()
                removed.append(n.name)
            except docker.errors.NotFound:
                pass
    return removed


# --- the pieces of a stack --------------------------------------------------------------------------------

class EchoContainer:
    """The echo upstream in a container on NETWORK; `ip` and `port` are its address there."""

    def __init__(self, name: str, *, image: str, network: str, run_id: str, labels: dict[str, str],
                 ready_timeout: float = 20.0, rules_json: str = ""):
        self.name = name
        self.rules_json = rules_json  # scripted answers (answers.wire_rules), passed as --rules-json
        self.image = image
        self.network = network
        self.run_id = run_id
        self.labels = labels
        self.ready_timeout = ready_timeout
        self.port = images.ECHO_PORT
        self.container: Container | None = None
        self.ip = ""

    def start(self) -> EchoContainer:
        try:
            # create, then start: a container whose start fails is already ours to remove
            self.container = client().containers.create(
                self.image, ["--name", self.name, "--port", str(self.port),
                             *(["--rules-json", self.rules_json] if self.rules_json else [])],
                name=f"wasmfilter-{self.run_id}-echo-{self.name}", network=self.network, labels=self.labels,
                hostname=self.name)
            self.container.start()
        except Exception as e:
            raise DockerError(f"cannot start the echo upstream '{self.name}' ({self.image}): {short(e)}",
                              fix=images.BUILD_FIX if "No such image" in str(e) else "check the Docker engine") from e
        container = self.container

        def ready() -> bool:
            return "echo upstream" in logs_of(container) or status_of(container)[0] not in ("created", "running")

        wait_until(ready, self.ready_timeout, interval=0.01)
        status, code = status_of(container)
        if status != "running":
            raise DockerError(f"the echo upstream '{self.name}' exited at start (status {status}, code {code})",
                              fix="see its output below", detail=log_tail(logs_of(container)))
        if "echo upstream" not in logs_of(container):
            raise DockerError(f"the echo upstream '{self.name}' did not listen within {self.ready_timeout:.0f}s",
                              fix="see its output below", detail=log_tail(logs_of(container)))
        self.ip = container.attrs["NetworkSettings"]["Networks"][self.network]["IPAddress"]
        return self

    def stop(self) -> None:
        if self.container is not None:
            remove(self.container)
            self.container = None

    def __enter__(self) -> EchoContainer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def create_network(run_id: str, labels: dict[str, str]) -> Any:
    """A private bridge network for one run, labelled for cleanup."""
    try:
        return client().networks.create(f"wasmfilter-{run_id}", driver="bridge", labels=labels,
                                        check_duplicate=True)
    except Exception as e:
        fix = ("Docker has run out of network address pools: remove unused networks (`docker network prune`)"
               if "address pool" in str(e) or "non-overlapping" in str(e) else "check the Docker engine")
        raise DockerError(f"cannot create a Docker network for the run: {short(e)}", fix=fix) from e


def _remove_network(network: Any) -> None:
    import docker

    try:
        network.remove()
    except docker.errors.NotFound:
        pass


def container_bootstrap(upstreams: list[Upstream], http_filters: list[str], xds: tuple[str, int] | None = None,
                        hardening: RequestHardening = SAFE) -> str:
    """A bootstrap for inside a container: listener and admin on all interfaces (only published to loopback);
    XDS: the ADS server (host, port) for a filter delivered over ECDS."""
    xds_host, xds_port = xds or ("127.0.0.1", None)
    return Bootstrap(upstreams=upstreams, http_filters=http_filters, listener_host="0.0.0.0",
                     listener_port=LISTENER_PORT, admin_host="0.0.0.0", admin_port=ADMIN_PORT, xds_host=xds_host,
                     xds_port=xds_port, hardening=hardening).render()


def host_address() -> str:
    """This host's address on Docker's default bridge (docker0): where a container on any wasmfilter network reaches
    a server of this process (the ECDS delivery's xDS server binds there, never on all interfaces)."""
    import docker

    try:
        config = (client().networks.get("bridge").attrs.get("IPAM") or {}).get("Config") or []
    except docker.errors.DockerException as e:
        raise DockerError(f"cannot inspect Docker's default bridge network: {short(e)}",
                          fix="check the Docker engine") from e
    for entry in config:
        if entry.get("Gateway"):
            return str(entry["Gateway"])
        if entry.get("Subnet") and ":" not in entry["Subnet"]:
            return str(ipaddress.ip_network(entry["Subnet"])[1])
    raise DockerError("Docker's default bridge network has no IPv4 subnet",
                      fix="ECDS delivery on the docker backend needs docker0; use --backend process")


def _start_echoes(names: list[str], image: str, network: str, run_id: str, labels: dict[str, str],
                  closer: ExitStack, rules: dict[str, str] | None = None) -> list[EchoContainer]:
    """Start the echo upstreams in parallel (a container start is ~0.4 s of engine work); every one started is
    registered for removal (together, in parallel) before the first error, if any, propagates."""
    echoes = [EchoContainer(name, image=image, network=network, run_id=run_id, labels=labels,
                            rules_json=(rules or {}).get(name, "")) for name in names]
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(echoes)))) as pool:
        futures = [pool.submit(e.start) for e in echoes]
        errors = [f.exception() for f in futures]

    def stop_all() -> None:
        with ThreadPoolExecutor(max_workers=max(1, min(8, len(echoes)))) as stopper:
            list(stopper.map(lambda e: e.stop(), echoes))

    closer.callback(stop_all)
    for error in errors:
        if error is not None:
            raise error
    return echoes


def docker_stack(spec: StackSpec, binary: EnvoyBinary | None, session: DockerSession) -> Stack:
    """Network + echo upstream containers + Envoy container, all labelled as SESSION's."""
    from wasmfilter.harness.stack import Stack

    binary = binary or resolve(spec.manifest.envoy_version)
    session.prepare()
    image = session.envoy_image(binary)
    echo = session.echo_image()
    run_id = new_run_id()
    labels = session.labels(run_id)
    closer = ExitStack()
    try:
        network = create_network(run_id, labels)
        closer.callback(_remove_network, network)
        rules = {name: wire_rules(spec.rules_for(name)) for name in spec.manifest.upstreams if spec.rules_for(name)}
        upstreams = _start_echoes(spec.manifest.upstreams, echo.tag, network.name, run_id, labels, closer, rules)
        wasm_host = Path(spec.wasm_path).resolve()
        inside = wasm_path_in_container(wasm_host)
        mounts = {wasm_host: inside}
        wasm = spec.wasm_filter(inside).fragment()
        if spec.xds_port and spec.module_dir:  # ECDS (harness/ecds.py): the module store, same path inside
            wasm, mounts = spec.wasm_filter().ecds_fragment(), {spec.module_dir: str(spec.module_dir)}
        config = container_bootstrap([Upstream(u.name, u.ip, u.port) for u in upstreams],
                                     [*spec.extra_http_filters, wasm],
                                     (spec.xds_host, spec.xds_port) if spec.xds_port else None,
                                     spec.hardening)
        envoy = closer.enter_context(EnvoyContainer(
            config, image=image.tag, name=f"wasmfilter-{run_id}-envoy", labels=labels, mounts=mounts,
            network=network.name, version=binary.version, concurrency=spec.concurrency,
            listener_host_port=spec.listener_port))
    except BaseException:
        closer.close()
        raise
    return Stack(envoy, list(spec.manifest.upstreams), closer, run_id=run_id)
