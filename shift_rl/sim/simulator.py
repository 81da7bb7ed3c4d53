"""A batch of simulated control planes stepped together (the single env is a batch of one)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from shift_rl.scenario import FORECAST_HORIZON_MAX, ScenarioParams
from shift_rl.sim.dynamics import advance, apply_shifts, compute_metrics
from shift_rl.sim.exogenous import draw_exogenous
from shift_rl.telemetry import Telemetry


class Simulator:
    """Pool, modules, units in transit and faults for ``num_envs`` independent episodes.

    The simulator knows the truth (``true_attainment``, future demand); what a control plane
    may see is :meth:`telemetry`.
    """

    def __init__(self, params: ScenarioParams, num_envs: int = 1) -> None:
        self.params = p = params
        b, m, r, x = num_envs, p.num_modules, p.num_resources, p.exogenous_ticks
        self.num_envs = b
        fail_slots = p.config.faults.unit_failure.duration_ticks
        self.t = np.zeros(b, dtype=np.int64)
        self.alloc = np.zeros((b, m, r), dtype=np.int64)
        self.transit = np.zeros((b, p.warmup_ticks + 1, m, r), dtype=np.int64)
        self.failed = np.zeros((b, fail_slots, m + 1, r), dtype=np.int64)
        self.free = np.zeros((b, r), dtype=np.int64)
        self.lost = np.zeros((b, r), dtype=np.int64)
        self.exo_demand = np.zeros((b, x, m))
        self.exo_slow = np.ones((b, x, m))
        self.exo_missing = np.zeros((b, x, m), dtype=bool)
        self.exo_eps = np.zeros((b, x, m))
        self.exo_fail = np.zeros((b, x, r), dtype=np.int64)
        self.exo_pick = np.zeros((b, x, r))
        self.start_hour = np.zeros(b)
        self.truth = np.zeros((b, m, 4))  # true utilization, latency, errors, attainment
        self.true_attainment = self.truth[:, :, 3]
        self._tel = Telemetry(
            tick=self.t,
            hour=np.zeros(b),
            demand=np.zeros((b, m)),
            utilization=np.zeros((b, m)),
            latency=np.zeros((b, m)),
            error_rate=np.zeros((b, m)),
            attainment=np.zeros((b, m)),
            reported_need=np.zeros((b, m)),
            confidence=np.broadcast_to(np.exp(-p.claimed_noise), (b, m)).copy(),
            missing=np.zeros((b, m), dtype=bool),
            alloc=self.alloc,
            incoming=np.zeros((b, m, r), dtype=np.int64),
            capacity=np.zeros((b, r), dtype=np.int64),
            free=self.free,
        )

    def reset(
        self,
        seeds: Sequence[int],
        rows: np.ndarray | None = None,
        params: Sequence[ScenarioParams] | None = None,
    ) -> None:
        """Start new episodes in ``rows`` (all when None), one exogenous seed per row.

        ``params[k]`` (default: the simulator's) draws row ``rows[k]``'s demand and faults: a
        scenario variant of the same layout (see :func:`~shift_rl.scenario.layout_differences`).
        """
        idx = np.arange(self.num_envs) if rows is None else np.asarray(rows)
        p = self.params
        draw_params = [p] * len(idx) if params is None else params
        for row, seed, rp in zip(idx, seeds, draw_params, strict=True):
            exo = draw_exogenous(rp, int(seed))
            self.exo_demand[row] = exo.demand
            self.exo_slow[row] = exo.slowdown
            self.exo_missing[row] = exo.telemetry_missing
            self.exo_eps[row] = exo.report_eps
            self.exo_fail[row] = exo.failures
            self.exo_pick[row] = exo.failure_pick
            self.start_hour[row] = exo.start_hour
        self.t[idx] = 0
        self.alloc[idx] = p.initial_alloc
        self.transit[idx] = 0
        self.failed[idx] = 0
        self.free[idx] = p.pool_units - p.initial_alloc.sum(axis=0)
        self.lost[idx] = 0
        # Measure the new rows only: the others keep the metrics of the tick they are in (a
        # rollback after that tick's measurement must not show in it when another row resets).
        tel = self._tel
        measured = (tel.hour, tel.incoming, tel.capacity, tel.demand, tel.utilization,
                    tel.latency, tel.error_rate, tel.attainment, self.truth,
                    tel.reported_need, tel.missing)  # fmt: skip
        others = np.setdiff1d(np.arange(self.num_envs), idx)
        kept = [a[others].copy() for a in measured]
        self._measure()
        for a, v in zip(measured, kept, strict=True):
            a[others] = v

    def shift(
        self, env: np.ndarray, src: np.ndarray, dst: np.ndarray, kind: np.ndarray, units: np.ndarray
    ) -> np.ndarray:
        """Start shifts (parallel arrays, one entry per shift); returns units moved per shift."""
        tel = self._tel
        return apply_shifts(self.alloc, self.transit, tel.incoming, env, src, dst, kind, units)

    def step(self) -> None:
        """Advance one tick: warm-up arrivals, failures and returns, then fresh metrics."""
        last = self.params.episode_ticks + FORECAST_HORIZON_MAX - 1
        if (self.t >= last).any():  # the compiled kernels would read past the episode's arrays
            rows = np.flatnonzero(self.t >= last).tolist()
            raise RuntimeError(
                f"episode over in rows {rows} (tick {int(self.t.max())}, episode_ticks="
                f"{self.params.episode_ticks}): reset before stepping further"
            )
        advance(
            self.t, self.alloc, self.transit, self.failed, self.free,
            self.exo_fail, self.exo_pick, self.params.history_ticks, self.lost,
        )  # fmt: skip
        self._measure()

    def _measure(self) -> None:
        p, tel = self.params, self._tel
        compute_metrics(
            self.t, p.history_ticks, self.alloc, self.transit, self.failed, p.pool_units,
            self.start_hour, self.exo_demand, self.exo_slow, self.exo_missing, self.exo_eps,
            p.service_rate, p.slo_seconds, p.units_per_server, p.servers_per_request,
            p.report_noise, p.tick_seconds, tel.hour, tel.incoming, tel.capacity, tel.demand,
            tel.utilization, tel.latency, tel.error_rate, tel.attainment, self.truth,
            tel.reported_need, tel.missing,
        )  # fmt: skip

    def telemetry(self) -> Telemetry:
        """The observable state (arrays are live views: copy what you keep)."""
        return self._tel

    def demand_window(self, start: int, length: int) -> np.ndarray:
        """True demand of ticks ``t + start .. t + start + length - 1`` per env: (B, L, M)."""
        base = self.params.history_ticks + self.t[:, None] + start + np.arange(length)
        return np.take_along_axis(self.exo_demand, base[:, :, None], axis=1)

    def observed_history(self) -> np.ndarray:
        """Demand of the ``history_ticks`` before the episode as telemetry showed it, (B, H, M):
        NaN where it was missing. What a control plane warms its forecasts on."""
        h = self.params.history_ticks
        return np.where(self.exo_missing[:, :h], np.nan, self.exo_demand[:, :h])

    def history(self, length: int) -> np.ndarray:
        """Demand of the ``length`` ticks before the episode, (B, L, M): to warm up forecasts."""
        h = self.params.history_ticks
        return self.exo_demand[:, h - length : h]
