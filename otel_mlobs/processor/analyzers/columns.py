"""Column profiles: the latest run's summary of every column a component reads or writes.

Gauges show the latest run (by event time) so a dashboard can plot a column's mean or null
ratio over time; the value and null counters accumulate over all runs, so
``rate(mlobs_column_nulls_total) / rate(mlobs_column_values_total)`` gives the null ratio over
any window and stays right when summed across processor shards.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from otel_mlobs.processor.analyzers.base import Analyzer, Metric
from otel_mlobs.processor.records import Key, Record, SummaryRecord

_GAUGES = (
    ("mean", "mlobs_column_mean", "Mean of the column's finite values in the latest run."),
    ("std", "mlobs_column_std", "Population standard deviation of the column in the latest run."),
    ("min", "mlobs_column_min", "Minimum of the column in the latest run."),
    ("max", "mlobs_column_max", "Maximum of the column in the latest run."),
    ("distinct", "mlobs_column_distinct", "Estimated distinct values in the latest run."),
)


@dataclass(slots=True)
class _Latest:
    """The latest run's summary of one column, plus all-time counters."""

    event_time: float
    run_id: str
    kind: str
    count: int
    nulls: int
    mean: float
    std: float
    min: float
    max: float
    distinct: float
    quantiles: tuple[tuple[float, float], ...]  # (level, value)
    values_total: int = 0
    nulls_total: int = 0

    def __getstate__(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, value)


ColumnId = tuple[str, str, str]  # (role, dataset, column)


class ColumnsAnalyzer(Analyzer):
    """Latest per-column summaries of one (pipeline, component).

    Parameters
    ----------
    key
        The (pipeline, component) this instance watches.
    max_columns
        Columns tracked per component; summaries of further columns are counted, not kept, so a
        frame with a column per user id cannot exhaust memory or Prometheus.
    """

    name: ClassVar[str] = "columns"
    accepts: ClassVar[tuple[type, ...]] = (SummaryRecord,)

    def __init__(self, key: Key, max_columns: int = 1000) -> None:
        super().__init__(key)
        if max_columns < 1:
            raise ValueError(f"Invalid 'max_columns': {max_columns}; expected >= 1")
        self.max_columns = max_columns
        self._columns: dict[ColumnId, _Latest] = {}
        self._rows: dict[tuple[str, str], int] = {}  # (role, dataset) -> rows over all runs
        self._counted_runs: dict[tuple[str, str], deque[str]] = {}
        self._untracked = 0

    def update(self, record: Record) -> None:
        if not isinstance(record, SummaryRecord):
            return
        self._count_rows(record)
        levels = record.quantile_levels.tolist()
        for i, column in enumerate(record.columns):
            cid = (record.role, record.dataset, column)
            state = self._columns.get(cid)
            if state is None and len(self._columns) >= self.max_columns:
                self._untracked += 1
                continue
            count, nulls = int(record.count[i]), int(record.nulls[i])
            if state is None or record.event_time >= state.event_time:
                latest = _Latest(
                    event_time=record.event_time,
                    run_id=record.run_id,
                    kind=record.kinds[i],
                    count=count,
                    nulls=nulls,
                    mean=float(record.mean[i]),
                    std=float(record.std[i]),
                    min=float(record.min[i]),
                    max=float(record.max[i]),
                    distinct=float(record.distinct[i]),
                    quantiles=tuple(zip(levels, record.quantiles[i].tolist(), strict=True)),
                )
                if state is not None:
                    latest.values_total, latest.nulls_total = state.values_total, state.nulls_total
                self._columns[cid] = state = latest
            state.values_total += count + nulls
            state.nulls_total += nulls

    def _count_rows(self, record: SummaryRecord) -> None:
        """Add the dataset's rows once per run, although its columns come in several chunks."""
        dataset = (record.role, record.dataset)
        seen = self._counted_runs.setdefault(dataset, deque(maxlen=16))
        if record.run_id in seen:
            return
        seen.append(record.run_id)
        self._rows[dataset] = self._rows.get(dataset, 0) + record.rows

    @property
    def columns(self) -> list[ColumnId]:
        """Tracked (role, dataset, column) triples."""
        return list(self._columns)

    def metrics(self) -> Iterable[Metric]:
        for (role, dataset), rows in self._rows.items():
            yield Metric(
                "mlobs_dataset_rows_total",
                "counter",
                "Rows of each dataset a component read (role=input) or wrote (role=output).",
                self.labels(role=role, dataset=dataset),
                float(rows),
            )
        if self._untracked:
            yield Metric(
                "mlobs_column_untracked_total",
                "counter",
                "Column summaries not tracked because the component exceeded max_columns.",
                self.labels(),
                float(self._untracked),
            )
        for (role, dataset, column), s in self._columns.items():
            labels = self.labels(role=role, dataset=dataset, column=column)
            yield from self._column_metrics(labels, s)

    @staticmethod
    def _column_metrics(labels: dict[str, str], s: _Latest) -> Iterable[Metric]:
        yield Metric(
            "mlobs_column_values_total",
            "counter",
            "Values seen in the column over all runs, nulls included.",
            labels,
            float(s.values_total),
        )
        yield Metric(
            "mlobs_column_nulls_total",
            "counter",
            "Null values seen in the column over all runs.",
            labels,
            float(s.nulls_total),
        )
        total = s.count + s.nulls
        if total:
            yield Metric(
                "mlobs_column_null_ratio",
                "gauge",
                "Share of null values in the column in the latest run (0-1).",
                labels,
                s.nulls / total,
                unit="ratio",
            )
        for attr, metric_name, help_text in _GAUGES:
            value = getattr(s, attr)
            if not math.isnan(value):
                yield Metric(metric_name, "gauge", help_text, labels, value)
        for level, value in s.quantiles:
            if not math.isnan(value):
                yield Metric(
                    "mlobs_column_quantile",
                    "gauge",
                    "Quantiles of the column in the latest run.",
                    {**labels, "quantile": repr(level)},
                    value,
                )

    def query(self, **params: Any) -> dict[str, Any]:
        column = params.get("column")
        return {
            **super().query(),
            "untracked": self._untracked,
            "rows": [{"role": r, "dataset": d, "rows": n} for (r, d), n in self._rows.items()],
            "columns": [
                {"role": r, "dataset": d, "column": c, **s.__getstate__()}
                for (r, d, c), s in self._columns.items()
                if column is None or c == column
            ],
        }
