"""Autoregressive forecaster with time-of-day features, ridge-refitted on a rolling window."""

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
    clean,
    row_active,
    score,
    store,
)
from shift_rl.forecast.simple import DEFAULT_SEASON_TICKS

CAP_FACTOR = 2.0
"""Forecasts are capped at this multiple of the largest value in the fitting window/lags."""


def time_features(season_ticks: int, harmonics: int) -> np.ndarray:
    """(S, 2K) table: ``sin(2 pi k q / S), cos(2 pi k q / S)`` for k = 1..K, phase q = 0..S-1."""
    q = np.arange(season_ticks, dtype=np.float64)[:, None]
    k = np.arange(1, harmonics + 1, dtype=np.float64)[None, :]
    ang = 2.0 * np.pi * k * q / season_ticks
    out = np.empty((season_ticks, 2 * harmonics))
    out[:, 0::2] = np.sin(ang)
    out[:, 1::2] = np.cos(ang)
    return out


@numba.njit(cache=True, inline="always")
def _features(buf, b, m, j, p, tf, f):  # pragma: no cover - compiled
    """Raw features of target tick ``j`` into ``f``: 1, y_{j-1..j-p}, time of day. Valid?"""
    L = buf.shape[2]
    f[0] = 1.0
    for i in range(1, p + 1):
        v = buf[b, m, (j - i) % L]
        if math.isnan(v):
            return False
        f[i] = v
    row = tf[j % tf.shape[0]]
    for i in range(tf.shape[1]):
        f[1 + p + i] = row[i]
    return True


@numba.njit(cache=True, inline="always")
def _target(y, f, p):  # pragma: no cover - compiled
    """Regression target: the change from the first lag (the level itself when p = 0)."""
    return y - f[1] if p >= 1 else y


@numba.njit(cache=True, inline="always")
def _accumulate(A, c, b, m, f, y, sign):  # pragma: no cover - compiled
    d = f.shape[0]
    for i in range(d):
        fi = sign * f[i]
        c[b, m, i] += fi * y
        for k in range(i, d):
            A[b, m, i, k] += fi * f[k]


@numba.njit(cache=True)
def _solve(A, c, n, b, m, p, lam, coef, scale, work, rhs):  # pragma: no cover - compiled
    """Ridge solve on the scaled window; Cholesky of the (symmetric, p.d.) normal matrix."""
    d = rhs.shape[0]
    cnt = n[b, m]
    s = (A[b, m, 0, 1] if p >= 1 else c[b, m, 0]) / cnt  # mean level (demand >= 0)
    if not s > 0.0:
        s = 1.0
    for i in range(d):
        di = 1.0 / s if 1 <= i <= p else 1.0
        rhs[i] = c[b, m, i] * di / s
        for k in range(i, d):
            dk = 1.0 / s if 1 <= k <= p else 1.0
            work[i, k] = A[b, m, i, k] * di * dk
            work[k, i] = work[i, k]
        if i >= 1:
            work[i, i] += lam * cnt
    # Cholesky in place (lower), then forward and back substitution.
    for i in range(d):
        for k in range(i + 1):
            acc = work[i, k]
            for q in range(k):
                acc -= work[i, q] * work[k, q]
            if i == k:
                if acc <= 0.0:
                    return False
                work[i, i] = math.sqrt(acc)
            else:
                work[i, k] = acc / work[k, k]
    for i in range(d):
        acc = rhs[i]
        for q in range(i):
            acc -= work[i, q] * rhs[q]
        rhs[i] = acc / work[i, i]
    for i in range(d - 1, -1, -1):
        acc = rhs[i]
        for q in range(i + 1, d):
            acc -= work[q, i] * rhs[q]
        rhs[i] = acc / work[i, i]
    for i in range(d):
        if not math.isfinite(rhs[i]):
            return False
    for i in range(d):
        coef[b, m, i] = rhs[i]
    scale[b, m] = s
    return True


@numba.njit(cache=True, inline="always")
def _path(buf, last, coef, scale, cap, b, m, t, p, tf, horizon, lags, out):  # pragma: no cover
    """Iterated forecasts for ticks t+1..t+horizon into ``out`` (scaled units inside)."""
    L = buf.shape[2]
    s = scale[b, m]
    top = cap[b, m]
    fill = last[b, m]
    for i in range(p):  # lags[i] = y_{t-i}, missing values filled by the one after them
        v = buf[b, m, (t - i) % L]
        if math.isnan(v):
            v = fill
        else:
            fill = v
        lags[i] = v
        if v > top:
            top = v
    top *= CAP_FACTOR
    S = tf.shape[0]
    K = tf.shape[1]
    for h in range(horizon):
        z = coef[b, m, 0]
        for i in range(p):
            z += coef[b, m, 1 + i] * (lags[i] / s)
        row = tf[(t + h + 1) % S]
        for i in range(K):
            z += coef[b, m, 1 + p + i] * row[i]
        y = z * s + (lags[0] if p >= 1 else 0.0)
        if not y >= 0.0:  # also catches NaN
            y = 0.0
        elif y > top:
            y = top
        out[h] = y
        for i in range(p - 1, 0, -1):
            lags[i] = lags[i - 1]
        if p > 0:
            lags[0] = y


