"""Seeded request generation: one `FuzzRequest` per draw of a `random.Random`, so a seed and an index name the same
request on every run — paths with encodings and dot-segments, header names and values at the edges, many and huge
headers, duplicates, bodies, methods, and HTTP/1.1 framing edge cases — and its rendering to raw bytes."""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

from wasmfilter.manifest import FuzzSpec

# How the generator placed a credential: `valid`/`none`/`invalid` are unambiguous; `mutated` (a valid value with a
# twist an intermediary may undo: whitespace, case, `_` in the name, a duplicate) is left out of the auth invariant.
VALID, NONE, INVALID, MUTATED = "valid", "none", "invalid", "mutated"

FRAMINGS = ("plain", "chunked", "cl_te", "bad_chunk", "cl_short", "http10", "no_host", "absolute", "bare_lf",
            "obs_fold", "pipelined", "space_before_colon")
METHODS = ("GET", "GET", "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "get", "G3T",
           "CONNECT")
# Segments a decoder, a dot-segment remover or a servlet container each read differently.
DOT_SEGMENTS = ("..", "..", ".", "%2e%2e", "%2E%2e", ".%2e", "%2e.", "..;", "..;x=1", "..%2f", "..%5c", "..\\",
                "%252e%252e", "%c0%ae%c0%ae", "%2e", ".;")
ODD_SEGMENTS = ("", ";", "x;y=1", "%2f", "%2F", "%5c", "\\", "%00", "%20", "~", "*", "%61", "%", "%zz", "A" * 300,
                "%ff", "é")
SUFFIXES = ("", "", "", "?", "?a=1", "?a=%2e%2e/x&b", "#frag", "?x=1#y", "/", "//", "/.")
EDGE_VALUES = ("", " ", " padded ", "\t", "a\tb", "x" * 1024, "\x7f", "caf\xe9", "a,b", '"quoted"', "=", "null")
EDGE_NAMES = ("x_under_score", "X-UPPER", "x-" + "n" * 200, "x.dot", "x~tilde", "!#$%&'*+-.^_`|~", "cookie",
              "content-type", "transfer-encoding", "te", "connection", "upgrade", "expect", "host",
              "x-forwarded-for", "x-envoy-original-path", "x-request-id", ":authority")


@dataclass
class FuzzRequest:
    method: str = "GET"
    path: str = "/"
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: str = ""
    framing: str = "plain"
    credential: str = NONE

    def methods(self) -> list[str]:
        """One entry per HTTP request these bytes hold (pipelined: two)."""
        return [self.method, "GET"] if self.framing == "pipelined" else [self.method]

    def render(self) -> bytes:
        eol = "\n" if self.framing == "bare_lf" else "\r\n"
        version = "HTTP/1.0" if self.framing == "http10" else "HTTP/1.1"
        target = f"http://localhost{self.path}" if self.framing == "absolute" else self.path
        lines = [f"{self.method} {target} {version}"]
        names = {k.lower() for k, _ in self.headers}
        if "host" not in names and self.framing != "no_host":
            lines.append("host: localhost")
        sep = " : " if self.framing == "space_before_colon" else ": "
        lines += [f"{k}{sep}{v}" for k, v in self.headers]
        if self.framing == "obs_fold":
            lines.append("x-folded: first")
            lines.append(" continued")
        body = self.body
        framed = {"te", "transfer-encoding", "content-length"} & names
        if self.framing in ("chunked", "cl_te", "bad_chunk"):
            lines.append("transfer-encoding: chunked")
            if self.framing == "cl_te":
                lines.append(f"content-length: {len(body)}")
            size = "zz" if self.framing == "bad_chunk" else f"{len(body.encode('latin-1', 'replace')):x}"
            body = (f"{size}\r\n{body}\r\n" if body else "") + "0\r\n\r\n"
        elif self.framing == "cl_short" and body:
            lines.append(f"content-length: {max(0, len(body) // 2)}")
            body += "\r\n\r\n"  # the rest is a complete (invalid) second request: Envoy answers, never waits
        elif not framed and (body or self.method.upper() in ("POST", "PUT", "PATCH")):
            lines.append(f"content-length: {len(body.encode('latin-1', 'replace'))}")
        data = (eol.join(lines) + eol + eol + body).encode("latin-1", "replace")
        if self.framing == "pipelined":
            data += b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n"
        return data

    def is_plain(self) -> bool:
        """Expressible as a scenario case (harness/client.py sends it the same way)."""
        return self.framing == "plain" and not any(k.lower() in ("host", "content-length", "transfer-encoding")
                                                   for k, _ in self.headers)


