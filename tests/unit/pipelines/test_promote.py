"""pipelines.promote on a real MLflow store (SQLite), called with a bare ProjectContext."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from flywheel.core.errors import GateError, ModelNotFoundError, PromotionError, RegistryError
from flywheel.evaluation import GateReport, GateResult
from flywheel.pipelines._context import ProjectContext
from flywheel.pipelines._gating import GATES_ARTIFACT
from flywheel.pipelines.promote import (
    history,
    promote_version,
    read_gates,
    resolve_version,
    rollback,
)
from tests.conftest import CHURN, add_version, aliases, make_project


@pytest.fixture
def context(tmp_path: Path) -> ProjectContext:
    make_project(tmp_path / "p", frame=pd.read_parquet(CHURN).head(800))
    return ProjectContext.load(tmp_path / "p")


def test_versions_resolve_by_number_v_number_and_alias(
        context: ProjectContext, fitted: tuple[Any, pd.DataFrame]) -> None:
    add_version(context, fitted)
    add_version(context, fitted)
    registry = context.registry()
    assert resolve_version(registry, "2").version == "2"
    assert resolve_version(registry, " v1 ").version == "1"
    assert resolve_version(registry, "champion").version == "1"
    with pytest.raises(ModelNotFoundError, match="no version 7 .* version.s. 2, 1"):
        resolve_version(registry, "7")


def test_promoting_moves_champion_keeps_the_old_one_and_audits_the_reason(
        context: ProjectContext, fitted: tuple[Any, pd.DataFrame]) -> None:
    add_version(context, fitted)
    add_version(context, fitted)
    change = promote_version(context, "2", reason="better on last week")
    assert (change.alias, change.from_version, change.to_version, change.changed) == \
        ("champion", "1", "2", True)
    assert aliases(context)["champion"] == "2"
    moves = [(e.action, e.alias, e.from_version, e.to_version, e.reason)
             for e in history(context).entries if e.kind == "change"]
    assert ("promote", "champion", "1", "2", "better on last week") in moves


def test_a_failed_version_needs_force_and_a_reason(
        context: ProjectContext, fitted: tuple[Any, pd.DataFrame]) -> None:
    add_version(context, fitted)
    add_version(context, fitted, passed=False)
    with pytest.raises(GateError):
        promote_version(context, "2")
    with pytest.raises(PromotionError):
        promote_version(context, "2", force=True)
    assert aliases(context)["champion"] == "1"
    promote_version(context, "2", force=True, reason="latency measured on a loaded box")
    assert aliases(context)["champion"] == "2"


def test_rollback_returns_to_the_previous_champion_then_refuses(
        context: ProjectContext, fitted: tuple[Any, pd.DataFrame]) -> None:
    add_version(context, fitted)
    add_version(context, fitted)
    promote_version(context, "2", reason="try it")
    assert rollback(context, reason="worse in production").to_version == "1"
    assert aliases(context)["champion"] == "1"
    with pytest.raises(PromotionError):
        rollback(context, reason="again")


def test_the_gates_recorded_with_a_version_are_read_back(
        context: ProjectContext, fitted: tuple[Any, pd.DataFrame]) -> None:
    add_version(context, fitted, passed=False)
    registry = context.registry()
    with pytest.raises(RegistryError, match="gates.json"):
        read_gates(context, "1")  # gate tags but no stored report
    stored = GateReport((GateResult("latency", "fail", "single-row p99 25 ms; budget 10 ms"),))
    registry.log_artifact_text(registry.version_info("1").run_id or "", GATES_ARTIFACT,
                               stored.to_json())
    assert read_gates(context, "latest") == read_gates(context, "1") == stored
    assert [g.name for g in stored.failed] == ["latency"]
