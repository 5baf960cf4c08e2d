"""Shared by the integration tests: `flywheel serve` for a trained project, ready to call."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from flywheel.demo import ServerProcess

REPO = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "s3cret"


def start_server(root: Path, *, poll: float = 0.5, timeout: float = 90.0,
                 args: Sequence[str] = ()) -> ServerProcess:
    """`flywheel serve` for the project at ``root`` (the demo's ``ServerProcess``), once
    ``/readyz`` answers 200.

    The server can import the tests' custom learners (``tests.estimators``) and takes the
    admin token ``s3cret``; its output goes to ``.flywheel/serve.log``. ``args`` are more
    options of `flywheel serve` (``--grpc-port``).

    Raises:
        AssertionError: If the server exits or is not ready in time (with its log's end).
    """
    log_file = root / ".flywheel" / "serve.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    server = ServerProcess(root, poll=poll, log_file=log_file,
                           env={"PYTHONPATH": str(REPO), "FLYWHEEL_ADMIN_TOKEN": ADMIN_TOKEN},
                           args=args)
    try:
        return server.start(timeout=timeout)
    except RuntimeError as exc:
        raise AssertionError(f"{exc}:\n{log_file.read_text()[-4000:]}") from None
