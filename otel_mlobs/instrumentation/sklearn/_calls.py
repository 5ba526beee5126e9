"""What happens around one instrumented sklearn call: a component run with data summaries.

:class:`CallObserver` is the handler the patched methods call. It opens an
:func:`otel_mlobs.observe` run named after the estimator and method, summarizes the inputs and
outputs, logs a prediction batch for classifiers, links a predict run to the fit run that made
the model (an output pointer per fitted estimator), and closes the run. Its own failures are
logged and swallowed; the user's call and its exceptions pass through unchanged.

Only the outermost call is observed. A call is nested when it runs inside another observed run
(a Pipeline calling its steps, a forest's predict calling predict_proba, a grid search fitting
clones), inside a run the user opened with ``observe()`` or ``@component``, or inside work that
such a call handed to sklearn's joblib ``Parallel`` (trees fitted or scored in worker threads or
processes). :func:`mark_nested` wraps those tasks.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

_LOG = logging.getLogger(__name__)
_NESTED: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "mlobs_sklearn_nested", default=False
)

PREDICT_METHODS = frozenset({"predict", "predict_proba", "predict_log_proba", "decision_function"})
TRANSFORM_METHODS = frozenset({"transform", "fit_transform"})
FIT_METHODS = frozenset({"fit", "fit_transform", "partial_fit"})


def in_observed_call() -> bool:
    """True inside an observed call, a user's run, or a task one of them handed to Parallel."""
    from otel_mlobs.sdk.run import current_run

    return _NESTED.get() or current_run() is not None


class NestedTask:
    """A Parallel task that runs with instrumentation silenced (picklable for process pools)."""

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function

    def with_config_and_warning_filters(self, config: Any, warning_filters: Any) -> NestedTask:
        """sklearn's Parallel attaches its configuration to its delayed functions this way."""
        attach = getattr(self.function, "with_config_and_warning_filters", None)
        if attach is not None:
            self.function = attach(config, warning_filters)
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        token = _NESTED.set(True)
        try:
            return self.function(*args, **kwargs)
        finally:
            _NESTED.reset(token)


def mark_nested(tasks: Any) -> Any:
    """Wrap ``(function, args, kwargs)`` tasks of a Parallel call made inside an observed call."""
    if not in_observed_call():
        return tasks
    return ((NestedTask(function), args, kwargs) for function, args, kwargs in tasks)


@dataclass(frozen=True)
class Settings:
    """Resolved options of the instrumentor (see the package docs)."""

    pipeline: str | None
    log_predictions: bool
    sample_rows: int


_names: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
_models: weakref.WeakKeyDictionary[Any, tuple[str, str]] = weakref.WeakKeyDictionary()


def set_component_name(estimator: Any, name: str) -> None:
    """Name the component runs of ``estimator`` (instead of its class name)."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"component name must be a non-empty string, got {name!r}")
    _names[estimator] = name.strip()


def component_name(estimator: Any) -> str:
    """The name the estimator's runs carry: set by the user, else derived from its class."""
    try:
        named = _names.get(estimator)
    except TypeError:  # an unhashable estimator
        named = None
    if named:
        return named
    cls = type(estimator).__name__
    steps = getattr(estimator, "steps", None)
    if cls == "Pipeline" and isinstance(steps, list):
        return f"Pipeline({','.join(str(s[0]) for s in steps)})"
    return cls


def stage_of(estimator: Any, method: str) -> str:
    if method in PREDICT_METHODS:
        return "inference"
    if method in TRANSFORM_METHODS:
        return "features"
    from sklearn.base import is_classifier, is_regressor

    return "train" if is_classifier(estimator) or is_regressor(estimator) else "features"


def prediction_ids(data: Any, run_id: str, n: int) -> np.ndarray:
    """The input's index when it names the rows (not a default range), else ``<run id>-<row>``."""
    import pandas as pd

    index = getattr(data, "index", None)
    if isinstance(index, pd.Index) and not isinstance(index, pd.RangeIndex) and len(index) == n:
        return index.to_numpy().astype(str)
    return np.char.add(f"{run_id}-", np.arange(n).astype(str))


def _as_loggable(data: Any) -> Any:
    """Something the SDK summarizes, or None (sparse matrices, generators, ...)."""
    from otel_mlobs.sdk._tabular import is_tabular

    if data is None or is_tabular(data):
        return data
    if isinstance(data, list | tuple):
        arr = np.asarray(data)
        return arr if arr.dtype != object or arr.ndim == 1 else None
    return None


