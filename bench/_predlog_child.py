"""One measurement of predlog_windows.py in a fresh process, printed as JSON on the last line
(the parent measures peak memory).

    python bench/_predlog_child.py read LOCATION LAST   # read_predictions(last=LAST), labels
    python bench/_predlog_child.py tick CONFIG          # a RetrainingLoop's first two ticks
    python bench/_predlog_child.py monitor CONFIG       # flywheel monitor --last 5000 ...

``log_s`` is the time spent reading (and keeping up) the prediction log within the command:
the reader's entry points are wrapped with a timer. ``imports_s`` is the time importing the
command's modules before it runs (``seconds`` then is the command itself).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

BEGAN = time.perf_counter()

SPENT = [0.0]


def _timed(function: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            SPENT[0] += time.perf_counter() - started
    return wrapper


def _time_log_reads() -> None:
    # The modules the command imports as it runs, imported first so that their time counts
    # as start-up (the command's total is the same).
    import flywheel.monitoring
    import flywheel.pipelines.loop as loop
    import flywheel.pipelines.monitor
    import flywheel.predlog._read as reader
    import flywheel.registry  # noqa: F401 - MLflow

    reader._read_kind = _timed(reader._read_kind)  # read_predictions and read_feedback
    loop.count_rows = _timed(loop.count_rows)
    loop.maintain_log = _timed(loop.maintain_log)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "read":
        from flywheel.predlog import read_predictions

        started = time.perf_counter()
        rows = read_predictions(sys.argv[2], last=int(sys.argv[3]))
        out: dict[str, Any] = {"seconds": time.perf_counter() - started, "rows": len(rows),
                               "labelled": int(rows["label"].notna().sum())}
    elif mode == "tick":
        from flywheel.pipelines._context import ProjectContext
        from flywheel.pipelines.loop import RetrainingLoop

        _time_log_reads()
        project = ProjectContext.load(sys.argv[2])
        loop = RetrainingLoop(project)
        project.registry().alias_version("champion")  # the client built before timing
        imported = time.perf_counter() - BEGAN
        started = time.perf_counter()
        result = loop.tick()
        out = {"seconds": time.perf_counter() - started, "log_s": SPENT[0],
               "imports_s": imported, "action": result.action, "detail": result.detail[:80]}
        # The next tick of the same loop, as `flywheel loop` runs it: the version, its model
        # and its reference contributions are loaded already; the window is read and
        # monitored again in full (the state is reset so that the tick does not wait).
        loop.state_path.unlink(missing_ok=True)
        SPENT[0] = 0.0
        started = time.perf_counter()
        again = loop.tick()
        out.update(next_seconds=time.perf_counter() - started, next_log_s=SPENT[0],
                   next_action=again.action)
    else:
        from flywheel.cli.main import app

        _time_log_reads()
        imported = time.perf_counter() - BEGAN
        started = time.perf_counter()
        try:
            app(["monitor", "--last", "5000", "--no-report", "--json", "--config", sys.argv[2]],
                standalone_mode=False)
        except SystemExit:
            pass
        out = {"seconds": time.perf_counter() - started, "log_s": SPENT[0],
               "imports_s": imported}
    print("\n" + json.dumps(out))
