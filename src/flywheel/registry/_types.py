"""What the registry hands back: a logged model and a registered model version."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Literal

__all__ = ["LoggedModel", "ModelVersionInfo", "RunRecord", "Serialization"]

Serialization = Literal["skops", "pickle"]


@dataclasses.dataclass(frozen=True)
class LoggedModel:
    """A model logged to a run, ready to be registered.

    Attributes:
        model_uri: MLflow's URI of the logged model, ``models:/<model_id>``.
        run_id: The run the model was logged to.
        serialization: ``skops``, or ``pickle`` when skops could not save it and pickle was
            allowed.
        trusted_types: The exact types skops may build when loading it (empty for pickle).
        checksum: ``sha256:<hex>`` over every file of the saved model; see ``_integrity``.
        model_id: MLflow's id of the logged model.
        artifact_uri: Where the model's files are stored.
    """

    model_uri: str
    run_id: str
    serialization: Serialization
    trusted_types: tuple[str, ...]
    checksum: str
    model_id: str
    artifact_uri: str


@dataclasses.dataclass(frozen=True)
class ModelVersionInfo:
    """One registered version of the model.

    Attributes:
        name: The registered model's name.
        version: The version number, as text (``"3"``).
        aliases: Aliases pointing at this version, such as ``champion``.
        tags: The version's tags (data fingerprint, spec hash, metrics, integrity records).
        run_id: The run that logged the model.
        created: When the version was registered (UTC).
        status: MLflow's status, ``READY`` once registered.
        source: Where the version's files are stored.
    """

    name: str
    version: str
    aliases: tuple[str, ...]
    tags: Mapping[str, str]
    run_id: str | None
    created: dt.datetime
    status: str
    source: str | None = None


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """One tracked run, as ``MlflowRegistry.find_runs`` lists it.

    Attributes:
        run_id: MLflow's run id.
        name: The run's display name.
        status: RUNNING, FINISHED, FAILED or KILLED.
        tags: The run's tags.
        start_time: When it started, in milliseconds since the epoch.
    """

    run_id: str
    name: str
    status: str
    tags: Mapping[str, str]
    start_time: int
