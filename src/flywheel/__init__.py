"""flywheel: a production ML system for tabular prediction problems.

The Python API comes first; the ``flywheel`` command is a thin layer over it::

    from flywheel import Project
    project = Project.load("flywheel.yaml")
    report = project.validate()
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flywheel._version import __version__

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
