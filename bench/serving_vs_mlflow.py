"""flywheel serve against `mlflow models serve` (the anchor) and a bare ASGI handler, same model.

One registered LightGBM pipeline for mlc_churn, or with `--ensemble N` the greedy ensemble of
up to N LightGBM trials (`training.ensemble: {size: N}`, `--learners` for others) that training
registers, compiled for serving (one encoding per distinct feature step, each member's model
on it). Each server runs one worker pinned to core 0;
wrk runs pinned to core 1. Prints p50/p99 at concurrency 1 and requests/s and p99 at
concurrency 32, and checks that every server gives the registered model's probabilities for
the same records (exit 1 if one differs by more than 1e-9).

The three servers are started once and measured in alternating rounds (each server, each
round, `--seconds` long); the table shows each figure's median over the rounds, and the range
of the c=1 p99. The servers not being measured are frozen (SIGSTOP to their process group):
idle servers on the same core still wake up now and then, which put the bare handler's p99 at
4 ms instead of 0.3 ms. On a virtual machine whose host is busy, a single 10-second p99 can
swing by milliseconds; alternating rounds expose every server to the same noise, and the CPU
time stolen by the host during the run is printed with the table.

`size` is a maximum: the selection keeps fewer members when more do not improve the
out-of-fold score, and only complete trials are candidates (a pruned one has no out-of-fold
predictions). With the spec's defaults otherwise (pruning on, `candidates` 20, `rounds` 25),
40 LightGBM trials leave 16 complete and the selection kept 3 members at size 5; 80 trials
leave 24 complete and it keeps 5, so `--ensemble` searches 80 trials unless `--trials` says
otherwise. The bench prints the members and weights it kept.

Measured 2026-12-02 with `--ensemble 5` (5 members: trials 39, 14, 41, 51, 5 with weights
0.4, 0.2, 0.1, 0.2, 0.1; roc_auc +0.0020 out of fold, +0.0008 on the holdout; load 0.20 at
the start): flywheel serve c=1 p50 0.21 ms, p99 2.02 ms (1.53-2.67 over 5 rounds), c=32
8,346 req/s, p99 8.84 ms; the bare handler p99 1.24 ms (1.15-2.32); MLflow 37 req/s; no
non-2xx; all three answer the model's probabilities exactly (max |dP| 0 on 20 records). The
issue's "p99 at c=1 under 1 ms" was not met on this machine, by the bare handler either.

Again later that day, same members (load 0.05 at the start, 2.1 at the end): before the
ensemble shared its members' encoding, flywheel serve c=1 p50 0.28 ms, p99 0.51 ms
(0.48-0.69), bare handler p99 0.28 ms; with one encoding per distinct feature step (the five
members have one), p50 0.23 ms, p99 0.35 ms (0.31-0.40), bare handler p99 0.20 ms (load 1.8
at the start, 2.2 at the end). The single model, measured right after on the same machine, was
noisier: p99 3.10 ms with the bare handler at 3.56 ms in the same rounds (load 3.3, other work
on the machine); before the change 3.76 ms, bare handler 3.88 ms (load 3.1). Its p50 was
0.17-0.18 ms either way.
`--learners lightgbm,hist_gradient_boosting` serves a mixed ensemble.

    apt-get install wrk            # the load generator
    python bench/serving_vs_mlflow.py [--seconds 5] [--rounds 5] [--ensemble 5]
        [--learners lightgbm,hist_gradient_boosting]
"""

from __future__ import annotations

import argparse
import json
import math
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
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pandas as pd
import yaml
from rich.console import Console
from rich.table import Table

from flywheel.demo import free_port

if TYPE_CHECKING:
    from flywheel import Project

