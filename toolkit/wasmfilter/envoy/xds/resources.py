"""The Wasm filter as an ECDS resource: a `TypedExtensionConfig` named after the filter holding an
`envoy.extensions.filters.http.wasm.v3.Wasm`, and the content-addressed module files it points at (the file name is
the module's sha256, so a new module is always a new path and Envoy never reuses a stale VM for it)."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wasmfilter.errors import UsageError
from wasmfilter.manifest import FailurePolicy

if TYPE_CHECKING:  # pragma: no cover
    from envoy_data_plane.google.protobuf import Any as AnyMessage

ECDS_TYPE = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"
WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"


@dataclass(frozen=True)
class WasmResource:
    """What one push of the filter carries: the module file (content-addressed), its sha256, the plugin config."""
    name: str
    root_id: str
    vm_id: str
    wasm_path: Path
    sha256: str
    plugin_config: Any
    failure_policy: FailurePolicy = FailurePolicy.FAIL_CLOSED
    reload_backoff_ms: int = 1000

    def encode(self) -> AnyMessage:
        """The TypedExtensionConfig packed in a `google.protobuf.Any`, as a DiscoveryResponse carries it."""
        from envoy_data_plane.envoy.config.core.v3 import (
            AsyncDataSource,
            BackoffStrategy,
            DataSource,
            TypedExtensionConfig,
        )
        from envoy_data_plane.envoy.extensions.filters.http.wasm.v3 import Wasm
        from envoy_data_plane.envoy.extensions.wasm.v3 import FailurePolicy as Policy
        from envoy_data_plane.envoy.extensions.wasm.v3 import PluginConfig, ReloadConfig, VmConfig
        from envoy_data_plane.google.protobuf import Any as AnyMessage
        from envoy_data_plane.google.protobuf import StringValue

        reload = None
        if self.failure_policy is FailurePolicy.FAIL_RELOAD:
            from datetime import timedelta

            reload = ReloadConfig(backoff=BackoffStrategy(
                base_interval=timedelta(milliseconds=self.reload_backoff_ms)))
        # The plugin reads its configuration as JSON text, exactly as the inline bootstrap passes it.
        config = StringValue(value=json.dumps(self.plugin_config, sort_keys=True))
        wasm = Wasm(config=PluginConfig(
            name=self.name, root_id=self.root_id,
            vm_config=VmConfig(vm_id=self.vm_id, runtime="envoy.wasm.runtime.v8",
                               code=AsyncDataSource(local=DataSource(filename=str(self.wasm_path)))),
            configuration=AnyMessage.pack(config), failure_policy=Policy[self.failure_policy.value],
            reload_config=reload))
        return AnyMessage.pack(TypedExtensionConfig(name=self.name, typed_config=AnyMessage.pack(wasm)))

    def describe(self) -> str:
        return f"{self.name} (module sha256:{self.sha256[:12]})"


class ModuleStore:
    """Content-addressed module files under DIRECTORY: `<sha256>.wasm`, written once, atomically."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def add(self, wasm: Path | bytes) -> tuple[Path, str]:
        """Copy WASM (a file or the bytes) in; its path and sha256. A file that vanished is one clear error."""
        if isinstance(wasm, bytes):
            data = wasm
        else:
            try:
                data = Path(wasm).read_bytes()
            except OSError as e:
                raise UsageError(f"the module {wasm} cannot be read ({e.strerror}); nothing was pushed",
                                 fix="rebuild it; the running filter is unchanged") from e
        digest = hashlib.sha256(data).hexdigest()
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{digest}.wasm"
        if not path.is_file():
            tmp = path.with_name(path.name + ".partial")
            tmp.write_bytes(data)
            tmp.replace(path)
        return path, digest

    def clear(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
