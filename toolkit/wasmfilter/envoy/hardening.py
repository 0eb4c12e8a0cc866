"""The request hardening of every generated bootstrap: what the HTTP connection manager does to a request before
any filter sees it (path normalisation, escaped slashes, underscores in header names) and the client-sent cluster
header it always removes. docs/security.md says why each setting is chosen and what the filter and the upstream
see; a scenario file may relax it (`request_hardening:`) to prove a filter holds on its own."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

EscapedSlashesAction = Literal["KEEP_UNCHANGED", "REJECT_REQUEST", "UNESCAPE_AND_REDIRECT", "UNESCAPE_AND_FORWARD"]
UnderscoresAction = Literal["ALLOW", "REJECT_REQUEST", "DROP_HEADER"]


class RequestHardening(BaseModel):
    """HCM settings by their Envoy names; the defaults are the safe ones every generated config uses."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # RFC 3986 dot-segment removal (and `\` read as `/`) before filters and routing; the upstream gets the result.
    normalize_path: bool = True
    # `//` becomes `/` before filters and routing; the upstream gets the result.
    merge_slashes: bool = True
    # `%2F`, `%5C` (any case): 400 before any filter; one segment to some backends, two to others.
    path_with_escaped_slashes_action: EscapedSlashesAction = "REJECT_REQUEST"
    # `x_auth_identity`: 400 before any filter (Envoy's edge best practice); CGI-style backends fold `_` into `-`.
    headers_with_underscores_action: UnderscoresAction = "REJECT_REQUEST"
    # Remove a client's x-wasmfilter-cluster (early_header_mutation_extensions) before filters and route lookup.
    strip_cluster_header: bool = True


SAFE = RequestHardening()


EARLY_HEADER_MUTATION = "envoy.http.early_header_mutation.header_mutation"


def read_back(bootstrap: dict[str, Any], cluster_header: str) -> RequestHardening:
    """The hardening a rendered BOOTSTRAP (parsed YAML) applies on its first listener, read from what Envoy will get
    (so a test can hold every generated config to SAFE); Envoy's defaults where a setting is absent."""
    hcm = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    removed = [m.get("remove") for ext in hcm.get("early_header_mutation_extensions", [])
               if ext.get("name") == EARLY_HEADER_MUTATION for m in ext["typed_config"].get("mutations", [])]
    protocol = hcm.get("common_http_protocol_options", {})
    return RequestHardening(
        normalize_path=hcm.get("normalize_path", False), merge_slashes=hcm.get("merge_slashes", False),
        path_with_escaped_slashes_action=hcm.get("path_with_escaped_slashes_action", "KEEP_UNCHANGED"),
        headers_with_underscores_action=protocol.get("headers_with_underscores_action", "ALLOW"),
        strip_cluster_header=cluster_header in removed)
