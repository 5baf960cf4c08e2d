"""One drift computation in a fresh process, for bench/drift_vs_evidently.py (not a benchmark
on its own): read the two Parquet files, then time the computation and measure how much the
process's peak resident memory grows during it. Prints one JSON line.

    python bench/_drift_child.py flywheel|evidently REFERENCE.parquet CURRENT.parquet
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _reset_peak() -> None:
    import ctypes
    import gc

    gc.collect()
    try:  # return freed heap to the OS, so reused memory counts as growth, not as old RSS
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    try:
        import pyarrow

        pyarrow.default_memory_pool().release_unused()
    except ImportError:
        pass
    try:  # Linux: writing 5 resets the peak RSS (VmHWM) to the current RSS
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def run_flywheel(ref, cur, columns):  # type: ignore[no-untyped-def]
    from flywheel.core.spec import DriftSpec  # imported (and so loaded) before the clock starts
    from flywheel.monitoring import build_reference, detect_drift

    kinds = {c: "numeric" if ref[c].dtype.kind in "fi" else "categorical" for c in columns}
    started = time.perf_counter()
    reference = build_reference(ref, kinds, sample_columns=[])
    built = time.perf_counter()
    report = detect_drift(reference, cur, DriftSpec(multivariate=False))
    done = time.perf_counter()
    verdicts = {c.column: {"method": c.method, "score": c.score, "drifted": c.drifted}
                for c in report.columns}
    return verdicts, {"reference_s": built - started, "compare_s": done - built}


_EVIDENTLY_METHODS = {"Wasserstein distance (normed)": "wasserstein", "K-S p_value": "ks",
                      "Jensen-Shannon distance": "jensenshannon", "chi-square p_value": "chi2",
                      "Z-test p_value": "z", "PSI": "psi"}


def run_evidently(ref, cur, columns):  # type: ignore[no-untyped-def]
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    numeric = [c for c in columns if ref[c].dtype.kind in "fi"]
    definition = DataDefinition(numerical_columns=numeric,
                                categorical_columns=[c for c in columns if c not in numeric])
    snapshot = Report([DataDriftPreset()]).run(
        Dataset.from_pandas(cur, data_definition=definition),
        Dataset.from_pandas(ref, data_definition=definition))
    verdicts = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if not config.get("type", "").endswith("ValueDrift"):
            continue
        method = _EVIDENTLY_METHODS.get(config["method"], config["method"])
        value, threshold = float(metric["value"]), float(config["threshold"])
        test = "p_value" in config["method"]
        verdicts[config["column"]] = {"method": method, "score": value,
                                      "drifted": value < threshold if test else value >= threshold}
    return verdicts, {}


if __name__ == "__main__":
    import pandas as pd

    engine, ref_path, cur_path = sys.argv[1:4]
    ref, cur = pd.read_parquet(ref_path), pd.read_parquet(cur_path)
    if engine == "flywheel":  # load the libraries first: time and memory of the work only
        import flywheel.monitoring  # noqa: F401
    else:
        import evidently.presets  # noqa: F401
    columns = list(ref.columns)
    _reset_peak()
    before = _status("VmRSS")
    started = time.perf_counter()
    verdicts, parts = (run_flywheel if engine == "flywheel" else run_evidently)(ref, cur, columns)
    seconds = time.perf_counter() - started
    peak = _status("VmHWM")
    print(json.dumps({"engine": engine, "seconds": seconds, "peak_mb": (peak - before) / 2**20,
                      "parts": parts, "verdicts": verdicts}))
