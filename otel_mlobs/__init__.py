"""otel-mlobs: bolt-on observability for ML pipelines, built on OpenTelemetry.

The public SDK names are importable from here (``import otel_mlobs as mlobs; mlobs.observe``).
They load on first use, so importing the package (for example by the processor or the CLI) does
not pull in the SDK's dependencies.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_SDK_NAMES = frozenset(
    {
        "CheckFailed",
        "CheckFailedWarning",
        "DEFAULT_QUANTILE_LEVELS",
        "FrameSummary",
        "Run",
        "component",
        "configure",
        "content_pointer",
        "current_run",
        "flush",
        "log_feedback",
        "log_predictions",
        "log_reference",
        "observe",
        "shutdown",
        "stats",
        "summarize_frame",
    }
)

__all__ = sorted(_SDK_NAMES)

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from otel_mlobs.sdk import (  # noqa: F401
        DEFAULT_QUANTILE_LEVELS,
        CheckFailed,
        CheckFailedWarning,
        FrameSummary,
        Run,
        component,
        configure,
        content_pointer,
        current_run,
        flush,
        log_feedback,
        log_predictions,
        log_reference,
        observe,
        shutdown,
        stats,
        summarize_frame,
    )


def __getattr__(name: str) -> Any:
    if name in _SDK_NAMES:
        value = getattr(importlib.import_module("otel_mlobs.sdk"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'otel_mlobs' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _SDK_NAMES)
