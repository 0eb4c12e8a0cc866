"""A running test stack — echo upstream(s) plus an Envoy with the filter — on a backend chosen by value.

The backend table (`BACKENDS`) maps each name to a factory of one signature, `(spec, binary, options) -> Stack`:
`process` (Envoy and the echo upstreams as local processes/threads), `docker` (containers on a private
network, harness/docker.py) and `emulator` (no Envoy: the proxy-wasm host in this process, emulator/backend.py).
Whatever a backend needs beyond the spec travels in `BackendOptions`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wasmfilter.envoy.binary import EnvoyBinary, resolve
from wasmfilter.envoy.bootstrap import Bootstrap, Upstream, WasmFilter
from wasmfilter.envoy.hardening import SAFE, RequestHardening
from wasmfilter.envoy.process import EnvoyProcess
from wasmfilter.envoy.protocol import Envoy
from wasmfilter.errors import UsageError
from wasmfilter.harness.answers import AnswerRule
from wasmfilter.harness.checks import CaseClock, Connect
from wasmfilter.harness.client import Client
from wasmfilter.harness.scenario import Case
from wasmfilter.harness.upstream import EchoUpstream
from wasmfilter.manifest import FailurePolicy, Manifest
from wasmfilter.ports import bind_error

if TYPE_CHECKING:  # pragma: no cover
    from wasmfilter.harness.docker import DockerSession


@dataclass
class StackSpec:
    """Everything that decides how Envoy is started; equal specs can share one Envoy."""
    manifest: Manifest
    wasm_path: Path
    plugin_config: Any = None
    failure_policy: FailurePolicy | None = None
    allow_fail_open: bool = False
    concurrency: int = 2
    listener_port: int = 0
    extra_http_filters: list[str] = field(default_factory=list)  # rendered fragments placed before the Wasm filter
    # delivery="ecds" (harness/ecds.py): the Wasm filter is a config_discovery stub fed by the ADS server on this port.
    xds_port: int | None = None
    answers: dict[str, list[AnswerRule]] = field(default_factory=dict)  # scripted answers per upstream (answers.py)
    hardening: RequestHardening = SAFE  # what the HTTP connection manager does before any filter
    xds_host: str = "127.0.0.1"
    module_dir: Path | None = None  # docker: the content-addressed module store, mounted at the same path

    def wasm_filter(self, wasm_path: str | None = None) -> WasmFilter:
        return WasmFilter.from_manifest(self.manifest, wasm_path or self.wasm_path, plugin_config=self.plugin_config,
                                        failure_policy=self.failure_policy, allow_fail_open=self.allow_fail_open)

    def rules_for(self, upstream: str) -> list[AnswerRule]:
        """UPSTREAM's scripted answers: the spec's (a scenario file's merged with filter.yaml's), else filter.yaml's."""
        return self.answers.get(upstream, self.manifest.answers.get(upstream, []))


@dataclass(frozen=True)
class BackendOptions:
    """What a backend needs beyond the spec. `docker`: the session whose labels, image choice and cleanup the
    docker backend's stacks share (none: each stack gets its own, closed with it)."""
    docker: DockerSession | None = None


class Stack:
    def __init__(self, envoy: Envoy, upstream_names: list[str], closer: ExitStack, *, run_id: str | None = None,
                 connect: Connect | None = None, clock: CaseClock | None = None):
        self.envoy = envoy
        self.upstream_names = upstream_names
        self.run_id = run_id  # the docker backend's label of this stack's containers and network
        self._closer = closer
        # How cases reach the stack and the clock `eventually` waits on (emulator: in-process, its test clock).
        self.connect = connect
        self.clock = clock
        # The emulator's say on a case that depends on Envoy itself (its own stats, …): the reason, else None.
        self.needs_envoy: Callable[[Case], str | None] = lambda case: None

    def client(self) -> Client:
        """A new client connection to this stack."""
        return self.connect() if self.connect is not None else Client(self.url)

    @property
    def url(self) -> str:
        return self.envoy.listener_url

    def stop(self) -> None:
        self._closer.close()

    def close_after(self, callback: Callable[[], None]) -> None:
        """Run CALLBACK on stop, once everything else of the stack has stopped."""
        outer = ExitStack()
        outer.callback(callback)
        outer.push(self._closer)  # exit callbacks run last-in first: the stack's own closer first
        self._closer = outer

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def ensure_port_free(host: str, port: int) -> None:
    """A clear error before Envoy's own 'cannot bind' when a fixed port is taken (port 0 is always free)."""
    if (e := bind_error(host, port)) is not None:
        raise UsageError(f"port {port} on {host} is already in use ({e.strerror})",
                         fix="pick another with --port, or stop what holds it") from e


