"""Optional engines the exporters need, imported only when an export runs."""

from __future__ import annotations

import importlib.util

from flywheel.core.errors import ConfigError

__all__ = ["require_extra"]


def require_extra(module: str, extra: str, command: str) -> None:
    """Check that ``module`` can be imported, without importing it.

    Raises:
        ConfigError: If it is not installed; the message names the extra to install.
    """
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):  # ValueError: blocked (sys.modules[module] is None)
        found = None
    if found is None:
        raise ConfigError(f"{command} needs {module}, which is not installed; "
                          f"pip install flywheel[{extra}].")
