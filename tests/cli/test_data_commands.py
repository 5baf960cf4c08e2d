"""The init / validate / profile commands, run the way a user runs them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flywheel.cli.main import main
from tests.conftest import CHURN


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copy(CHURN, tmp_path / "churn.parquet")
    assert main(["init", str(tmp_path / "churn.parquet"), "--target", "churn",
                 "--dir", str(tmp_path)]) == 0
    return tmp_path


def cli(*args: str) -> tuple[int, str, str]:
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-m", "flywheel.cli.main", *args],
                          capture_output=True, text=True, timeout=120, env=env)
    return proc.returncode, proc.stdout, proc.stderr


def test_init_writes_a_spec_and_schema_that_validate_accepts(project: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    spec = (project / "flywheel.yaml").read_text()
    assert "task: binary" in spec and "# inferred: 2 classes" in spec
    assert 'positive_class: "yes"' in spec
    assert (project / "schema.yaml").is_file()
    assert list((project / ".flywheel" / "profiles").glob("*.json"))
    capsys.readouterr()
    assert main(["validate", "--config", str(project / "flywheel.yaml")]) == 0
    assert "all checks passed" in capsys.readouterr().out


def test_validate_fails_with_exit_1_and_names_each_column_and_check(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = pd.read_parquet(project / "churn.parquet")
    bad.loc[bad.index[:500], "total_day_minutes"] = np.nan
    bad.loc[bad.index[:400], "state"] = "ZZ"
    bad.loc[bad.index[:3], "account_length"] = -5
    bad = bad.drop(columns=["voice_mail_plan"])
    bad.to_csv(project / "bad.csv", index=False)
    capsys.readouterr()
    code = main(["validate", str(project / "bad.csv"), "--config", str(project), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and report["ok"] is False
    found = {(f["column"], f["check"]) for f in report["failures"] if f["severity"] == "error"}
    assert found == {("total_day_minutes", "null_rate"), ("state", "unseen_category"),
                     ("account_length", "out_of_range"), ("voice_mail_plan", "missing_column")}
    code, table, _ = cli("validate", str(project / "bad.csv"), "--config", str(project))
    assert code == 1
    for name in ("total_day_minutes", "state", "account_length", "voice_mail_plan", "ZZ"):
        assert name in table


def test_config_with_a_typo_exits_2_naming_the_key(project: Path) -> None:
    spec = project / "flywheel.yaml"
    spec.write_text(spec.read_text().replace("cv_folds:", "cv_fold:"))
    code, _, err = cli("validate", "--config", str(spec))
    assert code == 2
    assert "training.cv_fold: unknown key; did you mean 'cv_folds'?" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(("setup", "message"), [
    (lambda d: None, "file not found"),
    (lambda d: (d / "in.csv").write_bytes(b""), "empty"),
    (lambda d: (d / "in.csv").write_bytes("a,y\né,1\n".encode("latin-1")), "not valid utf-8"),
    (lambda d: (d / "in.csv").write_text("a,y\n1,0\n"), "has 1 row"),
    (lambda d: (d / "in.csv").write_text("a,b\n1,2,3\n"), "cannot be parsed as CSV"),
])
def test_bad_data_file_for_init_exits_2_with_one_clear_message(
    tmp_path: Path, setup: object, message: str
) -> None:
    setup(tmp_path)  # type: ignore[operator]
    code, _, err = cli("init", str(tmp_path / "in.csv"), "--target", "y", "--dir", str(tmp_path))
    assert code == 2, err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "flywheel.yaml").exists()
    assert not (tmp_path / "schema.yaml").exists()


def test_unsupported_extension_and_missing_target_exit_2(tmp_path: Path) -> None:
    shutil.copy(CHURN, tmp_path / "churn.parquet")
    (tmp_path / "data.xlsx").write_bytes(b"PK")
    code, _, err = cli("init", str(tmp_path / "data.xlsx"), "--target", "churn", "--dir", str(tmp_path))
    assert code == 2 and "unsupported file type" in err
    code, _, err = cli("init", str(tmp_path / "churn.parquet"), "--target", "chrun", "--dir", str(tmp_path))
    assert code == 2 and "did you mean 'churn'" in err
    assert not (tmp_path / "flywheel.yaml").exists()


def test_init_refuses_to_overwrite_without_force(project: Path) -> None:
    code, _, err = cli("init", str(project / "churn.parquet"), "--target", "churn", "--dir", str(project))
    assert code == 2 and "--force" in err
    code, _, _ = cli("init", str(project / "churn.parquet"), "--target", "churn", "--dir",
                     str(project), "--force", "--task", "binary")
    assert code == 0


def test_bad_task_option_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = cli("init", str(CHURN), "--target", "churn", "--task", "clustering", "--dir", str(tmp_path))
    assert code == 2 and "binary, multiclass or regression" in err


def test_profile_writes_json_that_loads(project: Path) -> None:
    from flywheel.data import ReferenceProfile

    out = project / "profile.json"
    assert main(["profile", "--config", str(project), "-o", str(out)]) == 0
    profile = ReferenceProfile.load(out)
    assert profile.rows == 5000 and "total_day_minutes" in profile.columns


def test_validate_without_a_project_points_to_init(tmp_path: Path) -> None:
    code, _, err = cli("validate", "--config", str(tmp_path / "flywheel.yaml"))
    assert code == 2 and "flywheel init" in err
