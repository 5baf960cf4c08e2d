"""flywheel: a production ML system for tabular prediction problems.

The Python API comes first; the ``flywheel`` command is a thin layer over it::

    from flywheel import Project
    project = Project.load("flywheel.yaml")
    report = project.validate()
"""

from __future__ import annotations

import os

# OpenMP threads (LightGBM, scikit-learn) spin while they wait for each other by default. When
# the cores are shared (a server, a load generator, another job), a spinning team can make one
# model fit a hundred times slower; sleeping waits cost a few percent at most. It must be set
# before the OpenMP runtime loads; a value the user exported wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from typing import TYPE_CHECKING, Any  # noqa: E402 - after the OpenMP setting above

from flywheel._version import __version__  # noqa: E402

if TYPE_CHECKING:
    from flywheel.pipelines import Project

__all__ = ["Project", "__version__"]


def __getattr__(name: str) -> Any:
    # Imported on first use: a light subpackage (the prediction log's converter process) must
    # not pay for MLflow and scikit-learn.
    if name == "Project":
        from flywheel.pipelines import Project

        return Project
    raise AttributeError(f"module 'flywheel' has no attribute {name!r}")
