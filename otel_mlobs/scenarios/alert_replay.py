"""Evaluate the shipped Prometheus alert rules over a scenario's simulated timeline.

The demo lives through three weeks in a minute, but the alert rules speak real time: ``for:``
durations of minutes, rate windows of an hour or a day, ``time()``. A live Prometheus scraping
the demo sees every simulated day pass within a second and cannot say when an alert would have
fired. So after the run the processor's state is replayed into a Prometheus at the simulated
times it describes, and the rules are evaluated there:

1. **Snapshots.** After each simulated day the demo scrapes ``/metrics`` (as Prometheus
   would). A day's runs carry the day's start as event time, but they hold the trips,
   predictions and labels of the whole day: a nightly batch could only run once the day is
   over. So the state after day *d* becomes visible at midnight after day *d* (``visible_at``)
   and stays what Prometheus sees until the next day's state lands; the last state is held for
   one more day.
2. **Backfill.** The series the evaluated rules read are written as OpenMetrics, one simulated
   scrape every ``scrape_interval`` (15 minutes) carrying the state visible at that instant
   with the labels a scrape adds (``job``, ``instance``), and turned into TSDB blocks with
   ``promtool tsdb create-blocks-from openmetrics``.
3. **Recording rules.** A Prometheus is started on those blocks with a lookback delta just
   under the scrape interval (so a series that leaves the exposition vanishes at the next
   scrape, as a staleness marker would make it). The recording rules the alerts use are
   evaluated there at every simulated scrape (``query_range``, as ``promtool tsdb
   create-blocks-from rules`` does) and backfilled the same way.
4. **Alerts.** Restarted on raw and recorded blocks, Prometheus evaluates each alert's
   expression with ``query_range`` at a one-minute step over the whole timeline, and the rule's
   ``for:`` is applied as the rule manager does: a series becomes pending at the first step it
   appears, fires at the first step ``for`` after that while it never left, and an absence
   resets it.

Only simulated time enters: nothing waits in wall time. What differs from a live Prometheus
scraping every 15 s: range windows see one sample per simulated scrape (a ``rate(...[1h])``
sees four), recording rules are evaluated once per simulated scrape, and alerts at whole
minutes. The processor's self-monitoring alerts
(classes ``processor-*``) watch the processor process in wall time, which a simulated
timeline cannot represent; they are left to the live Prometheus and not replayed here.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from otel_mlobs.promrun import SHIPPED_CONFIG_DIR, PrometheusError, PrometheusServer, find_binary

DAY_S = 86_400
SCRAPE_INTERVAL_S = 900  # one simulated scrape every 15 minutes
EVAL_STEP_S = 60  # alert expressions are evaluated every simulated minute
LANDS_AFTER_S = DAY_S  # a day's state is scraped from the end of that day (a nightly batch)
HOLD_LAST_S = DAY_S  # the last state stays visible until the next nightly batch would land
_MAX_POINTS = 10_080  # query_range points per request (Prometheus refuses more than 11,000)
_MAX_BLOCK = "1000h"  # few large blocks: promtool reads the input once per block
LIVE_ONLY_CLASS_PREFIX = "processor-"
INSTALL_HINT = (
    "The alert replay needs the prometheus and promtool binaries on PATH (Debian/Ubuntu: "
    "`apt-get install prometheus`, which ships both)."
)

Sample = tuple[dict[str, str], float]


# --- the timeline -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """The processor's exposition after one simulated day, and when Prometheus would see it."""

    date: dt.date
    visible_at: int  # epoch seconds (simulated)
    samples: Mapping[str, Sequence[Sample]]  # metric name -> [(labels, value)]

    @classmethod
    def after_day(
        cls, date: dt.date, event_time: float, samples: Mapping[str, Sequence[Sample]]
    ) -> Snapshot:
        """The state after the runs of the day starting at ``event_time``: visible at its end."""
        return cls(date, int(event_time) + LANDS_AFTER_S, samples)


# --- the rules ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertRule:
    """One alerting rule as the rule file states it."""

    name: str
    expr: str
    for_s: int
    labels: Mapping[str, str]
    group: str

    @property
    def cls(self) -> str:
        return self.labels.get("class", "")


