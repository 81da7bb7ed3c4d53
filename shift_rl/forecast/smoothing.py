"""Holt (linear trend, optionally damped) and additive Holt-Winters (daily season), compiled."""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np

from shift_rl.forecast.base import (
    DEFAULT_HORIZONS,
    SPREAD_ALPHA,
    TrackedForecaster,
    _check_int,
    _check_share,
    clean,
    row_active,
    score,
    store,
)
from shift_rl.forecast.simple import DEFAULT_SEASON_TICKS


@numba.njit(cache=True, inline="always")
def _holt_step(x, level, trend, alpha, beta, phi):  # pragma: no cover - compiled
    """One Holt step; a missing ``x`` propagates the state (prediction without correction)."""
    if math.isnan(x):
        return level + phi * trend, phi * trend
    new = alpha * x + (1.0 - alpha) * (level + phi * trend)
    return new, beta * (new - level) + (1.0 - beta) * phi * trend


@numba.njit(cache=True)
def _holt_update(
    demand, mode, active, tick, last, pend, mae, nres, spread_alpha, alpha, beta, phi, level, trend
):  # pragma: no cover - compiled
    B, M = demand.shape
    H = pend.shape[2]
    path = np.empty(H)
    for b in range(B):
        if not row_active(demand, b, mode, active):
            continue
        t = tick[b]
        for m in range(M):
            x = clean(demand[b, m])
            score(pend, mae, nres, b, m, t, x, spread_alpha)
            if math.isnan(level[b, m]):
                if not math.isnan(x):
                    level[b, m] = x
                    trend[b, m] = 0.0
            else:
                level[b, m], trend[b, m] = _holt_step(x, level[b, m], trend[b, m], alpha, beta, phi)
            if not math.isnan(x):
                last[b, m] = x
            damp = 0.0
            pk = 1.0
            for k in range(H):
                pk *= phi
                damp += pk
                path[k] = level[b, m] + damp * trend[b, m]
            store(pend, b, m, t, path, last[b, m])
        tick[b] = t + 1


def _damped_sum(phi: float, horizon: int) -> float:
    """phi + phi^2 + ... + phi^h."""
    if phi == 1.0:
        return float(horizon)
    return phi * (1.0 - phi**horizon) / (1.0 - phi)


class HoltForecaster(TrackedForecaster):
    """Holt's linear trend, damped by ``phi`` (``phi = 1``: undamped).

    ``l_t = alpha y_t + (1 - alpha)(l_{t-1} + phi b_{t-1})``,
    ``b_t = beta (l_t - l_{t-1}) + (1 - beta) phi b_{t-1}``,
    ``yhat_{t+h} = l_t + (phi + ... + phi^h) b_t``.
    The first observation sets ``l = y``, ``b = 0``. A missing observation propagates the state
    (``l <- l + phi b``, ``b <- phi b``): the forecast made before the gap stays valid.
    Defaults: ``alpha = 0.5``, ``beta = 0.02``, ``phi = 0.9`` (the trend fades over ~10 ticks,
    so a burst does not become a runaway ramp).
    """

    name = "holt"
    model_state = ("level", "trend")

    def __init__(
        self,
        num_envs: int,
        num_modules: int,
        alpha: float = 0.5,
        beta: float = 0.02,
        phi: float = 0.9,
        *,
        horizons: int = DEFAULT_HORIZONS,
        spread_alpha: float = SPREAD_ALPHA,
    ) -> None:
        self.alpha = _check_share(self.name, "alpha", alpha)
        self.beta = _check_share(self.name, "beta", beta, low_open=False)
        self.phi = _check_share(self.name, "phi", phi)
        super().__init__(num_envs, num_modules, horizons=horizons, spread_alpha=spread_alpha)
        shape = (self.num_envs, self.num_modules)
        self.level = np.full(shape, np.nan)
        self.trend = np.zeros(shape)

    def _reset_state(self, sel: Any) -> None:
        self.level[sel] = np.nan
        self.trend[sel] = 0.0

    def _update(self, demand: np.ndarray, mode: int, active: np.ndarray) -> None:
        _holt_update(
            demand, mode, active, self.tick, self.last, self.pend, self.mae, self.nres,
            self.spread_alpha, self.alpha, self.beta, self.phi, self.level, self.trend,
        )  # fmt: skip

    def _forecast_far(self, horizon: int) -> np.ndarray:
        return self.level + _damped_sum(self.phi, horizon) * self.trend


