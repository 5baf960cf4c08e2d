"""The commented flywheel.yaml that ``flywheel init`` writes."""

from __future__ import annotations

import json

from flywheel.core.spec import GatesSpec, ProjectSpec


def render_spec(spec: ProjectSpec, *, inferred: dict[str, str]) -> str:
    """flywheel.yaml text for ``spec``, every choice visible, inferred ones explained.

    Args:
        spec: The spec to write; the text parses back to an equal spec.
        inferred: Comments keyed by field (``task``, ``positive_class``, ``excluded``).
    """
    q = json.dumps  # JSON strings are valid YAML scalars, quoted when needed
    v, s, f = spec.validation, spec.training, spec.features
    sev = v.severity
    g, c = spec.gates, spec.gates.champion
    t = spec.tracking
    data_extra = f"  time_column: {q(spec.data.time_column)}\n" if spec.data.time_column else ""
    positive = (f"  positive_class: {q(spec.target.positive_class)}"
                f"   # {inferred.get('positive_class', '')}\n"
                if spec.target.positive_class is not None else "")
    excluded = inferred.get("excluded", "")
    return f"""\
# flywheel project spec. Every key below has a default; delete a key to go back to it.
# Written by `flywheel init`; the inferred choices are commented. Edit freely.
name: {q(spec.name)}

data:
  path: {q(spec.data.path)}          # training data, CSV or Parquet (relative to this file)
  schema_file: {q(spec.data.schema_file)}   # column kinds, ranges, categories, roles
  format: {spec.data.format}                 # auto | csv | parquet
  encoding: {spec.data.encoding}              # text encoding of CSV files
  delimiter: {q(spec.data.delimiter)}                # CSV field delimiter; null: read from the header (, ; tab |)
{data_extra}
target:
  column: {q(spec.target.column)}
  task: {spec.target.task}   # {inferred.get('task', '')}
{positive}
# Columns left out of the features (edit `role` in the schema to change):
# {excluded or 'none'}

validation:
  max_unseen_category_rate: {v.max_unseen_category_rate}   # share of rows with categories not in the schema
  max_out_of_range_rate: {v.max_out_of_range_rate}       # share of values outside the schema's [min, max]
  max_duplicate_rate: {v.max_duplicate_rate}          # share of rows repeating an earlier row
  severity:                        # error fails the gate, warning is reported, off skips
    missing_column: {sev.missing_column}
    extra_column: {sev.extra_column}
    dtype: {sev.dtype}
    null_rate: {sev.null_rate}
    out_of_range: {sev.out_of_range}
    unseen_category: {sev.unseen_category}
    duplicate_rows: {sev.duplicate_rows}
    empty: {sev.empty}
    target: {sev.target}

features:
  one_hot_max_categories: {f.one_hot_max_categories}    # more categories than this: high_cardinality encoding
  high_cardinality: {f.high_cardinality}          # target | ordinal
  impute: {f.impute}                  # numeric gaps: median | mean | zero | none
  columns: {{}}                     # per-column overrides, e.g. state: {{encoding: one_hot}}
                                  #   encoding: auto | one_hot | target | ordinal | drop
                                  #   impute: median | mean | zero | none; scale: true | false

training:
  metric: {q(s.metric) if s.metric else 'null'}           # null picks roc_auc / log_loss / rmse by task
  cv_folds: {s.cv_folds}
  holdout_fraction: {s.holdout_fraction}     # set aside before the search, used once
  holdout_seed: {s.holdout_seed}             # the holdout split's own seed (search.seed leaves it alone)
  learners: {json.dumps(s.learners)}   # any of lightgbm, linear, random_forest,
                                  # hist_gradient_boosting, xgboost, catboost (the last two
                                  # with pip install "flywheel[xgboost]" / "flywheel[catboost]"),
                                  # and names from custom_learners
  custom_learners: []             # e.g. - name: extra_trees
                                  #        estimator: sklearn.ensemble.ExtraTreesClassifier
                                  #        params: {{n_jobs: 2}}
                                  #        search_space:
                                  #          max_depth: {{type: int, low: 2, high: 20}}
  search:
    trials: {s.search.trials}
    timeout_seconds: {s.search.timeout_seconds if s.search.timeout_seconds else 'null'}   # wall-clock budget of the search
    sampler: {s.search.sampler}               # tpe | random | grid
    parallel: {s.search.parallel}                # trials at once, in separate processes
    seed: {s.search.seed}
    pruning: {str(s.search.pruning).lower()}              # stop unpromising trials on their per-fold scores
  allow_pickle: {str(s.allow_pickle).lower()}           # true lets a model skops cannot hold be pickled (unsafe to load)

gates:                            # checked on the holdout after training; a failure blocks promotion
  thresholds: {_thresholds(g)}                # e.g. {{roc_auc: ">= 0.80", cv_roc_auc_std: "<= 0.02"}}
  champion:                       # the new version against the champion, on the same holdout rows
    mode: {c.mode}             # not_worse | better | off
    metric: {q(c.metric) if c.metric else 'null'}                  # null: training.metric
    margin: {c.margin}                 # auto: scaled to what the holdout can resolve; or a number: not_worse may be this much worse, better must be this much better
    confidence: {c.confidence}              # two-sided confidence interval of the difference
    method: {c.method}                  # auto (DeLong for binary roc_auc) | bootstrap | delong
    bootstrap: {c.bootstrap}               # resamples of the paired bootstrap
    min_rows: {c.min_rows}                # fewest holdout rows the champion never trained on
  cv_std_max: {_number(g.cv_std_max)}                # largest std of the metric across folds; null: no limit
  latency_p99_ms: {_number(g.latency_p99_ms)}            # single-row prediction latency budget; null: off
  robustness: {str(g.robustness).lower()}                # missing values, unseen categories, extremes, column order
  fairness:
    sensitive_columns: {json.dumps(g.fairness.sensitive_columns)}         # e.g. [gender]; empty: off
    max_gap: {g.fairness.max_gap}                # largest demographic parity / equalized odds difference
    min_group_rows: {g.fairness.min_group_rows}           # smaller groups are shown but not counted

promotion:
  auto: {str(spec.promotion.auto).lower()}                     # true: a version passing every gate becomes champion at once

{_monitoring(spec)}
{_rollout(spec)}
{_retraining(spec)}
tracking:                         # MLflow; the defaults live in .flywheel/
  tracking_uri: null              # e.g. postgresql://user@host/mlflow at scale
  artifact_location: null         # e.g. s3://bucket/flywheel at scale
  experiment: null                # defaults to the project name
  model_name: null                # registered model name; defaults to the project name
  connect_timeout_seconds: {t.connect_timeout_seconds}    # a tracking server (http://...) not answering within this is retried
  request_timeout_seconds: {t.request_timeout_seconds}     # longest wait for one answer of the server
  retries: {t.retries}                      # then flywheel gives up with an error (MLFLOW_HTTP_REQUEST_* variables win)
  backoff_seconds: {t.backoff_seconds}              # pause before the second retry, doubling after
"""


