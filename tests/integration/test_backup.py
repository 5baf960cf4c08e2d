"""`flywheel backup` and `flywheel restore` on real projects (MLflow on SQLite, real CLI)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from flywheel import Project
from flywheel.cli.main import main
from flywheel.core.errors import BackupError
from flywheel.pipelines.backup import backup_project, restore_backup
from flywheel.pipelines.promote import history
from tests.conftest import add_version, aliases, make_project


def flywheel(*args: str, cwd: Path, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flywheel.cli.main", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


CHECKSUM_TAG = "flywheel.checksum"


def changes(project: Project) -> list[tuple[int, str, str, str, str | None, str | None]]:
    return [(e.seq, e.time, e.action, e.alias, e.from_version, e.to_version)
            for e in history(project).entries]


def checksums(project: Project) -> dict[str, str]:
    return {v.version: v.tags[CHECKSUM_TAG] for v in project.registry().versions()}


@pytest.fixture(scope="module")
def promoted(tmp_path_factory: pytest.TempPathFactory, fitted: tuple[Any, pd.DataFrame]
             ) -> Project:
    """A project with two versions, version 2 promoted to champion (an audited change)."""
    project = make_project(tmp_path_factory.mktemp("backup-source") / "project")
    add_version(project, fitted)
    add_version(project, fitted)
    project.promote("2", reason="backup test")
    return project


def test_a_restored_project_has_the_same_champion_checksums_and_history_without_the_original(
        promoted: Project, fitted: tuple[Any, pd.DataFrame], tmp_path: Path) -> None:
    archive = tmp_path / "backup.tar"
    manifest = backup_project(promoted, archive)
    assert {"flywheel.yaml", "schema.yaml", ".flywheel/mlflow.db", ".flywheel/audit.jsonl"} <= {
        f.path for f in manifest.files}
    before = (aliases(promoted), checksums(promoted), changes(promoted))
    source = promoted.spec.root
    away = source.with_name(source.name + "-away")
    source.rename(away)  # the restored store must not point into the old folder
    try:
        restored = Project.load(restore_backup(archive, tmp_path / "restored").root)
        assert (aliases(restored), checksums(restored), changes(restored)) == before
        assert aliases(restored)["champion"] == "2"
        model = restored.registry().load_model("champion")  # checksum verified on load
        assert model.predict_proba(fitted[1].head(5)).shape == (5, 2)
        assert str(away) not in (tmp_path / "restored" / ".flywheel" / "mlflow.db").read_bytes(
            ).decode("latin-1")
    finally:
        away.rename(source)


def test_a_truncated_backup_is_refused_with_a_clear_message_and_nothing_restored(
        promoted: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = tmp_path / "backup.tar"
    backup_project(promoted, archive)
    data = archive.read_bytes()
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(data[: len(data) // 2])
    capsys.readouterr()
    assert main(["restore", str(truncated), str(tmp_path / "out")]) == 2
    message = " ".join(capsys.readouterr().err.split())
    assert "truncated or corrupt" in message and "take a new backup" in message, message
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_backup_with_one_changed_byte_is_refused_as_corrupt_naming_the_file(
        promoted: Project, tmp_path: Path) -> None:
    archive = tmp_path / "backup.tar"
    backup_project(promoted, archive)
    with tarfile.open(archive) as tar:
        member = tar.getmember(".flywheel/audit.jsonl")
        offset = member.offset_data
    data = bytearray(archive.read_bytes())
    data[offset + 10] ^= 0x01
    archive.write_bytes(bytes(data))
    with pytest.raises(BackupError, match=r"corrupt: \.flywheel/audit\.jsonl"):
        restore_backup(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_archive_without_its_manifest_is_refused_as_partial(promoted: Project,
                                                               tmp_path: Path) -> None:
    archive = tmp_path / "backup.tar"
    backup_project(promoted, archive)
    stripped = tmp_path / "stripped.tar"
    with tarfile.open(archive) as tar, tarfile.open(stripped, "w") as out:
        for member in tar.getmembers()[:-1]:
            out.addfile(member, tar.extractfile(member))
    with pytest.raises(BackupError, match="partial"):
        restore_backup(stripped, tmp_path / "out")


def test_restore_refuses_a_folder_that_holds_files(promoted: Project, tmp_path: Path) -> None:
    archive = tmp_path / "backup.tar"
    backup_project(promoted, archive)
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("keep me")
    with pytest.raises(BackupError, match="not an empty folder"):
        restore_backup(archive, occupied)
    assert (occupied / "notes.txt").read_text() == "keep me"


def test_a_project_on_a_shared_tracking_store_is_refused_saying_what_to_back_up_instead(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = make_project(tmp_path / "shared")
    spec_path = project.spec.root / "flywheel.yaml"
    raw = yaml.safe_load(spec_path.read_text())
    raw["tracking"] = {"tracking_uri": "postgresql://flywheel@127.0.0.1:1/mlflow"}
    spec_path.write_text(yaml.safe_dump(raw))
    capsys.readouterr()
    assert main(["backup", "-o", str(tmp_path / "b.tar"), "--config", str(spec_path)]) == 2
    message = " ".join(capsys.readouterr().err.split())
    assert "tracking.tracking_uri" in message and "pg_dump" in message, message
    assert not (tmp_path / "b.tar").exists()


@pytest.mark.hardening
def test_a_backup_killed_midway_leaves_no_file_restore_accepts(promoted: Project,
                                                              tmp_path: Path) -> None:
    archive = tmp_path / "backup.tar"
    killed = flywheel("backup", "-o", str(archive), cwd=promoted.spec.root,
                      env={"FLYWHEEL_CRASH_AT": "backup.archive_half_written"})
    assert killed.returncode == -9, killed.stderr
    assert not archive.exists()
    leftovers = list(tmp_path.glob(".backup.tar.partial-*"))
    assert len(leftovers) == 1
    with pytest.raises(BackupError, match="truncated|partial"):
        restore_backup(leftovers[0], tmp_path / "out")
    again = flywheel("backup", "-o", str(archive), cwd=promoted.spec.root)
    assert again.returncode == 0, again.stderr
    assert list(tmp_path.glob(".backup.tar.partial-*")) == []  # the dead one's leftover went
    assert restore_backup(archive, tmp_path / "out").root == tmp_path / "out"


@pytest.mark.hardening
def test_backups_killed_at_random_moments_never_leave_a_file_restore_accepts_or_harm_the_project(
        promoted: Project, tmp_path: Path) -> None:
    rng = random.Random(20)
    before = (aliases(promoted), checksums(promoted), changes(promoted))
    # Kill moments are drawn inside one whole backup's measured duration, so the kills land
    # during the run on a fast machine as on a loaded one.
    started = time.monotonic()
    whole = flywheel("backup", "-o", str(tmp_path / "whole.tar"), cwd=promoted.spec.root)
    assert whole.returncode == 0, whole.stderr
    duration = time.monotonic() - started
    outcomes = {"killed": 0, "completed": 0}
    for iteration in range(6):
        archive = tmp_path / f"backup-{iteration}.tar"
        process = subprocess.Popen([sys.executable, "-m", "flywheel.cli.main", "backup", "-o",
                                    str(archive)], cwd=promoted.spec.root,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.1, 0.9) * duration)
        process.send_signal(signal.SIGKILL)
        code = process.wait(timeout=60)
        outcomes["killed" if code == -signal.SIGKILL else "completed"] += 1
        if archive.exists():  # it finished before the kill: it must be whole
            assert restore_backup(archive, tmp_path / f"out-{iteration}").manifest.files
        for leftover in tmp_path.glob(f".{archive.name}.partial-*"):
            with pytest.raises(BackupError):
                restore_backup(leftover, tmp_path / f"refused-{iteration}")
        assert (aliases(promoted), checksums(promoted), changes(promoted)) == before
        assert not history(promoted).problems
    assert outcomes["killed"] >= 1, outcomes


def test_a_journal_study_in_the_workspace_is_kept_and_an_online_store_elsewhere_is_named(
        tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    spec_path = project.spec.root / "flywheel.yaml"
    raw = yaml.safe_load(spec_path.read_text())
    raw["training"]["search"]["storage"] = "journal:.flywheel/study.log"
    raw["feature_store"] = {"online": f"sqlite:///{tmp_path / 'online.db'}"}
    spec_path.write_text(yaml.safe_dump(raw))
    (project.spec.root / ".flywheel" / "study.log").write_text('{"op_code": 0}\n')
    manifest = backup_project(Project.load(spec_path), tmp_path / "backup.tar")
    assert ".flywheel/study.log" in {f.path for f in manifest.files}
    assert any("online store" in line and "online.db" in line for line in manifest.excluded)
    restored = restore_backup(tmp_path / "backup.tar", tmp_path / "restored")
    assert (restored.root / ".flywheel" / "study.log").read_text() == '{"op_code": 0}\n'
