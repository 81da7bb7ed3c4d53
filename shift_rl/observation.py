"""The observation: telemetry, forecast, reputation and guard state as one normalized vector.

One builder serves the env, the baselines and the runtime controller, so a policy sees in
production exactly the features it was trained on. Every feature has a name and a range
(:attr:`ObservationBuilder.spec`); values are clipped into that range and missing telemetry
becomes 0 plus a ``missing`` flag, so an observation is always finite and inside its space.

Demand-like features are expressed as a *share of the pool*: the units of kind ``r`` the
demand needs at the target utilization, divided by the pool's units of that kind. That makes
modules of different speeds and pools of different sizes comparable.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numba
import numpy as np

from shift_rl.policyfile import ADDED_FEATURES
from shift_rl.safety import SafetyGuard
from shift_rl.scenario import ScenarioParams
from shift_rl.telemetry import Telemetry

SHARE_MAX = 2.0
"""Demand-like shares are clipped here: a module wanting twice the pool is already lost."""
LATENCY_RATIO_MAX = 4.0
VALUE_MAX = 4.0
"""Value weight x module count is clipped here (1 for equal weights)."""


@dataclass(frozen=True)
class Feature:
    name: str
    low: float
    high: float
    description: str


_PER_KIND = (
    ("alloc", 1.0, "units serving / pool units"),
    ("incoming", 1.0, "units warming up towards the module / pool units"),
    ("demand", SHARE_MAX, "units the observed demand needs / pool units"),
    ("forecast", SHARE_MAX, "units the forecast demand (warm-up + 1 ahead) needs / pool units"),
    ("reported_need", SHARE_MAX, "units the module says it needs next tick / pool units"),
)
_PER_MODULE = (
    ("utilization", 1.0, "share of serving capacity in use"),
    ("latency", 1.0, f"mean latency / SLO / {LATENCY_RATIO_MAX:g}"),
    ("error_rate", 1.0, "share of requests dropped"),
    ("attainment", 1.0, "share of demand served within the SLO"),
    ("forecast_spread", 1.0, "forecast interval half-width / forecast mean / 2"),
    ("confidence", 1.0, "the module's confidence in its own report"),
    ("reputation", 1.0, "reputation score"),
    ("locked", 1.0, "share of the stabilization window still to run"),
    ("pending", 1.0, "1 while a shift of this module awaits judgement"),
    ("missing", 1.0, "1 when this tick's telemetry is missing"),
    ("value", 1.0, f"value weight x modules / {VALUE_MAX:g}"),
)


@numba.njit(cache=True)
def _build(
    hour,
    demand,
    util,
    latency,
    errors,
    attain,
    need,
    conf,
    missing,
    alloc,
    incoming,
    capacity,
    free,
    f_mean,
    f_spread,
    reputation,
    tick,
    lock_until,
    window,
    pending,
    servers_per_request,
    units_per_server,
    pool,
    slo,
    value,
    out,
):  # pragma: no cover - compiled
    n_env, n_mod, n_kind = alloc.shape
    per = 5 * n_kind + 11
    for b in range(n_env):
        for m in range(n_mod):
            o = m * per
            gone = missing[b, m]
            for r in range(n_kind):
                scale = servers_per_request[m] * units_per_server[m, r] / pool[r]
                j = o + 5 * r
                out[b, j] = min(alloc[b, m, r] / pool[r], 1.0)
                out[b, j + 1] = min(incoming[b, m, r] / pool[r], 1.0)
                out[b, j + 2] = 0.0 if gone else min(demand[b, m] * scale, SHARE_MAX)
                out[b, j + 3] = min(max(f_mean[b, m] * scale, 0.0), SHARE_MAX)
                need_share = need[b, m] * units_per_server[m, r] / pool[r]
                out[b, j + 4] = 0.0 if gone else min(need_share, SHARE_MAX)
            j = o + 5 * n_kind
            if gone:
                for k in range(5):
                    out[b, j + k] = 0.0
                out[b, j + 5] = 0.0
            else:
                out[b, j] = min(max(util[b, m], 0.0), 1.0)
                out[b, j + 1] = min(latency[b, m] / slo[m] / LATENCY_RATIO_MAX, 1.0)
                out[b, j + 2] = min(max(errors[b, m], 0.0), 1.0)
                out[b, j + 3] = min(max(attain[b, m], 0.0), 1.0)
                out[b, j + 5] = min(max(conf[b, m], 0.0), 1.0)
            mean = f_mean[b, m]
            out[b, j + 4] = min(f_spread[b, m] / (mean + 1e-9) / 2.0, 1.0) if mean > 0 else 1.0
            out[b, j + 6] = min(max(reputation[b, m], 0.0), 1.0)
            out[b, j + 7] = min(max(lock_until[b, m] - tick[b], 0) / window, 1.0)
            out[b, j + 8] = 1.0 if pending[b, m] >= 0 else 0.0
            out[b, j + 9] = 1.0 if gone else 0.0
            out[b, j + 10] = min(value[m] * n_mod / VALUE_MAX, 1.0)
        g = n_mod * per
        angle = 2.0 * np.pi * hour[b] / 24.0
        out[b, g] = np.sin(angle)
        out[b, g + 1] = np.cos(angle)
        for r in range(n_kind):
            out[b, g + 2 + 2 * r] = min(free[b, r] / pool[r], 1.0)
            out[b, g + 3 + 2 * r] = min((pool[r] - capacity[b, r]) / pool[r], 1.0)
            out[b, g + 2 + 2 * n_kind + r] = 1.0 / pool[r]


def feature_layout(modules: list[str], kinds: list[str]) -> list[Feature]:
    """The observation's features, in order, for these module and resource-kind names (what
    an exported policy's ``observation.names`` are checked against)."""
    spec: list[Feature] = []
    for mod in modules:
        for kind in kinds:
            for feat, high, desc in _PER_KIND:
                spec.append(Feature(f"{mod}.{feat}.{kind}", 0.0, high, desc))
        for feat, high, desc in _PER_MODULE:
            spec.append(Feature(f"{mod}.{feat}", 0.0, high, desc))
    spec.append(Feature("time.sin", -1.0, 1.0, "sin of the time of day"))
    spec.append(Feature("time.cos", -1.0, 1.0, "cos of the time of day"))
    for kind in kinds:
        spec.append(Feature(f"pool.free.{kind}", 0.0, 1.0, "unallocated units / pool units"))
        spec.append(Feature(f"pool.offline.{kind}", 0.0, 1.0, "failed units / pool units"))
    for kind in kinds:
        spec.append(Feature(f"pool.unit.{kind}", 0.0, 1.0, "1 / pool units: the share one unit is"))
    return spec


