from __future__ import annotations

import importlib

import pytest

PACKAGES = ["flywheel.core", "flywheel.data", "flywheel.demo", "flywheel.deploy",
            "flywheel.evaluation",
            "flywheel.features", "flywheel.monitoring", "flywheel.pipelines", "flywheel.predlog",
            "flywheel.registry", "flywheel.rollout", "flywheel.serving", "flywheel.stream",
            "flywheel.testing", "flywheel.training"]


@pytest.mark.parametrize("package", PACKAGES)
def test_exports_are_exactly_the_public_names(package: str) -> None:
    module = importlib.import_module(package)
    public = {n for n in vars(module) if not n.startswith("_")}
    submodules = {n for n in public if hasattr(getattr(module, n), "__path__")
                  or type(getattr(module, n)).__name__ == "module"}
    assert sorted(module.__all__) == sorted(public - submodules - {"annotations"})
