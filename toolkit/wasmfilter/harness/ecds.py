"""A running stack whose Wasm filter arrives over ECDS (docs/dev.md): the in-process ADS server, echo upstreams and
an Envoy whose bootstrap has only a `config_discovery` stub for the filter; `push()` hands Envoy a new module
(content-addressed file) and/or plugin config and waits for the ACK. A NACKed push raises `PushRejected` and leaves
the last good filter (and this object's idea of it) unchanged. On the docker backend the xDS server listens on the
host's Docker bridge address and the module store is mounted into the Envoy container at the same path."""

from __future__ import annotations

import shutil
import tempfile
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any, Self

from wasmfilter.envoy.binary import EnvoyBinary
from wasmfilter.envoy.xds.process import XdsProcess
from wasmfilter.envoy.xds.resources import ModuleStore, WasmResource
from wasmfilter.envoy.xds.server import Push
from wasmfilter.harness.stack import BackendOptions, Stack, StackSpec, start_stack

KEEP: Any = object()  # push(config=KEEP): the last good plugin config


class EcdsStack:
    """`with EcdsStack(spec) as live: live.push(config=...)`. SPEC's module and plugin config are the first push."""

    def __init__(self, spec: StackSpec, *, binary: EnvoyBinary | None = None, xds_port: int = 0,
                 push_timeout: float = 60.0, initial_push: bool = True, backend: str = "process",
                 options: BackendOptions | None = None):
        self.backend = backend
        self.options = options
        self.spec = spec
        self.binary = binary
        self.xds_port = xds_port
        self.push_timeout = push_timeout
        self.initial_push = initial_push
        self.xds: XdsProcess | None = None
        self.stack: Stack | None = None
        self.modules: ModuleStore | None = None
        self.wasm_path: Path | None = None  # the last good module (in the store)
        self.sha256 = ""
        self.plugin_config: Any = spec.wasm_filter().plugin_config
        self._closer = ExitStack()

    @property
    def url(self) -> str:
        assert self.stack is not None
        return self.stack.url

    def start(self) -> Self:
        try:
            host = "127.0.0.1"
            if self.backend == "docker":  # the Envoy container reaches the host on Docker's default bridge
                from wasmfilter.harness.docker import host_address

                host = host_address()
            self.xds = self._closer.enter_context(XdsProcess(host=host, port=self.xds_port))
            workdir = Path(tempfile.mkdtemp(prefix="wasmfilter-ecds-"))
            workdir.chmod(0o755)  # the container's Envoy reads the module store too
            self._closer.callback(shutil.rmtree, workdir, True)
            self.modules = ModuleStore(workdir / "modules")
            self.modules.directory.mkdir()
            spec = replace(self.spec, xds_port=self.xds.port, xds_host=host, module_dir=self.modules.directory)
            self.stack = self._closer.enter_context(
                start_stack(spec, backend=self.backend, binary=self.binary, options=self.options))
            if self.initial_push:
                self.push(wasm=self.spec.wasm_path, config=self.plugin_config)
        except BaseException:
            self._closer.close()
            raise
        return self

    def stop(self) -> None:
        self._closer.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def resource(self, *, wasm: Path | bytes | None = None, config: Any = KEEP) -> WasmResource:
        """The resource a push would carry: WASM (copied into the content-addressed store) or the last good module,
        CONFIG or the last good plugin config."""
        assert self.modules is not None
        if wasm is not None:
            path, sha256 = self.modules.add(wasm)
        elif self.wasm_path is not None:
            path, sha256 = self.wasm_path, self.sha256
        else:
            path, sha256 = self.modules.add(self.spec.wasm_path)
        base = self.spec.wasm_filter(str(path))
        return WasmResource(name=base.name, root_id=base.root_id or base.name, vm_id=base.vm_id or base.name,
                            wasm_path=path, sha256=sha256,
                            plugin_config=self.plugin_config if config is KEEP else config,
                            failure_policy=base.failure_policy, reload_backoff_ms=base.reload_backoff_ms)

    def push(self, *, wasm: Path | bytes | None = None, config: Any = KEEP, timeout: float | None = None) -> Push:
        """Push a new module and/or config, wait for Envoy's answer; on ACK it is the new last good filter."""
        return self.push_resource(self.resource(wasm=wasm, config=config), timeout=timeout)

    def push_resource(self, resource: WasmResource, *, timeout: float | None = None) -> Push:
        assert self.xds is not None
        done = self.xds.apply(resource, timeout=self.push_timeout if timeout is None else timeout)
        self.wasm_path, self.sha256, self.plugin_config = resource.wasm_path, resource.sha256, resource.plugin_config
        return done
