"""The Docker engine, for the container backend, the images and docker-compose: one client per engine address
(DOCKER_HOST, read by the docker package), a clear error when it is unreachable, image look-up and pull."""

from __future__ import annotations

import functools
import os
import threading
from typing import TYPE_CHECKING

from wasmfilter.errors import DockerError

if TYPE_CHECKING:  # pragma: no cover
    import docker

PULL_TIMEOUT_S = 20.0


def docker_host() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


@functools.cache
def _client_for(host: str, timeout: int) -> docker.DockerClient:
    # Cached per address: a connection pool, not state; an unreachable engine raises and is not cached.
    import docker

    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as e:  # docker raises DockerException, requests' ConnectionError, FileNotFoundError, ...
        raise DockerError(f"cannot reach the Docker engine at {host}: {_engine_reason(host, e)}",
                          fix="start it (`systemctl start docker`) or point DOCKER_HOST at a running engine") from e
    return client


def _engine_reason(host: str, e: BaseException) -> str:
    text = str(e)
    if host.startswith("unix://"):
        path = host[len("unix://"):]
        if not os.path.exists(path):
            return "no such socket"
        if "Permission denied" in text or "PermissionError" in text:
            return "permission denied on the socket (add yourself to the docker group)"
    if "ConnectionRefused" in text or "Connection refused" in text:
        return "connection refused (nothing listens there)"
    return short(e)


def client(timeout: int = 120) -> docker.DockerClient:
    """A client for the engine DOCKER_HOST names (the local socket by default); DockerError if unreachable."""
    return _client_for(docker_host(), timeout)


def short(e: BaseException) -> str:
    """An engine error in one line: docker's APIError explanation (the engine's own words, without the URL)."""
    explanation = getattr(e, "explanation", None)
    raw = str(explanation if explanation else e).strip()
    text = raw.splitlines()[0] if raw else type(e).__name__
    return text if len(text) < 240 else text[:237] + "..."


def image_exists(name: str) -> bool:
    import docker

    try:
        client().images.get(name)
        return True
    except docker.errors.ImageNotFound:
        return False
    except docker.errors.APIError as e:
        raise DockerError(f"cannot look up image '{name}': {short(e)}", fix="check the Docker engine") from e


def try_pull(name: str, timeout: float = PULL_TIMEOUT_S, failures: dict[str, str] | None = None) -> str | None:
    """Pull NAME; None on success, else why not. FAILURES (the caller's memo) remembers why a pull failed, so a
    session asks a registry that cannot be reached once, not once per stack."""
    if failures is not None and name in failures:
        return failures[name]
    result: list[str | None] = [f"timed out after {timeout:.0f}s"]

    def pull() -> None:
        try:
            repo, _, tag = name.rpartition(":") if ":" in name.rsplit("/", 1)[-1] else (name, "", "latest")
            _client_for(docker_host(), int(timeout) + 5).images.pull(repo, tag=tag)
            result[0] = None
        except Exception as e:  # noqa: BLE001 - any failure means "not pullable", reported as text
            result[0] = short(e)

    worker = threading.Thread(target=pull, daemon=True)
    worker.start()
    worker.join(timeout)
    if result[0] is not None and failures is not None:
        failures[name] = result[0]
    return result[0]