REPO = Path(__file__).resolve().parents[1]
CHURN = REPO / "examples" / "churn" / "mlc_churn.parquet"
BIN = Path(sys.executable).parent
CHECKED_RECORDS = 20
"""Records each server answers, one per request, before the load; each must give the registered
model's probability."""
ATOL = 1e-9
OUT = Console(soft_wrap=True)


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited early ({proc.args!r})")
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
            raise SystemExit(f"server exited early ({proc.args!r})")
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
    parser.add_argument("--ensemble", type=int, default=1, metavar="N",
                        help="serve the greedy ensemble of up to N LightGBM trials "
                             "(training.ensemble.size: N); 1: the single best trial")
    parser.add_argument("--trials", type=int, default=None,
                        help="search trials (default 10; 80 with --ensemble)")
    parser.add_argument("--candidates", type=int, default=20,
                        help="with --ensemble: training.ensemble.candidates")
    parser.add_argument("--learners", default="lightgbm",
                        help="with --ensemble: training.learners, comma-separated (e.g. "
                             "lightgbm,hist_gradient_boosting for a mixed ensemble)")
    args = parser.parse_args()
    if args.trials is None:
        args.trials = 80 if args.ensemble > 1 else 10
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    from flywheel import Project

    work = Path(tempfile.mkdtemp(prefix="flywheel-serve-bench-"))
    shutil.copy(CHURN, work / "churn.parquet")
    project = Project.init(work / "churn.parquet", "churn", directory=work, name="churn")
    if args.ensemble > 1:
        learners = args.learners.split(",")
        project = ensemble_project(work, args.ensemble, args.candidates, learners)
        OUT.print(f"training an ensemble (size {args.ensemble}) of {args.trials} "
                  f"{'/'.join(learners)} trials for mlc_churn ...")
    else:
        OUT.print("training a LightGBM pipeline for mlc_churn ...")
    started = time.perf_counter()
    result = project.train(trials=args.trials, seed=0)
    registry = project.registry()
    version = result.version.version
    info = registry.version_info(version)
    if "champion" not in info.aliases:
        raise SystemExit(f"version {version} is not champion ({info.aliases}); flywheel serve "
                         "and the bare handler would serve another version than MLflow")
    OUT.print(f"version {version} ({info.tags.get('flywheel.learner')}, trials "
                    f"{result.trials}) in {time.perf_counter() - started:.0f} s; compiled "
                    f"form verified: {info.tags.get('flywheel.compiled.verified')}, max |diff| "
                    f"{info.tags.get('flywheel.compiled.max_abs_diff')}")
    members, kinds = describe_ensemble(registry.run_tags(result.run_id)) \
        if args.ensemble > 1 else (1, "LightGBM")
    frame = pd.read_parquet(CHURN)[project.schema.feature_columns].head(CHECKED_RECORDS)
    records = json.loads(frame.to_json(orient="records"))
    expected = registry.load_model(version).predict_proba(frame)[:, -1]
    record = records[0]
    env = {**os.environ, "MLFLOW_TRACKING_URI": registry.tracking_uri,
           "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true",
           "BARE_CONFIG": str(work / "flywheel.yaml"),
           "PYTHONPATH": f"{REPO / 'src'}:{REPO / 'bench'}",  # this checkout's flywheel
           "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    servers: dict[str, tuple[list[str], str | None, str, Callable[[dict[str, Any]], str]]] = {
        "mlflow models serve": (
            [str(BIN / "mlflow"), "models", "serve", "-m",
             f"models:/{registry.model_name}/{version}",
             "--env-manager", "local", "--workers", "1", "-h", "127.0.0.1", "-p", "{port}"],
            "/ping", "/invocations", lambda r: json.dumps({"dataframe_records": [r]})),
        "flywheel serve": (
            [str(BIN / "flywheel"), "serve", "--config", str(work), "--port", "{port}"],
            "/readyz", "/predict", json.dumps),
        "bare ASGI handler": (
            [str(BIN / "uvicorn"), "_bare_app:app", "--port", "{port}", "--log-level", "warning",
             "--no-access-log"], None, "/", json.dumps),
    }
    procs: list[subprocess.Popen[bytes]] = []
    targets: dict[str, tuple[str, str]] = {}
    answers: dict[str, float] = {}
    worst: dict[str, float] = {}
    runs: dict[str, dict[str, list[dict[str, float]]]] = {n: {"c1": [], "c32": []}
                                                          for n in servers}
    try:
        for name, (command, ready, path, encode) in servers.items():
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
            given = [_positive(httpx.post(url + path, content=encode(r),
                                          headers={"content-type": "application/json"}).json())
                     for r in records]
            answers[name] = given[0]
            worst[name] = max(abs(g - e) if g == g else math.inf
                              for g, e in zip(given, expected, strict=True))
            if name == "flywheel serve":
                form = compiled_form(url, version)
                OUT.print(f"flywheel serve answers version {version} through its "
                                f"{form}")
            body = encode(record)
            wrk(url + path, body, 1, 2)  # warm-up
            targets[name] = (url + path, body)
            os.killpg(proc.pid, signal.SIGSTOP)
        stolen0, total0 = steal_ticks()
        for round_ in range(args.rounds):
            OUT.print(f"round {round_ + 1} of {args.rounds} ...")
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
    model = (f"an ensemble of {members} {kinds} members (size {args.ensemble})"
             if args.ensemble > 1 else "one LightGBM pipeline")
    table = Table(title=f"{model}; one worker on core 0, wrk on core 1, one churn record per "
                        "request; "
                        f"medians of {args.rounds} alternating rounds of {args.seconds} s; "
                        f"CPU stolen by the host during the run: {steal:.1f} %")
    for heading in ("server", "c=1 p50 ms", "c=1 p99 ms", "c=1 p99 range", "c=32 req/s",
                    "c=32 p99 ms", "non-2xx", "req/s vs MLflow", "P(churn)",
                    f"max |dP| vs model, {CHECKED_RECORDS} records"):
        table.add_column(heading, justify="right")
    for name in servers:
        p99s = [r["p99"] for r in runs[name]["c1"]]
        errors = sum(r["errors"] for load in ("c1", "c32") for r in runs[name][load])
        table.add_row(name, f"{med(name, 'c1', 'p50'):.2f}", f"{med(name, 'c1', 'p99'):.2f}",
                      f"{min(p99s):.2f}-{max(p99s):.2f}", f"{med(name, 'c32', 'rps'):,.0f}",
                      f"{med(name, 'c32', 'p99'):.2f}", f"{errors:.0f}",
                      f"{med(name, 'c32', 'rps') / anchor:.1f}x",
                      f"{answers[name]:.12f}", f"{worst[name]:.1e}")
    Console(width=200).print(table)
    shutil.rmtree(work, ignore_errors=True)
    differ = {n: w for n, w in worst.items() if not w <= ATOL}
    if differ:
        raise SystemExit(f"these servers answer other probabilities than the registered model "
                         f"(max |dP| over {CHECKED_RECORDS} records, tolerance {ATOL:g}): "
                         f"{differ}")


