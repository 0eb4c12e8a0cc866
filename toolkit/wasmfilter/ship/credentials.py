"""Which credentials go to a registry: flags, else the Docker config file's `auths` entry or credential helper."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from wasmfilter.errors import UsageError
from wasmfilter.ship.reference import DOCKER_HUB


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    source: str = "flags"


def docker_config_path(explicit: Path | None = None) -> Path:
    if explicit is not None:
        return Path(explicit)
    base = os.environ.get("DOCKER_CONFIG")
    return (Path(base) if base else Path.home() / ".docker") / "config.json"


def credentials_for(registry: str, *, username: str | None = None, password: str | None = None,
                    docker_config: Path | None = None) -> Credentials | None:
    """Flags win; else the Docker config file's `auths` entry (or credential helper) for REGISTRY; else None."""
    if username is not None or password is not None:
        if not username or password is None:
            raise UsageError("--username and --password go together", fix="pass both, or neither")
        return Credentials(username, password)
    path = docker_config_path(docker_config)
    if not path.is_file():
        if docker_config is not None:
            raise UsageError(f"Docker config '{path}' does not exist", fix="pass an existing config.json")
        return None
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UsageError(f"Docker config '{path}' is not valid JSON ({e})", fix="fix or remove the file") from e
    keys = [registry, f"https://{registry}", f"http://{registry}", f"https://{registry}/v1/", f"https://{registry}/v2/"]
    if registry == DOCKER_HUB:
        keys = ["https://index.docker.io/v1/", "index.docker.io", "docker.io", *keys]
    helper = (cfg.get("credHelpers") or {}).get(registry)
    auths = cfg.get("auths") or {}
    for key in keys:
        entry = auths.get(key)
        if not entry:
            continue
        if entry.get("auth"):
            try:
                user, _, pwd = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError) as e:
                raise UsageError(f"Docker config '{path}': the auth for {key} is not base64 user:password",
                                 fix="run `docker login` again") from e
            return Credentials(user, pwd, f"{path} ({key})")
        if entry.get("username") and entry.get("password") is not None:
            return Credentials(entry["username"], entry["password"], f"{path} ({key})")
    helper = helper or cfg.get("credsStore")
    if helper:
        return _credential_helper(helper, registry)
    return None


def _credential_helper(helper: str, registry: str) -> Credentials | None:
    exe = shutil.which(f"docker-credential-{helper}")
    if exe is None:
        return None
    out = subprocess.run([exe, "get"], input=registry, capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        return None
    try:
        data = json.loads(out.stdout)
    except ValueError:
        return None
    return Credentials(data.get("Username", ""), data.get("Secret", ""), f"docker-credential-{helper}")

