"""Matplotlib figures for the HTML reports (model card, monitoring, delivery), without pyplot's
global state, as PNG bytes to embed."""

from __future__ import annotations

import io
from typing import Any

__all__ = ["new_figure", "png_bytes"]


def new_figure(width: float, height: float, *, dpi: int = 100) -> Any:
    """A figure with its own Agg canvas; matplotlib is imported on first use (it is slow)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415 - slow import
    from matplotlib.figure import Figure  # noqa: PLC0415

    fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
