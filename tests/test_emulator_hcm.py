"""The emulator's request hardening (emulator/hcm.py) against Envoy 1.40: what the HTTP/1 codec and the connection
manager do to a request before the first filter, under the generated bootstrap's settings and the ones a scenario
file may choose (`request_hardening:`). TABLE was measured on Envoy 1.40 with raw request lines and the echo
upstream (the path it reported, or Envoy's status); `test_envoy_still_agrees` measures it again on the local Envoy."""

from __future__ import annotations

import pytest

from tests.test_request_hardening import _raw as raw_request
from wasmfilter.emulator.hcm import apply, canonical_path, merge_slashes
from wasmfilter.envoy.bootstrap import CLUSTER_HEADER, Bootstrap, Upstream
from wasmfilter.envoy.hardening import SAFE, RequestHardening

OFF = RequestHardening(normalize_path=False, merge_slashes=False, path_with_escaped_slashes_action="KEEP_UNCHANGED",
                       headers_with_underscores_action="ALLOW", strip_cluster_header=False)
VARIANTS = {"safe": SAFE, "fwd": RequestHardening(path_with_escaped_slashes_action="UNESCAPE_AND_FORWARD"),
            "redir": RequestHardening(path_with_escaped_slashes_action="UNESCAPE_AND_REDIRECT"),
            "keep": RequestHardening(path_with_escaped_slashes_action="KEEP_UNCHANGED"), "off": OFF}

