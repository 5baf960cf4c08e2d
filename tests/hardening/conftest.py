"""The hardening suite's shared parts: the figures each probe records, written at the end of
the session as JSON and markdown.

The summary goes to ``$FLYWHEEL_HARDENING_REPORT`` (a ``.json`` path; the markdown beside it
with ``.md``) or, unset, to ``hardening-report.json`` in pytest's base temporary folder; its
path is printed in the terminal summary.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPORT_ENV = "FLYWHEEL_HARDENING_REPORT"
_FIGURES: dict[str, dict[str, Any]] = {}


def env_int(name: str, default: int) -> int:
    """An integer setting from the environment (the CI bound unless set)."""
    raw = os.environ.get(name, "")
    return int(raw) if raw.strip() else default


@pytest.fixture(scope="session")
def figures(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, Any]]]:
    """Each probe's figures by name (``figures["soak"] = {...}``), written once at the end."""
    yield _FIGURES
    target = Path(os.environ.get(REPORT_ENV) or
                  tmp_path_factory.getbasetemp() / "hardening-report.json")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(_FIGURES, indent=2, sort_keys=True) + "\n")
    lines = ["# Hardening suite figures", ""]
    for probe, values in sorted(_FIGURES.items()):
        lines += [f"## {probe}", "", "| figure | value |", "|---|---|"]
        lines += [f"| {k} | {json.dumps(v)} |" for k, v in sorted(values.items())]
        lines.append("")
    target.with_suffix(".md").write_text("\n".join(lines))
    _FIGURES["_written_to"] = {"path": str(target)}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    written = _FIGURES.get("_written_to")
    if written:
        terminalreporter.write_line(f"hardening figures: {written['path']}")
