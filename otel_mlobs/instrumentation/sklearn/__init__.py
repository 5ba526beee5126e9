"""Observe scikit-learn without changing the code that uses it.

Every ``fit``, ``fit_transform``, ``transform``, ``predict`` and ``predict_proba`` of a
scikit-learn estimator or ``Pipeline`` becomes one otel-mlobs component run: a span with the
summaries of its inputs (``X``, and ``y`` when fitting) and outputs (predictions, transformed
``Xt``), and, for classifiers, a prediction batch the processor can later join with feedback.

Usage
-----
With the OpenTelemetry launcher, an unmodified script (``pip install opentelemetry-distro``
once, for the launcher to set up the exporter)::

    export OTEL_SERVICE_NAME=churn-training          # or MLOBS_PIPELINE: the pipeline name
    export OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4317
    opentelemetry-instrument python train.py

In code::

    from otel_mlobs.instrumentation.sklearn import SklearnInstrumentor

    SklearnInstrumentor().instrument()               # tracer_provider=... to pick one
    model.fit(X, y)                                  # run "RandomForestClassifier.fit"
    SklearnInstrumentor().uninstrument()             # originals restored

What a run looks like
---------------------
* Component: ``<name>.<method>``, where the name is the estimator's class
  (``RandomForestClassifier.fit``), ``Pipeline(<step names>)`` for pipelines, or what
  :func:`name_component` set. Stage: ``train`` for fitting a predictor, ``features`` for
  transformers and ``transform``, ``inference`` for ``predict*``.
* Lineage: a fit run outputs the pointer ``sklearn://<pipeline>/<name>/<run id>``; predict runs
  of that fitted object read it, and their prediction batches carry its run id as model
  version. Data pointers are content hashes, so a transform's output feeding a predict links
  the two runs.
* Predictions (classifiers only; regressors get output summaries): model name ``<name>``, ids
  from the input's index when it is a pandas index other than the default range, otherwise
  generated as ``<run id>-<row>``. ``predict_proba`` of a binary classifier sends the
  positive-class probability; multi-class sends every column with ``classes_``. To join
  feedback later, index the frame you predict on by your own ids.

Nested calls
------------
Only the outermost call is observed. A ``Pipeline.fit`` is one run (its steps' ``fit_transform``
and ``fit`` are not runs of their own), ``RandomForestClassifier.predict`` is one run (not also
its internal ``predict_proba``, nor one per tree in joblib's worker threads or processes), a
``GridSearchCV.fit`` is one run (not one per candidate). Calls inside a run you opened yourself
with ``otel_mlobs.observe()`` or ``@component`` are left to you: manual observation wins. To
observe the steps of a pipeline separately, call them separately.

Configuration
-------------
Arguments of ``instrument()`` win over environment variables, which win over the defaults.

* ``tracer_provider``: where the spans go, handed to ``otel_mlobs.configure``; default the
  global provider (the one ``opentelemetry-instrument`` sets up).
* ``pipeline``: the pipeline of every run; else ``MLOBS_PIPELINE``, else ``OTEL_SERVICE_NAME``,
  else ``default``.
* ``methods``: the methods observed, a sequence or comma-separated names; else
  ``MLOBS_SKLEARN_METHODS``; default ``fit,fit_transform,transform,predict,predict_proba``.
* ``log_predictions``: send prediction batches of classifiers; else
  ``MLOBS_SKLEARN_LOG_PREDICTIONS`` (``true``/``false``); default true.
* ``sample_rows``: rows sampled per dataset for the processor's joint-distribution checks;
  else ``MLOBS_SKLEARN_SAMPLE_ROWS``; default 512, 0 for summaries only.

Guarantees
----------
The instrumentation never raises into your code: data it cannot summarize (sparse matrices, for
instance) is left out of the run, and any failure of its own is logged (a warning the first time
per method) and ignored. An exception of scikit-learn itself is recorded on the run (status
ERROR) and re-raised unchanged. ``uninstrument()`` restores every patched attribute
(``__wrapped__``); calling ``instrument()`` twice logs a warning and does nothing.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Collection, Iterable
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

from otel_mlobs.instrumentation.sklearn._calls import (
    CallObserver,
    Settings,
    mark_nested,
    set_component_name,
)
from otel_mlobs.instrumentation.sklearn._patching import (
    MARKER,
    Patcher,
    defining_classes,
    estimator_classes,
    wrap,
)
from otel_mlobs.instrumentation.sklearn.package import _instruments

__all__ = ["SklearnInstrumentor", "name_component"]

_LOG = logging.getLogger(__name__)
DEFAULT_METHODS = ("fit", "fit_transform", "transform", "predict", "predict_proba")
DEFAULT_SAMPLE_ROWS = 512
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def name_component(estimator: Any, name: str) -> Any:
    """Give ``estimator``'s runs the component name ``name``; returns the estimator.

    >>> from sklearn.linear_model import LogisticRegression
    >>> model = name_component(LogisticRegression(), "churn_model")
    """
    set_component_name(estimator, name)
    return estimator


def _methods(value: Iterable[str] | str | None) -> tuple[str, ...]:
    if value is None:
        value = os.environ.get("MLOBS_SKLEARN_METHODS") or ",".join(DEFAULT_METHODS)
    if isinstance(value, str):
        value = value.split(",")
    methods = tuple(dict.fromkeys(m.strip() for m in value if m.strip()))
    if not methods or not all(m.isidentifier() for m in methods):
        raise ValueError(f"Invalid 'methods' {value!r}: comma-separated method names")
    return methods


def _flag(value: bool | None, env: str, default: bool) -> bool:
    if value is not None:
        return bool(value)
    raw = os.environ.get(env, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    if raw:
        _LOG.warning("ignoring %s=%r: expected true or false", env, raw)
    return default


def _rows(value: int | None) -> int:
    if value is None:
        raw = os.environ.get("MLOBS_SKLEARN_SAMPLE_ROWS", "").strip()
        try:
            value = int(raw) if raw else DEFAULT_SAMPLE_ROWS
        except ValueError:
            _LOG.warning("ignoring MLOBS_SKLEARN_SAMPLE_ROWS=%r: not an integer", raw)
            value = DEFAULT_SAMPLE_ROWS
    if value < 0:
        raise ValueError(f"Invalid 'sample_rows' {value!r}: must be >= 0")
    return value


class SklearnInstrumentor(BaseInstrumentor):
    """An OpenTelemetry instrumentor for scikit-learn (see the module documentation)."""

    def __init__(self) -> None:
        if not hasattr(self, "_patcher"):  # BaseInstrumentor is a singleton
            self._patcher = Patcher()
            self._configured = False

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        from sklearn.utils.parallel import Parallel

        methods = _methods(kwargs.get("methods"))
        settings = Settings(
            pipeline=kwargs.get("pipeline"),
            log_predictions=_flag(
                kwargs.get("log_predictions"), "MLOBS_SKLEARN_LOG_PREDICTIONS", True
            ),
            sample_rows=_rows(kwargs.get("sample_rows")),
        )
        provider = kwargs.get("tracer_provider")
        if provider is not None:
            import otel_mlobs

            otel_mlobs.configure(tracer_provider=provider)
            self._configured = True
        observer = CallObserver(settings)
        for owner, name in defining_classes(estimator_classes(), methods):
            self._patcher.patch(owner, name, lambda original, n=name: wrap(original, n, observer))
        self._patcher.patch(Parallel, "__call__", _parallel_call)
        _LOG.debug("instrumented %d sklearn methods", len(self._patcher.patched) - 1)

    def _uninstrument(self, **kwargs: Any) -> None:
        self._patcher.restore()
        if self._configured:
            from otel_mlobs.sdk import setup

            setup.shutdown()
            self._configured = False

    @property
    def patched(self) -> list[tuple[type, str]]:
        """The (class, attribute) pairs currently replaced."""
        return self._patcher.patched


def _parallel_call(original: Any) -> Any:
    """sklearn's ``Parallel.__call__``, marking tasks of observed calls as nested."""

    @functools.wraps(original)
    def __call__(self: Any, iterable: Any) -> Any:
        try:
            tasks = mark_nested(iterable)
        except Exception:  # never break sklearn's own parallelism
            tasks = iterable
        return original(self, tasks)

    setattr(__call__, MARKER, True)
    return __call__