# request target → what the echo upstream reported (or Envoy's status) for: safe, fwd, redir, keep, off
TABLE = [
    ('/admin/..;/public', '/public', '/public', '/public', '/public', '/admin/..;/public'),
    ('/a/..;x/b', '/b', '/b', '/b', '/b', '/a/..;x/b'),
    ('/a/.;x/b', '/a/b', '/a/b', '/a/b', '/a/b', '/a/.;x/b'),
    ('/a/.;/b', '/a/b', '/a/b', '/a/b', '/a/b', '/a/.;/b'),
    ('/a/..;', '/', '/', '/', '/', '/a/..;'),
    ('/a/b/..;', '/a/', '/a/', '/a/', '/a/', '/a/b/..;'),
    ('/a/.%2e;/b', '/a/..;/b', '/a/..;/b', '/a/..;/b', '/a/..;/b', '/a/.%2e;/b'),
    ('/a/%2e.;/b', '/a/..;/b', '/a/..;/b', '/a/..;/b', '/a/..;/b', '/a/%2e.;/b'),
    ('/a/...;/b', '/a/...;/b', '/a/...;/b', '/a/...;/b', '/a/...;/b', '/a/...;/b'),
    ('/a/..x/b', '/a/..x/b', '/a/..x/b', '/a/..x/b', '/a/..x/b', '/a/..x/b'),
    ('/a/..%3b/b', '/a/..%3b/b', '/a/..%3b/b', '/a/..%3b/b', '/a/..%3b/b', '/a/..%3b/b'),
    ('/a/..;/..;/b', '/b', '/b', '/b', '/b', '/a/..;/..;/b'),
    ('/a/x;/../b', '/a/b', '/a/b', '/a/b', '/a/b', '/a/x;/../b'),
    ('/a/..?x=1', '/?x=1', '/?x=1', '/?x=1', '/?x=1', '/a/..?x=1'),
    ('/a/..;?x', '/?x', '/?x', '/?x', '/?x', '/a/..;?x'),
    ('/a;/../b', '/b', '/b', '/b', '/b', '/a;/../b'),
    ('/a/%2e/b', '/a/b', '/a/b', '/a/b', '/a/b', '/a/%2e/b'),
    ('/a/%2E%2e/b', '/b', '/b', '/b', '/b', '/a/%2E%2e/b'),
    ('/a/.%2E/b', '/b', '/b', '/b', '/b', '/a/.%2E/b'),
    ('/%41%5a%7e%2d%5f%2e%30', '/AZ~-_.0', '/AZ~-_.0', '/AZ~-_.0', '/AZ~-_.0', '/%41%5a%7e%2d%5f%2e%30'),
    ('/%20', '/%20', '/%20', '/%20', '/%20', '/%20'),
    ('/%3a%40%21', '/%3a%40%21', '/%3a%40%21', '/%3a%40%21', '/%3a%40%21', '/%3a%40%21'),
    ('/a%2Fb', 400, '/a/b', 307, '/a%2Fb', '/a%2Fb'),
    ('/a%2fb%5C', 400, '/a/b/', 307, '/a%2fb%5C', '/a%2fb%5C'),
    ('/a/%2e%2e%2f..%2fb', 400, '/b', 307, '/a/..%2f..%2fb', '/a/%2e%2e%2f..%2fb'),
    ('/a\\b', '/a/b', '/a/b', '/a/b', '/a/b', '/a\\b'),
    ('/a/..\\b', '/b', '/b', '/b', '/b', '/a/..\\b'),
    ('/a/.\\b', '/a/b', '/a/b', '/a/b', '/a/b', '/a/.\\b'),
    ('/a//b//', '/a/b/', '/a/b/', '/a/b/', '/a/b/', '/a//b//'),
    ('//', '/', '/', '/', '/', '/'),
    ('///a', '/a', '/a', '/a', '/a', '/a'),
    ('/a?b//c', '/a?b//c', '/a?b//c', '/a?b//c', '/a?b//c', '/a?b//c'),
    ('/a//b?x//y', '/a/b?x//y', '/a/b?x//y', '/a/b?x//y', '/a/b?x//y', '/a//b?x//y'),
    ('/a/b/../../../c', '/c', '/c', '/c', '/c', '/a/b/../../../c'),
    ('/a/b/..', '/a/', '/a/', '/a/', '/a/', '/a/b/..'),
    ('/a/b/.', '/a/b/', '/a/b/', '/a/b/', '/a/b/', '/a/b/.'),
    ('/a/./', '/a/', '/a/', '/a/', '/a/', '/a/./'),
    ('/a%zz', '/a%zz', '/a%zz', '/a%zz', '/a%zz', '/a%zz'),
    ('/a%2', '/a%2', '/a%2', '/a%2', '/a%2', '/a%2'),
    ('/a%', '/a%', '/a%', '/a%', '/a%', '/a%'),
    ('/%ff', '/%ff', '/%ff', '/%ff', '/%ff', '/%ff'),
    ('/%7F', '/%7F', '/%7F', '/%7F', '/%7F', '/%7F'),
    ('/%1f', '/%1f', '/%1f', '/%1f', '/%1f', '/%1f'),
    ('/%00', 400, 400, 400, 400, '/%00'),
    ("/a'b", "/a'b", "/a'b", "/a'b", "/a'b", "/a'b"),
    ('/a"b', '/a%22b', '/a%22b', '/a%22b', '/a%22b', '/a"b'),
    ('/a<b>', '/a%3Cb%3E', '/a%3Cb%3E', '/a%3Cb%3E', '/a%3Cb%3E', '/a<b>'),
    ('/a{b}', '/a%7Bb%7D', '/a%7Bb%7D', '/a%7Bb%7D', '/a%7Bb%7D', '/a{b}'),
    ('/a|b', '/a%7Cb', '/a%7Cb', '/a%7Cb', '/a%7Cb', '/a|b'),
    ('/a^b', '/a%5Eb', '/a%5Eb', '/a%5Eb', '/a%5Eb', '/a^b'),
    ('/a`b', '/a%60b', '/a%60b', '/a%60b', '/a%60b', '/a`b'),
    ('/a[b]', '/a[b]', '/a[b]', '/a[b]', '/a[b]', '/a[b]'),
    ('/é', 400, 400, 400, 400, 400),
    ('/a?%2e%2e/..', '/a?%2e%2e/..', '/a?%2e%2e/..', '/a?%2e%2e/..', '/a?%2e%2e/..', '/a?%2e%2e/..'),
    ('/a/%2e%2e?q=%2f', '/?q=%2f', '/?q=%2f', '/?q=%2f', '/?q=%2f', '/a/%2e%2e?q=%2f'),
    ('/a%2f..%2fb', 400, '/b', 307, '/a%2f..%2fb', '/a%2f..%2fb'),
    ('/A/%2e%2e', '/', '/', '/', '/', '/A/%2e%2e'),
    ('/a/..%00', 400, 400, 400, 400, '/a/..%00'),
    ('/a?x#y', 400, 400, 400, 400, 400),
    ('/a#', 400, 400, 400, 400, 400),
    ('/a/%23b', '/a/%23b', '/a/%23b', '/a/%23b', '/a/%23b', '/a/%23b'),
    ('*', 400, 400, 400, 400, 400),
    ('x', 400, 400, 400, 400, 400),
    ('/a/%2E', '/a/', '/a/', '/a/', '/a/', '/a/%2E'),
    ('/%2e', '/', '/', '/', '/', '/%2e'),
    ('/a/..%2f', 400, '/', 307, '/a/..%2f', '/a/..%2f'),
    ('/a\\%2e%2e\\b', '/b', '/b', '/b', '/b', '/a\\%2e%2e\\b'),
    ('/a/././../../b', '/b', '/b', '/b', '/b', '/a/././../../b'),
    ('/a/..//b', '/b', '/b', '/b', '/b', '/a/..//b'),
    ('/~%7E', '/~~', '/~~', '/~~', '/~~', '/~%7E'),
    ('/a%2F%2e%2e%2Fb', 400, '/b', 307, '/a%2F..%2Fb', '/a%2F%2e%2e%2Fb'),
    ('/a/%2e%2E%2fb', 400, '/b', 307, '/a/..%2fb', '/a/%2e%2E%2fb'),
    ('/a/%2e%2e%5c/b', 400, '/b', 307, '/a/..%5c/b', '/a/%2e%2e%5c/b'),
]