@numba.njit(cache=True)
def _ar_update(
    demand, mode, active, tick, last, pend, mae, nres, spread_alpha,
    p, window, refit_every, min_rows, lam, tf, buf, A, c, n, coef, scale, cap, fitted,
):  # fmt: skip  # pragma: no cover - compiled
    B, M = demand.shape
    H = pend.shape[2]
    L = buf.shape[2]
    d = A.shape[2]
    path = np.empty(H)
    f = np.empty(d)
    lags = np.empty(max(p, 1))
    work = np.empty((d, d))
    rhs = np.empty(d)
    for b in range(B):
        if not row_active(demand, b, mode, active):
            continue
        t = tick[b]
        for m in range(M):
            x = clean(demand[b, m])
            score(pend, mae, nres, b, m, t, x, spread_alpha)
            buf[b, m, t % L] = x
            if not math.isnan(x):
                last[b, m] = x
                if _features(buf, b, m, t, p, tf, f):
                    _accumulate(A, c, b, m, f, _target(x, f, p), 1.0)
                    n[b, m] += 1
            j = t - window  # the row that leaves the window
            if j >= 0:
                y = buf[b, m, j % L]
                if not math.isnan(y) and _features(buf, b, m, j, p, tf, f):
                    _accumulate(A, c, b, m, f, _target(y, f, p), -1.0)
                    n[b, m] -= 1
            if (t + 1) % window == 0:  # rebase: exact sums over the window (no drift)
                for i in range(d):
                    c[b, m, i] = 0.0
                    for k in range(d):
                        A[b, m, i, k] = 0.0
                n[b, m] = 0
                for j in range(max(t - window + 1, 0), t + 1):
                    y = buf[b, m, j % L]
                    if not math.isnan(y) and _features(buf, b, m, j, p, tf, f):
                        _accumulate(A, c, b, m, f, _target(y, f, p), 1.0)
                        n[b, m] += 1
            if n[b, m] >= min_rows and (not fitted[b, m] or (t + 1) % refit_every == 0):
                if _solve(A, c, n, b, m, p, lam, coef, scale, work, rhs):
                    fitted[b, m] = True
                    top = 0.0
                    for j in range(max(t - window + 1, 0), t + 1):
                        y = buf[b, m, j % L]
                        if y > top:
                            top = y
                    cap[b, m] = top
            if fitted[b, m]:
                _path(buf, last, coef, scale, cap, b, m, t, p, tf, H, lags, path)
            else:
                for k in range(H):
                    path[k] = last[b, m]
            store(pend, b, m, t, path, last[b, m])
        tick[b] = t + 1


@numba.njit(cache=True)
def _ar_far(tick, last, buf, coef, scale, cap, fitted, p, tf, horizon, out):  # pragma: no cover
    lags = np.empty(max(p, 1))
    path = np.empty(horizon)
    for b in range(out.shape[0]):
        t = tick[b] - 1
        for m in range(out.shape[1]):
            if t >= 0 and fitted[b, m]:
                _path(buf, last, coef, scale, cap, b, m, t, p, tf, horizon, lags, path)
                out[b, m] = path[horizon - 1]
            else:
                out[b, m] = last[b, m]


