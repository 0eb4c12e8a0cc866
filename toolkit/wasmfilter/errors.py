"""One error hierarchy. Every message is a single line naming the problem and the fix;
subprocess failures carry the tool's own output in `detail`, shown below that line."""

from __future__ import annotations


class WasmfilterError(Exception):
    """Base of every error the toolkit raises on purpose. `str(e)` is the one-line message."""

    def __init__(self, message: str, *, fix: str | None = None, detail: str | None = None):
        self.problem = message
        self.fix = fix
        self.detail = detail
        super().__init__(f"{message}; {fix}" if fix else message)


class UsageError(WasmfilterError):
    """A path, name or option the user gave does not work."""


class ManifestError(WasmfilterError):
    """filter.yaml is missing or invalid."""


class ToolchainError(WasmfilterError):
    """cargo, rustc, the wasm32-wasip1 std or another tool is missing."""


class CargoBuildError(WasmfilterError):
    """cargo failed; `detail` holds the compiler output."""


class BuildCommandError(CargoBuildError):
    """A prebuilt filter's `build:` command (clang, tinygo, ...) failed; `detail` holds its output."""


class AbiError(WasmfilterError):
    """A .wasm file is not a module Envoy's proxy-wasm host can load."""


class ConfigInvalidError(WasmfilterError):
    """An Envoy config or plugin configuration was rejected; `detail` holds Envoy's output."""


class EnvoyError(WasmfilterError):
    """Envoy could not be found, installed or driven."""


class EnvoyStartError(EnvoyError):
    """Envoy did not become ready; `detail` holds the tail of its log."""


class ScenarioError(WasmfilterError):
    """A scenario file is malformed."""


class ScenarioFailed(WasmfilterError):
    """Scenario cases did not get what they expected: `problems` lists every difference (one line each); the
    filter's own log lines and the tail of Envoy's log say why."""

    def __init__(self, message: str, *, problems: list[str], filter_logs: list[str] | None = None,
                 envoy_tail: str = "", fix: str | None = None):
        super().__init__(message, fix=fix)
        self.problems = problems
        self.filter_logs = filter_logs or []
        self.envoy_tail = envoy_tail


class BenchError(WasmfilterError):
    """A bench definition is invalid, or a bench run could not measure what it should."""


class TemplateError(WasmfilterError):
    """A scaffold template could not be rendered (a bug in the template, not in the user's input)."""


class DockerError(WasmfilterError):
    """The Docker engine is unreachable, or an image or container failed."""


class RegistryError(WasmfilterError):
    """An OCI registry refused or failed a request."""


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


class EmulatorError(WasmfilterError):
    """The emulator (a proxy-wasm host on wasmtime) cannot load or drive a module, or a test's script is wrong."""


class WasmTrap(EmulatorError):
    """A callback of the module trapped (a Rust panic, `unreachable`, its fuel or memory cap ran out):
    `callback` names it, `panic` holds the panic message the module logged before aborting (if any)."""

    def __init__(self, message: str, *, callback: str, panic: str | None = None, trap: str = "",
                 fix: str | None = None, detail: str | None = None):
        super().__init__(message, fix=fix, detail=detail)
        self.callback = callback
        self.panic = panic
        self.trap = trap
