"""Run-level provenance: which run produced which pointer, traces, staleness, flags and review.

Lineage is recovered the way mltrace does it: a run's input pointer is matched to the latest
earlier run that wrote the same pointer (a URI or a content hash), and, within one process,
through OTel span links. From run edges follows the component graph the root-cause ranking
walks.

A run is *stale* when the freshest input it read from some upstream component came from a run
older than the threshold for that kind of input (by event time), or from a run that had already
been superseded by a newer run of the same component when this run read it. Inputs come in
three kinds, told apart by the stage of the run that wrote them, each with its own threshold:

* ``data`` (anything but a model or predictions; ``stale_after_s``, 2 days): a daily table read
  two days late, or a table read while a newer one existed, is the stale input this is about;
* ``model`` (written by a ``train`` run; ``model_stale_after_s``, 30 days): a model trained once
  and served for weeks is how most pipelines run, not a fault; only a model older than the
  threshold, or one already replaced by a newer model, makes the run stale;
* ``predictions`` (written by an ``inference`` run; ``predictions_stale_after_s``, 7 days):
  feedback labels predictions made days earlier by design, and an older prediction batch is not
  replaced by a newer one, so only age past the threshold counts.

A run that reads a window of runs of one component (a model trained on the last five days of
features) is judged by the freshest of them. Users flag bad outputs; :meth:`Lineage.review`
ranks the runs that appear most often in the lineage of flagged outputs (mltrace's ``review``).

Memory is bounded: at most ``max_runs`` runs (oldest inserted evicted first, together with the
pointers that only they knew), ``max_flags`` flags and ``max_producers`` producers per pointer.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from otel_mlobs.processor.records import RunRecord

_MAX_KNOWN_LISTED = 20
_DAY_S = 86_400.0
INPUT_KINDS = ("data", "model", "predictions")
_KIND_OF_STAGE = {"train": "model", "inference": "predictions"}


class UnknownName(KeyError, ValueError):
    """A pointer or component nobody has seen; carries what *is* known so the error can help.

    A ``KeyError`` for callers that look things up, and a ``ValueError`` so the query API
    answers it as a bad request whose message lists what is known.
    """

    def __init__(self, what: str, name: str, known: list[str]) -> None:
        super().__init__(f"unknown {what} {name!r}")
        self.what = what
        self.name = name
        self.known = known[:_MAX_KNOWN_LISTED]

    def __str__(self) -> str:
        listed = ", ".join(self.known) if self.known else "none yet"
        return f"unknown {self.what} {self.name!r}; known: {listed}"

    def as_dict(self) -> dict[str, Any]:
        return {"error": str(self), "unknown": self.what, "name": self.name, "known": self.known}


@dataclass(slots=True)
class RunInfo:
    """What lineage keeps of one run."""

    run_id: str
    component: str
    stage: str
    event_time: float
    ok: bool
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    span_id: str
    links: tuple[str, ...]  # span ids

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "component": self.component,
            "stage": self.stage,
            "event_time": self.event_time,
            "ok": self.ok,
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
        }


class Lineage:
    """Bounded store of runs, pointer producers, span ids, component edges and flags."""

    def __init__(
        self,
        stale_after_s: float = 2 * _DAY_S,
        model_stale_after_s: float = 30 * _DAY_S,
        predictions_stale_after_s: float = 7 * _DAY_S,
        max_runs: int = 10_000,
        max_flags: int = 1_000,
        max_producers: int = 8,
        max_runs_per_component: int = 256,
    ) -> None:
        if min(stale_after_s, model_stale_after_s, predictions_stale_after_s) <= 0:
            raise ValueError(
                "stale_after_s, model_stale_after_s and predictions_stale_after_s must be positive"
            )
        if min(max_runs, max_flags, max_producers, max_runs_per_component) < 1:
            raise ValueError("bounds must be at least 1")
        self.stale_after_s = stale_after_s
        self.model_stale_after_s = model_stale_after_s
        self.predictions_stale_after_s = predictions_stale_after_s
        self.max_runs = max_runs
        self.max_flags = max_flags
        self.max_producers = max_producers
        self.max_runs_per_component = max_runs_per_component
        self._runs: OrderedDict[str, RunInfo] = OrderedDict()
        self._producers: dict[str, list[str]] = {}
        self._consumers: dict[str, list[str]] = {}
        self._spans: dict[str, str] = {}
        self._by_component: dict[str, list[tuple[float, str]]] = {}
        self._stages: dict[str, str] = {}
        self.edges: dict[tuple[str, str], int] = {}
        self._flags: OrderedDict[str, float] = OrderedDict()

    # --- ingest -------------------------------------------------------------------------------
    def add(self, rec: RunRecord) -> None:
        """Record one run and the component edges its provenance reveals."""
        if rec.run_id in self._runs:
            return
        comp = rec.key.component
        info = RunInfo(
            rec.run_id,
            comp,
            rec.stage,
            rec.event_time,
            rec.ok,
            tuple(rec.inputs),
            tuple(rec.outputs),
            rec.span_id,
            tuple(s for _, s in rec.links),
        )
        self._runs[rec.run_id] = info
        self._stages[comp] = rec.stage
        runs = self._by_component.setdefault(comp, [])
        bisect.insort(runs, (rec.event_time, rec.run_id))
        if len(runs) > self.max_runs_per_component:
            del runs[0]
        if rec.span_id:
            self._spans[rec.span_id] = rec.run_id
        for p in info.outputs:
            lst = self._producers.setdefault(p, [])
            lst.append(rec.run_id)
            if len(lst) > self.max_producers:
                del lst[0]
            for consumer in self._consumers.get(p, ()):  # runs that read it before we saw it
                c = self._runs.get(consumer)
                if c is not None and c.event_time >= info.event_time:
                    self._edge(comp, c.component)
        for p in info.inputs:
            lst = self._consumers.setdefault(p, [])
            lst.append(rec.run_id)
            if len(lst) > self.max_producers:
                del lst[0]
        for parent in self.parents(info):
            self._edge(parent.component, comp)
        while len(self._runs) > self.max_runs:
            self._evict()

    def _edge(self, src: str, dst: str) -> None:
        self.edges[(src, dst)] = self.edges.get((src, dst), 0) + 1

    def _evict(self) -> None:
        run_id, info = self._runs.popitem(last=False)
        for table, pointers in ((self._producers, info.outputs), (self._consumers, info.inputs)):
            for p in pointers:
                lst = table.get(p)
                if lst and run_id in lst:
                    lst.remove(run_id)
                    if not lst:
                        del table[p]
        if self._spans.get(info.span_id) == run_id:
            del self._spans[info.span_id]
        runs = self._by_component.get(info.component)
        if runs:
            i = bisect.bisect_left(runs, (info.event_time, run_id))
            if i < len(runs) and runs[i] == (info.event_time, run_id):
                del runs[i]

    # --- read ---------------------------------------------------------------------------------
    @property
    def components(self) -> list[str]:
        return sorted(self._stages)

    def stage(self, component: str) -> str:
        return self._stages.get(component, "")

    def run(self, run_id: str) -> RunInfo | None:
        return self._runs.get(run_id)

    def producer(self, pointer: str, before: float | None = None) -> RunInfo | None:
        """The latest run that wrote ``pointer`` at or before ``before``."""
        best: RunInfo | None = None
        for rid in self._producers.get(pointer, ()):
            r = self._runs.get(rid)
            if r is None or (before is not None and r.event_time > before):
                continue
            if best is None or r.event_time >= best.event_time:
                best = r
        return best

    def parents(self, info: RunInfo) -> list[RunInfo]:
        """Runs this run read from: pointer matches first, then span links."""
        out: dict[str, RunInfo] = {}
        for p in info.inputs:
            r = self.producer(p, info.event_time)
            if r is not None and r.run_id != info.run_id:
                out[r.run_id] = r
        for span in info.links:
            rid = self._spans.get(span)
            r = self._runs.get(rid) if rid else None
            if r is not None and r.run_id != info.run_id:
                out[r.run_id] = r
        return list(out.values())

    def known_pointers(self) -> list[str]:
        """Pointers written by known runs, most recent first."""
        seen: dict[str, None] = {}
        for info in reversed(self._runs.values()):
            for p in info.outputs:
                seen.setdefault(p, None)
        return list(seen)

    @staticmethod
    def input_kind(producer: RunInfo) -> str:
        """``model``, ``predictions`` or ``data``: what the producing run's stage makes it."""
        return _KIND_OF_STAGE.get(producer.stage, "data")

    def stale_after(self, kind: str) -> float:
        """Age (seconds) past which an input of ``kind`` is stale."""
        if kind == "model":
            return self.model_stale_after_s
        if kind == "predictions":
            return self.predictions_stale_after_s
        return self.stale_after_s

    def stale_reasons(self, info: RunInfo) -> list[str]:
        """Why ``info`` is stale (empty when it is not)."""
        freshest: dict[str, RunInfo] = {}
        for parent in self.parents(info):
            cur = freshest.get(parent.component)
            if cur is None or parent.event_time > cur.event_time:
                freshest[parent.component] = parent
        out = []
        for parent in freshest.values():
            kind = self.input_kind(parent)
            limit = self.stale_after(kind)
            age = info.event_time - parent.event_time
            if age > limit:
                out.append(
                    f"{kind} input from {parent.component} run {parent.run_id} is "
                    f"{age / 3600:.1f} h old (threshold {limit / 3600:g} h)"
                )
            if kind == "predictions":
                continue  # a newer prediction batch does not replace an older one
            runs = self._by_component.get(parent.component, [])
            i = bisect.bisect_right(runs, (parent.event_time, "\uffff"))
            newer = [rid for t, rid in runs[i:] if t <= info.event_time and rid != parent.run_id]
            if newer:
                out.append(
                    f"{kind} input from {parent.component} run {parent.run_id} was "
                    f"superseded by run {newer[-1]}"
                )
        return out

    def latest_run(self, component: str, at: float | None = None) -> RunInfo | None:
        runs = self._by_component.get(component, [])
        for t, rid in reversed(runs):
            if at is None or t <= at:
                return self._runs.get(rid)
        return None

    def history(self, component: str, limit: int = 20) -> list[dict[str, Any]]:
        """The latest runs of ``component``, newest first, with their staleness."""
        if component not in self._stages:
            raise UnknownName("component", component, self.components)
        out = []
        for _, rid in reversed(self._by_component.get(component, [])[-limit:]):
            info = self._runs[rid]
            d = info.as_dict()
            d["stale"] = self.stale_reasons(info)
            d["parents"] = [p.run_id for p in self.parents(info)]
            out.append(d)
        return out

    def trace(self, pointer: str, max_nodes: int = 500) -> dict[str, Any]:
        """The lineage of ``pointer``: its producing run and, recursively, what that run read."""
        root = self.producer(pointer)
        if root is None:
            raise UnknownName("pointer", pointer, self.known_pointers())
        seen: set[str] = set()
        budget = [max_nodes]

        def node(info: RunInfo, via: str) -> dict[str, Any]:
            d = info.as_dict()
            d["pointer"] = via
            d["stale"] = self.stale_reasons(info)
            if info.run_id in seen or budget[0] <= 0:
                d["parents"] = []
                d["elided"] = True  # shown above, or the node budget is spent
                return d
            seen.add(info.run_id)
            budget[0] -= 1
            parents = []
            for p in self.parents(info):
                via_p = next((x for x in info.inputs if x in p.outputs), "")
                parents.append(node(p, via_p))
            d["parents"] = parents
            return d

        return node(root, pointer)

    def ancestry(self, pointer: str) -> list[RunInfo]:
        """Every run in the lineage of ``pointer`` (each once)."""
        root = self.producer(pointer)
        out: dict[str, RunInfo] = {}
        stack = [root] if root is not None else []
        while stack:
            info = stack.pop()
            if info.run_id in out:
                continue
            out[info.run_id] = info
            stack.extend(self.parents(info))
        return list(out.values())

    # --- flags and review ---------------------------------------------------------------------
    def knows_pointer(self, pointer: str) -> bool:
        return pointer in self._producers

    def flag(self, pointer: str, at: float) -> dict[str, Any]:
        """Mark ``pointer`` as a bad output. Raises :class:`UnknownName` for unknown pointers."""
        if not self.knows_pointer(pointer):
            raise UnknownName("pointer", pointer, self.known_pointers())
        self._flags[pointer] = at
        self._flags.move_to_end(pointer)
        while len(self._flags) > self.max_flags:
            self._flags.popitem(last=False)
        return {"flagged": pointer, "runs_in_lineage": len(self.ancestry(pointer))}

    def unflag(self, pointer: str) -> bool:
        return self._flags.pop(pointer, None) is not None

    @property
    def flags(self) -> list[str]:
        return list(self._flags)

    def review(self, k: int = 10) -> list[dict[str, Any]]:
        """Runs ranked by how many flagged outputs they appear in the lineage of."""
        counts: dict[str, list[str]] = {}
        for pointer in self._flags:
            for info in self.ancestry(pointer):
                counts.setdefault(info.run_id, []).append(pointer)
        ranked = sorted(
            counts.items(), key=lambda kv: (-len(kv[1]), -self._runs[kv[0]].event_time, kv[0])
        )
        out = []
        for rank, (rid, pointers) in enumerate(ranked[:k], start=1):
            info = self._runs[rid]
            d = info.as_dict()
            d.update(
                rank=rank,
                flagged_outputs=len(pointers),
                flagged=pointers[:10],
                stale=self.stale_reasons(info),
            )
            out.append(d)
        return out
