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

from flywheel._version import __version__  # noqa: E402 - after the OpenMP setting above
from flywheel.pipelines import Project  # noqa: E402

__all__ = ["Project", "__version__"]