def ensemble_project(work: Path, size: int, candidates: int, learners: list[str]) -> Project:
    """The churn project at ``work`` with ``training.ensemble: {size, candidates}`` over
    trials of ``learners``."""
    from flywheel import Project

    spec_path = work / "flywheel.yaml"
    raw = yaml.safe_load(spec_path.read_text())
    training = raw.setdefault("training", {})
    training["learners"] = learners
    training["ensemble"] = {"size": size, "candidates": candidates}
    spec_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return Project.load(spec_path)


def describe_ensemble(tags: dict[str, str]) -> tuple[int, str]:
    """Print the members and weights the selection kept (the run's ``flywheel.ensemble``);
    returns how many members it kept (1: the best trial alone, no ensemble) and their
    learners."""
    if "flywheel.ensemble" not in tags:
        OUT.print("the selection kept the best trial alone: no ensemble was registered")
        return 1, tags.get("flywheel.learner", "?")
    record = json.loads(tags["flywheel.ensemble"])
    for number, learner, weight in zip(record["members"], record["learners"],
                                       record["weights"], strict=True):
        OUT.print(f"  member trial {number} ({learner}), weight {weight:.4f}")
    OUT.print(f"  {record['metric']} out of fold {record['oof_score']:.4f} vs best trial "
                    f"{record['oof_best_single']:.4f} ({record['oof_gain']:+.4f}); holdout "
                    f"{record['holdout_score']:.4f} vs {record['holdout_best_single']:.4f} "
                    f"({record['holdout_gain']:+.4f}); {record['steps']} selection steps")
    return len(record["members"]), "/".join(sorted(set(record["learners"])))


def compiled_form(url: str, version: str) -> str:
    """How flywheel serve answers ``version``: its ``flywheel_model_compiled`` gauge."""
    metrics = httpx.get(url + "/metrics").text
    match = re.search(rf'^flywheel_model_compiled\{{[^}}]*model_version="{version}"[^}}]*\}} '
                      r"([\d.]+)", metrics, re.M)
    if match is None:
        return "unknown form (no flywheel_model_compiled gauge)"
    return "compiled predictor" if float(match[1]) == 1.0 else "scikit-learn pipeline (slow)"


def _positive(answer: object) -> float:
    if isinstance(answer, dict) and "probabilities" in answer:
        return float(answer["probabilities"][0][-1])
    if isinstance(answer, dict) and "predictions" in answer:  # MLflow: predict_proba rows
        first = answer["predictions"][0]
        return float(first[-1] if isinstance(first, list) else list(first.values())[-1])
    return float("nan")


if __name__ == "__main__":
    main()
