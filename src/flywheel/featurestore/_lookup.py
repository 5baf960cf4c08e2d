"""Serving's side: fill request records with a model's online features, in process, batched.

A request carries each view's entity keys (and any request-time features); the joiner reads
every record's entities of one entity-key set in one online-store call, writes the features
into the records (a value the client sent is kept), and drops the keys the model does not
take. The read lays the packed values of all the group's views end to end, so one
``struct.unpack`` and one ``dict.update`` fill a record whatever the number of views; a record
that needs more (a view missing, a value sent by the client, a value stored as JSON) takes the
per-view path.

An entity the store does not hold gets None for the view's features, which the model's pipeline
imputes as it did in training (a training row without a match got None too); such
misses are counted per view. If the store does not answer, every record misses, the count
says so and the request is still answered.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import operator
import struct
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from flywheel.core.errors import FeatureStoreError
from flywheel.featurestore._codec import HAS_NULL, PACKED, ValueCodec
from flywheel.featurestore._online import OnlineStore

log = logging.getLogger("flywheel.featurestore")

__all__ = ["FeatureJoiner", "JoinGroup"]

_SEP = "\x1f"


@dataclasses.dataclass(frozen=True)
class JoinGroup:
    """The views a model reads that share one entity-key set."""

    table: str
    entities: tuple[str, ...]
    key_kinds: tuple[str, ...]
    """integer or text, per entity key."""
    views: tuple[tuple[str, str, tuple[str, ...]], ...]
    """(view name, online column, the features stored there in order) per view."""
    wanted: frozenset[str] = frozenset()
    """The features the model takes from these views (empty: all of them)."""
    codecs: tuple[ValueCodec, ...] = ()
    """How each view's values are stored, per view (empty: JSON arrays for all)."""

    @functools.cached_property
    def value_codecs(self) -> tuple[ValueCodec, ...]:
        """The codec of each view, in view order."""
        return self.codecs or tuple(ValueCodec(()) for _ in self.views)

    @functools.cached_property
    def packed_columns(self) -> tuple[str, ...]:
        """The online columns of the packed views, in view order."""
        return tuple(v[1] for v, codec in zip(self.views, self.value_codecs, strict=True)
                     if codec.packed)

    @functools.cached_property
    def array_columns(self) -> tuple[str, ...]:
        """The online columns of the views stored as JSON arrays, in view order."""
        return tuple(v[1] for v, codec in zip(self.views, self.value_codecs, strict=True)
                     if not codec.packed)

    @functools.cached_property
    def _joined(self) -> tuple[Callable[[bytes], tuple[Any, ...]], int,
                               Callable[[bytes], tuple[int, ...]] | None, tuple[int, ...]]:
        """The unpacking of the packed views' values laid end to end, its size, and what
        picks each value's leading byte, with the bytes it gives when no float is null."""
        layout = struct.Struct("<" + "".join(c.format for c in self.value_codecs if c.packed))
        starts, at = [], 0
        for codec in self.value_codecs:
            if codec.packed:
                starts.append(at)
                at += struct.calcsize("<" + codec.format)
        # A tuple whatever the number of packed views (itemgetter of one index gives the item).
        picks = starts * 2 if len(starts) == 1 else starts
        marks = operator.itemgetter(*picks) if picks else None
        return layout.unpack, layout.size, marks, (PACKED,) * len(picks)

    @functools.cached_property
    def _order(self) -> Callable[[list[Any]], tuple[Any, ...]] | None:
        """What puts a joined read's values (the packed views', then the others') in view
        order; None when they are in view order already."""
        pairs = list(zip(self.views, self.value_codecs, strict=True))
        read: list[str] = [f for packed in (True, False) for (_, _, features), codec in pairs
                           if codec.packed is packed for f in features]
        if tuple(read) == self.stored:
            return None
        return operator.itemgetter(*(read.index(f) for f in self.stored))

    def decode_joined(self, laid: bytes, array: bytes | str) -> Sequence[Any] | None:
        """The features of one joined read, in ``stored`` order; None if a packed view's value
        is absent or not packed (JSON written before packing, or a row packing cannot hold),
        for the per-view path to sort out."""
        unpack, size, marks, plain = self._joined
        if len(laid) != size:
            return None
        values: Sequence[Any]
        if marks is not None and marks(laid) != plain:
            flags = marks(laid)
            if min(flags) < PACKED or max(flags) > HAS_NULL:
                return None  # no value, or a JSON array's "[", where a packed value starts
            values = [None if v != v else v for v in unpack(laid)]
        else:
            values = unpack(laid)
        if self.array_columns:
            values = [*values, *orjson.loads(array)]
            if len(values) != len(self.stored):
                return None
            if self._order is not None:
                values = self._order(values)
        return values

    @functools.cached_property
    def stored(self) -> tuple[str, ...]:
        """Every feature stored in the group's views, in view order."""
        return tuple(f for _, _, features in self.views for f in features)

    @functools.cached_property
    def columns(self) -> list[str]:
        """The online column of each view, in view order."""
        return [column for _, column, _ in self.views]

    @functools.cached_property
    def all_wanted(self) -> bool:
        """Whether the model takes every stored feature (the fast fill applies)."""
        return set(self.stored) <= self.features

    @functools.cached_property
    def features(self) -> frozenset[str]:
        """The features the joiner fills from the group's views."""
        stored = frozenset(f for _, _, features in self.views for f in features)
        return stored & self.wanted if self.wanted else stored


