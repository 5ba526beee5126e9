"""The ``mlobs`` command.

Each subcommand lives in its own module, which exposes ``register(subparsers)``: it calls
``subparsers.add_parser(...)``, adds its options and ``set_defaults(func=run)`` where
``run(args) -> int`` is the exit code. Add a subcommand by appending its module to
:data:`SUBCOMMANDS`; keep heavy imports inside ``run`` so ``mlobs --help`` stays fast.

Options declared with :func:`env_option` also read ``MLOBS_<OPTION>`` from the environment
(``--grpc-port`` <- ``MLOBS_GRPC_PORT``); a flag on the command line wins over the variable,
and a bad value in either is an argparse error (exit 2) that names where it came from.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

SUBCOMMANDS: list[str] = [
    "otel_mlobs.processor.command",
    "otel_mlobs.demo",
    "otel_mlobs.query_cli",
    "otel_mlobs.report",
    "otel_mlobs.healthcheck",
]
"""Modules that each register one subcommand with ``register(subparsers)``."""

_ENV_SPECS = "_mlobs_env_specs"
_PARSER = "_mlobs_parser"


# --- argument types shared by subcommands -----------------------------------------------------


def port(text: str) -> int:
    """A TCP port, 0 meaning "any free port"."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not in 0..65535 (0 picks a free port)")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


_SIZE = re.compile(r"^\s*(\d+)\s*(|b|k|kb|kib|m|mb|mib|g|gb|gib)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def byte_size(text: str) -> int:
    """A positive size in bytes: ``67108864``, ``64MiB``, ``512k`` (binary multiples)."""
    match = _SIZE.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 67108864, 64MiB, 512KiB)")
    value = int(match.group(1)) * _UNITS[match.group(2)[:1].lower()]
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive size")
    return value


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def log_level(text: str) -> str:
    level = text.strip().upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(LOG_LEVELS)}")
    return level


def non_empty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text.strip()


# --- options backed by environment variables --------------------------------------------------


def env_option(
    parser: argparse.ArgumentParser,
    flag: str,
    *,
    type: Callable[[str], Any] = str,  # noqa: A002 - mirrors argparse's own keyword
    default: Any = None,
    help: str = "",  # noqa: A002
    metavar: str | None = None,
) -> None:
    """Add ``flag`` whose value falls back to ``MLOBS_<FLAG>`` and then to ``default``."""
    dest = flag.lstrip("-").replace("-", "_")
    env = "MLOBS_" + dest.upper()
    parser.add_argument(
        flag,
        dest=dest,
        type=type,
        default=None,
        metavar=metavar,
        help=f"{help} [env {env}; default {default}]",
    )
    specs = list(parser.get_default(_ENV_SPECS) or [])
    specs.append((dest, env, type, default))
    parser.set_defaults(**{_ENV_SPECS: specs, _PARSER: parser})


def _apply_env(args: argparse.Namespace) -> None:
    parser: argparse.ArgumentParser | None = getattr(args, _PARSER, None)
    for dest, env, convert, default in getattr(args, _ENV_SPECS, ()):
        if getattr(args, dest) is not None:
            continue
        raw = os.environ.get(env)
        if raw is None:
            setattr(args, dest, default)
            continue
        try:
            setattr(args, dest, convert(raw))
        except (argparse.ArgumentTypeError, ValueError) as exc:
            assert parser is not None
            parser.error(f"environment variable {env}={raw!r}: {exc}")
    for name in (_ENV_SPECS, _PARSER):
        if hasattr(args, name):
            delattr(args, name)


# --- entry point ------------------------------------------------------------------------------


def build_parser(subcommands: Sequence[str] = SUBCOMMANDS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlobs", description="Observability for ML pipelines on OpenTelemetry."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in subcommands:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _apply_env(args)
    logging.basicConfig(
        level=getattr(args, "log_level", None) or "INFO",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
