"""Diagnose: which component, which columns broke, and how.

Three analyzers per (pipeline, component), all learning "normal" from the component's first
healthy runs:

* :class:`ConstraintAnalyzer` (``constraints``): generated constraint suites (schema, types,
  completeness, ranges, categorical domains, uniqueness, freshness, distribution shape) with
  thresholds tuned from healthy run-to-run variability and from people's verdicts;
* :class:`LikelihoodAnalyzer` (``likelihood``): a Chow-Liu tree over the discretized columns of
  each dataset; a column whose values stop agreeing with its neighbours loses likelihood;
* :class:`DriftAnalyzer` (``drift``): an online live-vs-reference classifier (AUC, log loss,
  columns it relies on) and per-column effect sizes (PSI, Wasserstein, Jensen-Shannon).

Alerts carry a class: ``hard`` (a rule broke), ``soft`` (a distribution broke), ``drift`` (the data
moved, nothing is broken). See docs/diagnose.md.
"""

from otel_mlobs.processor.analyzers.diagnose.constraint_analyzer import ConstraintAnalyzer
from otel_mlobs.processor.analyzers.diagnose.drift_analyzer import DriftAnalyzer
from otel_mlobs.processor.analyzers.diagnose.likelihood_analyzer import LikelihoodAnalyzer

ANALYZERS = (ConstraintAnalyzer, LikelihoodAnalyzer, DriftAnalyzer)

__all__ = ["ANALYZERS", "ConstraintAnalyzer", "DriftAnalyzer", "LikelihoodAnalyzer"]
