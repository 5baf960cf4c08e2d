"""`flywheel monitor` end to end: a trained version in a real MLflow store, a real prediction
log written by the serving log writer, the CLI's exit codes, alerts, reports and MLflow."""

from __future__ import annotations

import json
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from flywheel import Project
from flywheel.cli.main import main
from flywheel.predlog import PredictionLog
from tests.conftest import CHURN, make_project


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = tmp_path_factory.mktemp("monitor")
    frame = pd.read_parquet(CHURN).sample(2000, random_state=0)
    project = make_project(root, frame=frame, training={
        "learners": ["linear"], "cv_folds": 2, "search": {"trials": 1, "seed": 0}})
    project.train()
    return project


def _fresh(project: Project, tmp_path: Path, name: str) -> Project:
    """A copy of the trained project with its own prediction log and monitoring state."""
    import shutil

    root = tmp_path / name
    shutil.copytree(project.spec.root, root, ignore=shutil.ignore_patterns(
        "predictions", "monitoring"))
    spec = root / "flywheel.yaml"
    raw = yaml.safe_load(spec.read_text())
    raw["tracking"] = {**(raw.get("tracking") or {}),
                       "tracking_uri": f"sqlite:///{root / '.flywheel' / 'mlflow.db'}",
                       "artifact_location": str(root / ".flywheel" / "artifacts")}
    spec.write_text(yaml.safe_dump(raw))
    return Project.load(spec)


def _write_log(project: Project, frame: pd.DataFrame, *, labels: bool = True,
               arms: list[str] | None = None, errors: int = 0,
               stray_labels: int = 0) -> None:
    model = project.registry().load_model("champion")
    features = project.schema.feature_columns
    proba = model.predict_proba(frame[features])
    layout = tuple((f, bool(pd.api.types.is_numeric_dtype(frame[f]))) for f in features)
    log = PredictionLog(project.workspace.predictions)
    now = time.time() - len(frame)
    records = json.loads(frame[features].to_json(orient="records"))
    for i, record in enumerate(records):
        arm = arms[i % len(arms)] if arms else "champion"
        log.append(layout, f"r{i}", now + i, "1", 1.0 + i % 7, [record],
                   ["yes" if proba[i, 1] > 0.5 else "no"], [proba[i].tolist()], arm=arm)
    for i in range(errors):
        log.append_error(f"e{i}", now + i, "1", 30.0, "champion", "model call failed")
    if labels:
        log.append_feedback([(f"r{i}", v) for i, v in enumerate(frame["churn"].astype(str))])
    log.append_feedback([(f"no-such-request-{i}", "yes") for i in range(stray_labels)])
    log.close()


def _churn(n: int, seed: int) -> pd.DataFrame:
    return pd.read_parquet(CHURN).sample(n, random_state=seed).reset_index(drop=True)


