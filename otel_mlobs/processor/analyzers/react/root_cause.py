"""What to fix first: column error scores, co-erroneous groups, lineage and root-cause ranking.

One instance per pipeline (the ranking walks the whole dataflow graph, so the component is
dropped from the routing key). Run records build the lineage, summary records feed per-column
scalar estimates; scores, groups and the ranking are computed lazily, at most once per change,
when metrics or the API ask for them.

A component's columns are those of every dataset it reads or writes: a feed that arrives
broken (an input of the first component that reads it) or a feature service that serves a
frozen answer shows there first, before any output does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from otel_mlobs.processor.analyzers.base import Analyzer, Metric
from otel_mlobs.processor.analyzers.react.column_scores import (
    DAY_S,
    ESTIMATORS,
    ColumnScores,
    ComponentSeries,
    ScoreParams,
    zeta,
)
from otel_mlobs.processor.analyzers.react.groups import co_error_groups
from otel_mlobs.processor.analyzers.react.lineage import Lineage, UnknownName
from otel_mlobs.processor.analyzers.react.params import iso, parse_int, parse_time
from otel_mlobs.processor.analyzers.react.ranking import Node, Ranking, rank
from otel_mlobs.processor.records import Key, Record, RunRecord, SummaryRecord

MAX_SUSPECTS = 100  # suspects kept per analysis; the API can ask for up to this many
VIEWS = ("suspects", "scores", "groups", "graph", "trace", "history", "review", "flags", "stale")


@dataclass(slots=True)
class ComponentView:
    """One component's scores and column groups at one time."""

    component: str
    scores: ColumnScores
    zeta: np.ndarray
    groups: list[list[int]]

    def group_label(self, members: list[int]) -> str:
        return self.scores.columns[members[0]]


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
    stale_after_s : a run reading an output older than this is stale.
    sink_stages : stages whose components make the predictions (the ranking walks back from
        them); components without consumers are used when none is known.
    top_k : suspects exported and returned.
    group_runs, min_corr, max_groups : recent runs correlated, correlation that joins columns,
        and groups per component.
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
        stale_after_s: float = 2 * DAY_S,
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
        unknown = [e for e in self.estimators if e not in ESTIMATORS]
        if unknown:
            raise ValueError(f"Invalid 'estimators' {unknown}. Valid values are: "
                             f"{sorted(ESTIMATORS)}")
        if top_k < 1 or group_runs < 3 or max_groups < 1 or max_components < 1:
            raise ValueError("top_k and max_groups must be >= 1, group_runs >= 3")
        if not -1 <= min_corr <= 1:
            raise ValueError("Invalid 'min_corr': must be in [-1, 1]")
        self.params = ScoreParams(window_s=window_s, min_history=min_history,
                                  z_threshold=z_threshold, stale_runs=stale_runs,
                                  stale_threshold=stale_threshold, schema_ratio=schema_ratio,
                                  zeta_floor=zeta_floor)
        self.sink_stages = tuple(sink_stages)
        self.top_k = top_k
        self.group_runs = group_runs
        self.min_corr = min_corr
        self.max_groups = max_groups
        self.max_components = max_components
        self.max_columns = max_columns
        self.max_runs = max_runs
        self._lineage = Lineage(stale_after_s=stale_after_s, max_runs=max_lineage_runs)
        self._reset()

    def _reset(self) -> None:
        self._series: dict[str, ComponentSeries] = {}
        self._dropped_components = 0
        self._now = -np.inf
        self._version = 0
        self._cache: tuple[int, Analysis] | None = None

    @classmethod
    def key_for(cls, record: Record) -> Key:
        return Key(record.key.pipeline)

    # --- ingest ---------------------------------------------------------------------------------
    def update(self, record: Record) -> None:
        if isinstance(record, RunRecord):
            self._lineage.add(record)
        elif isinstance(record, SummaryRecord):
            series = self._series_for(record.key.component)
            if series is None:
                return
            series.add_summary(record, self.estimators)
        else:
            return
        self._now = max(self._now, record.event_time)
        self._version += 1

    def _series_for(self, component: str) -> ComponentSeries | None:
        s = self._series.get(component)
        if s is None:
            if len(self._series) >= self.max_components:
                self._dropped_components += 1
                return None
            s = self._series[component] = ComponentSeries(
                self.params, max_runs=self.max_runs, max_columns=self.max_columns)
        return s

    def observe_estimate(self, component: str, run_id: str, event_time: float, role: str,
                         dataset: str, column: str, estimate: str, value: float) -> None:
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

    # --- analysis -------------------------------------------------------------------------------
    @property
    def now(self) -> float | None:
        return float(self._now) if np.isfinite(self._now) else None

    @property
    def lineage(self) -> Lineage:
        return self._lineage

    def components(self) -> list[str]:
        return sorted(set(self._series) | set(self._lineage.components))

    def _view(self, component: str, at: float | None) -> ComponentView | None:
        out = self._series.get(component)
        if out is None:
            return None
        scores = out.latest(at)
        if scores is None:
            return None
        z = scores.zeta
        signature = out.error_signature(at, self.group_runs)
        schema = zeta(scores.schema, self.params.zeta_floor)[None, :]  # this run's schema errors
        groups = co_error_groups(np.concatenate([signature, schema]), scores.columns,
                                 min_corr=self.min_corr, max_groups=self.max_groups)
        return ComponentView(component, scores, z, groups)

    def analysis(self, at: float | None = None) -> Analysis:
        """Scores, groups and ranking as of event time ``at`` (the latest when None)."""
        if at is None and self._cache is not None and self._cache[0] == self._version:
            return self._cache[1]
        views = {}
        for comp in sorted(self._series):
            v = self._view(comp, at)
            if v is not None:
                views[comp] = v
        nodes = []
        for comp, v in views.items():
            for members in v.groups:
                zs = v.zeta[members]
                order = np.argsort(-zs, kind="stable")
                nodes.append(Node(comp, v.group_label(members), float(zs.max()),
                                  [v.scores.columns[members[i]] for i in order]))
        sinks = [c for c in self._lineage.components
                 if self._lineage.stage(c) in self.sink_stages]
        ranking = rank(nodes, self._lineage.edges, sinks, k=max(self.top_k, MAX_SUSPECTS))
        result = Analysis(at, views, ranking)
        if at is None:
            self._cache = (self._version, result)
        return result

    # --- contract -------------------------------------------------------------------------------
    def metrics(self) -> list[Metric]:
        a = self.analysis()
        out: list[Metric] = []
        for comp, v in a.views.items():
            s = v.scores
            for i, (role, dataset, col) in enumerate(s.ids):
                lab = self.labels(component=comp, role=role, dataset=dataset, column=col)
                out.append(Metric("mlobs_column_corruption_score", "gauge",
                                  "Standard deviations of the column's scalar estimates from "
                                  "their rolling baseline (latest run)", lab,
                                  float(s.corruption[i])))
                out.append(Metric("mlobs_column_staleness_score", "gauge",
                                  "Orders of magnitude by which the column's recent run-to-run "
                                  "variation fell below its history (frozen feature)", lab,
                                  float(s.staleness[i])))
                out.append(Metric("mlobs_column_error_score", "gauge",
                                  "Column error score zeta: 1 at the alarm threshold", lab,
                                  float(v.zeta[i])))
            for members in v.groups:
                if len(members) < 2:
                    continue
                g = v.group_label(members)
                for i in members:
                    role, dataset, col = s.ids[i]
                    out.append(Metric("mlobs_column_group", "gauge",
                                      "Membership of a column in a co-erroneous column group",
                                      self.labels(component=comp, role=role, dataset=dataset,
                                                  column=col, group=g), 1.0))
        for sus in a.ranking.suspects[: self.top_k]:
            out.append(Metric("mlobs_root_cause_score", "gauge",
                              "Path score phi of a suspected root cause (top-k)",
                              self.labels(rank=str(sus.rank), component=sus.component,
                                          group=sus.group), sus.phi))
        for comp in self._lineage.components:
            last = self._lineage.latest_run(comp)
            if last is not None:
                out.append(Metric("mlobs_run_stale", "gauge",
                                  "1 when the component's latest run read stale or superseded "
                                  "inputs", self.labels(component=comp),
                                  1.0 if self._lineage.stale_reasons(last) else 0.0))
        out.append(Metric("mlobs_lineage_cycles", "gauge",
                          "Cycles found in the declared lineage between components",
                          self.labels(), float(len(a.ranking.cycles))))
        out.append(Metric("mlobs_flagged_outputs", "gauge", "Outputs flagged as bad by users",
                          self.labels(), float(len(self._lineage.flags))))
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
                {"component": c,
                 key: self._columns(a.views[c]) if view == "scores" else self._groups(a.views[c])}
                for c in comps]
        elif view == "graph":
            out.update(self._graph())
        elif view == "trace":
            pointer = params.get("pointer") or ""
            out["trace"] = self._lineage.trace(pointer)
        elif view == "history":
            out.update(self._history(params.get("of") or params.get("component") or "",
                                     parse_int(params.get("limit"), 20, "limit")))
        elif view == "review":
            out["flags"] = self._lineage.flags
            out["review"] = self._lineage.review(parse_int(params.get("k"), 10, "k"))
        elif view == "flags":
            out["flags"] = self._lineage.flags
        elif view == "stale":
            out["stale"] = [
                {"component": c, "run_id": r.run_id, "event_time": r.event_time,
                 "reasons": self._lineage.stale_reasons(r)}
                for c in self._lineage.components
                if (r := self._lineage.latest_run(c, at)) is not None
                and self._lineage.stale_reasons(r)]
        return out

    # --- views ----------------------------------------------------------------------------------
    def _columns(self, v: ComponentView, only: list[str] | None = None) -> list[dict[str, Any]]:
        s = v.scores
        idx = range(len(s.columns)) if only is None else [s.columns.index(c) for c in only]
        return [{"column": s.columns[i], "role": s.ids[i][0], "dataset": s.ids[i][1],
                 "name": s.ids[i][2], "zeta": float(v.zeta[i]),
                 "corruption": float(s.corruption[i]), "staleness": float(s.staleness[i]),
                 "evidence": s.evidence(i)} for i in idx]

    def _groups(self, v: ComponentView) -> list[dict[str, Any]]:
        return [{"group": v.group_label(m), "columns": [v.scores.columns[i] for i in m],
                 "zeta": float(v.zeta[m].max())} for m in v.groups]

    def _suspects(self, at: float | None, k: int) -> dict[str, Any]:
        a = self.analysis(at)
        ranking = a.ranking
        suspects = []
        for sus in ranking.suspects[:k]:
            v = a.views.get(sus.component)
            cols = self._columns(v, sus.columns[:5]) if v is not None else []
            last = self._lineage.latest_run(sus.component, at)
            suspects.append({
                "rank": sus.rank, "component": sus.component, "group": sus.group,
                "score": sus.phi, "zeta": sus.zeta, "group_size": len(sus.columns),
                "columns": cols,
                "path": [{"component": c, "group": g} for c, g in sus.path],
                "run_id": v.scores.run_id if v is not None else None,
                "event_time": v.scores.event_time if v is not None else None,
                "stale": self._lineage.stale_reasons(last) if last is not None else [],
            })
        return {"at": at, "at_iso": iso(at), "suspects": suspects, "cycles": ranking.cycles,
                "sinks": ranking.sinks}

    def _graph(self) -> dict[str, Any]:
        a = self.analysis()
        comps = []
        for c in self.components():
            last = self._lineage.latest_run(c)
            comps.append({"component": c, "stage": self._lineage.stage(c),
                          "latest_run": last.run_id if last else None,
                          "stale": self._lineage.stale_reasons(last) if last else []})
        return {"components": comps,
                "edges": [{"from": s, "to": d, "runs": n}
                          for (s, d), n in sorted(self._lineage.edges.items())],
                "cycles": a.ranking.cycles, "sinks": a.ranking.sinks}

    def _history(self, component: str, limit: int) -> dict[str, Any]:
        known = self.components()
        if component not in known:
            raise UnknownName("component", component, known)
        runs = self._lineage.history(component, limit) if component in \
            self._lineage.components else []
        v = self.analysis().views.get(component)
        return {"component": component, "stage": self._lineage.stage(component),
                "runs": runs, "columns": self._columns(v) if v is not None else []}
