"""Envoy in a Docker container: the second backend behind the same `Envoy` interface as the local process.

One stack = a private bridge network created for the run, one echo upstream container per manifest upstream,
and an Envoy container with the generated config and the .wasm mounted read-only. Only Envoy's listener and
admin ports are published, on 127.0.0.1, at host ports Docker picks (read back from the container).

Everything created carries labels: `wasmfilter.run` (this stack), `wasmfilter.session` (this Python process),
`wasmfilter.pid` / `wasmfilter.host` (its owner). Cleanup happens in `Stack.stop()` (finally), at process exit
(atexit; SIGTERM is turned into KeyboardInterrupt), at the end of a pytest session (sweep of this session), and
whenever a docker stack starts, resources of owners that are no longer alive on this host are swept.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import signal
import socket
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wasmfilter.envoy import images
from wasmfilter.envoy.admin import Admin
from wasmfilter.envoy.binary import EnvoyBinary, resolve
from wasmfilter.envoy.bootstrap import Bootstrap, Upstream, envoy_reason
from wasmfilter.envoy.protocol import READY_TIMEOUT_S, ensure_port_free, filter_log_lines, log_tail, wait_until
from wasmfilter.errors import DockerError, EnvoyStartError

if TYPE_CHECKING:  # pragma: no cover
    from docker.models.containers import Container

    from wasmfilter.harness.stack import Stack, StackSpec

LISTENER_PORT = 10000  # inside the container
ADMIN_PORT = 9901
CONFIG_DIR = "/etc/wasmfilter"  # the generated envoy.yaml, mounted read-only
WASM_DIR = "/wasm"  # each .wasm, mounted read-only (not under CONFIG_DIR: a mount inside a read-only mount fails)

OWNER_LABEL = "wasmfilter"
RUN_LABEL = "wasmfilter.run"
SESSION_LABEL = "wasmfilter.session"
PID_LABEL = "wasmfilter.pid"
HOST_LABEL = "wasmfilter.host"
HOSTNAME = socket.gethostname()
SESSION_ID = f"{os.getpid()}-{secrets.token_hex(4)}"


def labels(run_id: str) -> dict[str, str]:
    return {OWNER_LABEL: "1", RUN_LABEL: run_id, SESSION_LABEL: SESSION_ID, PID_LABEL: str(os.getpid()),
            HOST_LABEL: HOSTNAME}


def _announce(line: str) -> None:
    from wasmfilter.console import err

    err.print(line, markup=False, highlight=False, soft_wrap=True)


# --- cleanup ----------------------------------------------------------------------------------------------

_cleanup_lock = threading.Lock()
_hooks_installed = False


def _install_exit_hooks() -> None:
    """atexit sweep of this session; SIGTERM becomes KeyboardInterrupt (like Ctrl-C: pytest and the CLI stop, and
    finally blocks and atexit run), once: a second SIGTERM ends the process at once."""
    global _hooks_installed
    with _cleanup_lock:
        if _hooks_installed:
            return
        _hooks_installed = True
    atexit.register(sweep_session_quietly)
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        def _on_term(signum: int, frame: Any) -> None:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            raise KeyboardInterrupt(f"signal {signum}")

        signal.signal(signal.SIGTERM, _on_term)


def sweep_session_quietly() -> None:
    """Remove what this process created and still holds; never raises (for atexit and pytest's session end)."""
    try:
        sweep(session=SESSION_ID)
    except Exception:  # noqa: BLE001 - at exit, the engine may be gone; nothing more to do
        pass


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def leftovers(*, session: str | None = None, run: str | None = None) -> dict[str, list[str]]:
    """Names of wasmfilter containers and networks that still exist (all, or of one SESSION / RUN)."""
    api = images.client()
    label = f"{RUN_LABEL}={run}" if run else f"{SESSION_LABEL}={session}" if session else OWNER_LABEL
    return {"containers": [c.name for c in api.containers.list(all=True, filters={"label": label})],
            "networks": [n.name for n in api.networks.list(filters={"label": label})]}


def sweep(*, session: str | None = None, run: str | None = None, stale: bool = False) -> list[str]:
    """Remove wasmfilter containers, then networks: those of SESSION or RUN, or (STALE) those whose owner
    process on this host is gone. Returns what was removed. Never touches another live run."""
    import docker

    api = images.client()
    if run:
        selector = [f"{RUN_LABEL}={run}"]
    elif session:
        selector = [f"{SESSION_LABEL}={session}"]
    elif stale:
        selector = [OWNER_LABEL, f"{HOST_LABEL}={HOSTNAME}"]
    else:
        raise ValueError("sweep needs session, run or stale")

    def wanted(attrs_labels: dict[str, str]) -> bool:
        if not stale:
            return True
        pid = attrs_labels.get(PID_LABEL, "")
        return pid.isdigit() and not _pid_alive(int(pid))

    removed: list[str] = []
    for c in api.containers.list(all=True, filters={"label": selector}):
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


_stale_swept = False


def sweep_stale_once() -> None:
    global _stale_swept
    if not _stale_swept:
        _stale_swept = True
        removed = sweep(stale=True)
        if removed:
            _announce(f"removed {len(removed)} container(s)/network(s) left by wasmfilter runs that died: "
                      + ", ".join(removed))


# --- containers -------------------------------------------------------------------------------------------

def _logs_of(container: Container) -> str:
    import docker

    try:
        return container.logs(stdout=True, stderr=True).decode("utf-8", "replace")
    except docker.errors.APIError:
        return ""


def _status(container: Container) -> tuple[str, int | None]:
    import docker

    try:
        container.reload()
    except docker.errors.NotFound:
        return "removed", None
    state = container.attrs.get("State", {})
    return state.get("Status", "unknown"), state.get("ExitCode")


class EchoContainer:
    """The echo upstream in a container on NETWORK; `ip` and `port` are its address there."""

    def __init__(self, name: str, *, image: str, network: str, run_id: str, ready_timeout: float = 20.0):
        self.name = name
        self.image = image
        self.network = network
        self.run_id = run_id
        self.ready_timeout = ready_timeout
        self.port = images.ECHO_PORT
        self.container: Container | None = None
        self.ip = ""

    def start(self) -> EchoContainer:
        api = images.client()
        try:
            # create, then start: a container whose start fails is already ours to remove
            self.container = api.containers.create(
                self.image, ["--name", self.name, "--port", str(self.port)],
                name=f"wasmfilter-{self.run_id}-echo-{self.name}", network=self.network, labels=labels(self.run_id),
                hostname=self.name)
            self.container.start()
        except Exception as e:
            raise DockerError(f"cannot start the echo upstream '{self.name}' ({self.image}): {images._short(e)}",
                              fix=images.BUILD_FIX if "No such image" in str(e) else "check the Docker engine") from e
        container = self.container

        def ready() -> bool:
            return "echo upstream" in _logs_of(container) or _status(container)[0] not in ("created", "running")

        wait_until(ready, self.ready_timeout, interval=0.01)
        status, code = _status(container)
        if status != "running":
            raise DockerError(f"the echo upstream '{self.name}' exited at start (status {status}, code {code})",
                              fix="see its output below", detail=log_tail(_logs_of(container)))
        if "echo upstream" not in _logs_of(container):
            raise DockerError(f"the echo upstream '{self.name}' did not listen within {self.ready_timeout:.0f}s",
                              fix="see its output below", detail=log_tail(_logs_of(container)))
        self.ip = container.attrs["NetworkSettings"]["Networks"][self.network]["IPAddress"]
        return self

    def stop(self) -> None:
        if self.container is not None:
            _remove(self.container)
            self.container = None

    def __enter__(self) -> EchoContainer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _remove(container: Container) -> None:
    import docker

    try:
        container.remove(force=True, v=True)
    except docker.errors.NotFound:
        pass


class EnvoyContainer:
    """Envoy in a container. CONFIG must listen on 0.0.0.0:10000 with admin on 0.0.0.0:9901 (see
    `container_bootstrap`); MOUNTS maps host files to their paths in the container (mounted read-only)."""

    backend = "docker"

    def __init__(self, config: str, *, image: str, mounts: dict[Path, str] | None = None, network: str | None = None,
                 run_id: str | None = None, version: str = "", concurrency: int = 2, listener_host_port: int = 0,
                 log_level: str = "info", wasm_log_level: str = "debug", ready_timeout: float = READY_TIMEOUT_S):
        self.config = config
        self.image = image
        self.mounts = dict(mounts or {})
        self.network = network
        self.run_id = run_id or new_run_id()
        self._version = version
        self.concurrency = concurrency
        self.listener_host_port = listener_host_port
        self.log_level = log_level
        self.wasm_log_level = wasm_log_level
        self.ready_timeout = ready_timeout
        self.workdir: Path | None = None
        self.container: Container | None = None
        self.admin: Admin | None = None
        self.listener_port: int | None = None
        self.start_seconds: float | None = None
        self._final_logs = ""

    @property
    def version(self) -> str:
        return self._version

    @property
    def listener_url(self) -> str:
        return f"http://127.0.0.1:{self.listener_port}"

    def logs(self) -> str:
        if self.container is not None:
            return _logs_of(self.container)
        return self._final_logs

    def filter_logs(self) -> list[str]:
        return filter_log_lines(self.logs())

    def command(self) -> list[str]:
        return ["-c", f"{CONFIG_DIR}/envoy.yaml", "-l", self.log_level, "--component-log-level",
                f"wasm:{self.wasm_log_level}", "--concurrency", str(self.concurrency), "--use-dynamic-base-id"]

    def start(self) -> EnvoyContainer:
        _install_exit_hooks()
        api = images.client()
        for host in self.mounts:
            if not Path(host).is_file():  # else Docker would create a directory in its place
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
                self.image, self.command(), entrypoint=[images.ENVOY_IN_IMAGE],
                name=f"wasmfilter-{self.run_id}-envoy", labels=labels(self.run_id), volumes=volumes, ports=ports,
                network=self.network, user="0:0")
            self.container.start()
        except Exception as e:
            self.stop()
            raise DockerError(f"cannot start an Envoy container from '{self.image}': {images._short(e)}",
                              fix=images.BUILD_FIX if "No such image" in str(e) else "check the Docker engine") from e
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.perf_counter() - started
        return self

    def _published(self, port: int) -> int | None:
        assert self.container is not None
        bindings = (self.container.attrs.get("NetworkSettings", {}).get("Ports") or {}).get(f"{port}/tcp") or []
        for b in bindings:
            if b.get("HostPort"):
                return int(b["HostPort"])
        return None

    def _wait_ready(self) -> None:
        container = self.container
        assert container is not None
        exited: list[tuple[str, int | None]] = []

        def ready() -> bool:
            if self.admin is not None and self.admin.is_ready():
                return True
            status, code = _status(container)  # an engine round trip: only while Envoy is not ready
            if status not in ("created", "running"):
                exited.append((status, code))
                return True
            if self.admin is None:
                port = self._published(ADMIN_PORT)
                if port is not None:
                    self.admin = Admin("127.0.0.1", port)
            return False

        wait_until(ready, self.ready_timeout, interval=0.01)
        if exited:
            logs = _logs_of(container)
            status, code = exited[-1]
            raise EnvoyStartError(f"the Envoy container exited during start-up (status {status}, code {code}): "
                                  f"{envoy_reason(logs)}", fix="see Envoy's log below (from the container)",
                                  detail=log_tail(logs))
        if self.admin is None or not self.admin.is_ready():
            raise EnvoyStartError(f"the Envoy container was not ready within {self.ready_timeout:.0f}s",
                                  fix="see Envoy's log below (from the container)",
                                  detail=log_tail(_logs_of(container)))
        if "listener" not in self.admin.listener_ports():
            raise EnvoyStartError("Envoy started without the 'listener' listener", fix="check the config",
                                  detail=log_tail(_logs_of(container)))
        self.listener_port = self._published(LISTENER_PORT)
        if self.listener_port is None:
            raise EnvoyStartError("Docker did not publish Envoy's listener port", fix="check the Docker engine",
                                  detail=log_tail(_logs_of(container)))

    def stop(self) -> None:
        if self.container is not None:
            self._final_logs = _logs_of(self.container)
            _remove(self.container)
            self.container = None
        if self.workdir is not None and not os.environ.get("WASMFILTER_KEEP_WORKDIR"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> EnvoyContainer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def new_run_id() -> str:
    return secrets.token_hex(5)


def create_network(run_id: str) -> Any:
    """A private bridge network for one run, labelled for cleanup."""
    api = images.client()
    try:
        return api.networks.create(f"wasmfilter-{run_id}", driver="bridge", labels=labels(run_id),
                                   check_duplicate=True)
    except Exception as e:
        fix = ("Docker has run out of network address pools: remove unused networks (`docker network prune`)"
               if "address pool" in str(e) or "non-overlapping" in str(e) else "check the Docker engine")
        raise DockerError(f"cannot create a Docker network for the run: {images._short(e)}", fix=fix) from e


def _remove_network(network: Any) -> None:
    import docker

    try:
        network.remove()
    except docker.errors.NotFound:
        pass


def container_bootstrap(upstreams: list[Upstream], http_filters: list[str]) -> str:
    """A bootstrap for inside a container: listener and admin on all interfaces (only published to loopback)."""
    return Bootstrap(upstreams=upstreams, http_filters=http_filters, listener_host="0.0.0.0",
                     listener_port=LISTENER_PORT, admin_host="0.0.0.0", admin_port=ADMIN_PORT).render()


def wasm_path_in_container(host_path: Path) -> str:
    return f"{WASM_DIR}/{host_path.name}"


def _start_echoes(names: list[str], image: str, network: str, run_id: str, closer: ExitStack) -> list[EchoContainer]:
    """Start the echo upstreams in parallel (a container start is ~0.4 s of engine work); every one started is
    registered for removal (together, in parallel) before the first error, if any, propagates."""
    echoes = [EchoContainer(name, image=image, network=network, run_id=run_id) for name in names]
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


def docker_stack(spec: StackSpec, binary: EnvoyBinary | None = None, *, envoy_image: str | None = None) -> Stack:
    """The harness's `docker` backend: network + echo upstream containers + Envoy container."""
    from wasmfilter.harness.stack import Stack

    binary = binary or resolve(spec.manifest.envoy_version)
    ensure_port_free("127.0.0.1", spec.listener_port)
    images.client()  # a clear error first if the engine is unreachable
    _install_exit_hooks()
    sweep_stale_once()
    image = images.choose_envoy_image(binary, override=envoy_image, announce=_announce)
    echo = images.ensure_echo_image(announce=_announce)
    run_id = new_run_id()
    closer = ExitStack()
    try:
        network = create_network(run_id)
        closer.callback(_remove_network, network)
        upstreams = _start_echoes(spec.manifest.upstreams, echo.tag, network.name, run_id, closer)
        wasm_host = Path(spec.wasm_path).resolve()
        inside = wasm_path_in_container(wasm_host)
        config = container_bootstrap([Upstream(u.name, u.ip, u.port) for u in upstreams],
                                     [*spec.extra_http_filters, spec.wasm_filter(inside).fragment()])
        envoy = closer.enter_context(EnvoyContainer(
            config, image=image.tag, mounts={wasm_host: inside}, network=network.name, run_id=run_id,
            version=binary.version, concurrency=spec.concurrency, listener_host_port=spec.listener_port))
    except BaseException:
        closer.close()
        raise
    return Stack(envoy, list(spec.manifest.upstreams), closer)


def validate_in_container(config: Path, *, image: str, config_path: str = "/etc/envoy/envoy.yaml",
                          mounts: dict[Path, str] | None = None, timeout: float = 120.0) -> str:
    """`envoy --mode validate` inside IMAGE, with CONFIG and MOUNTS (host path -> container path) mounted
    read-only exactly as a container would see them. Returns Envoy's last line; ConfigInvalidError otherwise."""
    from wasmfilter.errors import ConfigInvalidError

    _install_exit_hooks()
    api = images.client()
    run_id = new_run_id()
    volumes = {str(Path(config).resolve()): {"bind": config_path, "mode": "ro"}}
    for host, inside in (mounts or {}).items():
        volumes[str(Path(host).resolve())] = {"bind": inside, "mode": "ro"}
    container = api.containers.create(image, ["--mode", "validate", "-c", config_path, "-l", "warning"],
                                      entrypoint=[images.ENVOY_IN_IMAGE], volumes=volumes, network_mode="none",
                                      labels=labels(run_id), user="0:0", name=f"wasmfilter-{run_id}-validate")
    try:
        container.start()
        code = container.wait(timeout=timeout).get("StatusCode", 1)
        text = _logs_of(container)
    finally:
        _remove(container)
    if code != 0:
        raise ConfigInvalidError(f"Envoy (in {image}) rejected '{config}': {envoy_reason(text)}",
                                 fix="fix the field Envoy names", detail=log_tail(text))
    return text.strip().splitlines()[-1] if text.strip() else "OK"


def _register() -> None:
    from wasmfilter.harness import stack as harness

    harness.BACKENDS.setdefault("docker", lambda spec, binary: docker_stack(spec, binary))


_register()
