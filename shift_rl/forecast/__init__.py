"""Demand Prediction Engine: incremental forecasters behind one protocol.

Every forecaster works on a batch of environments at once: ``update`` takes the demand
observed this tick with shape ``(num_envs, num_modules)`` (NaN where telemetry is missing:
the model then keeps its state for that module), ``predict(h)`` returns the mean and the
spread (a prediction-interval half-width from recent ``h``-step residuals) ``h`` ticks ahead,
both finite and non-negative. ``reset(rows)`` clears the state of some environments, so a
batched env can restart one episode without touching the others.

Models (``FORECASTERS``): ``last``, ``seasonal_naive``, ``ema``, ``holt``, ``holt_winters``,
``ar`` and ``ensemble``; see each class's docstring for its formulas and defaults, and
:mod:`shift_rl.forecast.base` for the shared residual/spread bookkeeping. Seasonal models
take ``season_ticks`` (one day in ticks; ``make_forecaster(..., tick_seconds=...)`` derives
it when not given).
"""

from __future__ import annotations

from shift_rl.forecast.ar import ARForecaster
from shift_rl.forecast.base import (
    Forecaster,
    TrackedForecaster,
    make_forecaster,
    season_ticks_for,
)
from shift_rl.forecast.ensemble import EnsembleForecaster
from shift_rl.forecast.simple import (
    EMAForecaster,
    LastValueForecaster,
    SeasonalNaiveForecaster,
)
from shift_rl.forecast.smoothing import HoltForecaster, HoltWintersForecaster

FORECASTERS: dict[str, type] = {
    "last": LastValueForecaster,
    "seasonal_naive": SeasonalNaiveForecaster,
    "ema": EMAForecaster,
    "holt": HoltForecaster,
    "holt_winters": HoltWintersForecaster,
    "ar": ARForecaster,
    "ensemble": EnsembleForecaster,
}

__all__ = [
    "FORECASTERS",
    "ARForecaster",
    "EMAForecaster",
    "EnsembleForecaster",
    "Forecaster",
    "HoltForecaster",
    "HoltWintersForecaster",
    "LastValueForecaster",
    "SeasonalNaiveForecaster",
    "TrackedForecaster",
    "make_forecaster",
    "season_ticks_for",
]