@dataclass(frozen=True)
class RecordingRule:
    record: str
    expr: str
    labels: Mapping[str, str] = field(default_factory=dict)


_DURATION = re.compile(r"(\d+)(ms|y|w|d|h|m|s)")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": DAY_S, "w": 7 * DAY_S, "y": 365 * DAY_S}


def parse_duration(text: str | None) -> int:
    """A Prometheus duration (``15m``, ``1h30m``) in whole seconds; ``None`` or ``0`` is 0."""
    if text is None or str(text).strip() in ("", "0"):
        return 0
    text = str(text).strip()
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"bad Prometheus duration {text!r}")
    return int(sum(int(n) * _UNIT_S[u] for n, u in parts))


def load_rules(rules_dir: Path) -> tuple[list[AlertRule], list[RecordingRule]]:
    """Every alerting and recording rule of the ``*.yml`` files in ``rules_dir``."""
    alerts: list[AlertRule] = []
    records: list[RecordingRule] = []
    files = sorted(Path(rules_dir).glob("*.yml"))
    if not files:
        raise ValueError(f"no rule files (*.yml) in {rules_dir}")
    for path in files:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                labels = {str(k): str(v) for k, v in (rule.get("labels") or {}).items()}
                if "alert" in rule:
                    alerts.append(
                        AlertRule(
                            rule["alert"],
                            rule["expr"],
                            parse_duration(rule.get("for")),
                            labels,
                            group["name"],
                        )
                    )
                else:
                    records.append(RecordingRule(rule["record"], rule["expr"], labels))
    return alerts, records


def metric_names(expr: str) -> set[str]:
    """Series names an expression selects (quoted label values removed first)."""
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    return set(re.findall(r"\b(mlobs_[a-zA-Z0-9_]+|[a-z_]+:[a-zA-Z0-9_:]+|up)\b", bare))


def replayable(alerts: Iterable[AlertRule]) -> list[AlertRule]:
    """The alerts a simulated timeline can judge: all but the processor's self-monitoring."""
    return [a for a in alerts if not a.cls.startswith(LIVE_ONLY_CLASS_PREFIX)]


def inputs_of(
    alerts: Sequence[AlertRule], records: Sequence[RecordingRule]
) -> tuple[list[RecordingRule], set[str]]:
    """The recording rules ``alerts`` read and the raw metric names both read.

    Recording rules that read other recorded series cannot be backfilled in one pass; the
    shipped ones do not, and one that did is refused here rather than evaluated wrongly.
    """
    by_name = {r.record: r for r in records}
    used = set().union(*(metric_names(a.expr) for a in alerts)) if alerts else set()
    needed = [by_name[n] for n in sorted(used) if n in by_name]
    raw = {n for n in used if n not in by_name}
    for rule in needed:
        names = metric_names(rule.expr)
        chained = sorted(n for n in names if n in by_name)
        if chained:
            raise ValueError(f"recording rule {rule.record} reads recorded series {chained}")
        raw |= names
    return needed, raw


# --- OpenMetrics --------------------------------------------------------------------------------


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _series_lines(
    snapshot: Snapshot, names: set[str], extra: Mapping[str, str]
) -> list[tuple[str, str]]:
    """``(series, value)`` text of the samples of ``names``, scrape labels added."""
    out = []
    for name in sorted(names & set(snapshot.samples)):
        seen: set[str] = set()
        for labels, value in snapshot.samples[name]:
            merged = {**labels, **extra}
            body = ",".join(f'{k}="{_escape(str(v))}"' for k, v in sorted(merged.items()))
            series = f"{name}{{{body}}}"
            if series in seen:  # one sample per series and scrape, as Prometheus keeps it
                continue
            seen.add(series)
            out.append((series, _number(value)))
    return out


def scrape_times(snapshots: Sequence[Snapshot], interval_s: int) -> np.ndarray:
    """The simulated scrape instants: every ``interval_s`` from the first state to the end."""
    start = snapshots[0].visible_at
    end = snapshots[-1].visible_at + HOLD_LAST_S
    return np.arange(start, end, interval_s, dtype=np.int64)


