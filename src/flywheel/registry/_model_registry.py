"""MLflow's model registry: logging and registering models, aliases, tags, versions, loading.

A model is logged with its integrity record (``_modelfiles``) and loads only if its files still
match it. Which aliases a new version gets, safely when several processes register at once, is
``_promotion``'s job (its functions take the client; only this class calls them).
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mlflow.exceptions import MlflowException

from flywheel.core.errors import ModelNotFoundError, RegistryError
from flywheel.registry._connection import _Connection, cut, sqlite_path, tag_values
from flywheel.registry._modelfiles import (
    TAG_CHECKSUM,
    integrity_tags,
    load_verified,
    save_logged_model,
)
from flywheel.registry._promotion import name_filter, promote
from flywheel.registry._quiet import quiet_warnings
from flywheel.registry._retry import retry_on_contention
from flywheel.registry._serialize import plan_serialization
from flywheel.registry._types import LoggedModel, ModelVersionInfo

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.entities.model_registry import ModelVersion

__all__: list[str] = []

# MLflow's limit on a version or registered-model tag's value (mlflow.utils.validation).
_VERSION_TAG_LIMIT = 100_000


class _ModelRegistry(_Connection):
    """Registered versions of the registry's model."""

    def log_model(self, run_id: str, model: Any, *, input_example: pd.DataFrame,
                  allow_pickle: bool = False, extra_trusted_types: list[str] | tuple[str, ...] = (),
                  pyfunc_predict_fn: str = "predict") -> LoggedModel:
        """Log a fitted scikit-learn model to the run in MLflow's sklearn flavor.

        Saved with skops, trusting exactly the types the model holds (plus
        ``extra_trusted_types``); with a signature inferred from ``input_example`` and the
        model's ``pyfunc_predict_fn`` output, and the example itself. The format, trusted types
        and a SHA-256 checksum of the saved files are recorded as tags and run artifacts.

        Raises:
            ModelSerializationError: If skops cannot serialize the model and ``allow_pickle``
                is false; with it, the model is saved with cloudpickle instead.
        """
        with quiet_warnings():
            plan = plan_serialization(model, input_example=input_example,
                                      predict_fn=pyfunc_predict_fn, allow_pickle=allow_pickle,
                                      extra_trusted_types=extra_trusted_types)
            try:
                return save_logged_model(self._client, run_id, model,
                                         input_example=input_example, plan=plan,
                                         predict_fn=pyfunc_predict_fn)
            except MlflowException as exc:
                raise self._failure("log the model", exc) from exc

    def register(self, logged: LoggedModel, *, tags: Mapping[str, str] | None = None
                 ) -> ModelVersionInfo:
        """Register ``logged`` as a new version of the model.

        The model's first version gets alias ``champion``; each later one ``challenger``
        (moved from the version it was on). Safe to call from several processes at once:
        store contention is retried with backoff, and the alias rules converge.

        Args:
            tags: Version tags (data fingerprint, spec hash, metrics, ...); the integrity
                record (``flywheel.serialization``, ``.trusted_types``, ``.checksum``,
                ``.model_id``) is added.

        Raises:
            RegistryError: If the logged model's checksum disagrees with the one recorded for
                it in the tracking store, or the store fails.
        """
        self._check_logged(logged)
        self._ensure_registered_model()
        version_tags = {**tag_values(tags or {}, limit=_VERSION_TAG_LIMIT),
                        **integrity_tags(logged)}
        created = self._call("register the model", lambda: self._client.create_model_version(
            self.model_name, source=logged.artifact_uri, run_id=logged.run_id,
            tags=version_tags, model_id=logged.model_id))
        version = str(created.version)
        self.apply_alias_rules(version)
        return _info(self._get_version(version), self._aliases())

    def apply_alias_rules(self, version: str) -> None:
        """Give ``version`` the aliases registration gives a new version (champion if first,
        else challenger), as ``register`` does; recovery finishes an interrupted registration
        with it."""
        self._call("set the model's aliases",
                   lambda: promote(self._client, self.model_name, version))

    def version_info(self, version_or_alias: str) -> ModelVersionInfo:
        """One version, by number or alias.

        Raises:
            ModelNotFoundError: If no such version or alias exists.
        """
        return _info(self._resolve(version_or_alias), self._aliases())

    def versions(self) -> list[ModelVersionInfo]:
        """Every registered version, newest first; empty before the first registration."""
        if self._store_missing():
            return []
        aliases = self._aliases()
        found: list[ModelVersion] = []
        token: str | None = None
        while True:
            page = self._call("list model versions", functools.partial(
                self._client.search_model_versions, name_filter(self.model_name),
                max_results=1000, order_by=["version_number DESC"], page_token=token))
            found.extend(page)
            token = page.token
            if not token:
                break
        return [_info(v, aliases) for v in found]

    def load_model(self, version_or_alias: str, *, allow_pickle: bool = False) -> Any:
        """Load a registered version (``"3"``, ``"v3"``) or alias (``"champion"``).

        Checks every file against the checksum recorded at logging time, then loads with skops
        trusting only the recorded types.

        Args:
            allow_pickle: Load a version saved with pickle (loading pickle runs code from the
                file); without it such a version is refused.

        Raises:
            ModelNotFoundError: If no such version or alias exists.
            ModelIntegrityError: If the files changed since logging or cannot be verified.
            ModelSerializationError: If the version is pickled and ``allow_pickle`` is false.
        """
        version = self._resolve(version_or_alias)
        with quiet_warnings():
            return load_verified(self._client, version, tracking_uri=self.store_uri,
                                 allow_pickle=allow_pickle)

    def store_stamp(self) -> tuple[int, ...] | None:
        """A cheap token that changes when a local SQLite store is written (its files' sizes
        and modification times), or None for other stores. A poller reads the registry only
        when it changed: a stat costs microseconds, a read through MLflow milliseconds of
        CPU, which a server's requests would wait for."""
        path = sqlite_path(self.tracking_uri)
        if path is None:
            return None
        stamp: list[int] = []
        for suffix in ("", "-wal", "-journal"):
            try:
                info = os.stat(path + suffix)
            except OSError:
                stamp.extend((0, 0))
            else:
                stamp.extend((info.st_mtime_ns, info.st_size))
        return tuple(stamp)

    # Aliases ----------------------------------------------------------------------------

    def set_alias(self, alias: str, version: str) -> None:
        """Point ``alias`` at ``version``, moving it from any other version.

        Raises:
            ModelNotFoundError: If the version does not exist.
        """
        number = self._get_version(version).version
        self._call(f"set alias {alias!r}", lambda: self._client.set_registered_model_alias(
            self.model_name, alias, str(number)))

    def delete_alias(self, alias: str) -> None:
        """Remove ``alias`` from whichever version holds it; nothing happens if none does."""
        def delete() -> None:
            try:
                self._client.delete_registered_model_alias(self.model_name, alias)
            except MlflowException as exc:
                if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                    raise

        self._call(f"remove alias {alias!r}", delete)

    def alias_version(self, alias: str) -> str | None:
        """The version ``alias`` points at, or ``None`` if it points nowhere."""
        return self._aliases().get(alias)

    def aliases_and_tags(self) -> tuple[dict[str, str], dict[str, str]]:
        """The model's aliases and its registered-model tags, read together in one call.

        Both are empty before the first registration.
        """
        if self._store_missing():
            return {}, {}
        return self._call("read the model's aliases and tags", self._read_model)

    # Tags -------------------------------------------------------------------------------

    def set_model_tag(self, key: str, value: str) -> None:
        """Set a tag of the registered model itself (not of a version).

        Raises:
            RegistryError: If the model is not registered yet, or the value is over MLflow's
                limit of 100,000 characters.
        """
        if len(value) > _VERSION_TAG_LIMIT:
            raise RegistryError(f"the model tag {key!r} would hold {len(value):,} characters, "
                                f"over MLflow's limit of {_VERSION_TAG_LIMIT:,}.")
        self._call(f"set model tag {key!r}", lambda: self._client.set_registered_model_tag(
            self.model_name, key, value))

    def delete_model_tag(self, key: str) -> None:
        """Remove a tag of the registered model; nothing happens if it is not set."""
        def delete() -> None:
            try:
                self._client.delete_registered_model_tag(self.model_name, key)
            except MlflowException as exc:
                if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                    raise

        self._call(f"remove model tag {key!r}", delete)

    def set_version_tags(self, version: str, tags: Mapping[str, str]) -> None:
        """Set tags on a registered version (values cut at MLflow's 100,000 characters)."""
        for key, value in tags.items():
            self._call("tag the model version", functools.partial(
                self._client.set_model_version_tag, self.model_name, version, key,
                cut(value, _VERSION_TAG_LIMIT)))

    def delete_version_tags(self, version: str, keys: list[str]) -> None:
        """Remove tags from a registered version (a tag already gone is no error)."""
        for key in keys:
            def delete(key: str = key) -> None:
                try:
                    self._client.delete_model_version_tag(self.model_name, version, key)
                except MlflowException as exc:
                    if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                        raise

            self._call("remove a version tag", delete)

    # Internals --------------------------------------------------------------------------

    def _check_logged(self, logged: LoggedModel) -> None:
        entity = self._call("read the logged model",
                            lambda: self._client.get_logged_model(logged.model_id))
        recorded = entity.tags.get(TAG_CHECKSUM)
        if recorded != logged.checksum:
            raise RegistryError(
                f"The logged model {logged.model_id} has checksum {recorded!r} in the tracking "
                f"store, not {logged.checksum!r}; it was changed or logged elsewhere. Log the "
                "model again with this registry and register the result."
            )

    def _ensure_registered_model(self) -> None:
        def ensure() -> None:
            try:
                self._client.get_registered_model(self.model_name)
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
                try:
                    self._client.create_registered_model(self.model_name)
                except MlflowException as again:  # another process created it first
                    if again.error_code != "RESOURCE_ALREADY_EXISTS":
                        raise

        self._call("create the registered model", ensure)

    def _aliases(self) -> dict[str, str]:
        if self._store_missing():
            return {}
        return self._call("read the model's aliases", self._read_model)[0]

    def _read_model(self) -> tuple[dict[str, str], dict[str, str]]:
        try:
            model = self._client.get_registered_model(self.model_name)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return {}, {}
            raise
        return ({alias: str(v) for alias, v in model.aliases.items()},
                {str(k): str(v) for k, v in (model.tags or {}).items()})

    def _get_version(self, version: str) -> ModelVersion:
        number = version[1:] if version[:1] in ("v", "V") and version[1:].isdigit() else version
        if not number.isdigit() or self._store_missing():
            raise self._not_found(number)
        try:
            return retry_on_contention(
                lambda: self._client.get_model_version(self.model_name, number))
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise self._not_found(number) from None
            raise self._failure("read a model version", exc) from exc

    def _resolve(self, ref: str) -> ModelVersion:
        ref = ref.strip()
        if ref.isdigit() or (ref[:1] in ("v", "V") and ref[1:].isdigit()):
            return self._get_version(ref)
        number = self._aliases().get(ref)
        if number is None:
            raise self._not_found(ref)
        return self._get_version(number)

    def _not_found(self, ref: str) -> ModelNotFoundError:
        try:
            versions = [v.version for v in self.versions()]
            aliases = self._aliases()
        except RegistryError:
            versions, aliases = [], {}
        return ModelNotFoundError(self.model_name, ref, versions=versions, aliases=aliases)


def _info(version: ModelVersion, aliases: Mapping[str, str]) -> ModelVersionInfo:
    number = str(version.version)
    return ModelVersionInfo(
        name=version.name,
        version=number,
        aliases=tuple(sorted(a for a, v in aliases.items() if v == number)),
        tags=dict(version.tags),
        run_id=version.run_id,
        created=dt.datetime.fromtimestamp(version.creation_timestamp / 1000, tz=dt.UTC),
        status=str(version.status),
        source=version.source,
    )