class CallObserver:
    """The handler of every patched estimator method."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._warned: set[tuple[str, str]] = set()

    def __call__(
        self, method: str, estimator: Any, bound: Callable[..., Any], args: tuple, kwargs: dict
    ) -> Any:
        if in_observed_call():
            return bound(*args, **kwargs)
        run_cm, run = self._open(method, estimator)
        if run is None:
            return bound(*args, **kwargs)
        token = _NESTED.set(True)
        try:
            self._guard(method, "inputs", self._log_inputs, run, method, estimator, args, kwargs)
            result = bound(*args, **kwargs)
        except BaseException as exc:
            _NESTED.reset(token)
            tb = exc.__traceback__
            self._close(run_cm, exc)
            exc.__traceback__ = tb  # ending the run must not add frames to the user's error
            raise
        _NESTED.reset(token)
        self._guard(method, "outputs", self._log_outputs, run, method, estimator, args, result)
        self._close(run_cm, None)
        return result

    # --- the run ----------------------------------------------------------------------------

    def _open(self, method: str, estimator: Any) -> tuple[Any, Any]:
        import otel_mlobs

        try:
            cm = otel_mlobs.observe(
                f"{component_name(estimator)}.{method}",
                pipeline=self.settings.pipeline,
                stage=stage_of(estimator, method),
                sample_rows=self.settings.sample_rows,
            )
            return cm, cm.__enter__()
        except Exception:
            self._warn(method, "start", "could not start a run")
            return None, None

    def _close(self, cm: Any, exc: BaseException | None) -> None:
        try:
            if exc is None:
                cm.__exit__(None, None, None)
            else:
                cm.__exit__(type(exc), exc, exc.__traceback__)
        except BaseException as err:  # observe() re-raises the user's exception: expected
            if err is not exc:
                self._warn("run", "end", f"could not end the run: {err!r}")

    def _guard(self, method: str, what: str, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:
            self._warn(method, what, f"{type(exc).__name__}: {exc}")

    def _warn(self, method: str, what: str, message: str) -> None:
        key = (method, what)
        level = logging.DEBUG if key in self._warned else logging.WARNING
        self._warned.add(key)
        _LOG.log(
            level,
            "sklearn instrumentation skipped the %s of %s: %s",
            what,
            method,
            message,
            exc_info=level == logging.DEBUG,
        )

    # --- inputs and outputs -----------------------------------------------------------------

    def _log_inputs(self, run: Any, method: str, estimator: Any, args: tuple, kwargs: dict) -> None:
        x = args[0] if args else kwargs.get("X")
        loggable = _as_loggable(x)
        if loggable is not None:
            run.log_input("X", loggable)
        if method in FIT_METHODS:
            y = args[1] if len(args) > 1 else kwargs.get("y")
            loggable_y = _as_loggable(y)
            if loggable_y is not None:
                run.log_input("y", loggable_y)
        else:
            model = self._fitted(estimator)
            if model is not None:
                run.add_input(model[0])

    def _log_outputs(self, run: Any, method: str, estimator: Any, args: tuple, result: Any) -> None:
        if method in FIT_METHODS:
            pointer = f"sklearn://{run.pipeline}/{run.component.rsplit('.', 1)[0]}/{run.run_id}"
            with contextlib.suppress(TypeError):  # an unhashable estimator keeps no pointer
                _models[estimator] = (pointer, run.run_id[:12])
            run.add_output(pointer)
        if method == "fit" or method == "partial_fit":
            return
        loggable = _as_loggable(result)
        if loggable is None:
            return
        name = "predictions" if method in PREDICT_METHODS else "Xt"
        run.log_output(name, loggable)
        if method in ("predict", "predict_proba") and self.settings.log_predictions:
            self._log_predictions(
                run, method, estimator, args[0] if args else None, np.asarray(loggable)
            )

    def _fitted(self, estimator: Any) -> tuple[str, str] | None:
        try:
            return _models.get(estimator)
        except TypeError:
            return None

    def _log_predictions(
        self, run: Any, method: str, estimator: Any, x: Any, result: np.ndarray
    ) -> None:
        from sklearn.base import is_classifier

        import otel_mlobs

        if not is_classifier(estimator) or result.ndim not in (1, 2) or len(result) == 0:
            return
        ids = prediction_ids(x, run.run_id, len(result))
        model = self._fitted(estimator)
        kwargs: dict[str, Any] = {
            "model_version": model[1] if model else None,
            "pipeline": run.pipeline,
            "component": run.component,
        }
        name = run.component.rsplit(".", 1)[0]
        if method == "predict":
            otel_mlobs.log_predictions(name, ids, labels=result, **kwargs)
            return
        classes = getattr(estimator, "classes_", None)
        labels = np.asarray(classes)[result.argmax(axis=1)] if classes is not None else None
        if result.ndim == 2 and result.shape[1] == 2:
            otel_mlobs.log_predictions(name, ids, scores=result[:, 1], labels=labels, **kwargs)
        else:
            otel_mlobs.log_predictions(
                name,
                ids,
                scores=result,
                labels=labels,
                classes=None if classes is None else list(classes),
                **kwargs,
            )
