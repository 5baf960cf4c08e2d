"""The delivery report's summary counts the alias changes its own table lists."""

from __future__ import annotations

from pathlib import Path

from flywheel.pipelines.report import DeliveryReport, gather_decisions
from flywheel.pipelines.report_render import report_markdown
from flywheel.registry import AuditEntry, AuditLog


def _log(tmp_path: Path) -> tuple[AuditEntry, ...]:
    """The case from the issue: a forced promotion by hand, a rollout's promotion, a rollout's
    rollback, a rollback by hand, and the loop's verdict on its rollout."""
    log = AuditLog(tmp_path / "audit.jsonl")
    steps = [
        ("register", "champion", None, "1", {}),
        ("register", "challenger", None, "2", {}),
        ("force_promote", "champion", "1", "2", {"forced": True}),
        ("force_promote", "challenger", "2", None, {}),
        ("register", "challenger", None, "3", {}),
        ("rollout_start", "rollout", "2", "3", {}),
        ("rollout_promote", "champion", "2", "3", {}),
        ("rollout_promote", "challenger", "3", None, {}),
        ("loop_rollout_done", "loop", None, "3", {"version": "3", "champion": "3"}),
        ("register", "challenger", None, "4", {}),
        ("rollout_start", "rollout", "3", "4", {}),
        ("rollout_rollback", "rollout", "3", "4", {}),
        ("rollback", "champion", "3", "2", {}),
    ]
    for action, alias, old, new, evidence in steps:
        log.append(action=action, model="m", alias=alias, from_version=old, to_version=new,
                   reason=f"{action} {alias}", evidence=evidence)
    return log.read().entries


def _report(decisions: tuple[dict, ...]) -> DeliveryReport:
    return DeliveryReport(
        model="m", metric="roc_auc", higher_is_better=True, champion="2", baseline_version="1",
        periods=(), deployed=None, baseline=None, predictions=0, requests=0, answered=0,
        failed=0, client_failed=None, p50_ms=None, p99_ms=None, throughput_rps=None,
        events=(), decisions=decisions, notes=())


def test_every_alias_change_appears_and_the_summary_counts_what_the_table_shows(
        tmp_path: Path) -> None:
    entries = _log(tmp_path)
    report = _report(gather_decisions(entries))
    alias_changes = [e for e in entries if e.alias in ("champion", "challenger")]
    markdown = report_markdown(report)
    table = [line for line in markdown.splitlines() if line.startswith("| 20")]
    changed = [line for line in table if "champion " in line or "challenger " in line]
    assert len(changed) == len(alias_changes) == 9
    assert any("force_promote" in line and "champion 1 → 2 by hand (forced)" in line
               for line in table)
    summary = report.summary()
    champion_rows = [line for line in table if "| champion " in line]
    assert len(champion_rows) == 4
    assert "4 champion change(s): 1 promotion by hand (1 forced), 1 promotion by a rollout, " \
           "1 rollback by hand, 1 registration at training" in summary
    assert "1 retrained version(s) promoted after their rollout, 0 not" in summary
    assert "0 retrained version(s) promoted" not in summary
