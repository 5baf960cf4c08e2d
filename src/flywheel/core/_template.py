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
                                  # hist_gradient_boosting, and names from custom_learners
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
    margin: {c.margin}                 # not_worse: may be this much worse; better: must be this much better
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

tracking:                         # MLflow; the defaults live in .flywheel/
  tracking_uri: null              # e.g. postgresql://user@host/mlflow at scale
  artifact_location: null         # e.g. s3://bucket/flywheel at scale
  experiment: null                # defaults to the project name
  model_name: null                # registered model name; defaults to the project name
"""


def _thresholds(gates: GatesSpec) -> str:
    if not gates.thresholds:
        return "{}"
    rules = ", ".join(f"{t.metric}: {json.dumps(f'{t.op} {t.value!r}')}" for t in gates.thresholds)
    return "{" + rules + "}"


def _number(value: float | None) -> str:
    return "null" if value is None else repr(value)
