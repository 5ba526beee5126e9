"""The wire contract has one source (semconv.py) and one human twin (docs/semconv.md)."""

from __future__ import annotations

from pathlib import Path

from otel_mlobs import semconv

DOC = (Path(__file__).resolve().parents[1] / "docs" / "semconv.md").read_text(encoding="utf-8")


def _contract_names() -> dict[str, str]:
    return {
        attr: value
        for attr, value in vars(semconv).items()
        if attr.isupper()
        and isinstance(value, str)
        and value.startswith(semconv.PREFIX)
        and value != semconv.PREFIX
    }


def test_every_mlobs_name_is_documented() -> None:
    missing = sorted(v for v in _contract_names().values() if f"`{v}`" not in DOC)
    assert not missing, f"docs/semconv.md lacks: {missing}"


def test_documented_names_exist_in_code() -> None:
    import re

    documented = set(re.findall(r"`(mlobs\.[a-z_.]+)`", DOC))
    known = set(_contract_names().values())
    assert documented <= known, f"documented but not in semconv.py: {sorted(documented - known)}"


def test_schema_version_and_limits_are_documented() -> None:
    assert f"**{semconv.SCHEMA_VERSION}**" in DOC
    for name in ("MAX_EVENTS_PER_SPAN", "MAX_COLUMNS_PER_EVENT", "MAX_ROWS_PER_EVENT"):
        assert f"`{name}`" in DOC
        assert f"{getattr(semconv, name):,}" in DOC


def test_names_are_unique() -> None:
    values = list(_contract_names().values())
    assert len(values) == len(set(values))
