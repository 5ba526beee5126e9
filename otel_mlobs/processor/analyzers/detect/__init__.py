"""Detect: how accurate a deployed model is now, before and as its labels arrive."""

from otel_mlobs.processor.analyzers.detect.analyzer import ModelAccuracyAnalyzer

__all__ = ["ModelAccuracyAnalyzer"]
