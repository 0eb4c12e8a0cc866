"""Image references: `Reference` (registry, repository, tag, digest) and `parse_reference` for
HOST[:PORT]/NAME[:TAG][@sha256:DIGEST], with Docker's rules for a name without a host (Docker Hub, library/)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from wasmfilter.errors import UsageError

TAG_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
REPO_PATTERN = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
DIGEST_PATTERN = re.compile(r"^sha256:[a-f0-9]{64}$")
DOCKER_HUB = "docker.io"


@dataclass(frozen=True)
class Reference:
    """A parsed image reference; `str()` gives it back as HOST/NAME[:TAG][@DIGEST]."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        """What goes after /manifests/: the digest if given, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        out = f"{self.registry}/{self.repository}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.repository, self.tag, digest)



def parse_reference(text: str) -> Reference:
    """HOST[:PORT]/REPO[:TAG][@sha256:DIGEST], with an optional oci:// prefix; no host means Docker Hub."""
    raw = text.strip().removeprefix("oci://")
    bad = UsageError(f"'{text}' is not an image reference",
                     fix="use HOST[:PORT]/NAME[:TAG][@sha256:DIGEST], e.g. 127.0.0.1:5000/filters/auth:v1")
    if not raw or "://" in raw or any(c.isspace() for c in raw):
        raise bad
    digest = None
    if "@" in raw:
        raw, digest = raw.split("@", 1)
        if not DIGEST_PATTERN.match(digest):
            raise UsageError(f"'{digest}' in '{text}' is not a sha256 digest", fix="use @sha256:<64 hex digits>")
    first, _, rest = raw.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, rest
    else:
        registry, path = DOCKER_HUB, raw
    tag = None
    last_slash = path.rfind("/")
    if ":" in path[last_slash + 1:]:
        path, tag = path.rsplit(":", 1)
        if not TAG_PATTERN.match(tag):
            raise UsageError(f"'{tag}' in '{text}' is not a valid tag", fix="use letters, digits, '_', '.', '-'")
    if registry == DOCKER_HUB and "/" not in path:
        path = "library/" + path
    if not REPO_PATTERN.match(path):
        raise bad
    if tag is None and digest is None:
        tag = "latest"
    return Reference(registry, path, tag, digest)
