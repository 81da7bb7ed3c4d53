"""Ensemble: per module and horizon, weight (or pick) the members by their recent error."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numba
import numpy as np

from shift_rl.forecast.ar import ARForecaster
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
from shift_rl.forecast.simple import (
    DEFAULT_SEASON_TICKS,
    EMAForecaster,
    LastValueForecaster,
    SeasonalNaiveForecaster,
)
from shift_rl.forecast.smoothing import HoltForecaster, HoltWintersForecaster

MEMBER_MODELS: dict[str, type[TrackedForecaster]] = {
    cls.name: cls
    for cls in (
        LastValueForecaster,
        SeasonalNaiveForecaster,
        EMAForecaster,
        HoltForecaster,
        HoltWintersForecaster,
        ARForecaster,
    )
}
"""The models an ensemble may combine (every model but the ensemble itself)."""

DEFAULT_MEMBERS = ("last", "seasonal_naive", "ema", "holt", "holt_winters", "ar")


@numba.njit(cache=True, inline="always")
def _member_error(mae, nres, b, m, h):  # pragma: no cover - compiled
    """Recent mean absolute h-step error (extrapolated like the spread); -1 if none yet."""
    H = mae.shape[2]
    k = min(h, H)
    while k >= 1 and nres[b, m, k - 1] == 0:
        k -= 1
    if k == 0:
        return -1.0
    e = mae[b, m, k - 1]
    if k < h:
        e *= math.sqrt(h / k)
    return e


@numba.njit(cache=True, inline="always")
def _inv_pow(x, power):  # pragma: no cover - compiled
    """x ** -power, by multiplication for the common powers 1, 2 and 4 (pow is slow)."""
    if power == 4.0:
        x2 = x * x
        return 1.0 / (x2 * x2)
    if power == 2.0:
        return 1.0 / (x * x)
    if power == 1.0:
        return 1.0 / x
    return x ** (-power)


@numba.njit(cache=True)
def _ens_update(
    demand, mode, active, tick, last, pend, mae, nres, spread_alpha,
    power, select, mpend, mmae, mnres,
):  # fmt: skip  # pragma: no cover - compiled
    B, M = demand.shape
    H = pend.shape[2]
    K = len(mpend)
    path = np.empty(H)
    err = np.empty(K)
    fc = np.empty(K)
    for b in range(B):
        if not row_active(demand, b, mode, active):
            continue
        t = tick[b]
        for m in range(M):
            x = clean(demand[b, m])
            score(pend, mae, nres, b, m, t, x, spread_alpha)
            if not math.isnan(x):
                last[b, m] = x
            eps = 1e-9 + 1e-6 * (0.0 if math.isnan(last[b, m]) else last[b, m])
            for k in range(H):
                slot = (t + k + 1) % H
                known = False
                for i in range(K):
                    err[i] = _member_error(mmae[i], mnres[i], b, m, k + 1)
                    fc[i] = mpend[i][b, m, slot, k]
                    if err[i] >= 0.0:
                        known = True
                wsum = 0.0
                fsum = 0.0
                best = math.inf
                bestf = math.nan
                for i in range(K):
                    f = fc[i]
                    if math.isnan(f):
                        continue
                    e = err[i]
                    if known and e < 0.0:
                        continue
                    if select:
                        if e < best or math.isnan(bestf):
                            best = e
                            bestf = f
                    else:
                        w = 1.0 if not known else _inv_pow(e + eps, power)
                        wsum += w
                        fsum += w * f
                if select:
                    path[k] = bestf
                else:
                    path[k] = fsum / wsum if wsum > 0.0 else math.nan
            store(pend, b, m, t, path, last[b, m])
        tick[b] = t + 1


class EnsembleForecaster(TrackedForecaster):
    """Combines member models per module and horizon by their recent ``h``-step error.

    Each member ``i`` tracks ``e_i,h``, the EMA (weight ``error_alpha``, default 0.05, about 20
    ticks) of its absolute ``h``-step error. The forecast for ``t + h`` is
    ``sum_i w_i f_i(t+h) / sum_i w_i`` with ``w_i = (e_i,h + eps)^-power`` (default
    ``power = 4``: close to picking the best, yet smooth), or with ``select = 1`` the member
    forecast with the smallest ``e_i,h``. Members without an error yet are left out while any
    member has one (equal weights before that). Its own spread comes from its own residuals.

    Members (Python only, not from a config): ``members`` names, default
    ``last, seasonal_naive, ema, holt, holt_winters, ar`` with their default parameters and the
    shared ``season_ticks`` (default 1440). Cost: the sum of the members' plus O(H * members).
    """

    name = "ensemble"
    seasonal = True

    def __init__(
        self,
        num_envs: int,
        num_modules: int,
        season_ticks: int = DEFAULT_SEASON_TICKS,
        power: float = 4.0,
        select: int = 0,
        error_alpha: float = 0.05,
        members: tuple[str, ...] | list[str] = DEFAULT_MEMBERS,
        *,
        horizons: int = DEFAULT_HORIZONS,
        spread_alpha: float = SPREAD_ALPHA,
    ) -> None:
        self.season_ticks = _check_int(f"{self.name}: season_ticks", season_ticks, 2)
        self.power = float(power)
        if not (math.isfinite(self.power) and self.power > 0.0):
            raise ValueError(f"{self.name}: power must be a finite number > 0, got {power!r}")
        if select not in (0, 1, True, False):
            raise ValueError(f"{self.name}: select must be 0 or 1, got {select!r}")
        self.select = bool(select)
        self.error_alpha = _check_share(self.name, "error_alpha", error_alpha)
        names = tuple(members)
        bad = [n for n in names if n not in MEMBER_MODELS]
        if not names or bad:
            raise ValueError(
                f"{self.name}: members {list(names)}; expected names from {sorted(MEMBER_MODELS)}"
            )
        super().__init__(num_envs, num_modules, horizons=horizons, spread_alpha=spread_alpha)
        self.members: list[TrackedForecaster] = []
        for n in names:
            cls = MEMBER_MODELS[n]
            kw: dict[str, Any] = {"horizons": self.horizons, "spread_alpha": self.error_alpha}
            if getattr(cls, "seasonal", False):
                kw["season_ticks"] = self.season_ticks
            self.members.append(cls(self.num_envs, self.num_modules, **kw))
        self.member_names = names
        self._mpend = tuple(f.pend for f in self.members)
        self._mmae = tuple(f.mae for f in self.members)
        self._mnres = tuple(f.nres for f in self.members)

    def state(self, prefix: str = "") -> dict[str, np.ndarray]:
        out = super().state(prefix)
        for i, f in enumerate(self.members):
            out.update(f.state(f"{prefix}members.{i}.{f.name}."))
        return out

    def load_state(self, record: Mapping[str, np.ndarray], prefix: str = "") -> None:
        super().load_state(record, prefix)
        for i, f in enumerate(self.members):
            f.load_state(record, f"{prefix}members.{i}.{f.name}.")

    def _reset_state(self, sel: Any) -> None:
        rows = None if isinstance(sel, slice) else sel
        for f in self.members:
            f.reset(rows)

    def _update(self, demand: np.ndarray, mode: int, active: np.ndarray) -> None:
        if mode == 0:
            active = np.isfinite(demand).any(axis=1)
        for f in self.members:
            f._update(demand, 1, active)
        _ens_update(
            demand, 1, active, self.tick, self.last, self.pend, self.mae, self.nres,
            self.spread_alpha, self.power, self.select, self._mpend, self._mmae, self._mnres,
        )  # fmt: skip

    def _forecast_far(self, horizon: int) -> np.ndarray:
        means, errs = [], []
        for f in self.members:
            mean, spread = f.predict(horizon)
            known = f.nres[:, :, 0] > 0
            means.append(mean)
            errs.append(np.where(known, spread, np.nan))
        mean_a, err_a = np.stack(means), np.stack(errs)
        eps = 1e-9 + 1e-6 * np.nan_to_num(self.last)
        if self.select:
            pick = np.nanargmin(np.where(np.isnan(err_a), np.inf, err_a), axis=0)
            return np.take_along_axis(mean_a, pick[None], axis=0)[0]
        w = np.where(np.isnan(err_a), 0.0, (np.nan_to_num(err_a) + eps) ** -self.power)
        w = np.where(w.sum(axis=0) > 0, w, 1.0)
        return (w * mean_a).sum(axis=0) / w.sum(axis=0)
