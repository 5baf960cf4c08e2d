"""Fixtures of the prediction-log tests."""

from __future__ import annotations

import pytest

from flywheel.predlog import _segment


@pytest.fixture
def one_file_per_flush(monkeypatch: pytest.MonkeyPatch) -> None:
    """Segments close after every round: each flush becomes its own file, as before segments
    (for tests about how readers and compaction treat many small files)."""
    monkeypatch.setattr(_segment, "SEGMENT_SECONDS", 0.0)
