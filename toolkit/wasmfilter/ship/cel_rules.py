"""The CRDs' `x-kubernetes-validations` CEL rules, evaluated as the Kubernetes API server does.

The CEL language (macros `all`/`exists`/`exists_one`, `has()`, `size`, `matches`, `startsWith`, `contains`,
`duration`, `in`) is the `common-expression-language` package from PyPI. The functions the Kubernetes API server
adds and that library lacks are translated here by hand, each with a test (tests/test_crd_validation.py):

- Kubernetes URL library (k8s.io/apiserver `pkg/cel/library/urls.go`): `isURL(string)`, `url(string)`,
  `<URL>.getScheme()` — on Go's `net/url.ParseRequestURI`, translated in `parse_request_uri`;
- cel-go strings extension: `<string>.upperAscii()`, `<string>.lowerAscii()`.

RELIED_ON lists the rules whose meaning the toolkit's own input checks repeat (istio.py, trafficextension.py):
a test fails when one of them is missing from the vendored CRDs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
USERINFO_CHARS = ALNUM | frozenset("-._:~!$&'()*+,;=%@")
HOST_CHARS = ALNUM | frozenset("-._~!$&'()*+,;=:[]<>\"")
HEX = frozenset("0123456789abcdefABCDEF")


class URLError(ValueError):
    """Go's net/url rejected the string."""


@dataclass(frozen=True)
class RuleRef:
    """A rule the toolkit relies on: in CRD `crd` at schema path `path` (property names, `[]` for items,
    `{}` for additionalProperties), with this message and rule text."""

    crd: str
    path: tuple[str, ...]
    message: str
    rule: str


RELIED_ON = (
    RuleRef("wasmplugins.extensions.istio.io", ("spec", "selector", "matchLabels", "{}"),
            "wildcard not allowed in label value match", '!self.contains("*")'),
    RuleRef("wasmplugins.extensions.istio.io", ("spec", "selector", "matchLabels"),
            "wildcard not allowed in label key match", 'self.all(key, !key.contains("*"))'),
    RuleRef("wasmplugins.extensions.istio.io", ("spec",), "only one of targetRefs or selector can be set",
            "(has(self.selector) ? 1 : 0) + (has(self.targetRef) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1"),
    RuleRef("wasmplugins.extensions.istio.io", ("spec", "targetRefs", "[]", "namespace"),
            "cross namespace referencing is not currently supported", "self.size() == 0"),
    RuleRef("trafficextensions.extensions.istio.io", ("spec", "selector", "matchLabels", "{}"),
            "wildcard not allowed in label value match", '!self.contains("*")'),
    RuleRef("trafficextensions.extensions.istio.io", ("spec",), "only one of targetRefs or selector can be set",
            "(has(self.selector) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1"),
    RuleRef("trafficextensions.extensions.istio.io", ("spec",), "exactly one of wasm or lua must be set",
            "has(self.wasm) != has(self.lua)"),
    RuleRef("trafficextensions.extensions.istio.io", ("spec", "wasm", "url"),
            "url must have schema one of [http, https, file, oci]",
            'isURL(self) ? (url(self).getScheme() in ["", "http", "https", "file", "oci"]) : (isURL("http://" + '
            'self) && url("http://" + self).getScheme() in ["", "http", "https", "file", "oci"])'),
    RuleRef("envoyextensionpolicies.gateway.envoyproxy.io", ("spec", "wasm", "[]", "code"),
            "If type is Image, image field needs to be set.",
            "self.type == 'Image' ? has(self.image) : !has(self.image)"),
    RuleRef("envoyextensionpolicies.gateway.envoyproxy.io", ("spec",),
            "this policy can only have a targetRefs[*].kind of "
            "Gateway/ListenerSet/HTTPRoute/GRPCRoute/TCPRoute/UDPRoute/TLSRoute",
            "has(self.targetRefs) ? self.targetRefs.all(ref, ref.kind in ['Gateway', 'ListenerSet', 'HTTPRoute', "
            "'GRPCRoute', 'UDPRoute', 'TCPRoute', 'TLSRoute']) : true"),
)


# ------------------------------------------------------------------------------ Go net/url, as Kubernetes uses it


def _check_escapes(text: str) -> None:
    """Every '%' starts a two-hex-digit escape (Go's unescape)."""
    i = text.find("%")
    while i >= 0:
        escape = text[i + 1:i + 3]
        if len(escape) != 2 or not set(escape) <= HEX:
            raise URLError(f'invalid URL escape "{text[i:i + 3]}"')
        i = text.find("%", i + 3)


def _scheme(raw: str) -> tuple[str, str]:
    """Go's getScheme: a leading [A-Za-z][A-Za-z0-9+.-]* followed by ':' (else no scheme)."""
    for i, c in enumerate(raw):
        if c.isascii() and c.isalpha():
            continue
        if c.isascii() and (c.isdigit() or c in "+-."):
            if i == 0:
                return "", raw
            continue
        if c == ":":
            if i == 0:
                raise URLError("missing protocol scheme")
            return raw[:i].lower(), raw[i + 1:]
        return "", raw
    return "", raw