def test_a_quiet_window_exits_0_and_its_metrics_go_to_the_versions_monitoring_run(
        project: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    quiet = _fresh(project, tmp_path, "quiet")
    _write_log(quiet, _churn(400, 1), arms=["champion", "champion", "shadow"], errors=2)
    assert main(["monitor", "--config", str(quiet.spec.root), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    metrics = data["metrics"]
    assert data["alerted"] is False and metrics["shadow_rows"] == 133
    assert metrics["rows"] == 267 and metrics["labelled_rows"] == 267
    assert metrics["error_rate"] == pytest.approx(2 / 269) and metrics["error_rows"] == 2
    assert {"roc_auc", "roc_auc_low", "estimated_roc_auc", "p99_ms", "drift_share"} <= set(
        metrics)
    client = mlflow.MlflowClient(quiet.registry().tracking_uri)
    run = client.get_run(data["mlflow_run_id"])
    assert run.data.metrics["drift_share"] == metrics["drift_share"]
    version = quiet.registry().version_info("champion")
    assert run.data.tags["mlflow.parentRunId"] == version.run_id
    assert version.tags["flywheel.monitoring_run"] == data["mlflow_run_id"]
    report = Path(data["report"])
    assert report.exists() and "Monitoring: " in report.read_text()


def test_a_drifted_file_exits_3_sends_its_alert_once_and_holds_the_repeat(
        project: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    drifted = _fresh(project, tmp_path, "drifted")
    frame = _churn(600, 2)
    for column in ("total_day_minutes", "total_eve_minutes", "total_night_minutes",
                   "total_intl_minutes", "number_customer_service_calls", "account_length",
                   "total_day_calls", "total_eve_calls", "total_night_calls", "total_intl_calls"):
        frame[column] = frame[column] * 1.8
    frame["international_plan"] = "yes"
    data = tmp_path / "drifted.parquet"
    frame.to_parquet(data)
    args = ["monitor", "--config", str(drifted.spec.root), "--data", str(data)]
    assert main(args) == 3
    out = capsys.readouterr().out
    assert "ALERT" in out and "dataset_drift > 0" in out
    assert main(args) == 3
    assert "held back by the cool-down" in capsys.readouterr().out
    lines = (drifted.workspace.root / "monitoring" / "alerts.jsonl").read_text().splitlines()
    assert len([line for line in lines if '"dataset_drift > 0"' in line]) == 1


def test_bad_options_and_files_exit_2_with_what_to_do(
        project: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = str(project.spec.root)
    assert main(["monitor", "--config", root, "--since", "last tuesday"]) == 2
    assert "duration back from now such as 30m" in capsys.readouterr().err
    assert main(["monitor", "--config", root, "--since", "2h", "--until", "3h"]) == 2
    assert "since" in capsys.readouterr().err
    assert main(["monitor", "--config", root, "--data", str(tmp_path / "nope.csv")]) == 2
    assert main(["monitor", "--config", root, "--version", "42"]) == 2
    assert "no version 42" in capsys.readouterr().err


def test_a_rule_on_an_unknown_metric_is_refused_before_anything_runs(
        project: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    typo = _fresh(project, tmp_path, "typo")
    spec = typo.spec.root / "flywheel.yaml"
    raw = yaml.safe_load(spec.read_text())
    raw["monitoring"] = {"alerts": {"rules": ["p99ms > 50"]}}
    spec.write_text(yaml.safe_dump(raw))
    assert main(["monitor", "--config", str(typo.spec.root)]) == 2
    assert "did you mean 'p99_ms'" in capsys.readouterr().err


def test_a_corrupt_segment_and_stray_labels_give_a_partial_report_not_a_crash(
        project: Project, tmp_path: Path) -> None:
    broken = _fresh(project, tmp_path, "broken")
    _write_log(broken, _churn(200, 3), stray_labels=1)
    (broken.workspace.predictions / "pred-999-bad-0.arrows").write_bytes(b"not arrow at all")
    result = broken.monitor(report=False, log_to_mlflow=False)
    notes = " | ".join(result.notes)
    assert "pred-999-bad-0.arrows" in notes
    assert "1 label(s) received since the window began name request ids" in notes
    assert result.metrics["unknown_label_ids"] == 1 and result.metrics["rows"] == 200


def test_an_empty_window_is_reported_as_partial_and_exits_0(
        project: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = _fresh(project, tmp_path, "empty")
    _write_log(empty, _churn(50, 4))
    assert main(["monitor", "--config", str(empty.spec.root), "--until", "2001-01-01"]) == 0
    assert "the window has no rows" in capsys.readouterr().out


def test_the_watcher_reports_a_bad_window_and_keeps_going(
        project: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    watched = _fresh(project, tmp_path, "watched")
    _write_log(watched, _churn(100, 5))
    args = ["monitor", "--config", str(watched.spec.root), "--watch", "--interval", "0.1",
            "--iterations", "2", "--no-report"]
    assert main([*args, "--version", "7"]) == 0
    err = capsys.readouterr().err
    assert err.count("the watcher goes on") == 2
    assert main(args) == 0
    assert capsys.readouterr().out.count("rows") >= 2


def test_the_python_api_monitors_a_labelled_file_with_measured_and_estimated_numbers(
        project: Project, tmp_path: Path) -> None:
    path = tmp_path / "window.parquet"
    _churn(800, 6).to_parquet(path)
    result = project.monitor(path, report=tmp_path / "r.html", log_to_mlflow=False,
                             send_alerts=False)
    m = result.metrics
    assert m["labelled_rows"] == 800 and abs(m["estimated_roc_auc"] - m["roc_auc"]) < 0.1
    page = (tmp_path / "r.html").read_text()
    assert "assumes no concept drift" in page and "measured" in page


def test_a_version_trained_before_monitoring_falls_back_to_its_data_profile(
        project: Project) -> None:
    from flywheel.core.errors import RegistryError
    from flywheel.pipelines.monitor import load_version

    registry = project.registry()
    info = registry.version_info("champion")

    class OldRun:
        model_name = registry.model_name

        def read_artifact_text(self, run_id: str, path: str) -> str:
            if path.startswith("monitoring/"):
                raise RegistryError(f"no artifact {path}")
            return registry.read_artifact_text(run_id, path)

    version = load_version(project, OldRun(), info)  # type: ignore[arg-type]
    assert not version.reference.exact and version.calibrator is None
    assert "20-bin data profile" in version.notes[0]
    from flywheel.core.spec import DriftSpec
    from flywheel.monitoring import detect_drift

    report = detect_drift(version.reference, _churn(300, 7), DriftSpec())
    assert len(report.features) == len(project.schema.feature_columns) and not report.drifted


# Issue 13: a sample of the training file is never flagged; a gross shift alerts without labels.

def _credit_default(n: int, seed: int) -> pd.DataFrame:
    """Like the four-column credit-default table of issue 13 (student, balance, income,
    default), with balance (in thousands, to a tenth: few distinct values) and income stored
    as float32, as many Parquet files hold them."""
    rng = np.random.default_rng(seed)
    student = rng.random(n) < 0.29
    income = np.clip(np.where(student, rng.normal(17950, 4200, n),
                              rng.normal(39800, 10200, n)), 772, None)
    balance = np.clip(rng.normal(835 + 160 * student, 480, n), 0, None).round(2)
    default = rng.random(n) < 1 / (1 + np.exp(-(-10.9 + 0.0058 * balance - 0.6 * student)))
    return pd.DataFrame({"default": np.where(default, "Yes", "No"),
                         "student": np.where(student, "Yes", "No"),
                         "balance": (balance / 1000).round(1).astype(np.float32),
                         "income": income.astype(np.float32)})


@pytest.fixture(scope="module")
def credit(tmp_path_factory: pytest.TempPathFactory) -> Project:
    project = make_project(tmp_path_factory.mktemp("credit"), target="default",
                           frame=_credit_default(4000, 0), training={
                               "learners": ["linear"], "cv_folds": 2,
                               "search": {"trials": 1, "seed": 0}})
    project.train()
    return project


def _monitor_json(project: Project, frame: pd.DataFrame, path: Path,
                  capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    frame.to_parquet(path)
    code = main(["monitor", "--config", str(project.spec.root), "--data", str(path), "--json",
                 "--no-report"])
    captured = capsys.readouterr()
    assert "Warning" not in captured.err, captured.err
    return code, json.loads(captured.out)


def test_a_sample_of_the_training_file_is_not_flagged_with_float32_columns(
        credit: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    training = pd.read_parquet(credit.spec.resolve(credit.spec.data.path))
    assert training["balance"].dtype == training["income"].dtype == np.float32
    code, data = _monitor_json(credit, training.sample(1000, random_state=1),
                               tmp_path / "sample.parquet", capsys)
    assert code == 0 and data["alerted"] is False
    assert data["multivariate"]["drifted"] is False and data["multivariate"]["roc_auc"] < 0.6
    assert data["drift"]["dataset_drift"] is False


def test_income_times_3_on_a_four_column_table_alerts_and_exits_3(
        credit: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shifted = _fresh(credit, tmp_path, "income")
    frame = pd.read_parquet(credit.spec.resolve(credit.spec.data.path)).sample(
        1000, random_state=2).drop(columns=["default"])
    frame["income"] = frame["income"] * 3
    code, data = _monitor_json(shifted, frame, tmp_path / "income.parquet", capsys)
    fired = {a["rule"] for a in data["alerts"]}
    assert code == 3 and data["metrics"]["out_of_range_rate_max"] > 0.5
    assert {"out_of_range_rate_max > 0.05", "multivariate_drift > 0", "dataset_drift > 0"
            } <= fired
    assert "roc_auc" not in data["metrics"]  # no labels at all


def test_the_two_most_important_inputs_times_3_alert_without_labels_and_exit_3(
        project: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from flywheel.pipelines.monitor import load_version

    registry = project.registry()
    reference = load_version(project, registry, registry.version_info("champion")).reference
    assert reference.importance is not None
    top = sorted(reference.importance, key=lambda c: -reference.importance[c])[:2]  # type: ignore[index]
    shifted = _fresh(project, tmp_path, "top2")
    frame = _churn(1000, 8).drop(columns=["churn"])
    frame[top] = frame[top] * 3
    code, data = _monitor_json(shifted, frame, tmp_path / "top2.parquet", capsys)
    assert code == 3 and set(top) <= set(data["drift"]["drifted"])
    assert data["drift"]["share"] < 0.5 <= data["drift"]["weighted_share"]
    assert any("feature importance" in r for r in data["drift"]["reasons"])
    assert {"dataset_drift > 0", "multivariate_drift > 0"} <= {a["rule"] for a in data["alerts"]}


def test_sentinel_values_near_the_float_limits_leak_no_numpy_warning_from_the_cli(
        credit: Project, tmp_path: Path) -> None:
    import subprocess
    import sys

    frame = pd.read_parquet(credit.spec.resolve(credit.spec.data.path)).sample(
        800, random_state=3).astype({"income": float})
    frame.iloc[:5, frame.columns.get_loc("income")] = 1.5e308
    frame.iloc[5:10, frame.columns.get_loc("income")] = -1.5e308
    path = tmp_path / "sentinels.csv"
    frame.to_csv(path, index=False)
    done = subprocess.run([sys.executable, "-m", "flywheel.cli.main", "monitor", "--config",
                           str(_fresh(credit, tmp_path, "sentinels").spec.root), "--data",
                           str(path), "--json", "--no-report"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert "Warning" not in done.stderr, done.stderr
    data = json.loads(done.stdout)
    assert done.returncode in (0, 3) and data["drift"] is not None
    assert not [n for n in data["notes"] if "could not be computed" in n]


def test_monitor_reads_only_the_hours_its_window_spans_in_a_log_at_a_shared_location(
        project: Project, tmp_path: Path) -> None:
    shared = _fresh(project, tmp_path, "shared")
    spec = shared.spec.root / "flywheel.yaml"
    raw = yaml.safe_load(spec.read_text())
    raw["monitoring"] = {**(raw.get("monitoring") or {}),
                         "log_location": str(tmp_path / "shared-log")}
    spec.write_text(yaml.safe_dump(raw))
    shared = Project.load(spec)
    old = tmp_path / "shared-log" / "kind=predictions" / "date=2020-01-01" / "hour=00"
    old.mkdir(parents=True)
    (old / "old.parquet").write_bytes(b"not parquet: a window that opened it would say so")
    model = shared.registry().load_model("champion")
    frame = _churn(300, 5)
    features = shared.schema.feature_columns
    layout = tuple((f, bool(pd.api.types.is_numeric_dtype(frame[f]))) for f in features)
    log = PredictionLog(tmp_path / "shared-log")
    records = json.loads(frame[features].to_json(orient="records"))
    for i, (record, proba) in enumerate(zip(records, model.predict_proba(frame[features]),
                                            strict=True)):
        log.append(layout, f"s{i}", time.time(), "1", 1.0, [record], ["no"], [list(proba)])
    log.close()
    result = shared.monitor(report=False, log_to_mlflow=False, last=200)
    assert result.metrics["rows"] == 200
    assert not any("old.parquet" in note or "unreadable" in note for note in result.notes)
    assert not (shared.spec.root / ".flywheel" / "predictions" / "kind=predictions").exists()
