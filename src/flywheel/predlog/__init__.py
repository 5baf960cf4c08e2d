"""The prediction log: every answered request, its inputs and outputs, and later its label.

Written by the prediction service (``PredictionLog``), read by monitoring, rollouts, retraining
and the delivery report (``read_predictions``, ``read_feedback``), kept small by
``maintain_log``. The log lives at ``monitoring.log_location`` (a folder, or an object store
through pyarrow's file systems) as Parquet files partitioned by hour, hive-style
(``kind=predictions/date=2026-12-01/hour=13/...``; see ``_dataset.py``), plus a local spool
of JSON-lines files for the last second or so. This package imports only pyarrow, pandas and
orjson, so its converter process starts light.
"""

from __future__ import annotations

from flywheel.predlog._location import SPOOL_DIR, is_local, open_location, resolve_location
from flywheel.predlog._log import PredictionLog
from flywheel.predlog._read import count_rows, read_feedback, read_predictions
from flywheel.predlog._rows import DEFAULT_ARM, INPUT_PREFIX
from flywheel.predlog._upkeep import LogUpkeep, maintain_log

__all__ = [
    "DEFAULT_ARM",
    "INPUT_PREFIX",
    "LogUpkeep",
    "SPOOL_DIR",
    "PredictionLog",
    "count_rows",
    "is_local",
    "maintain_log",
    "open_location",
    "read_feedback",
    "read_predictions",
    "resolve_location",
]
