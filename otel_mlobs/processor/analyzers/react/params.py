"""Parsing of query parameters, which arrive as strings from the HTTP API and the CLI."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def parse_time(value: Any) -> float | None:
    """Seconds since the epoch from a number, a numeric string or an ISO 8601 time (UTC if naive).

    ``None`` and ``""`` mean "now" (the latest event time seen) and come back as ``None``.
    """
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(
            f"bad time {text!r}: give seconds since the epoch or ISO 8601, "
            "e.g. 2024-03-01T12:00:00Z"
        ) from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def parse_int(value: Any, default: int, name: str, lo: int = 1, hi: int = 1_000) -> int:
    """A bounded integer parameter; a clear error names the parameter and its range."""
    if value is None or value == "":
        return default
    try:
        out = int(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"'{name}' must be an integer, got {value!r}") from exc
    if not lo <= out <= hi:
        raise ValueError(f"'{name}' must be between {lo} and {hi}, got {out}")
    return out


def iso(ts: float | None) -> str | None:
    """ISO 8601 (UTC, seconds) of an epoch time, for people reading JSON."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
