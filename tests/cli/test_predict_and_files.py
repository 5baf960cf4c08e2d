"""Batch prediction, files with odd shapes, and what the commands print, as a user runs them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from flywheel.cli.main import main
from tests.conftest import CHURN


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A churn project with one registered version (one trial: the model is beside the point)."""
    root = tmp_path_factory.mktemp("trained")
    shutil.copy(CHURN, root / "churn.parquet")
    assert main(["init", str(root / "churn.parquet"), "--target", "churn",
                 "--dir", str(root)]) == 0
    assert main(["train", "--trials", "1", "--config", str(root)]) == 0
    return root


def cli(cwd: Path, *args: str, columns: str | None = "200") -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns is not None:
        env["COLUMNS"] = columns
    proc = subprocess.run([sys.executable, "-m", "flywheel.cli.main", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=180, env=env,
                          stdin=subprocess.DEVNULL)
    return proc.returncode, proc.stdout, proc.stderr


def test_predict_on_a_truncated_parquet_exits_2_as_validate_does(trained: Path) -> None:
    whole = (trained / "churn.parquet").read_bytes()
    (trained / "cut.parquet").write_bytes(whole[: len(whole) // 2])
    code, _, err = cli(trained, "predict", "cut.parquet", "-o", "out.csv")
    assert code == 2, err
    assert "cut.parquet: cannot be read as Parquet" in err and "truncated" in err
    assert "bug in flywheel" not in err and not (trained / "out.csv").exists()
    assert cli(trained, "validate", "cut.parquet")[0] == 2


def test_predict_on_a_header_only_csv_exits_2_and_writes_no_file(trained: Path) -> None:
    pd.read_parquet(trained / "churn.parquet").head(0).to_csv(trained / "header.csv",
                                                              index=False)
    code, _, err = cli(trained, "predict", "header.csv", "-o", "scores.csv")
    assert code == 2, err
    assert "header.csv: has no rows to score" in err
    assert not (trained / "scores.csv").exists()


def test_predict_refuses_a_json_output_before_the_progress_bar_starts(trained: Path) -> None:
    code, out, err = cli(trained, "predict", "churn.parquet", "-o", "scores.json")
    assert code == 2
    assert "Scoring" not in out and out == ""
    assert "scores.json: cannot write '.json'" in err and ".csv or .parquet" in err
    assert not (trained / "scores.json").exists()


def test_a_semicolon_csv_is_read_by_its_header_in_validate_and_predict(trained: Path) -> None:
    pd.read_parquet(trained / "churn.parquet").head(40).to_csv(trained / "semi.csv", sep=";",
                                                               index=False)
    code, out, err = cli(trained, "validate", "semi.csv")
    assert code == 0, out + err
    assert "all checks passed (40 rows × 20 columns)" in out
    code, out, err = cli(trained, "predict", "semi.csv", "-o", "semi_scores.csv")
    assert code == 0, err
    scores = pd.read_csv(trained / "semi_scores.csv")
    assert len(scores) == 40 and {"state", "prediction", "proba_yes"} <= set(scores.columns)


def test_a_comma_delimiter_in_the_spec_on_a_semicolon_file_says_the_header_looks_delimited(
        trained: Path) -> None:
    pd.read_parquet(trained / "churn.parquet").head(40).to_csv(trained / "semi2.csv", sep=";",
                                                               index=False)
    spec = trained / "flywheel.yaml"
    original = spec.read_text()
    spec.write_text(re.sub(r"(?m)^  delimiter: .*$", '  delimiter: ","', original))
    try:
        code, _, err = cli(trained, "validate", "semi2.csv")
    finally:
        spec.write_text(original)
    assert code == 2
    assert "reads as one column named 'state;account_length;" in err
    assert "looks ';'-delimited" in err and 'data.delimiter: ";"' in err


def test_card_of_a_version_without_a_card_says_why_without_pointing_at_a_missing_tag(
        trained: Path) -> None:
    card = next((trained / ".flywheel" / "artifacts").glob("*/artifacts/card"))
    moved = trained / "card-moved-away"
    card.rename(moved)
    try:
        code, _, err = cli(trained, "card", "1")
    finally:
        moved.rename(card)
    assert code == 1
    assert "version 1 has no model card (none was written" in err
    assert "flywheel.card_error" not in err and "`flywheel train`" in err


def test_a_validate_that_passes_with_warnings_is_not_titled_failed_checks(trained: Path) -> None:
    frame = pd.read_parquet(trained / "churn.parquet")
    frame["an_extra_column"] = 1
    frame.to_csv(trained / "extra.csv", index=False)
    code, out, _ = cli(trained, "validate", "extra.csv")
    assert code == 0
    assert "Failed checks" not in out
    assert "Warnings in extra.csv" in out and "passes with warnings" in out


def test_tables_printed_without_a_terminal_keep_long_column_names_whole(
        trained: Path) -> None:
    long_name = "number_of_customer_service_calls_in_the_last_ninety_days"
    frame = pd.read_parquet(trained / "churn.parquet")
    frame[long_name] = 1
    frame.to_csv(trained / "long.csv", index=False)
    code, out, _ = cli(trained, "validate", "long.csv", columns=None)  # piped, no COLUMNS
    assert code == 0
    assert long_name in out and "extra_column" in out and "…" not in out


def test_init_writes_a_symlinked_data_file_inside_the_project_as_a_relative_path(
        tmp_path: Path) -> None:
    store, project = tmp_path / "store", tmp_path / "project"
    store.mkdir()
    project.mkdir()
    shutil.copy(CHURN, store / "churn.parquet")
    (project / "churn.parquet").symlink_to(store / "churn.parquet")
    code, _, err = cli(project, "init", "churn.parquet", "--target", "churn")
    assert code == 0, err
    assert '  path: "churn.parquet"' in (project / "flywheel.yaml").read_text()
    code, _, err = cli(tmp_path, "init", str(store / "churn.parquet"), "--target", "churn",
                       "--dir", "project", "--force")
    assert code == 0, err
    assert f'  path: "{store / "churn.parquet"}"' in (project / "flywheel.yaml").read_text()


def test_init_records_a_semicolon_delimiter_read_from_the_header(tmp_path: Path) -> None:
    pd.read_parquet(CHURN).to_csv(tmp_path / "semi.csv", sep=";", index=False)
    code, _, err = cli(tmp_path, "init", "semi.csv", "--target", "churn")
    assert code == 0, err
    assert '  delimiter: ";"' in (tmp_path / "flywheel.yaml").read_text()
    code, out, _ = cli(tmp_path, "validate")
    assert code == 0 and "all checks passed" in out


def test_a_file_system_error_reaching_the_cli_is_a_message_with_exit_2_not_a_bug_report(
        trained: Path) -> None:
    (trained / "plain-file").write_text("not a folder")
    code, _, err = cli(trained, "profile", "-o", "plain-file/profile.json")
    assert code == 2
    assert "error: File exists (plain-file)" in err and "may be read or written" in err
    assert "bug in flywheel" not in err and "Traceback" not in err
