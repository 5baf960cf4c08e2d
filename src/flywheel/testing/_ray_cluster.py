"""A real Ray cluster of two (or more) nodes on loopback: `ray start --head` and `ray start
--address` processes, one CPU each, for the tests and benchmarks of the Ray backends.

Each node runs ``ray start --block`` in its own process group, so stopping the cluster ends
exactly the processes it started (no machine-wide ``ray stop``).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from flywheel.demo import free_port

__all__ = ["RayCluster"]

_OBJECT_STORE_BYTES = 200_000_000


class RayCluster:
    """A head node and ``nodes - 1`` worker nodes on 127.0.0.1, with logs under ``root``.

    Args:
        root: A folder for the nodes' logs and Ray's session files.
        nodes: Nodes to start, the head included.
        cpus: CPUs each node offers.
        object_store_bytes: Each node's object store (kept small: the machine is shared).
        env: Extra environment variables for the nodes (and so their workers).

    Use as a context manager. ``address`` (HOST:PORT of the head's GCS) is what
    ``training.search.ray_address`` takes; ``client_address`` is the Ray Client form.
    """

    def __init__(self, root: Path, *, nodes: int = 2, cpus: int = 1,
                 object_store_bytes: int = _OBJECT_STORE_BYTES,
                 env: dict[str, str] | None = None) -> None:
        self.root = root
        # Ray enables token authentication when ~/.ray/auth_token exists; a throwaway loopback
        # cluster runs without it, so any client on this machine can join.
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled",
                    **(env or {})}
        self.nodes, self.cpus, self.object_store_bytes = nodes, cpus, object_store_bytes
        self.port = free_port()
        self.client_port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.client_address = f"ray://127.0.0.1:{self.client_port}"
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(self, *, timeout: float = 90.0) -> RayCluster:
        """Start the head, then the other nodes; wait until every node is alive."""
        self.root.mkdir(parents=True, exist_ok=True)
        common = ["--block", "--num-cpus", str(self.cpus), "--node-ip-address", "127.0.0.1",
                  "--object-store-memory", str(self.object_store_bytes),
                  "--disable-usage-stats"]
        self._spawn("head", ["--head", "--port", str(self.port),
                             "--ray-client-server-port", str(self.client_port),
                             "--include-dashboard=false", "--temp-dir",
                             str(self._temp_dir()), *common])
        self._wait_until(1, timeout)
        for index in range(1, self.nodes):
            self._spawn(f"node{index}", ["--address", self.address, *common])
        self._wait_until(self.nodes, timeout)
        return self

    def _temp_dir(self) -> Path:
        # Ray's socket paths must stay under 107 bytes, so the session lives in a short path.
        short = Path("/tmp") / f"fw-ray-{self.port}"
        short.mkdir(parents=True, exist_ok=True)
        return short

    def _spawn(self, name: str, args: list[str]) -> None:
        ray = Path(sys.executable).with_name("ray")
        with open(self.root / f"{name}.log", "ab") as log:
            self._procs.append(subprocess.Popen([str(ray), "start", *args], stdout=log,
                                                stderr=log, env=self.env,
                                                start_new_session=True))

    def _wait_until(self, nodes: int, timeout: float) -> None:
        """Poll the head's GCS (in a child process, so this one holds no Ray connection)."""
        code = ("import sys, time, ray; ray.init(address=sys.argv[1], logging_level='ERROR', "
                "log_to_driver=False)\n"
                "while sum(n['Alive'] for n in ray.nodes()) < int(sys.argv[2]): time.sleep(0.2)")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [p for p in self._procs if p.poll() is not None]
            if dead:
                self.stop()
                raise RuntimeError(f"a `ray start` exited with {dead[0].returncode}; see the "
                                   f"logs in {self.root}")
            try:
                out = subprocess.run([sys.executable, "-c", code, self.address, str(nodes)],
                                     capture_output=True, timeout=max(1.0, deadline -
                                                                      time.monotonic()),
                                     env=self.env)
            except subprocess.TimeoutExpired:
                break
            if out.returncode == 0:
                return
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"the Ray cluster did not reach {nodes} alive node(s) within "
                           f"{timeout:.0f} s; see the logs in {self.root}")

    def worker_pids(self) -> list[int]:
        """Processes of this cluster (found by its session folder), the nodes' own included."""
        marker = str(self._temp_dir()).encode()
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if marker in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
        return pids

    def stop(self) -> None:
        """End every process the nodes started: SIGTERM to each group, SIGKILL after 5 s;
        then any Ray worker that left the groups (they start their own sessions)."""
        for proc in reversed(self._procs):
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in reversed(self._procs):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal_group(proc, signal.SIGKILL)
        if self._procs:
            for pid in self.worker_pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        self._procs.clear()

    def __enter__(self) -> RayCluster:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
