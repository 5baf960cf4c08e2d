"""The ``training.ensemble:`` setting: greedy ensemble selection over the search's trials."""

from __future__ import annotations

from pydantic import Field

from flywheel.core._section import Section as _Section

__all__ = ["EnsembleSpec"]


class EnsembleSpec(_Section):
    size: int = Field(1, ge=1, le=50, strict=True)
    """Most distinct members (trials) of the ensemble; 1 keeps the single best trial."""
    candidates: int = Field(20, ge=2, le=200, strict=True)
    """Trials the selection chooses from: the best this many by CV score, plus the best of
    each learner; their out-of-fold predictions are kept (float32) for the selection."""
    refit_seconds: float | None = Field(None, gt=0)
    """Most seconds the members' refit on all rows may take, as estimated from their trials'
    fits (``select_ensemble``): a trial that would take the ensemble past it is not added.
    None: no limit. With ``search.timeout_seconds`` it bounds the whole fit: search, then
    refit."""
    rounds: int = Field(25, ge=1, le=500, strict=True)
    """Greedy selection steps (with replacement); a member's weight is its share of the steps
    of the best prefix."""
