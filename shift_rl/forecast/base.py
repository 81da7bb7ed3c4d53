"""The forecaster protocol, the factory, and the shared per-horizon residual bookkeeping.

Every concrete model derives from :class:`TrackedForecaster`, which owns what all models share:

* ``tick`` (B,): ticks each env row has seen since its last reset. A row's clock advances on an
  ``update`` call when the row has at least one finite value (or when ``active`` says so), so
  the plane's pattern of feeding an all-NaN row to envs it is not resetting leaves them alone,
  while a single module's missing telemetry (NaN among finite values) still lets time pass.
* ``pend`` (B, M, H, H): the forecasts made for the next ``H`` ticks. ``pend[b, m, s, h-1]`` is
  the forecast for the tick ``t`` with ``t % H == s`` made ``h`` ticks before it. When the
  demand of tick ``t`` arrives, slot ``t % H`` is compared with it and freed.
* ``mae`` (B, M, H): exponentially weighted mean absolute ``h``-step error (weight
  ``spread_alpha``; the first error initializes it). The spread reported at horizon ``h`` is
  ``1.96 * 1.25 * mae_h``: 1.25 * MAE estimates the standard deviation of normal errors, and
  1.96 standard deviations is the 95 % half-width. Past ``H`` (or before the first ``h``-step
  error is known) it is extrapolated from the largest horizon ``k`` with errors as
  ``mae_k * sqrt(h / k)`` (errors growing like a random walk).
* ``last`` (B, M): the last finite demand, the fallback of every model while it warms up.

``predict(h)`` for ``h <= H`` only reads the forecasts stored by the last ``update`` (so it is
O(B * M)); farther horizons ask the model (``_forecast_far``).

Demand is cleaned on the way in: NaN and +-inf mean "missing" (the model keeps its state for
that entry: level models hold it, trend models propagate it by one tick without a correction),
and negative values are read as 0. Forecasts are clipped at 0 and replaced by the last value
if they are ever non-finite, so ``predict`` returns finite, non-negative arrays.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numba
import numpy as np

from shift_rl.arraystate import load_arrays, save_arrays

SECONDS_PER_DAY = 86_400.0
DEFAULT_HORIZONS = 4
"""Horizons 1..H whose residuals are tracked exactly (the env asks for warm-up + 1 = 3)."""
SPREAD_ALPHA = 0.1
"""Default EMA weight of the absolute h-step error behind the spread (~10 ticks of memory)."""
SPREAD_FACTOR = 1.96 * 1.25
"""95 % half-width per unit of mean absolute error (normal errors: std = 1.25 MAE)."""


@runtime_checkable
class Forecaster(Protocol):
    """Incremental demand forecaster over a batch of environments and their modules."""

    name: str

    def reset(self, rows: np.ndarray | None = None) -> None:
        """Forget the history of the given env rows (all when ``None``)."""

    def update(self, demand: np.ndarray, active: np.ndarray | None = None) -> None:
        """Take the demand of the tick just observed, shape ``(num_envs, num_modules)``.

        ``active`` (optional, bool ``(num_envs,)``) says which rows saw a tick; by default a
        row saw one when any of its entries is finite.
        """

    def predict(self, horizon: int) -> tuple[np.ndarray, np.ndarray]:
        """Mean and spread ``horizon`` ticks ahead, each ``(num_envs, num_modules)``."""


def season_ticks_for(tick_seconds: float) -> int:
    """Ticks in one day for a tick length in seconds (at least 2): 60 s -> 1440, 300 s -> 288."""
    tick = float(tick_seconds)
    if not (math.isfinite(tick) and tick > 0):
        raise ValueError(f"tick_seconds must be a finite number > 0, got {tick_seconds!r}")
    return max(2, round(SECONDS_PER_DAY / tick))


# --- compiled helpers shared by every model kernel -------------------------------------------


@numba.njit(cache=True, inline="always")
def row_active(demand, b, mode, active):  # pragma: no cover - compiled
    """Does env row ``b`` see a tick? ``mode`` 1: as ``active`` says; 0: any finite value."""
    if mode == 1:
        return active[b]
    for m in range(demand.shape[1]):
        if math.isfinite(demand[b, m]):
            return True
    return False


@numba.njit(cache=True, inline="always")
def clean(x):  # pragma: no cover - compiled
    """NaN for missing (NaN or +-inf), 0 for negative, else the value."""
    if not math.isfinite(x):
        return math.nan
    if x < 0.0:
        return 0.0
    return x


@numba.njit(cache=True, inline="always")
def score(pend, mae, nres, b, m, t, x, spread_alpha):  # pragma: no cover - compiled
    """Compare the forecasts stored for tick ``t`` with its demand ``x``; free their slot."""
    H = pend.shape[2]
    slot = t % H
    for k in range(H):
        f = pend[b, m, slot, k]
        if not math.isnan(f) and not math.isnan(x):
            e = abs(x - f)
            if nres[b, m, k] == 0:
                mae[b, m, k] = e
            else:
                mae[b, m, k] += spread_alpha * (e - mae[b, m, k])
            nres[b, m, k] += 1
        pend[b, m, slot, k] = math.nan


@numba.njit(cache=True, inline="always")
def store(pend, b, m, t, path, fallback):  # pragma: no cover - compiled
    """Keep ``path[h-1]`` as the forecast of tick ``t + h`` (>= 0; fallback if not finite)."""
    H = pend.shape[2]
    for k in range(H):
        v = path[k]
        if not math.isfinite(v):
            v = fallback
        elif v < 0.0:
            v = 0.0
        pend[b, m, (t + k + 1) % H, k] = v


@numba.njit(cache=True, inline="always")
def spread_of(mae, nres, b, m, h):  # pragma: no cover - compiled
    """95 % half-width at horizon ``h`` from the tracked h-step errors (see module doc)."""
    H = mae.shape[2]
    k = min(h, H)
    while k >= 1 and nres[b, m, k - 1] == 0:
        k -= 1
    if k == 0:
        return 0.0
    s = SPREAD_FACTOR * mae[b, m, k - 1]
    if k < h:
        s *= math.sqrt(h / k)
    return s


@numba.njit(cache=True)
def _predict_tracked(pend, mae, nres, tick, h, mean, spread):  # pragma: no cover - compiled
    H = pend.shape[2]
    for b in range(pend.shape[0]):
        t = tick[b] - 1  # the last observed tick
        for m in range(pend.shape[1]):
            if t < 0:
                mean[b, m] = 0.0
                spread[b, m] = 0.0
                continue
            if h <= H:
                v = pend[b, m, (t + h) % H, h - 1]
                mean[b, m] = v if math.isfinite(v) and v >= 0.0 else 0.0
            s = spread_of(mae, nres, b, m, h)
            spread[b, m] = s if math.isfinite(s) else 0.0


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _check_share(owner: str, name: str, value: Any, low_open: bool = True) -> float:
    """A float in (0, 1] (or [0, 1] with ``low_open=False``)."""
    v = float(value)
    ok = (0.0 < v <= 1.0) if low_open else (0.0 <= v <= 1.0)
    if not ok:
        bounds = "(0, 1]" if low_open else "[0, 1]"
        raise ValueError(f"{owner}: {name} must be in {bounds}, got {value!r}")
    return v


class TrackedForecaster(ABC):
    """Base of every model: row clocks, stored forecasts and per-horizon residuals.

    Subclasses allocate their state in ``_alloc``, clear it in ``_reset_state(sel)``, advance
    it in ``_update(demand, mode, active)`` (a compiled kernel that also calls ``score`` and
    ``store`` for every active entry and advances ``tick``), and forecast past ``H`` in
    ``_forecast_far(h)``.
    """

    name = "tracked"
    seasonal = False
    model_state: tuple[str, ...] = ()
    """Names of the model's own state arrays (beside the shared ones), for :meth:`state`."""
    _SHARED_STATE = ("tick", "last", "pend", "mae", "nres")

    def __init__(
        self,
        num_envs: int,
        num_modules: int,
        *,
        horizons: int = DEFAULT_HORIZONS,
        spread_alpha: float = SPREAD_ALPHA,
    ) -> None:
        self.num_envs = _check_int("num_envs", num_envs, 1)
        self.num_modules = _check_int("num_modules", num_modules, 1)
        self.horizons = _check_int(f"{self.name}: horizons", horizons, 1)
        self.spread_alpha = _check_share(self.name, "spread_alpha", spread_alpha)
        shape = (self.num_envs, self.num_modules)
        H = self.horizons
        self.tick = np.zeros(self.num_envs, dtype=np.int64)
        self.last = np.full(shape, np.nan)
        self.pend = np.full((*shape, H, H), np.nan)
        self.mae = np.zeros((*shape, H))
        self.nres = np.zeros((*shape, H), dtype=np.int64)
        self._no_active = np.zeros(self.num_envs, dtype=np.bool_)

    # -- protocol ---------------------------------------------------------------------------

    def reset(self, rows: np.ndarray | None = None) -> None:
        sel: Any = slice(None) if rows is None else np.asarray(rows)
        self.tick[sel] = 0
        self.last[sel] = np.nan
        self.pend[sel] = np.nan
        self.mae[sel] = 0.0
        self.nres[sel] = 0
        self._reset_state(sel)

    def update(self, demand: np.ndarray, active: np.ndarray | None = None) -> None:
        d = np.ascontiguousarray(demand, dtype=np.float64)
        if d.shape != (self.num_envs, self.num_modules):
            raise ValueError(
                f"{self.name}: demand of shape {d.shape}; expected "
                f"({self.num_envs}, {self.num_modules})"
            )
        if active is None:
            self._update(d, 0, self._no_active)
        else:
            act = np.ascontiguousarray(active, dtype=np.bool_)
            if act.shape != (self.num_envs,):
                raise ValueError(
                    f"{self.name}: active of shape {act.shape}; expected ({self.num_envs},)"
                )
            self._update(d, 1, act)

    def predict(self, horizon: int) -> tuple[np.ndarray, np.ndarray]:
        h = _check_int(f"{self.name}: horizon", horizon, 1)
        shape = (self.num_envs, self.num_modules)
        mean = np.zeros(shape)
        spread = np.empty(shape)
        _predict_tracked(self.pend, self.mae, self.nres, self.tick, h, mean, spread)
        if h > self.horizons:
            far = np.asarray(self._forecast_far(h), dtype=np.float64)
            far = np.where(np.isfinite(far), far, self.last)
            far = np.where(np.isfinite(far), np.maximum(far, 0.0), 0.0)
            mean = np.where(self.tick[:, None] > 0, far, 0.0)
        return mean, spread

    def state(self, prefix: str = "") -> dict[str, np.ndarray]:
        """Copies of every state array, keyed ``prefix + name``: restoring them with
        :meth:`load_state` continues the forecasts exactly."""
        return save_arrays(self, (*self._SHARED_STATE, *self.model_state), prefix)

    def load_state(self, record: Mapping[str, np.ndarray], prefix: str = "") -> None:
        """Restore :meth:`state` in place (shapes and dtypes checked first)."""
        names = (*self._SHARED_STATE, *self.model_state)
        load_arrays(self, names, record, prefix, owner=f"forecaster {self.name}")

    # -- for subclasses ---------------------------------------------------------------------

    @abstractmethod
    def _reset_state(self, sel: Any) -> None:
        """Clear the model's own state of the selected rows."""

    @abstractmethod
    def _update(self, demand: np.ndarray, mode: int, active: np.ndarray) -> None:
        """Fold one tick into the model's state (and record its forecasts)."""

    @abstractmethod
    def _forecast_far(self, horizon: int) -> np.ndarray:
        """Mean forecast beyond the tracked horizons."""

    def _last_ticks(self) -> np.ndarray:
        """(B, 1) index of the last observed tick of each row (-1 before the first)."""
        return (self.tick - 1)[:, None]
