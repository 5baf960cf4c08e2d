"""The domain classifier separates July from January-February, not two halves of one period."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from flywheel.demo import FEATURES
from flywheel.demo._flights import WEATHER
from flywheel.monitoring import domain_classifier


def test_july_is_told_apart_from_january_february_by_weather_columns(
        jan_feb: pd.DataFrame, july: pd.DataFrame) -> None:
    result = domain_classifier(jan_feb[FEATURES], july[FEATURES], rows=2000, threshold=0.7)
    assert result.drifted and result.roc_auc > 0.95
    assert result.top_columns[0][0] in WEATHER
    assert (result.reference_rows, result.current_rows) == (2000, 2000)


def test_two_random_halves_of_one_period_are_indistinguishable(jan_feb: pd.DataFrame) -> None:
    half = np.random.default_rng(0).permutation(len(jan_feb)) < len(jan_feb) // 2
    result = domain_classifier(jan_feb[half][FEATURES], jan_feb[~half][FEATURES], rows=2000,
                               threshold=0.7)
    assert not result.drifted and abs(result.roc_auc - 0.5) < 0.05


def test_frames_without_shared_columns_or_rows_are_refused() -> None:
    with pytest.raises(ValueError, match="share no columns"):
        domain_classifier(pd.DataFrame({"a": [1.0]}), pd.DataFrame({"b": [1.0]}), rows=10,
                          threshold=0.7)
    with pytest.raises(ValueError, match="too few rows"):
        domain_classifier(pd.DataFrame({"a": [1.0, 2.0]}), pd.DataFrame({"a": [1.0, 2.0]}),
                          rows=10, threshold=0.7)
