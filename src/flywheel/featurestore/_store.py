"""``FeatureStore``: a project's views, training sets, materialization and online reads."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from flywheel.core.errors import ConfigError, FeatureStoreError
from flywheel.core.spec import ProjectSpec
from flywheel.core.workspace import Workspace
from flywheel.featurestore._catalog import FeatureCatalog, ViewVersion
from flywheel.featurestore._codec import ValueCodec
from flywheel.featurestore._lookup import FeatureJoiner, JoinGroup
from flywheel.featurestore._materialize import (
    MaterializeResult,
    codec_of,
    column_of,
    materialize_view,
    table_of,
)
from flywheel.featurestore._online import OnlineStore, create_online_store
from flywheel.featurestore._pit import JoinReport, join_frame

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["PINS_TAG", "FeatureStore", "join_spine", "pins_tag", "read_pins"]

PINS_TAG = "flywheel.feature_views"
"""The model-version tag holding the view versions it trained with (JSON)."""


class FeatureStore:
    """The feature store of one project.

    Args:
        spec: The project spec (``feature_store`` and ``data.spine``).
        workspace: The project's ``.flywheel/``.
    """

    def __init__(self, spec: ProjectSpec, workspace: Workspace) -> None:
        self.spec = spec
        self.workspace = workspace
        self.catalog = FeatureCatalog(spec, workspace)
        self._online: OnlineStore | None = None

    @property
    def online(self) -> OnlineStore:
        """The online store (opened on first use)."""
        if self._online is None:
            self._online = create_online_store(self.spec, self.workspace)
        return self._online

    def close(self) -> None:
        self.catalog.close()
        if self._online is not None:
            self._online.close()
            self._online = None

    # Training ---------------------------------------------------------------------------

    def spine_views(self) -> list[str]:
        """The views ``data.spine`` joins, in order.

        Raises:
            ConfigError: If there is no spine, or it names an undefined view.
        """
        spine = self.spec.data.spine
        if spine is None:
            raise ConfigError("data.spine is not set, so there is nothing to join the feature "
                              "views to; set data.spine.event_time (and views).")
        names = spine.views if spine.views is not None else self.catalog.names()
        for name in names:
            self.catalog.view_spec(name)
        if not names:
            raise ConfigError("data.spine joins no feature views: define feature_store.views "
                              "or list some in data.spine.views.")
        return names

    def feature_columns(self) -> list[str]:
        """Every feature the spine's views add."""
        return [f for name in self.spine_views() for f in self.catalog.view_spec(name).features]

    def training_set(self, spine: pd.DataFrame) -> tuple[pd.DataFrame, JoinReport,
                                                          dict[str, Any]]:
        """``spine`` with the views joined as of each row's event time, the join's counts, and
        the view versions used (what the model version pins).

        Raises:
            FeatureStoreError: If a view's source or the spine is unusable, or nothing matches.
        """
        spine_spec = self.spec.data.spine
        if spine_spec is None:
            raise ConfigError("data.spine is not set; see feature_store in the README.")
        views = [self.catalog.resolve(name) for name in self.spine_views()]
        frame, report = join_frame(self.catalog.con, spine, spine_spec.event_time, views)
        return frame, report, {v.name: v.pin() for v in views}

    def pins(self) -> dict[str, Any]:
        """The current versions of the spine's views, as a model records them."""
        return {name: self.catalog.resolve(name).pin() for name in self.spine_views()}

    # Online ------------------------------------------------------------------------------

    def materialize(self, names: Sequence[str] | None = None, *,
                    start: dt.datetime | None = None, end: dt.datetime | None = None,
                    on_chunk: Callable[[str, int, int], None] | None = None,
                    locked: bool = False) -> list[MaterializeResult]:
        """Write the latest values per entity of ``names`` (default all views) in
        [start, end) to the online store; see ``materialize_view``.

        Args:
            locked: The caller holds `materialize_lock` already (a replay that materializes
                every simulated hour takes it once).
        """
        results = []
        with contextlib.nullcontext() if locked else self.materialize_lock():
            for name in names or self.catalog.names():
                view = self.catalog.resolve(name)

                def report(chunk: int, total: int, name: str = name) -> None:
                    if on_chunk is not None:
                        on_chunk(name, chunk, total)

                results.append(materialize_view(
                    self.catalog.con, self.online, view, chunks=self.spec.feature_store.chunks,
                    start=start, end=end, on_chunk=report))
        return results

    def materialize_lock(self) -> contextlib.AbstractContextManager[None]:
        """The workspace lock one materialization at a time holds."""
        return self.workspace.lock("features-materialize",
                                   command="flywheel features materialize")

    def get(self, entities: Sequence[str], *,
            views: Sequence[str] | None = None) -> dict[str, dict[str, Any] | None]:
        """The online values of ``entities`` (their key values in order) per view (None:
        not in the store)."""
        out: dict[str, dict[str, Any] | None] = {}
        for name in views or self.catalog.names():
            view = self.catalog.resolve(name)
            spec = view.spec
            if len(entities) != len(spec.entities):
                raise ConfigError(f"view {name!r} is keyed by {spec.entities}; give "
                                  f"{len(spec.entities)} key value(s), got {list(entities)}.")
            key = "\x1f".join(entities)
            blob = self.online.read(table_of(spec.entities),
                                    [column_of(name, view.version)], [key])[0][0]
            out[name] = None if blob is None else dict(zip(
                spec.features, codec_of(view).decode(blob), strict=True))
        return out

    def joiner(self, pins: dict[str, Any], model_features: Sequence[str]) -> FeatureJoiner:
        """The lookup serving runs for a model that pinned ``pins``.

        Raises:
            FeatureStoreError: If a pinned view is gone or changed incompatibly (the reason
                names the view and what changed).
        """
        groups: dict[tuple[str, ...], list[tuple[str, str, tuple[str, ...]]]] = {}
        kinds: dict[tuple[str, ...], tuple[str, ...]] = {}
        codecs: dict[tuple[str, ...], list[ValueCodec]] = {}
        wanted: set[str] = set()
        for name, pin in pins.items():
            current = self._serving_version(name, pin)
            entities = tuple(current.spec.entities)
            kinds[entities] = tuple(current.key_kinds[k] for k in entities)
            groups.setdefault(entities, []).append(
                (name, column_of(name, current.version), tuple(current.spec.features)))
            codecs.setdefault(entities, []).append(codec_of(current))
            wanted.update(pin["features"])
        return FeatureJoiner(self.online, [
            JoinGroup(table=table_of(list(entities)), entities=entities,
                      key_kinds=kinds[entities], views=tuple(views), wanted=frozenset(wanted),
                      codecs=tuple(codecs[entities]))
            for entities, views in groups.items()], model_features)

    def _serving_version(self, name: str, pin: dict[str, Any]) -> ViewVersion:
        where = f"feature view {name!r} (version {pin.get('version')}, which the model " \
                "trained with)"
        if self.spec.feature_store.view(name) is None:
            raise FeatureStoreError(f"{where} is gone: feature_store.views no longer defines "
                                    "it. Define it again, or serve a model trained without it.")
        current = self.catalog.resolve(name)
        if current.digest == pin.get("digest"):
            return current
        problems = []
        if list(current.spec.entities) != list(pin.get("entities", [])):
            problems.append(f"its entity keys are {current.spec.entities}, not "
                            f"{pin.get('entities')}")
        elif current.key_kinds != pin.get("key_kinds", current.key_kinds):
            problems.append(f"its key types are {current.key_kinds}, not {pin.get('key_kinds')}")
        for feature, kind in pin.get("types", {}).items():
            if feature not in current.spec.features:
                problems.append(f"it no longer has feature {feature!r}")
            elif current.types.get(feature) != kind:
                problems.append(f"feature {feature!r} is {current.types.get(feature)}, not "
                                f"{kind}")
        if problems:
            raise FeatureStoreError(
                f"{where} changed incompatibly in version {current.version}: "
                + "; ".join(problems) + ". Retrain the model on the current view, or restore "
                "the view's definition.")
        return current


