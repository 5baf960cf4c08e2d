"""flywheel serve --grpc-port against MLServer 1.7 (the anchor): the same model over gRPC.

One registered LightGBM pipeline for mlc_churn (encoders and booster, as flywheel trains it).
MLServer serves the same fitted scikit-learn pipeline, saved with joblib, through its sklearn
runtime (mlserver-sklearn) from its own virtual environment; the request asks it for
``predict_proba`` and tells its pandas codec to build a DataFrame (``content_type: pd``, text
columns ``str``), the way MLServer documents it for a pipeline on named columns. Both servers
get the very same serialized ``ModelInferRequest`` (one churn record, typed contents) and run
one worker pinned to core 0 (``taskset -c 0``; MLServer with ``parallel_workers: 0``, so the
model runs in the server process, its fastest setting on one core); the load generator (a
grpc.aio client sending pre-serialized bytes) runs on core 1. Prints requests/s and p99 at
concurrency 32, p50 and p99 at concurrency 1, and checks both servers give the same
probabilities.

The servers are measured in alternating rounds, the one not measured frozen (SIGSTOP to its
process group), and each figure is the median over the rounds (see serving_vs_mlflow.py for
why). MLServer's environment is built on the first run, in /tmp/mlserver-venv (python -m venv;
pip install 'mlserver==1.7.*' 'mlserver-sklearn==1.7.*' and flywheel's scikit-learn and
LightGBM versions):

    python bench/grpc_vs_mlserver.py [--seconds 5] [--rounds 3] [--mlserver /tmp/mlserver-venv]
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import joblib
import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table
from tritonclient.grpc import service_pb2 as pb

from flywheel.demo import free_port

REPO = Path(__file__).resolve().parents[1]
CHURN = REPO / "examples" / "churn" / "mlc_churn.parquet"
BIN = Path(sys.executable).parent
INFER = "/inference.GRPCInferenceService/ModelInfer"
READY = "/inference.GRPCInferenceService/ServerReady"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--mlserver", type=Path, default=Path("/tmp/mlserver-venv"),
                        help="MLServer's virtual environment")
    args = parser.parse_args()
    if shutil.which("taskset") is None:
        raise SystemExit("taskset is missing (util-linux): it pins each server to one core")
    mlserver_bin = ensure_mlserver(args.mlserver)
    from flywheel import Project

    work = Path(tempfile.mkdtemp(prefix="flywheel-grpc-bench-"))
    shutil.copy(CHURN, work / "churn.parquet")
    project = Project.init(work / "churn.parquet", "churn", directory=work, name="churn")
    console = Console(width=180)
    console.print("training a LightGBM pipeline for mlc_churn ...")
    project.train(trials=10, seed=0)
    features = project.schema.feature_columns
    kinds = {name: project.schema.columns[name].kind for name in features}
    record = json.loads(pd.read_parquet(CHURN)[features].head(1).to_json(orient="records"))[0]
    pipeline = project.registry().load_model("champion")
    expected = pipeline.predict_proba(pd.DataFrame([record]))[0]
    model_dir = mlserver_model(work / "mlserver", pipeline)
    # The same inputs; MLServer is asked for predict_proba alone (each output it is asked for
    # is one more model call), flywheel answers its labels and probabilities.
    model_name = project.registry().model_name
    servers: dict[str, tuple[list[str], int, dict[str, str], bytes]] = {}
    grpc_port = free_port()
    servers["MLServer 1.7 (sklearn runtime)"] = (
        [str(mlserver_bin), "start", str(model_dir.parent)], grpc_port,
        {"MLSERVER_GRPC_PORT": str(grpc_port), "MLSERVER_HTTP_PORT": str(free_port()),
         "MLSERVER_METRICS_PORT": str(free_port()), "MLSERVER_PARALLEL_WORKERS": "0",
         "PYTHONPATH": str(work / "mlserver" / "shim")},
        request_bytes(record, kinds, name="churn", output="predict_proba"))
    grpc_port = free_port()
    servers["flywheel serve --grpc-port"] = (
        [str(BIN / "flywheel"), "serve", "--config", str(work), "--port", str(free_port()),
         "--grpc-port", str(grpc_port)], grpc_port, {},
        request_bytes(record, kinds, name=model_name, output=None))
    procs: dict[str, subprocess.Popen[bytes]] = {}
    answers: dict[str, np.ndarray] = {}
    runs: dict[str, dict[str, list[dict[str, float]]]] = {n: {"c1": [], "c32": []}
                                                          for n in servers}
    try:
        for name, (command, port, env, payload) in servers.items():
            log = open(work / f"{name.split()[0]}.log", "wb")  # noqa: SIM115
            proc = subprocess.Popen(["taskset", "-c", "0", *command], cwd=work,
                                    env={**os.environ, **env}, stdout=log, stderr=log,
                                    start_new_session=True)
            procs[name] = proc
            wait_ready(port, proc, work / f"{name.split()[0]}.log")
            answers[name] = probabilities(port, payload)
            load(port, payload, 8, 2.0)  # warm-up
            os.killpg(proc.pid, signal.SIGSTOP)
        load_before = os.getloadavg()[0]
        for round_ in range(args.rounds):
            console.print(f"round {round_ + 1} of {args.rounds} ...")
            for name, (_, port, _, payload) in servers.items():
                os.killpg(procs[name].pid, signal.SIGCONT)
                time.sleep(1.0)
                runs[name]["c1"].append(load(port, payload, 1, args.seconds))
                runs[name]["c32"].append(load(port, payload, 32, args.seconds))
                os.killpg(procs[name].pid, signal.SIGSTOP)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGCONT)
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)

    def med(name: str, level: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name][level])

    anchor = next(iter(servers))
    table = Table(title=f"gRPC ModelInfer, one churn record per request; one worker on core 0, "
                        f"the client on core 1; medians of {args.rounds} alternating rounds of "
                        f"{args.seconds:g} s; load average {load_before:.1f} before, "
                        f"{os.getloadavg()[0]:.1f} after, on {os.cpu_count()} cores")
    for heading in ("server", "c=32 req/s", "c=32 p99 ms", "c=1 p50 ms", "c=1 p99 ms",
                    "errors", "req/s vs MLServer", "P(churn)", "same as pipeline"):
        table.add_column(heading, justify="right")
    for name in servers:
        errors = sum(r["errors"] for level in ("c1", "c32") for r in runs[name][level])
        table.add_row(name, f"{med(name, 'c32', 'rps'):,.0f}", f"{med(name, 'c32', 'p99'):.2f}",
                      f"{med(name, 'c1', 'p50'):.2f}", f"{med(name, 'c1', 'p99'):.2f}",
                      f"{errors:.0f}",
                      f"{med(name, 'c32', 'rps') / med(anchor, 'c32', 'rps'):.1f}x",
                      f"{answers[name][-1]:.12f}",
                      "yes" if np.allclose(answers[name], expected, atol=1e-9) else "NO")
    console.print(table)
    shutil.rmtree(work, ignore_errors=True)


def ensure_mlserver(venv: Path) -> Path:
    """MLServer's command in ``venv``, building the environment first if it is missing, with
    the scikit-learn and LightGBM versions flywheel trained with (so the pipeline unpickles)."""
    command = venv / "bin" / "mlserver"
    if command.exists():
        return command
    import lightgbm
    import sklearn

    Console().print(f"building MLServer's environment in {venv} ...")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "mlserver==1.7.*",
                    "mlserver-sklearn==1.7.*", f"scikit-learn=={sklearn.__version__}",
                    f"lightgbm=={lightgbm.__version__}"], check=True)
    return command


def mlserver_model(folder: Path, pipeline: Any) -> Path:
    """MLServer's model folder for ``pipeline`` (joblib, as mlserver-sklearn loads it).

    The pipeline's FunctionTransformers call flywheel's converters
    (``flywheel.features._convert``); MLServer's environment gets those two modules' source
    under ``shim/`` rather than flywheel and its dependencies.
    """
    from flywheel.data import category_strings
    from flywheel.features import _convert

    model_dir = folder / "churn"
    model_dir.mkdir(parents=True)
    joblib.dump(pipeline, model_dir / "model.joblib")
    (model_dir / "model-settings.json").write_text(json.dumps({
        "name": "churn", "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib", "version": "1"}}))
    (folder / "settings.json").write_text(json.dumps({"parallel_workers": 0}))
    shim = folder / "shim" / "flywheel"
    (shim / "features").mkdir(parents=True)
    (shim / "data").mkdir()
    (shim / "__init__.py").write_text("")
    (shim / "features" / "__init__.py").write_text("")
    (shim / "features" / "_convert.py").write_text(inspect.getsource(_convert))
    (shim / "data" / "__init__.py").write_text(
        "import numpy as np\nimport pandas as pd\n\n\n" + inspect.getsource(category_strings))
    return model_dir


def request_bytes(record: dict[str, Any], kinds: dict[str, str], *, name: str,
                  output: str | None) -> bytes:
    """One record as a serialized ModelInferRequest: typed contents, one tensor per column.

    The ``content_type`` parameters are MLServer's (a DataFrame, text columns as str);
    flywheel reads the tensors by name and datatype and ignores them. ``output``: the one
    output to ask for (None: the server's default, flywheel's labels and probabilities).
    """
    request = pb.ModelInferRequest(model_name=name, id="bench")
    request.parameters["content_type"].string_param = "pd"
    if output is not None:
        request.outputs.add(name=output)
    for column, kind in kinds.items():
        numeric = kind in ("numeric", "integer")
        tensor = request.inputs.add(name=column, datatype="FP64" if numeric else "BYTES",
                                    shape=[1])
        if numeric:
            tensor.contents.fp64_contents.append(float(record[column]))
        else:
            tensor.parameters["content_type"].string_param = "str"
            tensor.contents.bytes_contents.append(str(record[column]).encode())
    return request.SerializeToString()


def probabilities(port: int, payload: bytes) -> np.ndarray:
    """The probabilities a server answers ``payload`` with (flywheel's ``probabilities``
    output, MLServer's ``predict_proba``; raw or typed contents)."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        raw = channel.unary_unary(INFER)(payload, timeout=30)
    response = pb.ModelInferResponse.FromString(raw)
    for index, output in enumerate(response.outputs):
        if output.name in ("predict_proba", "probabilities"):
            if response.raw_output_contents:
                return np.frombuffer(response.raw_output_contents[index], "<f8")
            return np.array(output.contents.fp64_contents)
    raise SystemExit(f"no probabilities in the answer of port {port}: {response}")


def load(port: int, payload: bytes, concurrency: int, seconds: float) -> dict[str, float]:
    """Requests/s and latency percentiles of ``concurrency`` callers for ``seconds``, from a
    child process pinned to core 1 (the servers are on core 0)."""
    script = (
        "import asyncio, json, sys, time, grpc\n"
        "port, concurrency, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])\n"
        "payload = sys.stdin.buffer.read()\n"
        "async def run():\n"
        "    async with grpc.aio.insecure_channel(f'127.0.0.1:{port}') as channel:\n"
        f"        call = channel.unary_unary({INFER!r})\n"
        "        latencies, errors = [], 0\n"
        "        stop = time.perf_counter() + seconds\n"
        "        async def caller():\n"
        "            nonlocal errors\n"
        "            while time.perf_counter() < stop:\n"
        "                began = time.perf_counter()\n"
        "                try:\n"
        "                    await call(payload, timeout=10)\n"
        "                except grpc.RpcError:\n"
        "                    errors += 1\n"
        "                latencies.append(time.perf_counter() - began)\n"
        "        began = time.perf_counter()\n"
        "        await asyncio.gather(*(caller() for _ in range(concurrency)))\n"
        "        elapsed = time.perf_counter() - began\n"
        "    latencies.sort()\n"
        "    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1e3\n"
        "    print(json.dumps({'rps': len(latencies) / elapsed, 'p50': pick(0.5),\n"
        "                      'p99': pick(0.99), 'errors': errors}))\n"
        "asyncio.run(run())\n")
    done = subprocess.run(["taskset", "-c", "1", sys.executable, "-c", script, str(port),
                           str(concurrency), str(seconds)], input=payload,
                          capture_output=True, check=True)
    result: dict[str, float] = json.loads(done.stdout)
    return result


def wait_ready(port: int, proc: subprocess.Popen[bytes], log: Path,
               timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    ready = pb.ServerReadyRequest().SerializeToString()
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited early ({proc.args}):\n{log.read_text()[-3000:]}")
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                answer = channel.unary_unary(READY)(ready, timeout=2)
            if pb.ServerReadyResponse.FromString(answer).ready:
                return
        except grpc.RpcError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"not ready on gRPC port {port}:\n{log.read_text()[-3000:]}")


if __name__ == "__main__":
    main()
