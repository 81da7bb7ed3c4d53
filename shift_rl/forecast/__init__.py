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

from typing import Any

from shift_rl.forecast.ar import ARForecaster
from shift_rl.forecast.base import Forecaster, TrackedForecaster, season_ticks_for
from shift_rl.forecast.ensemble import MEMBER_MODELS, EnsembleForecaster
from shift_rl.forecast.simple import (
    EMAForecaster,
    LastValueForecaster,
    SeasonalNaiveForecaster,
)
from shift_rl.forecast.smoothing import HoltForecaster, HoltWintersForecaster

FORECASTERS: dict[str, type[TrackedForecaster]] = {
    **MEMBER_MODELS,
    EnsembleForecaster.name: EnsembleForecaster,
}
"""Every model by its name (what a scenario's ``forecast.model`` names)."""


def make_forecaster(
    name: str,
    num_envs: int,
    num_modules: int,
    *,
    tick_seconds: float | None = None,
    **params: Any,
) -> Forecaster:
    """Build a registered forecaster by name, with a clear error for unknown names/params.

    With ``tick_seconds`` given, a seasonal model (class attribute ``seasonal = True``) whose
    ``params`` lack ``season_ticks`` gets one day: ``season_ticks_for(tick_seconds)``.
    """
    if name not in FORECASTERS:
        raise ValueError(f"unknown forecaster {name!r}; allowed: {sorted(FORECASTERS)}")
    cls = FORECASTERS[name]
    if tick_seconds is not None and getattr(cls, "seasonal", False):
        params.setdefault("season_ticks", season_ticks_for(tick_seconds))
    try:
        return cls(num_envs, num_modules, **params)
    except TypeError as err:
        raise ValueError(f"forecaster {name!r}: bad parameters {params}: {err}") from None


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
