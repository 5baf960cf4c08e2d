"""How OpenMP threads (LightGBM, scikit-learn, XGBoost) wait, set per kind of process.

By default an OpenMP thread that runs out of work spins for a while before it sleeps. On cores
of its own that is what makes a small multi-threaded fit fast: with the threads told to sleep
at once (``OMP_WAIT_POLICY=PASSIVE``), 1,000 LightGBM rounds on 5,600 rows with two threads took
11.2 s on a quiet two-core machine against 1.5 s spinning. When the cores are shared (a server
answering requests, a load generator, a retraining beside them) it turns around: with both
cores busy the spinning fit took 11.2 s against 4.3 s sleeping, and a fit inside a serving
test once took 298 s spinning against 6 s.

So a process that serves, or runs beside a server by design (``flywheel serve``, ``loop``,
``demo``, ``backtest``, ``stream``), calls :func:`share_cores` before anything loads the OpenMP
runtime, and ``flywheel train`` and the Python API keep OpenMP's default. A value the user
exported wins either way.
"""

from __future__ import annotations

import os

WAIT_POLICY = "OMP_WAIT_POLICY"


def share_cores() -> None:
    """Let OpenMP threads sleep while they wait, unless the user chose a wait policy.

    It takes effect only if no OpenMP runtime has loaded in this process yet (the runtime reads
    the variable once, when it loads); processes this one starts inherit it.
    """
    os.environ.setdefault(WAIT_POLICY, "PASSIVE")
