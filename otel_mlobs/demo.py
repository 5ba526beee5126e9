"""``mlobs demo``: the whole loop on one machine, through real OTLP.

Starts the processor on localhost, points the SDK at it (OTLP over gRPC, or HTTP with
``--protocol http``), runs the synthetic taxi pipeline day by day with the scheduled incidents,
and after each simulated day flushes, waits until the processor has applied everything, scrapes
its ``/metrics`` like Prometheus would, and prints what a person on call would want to see:
rows, the accuracy of the labels that arrived, the label-free estimate, and the columns that
moved most against the first days (see :mod:`otel_mlobs.scenarios.report`). When a
``prometheus`` binary is on PATH it is started on the shipped configuration and rules and
queried at the end; with ``promtool`` beside it, the alert rules are then evaluated over the
simulated timeline and the demo reports which alerts fired for each injected incident and how
many simulated minutes after its first batch (see :mod:`otel_mlobs.alerts_report`).

    mlobs demo --once                          # defaults: 21 days x 5,000 trips, all incidents
    mlobs demo --days 8 --incidents corruption@2025-12-26 --grpc-port 0 --http-port 0 \\
               --metrics-port 0 --no-prometheus --once

Without ``--once`` the processor (and Prometheus) keep serving after the run until Ctrl-C, so
the metrics can be browsed or a Grafana pointed at them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import signal
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, TextIO

from otel_mlobs.cli import port
from otel_mlobs.processor import config as cfg

if TYPE_CHECKING:
    from otel_mlobs.alerts_report import AlertsReport
    from otel_mlobs.processor.service import Ports
    from otel_mlobs.scenarios.pipeline import DayResult

DEFAULT_DAYS = 21
DEFAULT_ROWS = 5000
DEFAULT_START = "2025-12-20"
PROTOCOLS = {"grpc": "grpc", "http": "http/protobuf"}

# --- command line -----------------------------------------------------------------------------


def _days(text: str) -> int:
    value = _int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"{value} days is too few: at least 2 (train + serve)")
    return value


def _rows(text: str) -> int:
    value = _int(text)
    if value < 20:
        raise argparse.ArgumentTypeError(f"{value} rows per day is too few: at least 20")
    return value


def _train_days(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} training days is too few: at least 1")
    return value


def _seed(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative; the seed is >= 0")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def _incidents(text: str) -> list:
    from otel_mlobs.scenarios import DEFAULT_INCIDENTS, parse_incidents

    if text.strip().lower() == "default":
        return list(DEFAULT_INCIDENTS)
    try:
        return parse_incidents(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``mlobs demo`` to the ``mlobs`` command."""
    parser = subparsers.add_parser(
        "demo",
        help="run the synthetic taxi pipeline against an in-process processor",
        description="Start the processor on localhost, run the synthetic NYC-taxi tip "
        "pipeline through real OTLP export with scheduled incidents, and report per "
        "simulated day what the processor saw. Port 0 picks a free port.",
    )
    parser.add_argument("--days", type=_days, default=DEFAULT_DAYS, help="simulated days [21]")
    parser.add_argument(
        "--rows-per-day",
        type=_rows,
        default=DEFAULT_ROWS,
        metavar="N",
        help="mean trips per day [5000]",
    )
    parser.add_argument(
        "--train-days",
        type=_train_days,
        default=5,
        metavar="N",
        help="leading days that train the model, at most days - 1 [5]",
    )
    parser.add_argument("--seed", type=_seed, default=0, help="random seed [0]")
    parser.add_argument(
        "--start",
        type=_date,
        default=_date(DEFAULT_START),
        metavar="YYYY-MM-DD",
        help=f"first simulated day [{DEFAULT_START}]",
    )
    parser.add_argument(
        "--incidents",
        type=_incidents,
        default=None,
        metavar="SPEC",
        help="name@YYYY-MM-DD[:YYYY-MM-DD],... or 'none' or 'default' [default: one incident "
        "after another from 2025-12-27]",
    )
    parser.add_argument(
        "--protocol", choices=sorted(PROTOCOLS), default="grpc", help="OTLP transport [grpc]"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind [127.0.0.1]")
    parser.add_argument(
        "--grpc-port",
        type=port,
        default=cfg.DEFAULT_GRPC_PORT,
        metavar="PORT",
        help=f"OTLP/gRPC [{cfg.DEFAULT_GRPC_PORT}]",
    )
    parser.add_argument(
        "--http-port",
        type=port,
        default=cfg.DEFAULT_HTTP_PORT,
        metavar="PORT",
        help=f"OTLP/HTTP [{cfg.DEFAULT_HTTP_PORT}]",
    )
    parser.add_argument(
        "--metrics-port",
        type=port,
        default=cfg.DEFAULT_METRICS_PORT,
        metavar="PORT",
        help="/metrics and the JSON API [9464]",
    )
    parser.add_argument(
        "--prometheus-port",
        type=port,
        default=0,
        metavar="PORT",
        help="port of the local Prometheus [0: a free port]",
    )
    parser.add_argument("--no-prometheus", action="store_true", help="do not start Prometheus")
    parser.add_argument("--once", action="store_true", help="exit after the run")
    parser.set_defaults(func=run)


# --- Prometheus -------------------------------------------------------------------------------

_PROMQL = (
    ("runs by component", "sum by (component) (mlobs_component_runs_total)"),
    (
        "realized accuracy, all time",
        "sum(mlobs_model_correct_total) / sum(mlobs_model_joined_total)",
    ),
    ("accuracy by method (1d)", 'mlobs_model_accuracy{window="1d"}'),
    ("alerts firing", 'ALERTS{alertstate="firing"}'),
)


def _start_prometheus(metrics_target: str, port_: int, out: TextIO):
    from otel_mlobs import promrun

    if promrun.find_binary() is None:
        print(promrun.INSTALL_HINT, file=out)
        return None
    try:
        server = promrun.PrometheusServer(metrics_target, port=port_ or None).start()
    except promrun.PrometheusError as exc:
        print(f"Prometheus did not start, carrying on without it: {exc}", file=out)
        return None
    print(f"Prometheus {server.url} scraping {metrics_target} every 1s", file=out)
    return server


def _prometheus_report(server, runs_seen: float, out: TextIO) -> None:
    """Wait until Prometheus has scraped the final state, then print a few queries."""
    from otel_mlobs.promrun import PrometheusError

    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            got = server.query("sum(mlobs_component_runs_total)")
            if got and float(got[0]["value"][1]) >= runs_seen:
                break
            time.sleep(0.5)
        else:
            print("Prometheus has not scraped the final state yet", file=out)
        print("\nPromQL (from the local Prometheus):", file=out)
        for title, expr in _PROMQL:
            result = server.query(expr)
            print(f"  {title}: {expr}", file=out)
            if not result:
                print("      (empty)", file=out)
            for row in result[:8]:
                labels = ",".join(
                    f"{k}={v}"
                    for k, v in sorted(row["metric"].items())
                    if k in ("component", "method", "model", "alertname", "column")
                )
                print(f"      {{{labels}}} {float(row['value'][1]):.4g}", file=out)
    except PrometheusError as exc:
        print(f"Prometheus query failed: {exc}", file=out)


def _alerts_report(scenario, snapshots, instance: str, out: TextIO) -> AlertsReport | None:
    """Replay the run's states into a Prometheus at simulated time; print alerts per incident."""
    from otel_mlobs.alerts_report import build_report
    from otel_mlobs.promrun import PrometheusError
    from otel_mlobs.scenarios.alert_replay import replay_alerts

    print("\nEvaluating the alert rules over the simulated days ...", file=out, flush=True)
    try:
        replay = replay_alerts(snapshots, scrape_labels={"job": "mlobs", "instance": instance})
    except (PrometheusError, ValueError) as exc:
        print(f"Alerts per incident: not available: {exc}", file=out)
        return None
    report = build_report(scenario.ground_truth(), replay, scenario.dates[-1])
    for line in report.lines():
        print(line, file=out)
    return report


# --- main -------------------------------------------------------------------------------------


@dataclass
class DemoResult:
    """What a run of the demo produced (tests read it)."""

    days: list[DayResult]
    lines: list[str]
    ports: Ports
    runs_received: dict[str, float]
    alerts: AlertsReport | None = None  # alerts per incident, when Prometheus could replay


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """The ``mlobs demo`` command; returns the exit code."""
    out = out or sys.stdout
    try:
        run_demo(args, out)
    except DemoError as exc:
        print(f"mlobs demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nmlobs demo: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    return 0


class DemoError(RuntimeError):
    """The demo could not start (a port in use, a bad setting)."""


def run_demo(args: argparse.Namespace, out: TextIO) -> DemoResult:
    """Run the demo as ``args`` say, printing to ``out``; stops everything it started."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    import otel_mlobs
    from otel_mlobs.processor.service import Processor
    from otel_mlobs.scenarios import DEFAULT_INCIDENTS, TaxiScenario
    from otel_mlobs.scenarios.alert_replay import Snapshot
    from otel_mlobs.scenarios.pipeline import MODEL, PIPELINE, run_pipeline
    from otel_mlobs.scenarios.report import DayReporter
    from otel_mlobs.sdk.setup import SizeCappedExporter, make_exporter

    incidents = DEFAULT_INCIDENTS if args.incidents is None else args.incidents
    try:
        scenario = TaxiScenario(
            seed=args.seed,
            start=args.start,
            days=args.days,
            rows_per_day=args.rows_per_day,
            incidents=incidents,
            train_days=min(args.train_days, args.days - 1),
        )
        config = cfg.ProcessorConfig(
            host=args.host,
            grpc_port=args.grpc_port,
            http_port=args.http_port,
            metrics_port=args.metrics_port,
        )
    except ValueError as exc:
        raise DemoError(str(exc)) from exc
    _print_plan(scenario, out)

    try:
        processor = Processor(config).start()
    except OSError as exc:
        raise DemoError(
            f"cannot start the processor: {exc} (another one running? pass --grpc-port 0 "
            "--http-port 0 --metrics-port 0 for free ports)"
        ) from exc
    ports = processor.ports
    host = args.host
    metrics_url = f"http://{host}:{ports.metrics}/metrics"
    endpoint = (
        f"http://{host}:{ports.grpc}" if args.protocol == "grpc" else f"http://{host}:{ports.http}"
    )
    print(
        f"processor: OTLP/gRPC {host}:{ports.grpc}  OTLP/HTTP {host}:{ports.http}  "
        f"metrics {metrics_url}  (SDK exports over {args.protocol})\n",
        file=out,
    )
    provider = TracerProvider(resource=Resource.create({"service.name": "taxi-tips-demo"}))
    exporter = make_exporter(endpoint=endpoint, protocol=PROTOCOLS[args.protocol])
    provider.add_span_processor(
        BatchSpanProcessor(SizeCappedExporter(exporter), max_queue_size=16_384)
    )
    otel_mlobs.configure(pipeline=PIPELINE, tracer_provider=provider)
    prometheus = None
    try:
        if not args.no_prometheus:
            prometheus = _start_prometheus(f"{host}:{ports.metrics}", args.prometheus_port, out)
        reporter = DayReporter(metrics_url, PIPELINE, MODEL, scenario.train_days, out)
        snapshots: list[Snapshot] = []

        def progress(day) -> None:
            otel_mlobs.flush()
            if not processor.wait_idle(timeout=120):
                print("    (processor still busy after 120 s)", file=out)
            reporter.report(day)
            snapshots.append(Snapshot.after_day(day.date, day.event_time, reporter.last))

        started = time.monotonic()
        result = run_pipeline(scenario, progress=progress, n_jobs=2)
        elapsed = time.monotonic() - started
        runs = {
            lb.get("component", ""): v
            for lb, v in reporter.last.get("mlobs_component_runs_total", ())
            if lb.get("pipeline") == PIPELINE
        }
        _print_summary(scenario, result, runs, elapsed, out)
        alerts = None
        if prometheus is not None:
            _prometheus_report(prometheus, math.fsum(runs.values()), out)
            alerts = _alerts_report(scenario, snapshots, f"{host}:{ports.metrics}", out)
        elif not args.no_prometheus:
            from otel_mlobs.promrun import find_binary
            from otel_mlobs.scenarios.alert_replay import INSTALL_HINT

            if find_binary() is None:
                print(f"\nAlerts per incident: not shown. {INSTALL_HINT}", file=out)
        if not args.once:
            _serve_until_interrupted(metrics_url, prometheus, out)
        return DemoResult(result.days, reporter.lines, ports, runs, alerts)
    finally:
        provider.shutdown()
        otel_mlobs.shutdown()
        if prometheus is not None:
            prometheus.stop()
        processor.stop()


def _print_plan(scenario, out: TextIO) -> None:
    first, last = scenario.dates[0], scenario.dates[-1]
    print(
        f"Taxi tips demo: {scenario.days} days {first}..{last}, about "
        f"{scenario.rows_per_day:,} trips a day, seed {scenario.seed}; training on the first "
        f"{scenario.train_days} days, then live predictions.",
        file=out,
    )
    truths = scenario.ground_truth()
    if not truths:
        print("Incidents: none.", file=out)
    for t in truths:
        when = f"{t.start}" + (f"..{t.end}" if t.end and t.end != t.start else "")
        if not t.end:
            when += " onwards"
        cols = ", ".join(t.columns) or "labels only"
        kind = t.kind.replace("_", " ")
        print(f"  {when:<24} {t.incident:<16} {kind:<13} in {t.component}: {cols}", file=out)
    skipped = [str(i) for i in scenario.incidents if i.truth() not in truths]
    if skipped:
        print(f"  (outside the simulated days: {', '.join(skipped)})", file=out)
    print(file=out)


def _print_summary(scenario, result, runs: dict[str, float], elapsed: float, out: TextIO) -> None:
    received = ", ".join(f"{c} {int(n)}" for c, n in sorted(runs.items())) or "none"
    predictions = sum(d.predictions for d in result.days)
    labels = sum(d.feedback for d in result.days)
    print(
        f"\nDone in {elapsed:.1f}s: {predictions:,} predictions, {labels:,} labels released; "
        f"the processor received runs: {received}.",
        file=out,
    )
    for version, acc in result.validation_accuracy.items():
        print(f"Validation accuracy of {version}: {acc:.3f}", file=out)


def _serve_until_interrupted(metrics_url: str, prometheus, out: TextIO) -> None:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    where = f"Serving {metrics_url}" + (f" and Prometheus {prometheus.url}" if prometheus else "")
    print(f"\n{where}; Ctrl-C to stop.", file=out, flush=True)
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: Iterable[str] | None = None) -> int:
    """Run ``mlobs demo`` with ``argv`` (for ``python -m otel_mlobs.demo``)."""
    from otel_mlobs.cli import main as cli_main

    return cli_main(["demo", *(argv if argv is not None else sys.argv[1:])])


if __name__ == "__main__":
    sys.exit(main())
