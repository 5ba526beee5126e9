"""Component runs: ``observe()``, ``@component`` and the :class:`Run` they hand to user code.

One run is one span of role ``run``. What the run reads and writes is logged with
:meth:`Run.log_input` / :meth:`Run.log_output`: each dataset is summarized (see
:mod:`otel_mlobs.sdk.summarize`) and rides on the span as ``mlobs.summary`` and ``mlobs.sample``
events; continuation spans of role ``part`` take over when the span is full. The run's pointers
(URIs or ``sha256:`` content hashes) are set as ``mlobs.run.inputs`` / ``mlobs.run.outputs`` when
the run ends; a run whose input pointer was the output of an earlier run in this process also
gets a span link to it.

Where the work happens
----------------------
The caller's thread makes the one pass over every row that the content pointer needs (it is the
return value) and gathers the sampled rows on the way. With background work on
(``configure(background=True)`` or ``MLOBS_SDK_BACKGROUND=true``; off by default), the rest --
sketches, top values, the sample, the events -- is finished on the SDK's worker
(:mod:`otel_mlobs.sdk._worker`) from those gathered rows only, so the caller may change its
data as soon as the call returns; check events and the span's end follow in order, timed at the
call. ``otel_mlobs.flush()`` waits for it. A summary that reads every row of a large table
(``sketch_rows=None``) is made before the call returns.

Checks
------
``@component(before=..., after=...)`` runs ``before`` checks on ``{parameter: argument}`` before
calling the function and ``after`` checks on the named outputs after it returns. ``observe()``
has no call boundary, so its ``before`` checks run on the inputs logged so far at the first
:meth:`Run.log_output` (or at the end of the block if nothing is output), and its ``after`` checks
run on the logged outputs when the block ends. When the block raises, ``after`` checks are
skipped. See :mod:`otel_mlobs.sdk.checks` for what a check returns.

Event time
----------
A run's logical time (``event_time=``; float seconds, ``datetime``, ``numpy.datetime64``, pandas
``Timestamp`` or ISO string; naive values are taken as UTC) defaults to now. It is what the
processor windows by, so backfills and simulated days set it. The span itself keeps wall-clock
start and end times, so durations stay real.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import threading
import time
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from otel_mlobs import semconv
from otel_mlobs.sdk import _emit, _worker
from otel_mlobs.sdk._columns import Columns, prepare
from otel_mlobs.sdk._sampling import plan
from otel_mlobs.sdk._tabular import Table, as_table, is_tabular
from otel_mlobs.sdk.checks import Check, CheckFailed, CheckFailedWarning, check_name, evaluate
from otel_mlobs.sdk.pointers import content_pointer
from otel_mlobs.sdk.setup import background, get_tracer, pipeline_name
from otel_mlobs.sdk.summarize import DEFAULT_SAMPLE_ROWS, DEFAULT_SKETCH_ROWS, summarize_steps

_LOG = logging.getLogger(__name__)
_current: ContextVar[Run | None] = ContextVar("otel_mlobs_run", default=None)
_MAX_PRODUCERS = 4096
DETACH_COPY_ROWS = 4096
"""Tables whose summary reads every row are copied for the worker up to this many rows; larger
ones (``sketch_rows=None``) are summarized before the logging call returns."""


class _Producers:
    """Bounded map pointer -> span context of the run that output it (for span links)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._map: OrderedDict[str, trace.SpanContext] = OrderedDict()

    def put(self, pointer: str, ctx: trace.SpanContext) -> None:
        with self._lock:
            self._map[pointer] = ctx
            self._map.move_to_end(pointer)
            while len(self._map) > _MAX_PRODUCERS:
                self._map.popitem(last=False)

    def get(self, pointer: str) -> trace.SpanContext | None:
        with self._lock:
            return self._map.get(pointer)


_producers = _Producers()


def current_run() -> Run | None:
    """The run whose block or decorated function is executing, if any."""
    return _current.get()


