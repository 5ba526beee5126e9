"""OpenTelemetry instrumentors that observe ML libraries through the otel-mlobs SDK.

Each library has its own subpackage holding a ``BaseInstrumentor`` subclass, registered under
the ``opentelemetry_instrumentor`` entry point group so that ``opentelemetry-instrument`` finds
it; see :mod:`otel_mlobs.instrumentation.sklearn`.
"""
