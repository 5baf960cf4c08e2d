"""The models a server holds, by alias, kept in step with the registry.

A background thread polls the registry's aliases. When one moves (promote, rollback), the new
version is loaded, checksum-verified, compiled and warmed up (``_warmup.py``) beside the old one,
then swapped in with one
reference assignment: requests already running finish on the version they started with, new
ones get the new version, none fails. If the registry is unreachable, the loaded models keep
serving and the thread tries again.

The same read brings the rollout state (model tag ``flywheel.rollout``): the versions a running
rollout routes to are loaded before the router sends them any traffic, and kept loaded until it
ends (the blue-green standby too, so switching back needs no load).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flywheel.core.errors import FeatureStoreError, FlywheelError, RolloutError
from flywheel.core.periodic import FULL_READ_SECONDS, PeriodicThread, StoreWatcher
from flywheel.core.spec import parse_config
from flywheel.core.yamlio import read_yaml_text
from flywheel.data import DataSchema
from flywheel.featurestore import FeatureJoiner, FeatureStore, read_pins
from flywheel.registry.base import Registry
from flywheel.rollout import STATE_TAG, RolloutState, parse_state
from flywheel.serving._inputs import InputChecker
from flywheel.serving._onnx import load_onnx_form
from flywheel.serving._predictor import LoadedModel, build_loaded_model
from flywheel.serving._warmup import WarmUp, warm_up

log = logging.getLogger("flywheel.serving")

__all__ = ["FULL_READ_SECONDS", "ModelStore", "ServedModel"]


class ServedModel:
    """A loaded version and the input checker for its schema."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.version = model.version
        self.checker = InputChecker(model.schema)
        columns = model.schema.columns
        self.log_layout = tuple((name, columns[name].kind in ("numeric", "integer"))
                                for name in model.features)
        self.features: FeatureJoiner | None = None
        """The online-feature lookup, for a version trained on feature views."""
        self.warmup: WarmUp | None = None
        """Set by ``ModelStore.load`` once the version has been warmed up."""

    def answer(self, records: list[dict[str, Any]]) -> Any:
        return self.model.answer(records)


