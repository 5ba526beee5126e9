"""Reference row samples: the first healthy runs of one dataset, kept until a model is fit.

The density model and the drift classifier learn "normal" from the row samples of the first
``runs`` runs of each dataset. A run reported failed (its run span carries an error) is dropped
if it arrives while the reference is still open; samples are capped per run so one huge run
cannot dominate the reference or memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np


@dataclass
class SampleReference:
    """Row samples of the first ``runs`` runs of one dataset."""

    runs: int
    max_rows: int = 2000
    samples: list[tuple[str, float, dict[str, np.ndarray]]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Whether enough runs are in."""
        return len(self.samples) >= self.runs

    def add(
        self,
        run_id: str,
        event_time: float,
        columns: Mapping[str, np.ndarray],
        rng: np.random.Generator,
    ) -> None:
        """Keep one run's sample (uniformly thinned to ``max_rows``), once per run."""
        if self.complete or any(r == run_id for r, _, _ in self.samples) or not columns:
            return
        n = len(next(iter(columns.values())))
        take = np.sort(rng.choice(n, self.max_rows, replace=False)) if n > self.max_rows else None
        kept = {
            k: np.asarray(v) if take is None else np.asarray(v)[take] for k, v in columns.items()
        }
        self.samples.append((run_id, float(event_time), kept))

    def drop(self, run_id: str) -> None:
        """Forget a run that turned out to have failed."""
        self.samples = [s for s in self.samples if s[0] != run_id]

    def columns(self) -> list[str]:
        """Columns present in every reference sample, in first-seen order."""
        if not self.samples:
            return []
        common = set.intersection(*(set(c) for _, _, c in self.samples))
        return [k for k in self.samples[0][2] if k in common]