def write_openmetrics(
    snapshots: Sequence[Snapshot],
    path: Path,
    names: set[str],
    *,
    interval_s: int = SCRAPE_INTERVAL_S,
    scrape_labels: Mapping[str, str] | None = None,
) -> int:
    """Write what Prometheus would have scraped at each simulated instant; returns samples.

    Each scrape carries the latest snapshot visible at its time. Scrapes are written in time
    order, all series of one scrape together, as the backfill wants them.
    """
    _check_timeline(snapshots, interval_s)
    extra = dict(scrape_labels or {})
    rendered = [_series_lines(s, names, extra) for s in snapshots]
    visible = np.array([s.visible_at for s in snapshots], dtype=np.int64)
    times = scrape_times(snapshots, interval_s)
    which = np.searchsorted(visible, times, side="right") - 1
    written = 0
    with path.open("w", encoding="utf-8") as fh:
        for t, i in zip(times.tolist(), which.tolist(), strict=True):
            lines = rendered[i]
            if lines:
                fh.write("".join(f"{series} {value} {t}\n" for series, value in lines))
                written += len(lines)
        fh.write("# EOF\n")
    return written


def _check_timeline(snapshots: Sequence[Snapshot], interval_s: int) -> None:
    if not snapshots:
        raise ValueError("no snapshots: the run produced no state to replay")
    if interval_s < 2 * EVAL_STEP_S or interval_s % EVAL_STEP_S:
        raise ValueError(
            f"scrape interval {interval_s}s must be a multiple of {EVAL_STEP_S}s and at least "
            f"{2 * EVAL_STEP_S}s"
        )
    times = [s.visible_at for s in snapshots]
    if any(b <= a for a, b in zip(times, times[1:], strict=False)):
        raise ValueError("snapshots must be in strictly increasing simulated time")
    off_grid = [s.date for s in snapshots if (s.visible_at - times[0]) % interval_s]
    if off_grid:
        raise ValueError(f"snapshots off the {interval_s}s scrape grid: {off_grid[:3]}")


# --- firing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Firing:
    """One firing episode of one alert series, in simulated epoch seconds."""

    alert: str
    labels: Mapping[str, str]  # the alert's labels: the expression's and the rule's
    active_at: int  # first evaluation the series appeared (pending)
    fired_at: int  # first evaluation it was firing
    resolved_at: int | None  # first evaluation it was gone again; None if firing at the end

    @property
    def cls(self) -> str:
        return self.labels.get("class", "")

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "")

    def key(self) -> str:
        """The labels that say what the alert concerns (routing labels left out)."""
        skip = {"alertname", "severity", "class", "job", "instance"}
        inner = ",".join(f"{k}={v}" for k, v in sorted(self.labels.items()) if k not in skip)
        return f"{self.alert}{{{inner}}}"


def episodes(
    times: np.ndarray, *, step_s: int, for_s: int, end: int
) -> list[tuple[int, int, int | None]]:
    """``(active_at, fired_at, resolved_at)`` of each run of consecutive steps that fired.

    ``times`` are the evaluation steps at which the expression returned the series; a gap of
    one step resets a pending alert and resolves a firing one, as in the rule manager.
    """
    if times.size == 0:
        return []
    times = np.unique(times)
    breaks = np.flatnonzero(np.diff(times) != step_s) + 1
    out = []
    for run in np.split(times, breaks):
        first, last = int(run[0]), int(run[-1])
        fired = first + math.ceil(for_s / step_s) * step_s
        if fired > last:
            continue  # left before its ``for`` was over: pending only
        resolved = last + step_s
        out.append((first, fired, resolved if resolved < end else None))
    return out


# --- the replay ---------------------------------------------------------------------------------


@dataclass
class Replay:
    """What the replay found, and what it evaluated."""

    firings: list[Firing]
    evaluated: list[str]  # alert names evaluated over the timeline
    skipped: list[str]  # alerts left to the live Prometheus (processor self-monitoring)
    start: int  # first simulated instant evaluated
    end: int  # end of the timeline (exclusive)
    samples: int  # raw samples backfilled
    scrape_interval_s: int
    wall_s: float = 0.0


