"""Which credentials go to a registry. Flags (`--username/--password`) win, then the WASMFILTER_REGISTRY_USERNAME /
WASMFILTER_REGISTRY_PASSWORD settings, then the Docker config file, resolved by the `docker` package's own code
the way the Docker CLI does it: the registry's `credHelpers` entry first, then `credsStore`, then `auths`
(`auth` base64 user:password, `username`/`password` fields, or `identitytoken`). An `identitytoken`, or a helper
answering with the user `<token>`, is an identity token (an OAuth2 refresh token, what `docker login` keeps for
ACR-style registries), which the registry client trades for access tokens with the refresh-token grant."""

from __future__ import annotations

import base64
import binascii
import json
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wasmfilter.errors import UsageError
from wasmfilter.settings import current

LOGIN_FIX = "run `docker login` again"


@dataclass(frozen=True)
class Credentials:
    """A user and password, or an identity token; SOURCE says where they came from (for error messages)."""
    username: str
    password: str
    source: str = "flags"
    identity_token: str | None = None

    @property
    def who(self) -> str:
        """How messages name these credentials: the user, or the identity token and its source."""
        if self.identity_token:
            return f"the identity token from {self.source}"
        return f"user '{self.username}'"


def credentials_for(registry: str, *, username: str | None = None, password: str | None = None,
                    docker_config: Path | None = None) -> Credentials | None:
    """The credentials for REGISTRY (order: see the module doc); None means anonymous. DOCKER_CONFIG is an explicit
    config.json; without it the `docker` package finds one ($DOCKER_CONFIG/config.json, ~/.docker/config.json)."""
    settings = current()
    # A flag wins over its variable, one by one (`-u alice` with the password in the environment works).
    user = username if username is not None else settings.registry_username
    secret = password if password is not None else settings.registry_password
    if user is not None or secret is not None:
        if not user or secret is None:
            raise UsageError("--username and --password go together (or WASMFILTER_REGISTRY_USERNAME and "
                             "WASMFILTER_REGISTRY_PASSWORD)", fix="pass both, or neither")
        flags = username is not None and password is not None
        return Credentials(user, secret, "flags" if flags else "WASMFILTER_REGISTRY_USERNAME/PASSWORD")
    return docker_credentials(registry, docker_config)


def docker_credentials(registry: str, docker_config: Path | None = None) -> Credentials | None:
    """REGISTRY's entry in the Docker config, resolved by `docker.auth` (helpers, then credsStore, then auths)."""
    from docker.auth import load_config
    from docker.errors import DockerException
    from docker.utils.config import LEGACY_DOCKER_CONFIG_FILENAME, find_config_file

    if docker_config is not None and not Path(docker_config).is_file():
        raise UsageError(f"Docker config '{docker_config}' does not exist", fix="pass an existing config.json")
    found = find_config_file(str(docker_config) if docker_config is not None else None)
    if found is None:
        return None
    path = Path(found)
    if path.name == LEGACY_DOCKER_CONFIG_FILENAME:  # ~/.dockercfg: the docker package reads the old format itself
        auth_config = load_config(str(path))
    else:
        sections = _auth_sections(path)
        if not any(sections.values()):
            return None
        auth_config = load_config(config_dict=sections)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # docker warns on stderr about a helper it cannot find; we say it in one line
        try:
            entry: dict[str, Any] | None = auth_config.resolve_authconfig(registry)
        except DockerException as e:
            cause = " ".join(str(e.__cause__ or e).split())
            raise UsageError(f"the Docker credential helper for {registry} failed ({cause})",
                             fix=f"fix the helper or its entry in '{path}', or pass --username/--password") from e
    if not entry:
        return None
    helper = auth_config.get_credential_store(registry)
    source = f"docker-credential-{helper}" if "ServerAddress" in entry else f"{path} (auths)"
    if entry.get("IdentityToken"):
        return Credentials("<token>", "", source, identity_token=entry["IdentityToken"])
    user = entry.get("Username") or entry.get("username")
    if not user:
        return None
    return Credentials(user, entry.get("Password") or entry.get("password") or "", source)


def _auth_sections(path: Path) -> dict[str, Any]:
    """The auth sections of the config file at PATH, checked, in the form `docker.auth.load_config` takes.
    Two things differ from what the docker package would do with the file alone: an entry with `username` and
    `password` fields (no `auth`) is kept, as the Docker CLI keeps it; a credential helper named in `credsStore`
    that is not installed is left out (so anonymous pulls still work), one in `credHelpers` is kept and fails
    in one line when asked."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UsageError(f"Docker config '{path}' is not valid JSON ({e})", fix="fix or remove the file") from e
    if not isinstance(raw, dict):
        raise UsageError(f"Docker config '{path}' is not a JSON object", fix="fix or remove the file")
    auths: dict[str, Any] = {}
    for key, entry in (raw.get("auths") or {}).items():
        if not isinstance(entry, dict):
            raise UsageError(f"Docker config '{path}': the entry for {key} is not an object", fix=LOGIN_FIX)
        entry = dict(entry)
        if entry.get("auth") and not entry.get("identitytoken"):
            _check_auth(path, key, entry["auth"])
        elif entry.get("username") and entry.get("password") is not None:
            entry["auth"] = base64.b64encode(f"{entry['username']}:{entry['password']}".encode()).decode()
        auths[key] = entry
    sections: dict[str, Any] = {"auths": auths}
    store = raw.get("credsStore")
    if store and shutil.which(f"docker-credential-{store}"):
        sections["credsStore"] = store
    if raw.get("credHelpers"):
        sections["credHelpers"] = dict(raw["credHelpers"])
    return sections


def _check_auth(path: Path, key: str, auth: str) -> None:
    """One line for an `auth` value the docker package could not decode (it wants base64 of user:password)."""
    try:
        ok = ":" in base64.b64decode(auth).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        ok = False
    if not ok:
        raise UsageError(f"Docker config '{path}': the auth for {key} is not base64 user:password", fix=LOGIN_FIX)
