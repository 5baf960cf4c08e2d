"""The Open Inference Protocol over gRPC: `flywheel serve --grpc-port` started for real on free
loopback ports and called with tritonclient's gRPC client (from PyPI) and plain grpcio.

tritonclient.grpc's messages are package ``inference``, as flywheel's are: protobuf holds one
set per process, so these tests build requests with tritonclient's and never import
``flywheel.serving.proto`` (the server, another process, does).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from flywheel import Project
from flywheel.cli.main import main
from flywheel.demo import ServerProcess, free_port
from flywheel.serving import read_predictions
from tests.conftest import CHURN, add_version, make_project
from tests.integration.conftest import REPO, start_server

pytestmark = pytest.mark.services

TRAINING = {"learners": ["lightgbm"], "cv_folds": 2, "search": {"trials": 1, "seed": 0}}
SERVICE = "inference.GRPCInferenceService"
triton: Any = None
pb: Any = None
pb_grpc: Any = None


@pytest.fixture(scope="module", autouse=True)
def _tritonclient() -> None:
    """tritonclient.grpc (a dev dependency: missing, this fails), imported when these tests
    run rather than when pytest collects them: its ``inference`` messages would clash with
    another set (kserve's) imported into the same process."""
    global triton, pb, pb_grpc
    import tritonclient.grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    triton, pb, pb_grpc = tritonclient.grpc, service_pb2, service_pb2_grpc


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[Project, ServerProcess, str]]:
    """A churn project with versions 1 (champion) and 2 (challenger), served over HTTP and
    gRPC; (project, server, gRPC address)."""
    root = tmp_path_factory.mktemp("grpc")
    make_project(root, training=TRAINING)
    spec_path = root / "flywheel.yaml"
    raw = yaml.safe_load(spec_path.read_text())
    raw["gates"] = {"champion": {"mode": "off"}}
    raw["rollout"] = {"tick_seconds": 0.5}
    spec_path.write_text(yaml.safe_dump(raw))
    project = Project.load(root)
    assert project.train().version.version == "1"
    assert project.train(seed=3).version.version == "2"
    grpc_port = free_port()
    server = start_server(root, poll=0.3, args=["--grpc-port", str(grpc_port)])
    yield Project.load(root), server, f"127.0.0.1:{grpc_port}"
    server.stop()


@pytest.fixture(scope="module")
def rows(served: tuple[Project, ServerProcess, str]) -> list[dict[str, Any]]:
    project, _, _ = served
    frame = pd.read_parquet(CHURN).sample(30, random_state=5)
    return json.loads(frame[project.schema.feature_columns].to_json(orient="records"))


@pytest.fixture(scope="module")
def client(served: tuple[Project, ServerProcess, str]) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(served[2])


