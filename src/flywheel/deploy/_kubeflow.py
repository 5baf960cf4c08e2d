"""`flywheel export kubeflow`: the project's training as a Kubeflow Pipelines v2 pipeline.

Four lightweight Python components (``_kfp_components``), validate → train → gates →
register, each running flywheel's own flow in the project's image (``deploy.image``, which
holds flywheel with the `kubeflow` extra). The pipeline's parameters carry the project: its
flywheel.yaml and schema.yaml as text (each a JSON string, so one line), the folder the steps
share (``deploy.kubeflow.project_dir``), and the search overrides (``trials`` 0 and ``seed``
-1 keep the spec's).

Every step has side effects on the registry, so none is cached: a rerun with the same inputs
runs again (and its register step answers the version registered already).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flywheel.core.errors import ConfigError
from flywheel.core.spec import SPEC_FILE, ComputeSpec, ProjectSpec
from flywheel.deploy._extras import require_extra

__all__ = ["compile_kubeflow_pipeline", "pipeline_name"]


def pipeline_name(spec: ProjectSpec) -> str:
    """The pipeline's name: the project name in lower case, other characters as dashes.

    Raises:
        ConfigError: If nothing of the name is left (it holds no letter or digit).
    """
    name = re.sub(r"[^a-z0-9]+", "-", spec.name.lower()).strip("-")[:128].strip("-")
    if not name:
        raise ConfigError(f"name: Kubeflow Pipelines cannot name a pipeline after {spec.name!r}; "
                          "it needs letters or digits (a pipeline name is lower-case letters, "
                          "digits and dashes). Rename the project in flywheel.yaml.")
    return name


def compile_kubeflow_pipeline(spec: ProjectSpec, output: str | Path) -> Path:
    """Compile the project's pipeline to ``output`` (KFP's pipeline-spec YAML).

    Raises:
        ConfigError: If kfp is not installed, or a spec value is one KFP cannot express (the
            message names it).
    """
    require_extra("kfp", "kubeflow", "flywheel export kubeflow")
    from kfp import compiler, dsl

    from flywheel.deploy import _kfp_components as steps

    # As one-line JSON strings: KFP writes each default into a comment at the top of the
    # compiled file, and a default with line breaks there breaks the file's YAML.
    spec_text = json.dumps((spec.root / SPEC_FILE).read_text(encoding="utf-8"))
    schema_text = json.dumps(spec.schema_path.read_text(encoding="utf-8"))
    folder = spec.deploy.kubeflow.project_dir or str(spec.root)
    image = spec.deploy.image

    def component(func: Callable[..., Any]) -> Any:
        return dsl.component(func, base_image=image, install_kfp_package=False)

    validate, train, gates, register = (component(f) for f in
                                        (steps.validate, steps.train, steps.gates,
                                         steps.register))
    resources = spec.deploy.kubeflow.resources
    volume = spec.deploy.kubeflow.volume
    if volume is not None:
        require_extra("kfp.kubernetes", "kubeflow", "deploy.kubeflow.volume")
        from kfp.kubernetes import mount_pvc

    def pipeline(project_dir: str = folder, spec_yaml: str = spec_text,
                 schema_yaml: str = schema_text, trials: int = 0, seed: int = -1,
                 require_gates: bool = False) -> str:
        project = {"project_dir": project_dir, "spec_yaml": spec_yaml,
                   "schema_yaml": schema_yaml}
        checked = validate(**project).set_display_name("validate")
        trained = train(**project, trials=trials, seed=seed).after(checked)
        trained.set_display_name("train")
        _set_resources(trained, resources)
        gated = gates(**project, run_id=trained.outputs["Output"],
                      require_gates=require_gates).set_display_name("gates")
        registered = register(**project, run_id=trained.outputs["Output"]).after(gated)
        registered.set_display_name("register")
        for task in (checked, trained, gated, registered):
            task.set_caching_options(False)
            if volume is not None:
                mount_pvc(task, pvc_name=volume, mount_path=folder)
        return registered.outputs["Output"]  # type: ignore[no-any-return]

    # KFP builds the pipeline's interface from the annotations as types, which this module's
    # `from __future__ import annotations` turned into text.
    pipeline.__annotations__ = {"project_dir": str, "spec_yaml": str, "schema_yaml": str,
                                "trials": int, "seed": int, "require_gates": bool,
                                "return": str}
    compiled = dsl.pipeline(pipeline, name=pipeline_name(spec),
                            description=f"flywheel: validate, train, gate and register "
                                        f"{spec.name!r}")

    target = Path(output)
    target.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(compiled, str(target))
    return target


def _set_resources(task: Any, compute: ComputeSpec) -> None:
    """Set the train step's requests and limits with KFP's own setters, whose rules are
    narrower than Kubernetes' (memory: a whole number of units)."""
    setters = {("requests", "cpu"): task.set_cpu_request, ("limits", "cpu"): task.set_cpu_limit,
               ("requests", "memory"): task.set_memory_request,
               ("limits", "memory"): task.set_memory_limit}
    for (kind, resource), setter in setters.items():
        value = getattr(getattr(compute, kind), resource)
        if value is None:
            continue
        try:
            setter(value)
        except ValueError as exc:
            field = f"deploy.kubeflow.resources.{kind}.{resource}"
            hint = (" (a whole number with a unit: 1536Mi rather than 1.5Gi)"
                    if resource == "memory" else " (cores such as 2 or 500m)")
            raise ConfigError(f"{field}: Kubeflow Pipelines cannot express {value!r}{hint}; "
                              f"it said: {exc}") from None