def _monitoring(spec: ProjectSpec) -> str:
    m, d, a = spec.monitoring, spec.monitoring.drift, spec.monitoring.alerts
    rules = ", ".join(json.dumps(str(r) if r.severity == "warning" else r.model_dump())
                      for r in a.rules)
    sinks = ", ".join(json.dumps(s.model_dump(exclude_defaults=True) | {"kind": s.kind})
                      for s in a.sinks)
    return f"""\
monitoring:                       # `flywheel monitor`: drift, data quality, performance, alerts
  enabled: {str(m.enabled).lower()}                   # false: not configured (a rollout refuses to start)
  version: {json.dumps(m.version)}             # alias or version whose reference is compared against
  window_rows: {m.window_rows}             # default window: the last N rows of the prediction log
  min_rows: {m.min_rows}                    # fewer rows: no drift or performance (reported)
  sample_rows: {_number(m.sample_rows)}               # draw at most this many rows for drift and quality (reported)
  confidence: {m.confidence}               # level of measured performance's bootstrap intervals
  bootstrap: {m.bootstrap}                 # resamples for those intervals
  report: {json.dumps(m.report)}
  log_location: {json.dumps(m.log_location)}   # the prediction log: a folder, a shared path, or s3://bucket/prefix
  log_retention_days: {_number(m.log_retention_days)}          # delete the log's hours older than this (null: keep all)
  drift:
    numeric_method: {d.numeric_method}          # auto (ks up to test_max_rows, else wasserstein) | ks | wasserstein | psi
    categorical_method: {d.categorical_method}      # auto (chi2 up to test_max_rows, else jensenshannon) | chi2 | jensenshannon | psi
    columns: {json.dumps(d.columns)}                   # per-column method, e.g. {{temp: ks, carrier: psi}}
    exclude: {json.dumps(d.exclude)}                   # columns not checked
    test_max_rows: {d.test_max_rows}          # statistical tests up to this many rows; distances above
    significance: {d.significance}           # a test flags drift when p < this (false-alarm rate per column)
    wasserstein_threshold: {d.wasserstein_threshold}   # normalized by the reference's standard deviation
    jensenshannon_threshold: {d.jensenshannon_threshold}
    psi_threshold: {d.psi_threshold}
    drift_share: {d.drift_share}             # the data set drifts when this share of feature columns do
    multivariate: {str(d.multivariate).lower()}           # domain classifier: reference rows vs current rows
    multivariate_threshold: {d.multivariate_threshold}  # its cross-validated ROC AUC at or above this: drift
    multivariate_rows: {d.multivariate_rows}      # rows drawn from each side
  alerts:
    rules: [{rules}]
                                  # "metric op number"; metrics: `flywheel monitor --json`
    sinks: [{sinks}]   # log | file (path) | webhook (url or url_env) | prometheus (port, path)
    cooldown_seconds: {a.cooldown_seconds}      # a repeated alert is not sent again within this
"""


