"""Overrides of a filter's plugin config for `run` and `dev`: `--config FILE` (YAML/JSON, replaces filter.yaml's
`config`) and `--set key=value` (dotted keys into nested mappings; the value read as YAML, so `--set limit=5` is a
number and `--set 'keys=[a, b]'` a list)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from wasmfilter.errors import UsageError
from wasmfilter.harness.scenario import deep_merge


def parse_set(item: str) -> dict[str, Any]:
    key, sep, raw = item.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise UsageError(f"--set '{item}' is not key=value", fix="write it like --set default_require=public "
                         "(dotted keys reach into nested mappings: --set limits.rps=5)")
    value: Any
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        value = raw
    for part in reversed(key.split(".")):
        value = {part: value}
    return value


def plugin_config(base: Any, *, config_file: str | Path | None = None, sets: list[str] | None = None) -> Any:
    """BASE (filter.yaml's config), replaced by CONFIG_FILE's content if given, then each --set merged on."""
    config = base
    if config_file is not None:
        path = Path(config_file)
        try:
            config = yaml.safe_load(path.read_text())
        except OSError as e:
            raise UsageError(f"--config {path}: {e.strerror}", fix="give an existing YAML or JSON file") from e
        except yaml.YAMLError as e:
            raise UsageError(f"--config {path} is not YAML/JSON ({str(e).splitlines()[0]})",
                             fix="fix the file (JSON is YAML too)") from e
    for item in sets or []:
        config = deep_merge(config if isinstance(config, dict) else {}, parse_set(item))
    return config
