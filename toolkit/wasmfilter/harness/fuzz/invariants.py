"""What must hold for every fuzz request: each response is one the filter or Envoy documents, and the security
invariants a filter declares in filter.yaml (`fuzz:`) — an anonymous request reaches the upstream only at a public
route *as every modelled upstream parser reads the path it got*, and no client value of an owned header reaches
it in any spelling a backend may fold together. (Envoy alive and the VM alive are checked by harness/fuzz/run.py.)"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

from wasmfilter.harness.fuzz.generate import INVALID, NONE, FuzzRequest
from wasmfilter.harness.fuzz.rawclient import RawResponse
from wasmfilter.harness.upstream import ECHO_HEADER
from wasmfilter.manifest import FuzzSpec, PublicRoute

# Envoy's own documented answers to requests it refuses before or instead of a filter: a bad request or framing,
# no route, body or headers too large, a method or coding it does not implement, HTTP/1.0 without accept_http_10,
# and an upstream that reset or refused the request (502/503 with Envoy's reason as the body; the echo upstream
# is Python's http.server, which drops some requests Envoy forwards).
ENVOY_STATUSES = frozenset({400, 404, 413, 414, 426, 431, 501, 502, 503, 505})
FORGED = "fuzz-forged"  # the value generate.py gives owned headers a client sends


@dataclass
class Outcome:
    """One fuzz request and what came back: a response per request its bytes hold, or fewer (closed)."""
    request: FuzzRequest
    responses: list[RawResponse] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True)
class Violation:
    kind: str
    message: str
    evidence: str = ""  # what a scenario case checks: the path or header the upstream got, the expected status


def remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4 on '/'-separated segments (no decoding)."""
    out: list[str] = []
    segments = path.split("/")
    for i, seg in enumerate(segments[1:] if path.startswith("/") else segments):
        last = i == len(segments) - 2
        if seg == "..":
            if out:
                out.pop()
            if last:
                out.append("")
        elif seg == ".":
            if last:
                out.append("")
        else:
            out.append(seg)
    return "/" + "/".join(out)


def _decode(path: str) -> str | None:
    if any(c == "%" and not _hex2(path[i + 1:i + 3]) for i, c in enumerate(path)):
        return None  # a malformed escape: such a server answers 400
    return unquote_to_bytes(path).decode("latin-1")


def _hex2(text: str) -> bool:
    return len(text) == 2 and all(c in "0123456789abcdefABCDEF" for c in text)


def _servlet(path: str) -> str | None:
    stripped = "/".join(seg.split(";", 1)[0] for seg in path.split("/"))
    decoded = _decode(stripped)
    return None if decoded is None else remove_dot_segments(decoded)


def _decoded_dots(path: str) -> str | None:
    decoded = _decode(path)
    return None if decoded is None else remove_dot_segments(decoded)


def _backslash(path: str) -> str | None:
    decoded = _decode(path)
    return None if decoded is None else remove_dot_segments(decoded.replace("\\", "/"))


# How real backends read a request path (the query and fragment already cut off). None: that parser refuses it.
UPSTREAM_PARSERS: dict[str, Callable[[str], str | None]] = {
    "literal": lambda p: p,                          # prefix match on the bytes received (many proxies, CDNs)
    "rfc3986": remove_dot_segments,                  # dot-segments removed, escapes kept opaque
    "decode-then-dots": _decoded_dots,               # decode once, then dots (Go net/http, nginx, Express)
    "backslash": _backslash,                         # `\` is `/` (IIS, ASP.NET, some Windows file servers)
    "servlet": _servlet,                             # `;params` dropped per segment, decoded, dots (Tomcat/Jetty)
}


def parser_views(raw_path: str) -> dict[str, str | None]:
    path = raw_path.split("#", 1)[0].split("?", 1)[0]
    return {name: parse(path) for name, parse in UPSTREAM_PARSERS.items()}


def has_prefix(path: str, prefix: str) -> bool:
    """The auth filter's segment-wise prefix match (filters/auth/src/path.rs)."""
    prefix = prefix.removesuffix("/")
    if not prefix:
        return True
    return path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/")


def is_public(path: str, method: str, routes: list[PublicRoute]) -> bool:
    return any(has_prefix(path, r.prefix) and (not r.methods or method in r.methods) for r in routes)


def echo_of(resp: RawResponse) -> dict | None:
    """What the echo upstream reported, when RESP came from it (None for local replies and HEAD)."""
    if resp.header(ECHO_HEADER) is None:
        return None
    try:
        doc = json.loads(resp.body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def fold(name: str) -> str:
    return name.lower().replace("_", "-")


def check(outcome: Outcome, spec: FuzzSpec) -> list[Violation]:
    """Every invariant OUTCOME breaks (the per-response ones; liveness is the runner's)."""
    problems: list[Violation] = []
    documented = ENVOY_STATUSES | set(spec.statuses)
    for i, resp in enumerate(outcome.responses):
        from_upstream = resp.header(ECHO_HEADER) is not None
        vm_down = resp.status == 503 and not resp.body  # Envoy's reply while the VM is down: judged as vm-died
        if not from_upstream and not vm_down and resp.status not in documented:
            problems.append(Violation(
                "undocumented-status", f"status {resp.status} (body {resp.body[:60]!r}) is neither the filter's "
                f"documented replies {sorted(spec.statuses)} nor Envoy's {sorted(ENVOY_STATUSES)}", str(resp.status)))
        echo = echo_of(resp)
        if echo is None:
            continue
        credential = outcome.request.credential if i == 0 else NONE  # a pipelined second request has none
        if spec.public is not None and credential in (NONE, INVALID):
            problems += _anonymous(echo, spec.public)
        problems += _owned(echo, spec.owned_headers)
    return problems


def _anonymous(echo: dict, public: list[PublicRoute]) -> list[Violation]:
    path, method = str(echo.get("path", "")), str(echo.get("method", ""))
    out = []
    for parser, view in parser_views(path).items():
        if view is not None and not is_public(view, method, public):
            out.append(Violation("anonymous-upstream",
                                 f"a request without a valid credential reached the upstream as {method} {path!r}, "
                                 f"which a {parser} upstream reads as {view!r} (not a public route)", path))
            break
    return out


def _owned(echo: dict, owned: list[str]) -> list[Violation]:
    folded = {fold(n) for n in owned}
    return [Violation("owned-header", f"the client's value of owned header {name!r} reached the upstream "
                                      f"(a backend folding case and '_' reads it as {fold(name)!r})", str(name))
            for name, value in echo.get("headers", []) if fold(str(name)) in folded and FORGED in str(value)]
