"""The jinja2 side of the scaffold: the sandboxed environment (StrictUndefined, with `toml`, `toml_key` and `json`
filters) that renders templates/scaffold/ files and path components, and template errors reported as one line
naming the file and line."""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from wasmfilter.errors import TemplateError

JINJA_SUFFIX = ".jinja"

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def toml_value(value: Any) -> str:
    """A TOML literal for a str/bool/int/float/list/dict (inline table)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TemplateError(f"cannot write {value!r} as TOML", fix="extend wasmfilter.scaffold.render.toml_value")


def toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def environment(scaffold_dir: Path) -> SandboxedEnvironment:
    env = SandboxedEnvironment(loader=jinja2.FileSystemLoader(str(scaffold_dir)), undefined=jinja2.StrictUndefined,
                               keep_trailing_newline=True, autoescape=False)
    env.filters["toml"] = toml_value
    env.filters["toml_key"] = toml_key
    env.filters["json"] = lambda v, indent=2: json.dumps(v, indent=indent, ensure_ascii=False)
    return env


def render_file(env: SandboxedEnvironment, rel: PurePosixPath, context: dict[str, Any]) -> str:
    try:
        return env.get_template(rel.as_posix()).render(context)
    except jinja2.TemplateError as e:
        lineno = getattr(e, "lineno", None)  # only syntax errors know their line
        where = f"{rel}:{lineno}" if lineno else str(rel)
        raise TemplateError(f"template {where}: {e.message or type(e).__name__}",
                            fix="fix the template (templates/scaffold)") from e


def render_path(env: SandboxedEnvironment, rel: PurePosixPath, context: dict[str, Any]) -> PurePosixPath | None:
    parts: list[str] = []
    for part in rel.parts:
        if "{{" in part or "{%" in part:
            try:
                part = env.from_string(part).render(context)
            except jinja2.TemplateError as e:
                raise TemplateError(f"template path {rel}: {e.message or type(e).__name__}",
                                    fix="fix the template file name (templates/scaffold)") from e
            if not part:
                return None  # a name that renders empty drops the file (a conditional file)
        parts.extend(PurePosixPath(part).parts)  # "../x" or "/x" here is refused by plan.check_inside
    return PurePosixPath(*parts)
