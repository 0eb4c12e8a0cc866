"""Scripted upstream answers: one table (tests/data/answer_table.yaml) checked on `answer_for`, on the Python echo
upstream and on its Rust twin (docker/echo) over real HTTP; and the bad rules each side refuses in one line."""

from __future__ import annotations

import http.client
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO
from wasmfilter.errors import ManifestError, ScenarioError
from wasmfilter.harness import answers
from wasmfilter.harness.answers import AnswerRule, answer_for, read_wire, wire_rules
from wasmfilter.harness.upstream import ECHO_HEADER, EchoUpstream

TABLE = yaml.safe_load((REPO / "tests" / "data" / "answer_table.yaml").read_text())
RULES = [AnswerRule.model_validate(r) for r in TABLE["rules"]]
CASES = TABLE["cases"]


def _ask(port: int, case: dict[str, Any]) -> dict[str, Any] | str:
    """The outcome of CASE's request: 'reset', 'echo' or the answer's status, body and headers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest(case.get("method", "GET"), case["path"], skip_accept_encoding=True)
        for name, value in case.get("headers", []):
            conn.putheader(name, value)
        conn.endheaders()
        try:
            resp = conn.getresponse()
            body = resp.read()
        except (ConnectionResetError, http.client.RemoteDisconnected):
            return "reset"
        headers = {k.lower(): v for k, v in resp.getheaders()}
        assert headers.get(ECHO_HEADER) == "httpbin"
        if headers.get("content-type") == "application/json" and body.startswith(b'{"upstream": '):
            return "echo"
        return {"status": resp.status, "body_hex": body.hex(), "headers": headers}
    finally:
        conn.close()


def _agrees(got: dict[str, Any] | str, want: dict[str, Any] | str) -> list[str]:
    if isinstance(want, str) or isinstance(got, str):
        return [] if got == want else [f"expected {want!r}, got {got!r}"]
    problems = [f"{k}: expected {want[k]!r}, got {got[k]!r}" for k in ("status", "body_hex") if got[k] != want[k]]
    wanted_headers = {**want.get("headers", {}), **({"content-type": want["content_type"]}
                                                    if "content_type" in want else {})}
    problems += [f"header {k}: expected {v!r}, got {got['headers'].get(k)!r}" for k, v in wanted_headers.items()
                 if got["headers"].get(k) != v]
    return problems


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_answer_for_follows_the_table(case):
    got = answer_for(RULES, case.get("method", "GET"), case["path"], case.get("headers", []))
    want = case["expect"]
    if want == "echo":
        assert got is None
    elif want == "reset":
        assert got is not None and got.reset
    else:
        assert got is not None
        assert (got.status, got.body_bytes().hex()) == (want["status"], want["body_hex"])


def test_wire_form_reads_back_to_the_same_answers():
    again = read_wire(wire_rules(RULES), "in the test")
    for case in CASES:
        a = answer_for(RULES, case.get("method", "GET"), case["path"], case.get("headers", []))
        b = answer_for(again, case.get("method", "GET"), case["path"], case.get("headers", []))
        assert (a is None) == (b is None)
        if a is not None and b is not None:
            assert (a.status, a.header_pairs(), a.body_bytes(), a.reset, a.delay_ms) == \
                   (b.status, b.header_pairs(), b.body_bytes(), b.reset, b.delay_ms)


@pytest.fixture(scope="module")
def rust_echo() -> Path:
    from wasmfilter.envoy.images import build_echo_binary

    return build_echo_binary()


def _python_upstream() -> Iterator[int]:
    with EchoUpstream("httpbin", rules=RULES) as up:
        yield up.port


def _rust_upstream(binary: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([str(binary), "--name", "httpbin", "--host", "127.0.0.1", "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("side", ["python", "rust"])
def test_both_echo_upstreams_answer_the_table_alike(side, request):
    if side == "python":
        ports = _python_upstream()
        port = next(ports)
    else:
        proc = _rust_upstream(request.getfixturevalue("rust_echo"), "--rules-json", wire_rules(RULES))
        assert proc.stdout is not None
        line = proc.stdout.readline()  # printed once the socket listens
        port = int(line.rsplit(":", 1)[1])
    try:
        problems = [f"{case['name']}: {p}" for case in CASES for p in _agrees(_ask(port, case), case["expect"])]
        assert not problems, "\n".join(problems)
    finally:
        if side == "python":
            next(ports, None)
        else:
            proc.terminate()
            proc.wait(timeout=10)


BAD_WIRE = '[{"method":null,"path":null,"path_prefix":null,"headers":[],"status":99,"answer_headers":[],' \
           '"body_hex":"","delay_ms":0,"reset":false}]'


def test_invalid_rules_file_is_one_line_naming_the_field_on_both_sides(tmp_path, rust_echo):
    file = tmp_path / "rules.json"
    file.write_text(BAD_WIRE)
    with pytest.raises(ScenarioError) as e:
        answers.read_wire_file(file)
    assert "field '0.status'" in str(e.value) and "\n" not in str(e.value)
    py = subprocess.run([sys.executable, "-m", "wasmfilter.harness.upstream", "--port", "0",
                         "--rules", str(file)], capture_output=True, text=True, timeout=60)
    rs = subprocess.run([str(rust_echo), "--port", "0", "--rules", str(file)], capture_output=True, text=True,
                        timeout=60)
    for proc in (py, rs):
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "field '0.status'" in lines[0], proc.stderr


@pytest.mark.parametrize("rule, field", [
    ({"body": "a", "json": {}}, "give one of body, json, base64"),
    ({"base64": "!!"}, "base64"),
    ({"status": 99}, "status"),
    ({"headers": {"content-length": "3"}}, "headers"),
    ({"match": {"path": "bytes"}}, "match.path"),
    ({"match": {"verb": "GET"}}, "match.verb"),
])
def test_invalid_rule_in_a_scenario_file_names_the_field(tmp_path, rule, field):
    from wasmfilter.harness import scenario

    file = tmp_path / "s.yaml"
    file.write_text(yaml.safe_dump({"answers": {"httpbin": [rule]}, "cases": [{"name": "a"}]}))
    with pytest.raises(ScenarioError) as e:
        scenario.load(file)
    message = str(e.value)
    assert "\n" not in message and "answers.httpbin.0" in message and field in message, message


def test_answers_for_an_unknown_upstream_are_refused(tmp_path):
    from wasmfilter.manifest import load_manifest

    (tmp_path / "m.wasm").write_bytes(b"\0asm\1\0\0\0")
    (tmp_path / "filter.yaml").write_text("name: x\nwasm: m.wasm\nupstreams: [default]\n"
                                          "answers: {httpbin: [{status: 200}]}\n")
    with pytest.raises(ManifestError, match="answers for 'httpbin', which is not in upstreams"):
        load_manifest(tmp_path)
    with pytest.raises(ScenarioError, match="not an upstream cluster"):
        answers.check_clusters({"httpbin": []}, ["default"], "scenario file 's.yaml'")


def test_scenario_checks_know_a_scripted_answer_reached_the_upstream_but_report_nothing_it_saw():
    from wasmfilter.harness.checks import check_response
    from wasmfilter.harness.client import Response
    from wasmfilter.harness.scenario import Expect

    resp = Response(418, [(ECHO_HEADER, "default"), ("content-type", "text/plain")], b"short and stout")
    assert check_response(Expect.model_validate({"upstream": {"reached": True}}), resp) == []
    assert "expected the request not to reach it" in check_response(
        Expect.model_validate({"upstream": {"reached": False}}), resp)[0]
    problems = check_response(Expect.model_validate({"upstream": {"path": "/x", "headers": {"a": "b"}}}), resp)
    assert [p.split(":")[0] for p in problems] == ["upstream path", "upstream headers"]