def to_event_time(value: Any) -> float:
    """Seconds since the epoch from a number, datetime/date, numpy datetime64, Timestamp or str."""
    if value is None:
        return time.time()
    if isinstance(value, bool):
        raise TypeError("event_time must be seconds, a datetime or a timestamp, not a bool")
    if isinstance(value, int | float | np.integer | np.floating):
        return float(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp()
    if isinstance(value, np.datetime64):
        return float(value.astype("datetime64[ns]").astype(np.int64)) / 1e9
    if isinstance(value, str):
        import pandas as pd

        stamp = pd.Timestamp(value)
        return to_event_time(stamp.to_pydatetime())
    raise TypeError(
        f"event_time must be seconds, a datetime or a timestamp, got {type(value).__name__}"
    )


def normalize_stage(stage: str | None) -> str:
    """One of :data:`~otel_mlobs.semconv.STAGES`; anything else becomes ``"other"``."""
    text = (stage or "").strip().lower()
    return text if text in semconv.STAGES else "other"


class Run:
    """A component run in progress: log what it reads and writes, record checks."""

    def __init__(
        self,
        *,
        pipeline: str,
        component: str,
        stage: str,
        run_id: str,
        event_time: float,
        code_version: str,
        span: trace.Span,
        sensitive: Collection[str],
        sample_rows: int,
        before: Sequence[Check],
        after: Sequence[Check],
        stop_on_check_failure: bool,
    ) -> None:
        self.pipeline = pipeline
        self.component = component
        self.stage = stage
        self.run_id = run_id
        self.code_version = code_version
        self.span = span
        self.sensitive = frozenset(sensitive)
        self.sample_rows = sample_rows
        self.stop_on_check_failure = stop_on_check_failure
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self.shed = 0
        self._event_time = event_time
        self._before = list(before)
        self._after = list(after)
        self._before_done = not self._before
        self._input_data: dict[str, Any] = {}
        self._output_data: dict[str, Any] = {}
        self._recording = span.is_recording()
        self._background = self._recording and background()
        self._sink = _emit.SpanSink(span, self._part_span, max_events=_emit.event_limit())

    # --- identity -------------------------------------------------------------------------------

    @property
    def event_time(self) -> float:
        """The run's logical time in seconds since the epoch (settable, e.g. in a backfill)."""
        return self._event_time

    @event_time.setter
    def event_time(self, value: Any) -> None:
        self._event_time = to_event_time(value)
        self.span.set_attribute(semconv.RUN_EVENT_TIME, self._event_time)

    def identity(self) -> dict[str, Any]:
        """Attributes every span of this run carries."""
        return {
            semconv.SCHEMA: semconv.SCHEMA_VERSION,
            semconv.PIPELINE: self.pipeline,
            semconv.COMPONENT: self.component,
            semconv.STAGE: self.stage,
            semconv.RUN_ID: self.run_id,
            semconv.RUN_EVENT_TIME: self._event_time,
            semconv.CODE_VERSION: self.code_version,
        }

    # --- data -----------------------------------------------------------------------------------

    def log_input(
        self,
        name: str,
        data: Any,
        *,
        sensitive: Collection[str] = (),
        sample_rows: int | None = None,
        pointer: str | None = None,
        sketch_rows: int | None = DEFAULT_SKETCH_ROWS,
    ) -> str:
        """Summarize a dataset the run reads; returns its pointer (``pointer`` or a content hash).

        ``sketch_rows`` bounds the rows the quantile sketch is built from (``None``: every row;
        see :func:`~otel_mlobs.sdk.summarize.summarize_frame`). Raises :class:`TypeError` for
        data that is not a DataFrame, array, dict of arrays or polars frame.
        """
        ptr = self._log("input", name, data, sensitive, sample_rows, pointer, sketch_rows)
        self._input_data[name] = data
        self.add_input(ptr)
        return ptr

    def log_output(
        self,
        name: str,
        data: Any,
        *,
        sensitive: Collection[str] = (),
        sample_rows: int | None = None,
        pointer: str | None = None,
        sketch_rows: int | None = DEFAULT_SKETCH_ROWS,
    ) -> str:
        """Summarize a dataset the run writes; returns its pointer. Runs pending ``before``
        checks first (see the module docs)."""
        self._run_before_checks()
        ptr = self._log("output", name, data, sensitive, sample_rows, pointer, sketch_rows)
        self._output_data[name] = data
        self.add_output(ptr)
        return ptr

    def add_input(self, pointer: str) -> None:
        """Record that the run read ``pointer`` (a URI or content hash) without summarizing."""
        pointer = _check_pointer(pointer)
        if pointer not in self.inputs:
            self.inputs.append(pointer)
            producer = _producers.get(pointer)
            own = self.span.get_span_context()
            if producer is not None and self._recording and producer != own:
                self.span.add_link(producer)

    def add_output(self, pointer: str) -> None:
        """Record that the run wrote ``pointer`` without summarizing."""
        pointer = _check_pointer(pointer)
        if pointer not in self.outputs:
            self.outputs.append(pointer)
            if self._recording:
                _producers.put(pointer, self.span.get_span_context())

    def _log(
        self,
        role: str,
        name: str,
        data: Any,
        sensitive: Collection[str],
        sample_rows: int | None,
        pointer: str | None,
        sketch_rows: int | None,
    ) -> str:
        table: Table | Columns = as_table(data, name)
        deferred = self._background
        if pointer is None or deferred:  # the fingerprint and the summary share one pass
            try:
                rows = plan(
                    table.rows,
                    sketch_rows,
                    self.sample_rows if sample_rows is None else sample_rows,
                    None,
                )
            except ValueError:  # bad sampling arguments: reported by the summary below
                rows = None
            table = prepare(table, rows)
        ptr = content_pointer(table) if pointer is None else pointer
        if not self._recording:
            return ptr
        args = (role, name, table, ptr, sensitive, sample_rows, sketch_rows)
        # Deferred, the worker reads only what ``detach`` keeps (the sampled rows), never the
        # caller's arrays, so the caller may change its data as soon as this returns.
        if deferred and table.detach(DETACH_COPY_ROWS):
            stamp = time.time_ns()
            _worker.submit(
                lambda: self._summary_steps(*args, timestamp=stamp),
                lambda exc: self._summary_fault(role, name, exc),
            )
            return ptr
        try:
            for _ in self._summary_steps(*args):
                pass
        except Exception as exc:  # an SDK fault must not break the pipeline
            self._summary_fault(role, name, exc)
        return ptr

    def _summary_fault(self, role: str, name: str, exc: BaseException) -> None:
        """Count and log data the SDK could not summarize."""
        _emit.count("errors")
        _LOG.error(
            "could not summarize %s %r of component %r", role, name, self.component, exc_info=exc
        )

    def _summary_steps(
        self,
        role: str,
        name: str,
        table: Any,
        ptr: str,
        sensitive: Collection[str],
        sample_rows: int | None,
        sketch_rows: int | None,
        timestamp: int | None = None,
    ) -> Iterator[None]:
        """Summarize and add the events, yielding between steps (the worker paces itself there;
        see :mod:`otel_mlobs.sdk._worker`)."""
        summary = yield from summarize_steps(
            table,
            sensitive=self.sensitive | set(sensitive),
            sample_rows=self.sample_rows if sample_rows is None else sample_rows,
            sketch_rows=sketch_rows,
            name=name,
        )
        self.shed += summary.shed
        _emit.count("shed", summary.shed)
        _emit.count("truncated_values", summary.truncated)
        yield
        for event in _emit.summary_events(summary, role, name, ptr):
            self._sink.add(*event, timestamp)
            yield
        for event in _emit.sample_events(summary, role, name):
            self._sink.add(*event, timestamp)
            yield

    # --- checks ---------------------------------------------------------------------------------

    def check(self, name: str, passed: bool, message: str = "", *, phase: str = "after") -> None:
        """Record the outcome of a check made by hand (warns or raises like declared checks)."""
        if phase not in semconv.CHECK_PHASES:
            raise ValueError(f"phase must be one of {semconv.CHECK_PHASES}, got {phase!r}")
        self._record_check(name, phase, bool(passed), "" if passed else str(message))

    def _record_check(
        self, name: str, phase: str, passed: bool, message: str, raise_on_failure: bool = True
    ) -> None:
        if self._recording:
            event = _emit.check_event(name, phase, passed, message)
            if self._background:  # after the summaries still being made, like every event
                stamp = time.time_ns()
                _worker.submit(lambda: self._sink.add(*event, stamp), self._event_fault)
            else:
                self._sink.add(*event)
        if passed:
            return
        _emit.count("checks_failed")
        failure = CheckFailed(name, phase, message)
        if self.stop_on_check_failure and raise_on_failure:
            raise failure
        warnings.warn(str(failure), CheckFailedWarning, stacklevel=4)

    def _run_checks(
        self,
        checks: Sequence[Check],
        phase: str,
        data: dict[str, Any],
        raise_on_failure: bool = True,
    ) -> None:
        for check in checks:
            passed, message = evaluate(check, data)
            self._record_check(check_name(check), phase, passed, message, raise_on_failure)

    def _run_before_checks(
        self, data: dict[str, Any] | None = None, raise_on_failure: bool = True
    ) -> None:
        if self._before_done:
            return
        self._before_done = True
        self._run_checks(
            self._before, "before", self._input_data if data is None else data, raise_on_failure
        )

    # --- spans ----------------------------------------------------------------------------------

    def _part_span(self, index: int) -> trace.Span:
        attrs = self.identity()
        attrs[semconv.SPAN_ROLE] = semconv.SPAN_ROLE_PART
        attrs[semconv.PART_INDEX] = index
        _emit.count("spans")
        _emit.count("part_spans")
        return get_tracer().start_span(
            f"{self.component} part {index}",
            context=trace.set_span_in_context(self.span),
            attributes=attrs,
        )

    def _finish(self, exc: BaseException | None, outputs: dict[str, Any] | None = None) -> None:
        """Run pending checks, set the pointers and end the span. Raises CheckFailed (after
        recording it) when a check fails with ``stop_on_check_failure``; never masks ``exc``."""
        failure: CheckFailed | None = None
        try:
            if exc is None:
                self._run_before_checks()
                self._run_checks(
                    self._after, "after", self._output_data if outputs is None else outputs
                )
            else:
                self._run_before_checks(raise_on_failure=False)
        except CheckFailed as err:
            failure = err
        error = exc if exc is not None else failure
        if self._background:  # ended by the worker after its pending summaries, at this time
            stamp = time.time_ns()
            inputs, outputs = list(self.inputs), list(self.outputs)
            _worker.submit(lambda: self._end_span(error, inputs, outputs, stamp), self._event_fault)
        else:
            self._end_span(error, list(self.inputs), list(self.outputs), None)
        if failure is not None:
            raise failure

    def _end_span(
        self, error: BaseException | None, inputs: list[str], outputs: list[str], stamp: int | None
    ) -> None:
        """Record ``error``, set the pointers and end the span (at ``stamp`` if given)."""
        try:
            if error is not None and self._recording:
                self.span.record_exception(error, timestamp=stamp)
                text = str(error)
                self.span.set_status(
                    Status(
                        StatusCode.ERROR,
                        f"{type(error).__name__}: {text}" if text else type(error).__name__,
                    )
                )
            if self._recording:
                self.span.set_attribute(semconv.RUN_INPUTS, inputs)
                self.span.set_attribute(semconv.RUN_OUTPUTS, outputs)
                if self.shed:
                    self.span.set_attribute(semconv.SDK_SHED, int(self.shed))
        finally:
            self._sink.end_time = stamp
            self._sink.close()
            self.span.end(end_time=stamp)

    def _event_fault(self, exc: BaseException) -> None:
        _emit.count("errors")
        _LOG.error("could not record an event of component %r", self.component, exc_info=exc)


def _check_pointer(pointer: Any) -> str:
    if not isinstance(pointer, str) or not pointer:
        raise TypeError(
            f"a pointer must be a non-empty string (URI or content hash), got {pointer!r}"
        )
    return pointer


def _start_run(
    component: str,
    *,
    pipeline: str | None,
    stage: str,
    run_id: str | None,
    event_time: Any,
    code_version: str | None,
    sensitive: Collection[str],
    sample_rows: int,
    before: Sequence[Check],
    after: Sequence[Check],
    stop_on_check_failure: bool,
) -> Run:
    if not isinstance(component, str) or not component:
        raise TypeError(f"component must be a non-empty string, got {component!r}")
    pipe = pipeline_name(pipeline)
    when = to_event_time(event_time)
    rid = run_id or uuid.uuid4().hex
    version = code_version if code_version is not None else os.environ.get("MLOBS_CODE_VERSION", "")
    norm_stage = normalize_stage(stage)
    attrs = {
        semconv.SCHEMA: semconv.SCHEMA_VERSION,
        semconv.SPAN_ROLE: semconv.SPAN_ROLE_RUN,
        semconv.PIPELINE: pipe,
        semconv.COMPONENT: component,
        semconv.STAGE: norm_stage,
        semconv.RUN_ID: rid,
        semconv.RUN_EVENT_TIME: when,
        semconv.CODE_VERSION: version,
    }
    span = get_tracer().start_span(component, attributes=attrs)
    _emit.count("spans")
    return Run(
        pipeline=pipe,
        component=component,
        stage=norm_stage,
        run_id=rid,
        event_time=when,
        code_version=version,
        span=span,
        sensitive=sensitive,
        sample_rows=sample_rows,
        before=before,
        after=after,
        stop_on_check_failure=stop_on_check_failure,
    )


@contextmanager
def observe(
    component: str,
    *,
    pipeline: str | None = None,
    stage: str = "other",
    run_id: str | None = None,
    event_time: Any = None,
    code_version: str | None = None,
    inputs: Sequence[str] = (),
    outputs: Sequence[str] = (),
    before: Sequence[Check] = (),
    after: Sequence[Check] = (),
    stop_on_check_failure: bool = False,
    sensitive: Collection[str] = (),
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
) -> Iterator[Run]:
    """Observe one run of ``component``: a ``run`` span around the block, yielding the Run.

    An exception inside the block is recorded on the span (status ERROR) and re-raised
    unchanged. ``inputs``/``outputs`` are pointers known up front.
    """
    run = _start_run(
        component,
        pipeline=pipeline,
        stage=stage,
        run_id=run_id,
        event_time=event_time,
        code_version=code_version,
        sensitive=sensitive,
        sample_rows=sample_rows,
        before=before,
        after=after,
        stop_on_check_failure=stop_on_check_failure,
    )
    for pointer in inputs:
        run.add_input(pointer)
    for pointer in outputs:
        run.add_output(pointer)
    token = _current.set(run)
    try:
        with trace.use_span(
            run.span, end_on_exit=False, record_exception=False, set_status_on_exception=False
        ):
            yield run
    except BaseException as exc:
        run._finish(exc)
        raise
    else:
        run._finish(None)
    finally:
        _current.reset(token)


def component(
    name: str | Callable | None = None,
    *,
    pipeline: str | None = None,
    stage: str = "other",
    code_version: str | None = None,
    before: Sequence[Check] = (),
    after: Sequence[Check] = (),
    stop_on_check_failure: bool = False,
    sensitive: Collection[str] = (),
    output_names: Sequence[str] | None = None,
) -> Any:
    """Decorator: each call of the function is one observed run.

    Tabular arguments are logged as inputs under their parameter names; a tabular return value
    (or each tabular item of a returned tuple or dict) as outputs, named by ``output_names``, the
    dict keys, or ``"output"`` / ``"output_<i>"``. Pass ``mlobs_event_time=`` to set the run's
    event time; it is removed before the function is called. ``before`` checks receive all bound
    arguments, ``after`` checks all named outputs.
    """
    if callable(name):  # used bare: @component
        return component()(name)

    def decorate(func: Callable) -> Callable:
        comp = name or func.__name__
        signature = inspect.signature(func)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            event_time = kwargs.pop("mlobs_event_time", None)
            try:
                bound = signature.bind(*args, **kwargs)
                bound.apply_defaults()
                arguments = _flatten_arguments(signature, bound.arguments)
            except TypeError:
                arguments = {}
            with observe(
                comp,
                pipeline=pipeline,
                stage=stage,
                event_time=event_time,
                code_version=code_version,
                before=before,
                after=after,
                stop_on_check_failure=stop_on_check_failure,
                sensitive=sensitive,
            ) as run:
                for arg_name, value in arguments.items():
                    if is_tabular(value):
                        _auto_log(run.log_input, arg_name, value)
                run._run_before_checks(arguments)
                result = func(*args, **kwargs)
                named = _named_outputs(result, output_names)
                for out_name, value in named.items():
                    if is_tabular(value):
                        _auto_log(run.log_output, out_name, value)
                run._output_data = named
            return result

        wrapper.__wrapped__ = func  # type: ignore[attr-defined]
        return wrapper

    return decorate


def _auto_log(log: Callable[..., str], name: str, value: Any) -> None:
    """Log what the decorator found; data it cannot read is skipped with a warning, never
    raised into the user's call (explicit ``log_input`` calls do raise)."""
    try:
        log(name, value)
    except (TypeError, ValueError) as exc:
        _emit.count("errors")
        _LOG.warning("not logging %r: %s", name, exc)


def _flatten_arguments(signature: inspect.Signature, arguments: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for arg_name, value in arguments.items():
        kind = signature.parameters[arg_name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            out.update({f"{arg_name}_{i}": v for i, v in enumerate(value)})
        elif kind is inspect.Parameter.VAR_KEYWORD:
            out.update(value)
        else:
            out[arg_name] = value
    return out


def _named_outputs(result: Any, names: Sequence[str] | None) -> dict[str, Any]:
    if isinstance(result, dict) and not is_tabular(result):
        return {str(k): v for k, v in result.items()}
    if isinstance(result, tuple):
        labels = list(names or [])
        return {labels[i] if i < len(labels) else f"output_{i}": v for i, v in enumerate(result)}
    if result is None:
        return {}
    return {names[0] if names else "output": result}
