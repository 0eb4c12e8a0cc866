"""What Envoy's HTTP/1 codec and HTTP connection manager do to a request before the first filter sees it, under the
bootstrap's request hardening (envoy/hardening.py, docs/security.md): headers with `_` in their name
(`headers_with_underscores_action`: the codec's 400 "Bad Request" or the header dropped), the early header mutation
that removes the client's cluster header, and `ConnectionManagerUtility::maybeNormalizePath` — a `#` is a 400, escaped
slashes (`%2F`, `%5C`, either case, before the query) per `path_with_escaped_slashes_action` (400, 307 to the
unescaped path, or unescaped and forwarded), `normalize_path` (Chromium's path canonicaliser as Envoy 1.40 runs it:
dot segments, `%2e`, raw `.`/`..` before `;`, `\\` as `/`, unreserved escapes decoded, `%00` a 400, raw
"<>{}|^` percent-encoded), then `merge_slashes` (path_utility.cc). Each rule was measured against Envoy 1.40
(tests/test_emulator_hcm.py holds the table)."""

from __future__ import annotations

from dataclasses import dataclass, field

from wasmfilter.envoy.hardening import RequestHardening

UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
ESCAPED_RAW = frozenset('"<>{}|^`')  # Chromium's path table: these raw characters are percent-encoded
HEX = "0123456789abcdefABCDEF"


@dataclass
class Outcome:
    """The request as the filter gets it, or Envoy's own answer (REPLY_STATUS set: no filter runs)."""
    path: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    reply_status: int | None = None
    reply_headers: list[tuple[str, str]] = field(default_factory=list)
    reply_body: bytes = b""


def _codec_error() -> tuple[int, list[tuple[str, str]], bytes]:
    return 400, [("content-length", "11"), ("content-type", "text/plain"), ("server", "envoy"),
                 ("connection", "close")], b"Bad Request"


def _hcm_reply(status: int, *extra: tuple[str, str]) -> tuple[int, list[tuple[str, str]], bytes]:
    return status, [*extra, ("server", "envoy"), ("content-length", "0")], b""


def _dot_len(path: str, i: int) -> int:
    if path.startswith(".", i):
        return 1
    if path[i:i + 3].lower() == "%2e":
        return 3
    return 0


def _segment_end(path: str, i: int) -> int:
    ends = [j for j in (path.find("/", i), path.find("\\", i)) if j >= 0]
    return min(ends) if ends else len(path)


def _dot_segment(path: str, i: int) -> tuple[str | None, int]:
    """At a segment start: ('cur' | 'up', characters consumed including the slash after it) or (None, 0)."""
    end = _segment_end(path, i)
    raw = path[i:end]
    literal = raw.split(";", 1)[0]
    if ";" in raw and literal in (".", ".."):  # Envoy 1.40 drops `;...` after literal dots (measured)
        return ("cur" if literal == "." else "up"), end - i + (1 if end < len(path) else 0)
    first = _dot_len(path, i)
    if not first:
        return None, 0
    after = i + first
    if after == end:
        return "cur", first + (1 if end < len(path) else 0)
    second = _dot_len(path, after)
    if second and after + second == end:
        return "up", first + second + (1 if end < len(path) else 0)
    return None, 0


def canonical_path(path: str) -> str | None:
    """Envoy's `PathUtil::canonicalPath` of the part before `?`; None when it fails (400)."""
    out = ""
    i = 0
    valid = True
    while i < len(path):
        ch = path[i]
        if ch in "/\\":
            out += "/"
            i += 1
            kind, consumed = _dot_segment(path, i)
            while kind is not None:
                if kind == "up":
                    stem = out[:-1]
                    out = stem[:stem.rfind("/") + 1] if "/" in stem else "/"
                i += consumed
                kind, consumed = _dot_segment(path, i)
            continue
        if ch == "%" and i + 2 < len(path) and path[i + 1] in HEX and path[i + 2] in HEX:
            value = int(path[i + 1:i + 3], 16)
            if value == 0:
                valid = False
            out += chr(value) if value in UNRESERVED else path[i:i + 3]
            i += 3
            continue
        out += f"%{ord(ch):02X}" if ch in ESCAPED_RAW else ch
        i += 1
    return out if valid else None


def merge_slashes(path: str) -> str:
    """`PathTransformer::mergeSlashes`: runs of `/` before the query become one (a leading and trailing one kept)."""
    base, sep, query = path.partition("?")
    if "//" not in base:
        return path
    prefix = "/" if base.startswith("/") else ""
    suffix = "/" if base.endswith("/") else ""
    return prefix + "/".join(s for s in base.split("/") if s) + suffix + sep + query


def unescape_slashes(path: str) -> tuple[str, bool]:
    """`PathUtil::unescapeSlashes` on the part before `?`: the new path and whether it found any."""
    base, sep, query = path.partition("?")
    new = base.replace("%2F", "/").replace("%2f", "/").replace("%5C", "\\").replace("%5c", "\\")
    return new + sep + query, new != base


def normalize_path(path: str, hardening: RequestHardening, grpc: bool = False) -> tuple[str, int | None]:
    """`ConnectionManagerUtility::maybeNormalizePath`: the path and None, or the path and Envoy's status
    (400 reject, 307 redirect to the returned path)."""
    if "#" in path:
        return path, 400
    redirect = False
    action = hardening.path_with_escaped_slashes_action
    if action != "KEEP_UNCHANGED":
        path, found = unescape_slashes(path)
        if found and action == "REJECT_REQUEST":
            return path, 400
        redirect = found and action == "UNESCAPE_AND_REDIRECT"
    if hardening.normalize_path:
        base, sep, query = path.partition("?")
        canonical = canonical_path(base)
        if canonical is None:
            return path, 400
        path = canonical + sep + query
    if hardening.merge_slashes:
        path = merge_slashes(path)
    if redirect:
        return path, 400 if grpc else 307
    return path, None


def apply(hardening: RequestHardening, cluster_header: str, path: str, headers: list[tuple[str, str]]) -> Outcome:
    """The request after the codec and the connection manager, or their answer."""
    if not path.startswith("/") or any(ord(c) < 0x21 or ord(c) > 0x7E for c in path):
        status, reply, body = _codec_error()  # the HTTP/1 codec: a raw control or non-ASCII byte, no leading `/`
        return Outcome(path, headers, status, reply, body)
    if hardening.headers_with_underscores_action != "ALLOW" and any("_" in name for name, _ in headers):
        if hardening.headers_with_underscores_action == "REJECT_REQUEST":
            status, reply, body = _codec_error()
            return Outcome(path, headers, status, reply, body)
        headers = [(k, v) for k, v in headers if "_" not in k]
    if hardening.strip_cluster_header:
        headers = [(k, v) for k, v in headers if k.lower() != cluster_header]
    grpc = any(k.lower() == "content-type" and v.startswith("application/grpc") for k, v in headers)
    new_path, verdict = normalize_path(path, hardening, grpc)
    if verdict is not None:
        code, reply, body = _hcm_reply(verdict, *([("location", new_path)] if verdict == 307 else []))
        return Outcome(path, headers, code, reply, body)
    return Outcome(new_path, headers)