def process_stack(spec: StackSpec, binary: EnvoyBinary, options: BackendOptions) -> Stack:
    """Echo upstreams in threads of this process, Envoy as a child process."""
    ensure_port_free("127.0.0.1", spec.listener_port)
    closer = ExitStack()
    try:
        upstreams = [closer.enter_context(EchoUpstream(name, rules=spec.rules_for(name)))
                     for name in spec.manifest.upstreams]
        wasm = spec.wasm_filter()
        bootstrap = Bootstrap(upstreams=[Upstream(u.name, u.host, u.port) for u in upstreams],
                              http_filters=[*spec.extra_http_filters,
                                            wasm.ecds_fragment() if spec.xds_port else wasm.fragment()],
                              listener_port=spec.listener_port, xds_port=spec.xds_port,
                              hardening=spec.hardening)
        envoy = closer.enter_context(EnvoyProcess(bootstrap.render(), binary=binary, concurrency=spec.concurrency))
    except BaseException:
        closer.close()
        raise
    return Stack(envoy, list(spec.manifest.upstreams), closer)


def docker_stack(spec: StackSpec, binary: EnvoyBinary, options: BackendOptions) -> Stack:
    """Containers on a private network (harness/docker.py), in OPTIONS' docker session or one of its own."""
    from wasmfilter.harness import docker

    ensure_port_free("127.0.0.1", spec.listener_port)
    if options.docker is not None:
        return docker.docker_stack(spec, binary, options.docker)
    session = docker.DockerSession()
    try:
        stack = docker.docker_stack(spec, binary, session)
    except BaseException:
        session.close()
        raise
    stack.close_after(session.close)
    return stack


def emulator_stack(spec: StackSpec, binary: EnvoyBinary, options: BackendOptions) -> Stack:
    """No Envoy: the filter in this process on the proxy-wasm emulator (emulator/backend.py)."""
    from wasmfilter.emulator.backend import emulator_stack as start

    return start(spec)


StackFactory = Callable[[StackSpec, EnvoyBinary, BackendOptions], Stack]
BACKENDS: dict[str, StackFactory] = {"process": process_stack, "docker": docker_stack, "emulator": emulator_stack}


@contextmanager
def backend_options(backend: str, *, envoy_image: str | None = None,
                    announce: Callable[[str], None] | None = None) -> Iterator[BackendOptions]:
    """The options for a program's stacks on BACKEND, open while it runs them: for docker, one DockerSession
    (ENVOY_IMAGE: the image to use instead of the automatic choice), closed — and swept — at the end."""
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend '{backend}'", fix="use one of: " + ", ".join(sorted(BACKENDS)))
    if backend != "docker":
        yield BackendOptions()
        return
    from wasmfilter.envoy.engine import client
    from wasmfilter.harness.docker import DockerSession

    client()  # an unreachable engine is one clear error up front, not one per scenario file
    with DockerSession(envoy_image=envoy_image, announce=announce) as session:
        yield BackendOptions(docker=session)


def start_stack(spec: StackSpec, *, backend: str = "process", binary: EnvoyBinary | None = None,
                options: BackendOptions | None = None) -> Stack:
    factory = BACKENDS.get(backend)
    if factory is None:
        raise UsageError(f"unknown backend '{backend}'", fix="use one of: " + ", ".join(sorted(BACKENDS)))
    return factory(spec, binary or resolve(spec.manifest.envoy_version), options or BackendOptions())