class _BlocksPrometheus(PrometheusServer):
    """A Prometheus serving queries from a given data directory, no scraping, no rules."""

    def __init__(self, data_dir: Path, lookback_s: int, binary: str | None = None) -> None:
        super().__init__("127.0.0.1:1", binary=binary, with_rules=False)
        self.data_dir = data_dir
        self.lookback_s = lookback_s

    def start(self) -> _BlocksPrometheus:
        self._dir = tempfile.TemporaryDirectory(prefix="mlobs-replay-prom-")
        root = Path(self._dir.name)
        config = root / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 1m\n", encoding="utf-8")
        log = (root / "prometheus.log").open("wb")
        self._proc = subprocess.Popen(
            [
                str(self.binary),
                f"--config.file={config}",
                f"--storage.tsdb.path={self.data_dir}",
                "--storage.tsdb.retention.time=100y",
                f"--query.lookback-delta={self.lookback_s}s",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready()
        return self


def _promtool(args: list[str], promtool: str, timeout_s: float) -> str:
    proc = subprocess.run(
        [promtool, *args], capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if proc.returncode != 0:
        raise PrometheusError(
            f"promtool {' '.join(args[:3])} failed ({proc.returncode}):\n"
            f"{(proc.stderr or proc.stdout)[-2000:]}"
        )
    return proc.stdout


def _backfill(series_file: Path, data: Path, promtool: str) -> None:
    """Turn an OpenMetrics file into TSDB blocks in ``data``, then drop the file."""
    _promtool(
        ["tsdb", "create-blocks-from", "--quiet", f"--max-block-duration={_MAX_BLOCK}",
         "openmetrics", str(series_file), str(data)],
        promtool, 600,
    )  # fmt: skip
    series_file.unlink()


def _query_range(
    server: PrometheusServer, expr: str, start: int, end: int, step_s: int
) -> dict[tuple[tuple[str, str], ...], list[tuple[int, str]]]:
    """``expr`` at every step of [start, end), by series: ``{labels: [(t, value), ...]}``."""
    out: dict[tuple[tuple[str, str], ...], list[tuple[int, str]]] = {}
    chunk = _MAX_POINTS * step_s
    for lo in range(start, end, chunk):
        hi = min(lo + chunk, end) - step_s
        result = server.api(
            "/api/v1/query_range", query=expr, start=str(lo), end=str(hi), step=f"{step_s}s"
        )["result"]
        for series in result:
            labels = {k: v for k, v in series["metric"].items() if k != "__name__"}
            points = out.setdefault(tuple(sorted(labels.items())), [])
            points.extend((int(round(float(t))), v) for t, v in series["values"])
    return out


def _write_recorded(
    server: PrometheusServer,
    rules: Sequence[RecordingRule],
    path: Path,
    start: int,
    end: int,
    step_s: int,
) -> int:
    """Evaluate recording rules as the rule manager would, every ``step_s``; write OpenMetrics.

    ``promtool tsdb create-blocks-from rules`` does the same but writes one block per rule and
    two hours, which takes minutes over weeks of simulated time; evaluating here and writing
    one file keeps to one backfill pass.
    """
    lines: list[tuple[int, str]] = []
    for rule in rules:
        for key, points in _query_range(server, rule.expr, start, end, step_s).items():
            labels = {**dict(key), **rule.labels}
            body = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
            series = f"{rule.record}{{{body}}}"
            lines.extend((t, f"{series} {_number(float(v))} {t}\n") for t, v in points)
    lines.sort(key=lambda tl: tl[0])
    with path.open("w", encoding="utf-8") as fh:
        fh.write("".join(line for _, line in lines))
        fh.write("# EOF\n")
    return len(lines)


_TIME_DEPENDENT = re.compile(r"\[|\boffset\b|\btime\s*\(|@")


def piecewise_constant(expr: str) -> bool:
    """Whether ``expr`` only reads instant vectors (no range, offset, ``@`` or ``time()``).

    Every sample of the replay sits on the scrape grid and stays visible until just before the
    next scrape, so such an expression has the same result at every minute between two scrapes:
    evaluating it once per scrape is exact and many times cheaper.
    """
    return _TIME_DEPENDENT.search(expr) is None


def _evaluate(
    server: PrometheusServer, rule: AlertRule, start: int, end: int, grid_s: int
) -> list[Firing]:
    """Run the alert's expression over [start, end) and turn its presence into firings.

    Presence is judged at every minute; a piecewise-constant expression is queried once per
    scrape and its result spread over the minutes until the next one.
    """
    coarse = piecewise_constant(rule.expr)
    query_step = grid_s if coarse else EVAL_STEP_S
    spread = np.arange(0, query_step, EVAL_STEP_S, dtype=np.int64)
    firings = []
    for key, points in _query_range(server, rule.expr, start, end, query_step).items():
        labels = {**dict(key), **rule.labels, "alertname": rule.name}
        at = np.array([t for t, _ in points], dtype=np.int64)
        times = (at[:, None] + spread[None, :]).ravel()
        found = episodes(times, step_s=EVAL_STEP_S, for_s=rule.for_s, end=end)
        firings.extend(Firing(rule.name, labels, a, f, r) for a, f, r in found)
    return firings


def replay_alerts(
    snapshots: Sequence[Snapshot],
    *,
    rules_dir: Path | None = None,
    scrape_interval_s: int = SCRAPE_INTERVAL_S,
    scrape_labels: Mapping[str, str] | None = None,
    prometheus: str | None = None,
    promtool: str | None = None,
    workdir: Path | None = None,
) -> Replay:
    """Evaluate the alert rules over the simulated timeline of ``snapshots`` (see the module).

    Raises :class:`~otel_mlobs.promrun.PrometheusError` when a binary is missing or fails, and
    ``ValueError`` for a timeline that cannot be replayed.
    """
    import time

    started = time.monotonic()
    prometheus = prometheus or find_binary("prometheus")
    promtool = promtool or find_binary("promtool")
    if prometheus is None or promtool is None:
        raise PrometheusError(INSTALL_HINT)
    _check_timeline(snapshots, scrape_interval_s)
    alerts, records = load_rules(rules_dir or SHIPPED_CONFIG_DIR / "rules")
    evaluated = replayable(alerts)
    needed, raw = inputs_of(evaluated, records)
    labels = dict(scrape_labels or {"job": "mlobs", "instance": "localhost:9464"})
    times = scrape_times(snapshots, scrape_interval_s)
    start, end = int(times[0]), int(times[-1]) + scrape_interval_s
    # A sample stays visible until just before the next scrape: at whole-minute evaluations a
    # series present at every scrape never gaps, and one that left is gone at the next scrape.
    lookback_s = scrape_interval_s - EVAL_STEP_S // 2

    with tempfile.TemporaryDirectory(prefix="mlobs-replay-", dir=workdir) as tmp:
        root = Path(tmp)
        data = root / "data"
        data.mkdir()
        series_file = root / "series.om"
        samples = write_openmetrics(
            snapshots, series_file, raw, interval_s=scrape_interval_s, scrape_labels=labels
        )
        _backfill(series_file, data, promtool)
        if needed:
            recorded = root / "recorded.om"
            with _BlocksPrometheus(data, lookback_s, prometheus) as server:
                n = _write_recorded(server, needed, recorded, start, end, scrape_interval_s)
            if n:
                _backfill(recorded, data, promtool)
        firings: list[Firing] = []
        with _BlocksPrometheus(data, lookback_s, prometheus) as server:
            for rule in evaluated:
                firings.extend(_evaluate(server, rule, start, end, scrape_interval_s))
    firings.sort(key=lambda f: (f.fired_at, f.alert, sorted(f.labels.items())))
    return Replay(
        firings=firings,
        evaluated=[a.name for a in evaluated],
        skipped=[a.name for a in alerts if a not in evaluated],
        start=start,
        end=end,
        samples=samples,
        scrape_interval_s=scrape_interval_s,
        wall_s=time.monotonic() - started,
    )


def as_json(firing: Firing) -> dict[str, Any]:
    """A firing with ISO times, for result files."""

    def iso(t: int | None) -> str | None:
        return None if t is None else dt.datetime.fromtimestamp(t, dt.UTC).isoformat()

    return {
        "alert": firing.alert,
        "class": firing.cls,
        "severity": firing.severity,
        "labels": dict(firing.labels),
        "active_at": iso(firing.active_at),
        "fired_at": iso(firing.fired_at),
        "resolved_at": iso(firing.resolved_at),
    }
