"""A real `mlflow server` process on a loopback port, for the registry contract suite."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

from flywheel.demo import free_port

__all__ = ["MlflowServer"]


class MlflowServer:
    """`mlflow server` with its backend store and proxied artifacts under ``root``.

    Args:
        root: A folder the server owns (its SQLite store and artifacts go there).
        backend_store_uri: The server's store; SQLite in ``root`` when not given.
        artifacts_destination: Where the server keeps the artifacts it proxies (``s3://…`` for
            an object store); a folder in ``root`` when not given.
        env: Extra environment for the server (object-store credentials and endpoint).

    Use as a context manager; ``uri`` is the tracking URI clients use.
    """

    def __init__(self, root: Path, *, backend_store_uri: str | None = None,
                 artifacts_destination: str | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.root = root
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.backend_store_uri = backend_store_uri or f"sqlite:///{root / 'server.db'}"
        self.artifacts = root / "server-artifacts"
        self.artifacts_destination = artifacts_destination or self.artifacts.as_uri()
        self.env = env or {}
        self.log_file = root / "mlflow-server.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout: float = 120.0) -> MlflowServer:
        """Start the server and wait until ``/health`` answers.

        Raises:
            RuntimeError: If it exits or is not healthy within ``timeout`` seconds.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
        with open(self.log_file, "ab") as log:
            self._proc = subprocess.Popen(
                [mlflow, "server", "--host", "127.0.0.1", "--port", str(self.port),
                 "--workers", "1", "--backend-store-uri", self.backend_store_uri,
                 "--serve-artifacts", "--artifacts-destination", self.artifacts_destination],
                stdout=log, stderr=log,
                env={**os.environ, **self.env, "MLFLOW_TRACKING_URI": ""})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited with code {self._proc.returncode}; "
                                   f"see {self.log_file}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.uri}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"mlflow server was not healthy within {timeout:.0f} s:\n"
                           f"{self.log_tail()}")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 20 s)."""
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def log_tail(self, lines: int = 30) -> str:
        """The last lines the server wrote."""
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> MlflowServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
