"""Rules on metrics: parsed without eval, names checked, evaluated against a run's metrics."""

from __future__ import annotations

import math

import pytest

from flywheel.core.errors import ConfigError
from flywheel.core.spec import MonitoringSpec, RuleSpec
from flywheel.monitoring import check_rule_names, evaluate_rules, parse_rule


def test_a_rule_reads_from_text_or_a_mapping_and_prints_back_the_same() -> None:
    rule = parse_rule("drift_share > 0.3")
    assert (rule.metric, rule.op, rule.value) == ("drift_share", ">", 0.3)
    assert str(rule) == "drift_share > 0.3"
    mapped = parse_rule({"metric": "p99_ms", "op": ">=", "value": 50, "severity": "critical"})
    assert mapped.severity == "critical" and mapped.holds(50.0) and not mapped.holds(49.9)


@pytest.mark.parametrize("text", ["drift_share >> 0.3", "__import__('os') > 1",
                                  "drift_share > 0.3 or 1", "p99_ms > fifty", ""])
def test_anything_but_metric_operator_number_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match="must look like"):
        parse_rule(text)


def test_nan_never_satisfies_a_rule() -> None:
    assert not parse_rule("error_rate < 1").holds(math.nan)


def test_a_misspelt_metric_is_refused_with_the_nearest_name() -> None:
    with pytest.raises(ConfigError, match="did you mean 'drift_share'"):
        check_rule_names([parse_rule("drift_shar > 0.3")])


def test_per_column_metrics_task_metrics_and_caller_names_are_known() -> None:
    rules = [parse_rule(t) for t in ("drift.temp > 0.2", "null_rate.temp > 0.1",
                                     "roc_auc_low < 0.7", "rmse_drop > 3", "days_since > 30")]
    check_rule_names(rules, extra={"days_since"})


def test_a_rule_on_a_metric_the_window_lacks_is_reported_as_not_evaluated() -> None:
    outcomes = evaluate_rules([parse_rule("roc_auc < 0.7"), parse_rule("p99_ms > 50"),
                               parse_rule("drift_share > 0.3")],
                              {"p99_ms": 80.0, "drift_share": math.nan})
    assert [(o.fired, o.evaluated) for o in outcomes] == [(False, False), (True, True),
                                                          (False, False)]
    assert outcomes[1].to_dict()["value"] == 80.0


def test_the_spec_takes_rules_as_text_and_the_defaults_are_known_metrics() -> None:
    spec = MonitoringSpec.model_validate({"alerts": {"rules": ["p99_ms > 50"]}})
    assert spec.alerts.rules == [RuleSpec(metric="p99_ms", op=">", value=50)]
    check_rule_names(MonitoringSpec().alerts.rules)


def test_the_init_template_writes_the_monitoring_section_back_unchanged() -> None:
    import yaml

    from flywheel.core.spec import parse_spec
    from flywheel.core.template import render_spec

    spec = parse_spec({
        "name": "p", "data": {"path": "d.csv"}, "target": {"column": "y", "task": "binary"},
        "monitoring": {"drift": {"columns": {"temp": "ks"}},
                       "alerts": {"rules": ["p99_ms > 50", {"metric": "error_rate", "op": ">",
                                                            "value": 0.1,
                                                            "severity": "critical"}],
                                  "sinks": [{"kind": "webhook", "url": "http://h/x"}]}}})
    text = render_spec(spec, inferred={})
    assert "monitoring:" in text and "# `flywheel monitor`" in text
    assert parse_spec(yaml.safe_load(text)).monitoring == spec.monitoring


def test_the_monitoring_spec_refuses_unknown_keys_and_bad_values() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        MonitoringSpec.model_validate({"drift": {"signifcance": 0.1}})
    with pytest.raises(ValidationError):
        MonitoringSpec.model_validate({"drift": {"significance": 0.9}})
    assert MonitoringSpec().enabled is True
