"""Gathering a join's feature columns in the spine's order: for each spine row, the row of
each view it takes (-1: none, a null).

Profiling the 10 M-row join showed Arrow's ``take`` spending its time faulting in the pages
of each fresh output column, not on the random reads. So a column of fixed-width numbers,
dates or times without nulls is gathered by NumPy into buffers that are reused: two sets,
one being filled while the writer thread encodes the other. Other columns (text, booleans,
decimals, nested, any with nulls) are taken by Arrow as before.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pyarrow as pa

__all__ = ["FeatureGather"]

SLOTS = 2
"""Buffer sets: the one being filled and the one the writer is encoding."""


@dataclasses.dataclass
class FeatureGather:
    """Per view, the number of the view row each spine row takes (-1: none), in spine order,
    and the view's features ordered by those numbers."""

    rows: int
    index: list[npt.NDArray[np.int64]]
    features: list[pa.Table]
    _values: dict[tuple[int, int], npt.NDArray[np.generic]] = dataclasses.field(
        default_factory=dict, init=False, repr=False)
    _buffers: dict[tuple[int, int, int], npt.NDArray[np.generic]] = dataclasses.field(
        default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        for v, table in enumerate(self.features):
            for c, column in enumerate(table.columns):
                values = _fixed_width_values(column)
                if values is not None:
                    self._values[v, c] = values

    def matched(self, view: int) -> int:
        """Spine rows that take a row of view number ``view``."""
        return int((self.index[view] >= 0).sum())

    def columns(self, first: int, last: int,
                slot: int | None = None) -> list[tuple[str, pa.Array | pa.ChunkedArray]]:
        """The feature columns of spine rows ``first`` to ``last`` (exclusive).

        Args:
            slot: Gather into reused buffer set ``slot % 2``; the columns of a slot stay
                valid until the next call with the same slot. None: fresh memory.
        """
        import numpy as np
        import pyarrow as pa

        n = last - first
        columns: list[tuple[str, pa.Array | pa.ChunkedArray]] = []
        for v, (index, table) in enumerate(zip(self.index, self.features, strict=True)):
            chosen = index[first:last]
            missing = chosen < 0
            nulls = int(missing.sum())
            validity = pa.py_buffer(np.packbits(~missing, bitorder="little")) if nulls else None
            for c, (name, column) in enumerate(zip(table.column_names, table.columns,
                                                   strict=True)):
                values = self._values.get((v, c))
                if values is None:
                    taken = column.take(pa.array(np.where(missing, 0, chosen), mask=missing))
                    columns.append((name, taken))
                    continue
                out = self._buffer(v, c, slot, n, values.dtype)
                np.take(values, chosen, out=out, mode="clip")  # -1 reads row 0, under a null
                columns.append((name, pa.Array.from_buffers(
                    column.type, n, [validity, pa.py_buffer(out)], null_count=nulls)))
        return columns

    def _buffer(self, view: int, column: int, slot: int | None, n: int,
                dtype: np.dtype[np.generic]) -> npt.NDArray[np.generic]:
        import numpy as np

        if slot is None:
            return np.empty(n, dtype=dtype)
        key = (view, column, slot % SLOTS)
        buffer = self._buffers.get(key)
        if buffer is None or len(buffer) < n:
            buffer = self._buffers[key] = np.empty(n, dtype=dtype)
        return buffer[:n]


def _fixed_width_values(column: pa.ChunkedArray) -> npt.NDArray[np.generic] | None:
    """The column's values as unsigned integers of its width (NumPy gathers bytes alike
    whatever they mean), or None when Arrow must take it: not a fixed-width number, date or
    time, or holding nulls, or empty."""
    import numpy as np
    import pyarrow as pa

    kind = column.type
    fixed = (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_date(kind)
             or pa.types.is_timestamp(kind) or pa.types.is_time(kind)
             or pa.types.is_duration(kind))
    if not fixed or column.null_count or len(column) == 0 or kind.bit_width not in (8, 16, 32,
                                                                                    64):
        return None
    array = column.combine_chunks()
    data = array.buffers()[1]
    if data is None:
        return None
    width = kind.bit_width // 8
    values: npt.NDArray[np.generic] = np.frombuffer(data, dtype=f"<u{width}",
                                                    count=array.offset + len(array))
    return values[array.offset:]