class ARForecaster(TrackedForecaster):
    """Ridge autoregression on recent lags and time-of-day features, refitted periodically.

    Feature row of target tick ``j``:
    ``x_j = [1, y_{j-1}/s, ..., y_{j-p}/s, sin(2 pi k q_j / S), cos(2 pi k q_j / S), k = 1..K]``
    with ``q_j = j mod S`` the tick within the season (``S = season_ticks``, one day;
    ``K = harmonics``, ``p = lags``). The target is the change ``(y_j - y_{j-1}) / s``, so the
    ridge penalty shrinks towards the naive forecast (no change) rather than towards zero
    demand; ``s`` = mean of ``y_{j-1}`` over the rows, so the penalty does not depend on the
    demand's size. (With ``p = 0`` the target is ``y_j / s`` and ``s`` its mean.)

    Fit: the rows among the last ``window`` targets whose target and lags are all observed;
    ``beta`` solves the ridge normal equations ``(X'X + lam * n * I0) beta = X'z`` (``n`` rows,
    ``lam = ridge``, ``I0`` the identity without the intercept entry) by Cholesky.
    Forecast: ``yhat_{t+h} = yhat_{t+h-1} + s * beta . x_{t+h}`` iterated from the observed
    lags (a missing lag takes the value after it), feeding forecasts back as lags, each clipped
    to ``[0, 2 * max(window, lags)]``.

    Cost: ``X'X`` and ``X'z`` are kept as rolling sums (add the new row, subtract the row that
    leaves the window: O(d^2) per tick, ``d = 1 + p + 2K``), recomputed exactly every
    ``window`` ticks (amortized O(d^2)) so rounding cannot drift, and solved (O(d^3)) every
    ``refit_every`` ticks and as soon as ``min_rows`` rows are available (until then the
    forecast is the last value). Memory: ``window + p + 1`` past values per module.

    Defaults (chosen on the train splits of the shared traces): ``lags = 8``,
    ``harmonics = 2``, ``window = 720``, ``refit_every = 60``, ``ridge = 1e-2``,
    ``season_ticks = 1440``, ``min_rows = 3 d``. ``coef`` (B, M, d) and ``scale`` (B, M) hold
    the last fit.
    """

    name = "ar"
    model_state = ("buf", "A", "c", "n", "coef", "scale", "cap", "fitted")
    seasonal = True

    def __init__(
        self,
        num_envs: int,
        num_modules: int,
        lags: int = 8,
        harmonics: int = 2,
        window: int = 720,
        refit_every: int = 60,
        ridge: float = 1e-2,
        season_ticks: int = DEFAULT_SEASON_TICKS,
        min_rows: int | None = None,
        *,
        horizons: int = DEFAULT_HORIZONS,
        spread_alpha: float = SPREAD_ALPHA,
    ) -> None:
        self.lags = _check_int(f"{self.name}: lags", lags, 0)
        self.harmonics = _check_int(f"{self.name}: harmonics", harmonics, 0)
        self.season_ticks = _check_int(f"{self.name}: season_ticks", season_ticks, 2)
        self.num_features = 1 + self.lags + 2 * self.harmonics
        self.window = _check_int(f"{self.name}: window", window, 2)
        self.refit_every = _check_int(f"{self.name}: refit_every", refit_every, 1)
        self.min_rows = _check_int(
            f"{self.name}: min_rows",
            3 * self.num_features if min_rows is None else min_rows,
            1,
        )
        self.ridge = float(ridge)
        if not (math.isfinite(self.ridge) and self.ridge > 0.0):
            raise ValueError(f"{self.name}: ridge must be a finite number > 0, got {ridge!r}")
        super().__init__(num_envs, num_modules, horizons=horizons, spread_alpha=spread_alpha)
        shape = (self.num_envs, self.num_modules)
        d = self.num_features
        self.tf = time_features(self.season_ticks, self.harmonics)
        self.buf = np.full((*shape, self.window + self.lags + 1), np.nan)
        self.A = np.zeros((*shape, d, d))  # upper triangle used
        self.c = np.zeros((*shape, d))
        self.n = np.zeros(shape, dtype=np.int64)
        self.coef = np.zeros((*shape, d))
        self.scale = np.ones(shape)
        self.cap = np.zeros(shape)
        self.fitted = np.zeros(shape, dtype=np.bool_)

    def _reset_state(self, sel: Any) -> None:
        self.buf[sel] = np.nan
        self.A[sel] = 0.0
        self.c[sel] = 0.0
        self.n[sel] = 0
        self.coef[sel] = 0.0
        self.scale[sel] = 1.0
        self.cap[sel] = 0.0
        self.fitted[sel] = False

    def _update(self, demand: np.ndarray, mode: int, active: np.ndarray) -> None:
        _ar_update(
            demand, mode, active, self.tick, self.last, self.pend, self.mae, self.nres,
            self.spread_alpha, self.lags, self.window, self.refit_every, self.min_rows,
            self.ridge, self.tf, self.buf, self.A, self.c, self.n, self.coef, self.scale,
            self.cap, self.fitted,
        )  # fmt: skip

    def _forecast_far(self, horizon: int) -> np.ndarray:
        out = np.empty((self.num_envs, self.num_modules))
        _ar_far(
            self.tick, self.last, self.buf, self.coef, self.scale, self.cap, self.fitted,
            self.lags, self.tf, horizon, out,
        )  # fmt: skip
        return out