@numba.njit(cache=True)
def _hw_update(
    demand, mode, active, tick, last, pend, mae, nres, spread_alpha,
    alpha, beta, gamma, phi, smooth, level, trend, seas, snext, start, ready,
):  # fmt: skip  # pragma: no cover - compiled
    B, M = demand.shape
    H = pend.shape[2]
    S = seas.shape[2]
    width = 2 * smooth + 1
    path = np.empty(H)
    for b in range(B):
        if not row_active(demand, b, mode, active):
            continue
        t = tick[b]
        p = t % S
        for m in range(M):
            x = clean(demand[b, m])
            score(pend, mae, nres, b, m, t, x, spread_alpha)
            if ready[b, m]:
                lv = level[b, m]
                tr = phi * trend[b, m]
                if math.isnan(x):  # propagate: level + trend, season unchanged
                    level[b, m] = lv + tr
                    trend[b, m] = tr
                else:
                    # snext: the (smoothed) seasonal term of this phase, from the last tick
                    new = alpha * (x - snext[b, m]) + (1.0 - alpha) * (lv + tr)
                    trend[b, m] = beta * (new - lv) + (1.0 - beta) * tr
                    seas[b, m, p] = gamma * (x - lv - tr) + (1.0 - gamma) * seas[b, m, p]
                    level[b, m] = new
            elif start[b, m] >= 0 or not math.isnan(x):
                # Warm-up season: record raw demand by phase, forecast with Holt meanwhile.
                if start[b, m] < 0:
                    start[b, m] = t
                    level[b, m] = x
                    trend[b, m] = 0.0
                else:
                    level[b, m], trend[b, m] = _holt_step(
                        x, level[b, m], trend[b, m], alpha, beta, phi
                    )
                seas[b, m, p] = x
                if t - start[b, m] + 1 == S:  # one full season seen: classical initialization
                    total = 0.0
                    count = 0
                    for q in range(S):
                        v = seas[b, m, q]
                        if not math.isnan(v):
                            total += v
                            count += 1
                    l0 = total / count
                    for q in range(S):
                        v = seas[b, m, q]
                        seas[b, m, q] = v - l0 if not math.isnan(v) else 0.0
                    level[b, m] = l0
                    trend[b, m] = 0.0
                    ready[b, m] = True
            if not math.isnan(x):
                last[b, m] = x
            if start[b, m] >= 0:
                # Seasonal terms of phases t+1.., each the mean of s over phase +- smooth
                # (a sliding sum: O(smooth + H) per tick).
                sv = 0.0
                acc = 0.0
                if ready[b, m]:
                    q = t + 1
                    if smooth == 0:
                        sv = seas[b, m, q % S]
                    else:
                        for i in range(q - smooth, q + smooth + 1):
                            acc += seas[b, m, i % S]
                        sv = acc / width
                    snext[b, m] = sv
                damp = 0.0
                pk = 1.0
                for k in range(H):
                    if k > 0 and ready[b, m]:
                        q = t + k + 1
                        if smooth == 0:
                            sv = seas[b, m, q % S]
                        else:
                            acc += seas[b, m, (q + smooth) % S] - seas[b, m, (q - 1 - smooth) % S]
                            sv = acc / width
                    pk *= phi
                    damp += pk
                    path[k] = level[b, m] + damp * trend[b, m] + sv
            else:
                for k in range(H):
                    path[k] = math.nan
            store(pend, b, m, t, path, last[b, m])
        tick[b] = t + 1


