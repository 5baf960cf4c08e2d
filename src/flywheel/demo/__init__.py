"""The bundled demo (nycflights13 and the whole loop on it) and the backtest it runs, for any
time-ordered history."""

from flywheel.demo._backtest import BacktestSettings, run_backtest, split_history
from flywheel.demo._flights import (
    FEATURES,
    TARGET,
    TIME_COLUMN,
    data_folder,
    load_flights,
    load_weather,
    months,
)
from flywheel.demo._run import DemoSettings, run_demo, weather_view
from flywheel.demo._server import ServerProcess, free_port
from flywheel.demo._views import BacktestView

__all__ = ["FEATURES", "TARGET", "TIME_COLUMN", "BacktestSettings", "BacktestView",
           "DemoSettings", "ServerProcess", "data_folder", "free_port", "load_flights",
           "load_weather", "months", "run_backtest", "run_demo", "split_history",
           "weather_view"]
