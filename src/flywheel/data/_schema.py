"""The data schema: what each column of a project's data is, as a human-editable schema.yaml.

``flywheel init`` infers it (see ``_infer.py``); people edit it; ``flywheel validate`` and
training check data against it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from flywheel.core.errors import ConfigError
from flywheel.core.spec import Task, parse_config
from flywheel.core.workspace import atomic_write_text
from flywheel.core.yamlio import dump_yaml, read_yaml

ColumnKind = Literal["numeric", "integer", "categorical", "boolean", "datetime"]
Role = Literal["feature", "target", "id", "constant", "leakage", "ignore"]

SCHEMA_VERSION = 1


class ColumnSchema(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    kind: ColumnKind
    """numeric, integer, categorical, boolean or datetime."""
    role: Role = "feature"
    """feature, target, or why the column is left out of features: id, constant, leakage, ignore."""
    reason: str | None = None
    """Why the role was inferred, for columns left out of features; for a feature, why it
    deserves a look (it nearly determines the target, alone or with others)."""
    nullable: bool = True
    null_rate: float = Field(0.0, ge=0.0, le=1.0)
    """Observed share of missing values when the schema was inferred."""
    max_null_rate: float = Field(1.0, ge=0.0, le=1.0)
    """Validation fails when a column's share of missing values is above this."""
    min: float | None = None
    max: float | None = None
    categories: dict[str, float] | None = None
    """Allowed categories with their observed shares; null means any value is allowed."""
    cardinality: int | None = Field(None, ge=0)
    """Distinct non-null values seen at inference."""

    @property
    def is_feature(self) -> bool:
        return self.role == "feature"


class DataSchema(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    version: int = SCHEMA_VERSION
    target: str
    task: Task
    rows: int = Field(ge=0)
    """Rows in the data the schema was inferred from."""
    source: str | None = None
    fingerprint: str | None = None
    columns: dict[str, ColumnSchema]

    @property
    def feature_columns(self) -> list[str]:
        return [name for name, col in self.columns.items() if col.is_feature]

    @property
    def excluded_columns(self) -> dict[str, ColumnSchema]:
        return {n: c for n, c in self.columns.items() if c.role not in ("feature", "target")}

    def to_yaml(self) -> str:
        """YAML text with a header that explains how to edit it."""
        return _HEADER + dump_yaml(self.model_dump(mode="json", exclude_none=True))

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, self.to_yaml())


_HEADER = """\
# flywheel data schema: inferred by `flywheel init`, yours to edit.
# Per column:
#   kind           numeric | integer | categorical | boolean | datetime
#   role           feature | target | id | constant | leakage | ignore
#                  (anything but feature/target is left out of the model's features)
#   max_null_rate  validation fails above this share of missing values
#   min, max       validation range for numeric columns
#   categories     allowed values with their observed share; remove the key to allow any value
"""


def load_schema(path: str | Path) -> DataSchema:
    """Read a schema.yaml.

    Raises:
        ConfigError: If the file is missing or malformed; the message lists each problem.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError("schema file not found; `flywheel init DATA --target COLUMN` infers one.",
                          path=path)
    return parse_config(DataSchema, read_yaml(path), path=path, what="schema",
                        expected="target, task and columns")
