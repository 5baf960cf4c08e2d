"""Choosing how a fitted model is saved: skops with its exact trusted types, or pickle if allowed.

skops refuses at load time to build any type not on its ``trusted`` list. flywheel records the
exact types of each model (``skops.io.get_untrusted_types`` on its serialized bytes) when it is
logged, and loading trusts those and nothing else.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import types
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import mlflow.sklearn
import numpy as np
import skops.io

from flywheel.core.errors import ModelSerializationError

if TYPE_CHECKING:
    import pandas as pd

    from flywheel.registry._types import Serialization

__all__ = ["SerializationPlan", "pip_requirements", "plan_serialization"]


@dataclasses.dataclass(frozen=True)
class SerializationPlan:
    """How to save one model.

    Attributes:
        serialization: ``skops`` or ``pickle``.
        trusted_types: The types skops must trust to load it (empty for pickle).
        mlflow_format: The value of MLflow's ``serialization_format`` for it.
    """

    serialization: Serialization
    trusted_types: tuple[str, ...]

    @property
    def mlflow_format(self) -> str:
        # MLflow's "pickle" uses the standard pickler, which cannot save lambdas; cloudpickle can.
        return "skops" if self.serialization == "skops" else "cloudpickle"


def plan_serialization(model: Any, *, input_example: pd.DataFrame, predict_fn: str,
                       allow_pickle: bool, extra_trusted_types: Iterable[str] = ()
                       ) -> SerializationPlan:
    """Decide how to save ``model``, by saving it with skops and loading it back.

    The round trip must load with exactly the recorded types and predict ``input_example`` as
    the original does; otherwise the model counts as one skops cannot serialize.

    Raises:
        ModelSerializationError: If skops cannot serialize the model and ``allow_pickle`` is
            false.
    """
    try:
        data = skops.io.dumps(model)
        trusted = sorted(set(skops.io.get_untrusted_types(data=data)) | set(extra_trusted_types))
        reloaded = skops.io.loads(data, trusted=trusted)
        if not _same_output(getattr(model, predict_fn)(input_example),
                            getattr(reloaded, predict_fn)(input_example)):
            raise ValueError("the model loaded back from skops predicts differently")
    # skops fails in many ways on what it cannot handle (TypeError, AttributeError, its own
    # UntrustedTypesFoundException, pickling errors); each one means "not with skops".
    except Exception as exc:
        if not allow_pickle:
            raise ModelSerializationError(_describe(model), _reason(exc)) from exc
        return SerializationPlan("pickle", ())
    return SerializationPlan("skops", tuple(trusted))


def pip_requirements(model: Any, plan: SerializationPlan) -> list[str]:
    """Pinned requirements to load ``model``: MLflow's defaults plus every package it uses.

    Given explicitly, so MLflow skips its requirement inference, which loads the model in a
    subprocess (seconds per model, and a warning when model deserialization is not allowed).
    """
    base = mlflow.sklearn.get_default_pip_requirements(
        include_cloudpickle=plan.serialization == "pickle",
        include_skops=plan.serialization == "skops",
    )
    requirements = {_requirement_name(req): req for req in base}
    modules = {name.split(".")[0] for name in plan.trusted_types}
    modules |= {module.split(".")[0] for module in _modules_of(model)}
    owners = importlib.metadata.packages_distributions()
    for module in sorted(modules):
        for dist in owners.get(module, ()):
            try:
                version = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                continue
            requirements.setdefault(_requirement_name(dist), f"{dist}=={version}")
    return sorted(requirements.values())


def _requirement_name(requirement: str) -> str:
    for sep in ("==", ">=", "<=", "~=", "<", ">", "[", ";", " "):
        requirement = requirement.split(sep)[0]
    return requirement.strip().lower().replace("_", "-")


def _modules_of(model: Any) -> Iterator[str]:
    yield type(model).__module__
    get_params = getattr(model, "get_params", None)
    if get_params is None:
        return
    for value in get_params(deep=True).values():
        if isinstance(value, (types.FunctionType, types.BuiltinFunctionType, type)):
            yield getattr(value, "__module__", None) or "builtins"
        else:
            yield type(value).__module__


def _same_output(before: Any, after: Any) -> bool:
    left, right = np.asarray(before), np.asarray(after)
    if left.shape != right.shape:
        return False
    if left.dtype.kind in "fc" and right.dtype.kind in "fc":
        return bool(np.allclose(left, right, rtol=1e-9, atol=0.0, equal_nan=True))
    return bool(np.array_equal(left, right))


def _describe(model: Any) -> str:
    steps = getattr(model, "steps", None)
    if steps:
        inner = ", ".join(f"{name}={type(step).__name__}" for name, step in steps)
        return f"the {type(model).__name__}({inner})"
    return f"the {type(model).__name__} model"


def _reason(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text if len(text) <= 200 else text[:197] + "..."
