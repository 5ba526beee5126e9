"""React: what to fix first, and where feedback is stuck.

* :class:`RootCauseAnalyzer` (``root_causes``, one per pipeline): column corruption and staleness
  scores, co-erroneous column groups, run lineage (traces, stale runs, flags, review) and the
  root-cause ranking over the dataflow graph.
* :class:`StuckFeedbackAnalyzer` (``stuck_feedback``, one per model): predicates describing the
  predictions whose feedback is overdue.
"""

from __future__ import annotations

from otel_mlobs.processor.analyzers.react.lineage import UnknownName
from otel_mlobs.processor.analyzers.react.root_cause import RootCauseAnalyzer
from otel_mlobs.processor.analyzers.react.stuck_feedback import StuckFeedbackAnalyzer

__all__ = ["RootCauseAnalyzer", "StuckFeedbackAnalyzer", "UnknownName"]
