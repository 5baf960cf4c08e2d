"""The ``flywheel`` command: a thin Typer layer over the Python API.

Exit codes: 0 success, 1 a check failed (validation, gates), 2 usage or configuration error
(also a file or tracking store that cannot be read or reached), 70 a bug in flywheel.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys

import typer
from rich.console import Console
from rich.markup import escape

from flywheel.cli import backtest as backtest_commands
from flywheel.cli import backup as backup_commands
from flywheel.cli import dashboard as dashboard_commands
from flywheel.cli import data as data_commands
from flywheel.cli import export as export_commands
from flywheel.cli import features as feature_commands
from flywheel.cli import loop as loop_commands
from flywheel.cli import models as model_commands
from flywheel.cli import monitor as monitor_commands
from flywheel.cli import promote as promote_commands
from flywheel.cli import rollout as rollout_commands
from flywheel.cli import serve as serve_commands
from flywheel.cli import stream as stream_commands
from flywheel.cli import train as train_commands
from flywheel.core.errors import FlywheelError
from flywheel.core.uris import redact

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
stream_commands.register(app)
monitor_commands.register(app)
rollout_commands.register(app)
loop_commands.register(app)
backtest_commands.register(app)
export_commands.register(app)
feature_commands.register(app)
backup_commands.register(app)
dashboard_commands.register(app)

_err = Console(stderr=True)
# Rich draws 80 columns when no standard stream is a terminal (piped, captured, run by a tool)
# and cuts table cells to fit; such output is read later, so it gets room instead.
_NO_TERMINAL_COLUMNS = 200


def run(argv: list[str] | None = None) -> None:
    """Entry point: runs the app and turns every error into a message and an exit code.

    Usage errors are Typer's own (exit 2); flywheel's errors carry their exit code.
    """
    sys.exit(main(argv))


def _dump_stacks_on_usr1() -> None:
    """`kill -USR1 PID` prints every thread's stack to the process's own stderr, showing where
    a stuck command is; skipped where there is no such file (an embedding host, a test's
    captured output)."""
    stderr = sys.__stderr__
    if not hasattr(signal, "SIGUSR1") or stderr is None:
        return
    try:
        faulthandler.register(signal.SIGUSR1, file=stderr, all_threads=True)
    except (AttributeError, ValueError, OSError):  # io.UnsupportedOperation: no fileno
        return


def main(argv: list[str] | None = None) -> int:
    _widen_without_a_terminal()
    _dump_stacks_on_usr1()
    try:
        app(args=argv, prog_name="flywheel")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except FlywheelError as exc:
        _err.print(f"[bold red]error:[/bold red] {escape(redact(str(exc)))}", highlight=False,
                   soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        _err.print("[red]interrupted[/red]")
        return 130
    except OSError as exc:  # a file flywheel was asked to read or write, not flywheel itself
        if os.environ.get("FLYWHEEL_DEBUG"):
            raise
        where = f" ({exc.filename})" if exc.filename else ""
        _err.print(f"[bold red]error:[/bold red] {escape(redact(exc.strerror or str(exc)))}"
                   f"{escape(where)}. Check that the path exists and may be read or written; "
                   "rerun with FLYWHEEL_DEBUG=1 for the traceback.", highlight=False,
                   soft_wrap=True)
        return 2
    except Exception as exc:  # noqa: BLE001 - the last line of defence against a traceback
        if os.environ.get("FLYWHEEL_DEBUG"):
            raise
        _err.print(f"[bold red]unexpected error:[/bold red] {type(exc).__name__}: "
                   f"{escape(redact(str(exc)))}\nThis is a bug in flywheel; rerun with "
                   "FLYWHEEL_DEBUG=1 for the traceback and report it.", highlight=False,
                   soft_wrap=True)
        return 70
    return 0


def _widen_without_a_terminal() -> None:
    """Give rich's consoles a wide line when no standard stream is a terminal.

    Rich reads ``COLUMNS`` at each measurement, so this reaches consoles made at import; a
    width the user set, or a terminal's own (rich finds it even when stdout is piped), stays.
    """
    if os.environ.get("COLUMNS"):
        return
    for stream in (sys.stdin, sys.stdout, sys.stderr):
        try:
            if os.get_terminal_size(stream.fileno()).columns > 0:
                return
        except (AttributeError, OSError, ValueError):
            continue
    os.environ["COLUMNS"] = str(_NO_TERMINAL_COLUMNS)


if __name__ == "__main__":
    run()
