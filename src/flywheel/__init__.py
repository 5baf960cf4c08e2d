"""flywheel: a production ML system for tabular prediction problems.

The Python API comes first; the ``flywheel`` command is a thin layer over it::

    from flywheel import Project
    project = Project.load("flywheel.yaml")
    report = project.validate()
"""

from __future__ import annotations

from flywheel._version import __version__
from flywheel.pipelines import Project

__all__ = ["Project", "__version__"]