@pytest.fixture(scope="module")
def stub(served: tuple[Project, ServerProcess, str]) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(served[2]) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def triton_inputs(client: triton.InferenceServerClient, name: str,
                  records: list[dict[str, Any]]) -> list[triton.InferInput]:
    """One tensor per feature, as the model's metadata describes them (raw contents)."""
    inputs = []
    for spec in client.get_model_metadata(name).inputs:
        values = [r[spec.name] for r in records]
        array = np.array(values, dtype=object if spec.datatype == "BYTES" else np.float64)
        tensor = triton.InferInput(spec.name, [len(records)], spec.datatype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def typed_request(name: str, records: list[dict[str, Any]], kinds: dict[str, str]
                  ) -> pb.ModelInferRequest:
    """The same inputs as typed ``contents`` (fp64_contents, bytes_contents)."""
    request = pb.ModelInferRequest(model_name=name, id="typed-1")
    for feature, datatype in kinds.items():
        tensor = request.inputs.add(name=feature, datatype=datatype, shape=[len(records)])
        values = [r[feature] for r in records]
        if datatype == "BYTES":
            tensor.contents.bytes_contents.extend(str(v).encode() for v in values)
        else:
            tensor.contents.fp64_contents.extend(float(v) for v in values)
    return request


def kinds_of(client: triton.InferenceServerClient, name: str) -> dict[str, str]:
    return {t.name: t.datatype for t in client.get_model_metadata(name).inputs}


def failure(call: Any, *args: Any, **kwargs: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(*args, **kwargs)
    return caught.value


def test_tritonclient_grpc_gets_the_numbers_predict_gives(served, rows, client) -> None:
    project, server, _ = served
    name = project.registry().model_name
    result = client.infer(name, triton_inputs(client, name, rows), request_id="t-1")
    answer = httpx.post(server.url + "/predict", json=rows).json()
    assert np.allclose(result.as_numpy("probabilities"), answer["probabilities"], atol=1e-12)
    assert [p.decode() for p in result.as_numpy("predictions")] == answer["predictions"]
    response = result.get_response()
    assert response.model_version == answer["model_version"] == "1" and response.id == "t-1"
    # The outputs come as raw contents, as Triton sends them.
    assert len(response.raw_output_contents) == 2


def test_typed_contents_give_the_same_numbers_and_can_ask_for_typed_outputs(
        served, rows, client, stub) -> None:
    project, server, _ = served
    name = project.registry().model_name
    expected = httpx.post(server.url + "/predict", json=rows).json()["probabilities"]
    request = typed_request(name, rows, kinds_of(client, name))
    raw = stub.ModelInfer(request)
    assert raw.id == "typed-1" and len(raw.raw_output_contents) == 2
    assert np.allclose(np.frombuffer(raw.raw_output_contents[1], "<f8").reshape(-1, 2),
                       expected, atol=1e-12)
    request.parameters["binary_data_output"].bool_param = False
    typed = stub.ModelInfer(request)
    assert not typed.raw_output_contents
    outputs = {o.name: o for o in typed.outputs}
    assert list(outputs["probabilities"].shape) == [len(rows), 2]
    assert np.allclose(np.array(outputs["probabilities"].contents.fp64_contents).reshape(-1, 2),
                       expected, atol=1e-12)
    assert len(outputs["predictions"].contents.bytes_contents) == len(rows)


def test_each_bad_input_gets_invalid_argument_with_every_problem_listed(
        served, rows, client, stub) -> None:
    project, _, _ = served
    name = project.registry().model_name
    kinds = kinds_of(client, name)
    request = typed_request(name, rows[:2], kinds)
    numeric = next(t for t in request.inputs if t.datatype == "FP64")
    text = next(t for t in request.inputs if t.datatype == "BYTES")
    numeric.contents.ClearField("fp64_contents")
    numeric.contents.int_contents.extend([1, 2])          # values in the wrong field
    text.contents.bytes_contents[0] = b"\xff\xfe"          # not UTF-8
    del request.inputs[-1]                                  # a feature left out
    request.inputs.add(name="surprise", datatype="FP64", shape=[2]).contents.fp64_contents \
        .extend([1.0, 2.0])                                 # not a feature
    error = failure(stub.ModelInfer, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    message = error.details()
    assert "a FP64 tensor's values go in contents.fp64_contents" in message
    assert "not UTF-8 text" in message
    assert "missing input tensor" in message and "surprise: unknown input" in message
    problems = json.loads(dict(error.trailing_metadata())["flywheel-problems-bin"])
    assert len(problems) == 4

    cases = {
        "a shape that does not match its values": lambda r: r.inputs[0].shape.__setitem__(0, 3),
        "a datatype the protocol lacks": lambda r: setattr(r.inputs[0], "datatype", "FP128"),
        "a wrong type for a feature": lambda r: _as_text(r, numeric.name),
        "raw contents not one per input": lambda r: r.raw_input_contents.append(b"\x00" * 8),
        "an output the model lacks": lambda r: r.outputs.add(name="logits"),
        "no inputs": lambda r: r.ClearField("inputs"),
        "tensors of different lengths": lambda r: r.inputs[0].contents.fp64_contents.append(1.0)
        if r.inputs[0].datatype == "FP64" else r.inputs[0].contents.bytes_contents.append(b"x"),
    }
    for case, spoil in cases.items():
        request = typed_request(name, rows[:2], kinds)
        spoil(request)
        error = failure(stub.ModelInfer, request)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (case, error.details())
        assert error.details(), case
    # Over the body limit (1 MiB), as HTTP's 413.
    request = typed_request(name, rows[:1], kinds)
    next(t for t in request.inputs if t.datatype == "BYTES").contents.bytes_contents[0] = \
        b"x" * (1 << 20)
    assert failure(stub.ModelInfer, request).code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def _as_text(request: pb.ModelInferRequest, feature: str) -> None:
    tensor = next(t for t in request.inputs if t.name == feature)
    tensor.datatype = "BYTES"
    tensor.contents.ClearField("fp64_contents")
    tensor.contents.bytes_contents.extend([b"many", b"few"])


def test_an_unknown_model_or_version_is_not_found(served, rows, client, stub) -> None:
    project, _, _ = served
    name = project.registry().model_name
    request = typed_request("no-such-model", rows[:1], kinds_of(client, name))
    error = failure(stub.ModelInfer, request)
    assert error.code() == grpc.StatusCode.NOT_FOUND and name in error.details()
    request.model_name, request.model_version = name, "99"
    error = failure(stub.ModelInfer, request)
    assert error.code() == grpc.StatusCode.NOT_FOUND and "loaded: 1, 2" in error.details()
    assert failure(stub.ModelReady, pb.ModelReadyRequest(name="other")).code() == \
        grpc.StatusCode.NOT_FOUND
    assert failure(stub.ModelMetadata, pb.ModelMetadataRequest(name=name, version="7")).code() \
        == grpc.StatusCode.NOT_FOUND


def test_a_named_version_answers_itself(served, rows, client, stub) -> None:
    project, _, _ = served
    name = project.registry().model_name
    request = typed_request(name, rows[:3], kinds_of(client, name))
    request.model_version = "2"
    assert stub.ModelInfer(request).model_version == "2"
    assert client.is_model_ready(name, "2") and client.is_model_ready(name)


def test_live_ready_metadata_health_and_reflection_answer(served, client) -> None:
    project, _, address = served
    assert client.is_server_live() and client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata.name == "flywheel" and "binary_tensor_data" in metadata.extensions
    model = client.get_model_metadata(project.registry().model_name)
    assert {t.name for t in model.inputs} == set(project.schema.feature_columns)
    assert [(t.name, list(t.shape)) for t in model.outputs] == [("predictions", [-1]),
                                                                ("probabilities", [-1, 2])]
    with grpc.insecure_channel(address) as channel:
        checker = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICE):
            status = checker.Check(health_pb2.HealthCheckRequest(service=service)).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        reflector = reflection_pb2_grpc.ServerReflectionStub(channel)
        answer = next(reflector.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
        services = {s.name for s in answer.list_services_response.service}
        assert {SERVICE, "grpc.health.v1.Health"} <= services


def test_grpc_requests_are_logged_and_counted(served, rows, client) -> None:
    project, server, _ = served
    name = project.registry().model_name
    request_id = f"grpc-logged-{time.time()}"
    client.infer(name, triton_inputs(client, name, rows[:4]), request_id=request_id)
    # Without an id in the request, the x-request-id metadata names it, as the HTTP header.
    client.infer(name, triton_inputs(client, name, rows[:1]),
                 headers={"x-request-id": request_id + "-header"})
    time.sleep(1.6)  # one flush interval of the prediction log
    log = read_predictions(project.workspace.predictions)
    mine = log[log["request_id"].str.startswith(request_id + ":")]  # one row per record
    assert len(mine) == 4 and set(mine["model_version"]) == {"1"}
    assert (log["request_id"] == request_id + "-header").sum() == 1
    metrics = httpx.get(server.url + "/metrics").text
    assert 'flywheel_requests_total{endpoint="grpc/ModelInfer",model_version="1",status="OK"}' \
        in metrics
    assert 'endpoint="grpc/ModelInfer",model_version="-",status="INVALID_ARGUMENT"' in metrics


def test_a_canary_started_from_the_cli_routes_grpc_traffic_too(served, rows, client) -> None:
    project, server, _ = served
    root = str(project.spec.root)
    name = project.registry().model_name
    assert main(["rollout", "canary", "2", "--stages", "50,100", "--min-requests", "100000",
                 "--config", root]) == 0
    try:
        deadline = time.monotonic() + 20
        while "rollout" not in httpx.get(server.url + "/readyz").json():
            assert time.monotonic() < deadline, "the server never picked up the canary"
            time.sleep(0.2)
        inputs = triton_inputs(client, name, rows[:1])
        versions = [client.infer(name, inputs, request_id=f"canary-{i}").get_response()
                    .model_version for i in range(60)]
        assert set(versions) == {"1", "2"}, versions
        time.sleep(1.6)
        log = read_predictions(project.workspace.predictions)
        routed = log[log["request_id"].str.startswith("canary-")]
        assert set(routed.loc[routed["model_version"] == "2", "arm"]) == {"challenger"}
    finally:
        assert main(["rollout", "stop", "--reason", "test over", "--config", root]) == 0


def test_a_server_whose_champion_cannot_load_is_unavailable_on_the_specs_grpc_port(
        fitted, tmp_path: Path) -> None:
    root = tmp_path / "broken"
    broken = make_project(root, training=TRAINING)
    assert add_version(broken, fitted) == "1"
    grpc_port = free_port()
    spec_path = root / "flywheel.yaml"
    raw = yaml.safe_load(spec_path.read_text())
    raw["serving"] = {"grpc_port": grpc_port}  # no --grpc-port: the spec's port serves gRPC
    spec_path.write_text(yaml.safe_dump(raw))
    # The champion's files change after logging: its checksum no longer verifies.
    for model_file in (root / ".flywheel" / "artifacts").rglob("*.skops"):
        model_file.write_bytes(model_file.read_bytes() + b"tampered")
    proc = subprocess.Popen(
        [sys.executable, "-m", "flywheel.cli.main", "serve", "--config", str(root), "--port",
         str(free_port())],
        env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=90)
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            assert stub.ServerLive(pb.ServerLiveRequest()).live
            assert not stub.ServerReady(pb.ServerReadyRequest()).ready
            request = pb.ModelInferRequest(model_name=broken.registry().model_name)
            error = failure(stub.ModelInfer, request)
            assert error.code() == grpc.StatusCode.UNAVAILABLE, error.details()
            status = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=SERVICE)).status
            assert status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_grpc_port_that_is_taken_or_the_http_one_exits_2(served, capsys) -> None:
    project, _, address = served
    root = str(project.spec.root)
    taken = address.rsplit(":", 1)[1]
    for args, says in (([taken], "gRPC cannot listen on 127.0.0.1:" + taken),
                       (["8123", "--port", "8123"], "is also the HTTP --port")):
        assert main(["serve", "--config", root, "--grpc-port", *args]) == 2
        assert says in " ".join(capsys.readouterr().err.split())


def test_serving_over_http_only_never_imports_grpc() -> None:
    code = ("import sys\n"
            "import flywheel.cli.main, flywheel.cli.serve, flywheel.pipelines.serve\n"
            "import flywheel.serving, flywheel.serving.app\n"
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('grpc', 'grpc_health', 'grpc_reflection', 'tritonclient') "
            "or m.startswith(('flywheel.serving.proto', 'flywheel.serving._grpc')))\n"
            "print(loaded)\n"
            "sys.exit(1 if loaded else 0)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
