"""Last-value, EMA and seasonal-naive forecasters (O(modules) per tick, compiled)."""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np

from shift_rl.forecast.base import (
    DEFAULT_HORIZONS,
    SPREAD_ALPHA,
    SPREAD_FACTOR,
    TrackedForecaster,
    _check_int,
    _check_share,
    clean,
    row_active,
    score,
    store,
)

DEFAULT_SEASON_TICKS = 1440
"""One day of 60 s ticks."""


@numba.njit(cache=True)
def _ema_update(
    demand, mode, active, tick, last, pend, mae, nres, spread_alpha, alpha, level
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
            if not math.isnan(x):
                if math.isnan(level[b, m]):
                    level[b, m] = x
                else:
                    level[b, m] += alpha * (x - level[b, m])
                last[b, m] = x
            for k in range(H):
                path[k] = level[b, m]
            store(pend, b, m, t, path, last[b, m])
        tick[b] = t + 1


def spread_at(mae: np.ndarray, horizon: int) -> np.ndarray:
    """95 % half-width from a one-step MAE, growing like sqrt(h) (random walk of errors).

    Kept for callers of the first version; the models now track each horizon's error.
    """
    return (SPREAD_FACTOR * math.sqrt(max(horizon, 1))) * mae


class EMAForecaster(TrackedForecaster):
    """Exponentially weighted level: smooths noise, lags behind trends by ~1/alpha ticks.

    ``l_t = l_{t-1} + alpha * (y_t - l_{t-1})``, ``yhat_{t+h} = l_t`` for every ``h``. The first
    observation of a module initializes its level, so a fresh forecaster does not start from
    zero; a missing observation leaves the level as it is. ``alpha = 1`` is the last-value
    (naive) forecast. Parameters: ``alpha`` (default 0.3), plus ``horizons`` and
    ``spread_alpha`` of :class:`TrackedForecaster`.
    """

    name = "ema"
    model_state = ("level",)

    def __init__(
        self,
        num_envs: int,
        num_modules: int,
        alpha: float = 0.3,
        *,
        horizons: int = DEFAULT_HORIZONS,
        spread_alpha: float = SPREAD_ALPHA,
    ) -> None:
        self.alpha = _check_share(self.name, "alpha", alpha)
        super().__init__(num_envs, num_modules, horizons=horizons, spread_alpha=spread_alpha)
        self.level = np.full((self.num_envs, self.num_modules), np.nan)

    def _reset_state(self, sel: Any) -> None:
        self.level[sel] = np.nan

    def _update(self, demand: np.ndarray, mode: int, active: np.ndarray) -> None:
        _ema_update(
            demand, mode, active, self.tick, self.last, self.pend, self.mae, self.nres,
            self.spread_alpha, self.alpha, self.level,
        )  # fmt: skip

    def _forecast_far(self, horizon: int) -> np.ndarray:
        return self.level.copy()


class LastValueForecaster(EMAForecaster):
    """Predicts the last observed demand at every horizon (the naive forecast, ``alpha = 1``)."""

    name = "last"

    def __init__(
        self,
        num_envs: int,
        num_modules: int,
        *,
        horizons: int = DEFAULT_HORIZONS,
        spread_alpha: float = SPREAD_ALPHA,
    ) -> None:
        super().__init__(
            num_envs, num_modules, alpha=1.0, horizons=horizons, spread_alpha=spread_alpha
        )


@numba.njit(cache=True)
def _snaive_update(
    demand, mode, active, tick, last, pend, mae, nres, spread_alpha, buf
):  # pragma: no cover - compiled
    B, M = demand.shape
    H = pend.shape[2]
    S = buf.shape[2]
    path = np.empty(H)
    for b in range(B):
        if not row_active(demand, b, mode, active):
            continue
        t = tick[b]
        for m in range(M):
            x = clean(demand[b, m])
            score(pend, mae, nres, b, m, t, x, spread_alpha)
            if not math.isnan(x):
                buf[b, m, t % S] = x
                last[b, m] = x
            for k in range(H):
                v = buf[b, m, (t + k + 1) % S]
                path[k] = v if not math.isnan(v) else last[b, m]
            store(pend, b, m, t, path, last[b, m])
        tick[b] = t + 1


class SeasonalNaiveForecaster(TrackedForecaster):
    """Same time yesterday: ``yhat_{t+h} = y_{t+h-k*S}`` with ``k = ceil(h / S)``.

    ``buf[phase]`` holds the latest observed demand at each phase ``tick % S`` of the season
    (``S = season_ticks``, default 1440 = one day of 60 s ticks). A missing observation keeps
    the value from one season earlier. Until a phase has been observed (the first season), the
    forecast falls back to the last value. Memory: ``num_envs * num_modules * S`` floats.
    """

    name = "seasonal_naive"
    model_state = ("buf",)
    seasonal = True

    def __init__(
        self,
        num_envs: int,
        num_modules: int,
        season_ticks: int = DEFAULT_SEASON_TICKS,
        *,
        horizons: int = DEFAULT_HORIZONS,
        spread_alpha: float = SPREAD_ALPHA,
    ) -> None:
        self.season_ticks = _check_int(f"{self.name}: season_ticks", season_ticks, 2)
        super().__init__(num_envs, num_modules, horizons=horizons, spread_alpha=spread_alpha)
        self.buf = np.full((self.num_envs, self.num_modules, self.season_ticks), np.nan)

    def _reset_state(self, sel: Any) -> None:
        self.buf[sel] = np.nan

    def _update(self, demand: np.ndarray, mode: int, active: np.ndarray) -> None:
        _snaive_update(
            demand, mode, active, self.tick, self.last, self.pend, self.mae, self.nres,
            self.spread_alpha, self.buf,
        )  # fmt: skip

    def _forecast_far(self, horizon: int) -> np.ndarray:
        phase = (self._last_ticks() + horizon) % self.season_ticks  # (B, 1)
        rows = np.arange(self.num_envs)[:, None]
        cols = np.arange(self.num_modules)[None, :]
        v = self.buf[rows, cols, phase]
        return np.where(np.isnan(v), self.last, v)
