"""Merged references: the same bytes for the same inputs, in any process, and close to exact."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from datasketches import kll_doubles_sketch

from otel_mlobs.processor.analyzers.diagnose import columns as colmod


def _sketch(values: np.ndarray, k: int = 200) -> bytes:
    s = kll_doubles_sketch(k)
    s.update(np.asarray(values, dtype=np.float64))
    return s.serialize()


def _inputs(seed: int = 0) -> tuple[list[bytes], np.ndarray]:
    rng = np.random.default_rng(seed)
    parts = [rng.normal(i, 1 + i / 3, 5_000) for i in range(8)]  # compacted sketches, k=200
    return [_sketch(p) for p in parts], np.sort(np.concatenate(parts))


_SCRIPT = """
import sys
from otel_mlobs.processor.analyzers.diagnose import columns as colmod
blobs = [bytes.fromhex(line) for line in sys.stdin.read().split()]
sys.stdout.write(colmod.merge_sketches(blobs).hex())
"""


def test_the_same_inputs_merge_to_the_same_bytes_in_every_process():
    # the inputs are made once: building a compacted sketch is itself random
    blobs, _ = _inputs()
    given = "\n".join(b.hex() for b in blobs)
    runs = {
        subprocess.run(
            [sys.executable, "-c", _SCRIPT],
            input=given,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for _ in range(2)
    }
    assert runs == {colmod.merge_sketches(blobs).hex()}


def test_a_large_pool_keeps_evenly_spaced_order_statistics_and_its_extremes():
    blobs, pooled = _inputs()
    merged = colmod.merge_sketches(blobs)
    kept = colmod.exact_values(merged)
    assert kept is not None and len(kept) == colmod.MERGED_VALUES  # exact mode, bounded
    assert kept[0] == pooled[0] and kept[-1] == pooled[-1]
    levels = np.linspace(0.01, 0.99, 99)
    ranks = np.searchsorted(pooled, colmod.quantiles(merged, levels)) / len(pooled)
    # the inputs' own KLL error (k=200: about 1.3%) dominates; the pooling adds at most 1/4096
    assert np.abs(ranks - levels).max() < 0.02


def test_a_small_pool_keeps_every_value():
    rng = np.random.default_rng(1)
    parts = [rng.normal(size=300) for _ in range(3)]
    merged = colmod.merge_sketches([_sketch(p, 512) for p in parts])
    np.testing.assert_array_equal(colmod.exact_values(merged), np.sort(np.concatenate(parts)))


def test_exact_up_to_raises_what_is_kept_whole():
    rng = np.random.default_rng(2)
    parts = [rng.normal(size=1_000) for _ in range(6)]
    blobs = [_sketch(p, 1_000) for p in parts]
    assert len(colmod.exact_values(colmod.merge_sketches(blobs))) == colmod.MERGED_VALUES
    whole = colmod.merge_sketches(blobs, exact_up_to=10_000)
    np.testing.assert_array_equal(colmod.exact_values(whole), np.sort(np.concatenate(parts)))
    # past the exact limit the reference is bounded again, not as large as the limit
    over = colmod.merge_sketches(blobs, exact_up_to=5_000)
    assert len(colmod.exact_values(over)) == colmod.MERGED_VALUES


def test_single_item_and_empty_inputs():
    one = kll_doubles_sketch(200)
    one.update(3.5)
    merged = colmod.merge_sketches([one.serialize(), b"", one.serialize()])
    assert colmod.sketch_size(merged) == 2
    assert colmod.quantiles(merged, [0.5])[0] == pytest.approx(3.5)
    assert colmod.merge_sketches([b"", b""]) == b""
    assert colmod.merge_sketches([b"not a sketch"]) == b""