def _rollout(spec: ProjectSpec) -> str:
    q, r = json.dumps, spec.rollout
    lim, can, sh, ab, bg, ban = r.limits, r.canary, r.shadow, r.ab, r.blue_green, r.bandit
    return f"""\
rollout:                          # how a challenger reaches users: `flywheel rollout ...`
  default: {r.default}               # canary | shadow | ab | blue_green | bandit (the retraining loop's choice)
  auto: {str(r.auto).lower()}                      # decide automatically while serving; false: `flywheel rollout decide`
  tick_seconds: {r.tick_seconds}              # seconds between automatic decisions
  unit_header: {q(r.unit_header)}   # hashed so that one user always sees one model
  unit_field: {q(r.unit_field) if r.unit_field else 'null'}                # or a record field; null: random per request
  timeout_ms: {r.timeout_ms}              # a slower challenger call counts as a timeout; the champion answers
  limits:                         # any breach rolls back at once
    max_error_rate: {lim.max_error_rate}          # share of challenger calls failing or timing out
    max_p99_latency_ms: {_number(lim.max_p99_latency_ms)}        # absolute p99 budget; null: only the ratio
    max_latency_ratio: {_number(lim.max_latency_ratio)}         # challenger p99 <= ratio x champion p99 + slack
    latency_slack_ms: {lim.latency_slack_ms}
    max_divergence: {_number(lim.max_divergence)}            # Jensen-Shannon distance of the prediction distributions
    max_metric_drop: {_number(lim.max_metric_drop)}          # labelled metric may be this much worse; null: no labels needed
    alpha: {lim.alpha}                   # error level of these statistical guards
  canary:
    stages: {json.dumps(can.stages)}   # challenger share per stage, percent
    min_requests: {can.min_requests}             # challenger requests per stage
    min_labels: {can.min_labels}                # labelled challenger requests per stage (metric limit)
    metric: {can.metric}                  # auto | accuracy | conversion | label | abs_error | squared_error
  shadow:
    share: {sh.share}                    # share of requests mirrored to the challenger
    min_requests: {sh.min_requests}
    metric: {sh.metric}                  # compared on labelled requests both answered
    min_agreement: {_number(sh.min_agreement)}           # null: report agreement only
    then: {sh.then}                    # stop | canary | promote after a clean shadow
  ab:
    split: {ab.split}                    # challenger share of units
    metric: {ab.metric}
    alpha: {ab.alpha}                   # always-valid: look as often as you like
    power: {ab.power}
    mde: {ab.mde}                     # minimum detectable effect, in the metric's units
    baseline: {_number(ab.baseline)}                # null: estimated from the log or the holdout
    max_samples: {_number(ab.max_samples)}             # per arm; null: the planned sample size
    on_no_difference: {ab.on_no_difference}   # keep_champion | promote
  blue_green:
    warmup_rows: {bg.warmup_rows}              # rows scored by the new version before the switch
    bake_requests: {bg.bake_requests}           # watched after the switch; a breach switches back
  bandit:
    floor: {ban.floor}                   # smallest traffic share per arm
    metric: {ban.metric}                  # the reward
    min_samples: {ban.min_samples}             # labelled requests per arm before deciding
    decide_at: {_number(ban.decide_at)}              # promote an arm best with this probability; null: never
    max_samples: {_number(ban.max_samples)}
"""


def _retraining(spec: ProjectSpec) -> str:
    r = spec.retraining
    triggers = json.dumps([str(t) for t in r.triggers])
    return f"""\
retraining:                       # `flywheel loop`: triggers -> retrain -> gates -> rollout -> decide
  enabled: {str(r.enabled).lower()}
  triggers: {triggers}
  schedule: {json.dumps(r.schedule) if r.schedule else 'null'}                  # also on a cron schedule (UTC), e.g. "0 3 * * 0"
  new_labels: {_number(r.new_labels)}                # also after this many new labelled rows
  cooldown_hours: {r.cooldown_hours}            # least time between two retrainings
  window_rows: {r.window_rows}               # latest log rows monitored per check
  min_window_rows: {r.min_window_rows}            # fewer new rows: no check yet
  data_days: {_number(r.data_days)}                # labelled production rows this far back join the data
  data_rows: {_number(r.data_rows)}                # at most this many of them; null: no limit
  min_labels: {r.min_labels}                # labelled rows needed before retraining
  include_training_data: {str(r.include_training_data).lower()}
  trials: {_number(r.trials)}                    # null: training.search.trials
  timeout_seconds: {_number(r.timeout_seconds)}           # null: training.search.timeout_seconds
  rollout: {r.rollout}                # canary | shadow | ab | blue_green | bandit | none
  interval_seconds: {r.interval_seconds}         # between ticks of `flywheel loop`
"""


def _thresholds(gates: GatesSpec) -> str:
    if not gates.thresholds:
        return "{}"
    rules = ", ".join(f"{t.metric}: {json.dumps(f'{t.op} {t.value!r}')}" for t in gates.thresholds)
    return "{" + rules + "}"


def _number(value: float | None) -> str:
    return "null" if value is None else repr(value)