def without_added(names: list[str]) -> list[str]:
    """``names`` without the ``ADDED_FEATURES`` (the observation an older policy read)."""
    return [n for n in names if not n.startswith(ADDED_FEATURES)]


class ObservationBuilder:
    """Builds observations for a scenario's module and kind layout."""

    def __init__(self, params: ScenarioParams, num_envs: int = 1) -> None:
        self.params = params
        spec = feature_layout(
            [m.name for m in params.config.modules], [r.name for r in params.config.resources]
        )
        self.spec: tuple[Feature, ...] = tuple(spec)
        self.low = np.array([f.low for f in spec], dtype=np.float32)
        self.high = np.array([f.high for f in spec], dtype=np.float32)
        self.space = gym.spaces.Box(self.low, self.high, dtype=np.float32)
        self._out = np.zeros((num_envs, len(spec)))
        self._pool = params.pool_units.astype(np.float64)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.spec]

    def build(
        self,
        tel: Telemetry,
        forecast_mean: np.ndarray,
        forecast_spread: np.ndarray,
        reputation: np.ndarray,
        guard: SafetyGuard,
    ) -> np.ndarray:
        """(B, D) float32 observations of the telemetry, forecast, reputation and guard."""
        p = self.params
        _build(tel.hour, tel.demand, tel.utilization, tel.latency, tel.error_rate,
               tel.attainment, tel.reported_need, tel.confidence, tel.missing, tel.alloc,
               tel.incoming, tel.capacity, tel.free, forecast_mean, forecast_spread,
               reputation, tel.tick, guard.lock_until, guard.settings.stabilization_ticks,
               guard.partner, p.servers_per_request, p.units_per_server, self._pool,
               p.slo_seconds, p.value, self._out)  # fmt: skip
        return self._out.astype(np.float32)

    def decode(self, obs: np.ndarray) -> ObservedState:
        """Turn one observation back into natural units, for heuristic policies.

        Heuristics act on the observation alone, so they behave the same in the env and in
        the runtime controller. Shares clipped at their range stay clipped.
        """
        p = self.params
        m, r = p.num_modules, p.num_resources
        per = 5 * r + len(_PER_MODULE)
        x = np.asarray(obs, dtype=np.float64)
        blocks = x[: m * per].reshape(m, per)
        kinds = blocks[:, : 5 * r].reshape(m, r, 5)
        rest = blocks[:, 5 * r :]
        pool = self._pool
        # a demand share of kind r is servers * units_per_server / pool: back to servers
        to_servers = pool[0] / p.units_per_server[:, 0]
        g = x[m * per :]
        return ObservedState(
            alloc=np.rint(kinds[:, :, 0] * pool).astype(np.int64),
            incoming=np.rint(kinds[:, :, 1] * pool).astype(np.int64),
            demand_servers=kinds[:, 0, 2] * to_servers,
            forecast_servers=kinds[:, 0, 3] * to_servers,
            reported_servers=kinds[:, 0, 4] * to_servers,
            utilization=rest[:, 0],
            latency_ratio=rest[:, 1] * LATENCY_RATIO_MAX,
            error_rate=rest[:, 2],
            attainment=rest[:, 3],
            forecast_spread=rest[:, 4] * 2.0,
            confidence=rest[:, 5],
            reputation=rest[:, 6],
            locked=rest[:, 7] > 0.0,
            pending=rest[:, 8] > 0.5,
            missing=rest[:, 9] > 0.5,
            hour=float(np.arctan2(g[0], g[1]) % (2 * np.pi) * 24.0 / (2 * np.pi)),
            free=np.rint(g[2::2][:r] * pool).astype(np.int64),
        )


@dataclass(frozen=True)
class ObservedState:
    """One observation in natural units (M modules, R kinds); see :meth:`ObservationBuilder.decode`.

    ``*_servers`` are servers needed at the target utilization (demand x servers_per_request).
    """

    alloc: np.ndarray  # (M, R) units serving
    incoming: np.ndarray  # (M, R) units warming up towards the module
    demand_servers: np.ndarray  # (M,)
    forecast_servers: np.ndarray  # (M,) forecast warm-up + 1 ticks ahead
    reported_servers: np.ndarray  # (M,) what the module itself says it needs
    utilization: np.ndarray  # (M,)
    latency_ratio: np.ndarray  # (M,) latency / SLO
    error_rate: np.ndarray  # (M,)
    attainment: np.ndarray  # (M,)
    forecast_spread: np.ndarray  # (M,) relative half-width
    confidence: np.ndarray  # (M,)
    reputation: np.ndarray  # (M,)
    locked: np.ndarray  # (M,) bool
    pending: np.ndarray  # (M,) bool
    missing: np.ndarray  # (M,) bool
    hour: float
    free: np.ndarray  # (R,)
