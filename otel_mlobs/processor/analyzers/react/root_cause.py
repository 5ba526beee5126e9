"""What to fix first: column error scores, co-erroneous groups, lineage and root-cause ranking.

One instance per pipeline (the ranking walks the whole dataflow graph, so the component is
dropped from the routing key). ``update`` only books records: a run joins the lineage, a
summary's estimates are written into its component's ring (a few array assignments over its
columns). Everything heavy happens in ``refresh``, which the processor's worker calls
periodically: scoring every run booked since the last refresh at once, recomputing groups only
for components with newly scored runs, and re-ranking only when a component's groups or the
lineage changed. ``metrics`` and ``query`` run the same refresh first when records arrived since
the last one, and reuse its results otherwise.

A component's columns are those of every dataset it reads or writes: a feed that arrives
broken (an input of the first component that reads it) or a feature service that serves a
frozen answer shows there first, before any output does.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from otel_mlobs.processor.analyzers.base import Analyzer, Metric
from otel_mlobs.processor.analyzers.react.column_scores import (
    DAY_S,
    ESTIMATORS,
    STALE_ESTIMATES,
    ColumnScores,
    ComponentSeries,
    ScoreParams,
    score_all,
    zeta,
)
from otel_mlobs.processor.analyzers.react.groups import group_labels, groups_by_name
from otel_mlobs.processor.analyzers.react.lineage import Lineage, UnknownName
from otel_mlobs.processor.analyzers.react.params import iso, parse_int, parse_time
from otel_mlobs.processor.analyzers.react.ranking import GroupTable, Ranking, rank_tables
from otel_mlobs.processor.records import Key, Record, RunRecord, SummaryRecord

MAX_SUSPECTS = 100  # suspects kept per analysis; the API can ask for up to this many
VIEWS = ("suspects", "scores", "groups", "graph", "trace", "history", "review", "flags", "stale")
_CACHES = ("_views", "_ranked", "_latest", "_metrics")  # derived state, left out of snapshots
STATE_VERSION = 2  # layout of snapshots; an older one is refused rather than misread


@dataclass(slots=True)
class ComponentView:
    """One component's scores and column groups at one time.

    Groups are held as arrays (each column's group index, groups ordered by their first
    member's name): a component of a hundred quiet columns is a hundred singleton groups, and
    lists of members are only built for the few groups someone reads.
    """

    component: str
    scores: ColumnScores
    zeta: np.ndarray  # per column
    group_of: np.ndarray  # per column: its group's index
    labels: list[str]  # per group: the name of its first member (by name)
    group_zeta: np.ndarray  # per group: its worst member's ζ
    name_order: np.ndarray  # column indices sorted by name

    @classmethod
    def build(cls, component: str, scores: ColumnScores, raw: np.ndarray) -> ComponentView:
        """From arbitrary group ids per column (see :func:`group_labels`)."""
        names = scores.columns
        z = scores.zeta
        n = len(names)
        order = np.array(sorted(range(n), key=names.__getitem__), dtype=np.int64)
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n)
        if len(np.unique(raw)) == n:  # every column its own group, the usual quiet case
            return cls(component, scores, z, rank, [names[i] for i in order], z[order], order)
        uniq, inv = np.unique(raw, return_inverse=True)
        first = np.full(len(uniq), n, dtype=np.int64)
        np.minimum.at(first, inv, rank)
        by_first = np.argsort(first, kind="stable")
        index = np.empty(len(uniq), dtype=np.int64)
        index[by_first] = np.arange(len(uniq))
        group_of = index[inv.reshape(-1)]
        gz = np.zeros(len(uniq))
        np.maximum.at(gz, group_of, z)
        labels = [names[order[f]] for f in first[by_first]]
        return cls(component, scores, z, group_of, labels, gz, order)

    @property
    def groups(self) -> list[list[int]]:
        """Member indices of every group, members by name, groups by their first member."""
        return groups_by_name(self.group_of, self.scores.columns)

    def members(self, g: int) -> list[int]:
        """Columns of group ``g``, by name."""
        return [int(i) for i in self.name_order[self.group_of[self.name_order] == g]]

    def worst_first(self, g: int) -> list[str]:
        """Column names of group ``g``, worst ζ first (ties by name)."""
        m = np.array(self.members(g), dtype=np.int64)
        order = np.argsort(-self.zeta[m], kind="stable")
        return [self.scores.columns[i] for i in m[order]]

    def multi_member_groups(self) -> list[int]:
        return [int(g) for g in np.flatnonzero(np.bincount(self.group_of) >= 2)]


@dataclass(slots=True)
class Analysis:
    at: float | None
    views: dict[str, ComponentView]
    ranking: Ranking


class RootCauseAnalyzer(Analyzer):
    """Column scores, groups, lineage and the root-cause ranking of one pipeline.

    Parameters
    ----------
    window_s, min_history, z_threshold, stale_runs, stale_threshold, schema_ratio, zeta_floor :
        see :class:`~otel_mlobs.processor.analyzers.react.column_scores.ScoreParams`.
    estimators : names in ``ESTIMATORS`` whose deviation is the corruption score.
    stale_estimates : names in ``ESTIMATORS`` whose collapse is the staleness score.
    stale_after_s, model_stale_after_s, predictions_stale_after_s : a run reading a data input,
        a model or predictions older than this is stale (see
        :class:`~otel_mlobs.processor.analyzers.react.lineage.Lineage`).
    sink_stages : stages whose components make the predictions (the ranking walks back from
        them); components without consumers are used when none is known.
    top_k : suspects exported and returned.
    group_runs, min_corr, max_groups : recent runs correlated, correlation that joins columns,
        and groups one connected set of columns may be split into.
    max_components, max_columns, max_runs, max_lineage_runs : memory bounds.
    """

    name: ClassVar[str] = "root_causes"
    accepts: ClassVar[tuple[type, ...]] = (RunRecord, SummaryRecord)

    def __init__(
        self,
        key: Key,
        window_s: float = 7 * DAY_S,
        min_history: int = 4,
        z_threshold: float = 4.0,
        stale_runs: int = 3,
        stale_threshold: float = 2.5,
        schema_ratio: float = 3.0,
        zeta_floor: float = 0.5,
        estimators: Iterable[str] = ("mean", "std", "null_ratio", "top_share"),
        stale_estimates: Iterable[str] = STALE_ESTIMATES,
        stale_after_s: float = 2 * DAY_S,
        model_stale_after_s: float = 30 * DAY_S,
        predictions_stale_after_s: float = 7 * DAY_S,
        sink_stages: Iterable[str] = ("inference",),
        top_k: int = 5,
        group_runs: int = 32,
        min_corr: float = 0.8,
        max_groups: int = 32,
        max_components: int = 256,
        max_columns: int = 2048,
        max_runs: int = 256,
        max_lineage_runs: int = 10_000,
    ) -> None:
        super().__init__(key)
        self.estimators = tuple(estimators)
        self.stale_estimates = tuple(stale_estimates)
        unknown = [e for e in (*self.estimators, *self.stale_estimates) if e not in ESTIMATORS]
        if unknown:
            raise ValueError(
                f"Invalid 'estimators' {unknown}. Valid values are: {sorted(ESTIMATORS)}"
            )
        if top_k < 1 or group_runs < 3 or max_groups < 1 or max_components < 1:
            raise ValueError("top_k and max_groups must be >= 1, group_runs >= 3")
        if not -1 <= min_corr <= 1:
            raise ValueError("Invalid 'min_corr': must be in [-1, 1]")
        self.params = ScoreParams(
            window_s=window_s,
            min_history=min_history,
            z_threshold=z_threshold,
            stale_runs=stale_runs,
            stale_threshold=stale_threshold,
            stale_estimates=self.stale_estimates,
            schema_ratio=schema_ratio,
            zeta_floor=zeta_floor,
        )
        self.sink_stages = tuple(sink_stages)
        self.top_k = top_k
        self.group_runs = group_runs
        self.min_corr = min_corr
        self.max_groups = max_groups
        self.max_components = max_components
        self.max_columns = max_columns
        self.max_runs = max_runs
        self._lineage = Lineage(
            stale_after_s=stale_after_s,
            model_stale_after_s=model_stale_after_s,
            predictions_stale_after_s=predictions_stale_after_s,
            max_runs=max_lineage_runs,
        )
        self._reset()

    def _reset(self) -> None:
        self._series: dict[str, ComponentSeries] = {}
        self._dropped_components = 0
        self._now = -np.inf
        self._version = 0  # any change a reader could see
        self._lineage_version = 0  # runs added: edges or stages may have changed
        self._clear_caches()

    def _clear_caches(self) -> None:
        self._views: dict[str, tuple[int, ComponentView | None]] = {}
        self._ranked: tuple[Any, Ranking] | None = None
        self._latest: tuple[int, Analysis] | None = None
        self._metrics: tuple[int, list[Metric]] | None = None

    @classmethod
    def key_for(cls, record: Record) -> Key:
        return Key(record.key.pipeline)

    # --- ingest (cheap: booking only) ------------------------------------------------------------
    def update(self, record: Record) -> None:
        if isinstance(record, SummaryRecord):
            series = self._series.get(record.key.component) or self._series_for(
                record.key.component
            )
            if series is None:
                return
            series.add_summary(record)
        elif isinstance(record, RunRecord):
            self._lineage.add(record)
            self._lineage_version += 1
        else:
            return
        if record.event_time > self._now:
            self._now = record.event_time
        self._version += 1

    def _series_for(self, component: str) -> ComponentSeries | None:
        s = self._series.get(component)
        if s is None:
            if len(self._series) >= self.max_components:
                self._dropped_components += 1
                return None
            s = self._series[component] = ComponentSeries(
                self.params, self.estimators, max_runs=self.max_runs, max_columns=self.max_columns
            )
        return s

    def observe_estimate(
        self,
        component: str,
        run_id: str,
        event_time: float,
        role: str,
        dataset: str,
        column: str,
        estimate: str,
        value: float,
    ) -> None:
        """Feed an external per-run scalar estimate of a column (e.g. a likelihood score).

        It is scored like the built-in estimates: its distance from the rolling baseline joins
        the corruption score, so another model of the data plugs in without changing this one.
        """
        series = self._series_for(component)
        if series is not None:
            series.observe(run_id, event_time, role, dataset, column, estimate, value)
            self._now = max(self._now, event_time)
            self._version += 1

    def flag(self, pointer: str) -> dict[str, Any]:
        """Flag a bad output; :class:`UnknownName` (a ``KeyError``) when no run wrote it."""
        out = self._lineage.flag(pointer, self.now or 0.0)
        self._version += 1
        return {"pipeline": self.key.pipeline, **out}

    # --- analysis (refresh) ----------------------------------------------------------------------
    def refresh(self) -> None:
        """Score the runs booked since the last refresh, regroup what changed, re-rank."""
        self._analysis_now()

    @property
    def now(self) -> float | None:
        return float(self._now) if np.isfinite(self._now) else None

    @property
    def lineage(self) -> Lineage:
        return self._lineage

    @property
    def pending_runs(self) -> int:
        """Runs booked but not yet scored (what the next refresh will score)."""
        return sum(s.pending for s in self._series.values())

    def components(self) -> list[str]:
        return sorted(set(self._series) | set(self._lineage.components))

    def _view(self, component: str, at: float | None) -> ComponentView | None:
        series = self._series[component]
        scores = series.latest(at)
        if scores is None:
            return None
        signature = series.error_signature(at, self.group_runs)
        schema = zeta(scores.schema, self.params.zeta_floor)[None, :]  # this run's schema errors
        raw = group_labels(
            np.concatenate([signature, schema]), min_corr=self.min_corr, max_groups=self.max_groups
        )
        return ComponentView.build(component, scores, raw)

    def _rank(self, views: dict[str, ComponentView]) -> Ranking:
        tables = [GroupTable(c, v.labels, v.group_zeta, v.worst_first) for c, v in views.items()]
        sinks = [c for c in self._lineage.components if self._lineage.stage(c) in self.sink_stages]
        return rank_tables(tables, self._lineage.edges, sinks, k=max(self.top_k, MAX_SUSPECTS))

    def _analysis_now(self) -> Analysis:
        """The latest analysis, recomputing only what records since the last one changed."""
        if self._latest is not None and self._latest[0] == self._version:
            return self._latest[1]
        views: dict[str, ComponentView] = {}
        score_all(self._series[c] for c in sorted(self._series))
        for comp in sorted(self._series):
            series = self._series[comp]
            cached = self._views.get(comp)
            if cached is None or cached[0] != series.version:
                cached = self._views[comp] = (series.version, self._view(comp, None))
            if cached[1] is not None:
                views[comp] = cached[1]
        key = (tuple(v for v, _ in self._views.values()), tuple(self._views), self._lineage_version)
        if self._ranked is None or self._ranked[0] != key:
            self._ranked = (key, self._rank(views))
        result = Analysis(None, views, self._ranked[1])
        self._latest = (self._version, result)
        return result

    def analysis(self, at: float | None = None) -> Analysis:
        """Scores, groups and ranking as of event time ``at`` (the latest when None)."""
        latest = self._analysis_now()
        if at is None:
            return latest
        views = {}
        for comp in sorted(self._series):
            v = self._view(comp, at)
            if v is not None:
                views[comp] = v
        return Analysis(at, views, self._rank(views))

    # --- state ---------------------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k not in _CACHES}
        state["_state_version"] = STATE_VERSION
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        version = state.get("_state_version")
        if version != STATE_VERSION:
            raise ValueError(
                f"root-cause snapshot of layout version {version}, expected "
                f"{STATE_VERSION}: it cannot be read, the analyzer starts afresh"
            )
        self.__dict__.update(state)
        self._clear_caches()

    def snapshot(self) -> bytes:
        """Learned state only: derived views, rankings and metrics are rebuilt on demand."""
        return pickle.dumps(self.__getstate__(), protocol=pickle.HIGHEST_PROTOCOL)

    def restore(self, blob: bytes) -> None:
        self.__setstate__(pickle.loads(blob))  # noqa: S301 - our own snapshots only

    # --- contract -------------------------------------------------------------------------------
    def metrics(self) -> list[Metric]:
        """Samples of the latest analysis; rebuilt only when something changed since."""
        a = self._analysis_now()
        if self._metrics is not None and self._metrics[0] == self._version:
            return list(self._metrics[1])
        out = self._build_metrics(a)
        self._metrics = (self._version, out)
        return list(out)

    def _build_metrics(self, a: Analysis) -> list[Metric]:
        out: list[Metric] = []
        for comp, v in a.views.items():
            s = v.scores
            for i, (role, dataset, col) in enumerate(s.ids):
                lab = self.labels(component=comp, role=role, dataset=dataset, column=col)
                out.append(
                    Metric(
                        "mlobs_column_corruption_score",
                        "gauge",
                        "Standard deviations of the column's scalar estimates from "
                        "their rolling baseline (latest run)",
                        lab,
                        float(s.corruption[i]),
                    )
                )
                out.append(
                    Metric(
                        "mlobs_column_staleness_score",
                        "gauge",
                        "Orders of magnitude by which the column's recent run-to-run "
                        "changes fell below what fresh data moves (frozen feature)",
                        lab,
                        float(s.staleness[i]),
                    )
                )
                out.append(
                    Metric(
                        "mlobs_column_error_score",
                        "gauge",
                        "Column error score zeta: 1 at the alarm threshold",
                        lab,
                        float(v.zeta[i]),
                    )
                )
            for gi in v.multi_member_groups():
                g = v.labels[gi]
                for i in v.members(gi):
                    role, dataset, col = s.ids[i]
                    out.append(
                        Metric(
                            "mlobs_column_group",
                            "gauge",
                            "Membership of a column in a co-erroneous column group",
                            self.labels(
                                component=comp, role=role, dataset=dataset, column=col, group=g
                            ),
                            1.0,
                        )
                    )
        for sus in a.ranking.suspects[: self.top_k]:
            out.append(
                Metric(
                    "mlobs_root_cause_score",
                    "gauge",
                    "Path score phi of a suspected root cause (top-k)",
                    self.labels(rank=str(sus.rank), component=sus.component, group=sus.group),
                    sus.phi,
                )
            )
        for comp in self._lineage.components:
            last = self._lineage.latest_run(comp)
            if last is not None:
                out.append(
                    Metric(
                        "mlobs_run_stale",
                        "gauge",
                        "1 when the component's latest run read stale or superseded inputs",
                        self.labels(component=comp),
                        1.0 if self._lineage.stale_reasons(last) else 0.0,
                    )
                )
        out.append(
            Metric(
                "mlobs_lineage_cycles",
                "gauge",
                "Cycles found in the declared lineage between components",
                self.labels(),
                float(len(a.ranking.cycles)),
            )
        )
        out.append(
            Metric(
                "mlobs_flagged_outputs",
                "gauge",
                "Outputs flagged as bad by users",
                self.labels(),
                float(len(self._lineage.flags)),
            )
        )
        return out

    def query(self, **params: Any) -> dict[str, Any]:
        """JSON views: ``view`` is one of :data:`VIEWS` (default ``suspects``).

        ``at`` (epoch seconds or ISO 8601) asks for the ranking as of a past event time; ``k``
        the number of suspects; ``of`` (a component; the HTTP API keeps ``component`` for the
        routing key) and ``pointer`` select what ``history``, ``scores`` and ``trace`` show.
        Unknown components and pointers raise :class:`UnknownName` (a ``KeyError``) listing
        what is known.
        """
        view = params.get("view") or "suspects"
        if view not in VIEWS:
            raise ValueError(f"unknown view {view!r}; valid views: {', '.join(VIEWS)}")
        out = super().query()
        out.update(view=view, now=self.now, now_iso=iso(self.now))
        at = parse_time(params.get("at"))
        if view == "suspects":
            k = parse_int(params.get("k"), self.top_k, "k", hi=MAX_SUSPECTS)
            out.update(self._suspects(at, k))
        elif view in ("scores", "groups"):
            comp = params.get("of") or params.get("component") or None
            a = self.analysis(at)
            if comp is not None and comp not in a.views:
                raise UnknownName("component", comp, sorted(a.views))
            comps = [comp] if comp else sorted(a.views)
            key = "columns" if view == "scores" else "groups"
            out["components"] = [
                {
                    "component": c,
                    key: self._columns(a.views[c])
                    if view == "scores"
                    else self._groups(a.views[c]),
                }
                for c in comps
            ]
        elif view == "graph":
            out.update(self._graph())
        elif view == "trace":
            pointer = params.get("pointer") or ""
            out["trace"] = self._lineage.trace(pointer)
        elif view == "history":
            out.update(
                self._history(
                    params.get("of") or params.get("component") or "",
                    parse_int(params.get("limit"), 20, "limit"),
                )
            )
        elif view == "review":
            out["flags"] = self._lineage.flags
            out["review"] = self._lineage.review(parse_int(params.get("k"), 10, "k"))
        elif view == "flags":
            out["flags"] = self._lineage.flags
        elif view == "stale":
            out["stale"] = [
                {
                    "component": c,
                    "run_id": r.run_id,
                    "event_time": r.event_time,
                    "reasons": self._lineage.stale_reasons(r),
                }
                for c in self._lineage.components
                if (r := self._lineage.latest_run(c, at)) is not None
                and self._lineage.stale_reasons(r)
            ]
        return out

    # --- views ----------------------------------------------------------------------------------
    def _columns(self, v: ComponentView, only: list[str] | None = None) -> list[dict[str, Any]]:
        s = v.scores
        idx = range(len(s.columns)) if only is None else [s.columns.index(c) for c in only]
        return [
            {
                "column": s.columns[i],
                "role": s.ids[i][0],
                "dataset": s.ids[i][1],
                "name": s.ids[i][2],
                "zeta": float(v.zeta[i]),
                "corruption": float(s.corruption[i]),
                "staleness": float(s.staleness[i]),
                "evidence": s.evidence(i),
            }
            for i in idx
        ]

    def _groups(self, v: ComponentView) -> list[dict[str, Any]]:
        # v.groups lists the groups in the order of v.labels (by first member's name)
        return [
            {
                "group": v.labels[g],
                "columns": [v.scores.columns[i] for i in m],
                "zeta": float(v.group_zeta[g]),
            }
            for g, m in enumerate(v.groups)
        ]

    def _suspects(self, at: float | None, k: int) -> dict[str, Any]:
        a = self.analysis(at)
        ranking = a.ranking
        suspects = []
        for sus in ranking.suspects[:k]:
            v = a.views.get(sus.component)
            cols = self._columns(v, sus.columns[:5]) if v is not None else []
            last = self._lineage.latest_run(sus.component, at)
            suspects.append(
                {
                    "rank": sus.rank,
                    "component": sus.component,
                    "group": sus.group,
                    "score": sus.phi,
                    "zeta": sus.zeta,
                    "group_size": len(sus.columns),
                    "columns": cols,
                    "path": [{"component": c, "group": g} for c, g in sus.path],
                    "run_id": v.scores.run_id if v is not None else None,
                    "event_time": v.scores.event_time if v is not None else None,
                    "stale": self._lineage.stale_reasons(last) if last is not None else [],
                }
            )
        return {
            "at": at,
            "at_iso": iso(at),
            "suspects": suspects,
            "cycles": ranking.cycles,
            "sinks": ranking.sinks,
        }

    def _graph(self) -> dict[str, Any]:
        a = self.analysis()
        comps = []
        for c in self.components():
            last = self._lineage.latest_run(c)
            comps.append(
                {
                    "component": c,
                    "stage": self._lineage.stage(c),
                    "latest_run": last.run_id if last else None,
                    "stale": self._lineage.stale_reasons(last) if last else [],
                }
            )
        return {
            "components": comps,
            "edges": [
                {"from": s, "to": d, "runs": n} for (s, d), n in sorted(self._lineage.edges.items())
            ],
            "cycles": a.ranking.cycles,
            "sinks": a.ranking.sinks,
        }

    def _history(self, component: str, limit: int) -> dict[str, Any]:
        known = self.components()
        if component not in known:
            raise UnknownName("component", component, known)
        runs = (
            self._lineage.history(component, limit) if component in self._lineage.components else []
        )
        v = self.analysis().views.get(component)
        return {
            "component": component,
            "stage": self._lineage.stage(component),
            "runs": runs,
            "columns": self._columns(v) if v is not None else [],
        }
