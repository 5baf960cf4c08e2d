"""Saving a fitted model as an MLflow logged model, and loading a registered one back safely.

Saving: ``mlflow.sklearn.save_model`` into a temporary folder, checksum every file, upload the
folder to a logged model created through the client (not ``mlflow.sklearn.log_model``, which
reads the process-global tracking URI and active run, and validates the serving example by
loading the model in a way MLflow itself blocks by default).

Loading: the trusted types, format and checksum come from the model version's tags in the
tracking database, never from the artifact files, which anyone with write access to the
artifact store could edit. The files are downloaded, checksummed, and only then deserialized
with ``skops.io.load(trusted=<recorded types>)``; ``mlflow.sklearn.load_model`` is not used,
since it trusts the list written in the model's own ``MLmodel`` file.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cloudpickle
import mlflow.artifacts
import mlflow.sklearn
import skops.io
from mlflow.entities import LoggedModelOutput, RunTag
from mlflow.exceptions import MlflowException
from mlflow.models import Model, infer_signature
from skops.io.exceptions import UntrustedTypesFoundException

from flywheel.core.errors import ModelIntegrityError, ModelSerializationError
from flywheel.registry._integrity import (
    checksum_of,
    describe_changes,
    file_digests,
    manifest_text,
    parse_manifest,
)
from flywheel.registry._retry import retry_on_contention
from flywheel.registry._serialize import SerializationPlan, pip_requirements
from flywheel.registry._types import LoggedModel

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

__all__ = [
    "TAG_CHECKSUM",
    "TAG_MODEL_ID",
    "TAG_SERIALIZATION",
    "TAG_TRUSTED_TYPES",
    "integrity_tags",
    "load_verified",
    "save_logged_model",
]

TAG_SERIALIZATION = "flywheel.serialization"
TAG_TRUSTED_TYPES = "flywheel.trusted_types"
TAG_CHECKSUM = "flywheel.checksum"
TAG_MODEL_ID = "flywheel.model_id"

_RUN_TAG_LIMIT = 8000  # MLflow's MAX_TAG_VAL_LENGTH for run and logged-model tags


def integrity_tags(logged: LoggedModel) -> dict[str, str]:
    """The tags that let a model be loaded safely later: format, trusted types, checksum."""
    return {
        TAG_SERIALIZATION: logged.serialization,
        TAG_TRUSTED_TYPES: json.dumps(list(logged.trusted_types)),
        TAG_CHECKSUM: logged.checksum,
        TAG_MODEL_ID: logged.model_id,
    }


def save_logged_model(client: MlflowClient, run_id: str, model: Any, *,
                      input_example: pd.DataFrame, plan: SerializationPlan,
                      predict_fn: str) -> LoggedModel:
    """Log ``model`` to ``run_id`` as a logged model saved as ``plan`` says.

    Besides the model's files, records the integrity tags on the run and on the logged model,
    and two run artifacts under ``flywheel/<model_id>/``: ``trusted_types.json`` and
    ``checksums.sha256`` (per-file digests; the checksum is the SHA-256 of this file).
    """
    experiment_id = retry_on_contention(lambda: client.get_run(run_id)).info.experiment_id
    signature = infer_signature(input_example, getattr(model, predict_fn)(input_example))
    entity = retry_on_contention(lambda: client.create_logged_model(
        experiment_id, name="model", source_run_id=run_id, model_type="sklearn"))
    model_id = entity.model_id
    try:
        with tempfile.TemporaryDirectory(prefix="flywheel-model-") as tmp:
            folder = Path(tmp) / "model"
            mlflow.sklearn.save_model(
                model, str(folder),
                mlflow_model=Model(artifact_path=entity.artifact_location, model_uuid=model_id,
                                   run_id=run_id, model_id=model_id),
                serialization_format=plan.mlflow_format,
                skops_trusted_types=list(plan.trusted_types) if plan.serialization == "skops"
                else None,
                signature=signature,
                input_example=input_example,
                pip_requirements=pip_requirements(model, plan),
                pyfunc_predict_fn=predict_fn,
            )
            digests = file_digests(folder)
            client.log_model_artifacts(model_id, str(folder))
        logged = LoggedModel(
            model_uri=f"models:/{model_id}", run_id=run_id, serialization=plan.serialization,
            trusted_types=plan.trusted_types, checksum=checksum_of(digests), model_id=model_id,
            artifact_uri=entity.artifact_location,
        )
        tags = {k: v for k, v in integrity_tags(logged).items() if len(v) <= _RUN_TAG_LIMIT}
        retry_on_contention(lambda: client.set_logged_model_tags(model_id, tags))
        retry_on_contention(lambda: client.log_outputs(
            run_id, [LoggedModelOutput(model_id, step=0)]))
        record = json.dumps({"serialization": logged.serialization,
                             "trusted_types": list(logged.trusted_types),
                             "checksum": logged.checksum}, indent=1) + "\n"
        client.log_text(run_id, record, f"flywheel/{model_id}/trusted_types.json")
        client.log_text(run_id, manifest_text(digests), f"flywheel/{model_id}/checksums.sha256")
        retry_on_contention(lambda: client.log_batch(
            run_id, tags=[RunTag(key, value) for key, value in tags.items()]))
        retry_on_contention(lambda: client.finalize_logged_model(model_id, "READY"))
    except BaseException:
        # The original error matters more than this bookkeeping failing too.
        with contextlib.suppress(Exception):
            client.finalize_logged_model(model_id, "FAILED")
        raise
    return logged


def load_verified(client: MlflowClient, version: ModelVersion, *, tracking_uri: str,
                  allow_pickle: bool) -> Any:
    """Download ``version``'s files, check them against its recorded checksum, deserialize.

    Raises:
        ModelIntegrityError: If the version has no integrity record, its files are missing,
            or they differ from what was logged.
        ModelSerializationError: If it was saved with pickle and ``allow_pickle`` is false.
    """
    name, number = version.name, str(version.version)
    tags = version.tags
    try:
        serialization = tags[TAG_SERIALIZATION]
        trusted = json.loads(tags[TAG_TRUSTED_TYPES])
        expected = tags[TAG_CHECKSUM]
    except (KeyError, ValueError):
        raise ModelIntegrityError(
            name, number, "it has no flywheel integrity record (tags flywheel.serialization, "
            "flywheel.trusted_types, flywheel.checksum), so it was not registered by flywheel"
        ) from None
    if serialization not in ("skops", "pickle"):
        raise ModelIntegrityError(name, number, f"unknown serialization {serialization!r}")
    if serialization == "pickle" and not allow_pickle:
        raise ModelSerializationError(f"Model {name!r} version {number}",
                                      "its flywheel.serialization tag is pickle", loading=True)
    with tempfile.TemporaryDirectory(prefix="flywheel-load-") as tmp:
        try:
            local = Path(mlflow.artifacts.download_artifacts(
                artifact_uri=version.source, dst_path=tmp, tracking_uri=tracking_uri))
        except (MlflowException, OSError) as exc:
            raise ModelIntegrityError(
                name, number, f"its files cannot be read from {version.source} ({exc})") from exc
        digests = file_digests(local)
        found = checksum_of(digests)
        if found != expected:
            recorded = _recorded_digests(client, version, expected)
            detail = (describe_changes(recorded, digests) if recorded is not None
                      else "its files differ from what was logged")
            raise ModelIntegrityError(
                name, number, f"{detail} (checksum {found[:19]}..., expected {expected[:19]}...)")
        flavor = Model.load(str(local / "MLmodel")).flavors.get("sklearn", {})
        data_file = local / str(flavor.get("pickled_model", ""))
        if not data_file.is_file():
            raise ModelIntegrityError(name, number, "its MLmodel names no scikit-learn model file")
        if serialization == "skops":
            try:
                return skops.io.load(data_file, trusted=trusted)
            except UntrustedTypesFoundException as exc:
                raise ModelIntegrityError(
                    name, number, f"it holds types outside its recorded trusted types ({exc})"
                ) from exc
        with data_file.open("rb") as fh:
            return cloudpickle.load(fh)


def _recorded_digests(client: MlflowClient, version: ModelVersion,
                      expected: str) -> dict[str, str] | None:
    """The per-file digests logged with the model, if they are intact; for error messages."""
    model_id = version.tags.get(TAG_MODEL_ID)
    if not (model_id and version.run_id):
        return None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(version.run_id,
                                             f"flywheel/{model_id}/checksums.sha256", tmp)
            digests = parse_manifest(Path(path).read_text(encoding="utf-8"))
    except (MlflowException, OSError):
        return None
    return digests if checksum_of(digests) == expected else None
