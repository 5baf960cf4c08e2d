from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from flywheel.data import ReferenceProfile, fingerprint_frame, infer_schema, profile_frame


def test_profile_counts_are_exact(mixed: pd.DataFrame) -> None:
    mixed.loc[mixed.index[:7], "x"] = np.nan
    profile = profile_frame(mixed, infer_schema(mixed, "label"))
    x = profile.columns["x"]
    assert profile.rows == len(mixed)
    assert x.nulls == 7 and x.count + x.nulls == len(mixed) and sum(x.counts) == x.count
    assert len(x.counts) == len(x.edges or []) + 1
    colour = profile.columns["colour"]
    assert dict(zip(colour.categories or [], colour.counts, strict=False)) == \
        mixed["colour"].value_counts().to_dict()


def test_binning_the_reference_again_reproduces_its_counts(mixed: pd.DataFrame) -> None:
    profile = profile_frame(mixed, infer_schema(mixed, "label"))
    again = profile.bin_counts(mixed)
    for name, col in profile.columns.items():
        assert again[name].tolist() == col.counts, name


def test_unseen_categories_are_counted_as_other(mixed: pd.DataFrame) -> None:
    profile = profile_frame(mixed)
    counts = profile.bin_counts(mixed.assign(colour="purple"))["colour"]
    assert counts[-1] == len(mixed) and counts[:-1].sum() == 0


def test_profile_round_trips_through_json(tmp_path: Path, mixed: pd.DataFrame) -> None:
    profile = profile_frame(mixed)
    profile.save(tmp_path / "p.json")
    assert ReferenceProfile.load(tmp_path / "p.json") == profile


def test_fingerprint_is_stable_for_the_same_content_and_changes_with_it(
    tmp_path: Path, mixed: pd.DataFrame
) -> None:
    mixed.to_parquet(tmp_path / "d.parquet")
    again = pd.read_parquet(tmp_path / "d.parquet")
    assert fingerprint_frame(mixed) == fingerprint_frame(again)
    changed = mixed.copy()
    changed.loc[changed.index[3], "x"] += 1e-9
    assert fingerprint_frame(changed) != fingerprint_frame(mixed)
    assert fingerprint_frame(mixed.iloc[::-1]) != fingerprint_frame(mixed)
