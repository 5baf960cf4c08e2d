"""The ``flywheel`` command: a thin Typer layer over the Python API.

Exit codes: 0 success, 1 a check failed (validation, gates), 2 usage or configuration error.
"""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console
from rich.markup import escape

from flywheel.cli import data as data_commands
from flywheel.cli import loop as loop_commands
from flywheel.cli import models as model_commands
from flywheel.cli import monitor as monitor_commands
from flywheel.cli import promote as promote_commands
from flywheel.cli import rollout as rollout_commands
from flywheel.cli import serve as serve_commands
from flywheel.cli import train as train_commands
from flywheel.core.errors import FlywheelError

app = typer.Typer(
    name="flywheel",
    help="Validated data, tuned models, safe rollouts, monitoring and retraining for tabular ML.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_commands.register(app)
train_commands.register(app)
model_commands.register(app)
promote_commands.register(app)
serve_commands.register(app)
monitor_commands.register(app)
rollout_commands.register(app)
loop_commands.register(app)

_err = Console(stderr=True)


def run(argv: list[str] | None = None) -> None:
    """Entry point: runs the app and turns every error into a message and an exit code.

    Usage errors are Typer's own (exit 2); flywheel's errors carry their exit code.
    """
    sys.exit(main(argv))


def main(argv: list[str] | None = None) -> int:
    try:
        app(args=argv, prog_name="flywheel")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except FlywheelError as exc:
        _err.print(f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False,
                   soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        _err.print("[red]interrupted[/red]")
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence against a traceback
        if os.environ.get("FLYWHEEL_DEBUG"):
            raise
        _err.print(f"[bold red]unexpected error:[/bold red] {type(exc).__name__}: "
                   f"{escape(str(exc))}\nThis is a bug in flywheel; rerun with FLYWHEEL_DEBUG=1 "
                   "for the traceback and report it.", highlight=False, soft_wrap=True)
        return 70
    return 0


if __name__ == "__main__":
    run()
