"""Record builders shared by the react tests (no tests of its own).

A small synthetic pipeline: ``ingest`` (etl) → ``features`` → ``serve`` (inference), one run per
day, each with a summary per column, so the tests can inject a known fault and check that the
analyzers find it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from otel_mlobs.processor.analyzers.react import RootCauseAnalyzer
from otel_mlobs.processor.records import Key, RunRecord, SummaryRecord

DAY = 86_400.0
PIPELINE = "p"
LEVELS = np.array([0.25, 0.5, 0.75])


def summary(
    component: str,
    run_id: str,
    t: float,
    columns: list[str],
    means: np.ndarray,
    stds: np.ndarray | None = None,
    *,
    role: str = "output",
    dataset: str = "d",
    nulls: np.ndarray | None = None,
    kinds: list[str] | None = None,
    top_values: list[dict[str, int]] | None = None,
    rows: int = 1000,
) -> SummaryRecord:
    n = len(columns)
    means = np.asarray(means, dtype=np.float64)
    stds = np.ones(n) if stds is None else np.asarray(stds, dtype=np.float64)
    nulls = np.zeros(n, dtype=np.int64) if nulls is None else np.asarray(nulls, dtype=np.int64)
    quantiles = means[:, None] + stds[:, None] * np.array([-0.674, 0.0, 0.674])[None, :]
    return SummaryRecord(
        key=Key(PIPELINE, component),
        run_id=run_id,
        event_time=t,
        role=role,
        dataset=dataset,
        rows=rows,
        pointer=f"sha256:{run_id}:{dataset}",
        columns=list(columns),
        kinds=kinds or ["numeric"] * n,
        count=rows - nulls,
        nulls=nulls,
        mean=means,
        std=stds,
        min=means - 3 * stds,
        max=means + 3 * stds,
        quantile_levels=LEVELS,
        quantiles=quantiles,
        sketches=[b""] * n,
        distinct=np.full(n, 100.0),
        top_values=top_values or [{}] * n,
    )


def run(
    component: str,
    run_id: str,
    t: float,
    inputs: tuple[str, ...] = (),
    outputs: tuple[str, ...] = (),
    stage: str = "etl",
    links: tuple[tuple[str, str], ...] = (),
) -> RunRecord:
    return RunRecord(
        key=Key(PIPELINE, component),
        run_id=run_id,
        stage=stage,
        event_time=t,
        duration_s=1.0,
        ok=True,
        error="",
        inputs=inputs,
        outputs=outputs,
        code_version="v1",
        trace_id="ab" * 16,
        span_id=run_id,
        parent_span_id="",
        links=links,
    )


Fault = Callable[[str, int, np.ndarray], np.ndarray]
"""(component, day, healthy means) -> the means that component really logs that day."""


def pipeline(
    days: int,
    columns: int = 10,
    fault: Fault | None = None,
    seed: int = 0,
    analyzer: RootCauseAnalyzer | None = None,
    noise: float = 0.1,
) -> RootCauseAnalyzer:
    """Feed ``days`` daily runs of ingest → features → serve into an analyzer and return it.

    Every component logs the same columns (``c0``..), as data flowing through would; ``fault``
    rewrites what a component logs on a given day. Column stds wobble like real ones do.
    """
    rng = np.random.default_rng(seed)
    a = analyzer or RootCauseAnalyzer(Key(PIPELINE))
    cols = [f"c{i}" for i in range(columns)]
    fault = fault or (lambda comp, d, m: m)
    for d in range(days):
        t = d * DAY
        base = 10.0 + rng.normal(0.0, noise, columns)
        std = 1.0 + rng.normal(0.0, 0.01, columns)
        upstream = base
        for i, (comp, stage, dataset, role) in enumerate(
            (
                ("ingest", "etl", "raw", "output"),
                ("features", "features", "feats", "output"),
                ("serve", "inference", "feats", "input"),
            )
        ):
            a.update(
                run(
                    comp,
                    f"{comp}{d}",
                    t + 60 * i,
                    inputs=(f"ptr-{i - 1}-{d}",) if i else (),
                    outputs=(f"ptr-{i}-{d}",),
                    stage=stage,
                )
            )
            upstream = fault(comp, d, upstream.copy())
            a.update(
                summary(
                    comp, f"{comp}{d}", t + 60 * i, cols, upstream, std, role=role, dataset=dataset
                )
            )
    return a


def top(a: RootCauseAnalyzer, **params: str) -> dict:
    return a.query(view="suspects", **params)["suspects"][0]
