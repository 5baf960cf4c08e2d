"""How a view version's features are stored as one online value.

A view whose features are all numbers or booleans is packed (a byte saying whether a float is
null, then each feature as a little-endian float64, int64 or bool; a null or non-finite float
is NaN and reads back None), so the values of every view of a lookup, laid end to end, decode
with one ``struct.unpack``. Any other view, and a row a packed view cannot hold exactly (a null
integer or boolean, an integer past int64), is a JSON array, which starts with ``[``; values
written as JSON arrays before packing existed read as they did.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any

import orjson

from flywheel.core.errors import FeatureStoreError

__all__ = ["HAS_NULL", "PACKED", "ValueCodec", "is_packed"]

PACKED, HAS_NULL = 1, 2
"""The leading byte of a packed value: without, or with a null float (NaN) among its values.
A JSON array starts with ``[`` (91); zero is no value (a slot of an entity record not
written)."""

_CODES = {"DOUBLE": "d", "FLOAT": "d", "REAL": "d", "BOOLEAN": "?",
          **dict.fromkeys(("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT",
                           "USMALLINT", "UINTEGER", "UBIGINT"), "q")}
"""DuckDB type -> struct code of the types a packed value holds (an integer past int64, which
HUGEINT and UBIGINT can hold, is written as JSON)."""


class ValueCodec:
    """How one view version's features are stored as one value (see the module docstring).

    Args:
        types: The DuckDB type of each feature, in the view's order.
    """

    def __init__(self, types: Sequence[str]) -> None:
        codes = [_CODES.get(kind.strip().upper(), "") for kind in types]
        self.packed = bool(codes) and all(codes)
        """Whether the view's values are packed (else JSON arrays)."""
        self.format = "x" + "".join(codes) if self.packed else ""
        """The struct format of a packed value (after ``<``); ``x`` skips its leading byte."""
        self._struct = struct.Struct("<" + self.format)
        self._pack = struct.Struct("<B" + self.format[1:]).pack
        self._floats = tuple(i for i, code in enumerate(codes) if code == "d")
        self._exact = tuple(i for i, code in enumerate(codes) if code in "q?")

    def encode(self, values: list[Any]) -> bytes:
        """``values`` (the features in order) as stored; consumes the list."""
        if self.packed:
            isfinite = math.isfinite
            nulls = False
            for i in self._floats:
                value = values[i]
                if value is None or not isfinite(value):
                    values[i] = math.nan  # JSON turned NaN and infinities into null too
                    nulls = True
            if all(values[i] is not None for i in self._exact):
                try:
                    return self._pack(HAS_NULL if nulls else PACKED, *values)
                except (struct.error, OverflowError):
                    pass
        return orjson.dumps(values)  # NaN is null in JSON

    def decode(self, value: bytes | str) -> list[Any]:
        """The features of a stored value, in order (a null float is None).

        Raises:
            FeatureStoreError: If ``value`` is neither JSON nor this view's packed layout.
        """
        if value[:1] in (b"[", "["):
            return list(orjson.loads(value))
        if not self.packed or not isinstance(value, bytes) or len(value) != self._struct.size \
                or not is_packed(value):
            raise FeatureStoreError(f"an online value of {len(value)} bytes does not match its "
                                    f"view's layout ({self._struct.size} bytes, packed); "
                                    "materialize the view again.")
        values = self._struct.unpack(value)
        return [None if v != v else v for v in values] if value[0] == HAS_NULL else list(values)


def is_packed(value: bytes | str) -> bool:
    """Whether a stored value is packed (else a JSON array)."""
    return isinstance(value, bytes) and value[:1] in (b"\x01", b"\x02")
