"""Drift without p-value fatigue: an online adversarial classifier plus per-column effect sizes.

Per dataset of a component, after ``reference_runs`` runs:

* every run's row sample feeds an :class:`~.adversarial.OnlineLogit` that tries to tell live rows
  from reference rows; the run's prequential AUC is the drift statistic (0.5: no drift), its log
  loss and the columns it leans on most are exported;
* every run's summaries give PSI, normalized Wasserstein and Jensen-Shannon per column, computed
  from the KLL sketches and top values against the merged reference.

A drift alert fires when the run's AUC clears a band learned from healthy runs (never below
``min_auc``), or, for a dataset sent without row samples, when a column's PSI reaches
``psi_alert``. Drift alerts name the columns that moved and how far; they never call a component
broken: data that moved may be the world changing, which the hard and soft checks tell apart.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from otel_mlobs import semconv
from otel_mlobs.processor.analyzers.base import Analyzer, Metric
from otel_mlobs.processor.analyzers.diagnose import columns as colmod
from otel_mlobs.processor.analyzers.diagnose import effect_sizes as es
from otel_mlobs.processor.analyzers.diagnose.adversarial import (
    OnlineLogit,
    RowEncoder,
    auc,
    log_loss,
    separation,
)
from otel_mlobs.processor.analyzers.diagnose.alerts import AlertBook
from otel_mlobs.processor.analyzers.diagnose.columns import ColumnSummary, columns_of
from otel_mlobs.processor.analyzers.diagnose.discretize import fit_coder
from otel_mlobs.processor.analyzers.diagnose.reference import SampleReference
from otel_mlobs.processor.analyzers.diagnose.suite import is_trending
from otel_mlobs.processor.analyzers.diagnose.tuning import Precision, RobustThreshold
from otel_mlobs.processor.records import Key, Record, RunRecord, SampleRecord, SummaryRecord

DatasetKey = tuple[str, str]
_BATCH = 32
_AUC_UNIT_SD = float(np.sqrt(1.0 / 3.0))  # null sd of an AUC on n rows per class ~ this/sqrt(n)
_MOVED = {"psi": 0.1, "wasserstein": 0.1, "jensen_shannon": 0.1}


@dataclass
class _Effects:
    """Reference distributions of one dataset, for effect sizes, and the latest values."""

    numeric: dict[str, tuple[bytes, float]] = field(default_factory=dict)  # sketch, std
    categorical: dict[str, dict[str, float]] = field(default_factory=dict)
    last: dict[str, dict[str, float]] = field(default_factory=dict)
    last_run: str = ""
    refs: dict[str, es.NumericReference] = field(default_factory=dict)
    # The latest run's column summaries whose effect sizes nobody has read yet: sizes are
    # computed when read (a scrape, a query, an alert), at most once per run and column.
    todo: dict[str, tuple] = field(default_factory=dict)

    def _ref(self, name: str) -> es.NumericReference:
        ref = self.refs.get(name)
        if ref is None:
            sketch, std = self.numeric[name]
            ref = self.refs[name] = es.NumericReference.of(sketch, std)
        return ref

    def psi(self) -> dict[str, float]:
        """PSI of every column of the latest run, leaving the other sizes pending: an alert
        decision per run needs only this, and the full sizes cost twice as much."""
        out = {c: s["psi"] for c, s in self.last.items() if "psi" in s}
        for name, item in self.todo.items():
            if item[0] == "numeric":
                value = self._ref(name).psi(item[1])
            else:
                value = es.psi_categorical(self.categorical[name], item[1], item[2])
            if value is not None:
                out[name] = value
        return out

    def resolve(self) -> dict[str, dict[str, float]]:
        """``last`` with every pending column's effect sizes computed."""
        for name, item in self.todo.items():
            if item[0] == "numeric":
                sizes = self._ref(name).sizes(item[1])
            else:
                sizes = es.effect_sizes_categorical(self.categorical[name], item[1], item[2])
            if sizes:
                self.last[name] = sizes
        self.todo.clear()
        return self.last


