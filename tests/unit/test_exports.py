from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("package", ["flywheel.core", "flywheel.data", "flywheel.pipelines",
                                     "flywheel.monitoring", "flywheel.rollout",
                                     "flywheel.serving"])
def test_exports_are_exactly_the_public_names(package: str) -> None:
    module = importlib.import_module(package)
    public = {n for n in vars(module) if not n.startswith("_")}
    submodules = {n for n in public if hasattr(getattr(module, n), "__path__")
                  or type(getattr(module, n)).__name__ == "module"}
    assert sorted(module.__all__) == sorted(public - submodules - {"annotations"})
