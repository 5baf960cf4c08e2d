"""The lifecycle on shared back ends, as a user runs it from the command line: train, register,
gates, card, promote, rollback, serve with hot swap, a canary the server decides, monitor, one
loop tick and the report.

Twice: against `mlflow server` on PostgreSQL with its artifacts proxied to the S3 store (moto),
and against PostgreSQL directly with artifacts in the S3 store. The flywheel.yaml is the
embedded project's apart from ``tracking:``; the password lives only in the environment and
shows up in no output, log line or run tag; ``.flywheel/`` keeps no optuna.db or mlflow.db.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pandas as pd
import pytest
import yaml

from flywheel import Project
from flywheel.pipelines.promote import history
from tests.conftest import CHURN
from tests.integration.conftest import start_server
from tests.services.postgres_project import (
    PASSWORD_VAR,
    Ran,
    no_local_stores,
    pg_uri,
    run_cli,
    tracked_project,
)

pytestmark = pytest.mark.services

WEAK = {"name": "weak", "estimator": "tests.estimators.WeakClassifier"}
TRAINING = {"learners": ["weak"], "custom_learners": [WEAK], "cv_folds": 2,
            "search": {"trials": 2, "seed": 0}}


@pytest.fixture(params=["mlflow_server", "postgresql"])
def backend(request: pytest.FixtureRequest, postgres: Any, s3: Any,
            monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The ``tracking:`` (and ``coordination:``) sections of one shared back end, with an
    experiment or a database of its own."""
    monkeypatch.setenv(PASSWORD_VAR, postgres.password)
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    tag = uuid.uuid4().hex[:8]
    postgres.create_database(f"lifecycle_{tag}")
    if request.param == "mlflow_server":
        # The server holds tracking; the study, locks and audit log go to the database that
        # coordination: names (an http server exposes no database of its own).
        server = request.getfixturevalue("pg_mlflow_server")
        return {"tracking": {"tracking_uri": server.uri, "experiment": f"lifecycle-{tag}",
                             "model_name": f"lifecycle-{tag}"},
                "coordination": {"uri": pg_uri(postgres, database=f"lifecycle_{tag}")}}
    return {"tracking": {"tracking_uri": pg_uri(postgres, database=f"lifecycle_{tag}"),
                         "artifact_location": f"s3://flywheel/lifecycle-{tag}"}}


def configure(root: Path, **sections: Any) -> None:
    spec = root / "flywheel.yaml"
    raw = yaml.safe_load(spec.read_text())
    for name, value in sections.items():
        raw[name] = {**raw.get(name, {}), **value}
    spec.write_text(yaml.safe_dump(raw))


def champion(root: Path) -> str | None:
    """Where the champion alias points, read in this process (a CLI run costs seconds)."""
    return Project.load(root).registry().alias_version("champion")


