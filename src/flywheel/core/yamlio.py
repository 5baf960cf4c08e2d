"""Reading and writing the YAML files people edit (flywheel.yaml, schema.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from flywheel.core.errors import ConfigError

# The C implementations are several times faster on large schemas; fall back when absent.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def read_yaml(path: Path) -> Any:
    """Parse a YAML file.

    Raises:
        ConfigError: If the file is not UTF-8 or not YAML; the message gives line and column.
    """
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"is not UTF-8 text ({exc.reason} at byte {exc.start}).",
                          path=path) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"is not valid YAML: {problem}{where}", path=path) from exc


def read_yaml_text(text: str) -> Any:
    """Parse YAML text (already read from somewhere else than a file path).

    Raises:
        ConfigError: If it is not YAML.
    """
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"is not valid YAML: {exc}") from exc


def dump_yaml(data: Any) -> str:
    """Block-style YAML that keeps key order and non-ASCII text."""
    return str(yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100))
