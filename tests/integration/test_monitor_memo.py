"""The reference half of the contribution shift, kept per version between monitoring runs:
the same answer as computing it, read back instead of recomputed, and never another version's
or a damaged file's."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from flywheel import Project
from flywheel.pipelines._monitor_memo import memo_path, remembered
from tests.conftest import CHURN, make_project


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = tmp_path_factory.mktemp("memo")
    frame = pd.read_parquet(CHURN).sample(2000, random_state=0)
    project = make_project(root, frame=frame, training={
        "learners": ["lightgbm"], "cv_folds": 2, "search": {"trials": 1, "seed": 0}})
    project.train()
    return project


@pytest.fixture
def window(tmp_path: Path) -> Path:
    path = tmp_path / "window.parquet"
    pd.read_parquet(CHURN).sample(600, random_state=5).to_parquet(path)
    return path


def _memo(project: Project) -> Path:
    info = project.registry().version_info("champion")
    return memo_path(project.workspace.root, project.registry().model_name, info.version)


def _shift(project: Project, window: Path) -> float:
    result = project.monitor(window, report=False, log_to_mlflow=False, send_alerts=False)
    return float(result.metrics["contribution_shift"])


def test_the_second_run_reads_the_versions_reference_contributions_and_answers_the_same(
        project: Project, window: Path) -> None:
    memo = _memo(project)
    memo.unlink(missing_ok=True)
    first = _shift(project, window)
    kept = json.loads(memo.read_text())
    assert kept["run_id"] == project.registry().version_info("champion").run_id
    assert kept["rows"] > 0 and sum(kept["importance"].values()) > 0
    stamp = memo.stat().st_mtime_ns
    assert _shift(project, window) == first
    assert memo.stat().st_mtime_ns == stamp  # read, not written again


@pytest.mark.parametrize("damage", ["not json", '{"run_id": "another run"}', "[]"])
def test_a_damaged_or_foreign_memo_is_recomputed_to_the_same_answer(
        project: Project, window: Path, damage: str) -> None:
    memo = _memo(project)
    memo.unlink(missing_ok=True)
    expected = _shift(project, window)
    memo.write_text(damage)
    assert _shift(project, window) == expected
    assert json.loads(memo.read_text())["importance"]


def test_a_memo_of_other_rows_is_not_used_for_these(tmp_path: Path) -> None:
    calls: list[int] = []

    def explain(frame: pd.DataFrame) -> dict[str, float]:
        calls.append(len(frame))
        return {"a": float(frame["a"].abs().mean())}

    path = tmp_path / "memo.json"
    one, two = pd.DataFrame({"a": [1.0, -2.0]}), pd.DataFrame({"a": [1.0, -3.0]})
    assert remembered(explain, path, "run")(one) == {"a": 1.5}
    assert remembered(explain, path, "run")(one) == {"a": 1.5}
    assert calls == [2]  # the second process read it
    assert remembered(explain, path, "run")(two) == {"a": 2.0}
    assert remembered(explain, path, "other run")(two) == {"a": 2.0}
    assert calls == [2, 2, 2]
    again = remembered(explain, path, "other run")
    assert again(two) == again(two) and calls == [2, 2, 2]  # in memory after the file


def test_an_unwritable_memo_still_answers(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")
    explain = remembered(lambda f: {"a": 1.0}, blocked / "memo.json", "run")
    assert explain(pd.DataFrame({"a": [1.0]})) == {"a": 1.0}
