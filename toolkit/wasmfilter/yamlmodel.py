"""YAML files read into pydantic models (filter.yaml, scenario files, bench and demo definitions): one loader,
one shape of error message — the file, the first bad field's dotted path, pydantic's reason, and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from wasmfilter.errors import WasmfilterError

M = TypeVar("M", bound=BaseModel)


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def load_model(file: Path, model: type[M], *, error: type[WasmfilterError], what: str = "", shape: str,
               example: str, field_fix: str, extra: dict[str, Any] | None = None) -> M:
    """FILE parsed as YAML and validated as MODEL (EXTRA merged into the mapping first); ERROR otherwise, naming
    the file as "WHAT 'FILE'" (or just FILE), the expected SHAPE, an EXAMPLE file and the FIELD_FIX."""
    label = f"{what} '{file}'" if what else str(file)
    try:
        raw = yaml.safe_load(file.read_text())
    except OSError as e:
        raise error(f"cannot read {label}: {e.strerror}", fix="check the path") from e
    except yaml.YAMLError as e:
        raise error(f"{label} is not valid YAML ({first_line(e)})", fix="fix the YAML syntax") from e
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise error(f"{label} must be {shape}", fix=f"see {example} for an example")
    try:
        return model.model_validate({**raw, **(extra or {})})
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise error(f"{label}: field '{where}': {err['msg']}", fix=field_fix) from e