def test_the_lifecycle_runs_on_a_shared_back_end_with_only_tracking_changed(
        backend: dict[str, Any], tmp_path: Path, postgres: Any, s3: Any) -> None:
    root = tracked_project(tmp_path / "project", backend["tracking"], **TRAINING)
    # The champion is a deliberately weak classifier and the challenger a linear model, so
    # their predictions differ by design; this test is about the shared back end, not the
    # divergence guard (tests/unit/rollout covers it), which would roll the canary back.
    configure(root, gates={"champion": {"mode": "off"}},
              rollout={"tick_seconds": 0.5, "limits": {"max_divergence": None}},
              retraining={"triggers": ["rows >= 100000000"]},
              **({"coordination": backend["coordination"]} if "coordination" in backend
                 else {}))
    ran: list[Ran] = []

    def ok(*args: str, codes: tuple[int, ...] = (0,)) -> Ran:
        result = run_cli(root, *args)
        ran.append(result)
        assert result.code in codes, f"flywheel {' '.join(args)}:\n{result.text}"
        return result

    # Train and register: the first version becomes champion, the second waits as challenger.
    ok("train")
    configure(root, training={"learners": ["linear"], "custom_learners": []})
    ok("train")
    versions = Project.load(root).registry().versions()
    assert {v.version: list(v.aliases) for v in versions} == {"2": ["challenger"],
                                                              "1": ["champion"]}
    # Gates and card, stored with the version in the shared store.
    assert json.loads(ok("gates", "2", "--json").out)
    ok("card", "2", "--output", str(tmp_path / "card"))
    assert any((tmp_path / "card").iterdir())
    # Promote and roll back, audited.
    ok("promote", "2", "--reason", "lifecycle on a shared back end")
    assert champion(root) == "2"
    ok("rollback", "--reason", "back to the first")
    assert champion(root) == "1"
    actions = [e["action"] for e in json.loads(ok("history", "--json").out)["entries"]]
    assert "promote" in actions and "rollback" in actions  # the CLI's history, once

    # Serve; a promotion is picked up without a restart (hot swap), then a canary decided by
    # the server's controller on live traffic with labels.
    frame = pd.read_parquet(CHURN).sample(1500, random_state=3)
    records = json.loads(frame.drop(columns=["churn"]).to_json(orient="records"))
    labels = frame["churn"].astype(str).tolist()
    server = start_server(root, poll=0.3)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            assert client.post("/predict", json=records[0]).json()["model_version"] == "1"
            ok("promote", "2", "--reason", "hot swap")
            assert _eventually(lambda: client.post("/predict", json=records[0])
                               .json()["model_version"] == "2")
            ok("rollback", "--reason", "hot swap back")
            assert _eventually(lambda: client.post("/predict", json=records[0])
                               .json()["model_version"] == "1")
            ok("rollout", "canary", "2", "--stages", "50,100", "--min-requests", "40",
               "--min-labels", "30", "--reason", "canary on a shared back end")
            statuses: list[int] = []
            for i in range(len(records)):
                answer = client.post("/predict", json=records[i],
                                     headers={"x-flywheel-unit": f"user-{i}"})
                statuses.append(answer.status_code)
                if answer.status_code == 200:
                    client.post("/feedback", json={"request_id": answer.json()["request_id"],
                                                   "label": labels[i]})
                if i % 50 == 49 and champion(root) == "2":
                    break
    finally:
        server.stop()
    assert set(statuses) == {200}
    assert champion(root) == "2", ok("rollout", "status").text
    assert "rollout_promote" in [e.action for e in history(Project.load(root)).entries]

    # Monitor the logged window, one loop tick, the delivery report.
    ok("monitor", "--last", "200", "--json", codes=(0, 3))
    ok("loop", "--once")
    ok("report", "--json")

    print("seconds per command:", [(" ".join(r.args[:2]), round(r.seconds)) for r in ran])
    assert no_local_stores(root) == []
    stored = s3.keys("flywheel")
    assert stored, "no artifact reached the S3 store"
    _assert_password_nowhere(postgres.password, ran, root, backend)


def _eventually(check: Any, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def _assert_password_nowhere(password: str, ran: list[Ran], root: Path,
                             backend: dict[str, Any]) -> None:
    for result in ran:
        assert password not in result.text, f"flywheel {' '.join(result.args)} printed it"
    for path in (root / ".flywheel").rglob("*"):
        if path.is_file() and path.suffix in (".log", ".json", ".jsonl", ".yaml", ".txt"):
            assert password not in path.read_text(errors="replace"), path
    assert password not in (root / "flywheel.yaml").read_text()
    uri = backend["tracking"]["tracking_uri"].replace("${" + PASSWORD_VAR + "}", password)
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiments = client.search_experiments()
    for run in client.search_runs([e.experiment_id for e in experiments], max_results=5000):
        values = [*run.data.tags.values(), *run.data.params.values()]
        assert not any(password in value for value in values), run.info.run_id