class FeatureJoiner:
    """Fills records in place with online features; see the module docstring.

    Args:
        store: The online store.
        groups: What to read, per entity-key set.
        model_features: The model's inputs (entity keys outside them are dropped).
    """

    def __init__(self, store: OnlineStore, groups: Sequence[JoinGroup],
                 model_features: Sequence[str]) -> None:
        self.store = store
        self.groups = tuple(groups)
        inputs = set(model_features)
        self.drop = tuple(sorted({k for g in self.groups for k in g.entities} - inputs))
        self.misses: dict[str, int] = {v[0]: 0 for g in self.groups for v in g.views}
        """Records served without the view's values, per view, since start."""
        self.lookups = 0
        self.unavailable = 0
        """Reads that failed because the store did not answer."""
        self._lock = threading.Lock()
        self._warned = 0.0

    @property
    def views(self) -> list[str]:
        return list(self.misses)

    def __call__(self, rows: list[Any]) -> list[dict[str, Any]]:
        """Join ``rows`` in place; the problems (bad or missing entity keys), if any."""
        problems: list[dict[str, Any]] = []
        for group in self.groups:
            keys, targets = self._keys(group, rows, problems)
            if problems or not keys:
                continue
            try:
                if group.all_wanted:
                    keys, targets = self._fill_joined(group, keys, targets)
                    if not keys:
                        continue  # every record filled from the joined read
                found = self.store.read(group.table, group.columns, keys)
            except FeatureStoreError as exc:
                found = [[None] * len(group.columns) for _ in keys]
                self._unavailable(exc)
            self._fill(group, targets, found)
        if not problems and self.drop:
            for row in rows:
                for name in self.drop:
                    row.pop(name, None)
        return problems

    def _keys(self, group: JoinGroup, rows: list[Any],
              problems: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
        keys: list[str] = []
        targets: list[dict[str, Any]] = []
        single = len(group.entities) == 1
        provided = group.features
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                continue  # the input checker reports it
            if provided <= row.keys():
                continue  # the client sent the values itself
            parts = []
            for name, kind in zip(group.entities, group.key_kinds, strict=True):
                value = row.get(name)
                text = _key_text(value, kind)
                if text is None:
                    problems.append({"loc": ["records", i, name], "msg": (
                        f"missing entity key of view(s) {', '.join(v[0] for v in group.views)}"
                        if value is None else f"entity key must be {kind}, got {value!r}")})
                    break
                parts.append(text)
            else:
                keys.append(parts[0] if single else _SEP.join(parts))
                targets.append(row)
        return keys, targets

    def _fill_joined(self, group: JoinGroup, keys: list[str], targets: list[dict[str, Any]],
                     ) -> tuple[list[str], list[dict[str, Any]]]:
        """Fill the records whose entity every view holds from one read of all views' values
        laid end to end (one decode, about the same cost for 1 view or 10); the keys and
        records left for the per-view path (a view missing, a value sent by the client, a
        value stored as JSON in a packed view).

        Raises:
            FeatureStoreError: If the store does not answer.
        """
        names, wanted, decode = group.stored, group.features, group.decode_joined
        left_keys: list[str] = []
        left: list[dict[str, Any]] = []
        for key, row, laid in zip(keys, targets, self.store.read_joined(
                group.table, group.packed_columns, group.array_columns, keys), strict=True):
            values = None if laid is None or not row.keys().isdisjoint(wanted) else \
                decode(*laid)
            if values is None:
                left_keys.append(key)
                left.append(row)
                continue
            row.update(zip(names, values, strict=False))  # as many: decode_joined checks
        if len(left) < len(targets):
            with self._lock:
                self.lookups += len(targets) - len(left)
        return left_keys, left

    def _fill(self, group: JoinGroup, targets: list[dict[str, Any]],
              found: list[list[bytes | None]]) -> None:
        missed: dict[str, int] = {}
        wanted = group.features
        views = list(zip(group.views, group.value_codecs, strict=True))
        for row, blobs in zip(targets, found, strict=True):
            for ((view, _, features), codec), blob in zip(views, blobs, strict=True):
                if blob is None:
                    missed[view] = missed.get(view, 0) + 1
                    for feature in features:
                        if feature in wanted:
                            row.setdefault(feature, None)
                    continue
                for feature, value in zip(features, codec.decode(blob), strict=True):
                    if feature in wanted:
                        row.setdefault(feature, value)
        with self._lock:
            self.lookups += len(targets)
            for view, count in missed.items():
                self.misses[view] += count

    def _unavailable(self, exc: FeatureStoreError) -> None:
        with self._lock:
            self.unavailable += 1
            now = time.monotonic()
            warn = now - self._warned > 10.0
            if warn:
                self._warned = now
        if warn:
            log.warning("%s; serving with imputed features (misses are counted)", exc)

    def warm(self) -> None:
        """One read per entity-key set (not counted), so the first request finds the store's
        connection and statements ready; a store that does not answer is logged."""
        for group in self.groups:
            try:
                self.store.read(group.table, group.columns, ["\x00warm-up"])
                if group.all_wanted:
                    self.store.read_joined(group.table, group.packed_columns,
                                           group.array_columns, ["\x00warm-up"])
            except FeatureStoreError as exc:
                self._unavailable(exc)

    def stats(self) -> dict[str, Any]:
        """Lookups, misses per view and failed reads since start."""
        with self._lock:
            return {"lookups": self.lookups, "misses": dict(self.misses),
                    "unavailable": self.unavailable}


def _key_text(value: Any, kind: str) -> str | None:
    if kind == "integer":
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return None
    if isinstance(value, str):
        return value
    return None
