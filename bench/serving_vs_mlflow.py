"""flywheel serve against `mlflow models serve` (the anchor) and a bare ASGI handler, same model.

One registered LightGBM pipeline for mlc_churn. Each server runs one worker pinned to core 0;
wrk runs pinned to core 1. Prints p50/p99 at concurrency 1 and requests/s and p99 at
concurrency 32, and checks that the servers give the same probabilities.

The three servers are started once and measured in alternating rounds (each server, each
round, `--seconds` long); the table shows each figure's median over the rounds, and the range
of the c=1 p99. The servers not being measured are frozen (SIGSTOP to their process group):
idle servers on the same core still wake up now and then, which put the bare handler's p99 at
4 ms instead of 0.3 ms. On a virtual machine whose host is busy, a single 10-second p99 can
swing by milliseconds; alternating rounds expose every server to the same noise, and the CPU
time stolen by the host during the run is printed with the table.

    apt-get install wrk            # the load generator
    python bench/serving_vs_mlflow.py [--seconds 5] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pandas as pd
from rich.console import Console
from rich.table import Table

from flywheel.demo import free_port

REPO = Path(__file__).resolve().parents[1]
CHURN = REPO / "examples" / "churn" / "mlc_churn.parquet"
BIN = Path(sys.executable).parent


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


def steal_ticks() -> tuple[int, int]:
    """(stolen, total) CPU ticks since boot, from /proc/stat (0, 1 where unavailable)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 1
    return (fields[7] if len(fields) > 7 else 0), sum(fields)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds")
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
           "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true",
           "BARE_CONFIG": str(work / "flywheel.yaml"),
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
    procs: list[subprocess.Popen[bytes]] = []
    targets: dict[str, tuple[str, str]] = {}
    answers: dict[str, object] = {}
    runs: dict[str, dict[str, list[dict[str, float]]]] = {n: {"c1": [], "c32": []}
                                                          for n in servers}
    try:
        for name, (command, ready, path, body) in servers.items():
            port = free_port()
            cmd = ["taskset", "-c", "0", *[c.replace("{port}", str(port)) for c in command]]
            proc = subprocess.Popen(cmd, env=env, cwd=work, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)
            procs.append(proc)
            url = f"http://127.0.0.1:{port}"
            if ready:
                wait_ready(url + ready, proc)
            else:
                wait_port(port, proc)
            answers[name] = httpx.post(url + path, content=body,
                                       headers={"content-type": "application/json"}).json()
            wrk(url + path, body, 1, 2)  # warm-up
            targets[name] = (url + path, body)
            os.killpg(proc.pid, signal.SIGSTOP)
        stolen0, total0 = steal_ticks()
        for round_ in range(args.rounds):
            Console().print(f"round {round_ + 1} of {args.rounds} ...")
            for proc, (name, (url, body)) in zip(procs, targets.items(), strict=True):
                os.killpg(proc.pid, signal.SIGCONT)
                time.sleep(1.0)
                runs[name]["c1"].append(wrk(url, body, 1, args.seconds))
                runs[name]["c32"].append(wrk(url, body, 32, args.seconds))
                os.killpg(proc.pid, signal.SIGSTOP)
        stolen1, total1 = steal_ticks()
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGCONT)
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)
    steal = 100.0 * (stolen1 - stolen0) / max(1, total1 - total0)

    def med(name: str, load: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name][load])

    anchor = med("mlflow models serve", "c32", "rps")
    table = Table(title=f"One worker on core 0, wrk on core 1, one churn record per request; "
                        f"medians of {args.rounds} alternating rounds of {args.seconds} s; "
                        f"CPU stolen by the host during the run: {steal:.1f} %")
    for heading in ("server", "c=1 p50 ms", "c=1 p99 ms", "c=1 p99 range", "c=32 req/s",
                    "c=32 p99 ms", "non-2xx", "req/s vs MLflow", "P(churn)"):
        table.add_column(heading, justify="right")
    for name in servers:
        p99s = [r["p99"] for r in runs[name]["c1"]]
        errors = sum(r["errors"] for load in ("c1", "c32") for r in runs[name][load])
        table.add_row(name, f"{med(name, 'c1', 'p50'):.2f}", f"{med(name, 'c1', 'p99'):.2f}",
                      f"{min(p99s):.2f}-{max(p99s):.2f}", f"{med(name, 'c32', 'rps'):,.0f}",
                      f"{med(name, 'c32', 'p99'):.2f}", f"{errors:.0f}",
                      f"{med(name, 'c32', 'rps') / anchor:.1f}x",
                      f"{_positive(answers[name]):.12f}")
    Console(width=180).print(table)
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