def join_spine(spec: ProjectSpec, workspace: Workspace, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (a spine) with ``data.spine``'s views joined as of each row's event time; a
    frame that holds every view feature already (a prediction log's rows) is returned as is.

    Raises:
        FeatureStoreError: If a view's source or the spine is unusable, or nothing matches.
    """
    store = FeatureStore(spec, workspace)
    try:
        if set(store.feature_columns()) <= set(frame.columns):
            return frame
        joined, _, _ = store.training_set(frame)
        return joined
    finally:
        store.close()


def pins_tag(spec: ProjectSpec, workspace: Workspace) -> dict[str, str]:
    """The model-version tag pinning the spine's view versions ({} without a spine)."""
    if spec.data.spine is None:
        return {}
    store = FeatureStore(spec, workspace)
    try:
        return {PINS_TAG: json.dumps(store.pins(), sort_keys=True)}
    finally:
        store.close()


def read_pins(tags: Mapping[str, str]) -> dict[str, Any] | None:
    """The view versions a model version pinned (its tags), if any."""
    text = tags.get(PINS_TAG)
    if not text:
        return None
    try:
        pins = json.loads(text)
    except ValueError as exc:
        raise FeatureStoreError(f"the model's {PINS_TAG} tag is not JSON ({exc}); retrain "
                                "it.") from exc
    return pins if isinstance(pins, dict) else None
