"""A module imported on first use (after Optuna's ``_LazyImport``).

MLflow, Optuna and LightGBM take seconds to import, and ``flywheel validate`` and
``flywheel init`` must not pay for them. The facade names the slow modules once, here, instead
of importing them inside each method::

    _train = LazyModule("flywheel.pipelines.train")
    _train.train_project(...)  # the import happens on this first attribute access
"""

from __future__ import annotations

import importlib
import types
from typing import Any

__all__ = ["LazyModule"]


class LazyModule(types.ModuleType):
    """Stands in for the module ``name`` and imports it when an attribute is first read."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._name = name

    def __getattr__(self, item: str) -> Any:
        # Looked up on the real module every time (sys.modules makes that cheap), so a name
        # replaced there later is the one used here too.
        return getattr(importlib.import_module(self._name), item)
