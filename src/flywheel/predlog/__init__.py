"""The prediction log: every answered request, its inputs and outputs, and later its label.

Written by the prediction service (``PredictionLog``), read by monitoring, rollouts, retraining
and the delivery report (``read_predictions``, ``read_feedback``). Files live in
``.flywheel/predictions/``: JSON-lines spool files for the last second or so, and Arrow IPC
streams (``pred-*.arrows``, ``fb-*.arrows``) for the rest. This package imports only
pyarrow, pandas and orjson, so its converter process starts light.
"""

from __future__ import annotations

from flywheel.predlog._log import PredictionLog
from flywheel.predlog._read import read_feedback, read_predictions
from flywheel.predlog._rows import DEFAULT_ARM, INPUT_PREFIX

__all__ = ["DEFAULT_ARM", "INPUT_PREFIX", "PredictionLog", "read_feedback", "read_predictions"]