class _Window:
    """The latest scored rows (score, label) of a dataset, in a fixed ring."""

    def __init__(self, size: int = 4096) -> None:
        self.scores = np.zeros(size)
        self.labels = np.zeros(size, bool)
        self.filled = 0
        self.at = 0

    def extend(self, scores: np.ndarray, labels: np.ndarray) -> None:
        """Add rows, dropping the oldest beyond the ring's size."""
        size = len(self.scores)
        scores, labels = scores[-size:], labels[-size:]
        where = (self.at + np.arange(len(scores))) % size
        self.scores[where] = scores
        self.labels[where] = labels
        self.at = int((self.at + len(scores)) % size)
        self.filled = min(size, self.filled + len(scores))

    def __len__(self) -> int:
        return self.filled

    def rows(self) -> tuple[np.ndarray, np.ndarray]:
        """(scores, labels) of the rows held, in no particular order."""
        return self.scores[: self.filled], self.labels[: self.filled]


@dataclass
class _Adversary:
    encoder: RowEncoder
    model: OnlineLogit
    # (slots, 3 * _BATCH, features + 1) float32, per slot: live rows (filled during a run),
    # reference rows to train on, held-out reference rows; the last feature is the bias
    batches: np.ndarray
    hold_mean: np.ndarray  # mean feature vector of the held-out reference rows
    threshold: RobustThreshold
    window: _Window = field(default_factory=_Window)
    run_auc: float = float("nan")
    run_log_loss: float = float("nan")
    rows_total: int = 0
    runs: int = 0
    precision: Precision = field(default_factory=lambda: Precision(2.0, 2.0))

    contributions: np.ndarray | None = None  # per column, latest run

    @property
    def capacity(self) -> int:
        """Live rows the mini-batch slots hold at once."""
        return len(self.batches) * _BATCH

    def load(self, slot: int, hot: np.ndarray, zcols: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Write live rows (at most :attr:`capacity`) into the live part of the mini-batch
        slots from ``slot`` on; returns the flat positions written, for :meth:`unload`."""
        n = len(hot)
        width = self.batches.shape[2]
        k = (slot + np.arange(n) // _BATCH) % len(self.batches)
        start = (k * (3 * _BATCH) + np.arange(n) % _BATCH) * width
        where = np.concatenate([(hot + start[:, None]).ravel(), (zcols + start[:, None]).ravel()])
        flat = self.batches.reshape(-1)
        flat[where[: hot.size]] = 1.0
        flat[where[hot.size :]] = z.ravel()
        return where

    def unload(self, where: np.ndarray) -> None:
        """Zero what :meth:`load` wrote: between runs the live parts hold only the bias."""
        self.batches.reshape(-1)[where] = 0.0

    def explain_run(self, n: int, hot: np.ndarray, zcols: np.ndarray, z: np.ndarray) -> None:
        """How much each column moves the classifier's logit between this run's rows and the
        reference: stale weights on a column that has since returned to normal count for
        nothing, only what separates *this* run does."""
        mean = np.bincount(hot.ravel(), minlength=self.encoder.n_features) / n
        mean[zcols] = z.mean(0)
        gap = mean - self.hold_mean
        self.contributions = np.bincount(
            self.encoder.owner, weights=gap * self.model.weights, minlength=len(self.encoder.coders)
        )

    def importance(self) -> dict[str, float]:
        """Share of the latest run's live-vs-reference separation carried by each column."""
        names = self.encoder.column_names()
        if self.contributions is None:
            return dict.fromkeys(names, 0.0)
        positive = np.clip(self.contributions, 0.0, None)
        total = positive.sum()
        return {
            names[j]: float(positive[j] / total) if total > 0 else 0.0 for j in range(len(names))
        }


@dataclass
class _Pending:
    """Reference material of one dataset while its first runs arrive."""

    samples: SampleReference
    summaries: dict[str, dict[str, ColumnSummary]] = field(default_factory=dict)  # run -> cols
    runs: list[str] = field(default_factory=list)  # run ids, in arrival order


class DriftAnalyzer(Analyzer):
    """Adversarial-classifier drift and per-column effect sizes for one (pipeline, component).

    Parameters
    ----------
    key
        The component's routing key.
    reference_runs
        Runs whose samples and summaries form the reference.
    min_auc
        The smallest run AUC that may alert, whatever the healthy history says.
    k
        Robust standard deviations of healthy run AUCs (and AUC sampling noise) to clear.
    psi_alert
        For datasets without row samples: the PSI at which a column's move alerts.
    top_k
        Columns exported with their classifier weight.
    max_columns
        Columns the classifier encodes per dataset (the first ones).
    lr
        SGD learning rate.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> a = DriftAnalyzer(Key("taxi", "clean"), reference_runs=3)
    >>> def run(i, shift=0.0):
    ...     cols = {"x": rng.normal(shift, 1.0, 512), "y": rng.normal(0, 1.0, 512)}
    ...     a.update(SampleRecord(a.key, f"r{i}", float(i), "output", "t", 512, cols))
    >>> for i in range(6):
    ...     run(i)
    >>> a.alerts()
    []
    >>> run(6, shift=1.0)
    >>> [(x.cls, x.columns[0]) for x in a.alerts()]
    [('drift', 'x')]
    """

    name: ClassVar[str] = "drift"
    accepts: ClassVar[tuple[type, ...]] = (SummaryRecord, SampleRecord, RunRecord)

    def __init__(
        self,
        key: Key,
        reference_runs: int = 5,
        min_auc: float = 0.6,
        k: float = 5.0,
        psi_alert: float = 0.25,
        top_k: int = 5,
        lr: float = 0.5,
        max_datasets: int = 16,
        max_columns: int = 64,
        history: int = 60,
        seed: int = 0,
    ) -> None:
        super().__init__(key)
        if reference_runs < 1 or top_k < 1 or max_datasets < 1 or history < 2:
            raise ValueError("reference_runs, top_k, max_datasets >= 1 and history >= 2")
        if not (0.5 < min_auc < 1 and k > 0 and psi_alert > 0 and lr > 0):
            raise ValueError("0.5 < min_auc < 1, k > 0, psi_alert > 0 and lr > 0 required")
        self.reference_runs = int(reference_runs)
        self.min_auc = float(min_auc)
        self.k = float(k)
        self.psi_alert = float(psi_alert)
        self.top_k = int(top_k)
        self.lr = float(lr)
        self.max_datasets = int(max_datasets)
        if max_columns < 2:
            raise ValueError("max_columns must be >= 2")
        self.max_columns = int(max_columns)
        self.history = int(history)
        self.seed = int(seed)
        self._pending: dict[DatasetKey, _Pending] = {}
        self._effects: dict[DatasetKey, _Effects] = {}
        self._adversaries: dict[DatasetKey, _Adversary] = {}
        self._seen: deque[tuple[str, str, str, str]] = deque(maxlen=512)
        self._seen_set: set[tuple[str, str, str, str]] = set()
        self._book = AlertBook(self.name, key.pipeline, key.component)
        self._rng = np.random.default_rng(seed)
        self._ignored = 0

    @property
    def ready(self) -> bool:
        """Whether at least one dataset has its reference."""
        return bool(self._effects)

    def alerts(self) -> list:
        """Active alerts, newest first."""
        return self._book.active()

    # -- update -------------------------------------------------------------------------------
    def update(self, record: Record) -> None:
        if isinstance(record, RunRecord):
            if not record.ok:
                for p in self._pending.values():
                    p.samples.drop(record.run_id)
                    p.summaries.pop(record.run_id, None)
                    if record.run_id in p.runs:
                        p.runs.remove(record.run_id)
            return
        kind = "summary" if isinstance(record, SummaryRecord) else "sample"
        ident = (kind, record.run_id, record.role, record.dataset)
        key = (record.role, record.dataset)
        if kind == "sample" and (ident in self._seen_set or not record.columns):
            return
        if len(self._seen) == self._seen.maxlen:
            self._seen_set.discard(self._seen[0])
        self._seen.append(ident)
        self._seen_set.add(ident)
        pending = self._pending.get(key)
        if (
            pending is not None
            and record.run_id not in pending.runs
            and len(pending.runs) >= self.reference_runs
        ):
            # The first record of the run after the reference: the reference runs are complete.
            self._build(key, pending)
        if key in self._effects:
            if kind == "summary":
                self._on_summary(key, record)
            else:
                self._on_sample(key, record)
            return
        if pending is None:
            if len(self._pending) + len(self._effects) >= self.max_datasets:
                self._ignored += 1
                return
            pending = self._pending[key] = _Pending(SampleReference(self.reference_runs))
        if record.run_id not in pending.runs:
            pending.runs.append(record.run_id)
        if kind == "summary":
            pending.summaries.setdefault(record.run_id, {}).update(
                {c.name: c for c in columns_of(record)}
            )
        else:
            pending.samples.add(record.run_id, record.event_time, record.columns, self._rng)

    # -- reference ----------------------------------------------------------------------------
    def _build(self, key: DatasetKey, pending: _Pending) -> None:
        del self._pending[key]
        effects = _Effects()
        runs = list(pending.summaries.values())
        names = dict.fromkeys(n for cols in runs for n in cols)
        for name in names:
            cols = [c[name] for c in runs if name in c and c[name].count > 0]
            if not cols:
                continue
            kind = cols[0].kind
            if (
                kind == semconv.KIND_NUMERIC
                and any(c.sketch for c in cols)
                and not is_trending(cols)
            ):
                merged = colmod.merge_sketches([c.sketch for c in cols])
                effects.numeric[name] = (merged, _pooled_std(cols))
            elif kind in (semconv.KIND_CATEGORICAL, semconv.KIND_BOOLEAN) and all(
                c.top for c in cols
            ):
                total: Counter[str] = Counter()
                for c in cols:
                    total.update(c.top)
                n = sum(c.count for c in cols)
                effects.categorical[name] = {v: cnt / n for v, cnt in total.items()}
        self._effects[key] = effects
        if pending.samples.samples:
            adversary = self._fit_adversary(pending.samples)
            if adversary is not None:
                self._adversaries[key] = adversary

    def _fit_adversary(self, ref: SampleReference) -> _Adversary | None:
        names = ref.columns()[: self.max_columns]
        times = [t for _, t, _ in ref.samples]
        coders = [
            c
            for c in (fit_coder(n, [s[n] for _, _, s in ref.samples], times) for n in names)
            if c is not None
        ]
        if not coders:
            return None
        encoder = RowEncoder.fit(coders, [(t, s) for _, t, s in ref.samples])
        width = encoder.n_features
        encoded = [encoder.encode_sparse(s, t) for _, t, s in ref.samples]
        rows = np.zeros((sum(e[0] for e in encoded), width), np.float32)
        start = 0
        for n, hot, zcols, z in encoded:
            block = rows[start : start + n]
            block.reshape(-1)[(hot + (np.arange(n) * width)[:, None]).ravel()] = 1.0
            block[:, zcols] = z
            start += n
        order = self._rng.permutation(len(rows))
        half = len(rows) // 2
        if half < _BATCH:
            return None
        train, hold = rows[order[:half]], rows[order[half:]]
        threshold = RobustThreshold(
            "upper",
            self.min_auc - 0.5,
            k=self.k,
            window=self.history,
            noise="mean",
            unit_sd=_AUC_UNIT_SD,
        )
        threshold.observe(0.5)
        return _Adversary(
            encoder,
            OnlineLogit(encoder.n_features, lr=self.lr),
            _slots(train, hold),
            hold.mean(0, dtype=np.float64),
            threshold,
        )

    # -- judging ------------------------------------------------------------------------------
    def _on_summary(self, key: DatasetKey, rec: SummaryRecord) -> None:
        effects = self._effects[key]
        if effects.last_run != rec.run_id:
            effects.last, effects.todo, effects.last_run = {}, {}, rec.run_id
        n = len(rec.columns)
        if any(len(a) != n for a in (rec.kinds, rec.count, rec.sketches, rec.top_values)):
            raise ValueError(f"summary of {rec.dataset!r}: per-column arrays differ in length")
        for i, name in enumerate(rec.columns):
            if name in effects.numeric and rec.sketches[i]:
                effects.todo[name] = ("numeric", bytes(rec.sketches[i]))
            elif name in effects.categorical:
                effects.todo[name] = (
                    "categorical",
                    dict(rec.top_values[i] or {}),
                    int(rec.count[i]),
                )
        if key not in self._adversaries:
            moved = {c: v for c, v in effects.psi().items() if v >= self.psi_alert}
            source = f"{key[0]}/{key[1]}/effect_size"
            if moved:
                worst = max(moved.values())
                effects.resolve()  # the explanation shows every size
                self._fire(
                    key,
                    source,
                    rec,
                    sorted(moved, key=lambda c: -moved[c]),
                    worst,
                    self.psi_alert,
                    f"{key[0]} {key[1]!r} moved (no row sample to weigh columns jointly): "
                    f"{self._moved_text(effects, list(moved))}",
                )
            else:
                self._book.resolve(source, rec.event_time)

    def _on_sample(self, key: DatasetKey, rec: SampleRecord) -> None:
        adv = self._adversaries.get(key)
        if adv is None:
            return
        n, hot, zcols, z = adv.encoder.encode_sparse(rec.columns, rec.event_time)
        if n == 0:
            return
        slot = int(self._rng.integers(len(adv.batches)))
        parts = []
        for start in range(0, n, adv.capacity):  # a sample larger than the slots: in turns
            chunk = slice(start, start + adv.capacity)
            rows = len(hot[chunk])
            where = adv.load(slot, hot[chunk], zcols, z[chunk])
            try:
                parts.append(adv.model.prequential(adv.batches, rows, slot))
            finally:
                adv.unload(where)
            slot = (slot + rows // _BATCH) % len(adv.batches)
        adv.explain_run(n, hot, zcols, z)
        s = np.concatenate([p[0] for p in parts] + [p[1] for p in parts])
        y = np.zeros(2 * n)
        y[:n] = 1.0
        adv.window.extend(s, y > 0.5)
        adv.run_auc = separation(s[:n], s[n:])
        adv.run_log_loss = float(log_loss(s, y).mean())
        adv.rows_total += n
        adv.runs += 1
        source = f"{key[0]}/{key[1]}/adversarial_auc"
        if adv.threshold.violated(adv.run_auc, n):
            high = adv.threshold.bounds(n)[1]
            weights = adv.importance()
            ranked = sorted(weights, key=lambda c: -weights[c])
            effects = self._effects[key]
            effects.resolve()
            cols = [c for c in ranked[: self.top_k] if weights[c] >= 0.1 or _moved(effects, c)]
            cols = cols or ranked[:1]
            self._fire(
                key,
                source,
                rec,
                cols,
                adv.run_auc,
                high,
                f"{key[0]} {key[1]!r} moved: a classifier tells this run's rows from the "
                f"reference with AUC {adv.run_auc:.2f} (0.5 = indistinguishable; alert "
                f"above {high:.2f}). It relies most on "
                + ", ".join(f"{c} ({weights[c]:.0%} of the separation)" for c in cols)
                + (
                    f"; effect sizes: {self._moved_text(effects, cols)}"
                    if any(c in effects.last for c in cols)
                    else ""
                ),
                rows=n,
            )
        else:
            self._book.resolve(source, rec.event_time)
            # Learn only comfortably healthy runs: a drift building up just under the line
            # must not drag the line up with it.
            if adv.run_auc <= adv.threshold.center + 0.5 * adv.threshold.margin(n):
                adv.threshold.observe(adv.run_auc)

    def _fire(
        self,
        key: DatasetKey,
        source: str,
        rec: Record,
        columns: list[str],
        value: float,
        threshold: float,
        text: str,
        rows: int = 0,
    ) -> None:
        self._book.fire(
            source=source,
            cls="drift",
            severity="info",
            role=key[0],
            dataset=key[1],
            columns=columns,
            check=source.rsplit("/", 1)[1],
            explanation=text + ". The data changed; no constraint says a component broke.",
            run_id=rec.run_id,
            event_time=rec.event_time,
            value=value,
            threshold=threshold,
            rows=rows,
            origin="input" if key[0] == "input" else "introduced",
        )

    @staticmethod
    def _moved_text(effects: _Effects, cols: list[str]) -> str:
        parts = []
        for c in cols:
            sizes = effects.last.get(c)
            if sizes:
                shown = ", ".join(
                    f"{_SHORT[k]} {v:.2f}" for k, v in sizes.items() if np.isfinite(v)
                )
                parts.append(f"{c} ({shown})")
        return "; ".join(parts) or "no summary effect sizes"

    # -- feedback -----------------------------------------------------------------------------
    def mark_alert(self, alert_id: str, true_positive: bool) -> dict[str, Any]:
        """A person's verdict on a drift alert: a false positive ("this move is fine") widens
        the dataset's AUC band and resolves the alert. ``KeyError`` for unknown ids."""
        alert = self._book.mark(alert_id, true_positive)
        adv = self._adversaries.get((alert.role, alert.dataset))
        if adv is not None:
            adv.precision.update(bool(true_positive))
            if true_positive:
                adv.threshold.narrow()
            else:
                adv.threshold.widen(at=alert.value, n=max(alert.rows, 1))
        return {
            "alert": alert.to_json(),
            "precision": round(adv.precision.mean, 4) if adv is not None else None,
        }

    # -- persistence ----------------------------------------------------------------------------
    def restore(self, blob: bytes) -> None:
        """Restore a snapshot, also one written before the classifier kept its reference rows
        in mini-batch slots (reference row matrices and a deque of scored rows then)."""
        super().restore(blob)
        if "_seen_set" not in self.__dict__:
            self._seen_set = set(self._seen)
        for effects in self._effects.values():
            effects.__dict__.setdefault("refs", {})
            effects.__dict__.setdefault("todo", {})
        for adv in self._adversaries.values():
            state = adv.__dict__
            if "batches" not in state:
                train, hold = state.pop("ref_train"), state.pop("ref_holdout")
                adv.batches = _slots(train, hold)
                adv.hold_mean = np.asarray(hold, float).mean(0)
            if not isinstance(adv.window, _Window):
                rows = list(adv.window)
                adv.window = _Window()
                if rows:
                    scores, labels = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
                    adv.window.extend(scores, labels > 0.5)

    # -- reporting ----------------------------------------------------------------------------
    def metrics(self) -> Iterable[Metric]:
        base = self.labels()
        yield Metric(
            "mlobs_drift_ready",
            "gauge",
            "1 once at least one dataset has its drift reference, else 0.",
            base,
            1.0 if self.ready else 0.0,
        )
        for (role, dataset), adv in sorted(self._adversaries.items()):
            labels = {**base, "role": role, "dataset": dataset}
            if np.isfinite(adv.run_auc):
                yield Metric(
                    "mlobs_drift_auc",
                    "gauge",
                    "Prequential AUC of the live-vs-reference classifier on the latest "
                    "run (0.5: no drift).",
                    labels,
                    adv.run_auc,
                )
                yield Metric(
                    "mlobs_drift_log_loss",
                    "gauge",
                    "Prequential log loss of the live-vs-reference classifier on the "
                    "latest run (ln 2 = 0.693: no drift).",
                    labels,
                    adv.run_log_loss,
                )
            yield Metric(
                "mlobs_drift_rows_total",
                "counter",
                "Live rows the drift classifier has scored and learned from.",
                labels,
                float(adv.rows_total),
            )
            weights = adv.importance()
            for column in sorted(weights, key=lambda c: -weights[c])[: self.top_k]:
                yield Metric(
                    "mlobs_drift_feature_weight",
                    "gauge",
                    "Share of the latest run's live-vs-reference separation carried by "
                    "a column (top-k only).",
                    {**labels, "column": column},
                    weights[column],
                )
        for (role, dataset), effects in sorted(self._effects.items()):
            labels = {**base, "role": role, "dataset": dataset}
            for column, sizes in sorted(effects.resolve().items()):
                for name, value in sizes.items():
                    if np.isfinite(value):
                        yield Metric(
                            f"mlobs_column_{name}",
                            "gauge",
                            _HELP[name],
                            {**labels, "column": column},
                            value,
                        )
        yield from self._book.metrics(base)

    def query(self, **params: Any) -> dict[str, Any]:
        """Per-dataset AUC, log loss, column weights and effect sizes, plus alerts."""
        out = super().query()
        datasets = []
        for key, effects in self._effects.items():
            adv = self._adversaries.get(key)
            entry: dict[str, Any] = {
                "role": key[0],
                "dataset": key[1],
                "effect_sizes": {
                    c: {k: _num(v) for k, v in s.items()}
                    for c, s in effects.resolve().items()
                    if params.get("column") in (None, "", c)
                },
            }
            if adv is not None:
                entry.update(
                    auc=_num(adv.run_auc),
                    log_loss=_num(adv.run_log_loss),
                    window_auc=_num(self._window_auc(adv)),
                    alert_above=_num(adv.threshold.bounds(512)[1]),
                    weights=adv.importance(),
                    runs=adv.runs,
                    precision=round(adv.precision.mean, 4),
                )
            datasets.append(entry)
        out.update(
            ready=self.ready,
            status="watching for drift"
            if self.ready
            else ("waiting for reference runs; no alerts until then"),
            datasets=datasets,
            waiting=[
                {"role": r, "dataset": d, "runs": len(p.summaries), "needed": self.reference_runs}
                for (r, d), p in self._pending.items()
            ],
            alerts=[a.to_json() for a in self._book.active()],
            recent_alerts=[a.to_json() for a in self._book.recent()[:50]],
            ignored_datasets=self._ignored,
        )
        return out

    @staticmethod
    def _window_auc(adv: _Adversary) -> float:
        if not len(adv.window):
            return float("nan")
        return auc(*adv.window.rows())


_SHORT = {"psi": "PSI", "wasserstein": "W", "jensen_shannon": "JS"}
_HELP = {
    "psi": "Population stability index of a column against the reference (latest run).",
    "wasserstein": "Wasserstein-1 distance of a column from the reference, in reference "
    "standard deviations (latest run).",
    "jensen_shannon": "Jensen-Shannon distance (base 2) of a column from the reference "
    "(latest run).",
}


def _slots(train: np.ndarray, hold: np.ndarray) -> np.ndarray:
    """Reference mini-batch slots, laid out once: per slot an empty live part, ``_BATCH`` rows
    to train on and ``_BATCH`` held-out rows, plus the bias feature; each live batch of a run
    then uses one slot without copying anything."""
    slots, width = min(len(train), len(hold)) // _BATCH, train.shape[1]
    batches = np.zeros((slots, 3 * _BATCH, width + 1), np.float32)
    batches[:, :, width] = 1.0
    shape = (slots, _BATCH, width)
    batches[:, _BATCH : 2 * _BATCH, :width] = train[: slots * _BATCH].reshape(shape)
    batches[:, 2 * _BATCH :, :width] = hold[: slots * _BATCH].reshape(shape)
    return batches


def _moved(effects: _Effects, column: str) -> bool:
    sizes = effects.last.get(column, {})
    return any(sizes.get(k, 0.0) >= v for k, v in _MOVED.items())


def _num(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _pooled_std(cols: list[ColumnSummary]) -> float:
    """Standard deviation of the union of runs, from per-run counts, means and stds."""
    ok = [c for c in cols if np.isfinite(c.mean) and np.isfinite(c.std) and c.count > 0]
    if not ok:
        return float("nan")
    n = np.array([c.count for c in ok], float)
    mean = np.array([c.mean for c in ok])
    var = np.array([c.std for c in ok]) ** 2
    grand = float((n * mean).sum() / n.sum())
    return float(np.sqrt(max(0.0, (n * (var + (mean - grand) ** 2)).sum() / n.sum())))