def _valid_port(port: str) -> bool:
    return port == "" or (port[0] == ":" and all(c.isascii() and c.isdigit() for c in port[1:]))


def _parse_host(host: str) -> str:
    if host.startswith("["):
        end = host.rfind("]")
        if end < 0:
            raise URLError("missing ']' in host")
        if not _valid_port(host[end + 1:]):
            raise URLError(f'invalid port "{host[end + 1:]}" after host')
    elif (colon := host.rfind(":")) >= 0 and not _valid_port(host[colon:]):
        raise URLError(f'invalid port "{host[colon:]}" after host')
    _check_escapes(host)
    i = host.find("%")
    while i >= 0:  # in a host only escapes of non-ASCII bytes, and %25 (a zone's '%'), are allowed
        if int(host[i + 1], 16) < 8 and host[i:i + 3] != "%25":
            raise URLError(f'invalid URL escape "{host[i:i + 3]}"')
        i = host.find("%", i + 3)
    for c in host:
        if c.isascii() and c != "%" and c not in HOST_CHARS:
            raise URLError(f'invalid character "{c}" in host name')
    return host


def _parse_authority(authority: str) -> str:
    at = authority.rfind("@")
    host = _parse_host(authority[at + 1:])
    if at >= 0:
        userinfo = authority[:at]
        if any(c.isascii() and c not in USERINFO_CHARS for c in userinfo):
            raise URLError("net/url: invalid userinfo")
        _check_escapes(userinfo)
    return host


def parse_request_uri(raw: str, *, request: bool = True) -> dict[str, str]:
    """Go's `url.ParseRequestURI` (request=True) or `url.Parse` (False, fragment cut first): scheme, host, path."""
    if not request:
        raw = raw.split("#", 1)[0]
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        raise URLError("net/url: invalid control character in URL")
    if raw == "" and request:
        raise URLError("empty url")
    if raw == "*":
        return {"scheme": "", "host": "", "path": "*"}
    scheme, rest = _scheme(raw)
    if rest.endswith("?") and rest.count("?") == 1:
        rest = rest[:-1]
    else:
        rest = rest.split("?", 1)[0]
    if not rest.startswith("/"):
        if scheme:
            return {"scheme": scheme, "host": "", "path": "", "opaque": rest}
        if request:
            raise URLError("invalid URI for request")
        if ":" in rest.split("/", 1)[0]:
            raise URLError("first path segment in URL cannot contain colon")
    host = ""
    if (scheme or not request and not rest.startswith("///")) and rest.startswith("//"):
        authority, slash, path = rest[2:].partition("/")
        host = _parse_authority(authority)
        rest = slash + path
    _check_escapes(rest)
    return {"scheme": scheme, "host": host, "path": rest}


def is_url(value: str) -> bool:
    """Kubernetes `isURL`: url.ParseRequestURI succeeds."""
    try:
        parse_request_uri(value)
    except URLError:
        return False
    return True


def to_url(value: str) -> dict[str, str]:
    """Kubernetes `url()`: ParseRequestURI must succeed, then the URL is url.Parse's (fragment cut)."""
    try:
        parse_request_uri(value)
        return parse_request_uri(value, request=False)
    except URLError as e:
        raise ValueError(f"URL parse error during conversion from string: {e}") from None


def get_scheme(url: dict[str, str]) -> str:
    return url["scheme"]


def upper_ascii(value: str) -> str:
    return "".join(c.upper() if c.isascii() else c for c in value)


def lower_ascii(value: str) -> str:
    return "".join(c.lower() if c.isascii() else c for c in value)


KUBERNETES_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "isURL": is_url, "url": to_url, "getScheme": get_scheme, "upperAscii": upper_ascii, "lowerAscii": lower_ascii}


# --------------------------------------------------------------------------------------------- evaluation


@functools.lru_cache(maxsize=512)
def _program(rule: str) -> Any:
    import cel

    return cel.compile(rule)


def _context(value: Any) -> Any:
    import cel

    ctx = cel.Context(variables={"self": value})
    for name, fn in KUBERNETES_FUNCTIONS.items():
        ctx.add_function(name, fn)
    return ctx


def evaluate(rule: str, value: Any) -> str | None:
    """None when RULE holds for `self` = VALUE; else why not ('false' or the evaluation error, like the API
    server, which rejects the object when a rule errors)."""
    try:
        result = _program(rule).execute(_context(value))
    except Exception as e:  # the library raises ValueError/RuntimeError/KeyError/TypeError for evaluation errors
        return f"rule evaluation failed: {type(e).__name__}: {e}".splitlines()[0]
    if result is True:
        return None
    if result is False:
        return "false"
    return f"rule returned {result!r}, not a bool"
