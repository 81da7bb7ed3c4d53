"""What a control plane can observe of its modules: the simulator and real backends both
produce it, and the forecaster, reputation, guard and observation builder only read it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Telemetry:
    """Observed state of a batch of control planes (leading axis: env).

    Per-module metrics are NaN where the module's telemetry is missing this tick
    (``missing`` is then True); allocations are always known to the control plane.
    """

    tick: np.ndarray  # (B,) int64, ticks since episode start
    hour: np.ndarray  # (B,) float, time of day in hours
    demand: np.ndarray  # (B, M) requests in the last tick
    utilization: np.ndarray  # (B, M) share of serving capacity in use, [0, 1]
    latency: np.ndarray  # (B, M) mean response time, seconds
    error_rate: np.ndarray  # (B, M) share of requests dropped, [0, 1]
    attainment: np.ndarray  # (B, M) share of demand served within the SLO, [0, 1]
    reported_need: np.ndarray  # (B, M) servers the module says it needs next tick
    confidence: np.ndarray  # (B, M) the module's confidence in that report, [0, 1]
    missing: np.ndarray  # (B, M) bool
    alloc: np.ndarray  # (B, M, R) int64 units serving
    incoming: np.ndarray  # (B, M, R) int64 units in transit to the module (warming up)
    capacity: np.ndarray  # (B, R) int64 units online (pool minus failed)
    free: np.ndarray  # (B, R) int64 units unallocated
