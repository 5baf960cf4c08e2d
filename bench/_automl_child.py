"""One AutoML system on one split, in its own virtual environment (bench/automl.py runs it).

    python _automl_child.py SYSTEM FOLDER BUDGET

FOLDER holds ``train.parquet`` (features and the encoded target ``__y__``: 0/1 for a binary
task, the value for a regression) and ``test.parquet`` (features only) and ``task.json``
(``{"task": "binary" | "regression", "seed": 0}``). Writes ``FOLDER/SYSTEM.npy`` (the
positive class's probability or the predicted value, one per test row) and prints one JSON line:
wall-clock seconds of the fit and what the system chose. Imports only the system itself, numpy
and pandas: flywheel is not installed here.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

TARGET = "__y__"


def cores() -> int:
    """The CPUs this process may run on (``taskset`` narrows them), as flywheel counts them."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def flaml(train: pd.DataFrame, test: pd.DataFrame, task: str, budget: float, seed: int,
          folder: Path) -> tuple[np.ndarray, dict[str, object]]:
    from flaml import AutoML

    x, y = train.drop(columns=[TARGET]), train[TARGET]
    for frame in (x, test):  # FLAML's learners take text columns as pandas categories
        for column in frame.columns:
            if not pd.api.types.is_numeric_dtype(frame[column]):
                frame[column] = frame[column].astype("category")
    automl = AutoML()
    automl.fit(x, y, task="regression" if task == "regression" else "classification",
               metric="rmse" if task == "regression" else "roc_auc", time_budget=budget,
               seed=seed, verbose=0, n_jobs=cores(),
               log_file_name=str(folder / "flaml.log"))
    if task == "regression":
        prediction = np.asarray(automl.predict(test), dtype=float)
    else:
        prediction = np.asarray(automl.predict_proba(test), dtype=float)[:, 1]
    return prediction, {"model": str(automl.best_estimator),
                        "configs": len(automl.config_history)}


# Neural networks are left out (the benchmark compares tree ensembles at a CPU budget); torch
# is not installed in this environment, and these keys say so explicitly rather than by a
# warning per missing model.
NEURAL = ["NN_TORCH", "FASTAI", "TABM", "REALMLP", "MITRA", "TABPFNV2", "TABICL"]


def autogluon(train: pd.DataFrame, test: pd.DataFrame, task: str, budget: float, seed: int,
              folder: Path) -> tuple[np.ndarray, dict[str, object]]:
    from autogluon.tabular import TabularPredictor

    predictor = TabularPredictor(
        label=TARGET, problem_type=task,
        eval_metric="root_mean_squared_error" if task == "regression" else "roc_auc",
        path=str(folder / "autogluon"), verbosity=0)
    predictor.fit(train, time_limit=budget, presets="best_quality", num_cpus=cores(),
                  excluded_model_types=NEURAL)
    if task == "regression":
        prediction = np.asarray(predictor.predict(test), dtype=float)
    else:
        prediction = np.asarray(predictor.predict_proba(test)[1], dtype=float)
    board = predictor.leaderboard(silent=True)
    return prediction, {"model": str(predictor.model_best), "models": int(len(board))}


SYSTEMS = {"flaml": flaml, "autogluon": autogluon}


def main() -> None:
    system, folder, budget = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
    settings = json.loads((folder / "task.json").read_text())
    train = pd.read_parquet(folder / "train.parquet")
    test = pd.read_parquet(folder / "test.parquet")
    started = time.perf_counter()
    prediction, chose = SYSTEMS[system](train, test, settings["task"], budget,
                                        settings["seed"], folder)
    wall = time.perf_counter() - started
    np.save(folder / f"{system}.npy", prediction)
    print(json.dumps({"wall": wall, **chose}), flush=True)


if __name__ == "__main__":
    main()
