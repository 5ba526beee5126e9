"""Column layout of the pane tables shared by the analyzer and the estimators."""

from __future__ import annotations

# live[bucket, stat]: sums over every live prediction
L_N = 0  # predictions
L_NEST = 1  # predictions with an estimate
L_S = 2  # sum of the blended P(correct)
L_Q = 3  # sum of p(1-p) of the blended P(correct): the live sampling variance
L_S_IW = 4  # sum of the bucket (importance-weighting) estimate
L_S_CAL = 5  # sum of the calibrated-score estimate
L_NCAL = 6  # predictions with a calibrated-score estimate
N_LIVE = 7

# joined[band, bucket, stat]: sums over joined pairs
J_J = 0  # joined pairs
J_C = 1  # correct predictions among them
J_E = 2  # sum of the blended P(correct) of joined pairs that had one
J_NEST = 3  # joined pairs with an estimate
N_JOINED = 4

WINDOWS: dict[str, tuple[int, int]] = {"1h": (0, 12), "1d": (1, 24), "7d": (1, 168)}
"""Window name -> (ring, panes): 1h over 5-minute panes, 1d and 7d over hourly panes."""

RING_WIDTHS = (300.0, 3600.0, 86400.0)
DAILY_RING = 2
