"""schemathesis against a real `flywheel serve`'s /openapi.json: every documented operation
(predict, infer, explain, feedback, health, metrics, the dashboard and its JSON, admin) with
random valid and invalid inputs, API tokens required on predict, feedback and the dashboard.

No 5xx, and every response conforms to the document (status, content type, body schema,
headers, allowed methods). ``$FLYWHEEL_FUZZ_SECONDS`` (40 unless set) bounds the run.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from flywheel import Project
from flywheel.demo import ServerProcess
from tests.conftest import make_project
from tests.hardening.conftest import env_int
from tests.integration.conftest import ADMIN_TOKEN, REPO

pytestmark = pytest.mark.hardening

BIN = Path(sys.executable).parent
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance,response_headers_conformance,unsupported_method,"
          "allow_header_conformance")


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Project, ServerProcess]]:
    root = tmp_path_factory.mktemp("fuzz")
    project = make_project(root)
    spec_path = root / "flywheel.yaml"
    raw = yaml.safe_load(spec_path.read_text())
    raw["serving"] = {**raw.get("serving", {}),
                      "auth": {"endpoints": ["predict", "feedback", "dashboard"]}}
    spec_path.write_text(yaml.safe_dump(raw))
    project = Project.load(spec_path)
    project.train()
    log_file = root / ".flywheel" / "serve.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    # One token for both the API and admin endpoints, so the fuzzer's one header reaches all.
    server = ServerProcess(root, log_file=log_file, env={
        "PYTHONPATH": str(REPO), "FLYWHEEL_ADMIN_TOKEN": ADMIN_TOKEN,
        "FLYWHEEL_API_TOKENS": f"other-token,{ADMIN_TOKEN}"}).start(timeout=120)
    yield project, server
    server.stop()


def test_every_operation_fuzzed_gets_no_server_error_and_matches_the_document(
        guarded: tuple[Project, ServerProcess], tmp_path: Path,
        figures: dict[str, dict[str, Any]]) -> None:
    project, server = guarded
    seconds = env_int("FLYWHEEL_FUZZ_SECONDS", 40)
    (tmp_path / "schemathesis.toml").write_text(
        f'headers = {{ Authorization = "Bearer {ADMIN_TOKEN}" }}\n'
        "[parameters]\n"
        f'"path.name" = "{project.registry().model_name}"\n'
        '"path.version" = "1"\n')
    run = subprocess.run(
        [str(BIN / "schemathesis"), "--config-file", str(tmp_path / "schemathesis.toml"), "run",
         server.url + "/openapi.json", "--checks", CHECKS, "--max-time", str(seconds),
         "--workers", "1", "--seed", "20", "--no-color", "--output-truncate", "false"],
        cwd=tmp_path, capture_output=True, text=True, timeout=seconds * 4 + 120)
    (tmp_path / "schemathesis.out").write_text(run.stdout)
    selected = re.search(r"Selected: (\d+)/(\d+)", run.stdout)
    tested = re.search(r"Tested: (\d+)", run.stdout)
    cases = re.search(r"(\d+) generated", run.stdout)
    scenarios = re.search(r"Scenarios: +(\d+)", run.stdout)
    figures["schemathesis"] = {
        "operations_tested": int(tested[1]) if tested else None,
        "operations_documented": int(selected[2]) if selected else None,
        "cases": int(cases[1]) if cases else None,
        "stateful_scenarios": int(scenarios[1]) if scenarios else None,
        "seconds_bound": seconds,
        "exit": run.returncode, "checks": CHECKS.split(",")}
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    # Every documented operation was tested: predict, explain, feedback, health, metrics,
    # OpenAPI, the v2 paths, the dashboard and its JSON, and admin make 18.
    assert selected is not None and tested is not None, run.stdout[-3000:]
    assert tested[1] == selected[2] and int(tested[1]) >= 18, run.stdout[-3000:]
