"""A throwaway ``redis-server`` on a free loopback port, for tests and benchmarks."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from flywheel.testing._binaries import require_binary

__all__ = ["RedisServer"]


class RedisServer:
    """``redis-server`` without persistence, in ``folder``, on a free loopback port.

    Use as a context manager; ``url`` is ``redis://127.0.0.1:PORT``. Under ``CI=true`` a missing
    binary fails the test instead of skipping it (``require_binary``).
    """

    def __init__(self, folder: str | Path, *, cpu: int | None = None) -> None:
        self.folder = Path(folder)
        self.cpu = cpu
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> RedisServer:
        """Start the server and wait until it answers PING.

        Raises:
            RuntimeError: If it exits or does not answer within ``timeout`` seconds.
        """
        binary = require_binary("redis-server", install="redis-server (apt-get install "
                                                        "redis-server)")
        self.folder.mkdir(parents=True, exist_ok=True)
        command = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--dir", str(self.folder), "--protected-mode", "no"]
        if self.cpu is not None:
            command = ["taskset", "-c", str(self.cpu), *command]
        log = (self.folder / "redis.log").open("wb")
        self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self._process.returncode}: "
                                   f"{(self.folder / 'redis.log').read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port} in {timeout:g} s")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
