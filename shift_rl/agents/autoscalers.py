"""What operators run today: Kubernetes-style HPA and VPA recommendations, realised as shifts.

A shared pool has no spare units once it is fully allocated, so an autoscaler's scale-up of
one module is realised by a shift from a module whose own recommendation is below its
allocation (scale-down surplus); with no such module the scale-up waits, like pods pending
on a full cluster. Every tick each autoscaler resizes every module, as its real counterpart
does each sync period: each module asks for its deficit or offers its surplus (a plan), and
the guard matches them, largest first, inside the tick's budget. In single-shift mode only
the first of those shifts runs: the largest deficit from the largest surplus.

**HPA** (``hpa``; defaults are Kubernetes' documented ones): desired servers
``ceil(current * utilization / target)`` with ``current`` the servers serving or warming up;
no change while ``|utilization / target - 1| <= tolerance`` (0.1); scale-down stabilization:
the highest recommendation of the last ``downscale_window_s`` (300 s) wins; no stabilization
for scale-up, which is limited per period to ``max(2 x current, current + 4)``.

**VPA** (``vpa``): per module a histogram of used servers (``utilization x servers``) with
exponentially growing buckets (5 % apart, as the VPA recommender's) and weights that decay with
a 24 h half-life; the target is the 90th percentile plus a 15 % safety margin.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from shift_rl.agents.base import HeuristicPolicy, parse_params
from shift_rl.observation import ObservedState
from shift_rl.scenario import ScenarioParams


@dataclass(frozen=True)
class HPAParams:
    target_utilization: float = 0.7
    tolerance: float = 0.1
    downscale_window_s: float = 300.0
    max_scale_up_factor: float = 2.0
    max_scale_up_servers: float = 4.0


class HPAPolicy(HeuristicPolicy):
    """Horizontal Pod Autoscaler rules over a shared pool (see module docstring)."""

    name = "hpa"

    def __init__(self, params: ScenarioParams, **overrides: float) -> None:
        super().__init__(params)
        self.p: HPAParams = parse_params(HPAParams, self.name, overrides)
        window = max(1, math.ceil(self.p.downscale_window_s / params.tick_seconds))
        self.history: deque[np.ndarray] = deque(maxlen=window)

    def reset(self) -> None:
        self.history.clear()

    def recommend(self, state: ObservedState) -> np.ndarray:
        """(M,) desired servers after tolerance, stabilization and the scale-up limit."""
        q = self.p
        current = self.servers(state.alloc + state.incoming)
        ratio = np.where(state.missing, 1.0, state.utilization / q.target_utilization)
        desired = np.where(np.abs(ratio - 1.0) <= q.tolerance, current, np.ceil(current * ratio))
        self.history.append(desired)
        stabilized = np.max(np.stack(self.history), axis=0)  # safest scale-down in the window
        desired = np.where(desired < current, np.minimum(stabilized, current), desired)
        limit = np.maximum(q.max_scale_up_factor * current, current + q.max_scale_up_servers)
        return np.minimum(desired, limit)

    def requests(self, state: ObservedState) -> np.ndarray:
        surplus, deficit = self.kind_gaps(self.recommend(state), state)
        return self.resize(surplus, deficit, state)


@dataclass(frozen=True)
class VPAParams:
    percentile: float = 0.9
    margin: float = 0.15
    half_life_s: float = 86_400.0
    bucket_growth: float = 0.05


class VPAPolicy(HeuristicPolicy):
    """Vertical Pod Autoscaler recommender over a shared pool (see module docstring)."""

    name = "vpa"

    def __init__(self, params: ScenarioParams, **overrides: float) -> None:
        super().__init__(params)
        self.p: VPAParams = parse_params(VPAParams, self.name, overrides)
        top = float(np.max(params.pool_units / params.units_per_server.min(axis=1)[:, None]))
        n = math.ceil(math.log(top / 0.1) / math.log1p(self.p.bucket_growth)) + 2
        self.edges = 0.1 * (1.0 + self.p.bucket_growth) ** np.arange(n)
        self.decay = 0.5 ** (params.tick_seconds / self.p.half_life_s)
        self.weights = np.zeros((params.num_modules, n))

    def reset(self) -> None:
        self.weights[:] = 0.0

    def recommend(self, state: ObservedState) -> np.ndarray:
        """(M,) target servers: weighted percentile of used servers plus the margin."""
        used = self.servers(state.alloc) * state.utilization
        self.weights *= self.decay
        idx = np.clip(np.searchsorted(self.edges, used), 0, len(self.edges) - 1)
        seen = np.flatnonzero(~state.missing)
        self.weights[seen, idx[seen]] += 1.0
        cum = np.cumsum(self.weights, axis=1)
        total = cum[:, -1:]
        at = np.argmax(cum >= self.p.percentile * np.maximum(total, 1e-12), axis=1)
        target = self.edges[at] * (1.0 + self.p.margin)
        current = self.servers(state.alloc + state.incoming)
        return np.where(total[:, 0] > 0, target, current)

    def requests(self, state: ObservedState) -> np.ndarray:
        surplus, deficit = self.kind_gaps(self.recommend(state), state)
        return self.resize(surplus, deficit, state)


@dataclass(frozen=True)
class ProportionalParams:
    hysteresis: float = 1.0  # units of imbalance tolerated before shifting


class ProportionalPolicy(HeuristicPolicy):
    """Shares follow the forecast: each kind's pool above the floors split by forecast need."""

    name = "proportional"

    def __init__(self, params: ScenarioParams, **overrides: float) -> None:
        super().__init__(params)
        self.p: ProportionalParams = parse_params(ProportionalParams, self.name, overrides)

    def requests(self, state: ObservedState) -> np.ndarray:
        p = self.params
        need = state.forecast_servers[:, None] * p.units_per_server  # (M, R) units
        spare = p.pool_units - state.free - p.floor.sum(axis=0)
        share = need / np.maximum(need.sum(axis=0), 1e-9)
        target = p.floor + share * np.maximum(spare, 0)
        held = state.alloc + state.incoming
        surplus = np.floor(np.maximum(held - target - self.p.hysteresis, 0.0))
        deficit = np.maximum(target - held - self.p.hysteresis, 0.0)
        return self.resize(surplus, deficit, state)
