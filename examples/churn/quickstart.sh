#!/usr/bin/env bash
# The README quickstart on the bundled telecom churn data (5,000 customers, 19 features).
# Runs in a scratch project folder so the repository stays clean.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
flywheel="${FLYWHEEL:-$repo/.venv/bin/flywheel}"
work="${1:-$repo/.demo/churn}"

rm -rf "$work" && mkdir -p "$work" && cp "$here/mlc_churn.parquet" "$work/" && cd "$work"
echo "== flywheel init: infer the task and a schema from the data"
"$flywheel" init mlc_churn.parquet --target churn

echo; echo "== flywheel validate: the data passes its own schema"
"$flywheel" validate

echo; echo "== flywheel validate on a corrupted copy (nulls, unseen categories, bad ranges, a dropped column)"
"$repo/.venv/bin/python" - <<'PY'
import numpy as np, pandas as pd
df = pd.read_parquet("mlc_churn.parquet")
df.loc[df.index[:600], "total_day_minutes"] = np.nan
df.loc[df.index[:500], "state"] = "XX"
df.loc[df.index[:20], "account_length"] = 9999
df.drop(columns=["voice_mail_plan"]).to_csv("corrupted.csv", index=False)
PY
if "$flywheel" validate corrupted.csv; then
  echo "expected the corrupted copy to fail validation" >&2; exit 1
else
  echo "(exit code $?: the gate refuses the corrupted copy, as it should)"
fi

echo; echo "== flywheel profile: the reference profile later stages compare production data against"
"$flywheel" profile -o profile.json
echo; echo "== flywheel train: Optuna search with cross-validation, holdout evaluation, MLflow registry"
"$flywheel" train --timeout 30 --trials 25

echo; echo "== flywheel models: registered versions"
"$flywheel" models

echo; echo "Quickstart done; the project is in $work"
echo "Browse runs and versions: $repo/.venv/bin/mlflow ui --backend-store-uri sqlite:///$work/.flywheel/mlflow.db"
