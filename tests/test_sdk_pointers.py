"""Content pointers: the same content gets the same name, whatever its layout; changes show."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import otel_mlobs as mlobs
from otel_mlobs.sdk._sampling import plan
from otel_mlobs.sdk.pointers import content_pointer


def _frame(n: int = 5000) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "fare": rng.gamma(2.0, 5.0, n).round(2),
            "hour": rng.integers(0, 24, n),
            "zone": rng.choice(["north", "south", "east"], n),
            "when": pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta(np.arange(n), "min"),
        }
    )


def test_layout_and_storage_do_not_change_the_pointer() -> None:
    df = _frame()
    ptr = content_pointer(df)
    assert ptr.startswith("sha256:") and len(ptr) == 7 + 64
    assert content_pointer(df.copy()) == ptr  # consolidated blocks
    assert content_pointer({c: df[c].to_numpy() for c in df.columns}) == ptr  # plain arrays
    same = df.assign(
        hour=df["hour"].astype(float),  # ints and floats of equal value
        zone=df["zone"].astype("category"),  # categories and strings
        when=df["when"].dt.tz_convert("America/New_York"),
    )  # one instant, two zones
    assert content_pointer(same) == ptr


def test_every_numeric_value_and_sampled_text_counts() -> None:
    df = _frame()
    ptr = content_pointer(df)
    sampled = set(plan(len(df), None, 0, None).pointer.tolist())
    for row in (0, 1, 2500, 4999):  # rows the fingerprint does not read whole, or does
        changed = df.copy()
        changed.loc[row, "fare"] += 0.01
        assert content_pointer(changed) != ptr, row
    row = sorted(sampled)[3]
    changed = df.copy()
    changed.loc[row, "zone"] = "west"
    assert content_pointer(changed) != ptr
    assert content_pointer(df.rename(columns={"fare": "fare_usd"})) != ptr
    assert content_pointer(df.iloc[:-1]) != ptr
    assert content_pointer(df.assign(zone=df["zone"].where(df.index != row))) != ptr  # a null


def test_pointer_does_not_depend_on_sampling_parameters(sdk_exporter) -> None:
    df = _frame()
    with mlobs.observe("c") as run:
        a = run.log_input("x", df)
        b = run.log_input("y", df, sample_rows=10, sketch_rows=100)
        c = run.log_input("z", df, sketch_rows=None)
    assert a == b == c == content_pointer(df)


@pytest.mark.parametrize("n", [0, 1, 63, 64, 65, 10_000])
def test_pointer_rows_are_spread_and_within_bounds(n: int) -> None:
    rows = plan(n, None, 0, None).pointer
    assert len(rows) == min(n, 64) and len(np.unique(rows)) == len(rows)
    if n:
        assert rows.min() >= 0 and rows.max() < n
    if n > 64:
        assert rows.max() - rows.min() >= n * 0.9  # spread over the whole table
