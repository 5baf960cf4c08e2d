"""`flywheel export`: the project as artefacts for other engines (Kubeflow Pipelines, KServe).

Each exporter is one subcommand of the ``export`` group; `register` adds the group to the app,
and another exporter joins with one ``export_app.command(...)`` line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from flywheel.core.spec import SPEC_FILE, load_spec

_out = Console()
_err = Console(stderr=True)
ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="Path to flywheel.yaml.")]

export_app = typer.Typer(
    name="export",
    help="Export the project for other engines: Kubeflow Pipelines, KServe.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(export_app, name="export")


@export_app.command("kubeflow")
def kubeflow(
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the compiled "
                                                                "pipeline (YAML).")]
    = Path("pipeline.yaml"),
    config: ConfigOption = Path(SPEC_FILE),
) -> None:
    """Compile validate → train → gates → register as a Kubeflow Pipelines v2 pipeline.

    Each step runs flywheel in deploy.image with the project's flywheel.yaml as an input; the
    file reloads with kfp.components.load_component_from_file and runs locally with
    kfp.local.SubprocessRunner."""
    from flywheel.deploy import compile_kubeflow_pipeline, pipeline_name

    spec = load_spec(config)
    written = compile_kubeflow_pipeline(spec, output)
    _err.print(f"Wrote Kubeflow pipeline {pipeline_name(spec)!r} to {written} (steps: validate, "
               f"train, gates, register; image {spec.deploy.image}).", highlight=False,
               soft_wrap=True)


@export_app.command("kserve")
def kserve(
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory for the Dockerfile "
                                                                "and the manifests.")]
    = Path("kserve"),
    config: ConfigOption = Path(SPEC_FILE),
) -> None:
    """Write the serving image's Dockerfile and KServe InferenceService manifests.

    Both forms: serverless/ (Knative, canaryTrafficPercent) and standard/ (RawDeployment: two
    InferenceServices and a Gateway API HTTPRoute splitting traffic), from the deploy: section.
    """
    from flywheel.deploy import inference_service_name, write_kserve_bundle

    spec = load_spec(config)
    bundle = write_kserve_bundle(spec, output)
    _err.print(f"Wrote {bundle.dockerfile} and the InferenceService "
               f"{inference_service_name(spec)!r}:", highlight=False, soft_wrap=True)
    for form, paths in bundle.manifests.items():
        _err.print(f"  {form}: " + ", ".join(str(p) for p in paths), highlight=False,
                   soft_wrap=True)
    for note in bundle.notes:
        _err.print(f"  note: {note}", highlight=False, soft_wrap=True)


@export_app.command("onnx")
def onnx(
    version: Annotated[str, typer.Argument(help="Version number (3, v3) or alias.")]
    = "champion",
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the ONNX "
                                                                "graph.")] = Path("model.onnx"),
    data: Annotated[Path | None, typer.Option("--data", help="Data to take the holdout rows "
                                                             "from (default: the spec's).")]
    = None,
    config: ConfigOption = Path(SPEC_FILE),
) -> None:
    """Convert a version (encoders and booster) to one ONNX graph, verified on its holdout."""
    from flywheel.pipelines import Project
    from flywheel.pipelines.export_onnx import export_onnx

    project = Project.load(config)
    done = export_onnx(project, version, output=output, data=data)
    _out.print(f"version {done.version} → {done.path} ({done.bytes / 1024:,.0f} KiB): "
               f"verified, {done.report.summary()}; recorded as tags flywheel.onnx.* and "
               "artifact onnx/model.onnx", highlight=False)
