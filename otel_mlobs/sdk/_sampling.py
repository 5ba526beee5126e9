"""Which rows the sample-based statistics and the content pointer read: one cached plan per size.

A plan depends only on the table's row count and the sampling parameters, never on the data, so
it is drawn once per batch size (pipelines score batches of a few recurring sizes) and known
before the single pass over the data, which gathers the planned rows while they are in cache.

* ``sketch``: a uniform random sample without replacement of ``sketch_rows`` rows (sorted), or
  None when every row is used; sketches, quantiles, distinct estimates and text top values come
  from it.
* ``sample``: the ``mlobs.sample`` rows, the first ``sample_rows`` of the same random draw (so a
  sample no larger than the sketch sample is a subset of it, and usually the same rows).
* ``pointer``: :data:`POINTER_ROWS` rows spread evenly over the table, read by the fingerprint.

With ``seed=None`` the draw uses :data:`DEFAULT_SEED`: tables of one size are sampled at the
same row positions every time, so the same data always gets the same summary. Each table's
sample is still a uniform random sample of its rows (positions are drawn independently of the
data), but the sampling errors of two tables of the same size and row order are correlated.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

DEFAULT_SEED = 0x6D6C6F6273
POINTER_ROWS = 64


@dataclass(frozen=True, slots=True)
class Plan:
    """Sorted, read-only row positions; ``rows`` is the union of the other three, and
    ``within`` maps each of those arrays (by identity) to its positions in ``rows``."""

    sketch: np.ndarray | None
    sample: np.ndarray
    pointer: np.ndarray
    rows: np.ndarray
    within: dict[int, np.ndarray]

    def locate(self, idx: np.ndarray) -> np.ndarray | None:
        """Positions of ``idx`` in ``rows`` when ``idx`` is one of this plan's arrays."""
        return self.within.get(id(idx))


@functools.lru_cache(maxsize=64)
def plan(n: int, sketch_rows: int | None, sample_rows: int, seed: int | None) -> Plan:
    """The plan of an ``n``-row table (see the module docs); :class:`ValueError` for negative
    sizes."""
    if sample_rows < 0 or (sketch_rows is not None and sketch_rows <= 0):
        raise ValueError(
            f"sample_rows must be >= 0 and sketch_rows positive or None, got "
            f"{sample_rows} and {sketch_rows}"
        )
    rng = np.random.default_rng(DEFAULT_SEED if seed is None else seed)
    sketch = None
    if sketch_rows is not None and sketch_rows < n:
        picked = rng.choice(n, size=sketch_rows, replace=False)  # in random order
        sketch = np.sort(picked)
        if sample_rows == sketch_rows:
            sample = sketch  # the same rows: gathered once
        elif sample_rows < sketch_rows:
            sample = np.sort(picked[:sample_rows])
        else:
            sample = _sample(n, sample_rows, rng)
    else:
        sample = _sample(n, sample_rows, rng)
    if n <= POINTER_ROWS:
        pointer = np.arange(n)
    else:
        step = n // POINTER_ROWS
        pointer = step // 2 + np.arange(POINTER_ROWS) * step
    parts = [sample, pointer] if sketch is None else [sketch, sample, pointer]
    rows = np.unique(np.concatenate(parts))
    within = {id(arr): np.searchsorted(rows, arr) for arr in parts}
    for arr in (*parts, rows, *within.values()):
        arr.setflags(write=False)  # shared by every call of this size
    return Plan(sketch, sample, pointer, rows, within)


def _sample(n: int, sample_rows: int, rng: np.random.Generator) -> np.ndarray:
    if sample_rows <= 0 or n == 0:
        return np.zeros(0, np.intp)
    if n <= sample_rows:
        return np.arange(n)
    return np.sort(rng.choice(n, size=sample_rows, replace=False))
