"""The reference filter's README as the new project's: its commands name paths of the wasmfilter checkout
(`wasmfilter build filters/auth`, `filters/target/wasmfilter/auth.wasm`, `.venv/bin/python -m pytest filters/auth`),
which a new project does not have; here they become the project's own (`wasmfilter build`,
`target/wasmfilter/<ident>.wasm`, `pytest`)."""

from __future__ import annotations

import re


def localize(text: str, template: str, ident: str) -> str:
    """TEXT with the checkout's paths of TEMPLATE replaced by the new project's (whose crate is IDENT)."""
    t = re.escape(template)
    lines = []
    for line in text.splitlines():
        # a pytest run of the checkout: in the project, pytest collects the scenario files (wasmfilter's plugin)
        line = re.sub(r"^\.venv/bin/python -m pytest .*?-q(\s*)(#.*)?$",
                      lambda m: f"pytest -q{m.group(1) or ' '}# the scenario files, through wasmfilter's pytest plugin",
                      line)
        line = re.sub(rf"\bfilters/target/wasmfilter/{t}(\.opt)?\.wasm\b", rf"target/wasmfilter/{ident}\g<1>.wasm",
                      line)
        # `wasmfilter <command> [--flag] filters/<template>` → the project directory is the current one
        line = re.sub(rf"(\bwasmfilter [a-z]+(?: --[a-z-]+)*) filters/{t}\b(?!/)( ?)", r"\g<1>\g<2>", line)
        line = re.sub(rf"\bfilters/{t}/", "", line)
        # the checkout's own Python tests are not part of the project
        line = re.sub(r"(?<![\w'])`(tests/test_[\w*]+\.py)`", r"wasmfilter's `\g<1>`", line)
        lines.append(line)
    return "\n".join(lines)