class ModelStore:
    """Loaded versions by alias, reconciled with the registry.

    Args:
        registry: Where versions and aliases live.
        aliases: The aliases to serve; the first is the default.
        poll_interval: Seconds between registry checks.
        on_change: Called with (alias, version) after every swap.
        features: The project's feature store, for versions trained on feature views.
    """

    def __init__(self, registry: Registry, *, aliases: tuple[str, ...] = ("champion",
                 "challenger"), poll_interval: float = 2.0, allow_pickle: bool = False,
                 on_change: Callable[[str, str | None], None] | None = None,
                 runtime: str = "compiled",
                 features: FeatureStore | None = None) -> None:
        self.registry = registry
        self.runtime = runtime
        """``compiled`` or ``onnx`` (serving.runtime): what versions answer through."""
        self.features = features
        """Where versions trained on feature views look their features up (None: none)."""
        self.aliases = aliases
        self.poll_interval = poll_interval
        self.allow_pickle = allow_pickle
        self.on_change = on_change
        self.by_alias: dict[str, ServedModel] = {}
        self.by_version: dict[str, ServedModel] = {}
        self.pinned: dict[str, ServedModel] = {}
        """Versions a running rollout needs that no alias points at (bandit arms, the
        blue-green standby), kept loaded beside the aliases."""
        self.rollout: RolloutState | None = None
        self.last_error: str | None = None
        self._rollout_text: str | None = None
        self._watcher = StoreWatcher(lambda: self.registry.store_stamp())
        self._poller: PeriodicThread | None = None

    @property
    def default(self) -> ServedModel | None:
        return self.by_alias.get(self.aliases[0])

    def reconcile(self, *, force: bool = True) -> bool:
        """Load whatever the aliases and the rollout state ask for now; True if anything
        changed.

        Aliases and the rollout state are read in one registry call, so they agree. Registry
        errors are remembered in ``last_error`` and logged, never raised: the loaded models
        keep serving.

        Args:
            force: Read the registry even if its store looks unchanged since the last read
                (the poller passes False: a local store is then read only after a write, and
                at least every ``FULL_READ_SECONDS``).
        """
        changed = False

        def read() -> bool:  # trusted until the next write only if nothing failed
            nonlocal changed
            changed = self._read()
            return self.last_error is None

        # FULL_READ_SECONDS is looked up here, at each call, so tests can shorten it.
        self._watcher.poll(read, force=force, full_read_seconds=FULL_READ_SECONDS)
        return changed

    def _read(self) -> bool:
        changed = failed = False
        try:
            aliases, tags = self.registry.aliases_and_tags()
        except FlywheelError as exc:
            self._remember(f"registry unavailable: {exc}")
            return False
        targets = {alias: aliases.get(alias) for alias in self.aliases}
        for alias, version in targets.items():
            current = self.by_alias.get(alias)
            if version is None:
                if current is not None:
                    self._swap(alias, None)
                    changed = True
                continue
            if current is not None and current.version == version:
                continue
            try:
                served = self.by_version.get(version) or self.load(version)
            except FlywheelError as exc:
                self._remember(f"cannot load version {version} for {alias}: {exc}")
                failed = True
                continue
            self._swap(alias, served)
            changed = True
        rollout_changed, rollout_failed = self._reconcile_rollout(tags.get(STATE_TAG))
        if not (failed or rollout_failed):
            self.last_error = None
        return changed or rollout_changed

    def _reconcile_rollout(self, text: str | None) -> tuple[bool, bool]:
        """Follow the rollout state: load the versions it routes to, then publish it (so the
        router never sees a state whose versions are still loading); (changed, failed)."""
        failed = changed = False
        state = self.rollout
        if text != self._rollout_text:
            try:
                state = parse_state(text) if text else None
            except RolloutError as exc:
                self._remember(f"ignoring the rollout state: {exc}")
                state, failed = None, True
            self._rollout_text = text
            changed = True
        needed = set() if state is None or not state.running else \
            state.traffic().versions | {state.champion, state.challenger}
        needed -= {m.version for m in self.by_alias.values()}
        for version in sorted(needed - set(self.pinned)):
            try:
                self.pinned[version] = self.by_version.get(version) or self.load(version)
            except FlywheelError as exc:
                rollout = state.id if state is not None else "?"
                self._remember(f"cannot load version {version} for rollout {rollout}: {exc}")
                failed = True
                continue
            changed = True
        for version in set(self.pinned) - needed:
            del self.pinned[version]
            changed = True
        if changed:
            self.rollout = state
            self.by_version = {**self.pinned, **{m.version: m for m in self.by_alias.values()}}
            if self.on_change is not None:
                self.on_change("rollout", None if state is None else state.id)
        return changed, failed

    def start(self) -> ModelStore:
        """Poll the registry every ``poll_interval`` seconds in a background thread."""
        self._poller = PeriodicThread(
            lambda: self.reconcile(force=False), self.poll_interval,
            name="flywheel-model-reconciler", logger=log,
            failure="model reconciliation failed; will retry").start()
        return self

    def stop(self) -> None:
        if self._poller is not None:
            self._poller.stop(timeout=5)

    def load(self, version: str) -> ServedModel:
        """Load ``version`` (checksum verified, compiled when verified) and warm it up, without
        serving it.

        Raises:
            FlywheelError: If it cannot be found, verified or loaded.
        """
        info = self.registry.version_info(version)
        model = self.registry.load_model(version, allow_pickle=self.allow_pickle)
        if info.run_id is None:
            raise FlywheelError(f"version {version} has no run to read its schema from")
        schema_text = self.registry.read_artifact_text(info.run_id, "schema.yaml")
        schema = parse_config(DataSchema, read_yaml_text(schema_text), path=None,
                              what="schema", expected="target, task and columns")
        onnx = load_onnx_form(self.registry, version, info.run_id, info.tags) \
            if self.runtime == "onnx" else None
        loaded = build_loaded_model(self.registry.model_name, version, model, schema, info.tags,
                                    onnx=onnx)
        served = ServedModel(loaded)
        served.warmup = warm_up(served)
        pins = read_pins(info.tags)
        if pins:
            served.features = self._joiner(version, pins, loaded.features)
            served.checker.joiner = served.features
        log.info("loaded version %s (%s), warmed up with %d calls in %.0f ms", version,
                 loaded.form, served.warmup.calls,
                 served.warmup.seconds * 1000.0)
        return served

    def feature_stats(self) -> dict[str, Any]:
        """Per loaded version trained on feature views: its lookups and misses."""
        return {m.version: m.features.stats() for m in self.by_version.values()
                if m.features is not None}

    def _joiner(self, version: str, pins: dict[str, Any],
                features: list[str]) -> FeatureJoiner:
        """The online-feature lookup of a version trained on feature views.

        Raises:
            FeatureStoreError: If this server has no feature store, or a pinned view is gone
                or changed incompatibly (the version is then refused, the reason in /readyz).
        """
        if self.features is None:
            raise FeatureStoreError(f"version {version} was trained on feature views "
                                    f"{sorted(pins)}, but this project defines no "
                                    "feature_store.views to look them up in.")
        joiner = self.features.joiner(pins, features)
        joiner.warm()
        return joiner

    def _swap(self, alias: str, served: ServedModel | None) -> None:
        if served is None:
            self.by_alias.pop(alias, None)
        else:
            self.by_alias[alias] = served
        self.by_version = {**self.pinned, **{m.version: m for m in self.by_alias.values()}}
        if self.on_change is not None:
            self.on_change(alias, None if served is None else served.version)

    def _remember(self, message: str) -> None:
        if message != self.last_error:
            log.warning("%s; the loaded models keep serving", message)
        self.last_error = message
