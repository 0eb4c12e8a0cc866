"""Shrink a failing fuzz request to a small one that still fails (greedy: plain framing, GET, no body, fewer
headers, shorter values, fewer path segments — each step kept only if the violation persists), and write it out
as a scenario case file (harness/scenario.py's schema) whose expectation fails while the violation exists."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import yaml

from wasmfilter.harness import scenario
from wasmfilter.harness.fuzz.generate import NONE, FuzzRequest, with_changes
from wasmfilter.harness.fuzz.invariants import Violation, fold

MAX_ATTEMPTS = 120


def _candidates(req: FuzzRequest, credential_names: set[str]) -> Iterator[FuzzRequest]:
    if req.framing != "plain":
        yield with_changes(req, framing="plain")
    if req.method != "GET":
        yield with_changes(req, method="GET")
    if req.body:
        yield with_changes(req, body="")
        if len(req.body) > 1:
            yield with_changes(req, body=req.body[: len(req.body) // 2])
    half = len(req.headers) // 2
    removals = [(0, half), (half, len(req.headers))] if half >= 4 else []
    removals += [(i, i + 1) for i in range(len(req.headers))]
    for lo, hi in removals:
        rest = req.headers[:lo] + req.headers[hi:]
        credential = req.credential
        if not any(fold(k) in credential_names for k, _ in rest):
            credential = NONE
        yield with_changes(req, headers=rest, credential=credential)
    for i, (name, value) in enumerate(req.headers):
        if len(value) > 8:
            yield with_changes(req, headers=[*req.headers[:i], (name, value[: len(value) // 2]), *req.headers[i + 1:]])
    path, sep, query = req.path.partition("?")
    if sep:
        yield with_changes(req, path=path)
    parts = re.split(r"([/\\])", path)  # segments and the separators between them, kept
    for i in range(2, len(parts), 2):
        shorter = "".join(parts[:i - 1] + parts[i + 1:]) or "/"
        yield with_changes(req, path=shorter + sep + query)
    for i in range(0, len(parts), 2):
        if len(parts[i]) > 8:
            cut = parts[:i] + [parts[i][: len(parts[i]) // 2]] + parts[i + 1:]
            yield with_changes(req, path="".join(cut) + sep + query)


def shrink(req: FuzzRequest, still_fails: Callable[[FuzzRequest], bool], credential_names: set[str],
           max_attempts: int = MAX_ATTEMPTS) -> tuple[FuzzRequest, int]:
    """The smallest request greedy steps reach from REQ that STILL_FAILS; and how many attempts it took."""
    attempts = 0
    improved = True
    while improved and attempts < max_attempts:
        improved = False
        for candidate in _candidates(req, credential_names):
            attempts += 1
            if still_fails(candidate):
                req, improved = candidate, True
                break
            if attempts >= max_attempts:
                break
    return req, attempts


def expectation(violation: Violation) -> dict:
    """What the case expects: the opposite of the violation, in terms harness/checks.py checks."""
    if violation.kind == "anonymous-upstream":
        # The raw, ambiguous path must never reach the upstream (denied, or forwarded in its canonical form).
        return {"body_not_contains": [json.dumps(violation.evidence)]}
    if violation.kind == "owned-header":
        return {"upstream": {"headers_absent": [violation.evidence]}}
    return {"status": int(violation.evidence)} if violation.evidence.isdigit() else {}


def write_case(req: FuzzRequest, violation: Violation, directory: Path, *, name: str, description: str) -> Path:
    """REQ as a scenario file in DIRECTORY (checked by harness/scenario.py's loader before it is returned)."""
    directory.mkdir(parents=True, exist_ok=True)
    case = {"name": f"{violation.kind}: {req.method} {req.path}"[:120],
            "request": {"method": req.method, "path": req.path,
                        "headers": [[k, v] for k, v in req.headers], "body": req.body},
            "expect": expectation(violation)}
    if not req.is_plain():
        description += (f" Raw framing '{req.framing}' (harness/fuzz/generate.py) cannot be expressed in a scenario "
                        f"file: this case sends the same request with plain framing.")
    doc = {"description": f"{description} Violation: {violation.message}", "cases": [case]}
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=120))
    scenario.load(path)
    return path