def _path(rng: random.Random, spec: FuzzSpec) -> str:
    seeds = spec.paths or ["/"]
    start = rng.choice(seeds).rstrip("/")
    if rng.random() < 0.25:
        return start + rng.choice(SUFFIXES) if start else "/"
    parts = [start]
    for _ in range(rng.randint(1, 3)):
        parts.append(rng.choice(DOT_SEGMENTS) if rng.random() < 0.6 else rng.choice(ODD_SEGMENTS))
    if rng.random() < 0.7:
        parts.append(rng.choice(seeds).strip("/"))
    sep = rng.choice(("/", "/", "/", "\\", "//"))
    path = sep.join(parts)
    if not path.startswith("/"):
        path = "/" + path
    return path + rng.choice(SUFFIXES)


def _credential(rng: random.Random, spec: FuzzSpec) -> tuple[str, list[tuple[str, str]]]:
    if not spec.credentials:
        return NONE, []
    valid = rng.choice(spec.credentials)
    roll = rng.random()
    if roll < 0.35:
        return NONE, []
    if roll < 0.6:
        return VALID, list(valid.items())
    if roll < 0.8:
        return INVALID, [(k, rng.choice(("wrong", "", "alice", v[:-1], v + "x"))) for k, v in valid.items()]
    twist = rng.choice(("space", "case", "underscore", "duplicate", "upper-name"))
    pairs = []
    for k, v in valid.items():
        if twist == "space":
            pairs.append((k, f" {v}\t"))
        elif twist == "case":
            pairs.append((k, v.upper()))
        elif twist == "underscore":
            pairs.append((k.replace("-", "_"), v))
        elif twist == "duplicate":
            pairs += [(k, "wrong"), (k, v)] if rng.random() < 0.5 else [(k, v), (k, "wrong")]
        else:
            pairs.append((k.upper(), v))
    return MUTATED, pairs


def _headers(rng: random.Random, spec: FuzzSpec) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for name, values in spec.headers.items():
        if values and rng.random() < 0.5:
            out.append((name, rng.choice(values)))
    for owned in spec.owned_headers:
        if rng.random() < 0.3:
            spelling = rng.choice((owned, owned.upper(), owned.replace("-", "_"), owned.title()))
            out.append((spelling, "fuzz-forged"))
    roll = rng.random()
    if roll < 0.3:
        for _ in range(rng.randint(1, 4)):
            out.append((rng.choice(EDGE_NAMES), rng.choice(EDGE_VALUES)))
    elif roll < 0.36:
        out += [(f"x-many-{i}", "v") for i in range(rng.choice((50, 99, 101, 200)))]
    elif roll < 0.40:
        out.append(("x-huge", "h" * rng.choice((8 * 1024, 59 * 1024, 61 * 1024, 96 * 1024))))
    elif roll < 0.45 and out:
        out.append(rng.choice(out))  # a duplicate of one already there
    return out


def generate(rng: random.Random, spec: FuzzSpec) -> FuzzRequest:
    """The next request from RNG: every dimension drawn independently, most of them plain most of the time."""
    method = rng.choice(METHODS) if rng.random() < 0.4 else "GET"
    path = _path(rng, spec)
    credential, cred_headers = _credential(rng, spec)
    headers = _headers(rng, spec)
    at = rng.randint(0, len(headers))
    headers[at:at] = cred_headers
    body = ""
    if rng.random() < 0.2:
        body = "".join(rng.choice("abcdefgh{}\":,") for _ in range(rng.choice((1, 17, 1000, 70_000))))
    framing = rng.choice(FRAMINGS) if rng.random() < 0.25 else "plain"
    return FuzzRequest(method=method, path=path, headers=headers, body=body, framing=framing, credential=credential)


def request_at(seed: int, index: int, spec: FuzzSpec) -> FuzzRequest:
    """Request INDEX of run SEED, regenerated on its own (each index has its own random stream)."""
    return generate(random.Random(f"{seed}:{index}"), spec)


def with_changes(request: FuzzRequest, **changes: object) -> FuzzRequest:
    return replace(request, **changes)  # type: ignore[arg-type]
