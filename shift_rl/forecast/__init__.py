"""Demand Prediction Engine: incremental forecasters behind one protocol.

Every forecaster works on a batch of environments at once: ``update`` takes the demand
observed this tick with shape ``(num_envs, num_modules)`` (NaN where telemetry is missing:
the model then keeps its state for that module), ``predict(h)`` returns the mean and the
spread (a prediction-interval half-width from recent residuals) ``h`` ticks ahead, both
finite and non-negative. ``reset(rows)`` clears the state of some environments, so a
batched env can restart one episode without touching the others.
"""

from __future__ import annotations

from shift_rl.forecast.base import Forecaster, make_forecaster
from shift_rl.forecast.simple import EMAForecaster, LastValueForecaster

FORECASTERS: dict[str, type] = {
    "last": LastValueForecaster,
    "ema": EMAForecaster,
}

__all__ = ["FORECASTERS", "EMAForecaster", "Forecaster", "LastValueForecaster", "make_forecaster"]
