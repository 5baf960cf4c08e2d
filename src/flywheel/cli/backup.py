"""`flywheel backup -o FILE` and `flywheel restore FILE [DIR]`: a workspace backup and its
restore into another folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from flywheel.core.spec import SPEC_FILE
from flywheel.pipelines import Project

_out = Console()
ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="Path to flywheel.yaml.")]


def register(app: typer.Typer) -> None:
    app.command("backup")(backup)
    app.command("restore")(restore)


def backup(
    output: Annotated[Path, typer.Option("--output", "-o",
                                         help="The backup file to write (a tar archive).")],
    config: ConfigOption = Path(SPEC_FILE),
) -> None:
    """Back up the project (spec, registry, artifacts, studies, audit log, loop state,
    prediction log) into one file, consistent while the server runs."""
    from flywheel.pipelines.backup import backup_project  # noqa: PLC0415 - keep startup fast

    manifest = backup_project(Project.load(config), output)
    _out.print(f"backed up {len(manifest.files)} files ({manifest.total_bytes / 1e6:.1f} MB) "
               f"of {escape(manifest.source_root)} to {escape(str(output))}", highlight=False)
    for line in manifest.excluded:
        _out.print(f"not included: {escape(line)}", highlight=False)


def restore(
    archive: Annotated[Path, typer.Argument(help="A file `flywheel backup -o` wrote.")],
    directory: Annotated[Path, typer.Argument(
        help="The folder to restore into (new or empty; default: the current folder).")
    ] = Path(),
) -> None:
    """Restore a backup into a new or empty folder, after checking every file's checksum."""
    from flywheel.pipelines.backup import restore_backup  # noqa: PLC0415 - keep startup fast

    result = restore_backup(archive, directory)
    _out.print(f"restored {len(result.manifest.files)} files (backup of "
               f"{escape(result.manifest.source_root)}, taken {result.manifest.created}) into "
               f"{escape(str(result.root))}; every checksum matched", highlight=False)
    for line in result.manifest.excluded:
        _out.print(f"not included in the backup: {escape(line)}", highlight=False)
