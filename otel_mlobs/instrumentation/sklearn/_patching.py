"""Where the sklearn instrumentation hooks in, and how it puts everything back.

Methods are patched on the class that *defines* them (found along each estimator's MRO), so
subclasses, including users' own subclasses of sklearn estimators, are covered by inheritance
and every patched attribute is restored exactly by :meth:`Patcher.restore`.

Most methods are plain functions and get a ``functools.wraps`` wrapper. Some, such as
``Pipeline.predict_proba``, are ``available_if`` descriptors that raise ``AttributeError`` when
the final step lacks the method; those are wrapped by :class:`DescriptorWrapper`, which binds the
original first, so ``hasattr`` answers exactly as before. Either way the replacement carries
``__wrapped__`` (the original attribute) and a marker attribute.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from typing import Any

_LOG = logging.getLogger(__name__)
MARKER = "_mlobs_instrumented"

# (owner, method name, estimator, original bound method, args, kwargs) -> result
Handler = Callable[[str, Any, Callable[..., Any], tuple, dict], Any]


def estimator_classes() -> list[type]:
    """Every public sklearn estimator class, meta-estimators included."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import FeatureUnion, Pipeline
    from sklearn.utils.discovery import all_estimators

    found = [cls for _, cls in all_estimators()]
    return list(dict.fromkeys([*found, Pipeline, FeatureUnion, ColumnTransformer]))


def defining_classes(classes: Iterable[type], methods: Iterable[str]) -> list[tuple[type, str]]:
    """(class, method) pairs to patch: the sklearn class each method is looked up on."""
    out: dict[tuple[type, str], None] = {}
    for cls in classes:
        for name in methods:
            for owner in cls.__mro__:
                if name in vars(owner):
                    if owner.__module__.partition(".")[0] == "sklearn":
                        out[(owner, name)] = None
                    break
    return list(out)


class DescriptorWrapper:
    """Wraps a non-function descriptor: binds the original, then routes the call to ``handler``."""

    def __init__(self, original: Any, name: str, handler: Handler) -> None:
        functools.update_wrapper(self, original, updated=())
        self.__wrapped__ = original
        self._name = name
        self._handler = handler
        setattr(self, MARKER, True)

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        bound = self.__wrapped__.__get__(obj, owner)  # AttributeError passes through, as before
        if obj is None:
            return bound
        name, handler = self._name, self._handler

        @functools.wraps(bound)
        def call(*args: Any, **kwargs: Any) -> Any:
            return handler(name, obj, bound, args, kwargs)

        return call


def wrap(original: Any, name: str, handler: Handler) -> Any:
    """A replacement for the class attribute ``original`` that routes calls to ``handler``."""
    if isinstance(original, staticmethod | classmethod) or not hasattr(original, "__get__"):
        raise TypeError(f"cannot instrument {name!r}: {type(original).__name__}")
    if not callable(original) or not hasattr(original, "__code__"):
        return DescriptorWrapper(original, name, handler)

    @functools.wraps(original)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        return handler(name, self, original.__get__(self, type(self)), args, kwargs)

    setattr(wrapper, MARKER, True)
    return wrapper


class Patcher:
    """Replaces class attributes and remembers them, so that everything can be put back."""

    def __init__(self) -> None:
        self._patched: list[tuple[type, str]] = []

    @property
    def patched(self) -> list[tuple[type, str]]:
        return list(self._patched)

    def patch(self, owner: type, name: str, replacement: Callable[[Any], Any]) -> bool:
        """Set ``owner.name`` to ``replacement(original)``; False when it cannot be patched."""
        original = vars(owner).get(name)
        if original is None or getattr(original, MARKER, False):
            return False
        try:
            setattr(owner, name, replacement(original))
        except (TypeError, AttributeError) as exc:
            _LOG.debug("not instrumenting %s.%s: %s", owner.__qualname__, name, exc)
            return False
        self._patched.append((owner, name))
        return True

    def restore(self) -> None:
        """Put back every original, newest patch first."""
        while self._patched:
            owner, name = self._patched.pop()
            current = vars(owner).get(name)
            if current is not None and getattr(current, MARKER, False):
                setattr(owner, name, current.__wrapped__)
