"""The scikit-learn versions the instrumentation supports (checked by ``instrument()``)."""

_instruments = ("scikit-learn >= 1.3",)

_supports_metrics = False