class HoltWintersForecaster(TrackedForecaster):
    """Additive Holt-Winters: level, (damped) trend and a daily additive season, online.

    With ``S = season_ticks`` (default 1440 = one day of 60 s ticks), ``p = t mod S`` and
    ``S_q`` the seasonal term of phase ``q`` (below):

    * ``l_t = alpha (y_t - S_p) + (1 - alpha)(l_{t-1} + phi b_{t-1})``
    * ``b_t = beta (l_t - l_{t-1}) + (1 - beta) phi b_{t-1}``
    * ``s_p <- gamma (y_t - l_{t-1} - phi b_{t-1}) + (1 - gamma) s_p``
    * ``yhat_{t+h} = l_t + (phi + ... + phi^h) b_t + S_{(t+h) mod S}``

    With ``smooth = 0``, ``S_q = s_q``: exactly the recursions of statsmodels'
    ``ExponentialSmoothing(trend="add", seasonal="add", damped_trend=phi < 1)`` (checked in
    the tests). With ``smooth = k > 0``, ``S_q`` is the mean of ``s`` over phases
    ``q - k .. q + k``: each ``s_q`` is an estimate from a few noisy days, and at minute
    resolution the difference ``s_{q+1} - s_q`` is mostly noise that an unsmoothed model adds
    to every forecast (on the shared traces smoothing lowered the MASE of this model by
    10-40 %). Default ``k = round(S / 48)`` (+-30 minutes of a day).

    Initialization (classical, from the first season): the first ``S`` ticks after a module's
    first observation are recorded by phase; then ``l = mean`` of the observed values,
    ``b = 0`` and ``s_q = y_q - l`` for each phase (0 where the value was missing), and the
    recursions run from the next tick. During that warm-up season the model forecasts with
    Holt's level and trend (same ``alpha``, ``beta``, ``phi``). A missing observation after
    warm-up propagates level and trend and leaves the season unchanged.

    Defaults: ``alpha = 0.5``, ``beta = 0.01``, ``gamma = 0.3``, ``phi = 0.98``. Cost per tick
    O(smooth + H) (sliding sums); memory ``num_envs * num_modules * S`` floats.
    """

    name = "holt_winters"
    model_state = ("level", "trend", "seas", "snext", "start", "ready")
    seasonal = True

    def __init__(
        self,
        num_envs: int,
        num_modules: int,
        alpha: float = 0.5,
        beta: float = 0.01,
        gamma: float = 0.3,
        phi: float = 0.98,
        season_ticks: int = DEFAULT_SEASON_TICKS,
        smooth: int | None = None,
        *,
        horizons: int = DEFAULT_HORIZONS,
        spread_alpha: float = SPREAD_ALPHA,
    ) -> None:
        self.alpha = _check_share(self.name, "alpha", alpha)
        self.beta = _check_share(self.name, "beta", beta, low_open=False)
        self.gamma = _check_share(self.name, "gamma", gamma, low_open=False)
        self.phi = _check_share(self.name, "phi", phi)
        self.season_ticks = _check_int(f"{self.name}: season_ticks", season_ticks, 2)
        if smooth is None:
            smooth = round(self.season_ticks / 48)
        self.smooth = _check_int(f"{self.name}: smooth", smooth, 0)
        if 2 * self.smooth + 1 > self.season_ticks:
            raise ValueError(f"{self.name}: smooth={smooth} spans more than one season")
        super().__init__(num_envs, num_modules, horizons=horizons, spread_alpha=spread_alpha)
        shape = (self.num_envs, self.num_modules)
        self.level = np.full(shape, np.nan)
        self.trend = np.zeros(shape)
        self.seas = np.full((*shape, self.season_ticks), np.nan)
        self.snext = np.zeros(shape)
        self.start = np.full(shape, -1, dtype=np.int64)
        self.ready = np.zeros(shape, dtype=np.bool_)

    def _reset_state(self, sel: Any) -> None:
        self.level[sel] = np.nan
        self.trend[sel] = 0.0
        self.seas[sel] = np.nan
        self.snext[sel] = 0.0
        self.start[sel] = -1
        self.ready[sel] = False

    def _update(self, demand: np.ndarray, mode: int, active: np.ndarray) -> None:
        _hw_update(
            demand, mode, active, self.tick, self.last, self.pend, self.mae, self.nres,
            self.spread_alpha, self.alpha, self.beta, self.gamma, self.phi, self.smooth, self.level,
            self.trend, self.seas, self.snext, self.start, self.ready,
        )  # fmt: skip

    def _forecast_far(self, horizon: int) -> np.ndarray:
        phase = (self._last_ticks() + horizon) % self.season_ticks
        rows = np.arange(self.num_envs)[:, None]
        cols = np.arange(self.num_modules)[None, :]
        k = self.smooth
        seas = sum(self.seas[rows, cols, (phase + i) % self.season_ticks] for i in range(-k, k + 1))
        s = np.where(self.ready, seas / (2 * k + 1), 0.0)
        return self.level + _damped_sum(self.phi, horizon) * self.trend + s
