"""`flywheel serve` as a child process: started, waited for, stopped (the demo and tests)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

__all__ = ["ServerProcess", "free_port"]


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """One `flywheel serve` process for the project at ``root``.

    Args:
        poll: Seconds between the server's registry checks (how fast it follows aliases).
        env: Extra environment variables.
        args: Extra arguments of `flywheel serve` (``["--grpc-port", "50051"]``).
    """

    def __init__(self, root: Path, *, poll: float = 0.5, port: int | None = None,
                 env: dict[str, str] | None = None, log_file: Path | None = None,
                 args: Sequence[str] = ()) -> None:
        self.root = root
        self.poll = poll
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env or {}
        self.log_file = log_file
        self.args = list(args)
        self.proc: subprocess.Popen[str] | None = None

    def start(self, *, timeout: float = 120.0) -> ServerProcess:
        """Start and wait until ``/readyz`` answers 200.

        Raises:
            RuntimeError: If the server exits or is not ready within ``timeout`` seconds.
        """
        out = open(self.log_file, "a") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flywheel.cli.main", "serve", "--config", str(self.root),
             "--port", str(self.port), "--poll-interval", str(self.poll), *self.args],
            env={**os.environ, **self.env}, stdout=out, stderr=out, text=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"flywheel serve exited with code {self.proc.returncode}"
                                   + (f"; see {self.log_file}" if self.log_file else ""))
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"flywheel serve was not ready within {timeout:.0f} s")

    def stop(self, sig: int = signal.SIGTERM, *, timeout: float = 30.0) -> int | None:
        """Stop the server (SIGTERM: graceful, the prediction log is flushed)."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
