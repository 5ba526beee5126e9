"""External binaries the tests use (prometheus, promtool, docker-compose, chromium, amtool).

When ``MLOBS_REQUIRE_PROMETHEUS=1`` (set by CI) a missing binary fails the test instead of
skipping it, so a green CI run proves the live checks actually ran.
"""

from __future__ import annotations

import os
import shutil

import pytest


def required() -> bool:
    """True when missing external tools must fail the tests."""
    return os.environ.get("MLOBS_REQUIRE_PROMETHEUS", "") not in ("", "0", "false", "no")


def need(binary: str) -> str:
    """Path of ``binary``; skip (or fail, under CI) when it is not on PATH."""
    path = shutil.which(binary)
    if path is None:
        message = f"{binary} is not on PATH (Debian: apt-get install the package that ships it)"
        if required():
            pytest.fail(message)
        pytest.skip(message)
    return path
