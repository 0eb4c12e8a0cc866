"""`wasmfilter fuzz`: the generator is reproducible, the upstream parser models read the known differentials the
way real backends do, the shrinker finds the small failing request, a finding becomes a loadable scenario file, bad
input is one line; and a short seeded run per reference filter through a real Envoy breaks no invariant."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import FILTERS, run_cli
from wasmfilter.harness import scenario
from wasmfilter.harness.fuzz import generate, invariants, shrink
from wasmfilter.harness.fuzz.generate import INVALID, NONE, FuzzRequest
from wasmfilter.harness.fuzz.invariants import Outcome, Violation
from wasmfilter.harness.fuzz.rawclient import RawResponse
from wasmfilter.harness.fuzz.run import fuzz
from wasmfilter.harness.upstream import ECHO_HEADER
from wasmfilter.manifest import FuzzSpec, PublicRoute, load_manifest

AUTH_SPEC = FuzzSpec(statuses=[401, 403], paths=["/admin", "/healthz"], credentials=[{"x-api-key": "k"}],
                     owned_headers=["x-auth-identity"],
                     public=[PublicRoute(prefix="/healthz", methods=["GET", "HEAD"])])

# Findings of the fuzzer that the filters still have (docs/fuzz.md, "Findings"): a kind listed here turns the
# short run into an xfail naming it, any other violation fails. Remove an entry when its fix lands.
# (Fixed: "vm-died", a header value that is not UTF-8 panicked proxy-wasm's get_http_request_headers in auth,
# ratelimit and routing; they read the byte map now, filters/common/src/headers.rs.)
KNOWN_OPEN: dict[str, str] = {}


def echo(path: str, method: str = "GET", headers: list[list[str]] | None = None) -> RawResponse:
    body = f'{{"upstream": "default", "method": "{method}", "path": "{path}", "headers": {headers or []}}}'
    return RawResponse(200, [(ECHO_HEADER, "default")], body.replace("'", '"').encode())


def test_the_same_seed_and_index_give_the_same_bytes() -> None:
    spec = load_manifest(FILTERS / "auth").fuzz
    first = [generate.request_at(7, i, spec).render() for i in range(100)]
    assert first == [generate.request_at(7, i, spec).render() for i in range(100)]
    assert first != [generate.request_at(8, i, spec).render() for i in range(100)]
    assert len({r.framing for r in (generate.request_at(7, i, spec) for i in range(100))}) > 5


@pytest.mark.parametrize(("raw", "parser", "view"), [
    ("/admin/..;/healthz", "decode-then-dots", "/admin/..;/healthz"),
    ("/admin/..;/healthz", "servlet", "/healthz"),
    ("/admin/%2e%2e/healthz", "rfc3986", "/admin/%2e%2e/healthz"),
    ("/admin/%2e%2e/healthz", "decode-then-dots", "/healthz"),
    ("/admin/x\\..\\..\\healthz", "backslash", "/healthz"),
    ("/admin/x\\..\\..\\healthz", "decode-then-dots", "/admin/x\\..\\..\\healthz"),
    ("/admin/..%2fhealthz", "decode-then-dots", "/healthz"),
    ("/a/%zz", "decode-then-dots", None),
    ("/healthz/../admin?x=/healthz", "literal", "/healthz/../admin"),
])
def test_upstream_parsers_read_the_differentials_like_real_backends(raw: str, parser: str, view: str | None) -> None:
    assert invariants.parser_views(raw)[parser] == view


def test_an_anonymous_request_forwarded_raw_to_a_protected_path_is_a_violation() -> None:
    for credential in (NONE, INVALID):
        out = Outcome(FuzzRequest(path="/admin/..;/healthz", credential=credential), [echo("/admin/..;/healthz")])
        assert [v.kind for v in invariants.check(out, AUTH_SPEC)] == ["anonymous-upstream"]
    canonical = Outcome(FuzzRequest(path="/admin/..;/healthz"), [echo("/healthz")])
    assert invariants.check(canonical, AUTH_SPEC) == []
    valid = Outcome(FuzzRequest(path="/admin", credential="valid"), [echo("/admin")])
    assert invariants.check(valid, AUTH_SPEC) == []
    post = Outcome(FuzzRequest(method="POST", path="/healthz"), [echo("/healthz", method="POST")])
    assert [v.kind for v in invariants.check(post, AUTH_SPEC)] == ["anonymous-upstream"]


def test_owned_headers_in_any_spelling_and_undocumented_statuses_are_violations() -> None:
    forged = Outcome(FuzzRequest(), [echo("/healthz", headers=[["x_auth_identity", "fuzz-forged"]])])
    assert [v.kind for v in invariants.check(forged, AUTH_SPEC)] == ["owned-header"]
    teapot = Outcome(FuzzRequest(), [RawResponse(418, [], b"")])
    assert [v.kind for v in invariants.check(teapot, AUTH_SPEC)] == ["undocumented-status"]
    documented = Outcome(FuzzRequest(), [RawResponse(401, [], b"{}"), RawResponse(431, [], b""),
                                         RawResponse(503, [], b"")])  # 503 empty: VM down, judged as vm-died
    assert invariants.check(documented, AUTH_SPEC) == []


def test_shrink_finds_the_small_request_and_writes_a_scenario_case(tmp_path: Path) -> None:
    big = FuzzRequest(method="PUT", path="/a/b/..;/healthz?q=1", body="x" * 500, framing="chunked",
                      headers=[(f"x-{i}", "v" * 50) for i in range(40)] + [("x-trigger", "1")])
    sent: list[FuzzRequest] = []

    def still_fails(req: FuzzRequest) -> bool:
        sent.append(req)
        return any(k == "x-trigger" for k, _ in req.headers) and "..;" in req.path

    small, attempts = shrink.shrink(big, still_fails, set())
    assert (small.method, small.framing, small.body, small.headers) == ("GET", "plain", "", [("x-trigger", "1")])
    assert small.path == "/..;" and attempts == len(sent) <= shrink.MAX_ATTEMPTS
    violation = Violation("anonymous-upstream", "reached", evidence=small.path)
    file = shrink.write_case(small, violation, tmp_path, name="case", description="test.")
    loaded = scenario.load(file)
    assert loaded.cases[0].request.path == "/..;"
    assert loaded.cases[0].expect.body_not_contains == ['"/..;"']


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    result = run_cli("fuzz", str(FILTERS / "blank"), "--requests", "0", "--out", str(tmp_path))
    assert result.code == 1 and result.error_line.startswith("error: invalid request count 0")
    (tmp_path / "filter.yaml").write_text("name: x\nfuzz: {statuses: [200], bogus: 1}\n")
    (tmp_path / "Cargo.toml").write_text("")
    result = run_cli("fuzz", str(tmp_path))
    assert result.code == 1 and "fuzz.bogus" in result.error_line
    assert not list(tmp_path.glob("fuzz-*.yaml"))


@pytest.mark.parametrize("name", ["auth", "ratelimit", "routing", "blank"])
def test_a_short_seeded_run_breaks_no_invariant(name: str, tmp_path: Path) -> None:
    report = fuzz(FILTERS / name, seed=12, count=300, out_dir=tmp_path, shrink_attempts=30)
    assert report.sent >= 1 and sum(report.statuses.values()) >= report.sent // 2
    for finding in report.findings:
        assert finding.case_file is not None and scenario.load(finding.case_file).cases
    unknown = [f"{f.violation.kind}: {f.violation.message}" for f in report.findings
               if f.violation.kind not in KNOWN_OPEN]
    assert not unknown, "\n".join(unknown)
    if report.findings:
        pytest.xfail("known open finding(s): " + "; ".join(KNOWN_OPEN[f.violation.kind] for f in report.findings))
