"""flywheel serve against `mlflow models serve` (the anchor) and a bare ASGI handler, same model.

One registered LightGBM pipeline for mlc_churn. Each server runs one worker pinned to core 0;
wrk runs pinned to core 1. Prints p50/p99 at concurrency 1 and requests/s and p99 at
concurrency 32, and checks that the servers give the same probabilities.

    apt-get install wrk            # the load generator
    python bench/serving_vs_mlflow.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pandas as pd
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
CHURN = REPO / "examples" / "churn" / "mlc_churn.parquet"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited early ({proc.args})")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"server not ready: {url}")


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited early ({proc.args})")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise SystemExit(f"nothing listens on port {port}")


def wrk(url: str, body: str, connections: int, seconds: int) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                     f"wrk.body = {json.dumps(body)}\n")
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}",
                          f"-d{seconds}s", "--latency", "-s", script.name, url],
                         capture_output=True, text=True, check=True).stdout
    os.unlink(script.name)

    def ms(label: str) -> float:
        match = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if match is None:
            return float("nan")
        value, unit = float(match[1]), match[2]
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"p50": ms("50"), "p99": ms("99"), "rps": rps,
            "errors": float(errors[1]) if errors else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    from flywheel import Project

    work = Path(tempfile.mkdtemp(prefix="flywheel-serve-bench-"))
    shutil.copy(CHURN, work / "churn.parquet")
    project = Project.init(work / "churn.parquet", "churn", directory=work, name="churn")
    Console().print("training a LightGBM pipeline for mlc_churn ...")
    project.train(trials=10, seed=0)
    registry = project.registry()
    record = json.loads(pd.read_parquet(CHURN)[project.schema.feature_columns]
                        .head(1).to_json(orient="records"))[0]
    env = {**os.environ, "MLFLOW_TRACKING_URI": registry.tracking_uri,
           "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true", "BARE_CONFIG": str(work / "flywheel.yaml"),
           "PYTHONPATH": str(REPO / "bench"), "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    servers = {
        "mlflow models serve": (
            [str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{registry.model_name}/1",
             "--env-manager", "local", "--workers", "1", "-h", "127.0.0.1", "-p", "{port}"],
            "/ping", "/invocations", json.dumps({"dataframe_records": [record]})),
        "flywheel serve": (
            [str(BIN / "flywheel"), "serve", "--config", str(work), "--port", "{port}"],
            "/readyz", "/predict", json.dumps(record)),
        "bare ASGI handler": (
            [str(BIN / "uvicorn"), "_bare_app:app", "--port", "{port}", "--log-level", "warning",
             "--no-access-log"], None, "/", json.dumps(record)),
    }
    results: dict[str, dict[str, object]] = {}
    for name, (command, ready, path, body) in servers.items():
        port = free_port()
        cmd = ["taskset", "-c", "0", *[c.replace("{port}", str(port)) for c in command]]
        proc = subprocess.Popen(cmd, env=env, cwd=work, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            if ready:
                wait_ready(url + ready, proc)
            else:
                wait_port(port, proc)
            answer = httpx.post(url + path, content=body,
                                headers={"content-type": "application/json"}).json()
            wrk(url + path, body, 1, 2)  # warm-up
            c1 = wrk(url + path, body, 1, args.seconds)
            c32 = wrk(url + path, body, 32, args.seconds)
            results[name] = {"answer": answer, "c1": c1, "c32": c32}
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)
    anchor = results["mlflow models serve"]["c32"]["rps"]  # type: ignore[index]
    table = Table(title="One worker on core 0, wrk on core 1, one churn record per request")
    for heading in ("server", "c=1 p50 ms", "c=1 p99 ms", "c=32 req/s", "c=32 p99 ms",
                    "non-2xx", "req/s vs MLflow", "P(churn)"):
        table.add_column(heading, justify="right")
    for name, r in results.items():
        c1, c32, answer = r["c1"], r["c32"], r["answer"]
        proba = _positive(answer)
        table.add_row(name, f"{c1['p50']:.2f}", f"{c1['p99']:.2f}", f"{c32['rps']:,.0f}",  # type: ignore[index]
                      f"{c32['p99']:.2f}", f"{c1['errors'] + c32['errors']:.0f}",  # type: ignore[index]
                      f"{c32['rps'] / anchor:.1f}x", f"{proba:.12f}")  # type: ignore[index]
    Console(width=160).print(table)
    shutil.rmtree(work, ignore_errors=True)


def _positive(answer: object) -> float:
    if isinstance(answer, dict) and "probabilities" in answer:
        return float(answer["probabilities"][0][-1])
    if isinstance(answer, dict) and "predictions" in answer:  # MLflow: predict_proba rows
        first = answer["predictions"][0]
        return float(first[-1] if isinstance(first, list) else list(first.values())[-1])
    return float("nan")


if __name__ == "__main__":
    main()