def upstream_view(path: str) -> str:
    """The echo upstream (Python's http.server) turns a leading `//…` into `/…` before reporting it."""
    return "/" + path.lstrip("/") if path.startswith("//") else path


def emulated(hardening: RequestHardening, target: str, headers: list[tuple[str, str]] | None = None) -> str | int:
    seen = apply(hardening, CLUSTER_HEADER, target, [("host", "x"), *(headers or [])])
    return seen.reply_status if seen.reply_status is not None else upstream_view(seen.path)


@pytest.mark.parametrize(("target", "safe", "fwd", "redir", "keep", "off"), TABLE)
def test_paths_as_envoy_hands_them_over(target: str, safe: str | int, fwd: str | int, redir: str | int,
                                        keep: str | int, off: str | int):
    for name, want in (("safe", safe), ("fwd", fwd), ("redir", redir), ("keep", keep), ("off", off)):
        assert emulated(VARIANTS[name], target) == want, name


def test_envoy_answers_itself_with_its_own_replies():
    redirect = apply(VARIANTS["redir"], CLUSTER_HEADER, "/a%2Fb?q=%2F", [])
    assert (redirect.reply_status, ("location", "/a/b?q=%2F") in redirect.reply_headers) == (307, True)
    grpc = apply(VARIANTS["redir"], CLUSTER_HEADER, "/a%2Fb", [("content-type", "application/grpc")])
    assert grpc.reply_status == 400, "gRPC clients cannot follow a redirect"
    rejected = apply(SAFE, CLUSTER_HEADER, "/a%2fb", [])
    assert (rejected.reply_status, rejected.reply_body, ("content-length", "0") in rejected.reply_headers) == \
        (400, b"", True)
    underscore = apply(SAFE, CLUSTER_HEADER, "/p", [("x_auth_identity", "root")])
    assert (underscore.reply_status, underscore.reply_body) == (400, b"Bad Request")


def test_headers_underscores_and_the_cluster_header():
    headers = [("x_auth_identity", "root"), ("X-Wasmfilter-Cluster", "other"), ("x-a", "1")]
    dropped = apply(RequestHardening(headers_with_underscores_action="DROP_HEADER"), CLUSTER_HEADER, "/p", headers)
    assert (dropped.reply_status, dropped.headers) == (None, [("x-a", "1")])
    allowed = apply(OFF, CLUSTER_HEADER, "/p", headers)
    assert allowed.headers == headers


def test_canonical_path_and_merge_slashes_alone():
    assert canonical_path("/a/b/../../../c") == "/c"
    assert canonical_path("/a/%00") is None
    assert merge_slashes("//") == "//", "Envoy keeps one leading and one trailing slash of an all-slash path"
    assert merge_slashes("/a//b?x//y") == "/a/b?x//y"


def _raw(port: int, target: str, headers: bytes = b"") -> str | int:
    """The path the echo upstream reported behind a real Envoy, or Envoy's status."""
    status, echo = raw_request(port, target, headers)
    return str(echo["path"]) if echo is not None else status


@pytest.mark.parametrize("variant", ["safe", "redir", "off"])
def test_envoy_still_agrees(variant: str):
    """The same table and an underscore header, on a real Envoy with this variant's bootstrap."""
    from wasmfilter.envoy.process import EnvoyProcess
    from wasmfilter.harness.upstream import EchoUpstream

    hardening = VARIANTS[variant]
    with EchoUpstream("default") as echo:
        text = Bootstrap(upstreams=[Upstream("default", echo.host, echo.port)], hardening=hardening).render()
        with EnvoyProcess(text) as envoy:
            port = envoy.listener_port
            assert port is not None
            for row in TABLE:
                target = row[0]
                if not target.isascii():
                    continue  # the emulator's client sends text; the codec's 400 is covered by the table
                assert emulated(hardening, target) == _raw(port, target), target
            assert emulated(hardening, "/p", [("x_a", "1")]) == _raw(port, "/p", b"x_a: 1\r\n")
