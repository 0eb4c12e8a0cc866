"""The Envoy side the filter cannot see, emulated from the generated bootstrap: the route table (prefix / path /
header matches → a cluster or `cluster_header`), Envoy's answers when routing fails (no route → 404, unknown cluster
→ 503, both with empty bodies), the headers Envoy's connection manager and router add, and the echo upstream's answer
(harness/upstream.py's JSON). A route rule the emulator does not understand raises `NeedsEnvoy` naming it: such a
case is reported as needing Envoy, never passed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import yaml

from wasmfilter.emulator.headers import HeaderMap
from wasmfilter.emulator.stream import Response, UpstreamRequest
from wasmfilter.errors import EmulatorError
from wasmfilter.harness.upstream import ECHO_HEADER

ENVOY_ROUTE_TIMEOUT_MS = "15000"  # the router's x-envoy-expected-rq-timeout-ms for the default route timeout


def load_yaml(text: str) -> Any:
    """YAML through libyaml when PyYAML has it (a bootstrap parses ~10× faster)."""
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


class NeedsEnvoy(EmulatorError):
    """The case depends on Envoy behaviour the emulator does not reproduce."""


@dataclass(frozen=True)
class Route:
    prefix: str | None = None
    path: str | None = None
    headers: tuple[tuple[str, str | None], ...] = ()  # (name, exact value or None for present_match)
    cluster: str | None = None
    cluster_header: str | None = None

    def matches(self, path: str, headers: HeaderMap) -> bool:
        bare = path.split("?", 1)[0]
        if self.prefix is not None and not bare.startswith(self.prefix):
            return False
        if self.path is not None and bare != self.path:
            return False
        for name, exact in self.headers:
            value = headers.get(name)
            if value is None or (exact is not None and value != exact):
                return False
        return True


def _route(item: dict[str, Any]) -> Route:
    match = dict(item.get("match") or {})
    action = dict(item.get("route") or {})
    extra = (set(match) - {"prefix", "path", "headers"}) | (set(item) - {"match", "route", "name"}) | \
        (set(action) - {"cluster", "cluster_header"})
    if extra or not action:
        raise NeedsEnvoy(f"the route table uses {', '.join(sorted(extra)) or 'a non-cluster route'}, which the "
                         "emulator does not reproduce", fix="run this file on Envoy (--backend process)")
    headers = []
    for h in match.get("headers") or []:
        if h.get("present_match"):
            headers.append((h["name"], None))
        elif "exact_match" in h or "string_match" in h:
            exact = h.get("exact_match", (h.get("string_match") or {}).get("exact"))
            headers.append((h["name"], exact))
        else:
            raise NeedsEnvoy(f"route header matcher {h!r} is not reproduced by the emulator",
                             fix="run this file on Envoy (--backend process)")
    return Route(prefix=match.get("prefix"), path=match.get("path"), headers=tuple(headers),
                 cluster=action.get("cluster"), cluster_header=action.get("cluster_header"))


@dataclass
class RouteTable:
    routes: list[Route]
    clusters: list[str]

    @classmethod
    def from_bootstrap(cls, text: str | dict[str, Any]) -> RouteTable:
        doc = load_yaml(text) if isinstance(text, str) else text
        hcm = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        hosts = hcm["route_config"]["virtual_hosts"]
        if len(hosts) != 1 or hosts[0].get("domains") != ["*"]:
            raise NeedsEnvoy("the bootstrap has several virtual hosts", fix="run this file on Envoy")
        clusters = [c["name"] for c in doc["static_resources"].get("clusters", [])]
        return cls([_route(r) for r in hosts[0]["routes"]], clusters)

    @classmethod
    def default(cls, clusters: list[str]) -> RouteTable:
        """The generated bootstrap's table for CLUSTERS (harness default: cluster header, else the first)."""
        from wasmfilter.envoy.bootstrap import Bootstrap, Upstream

        text = Bootstrap(upstreams=[Upstream(name, "127.0.0.1", 1) for name in clusters]).render()
        return cls.from_bootstrap(text)

    def pick(self, headers: HeaderMap) -> str | None:
        """The cluster for HEADERS, '' when the route names a cluster header that is absent, None: no route."""
        path = headers.get(":path") or "/"
        for route in self.routes:
            if route.matches(path, headers):
                if route.cluster_header is not None:
                    return headers.get(route.cluster_header) or ""
                return route.cluster
        return None


def downstream_headers(method: str, path: str, pairs: list[tuple[str, str]], body: bytes, client_ip: str,
                       request_id: str) -> list[tuple[str, str]]:
    """The request headers as Envoy's connection manager hands them to the first filter (HTTP/1.1 in, use_remote_
    address on): Host becomes :authority, pseudo-headers first, then the client's in order, then
    x-forwarded-for (appended: the header map joins it to a client's with ",") / x-forwarded-proto / x-request-id."""
    lowered = [(k.lower(), v) for k, v in pairs]
    authority = next((v for k, v in lowered if k == "host"), "localhost")
    out = [(":authority", authority), (":path", path), (":method", method), (":scheme", "http")]
    out += [(k, v) for k, v in lowered if k not in ("host", "connection", "x-forwarded-proto", "x-request-id")]
    if (body or method in ("POST", "PUT", "PATCH")) and not any(k == "content-length" for k, _ in out):
        out.append(("content-length", str(len(body))))
    out += [("x-forwarded-for", client_ip), ("x-forwarded-proto", "http"), ("x-request-id", request_id)]
    return out


def upstream_request(cluster: str, headers: HeaderMap, body: bytes) -> UpstreamRequest:
    """What the upstream receives over HTTP/1.1: :authority as host, no pseudo-headers, the router's timeout."""
    seen = [("host", headers.get(":authority") or "")]
    seen += [(k, v) for k, v in headers.pairs() if not k.startswith(":")]
    seen.append(("x-envoy-expected-rq-timeout-ms", ENVOY_ROUTE_TIMEOUT_MS))
    return UpstreamRequest(cluster, headers.get(":method") or "GET", headers.get(":path") or "/", seen, body)


def echo(request: UpstreamRequest) -> Response:
    """The echo upstream's answer (harness/upstream.py), as it reaches the filter through Envoy."""
    status = 200
    if request.path.startswith("/status/"):
        code = request.path.split("/")[2].split("?")[0]
        status = int(code) if code.isdigit() and 200 <= int(code) <= 599 else 400
    # Python's http.server (the echo upstream) turns a leading `//…` into `/` before the handler sees it (gh-87389)
    path = "/" + request.path.lstrip("/") if request.path.startswith("//") else request.path
    payload = json.dumps({"upstream": request.cluster, "method": request.method, "path": path,
                          "headers": [[k, v] for k, v in request.headers],
                          "body": request.body.decode("utf-8", "replace")}).encode()
    body = b"" if request.method == "HEAD" else payload
    return Response(status, [("content-type", "application/json"), ("content-length", str(len(payload))),
                             (ECHO_HEADER, request.cluster), ("server", "envoy"),
                             ("x-envoy-upstream-service-time", "0")], body)
