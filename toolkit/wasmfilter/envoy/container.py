"""Envoy in a Docker container, the second backend behind the same `Envoy` protocol as the local process: the
generated config and each .wasm mounted read-only, only the listener and admin ports published, on 127.0.0.1, at
host ports Docker picks (read back from the container). What the container is labelled with, and so who removes
it if its owner dies, is the caller's (harness/docker.py); `validate_in_container` checks a config in an image."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Unpack

from wasmfilter.envoy import protocol
from wasmfilter.envoy.admin import Admin
from wasmfilter.envoy.engine import client, short
from wasmfilter.envoy.images import BUILD_FIX, ENVOY_IN_IMAGE
from wasmfilter.envoy.validate import envoy_reason
from wasmfilter.errors import ConfigInvalidError, DockerError

if TYPE_CHECKING:  # pragma: no cover
    from docker.models.containers import Container

LISTENER_PORT = 10000  # inside the container
ADMIN_PORT = 9901
CONFIG_DIR = "/etc/wasmfilter"  # the generated envoy.yaml, mounted read-only
WASM_DIR = "/wasm"  # each .wasm, mounted read-only (not under CONFIG_DIR: a mount inside a read-only mount fails)


def logs_of(container: Container) -> str:
    import docker

    try:
        return str(container.logs(stdout=True, stderr=True).decode("utf-8", "replace"))
    except docker.errors.APIError:
        return ""


def status_of(container: Container) -> tuple[str, int | None]:
    """(status, exit code) as the engine has it now; "removed" once the container is gone."""
    import docker

    try:
        container.reload()
    except docker.errors.NotFound:
        return "removed", None
    state = container.attrs.get("State", {})
    return state.get("Status", "unknown"), state.get("ExitCode")


def remove(container: Container) -> None:
    import docker

    try:
        container.remove(force=True, v=True)
    except docker.errors.NotFound:
        pass


def wasm_path_in_container(host_path: Path) -> str:
    return f"{WASM_DIR}/{host_path.name}"


class EnvoyContainer(protocol.EnvoyBase):
    """Envoy in a container named NAME with LABELS. CONFIG must listen on 0.0.0.0:10000 with admin on 0.0.0.0:9901
    (see harness.docker.container_bootstrap); MOUNTS maps host files to their paths in the container (read-only)."""

    backend = "docker"
    what = "the Envoy container"

    def __init__(self, config: str, *, image: str, name: str, labels: Mapping[str, str],
                 mounts: Mapping[Path, str] | None = None, network: str | None = None, version: str = "",
                 listener_host_port: int = 0, **options: Unpack[protocol.RunOptions]):
        super().__init__(config, **options)
        self.image, self.name, self.labels = image, name, dict(labels)
        self.mounts = dict(mounts or {})
        self.network = network
        self._version = version
        self.listener_host_port = listener_host_port
        self.container: Container | None = None
        self._final_logs = ""

    @property
    def version(self) -> str:
        return self._version

    def logs(self) -> str:
        if self.container is not None:
            return logs_of(self.container)
        return self._final_logs

    def command(self) -> list[str]:
        return ["-c", f"{CONFIG_DIR}/envoy.yaml", "-l", self.log_level, "--component-log-level",
                f"wasm:{self.wasm_log_level}", "--concurrency", str(self.concurrency), "--use-dynamic-base-id"]

    def start(self) -> EnvoyContainer:
        api = client()
        for host in self.mounts:
            if not Path(host).exists():  # else Docker would create a directory in its place
                raise DockerError(f"'{host}' does not exist, so it cannot be mounted into the Envoy container",
                                  fix="build the filter first (`wasmfilter build`)")
        self.workdir = Path(tempfile.mkdtemp(prefix="wasmfilter-envoy-docker-"))
        self.workdir.chmod(0o755)  # the official image's envoy user (uid 101) must read it too
        (self.workdir / "envoy.yaml").write_text(self.config)
        (self.workdir / "envoy.yaml").chmod(0o644)
        volumes = {str(self.workdir): {"bind": CONFIG_DIR, "mode": "ro"}}
        for host, inside in self.mounts.items():
            volumes[str(Path(host).resolve())] = {"bind": inside, "mode": "ro"}
        ports = {f"{LISTENER_PORT}/tcp": ("127.0.0.1", self.listener_host_port or None),
                 f"{ADMIN_PORT}/tcp": ("127.0.0.1", None)}
        started = time.perf_counter()
        try:
            # create, then start: a container whose start fails (e.g. a bad mount) is already ours to remove
            self.container = api.containers.create(
                self.image, self.command(), entrypoint=[ENVOY_IN_IMAGE], name=self.name, labels=self.labels,
                volumes=volumes, ports=ports, network=self.network, user="0:0")
            self.container.start()
        except Exception as e:
            self.stop()
            raise DockerError(f"cannot start an Envoy container from '{self.image}': {short(e)}",
                              fix=BUILD_FIX if "No such image" in str(e) else "check the Docker engine") from e
        try:
            self._wait_ready(self.container)
        except BaseException:
            self.stop()
            raise
        self._start_seconds = time.perf_counter() - started
        return self

    def _published(self, container: Container, port: int) -> int | None:
        bindings = (container.attrs.get("NetworkSettings", {}).get("Ports") or {}).get(f"{port}/tcp") or []
        for b in bindings:
            if b.get("HostPort"):
                return int(b["HostPort"])
        return None

    def _wait_ready(self, container: Container) -> None:
        def exited() -> str | None:
            status, code = status_of(container)  # an engine round trip: only while Envoy is not ready
            return None if status in ("created", "running") else f"status {status}, code {code}"

        def admin() -> Admin | None:
            port = self._published(container, ADMIN_PORT)
            return Admin("127.0.0.1", port) if port is not None else None

        self._admin, _ = protocol.wait_ready(what="the Envoy container", timeout=self.ready_timeout, exited=exited,
                                          admin=admin, logs=lambda: logs_of(container), interval=0.01,
                                          log_source="from the container")
        self.listener_port = self._published(container, LISTENER_PORT)
        if self.listener_port is None:
            raise protocol.start_error("Docker did not publish Envoy's listener port", "check the Docker engine",
                                       logs_of(container))
        # Envoy's process id on this host: the container's init process (Envoy itself is the entrypoint).
        self._pid = int(container.attrs.get("State", {}).get("Pid") or 0) or None

    def stop(self) -> None:
        if self.container is not None:
            self._final_logs = logs_of(self.container)
            remove(self.container)
            self.container = None
        self.remove_workdir()


def validate_in_container(config: Path, *, image: str, name: str, labels: Mapping[str, str],
                          config_path: str = "/etc/envoy/envoy.yaml", mounts: Mapping[Path, str] | None = None,
                          timeout: float = 120.0) -> str:
    """`envoy --mode validate` inside IMAGE, with CONFIG and MOUNTS (host path -> container path) mounted
    read-only exactly as a container would see them. Returns Envoy's last line; ConfigInvalidError otherwise."""
    volumes: dict[str, Any] = {str(Path(config).resolve()): {"bind": config_path, "mode": "ro"}}
    for host, inside in (mounts or {}).items():
        volumes[str(Path(host).resolve())] = {"bind": inside, "mode": "ro"}
    container = client().containers.create(image, ["--mode", "validate", "-c", config_path, "-l", "warning"],
                                           entrypoint=[ENVOY_IN_IMAGE], volumes=volumes, network_mode="none",
                                           labels=dict(labels), user="0:0", name=name)
    try:
        container.start()
        code = container.wait(timeout=timeout).get("StatusCode", 1)
        text = logs_of(container)
    finally:
        remove(container)
    if code != 0:
        raise ConfigInvalidError(f"Envoy (in {image}) rejected '{config}': {envoy_reason(text)}",
                                 fix="fix the field Envoy names", detail=protocol.log_tail(text))
    return text.strip().splitlines()[-1] if text.strip() else "OK"
