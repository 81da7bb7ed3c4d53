"""Last-value and exponential-moving-average forecasters (O(modules) per tick, compiled)."""

from __future__ import annotations

import math

import numba
import numpy as np

SPREAD_ALPHA = 0.1
"""EMA weight of the absolute one-step error behind every simple model's spread."""


@numba.njit(cache=True)
def _ema_update(demand, alpha, level, started, mae):  # pragma: no cover - compiled
    for b in range(demand.shape[0]):
        for m in range(demand.shape[1]):
            x = demand[b, m]
            if math.isnan(x):
                continue
            if started[b, m]:
                mae[b, m] += SPREAD_ALPHA * (abs(x - level[b, m]) - mae[b, m])
                level[b, m] += alpha * (x - level[b, m])
            else:
                level[b, m] = x
                started[b, m] = True


def spread_at(mae: np.ndarray, horizon: int) -> np.ndarray:
    """95 % half-width from the one-step MAE, growing like sqrt(h) (random walk of errors).

    1.25 * MAE estimates the std of normal errors; 1.96 std is the 95 % half-width.
    """
    return (1.96 * 1.25 * math.sqrt(max(horizon, 1))) * mae


class EMAForecaster:
    """Exponentially weighted level: smooths noise, lags behind trends by ~1/alpha ticks.

    The first observation of a module initializes its level, so a fresh forecaster does not
    start from zero. ``alpha = 1`` is the last-value (naive) forecast.
    """

    name = "ema"

    def __init__(self, num_envs: int, num_modules: int, alpha: float = 0.3) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"{self.name}: alpha must be in (0, 1], got {alpha}")
        self.alpha = float(alpha)
        self.level = np.zeros((num_envs, num_modules))
        self.started = np.zeros((num_envs, num_modules), dtype=bool)
        self.mae = np.zeros((num_envs, num_modules))

    def reset(self, rows: np.ndarray | None = None) -> None:
        sel = slice(None) if rows is None else rows
        self.level[sel] = 0.0
        self.started[sel] = False
        self.mae[sel] = 0.0

    def update(self, demand: np.ndarray) -> None:
        _ema_update(demand, self.alpha, self.level, self.started, self.mae)

    def predict(self, horizon: int) -> tuple[np.ndarray, np.ndarray]:
        return self.level.copy(), spread_at(self.mae, horizon)


class LastValueForecaster(EMAForecaster):
    """Predicts the last observed demand at every horizon (the naive forecast)."""

    name = "last"

    def __init__(self, num_envs: int, num_modules: int) -> None:
        super().__init__(num_envs, num_modules, alpha=1.0)
