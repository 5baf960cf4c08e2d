"""``python -m flywheel.predlog SPOOL LOCATION PREFIX``: the converter process a server
starts."""

from __future__ import annotations

import sys

from flywheel.predlog._spool import run_converter

if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: python -m flywheel.predlog SPOOL LOCATION PREFIX")
    run_converter(sys.argv[1], sys.argv[2], sys.argv[3])
