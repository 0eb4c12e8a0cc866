"""A local OCI registry for tests and trying things out (`wasmfilter registry`): Debian's `docker-registry` (CNCF
distribution) on a free 127.0.0.1 port, with its storage and config in a temporary directory, optionally behind
htpasswd (bcrypt) auth or a raw `auth:` section (e.g. Bearer-token mode).

    with LocalRegistry() as reg:                      # reg.host == "127.0.0.1:<port>"
        push_image(image, f"{reg.host}/filters/auth:v1", insecure=True)   # wasmfilter.ship.transfer
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from wasmfilter.errors import RegistryError, ToolchainError, tail
from wasmfilter.settings import current
from wasmfilter.subprocesses import die_with_parent, stop

DEFAULT_BINARY = "/usr/bin/docker-registry"
INSTALL_FIX = "run `make toolchain` (apt-get install docker-registry)"


def find_binary(explicit: str | Path | None = None) -> str:
    """The docker-registry binary: EXPLICIT, else WASMFILTER_REGISTRY_BIN, else Debian's, else one on PATH."""
    candidates = [str(explicit)] if explicit else [
        current().registry_bin or "", DEFAULT_BINARY,
        shutil.which("docker-registry") or "", shutil.which("registry") or ""]
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    raise ToolchainError("the docker-registry server is not installed", fix=INSTALL_FIX)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def htpasswd_line(user: str, password: str) -> str:
    """One htpasswd entry with a bcrypt hash (the only scheme distribution's htpasswd auth accepts)."""
    if ":" in user or not user:
        raise RegistryError(f"'{user}' is not a valid user name", fix="use a non-empty name without ':'")
    try:
        import bcrypt
    except ImportError:
        exe = shutil.which("htpasswd")
        if exe is None:
            raise ToolchainError("htpasswd auth needs the bcrypt Python package or apache2-utils' htpasswd",
                                 fix="pip install bcrypt (or apt-get install apache2-utils)") from None
        out = subprocess.run([exe, "-nbB", user, password], capture_output=True, text=True, check=True)
        return out.stdout.strip()
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
    return f"{user}:{hashed}"


class LocalRegistry:
    """A `docker-registry serve` process. `users` turns on htpasswd auth; `auth` is a raw `auth:` section of the
    registry config instead (e.g. `{"token": {...}}` for Bearer-token auth); storage is a temp dir unless given."""

    def __init__(self, *, users: dict[str, str] | None = None, auth: dict | None = None, storage: Path | None = None,
                 binary: str | Path | None = None, port: int = 0, start_timeout: float = 20.0):
        self.users = dict(users or {})
        self.auth = auth
        self.binary = find_binary(binary)
        self.requested_port = port
        self.start_timeout = start_timeout
        self.workdir = Path(tempfile.mkdtemp(prefix="wasmfilter-registry-"))
        self.storage = Path(storage) if storage else self.workdir / "storage"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / "registry.log"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def blob_path(self, digest: str) -> Path:
        """Where the filesystem driver keeps a blob's bytes (for fault-injection tests)."""
        hexpart = digest.removeprefix("sha256:")
        return self.storage / "docker/registry/v2/blobs/sha256" / hexpart[:2] / hexpart / "data"

    def _write_config(self) -> Path:
        cfg: dict = {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": True}, "formatter": "text"},
            "storage": {"filesystem": {"rootdirectory": str(self.storage)}, "delete": {"enabled": True},
                        "maintenance": {"uploadpurging": {"enabled": False}}},
            "http": {"addr": f"127.0.0.1:{self.port}", "secret": os.urandom(16).hex(),
                     "headers": {"X-Content-Type-Options": ["nosniff"]}},
        }
        if self.users:
            htpasswd = self.workdir / "htpasswd"
            htpasswd.write_text("".join(htpasswd_line(u, p) + "\n" for u, p in self.users.items()))
            cfg["auth"] = {"htpasswd": {"realm": "wasmfilter", "path": str(htpasswd)}}
        elif self.auth:
            cfg["auth"] = self.auth
        path = self.workdir / "config.yml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        return path

    def start(self) -> LocalRegistry:
        self.storage.mkdir(parents=True, exist_ok=True)
        last_error = ""
        for _ in range(3):  # a free port can be taken between probing and binding; retry with another
            self.port = self.requested_port or free_port()
            config = self._write_config()
            with open(self.log_path, "wb") as log:
                self.proc = subprocess.Popen([self.binary, "serve", str(config)], stdout=log,
                                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             preexec_fn=die_with_parent)
            if self._wait_ready():
                return self
            last_error = self.logs()
            self._stop_process()
            if "address already in use" not in last_error or self.requested_port:
                break
        raise RegistryError(f"docker-registry did not become ready on {self.host}",
                            fix="see its log below", detail=tail(last_error, 30))

    def _wait_ready(self) -> bool:
        """Poll GET /v2/ (200, or 401 with auth on) until the server answers or the process exits."""
        deadline = time.monotonic() + self.start_timeout
        delay = 0.01
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"{self.url}/v2/", timeout=1) as resp:
                    if resp.status == 200:
                        return True
            except urllib.error.HTTPError as e:
                if e.code == 401:
                    return True
            except OSError:
                pass
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
        return False

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def _stop_process(self) -> None:
        stop(self.proc, timeout=5)
        self.proc = None

    def stop(self) -> None:
        self._stop_process()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalRegistry:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
