"""User checks, as mltrace users know them: callables run on a component's inputs or outputs.

A check receives one dict (``{name: data}`` of the inputs for ``before`` checks, of the outputs
for ``after`` checks) and returns ``True``/``False``, a ``(passed, message)`` pair, or ``None``
(passed). Raising counts as failing, with the exception as the message; an ``assert`` inside a
check is the idiomatic way to write one. Every result becomes an ``mlobs.check`` event. A failure
warns with :class:`CheckFailedWarning` and lets the run go on, unless the component was declared
with ``stop_on_check_failure=True``: then :class:`CheckFailed` is raised after the result is on
the span.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Check = Callable[[dict[str, Any]], Any]


class CheckFailedWarning(UserWarning):
    """A user check failed; the run went on."""


class CheckFailed(Exception):
    """A user check failed on a component declared with ``stop_on_check_failure=True``."""

    def __init__(self, name: str, phase: str, message: str) -> None:
        self.name = name
        self.phase = phase
        self.message = message
        super().__init__(f"{phase} check {name!r} failed" + (f": {message}" if message else ""))


def check_name(check: Check) -> str:
    """The callable's name (``functools.partial`` objects report the wrapped function's)."""
    target = getattr(check, "func", check)
    return str(
        getattr(target, "__qualname__", None)
        or getattr(target, "__name__", None)
        or type(check).__name__
    )


def evaluate(check: Check, data: dict[str, Any]) -> tuple[bool, str]:
    """Run one check: (passed, message). Never raises for the check's own errors."""
    try:
        result = check(data)
    except Exception as exc:  # noqa: BLE001 - a raising check is a failing check
        text = str(exc)
        return False, f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return interpret(result)


def interpret(result: Any) -> tuple[bool, str]:
    """Read a check's return value: bool, (bool, message) or None."""
    if result is None:
        return True, ""
    message = ""
    if isinstance(result, tuple) and len(result) == 2:
        result, message = result
    if bool(result):
        return True, ""  # the contract keeps messages for failures
    return False, str(message) if message else "check returned False"
