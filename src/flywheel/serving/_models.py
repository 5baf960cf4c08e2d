"""The models a server holds, by alias, kept in step with the registry.

A background thread polls the registry's aliases. When one moves (promote, rollback), the new
version is loaded, checksum-verified and compiled beside the old one, then swapped in with one
reference assignment: requests already running finish on the version they started with, new
ones get the new version, none fails. If the registry is unreachable, the loaded models keep
serving and the thread tries again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from flywheel.core.errors import FlywheelError
from flywheel.data import DataSchema
from flywheel.registry import MlflowRegistry
from flywheel.core._yaml import read_yaml_text
from flywheel.core.spec import parse_config
from flywheel.serving._inputs import InputChecker
from flywheel.serving._predictor import LoadedModel, build_loaded_model

log = logging.getLogger("flywheel.serving")


class ServedModel:
    """A loaded version and the input checker for its schema."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.version = model.version
        self.checker = InputChecker(model.schema)
        columns = model.schema.columns
        self.log_layout = tuple((name, columns[name].kind in ("numeric", "integer"))
                                for name in model.features)

    def answer(self, records: list[dict[str, Any]]) -> Any:
        return self.model.answer(records)


class ModelStore:
    """Loaded versions by alias, reconciled with the registry.

    Args:
        registry: Where versions and aliases live.
        aliases: The aliases to serve; the first is the default.
        poll_interval: Seconds between registry checks.
        on_change: Called with (alias, version) after every swap.
    """

    def __init__(self, registry: MlflowRegistry, *, aliases: tuple[str, ...] = ("champion",
                 "challenger"), poll_interval: float = 2.0, allow_pickle: bool = False,
                 on_change: Callable[[str, str | None], None] | None = None) -> None:
        self.registry = registry
        self.aliases = aliases
        self.poll_interval = poll_interval
        self.allow_pickle = allow_pickle
        self.on_change = on_change
        self.by_alias: dict[str, ServedModel] = {}
        self.by_version: dict[str, ServedModel] = {}
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def default(self) -> ServedModel | None:
        return self.by_alias.get(self.aliases[0])

    def reconcile(self) -> bool:
        """Load whatever the aliases point at now; True if anything changed.

        Registry errors are remembered in ``last_error`` and logged, never raised: the loaded
        models keep serving.
        """
        changed = failed = False
        try:
            targets = {alias: self.registry.alias_version(alias) for alias in self.aliases}
        except FlywheelError as exc:
            self._remember(f"registry unavailable: {exc}")
            return False
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
                served = self.by_version.get(version) or self._load(version)
            except FlywheelError as exc:
                self._remember(f"cannot load version {version} for {alias}: {exc}")
                failed = True
                continue
            self._swap(alias, served)
            changed = True
        if not failed:
            self.last_error = None
        return changed

    def start(self) -> ModelStore:
        self._thread = threading.Thread(target=self._run, name="flywheel-model-reconciler",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_interval):
            try:
                self.reconcile()
            except Exception:  # noqa: BLE001 - the reconciler must outlive any surprise
                log.exception("model reconciliation failed; will retry")

    def _load(self, version: str) -> ServedModel:
        info = self.registry.version_info(version)
        model = self.registry.load_model(version, allow_pickle=self.allow_pickle)
        if info.run_id is None:
            raise FlywheelError(f"version {version} has no run to read its schema from")
        schema_text = self.registry.read_artifact_text(info.run_id, "schema.yaml")
        schema = parse_config(DataSchema, read_yaml_text(schema_text), path=None,
                              what="schema", expected="target, task and columns")
        loaded = build_loaded_model(self.registry.model_name, version, model, schema, info.tags)
        log.info("loaded version %s (%s)", version, "compiled" if loaded.fast else "pipeline")
        return ServedModel(loaded)

    def _swap(self, alias: str, served: ServedModel | None) -> None:
        if served is None:
            self.by_alias.pop(alias, None)
        else:
            self.by_alias[alias] = served
        live = {m.version: m for m in self.by_alias.values()}
        self.by_version = live
        if self.on_change is not None:
            self.on_change(alias, None if served is None else served.version)

    def _remember(self, message: str) -> None:
        if message != self.last_error:
            log.warning("%s; the loaded models keep serving", message)
        self.last_error = message
