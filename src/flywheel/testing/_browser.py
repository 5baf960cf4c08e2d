"""Render a local HTML page in headless Chromium and keep the screenshot."""
from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from flywheel.testing._binaries import require_binary

# The machine's network is closed: without these flags Chromium keeps opening connections
# that are refused, and it stalls or fails at start.
_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--hide-scrollbars")


def screenshot(page: Path, shot: Path, *, width: int, height: int, timeout: float = 120) -> Path:
    """Open `page` in headless Chromium at `width`×`height` and write a PNG to `shot`.

    Skips (fails under `CI=true`) when Chromium is not installed.
    """
    chromium = require_binary("chromium", "chromium-browser",
                              install="Debian's `chromium` package (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="flywheel-chromium-") as profile:
        subprocess.run([chromium, *_FLAGS, f"--user-data-dir={profile}",
                        f"--window-size={width},{height}", f"--screenshot={shot}",
                        page.resolve().as_uri()],
                       capture_output=True, timeout=timeout, check=True)
    return shot
