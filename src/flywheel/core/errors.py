"""The one tree of flywheel errors.

FlywheelError
 ├─ ConfigError                  flywheel.yaml or schema.yaml is wrong          (exit 2)
 ├─ DataError                    a data file cannot be read as a table          (exit 2)
 │   └─ DataValidationError      data read fine but fails the validation gate   (exit 1)
 ├─ WorkspaceError               .flywheel/ cannot be used                       (exit 2)
 │   └─ WorkspaceBusyError       another command holds the workspace lock        (exit 2)
 └─ TrainingError                training could not produce a model              (exit 1)

Every message says what happened, what was expected, and what to try. ``exit_code`` is what
the CLI exits with; HTTP status mapping lives in the serving layer.
"""

from __future__ import annotations

from pathlib import Path


class FlywheelError(Exception):
    """Base of every error flywheel raises on purpose."""

    exit_code: int = 1


class ConfigError(FlywheelError):
    """A configuration file or option is invalid."""

    exit_code = 2

    def __init__(self, message: str, *, path: Path | str | None = None,
                 problems: list[str] | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.problems = list(problems or [])
        where = f"{self.path}: " if self.path is not None else ""
        text = where + message
        if self.problems:
            text += "\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(text)


class DataError(FlywheelError):
    """A data file is missing, unreadable, or not a table flywheel can use."""

    exit_code = 2

    def __init__(self, message: str, *, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else None
        where = f"{self.path}: " if self.path is not None else ""
        super().__init__(where + message)


class DataValidationError(DataError):
    """Data was read but fails the validation gate.

    Carries the full report so callers can show every failed check.
    """

    exit_code = 1

    def __init__(self, report: object, *, path: Path | str | None = None,
                 hint: str = "run `flywheel validate` for the details") -> None:
        self.report = report
        errors = getattr(report, "errors", [])
        names = ", ".join(sorted({f.where for f in errors})) or "the data"
        super().__init__(
            f"data failed {len(errors)} validation check(s) ({names}); {hint}.", path=path
        )


class WorkspaceError(FlywheelError):
    """The workspace directory cannot be created or written."""

    exit_code = 2


class WorkspaceBusyError(WorkspaceError):
    """Another flywheel command holds the workspace lock."""

    def __init__(self, lock_name: str, holder: str, waited: float) -> None:
        self.lock_name, self.holder, self.waited = lock_name, holder, waited
        super().__init__(
            f"The workspace is busy: {holder} holds the {lock_name!r} lock "
            f"(waited {waited:.0f} s). Wait for it to finish and run the command again."
        )


class TrainingError(FlywheelError):
    """Training could not produce a model."""

    exit_code = 1
