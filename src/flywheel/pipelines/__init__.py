"""Composed flows: the project facade, training and the retraining loop."""

from __future__ import annotations

from flywheel.pipelines.project import Project

__all__ = ["Project"]
