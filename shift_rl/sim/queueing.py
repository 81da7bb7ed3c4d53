r"""Module performance model: an M/M/c queue per module per tick, with load shedding.

A module with ``c`` servers (``c`` may be fractional: ``c = min_r alloc[r] / units_per_server[r]``),
each serving ``mu`` requests per second, receives ``lam`` requests in a tick of ``T`` seconds.
A tick (60 s) is long against service times (10-100 ms), so each tick is treated as a queue
in steady state at that tick's arrival rate.

Formulas (``a`` = offered load in Erlangs, ``rho`` = utilization):

- offered load ``a = lam / (mu T)``; capacity is shed above ``rho_max = 0.98``: the module
  serves ``lam_s = min(lam, rho_max c mu T)`` and drops ``lam - lam_s``
  (error rate = dropped / lam);
- utilization ``rho = a_s / c`` with ``a_s = lam_s / (mu T)``;
- Erlang B by the stable recursion ``B(0) = 1``, ``B(k) = a B(k-1) / (k + a B(k-1))``,
  linearly interpolated between ``floor(c)`` and ``ceil(c)`` for fractional ``c``
  (the continuous extension keeps goal attainment increasing in ``c``);
  Erlang C ``C = c B / (c - a_s (1 - B))``: the probability a request has to wait;
- the wait is 0 with probability ``1 - C`` and otherwise exponential with rate
  ``theta = mu (c - a_s)``; the service time is exponential with rate ``mu``; so the response
  time ``R`` has
  ``P(R > t) = (1 - C) e^{-mu t} + C (theta e^{-mu t} - mu e^{-theta t}) / (theta - mu)``
  (``(1 + mu t) e^{-mu t}`` when ``theta = mu``);
- mean latency ``E[R] = 1/mu + C / theta`` seconds;
- **goal attainment** = share of demand served within the SLO = ``(lam_s / lam) P(R <= slo)``;
  1 when there is no demand.

All functions are compiled with numba and take scalars, so the simulator calls them in its
per-module loop.
"""

from __future__ import annotations

import math

import numba
import numpy as np

RHO_MAX = 0.98
"""Utilization above which a module sheds load (admission control / timeouts)."""


@numba.njit(cache=True, inline="always")
def erlang_b_int(n: int, a: float) -> float:
    """Erlang B blocking probability for ``n`` integer servers and load ``a`` Erlangs."""
    b = 1.0
    for k in range(1, n + 1):
        b = a * b / (k + a * b)
    return b


@numba.njit(cache=True)
def erlang_c(c: float, a: float) -> float:
    """Probability of waiting in M/M/c with real ``c > a >= 0`` servers (interpolated B)."""
    if a <= 0.0:
        return 0.0
    return erlang_c_from_b(c, a, erlang_b_int(math.floor(c), a))


@numba.njit(cache=True, inline="always")
def erlang_c_from_b(c: float, a: float, b_lo: float) -> float:
    """Erlang C given ``b_lo = B(floor(c), a)``: lets a caller sweeping ``c`` at a fixed load
    carry the B recursion along instead of restarting it (same arithmetic, same result)."""
    n = math.floor(c)
    frac = c - n
    b = b_lo if frac == 0.0 else b_lo + frac * (a * b_lo / (n + 1 + a * b_lo) - b_lo)
    denom = c - a * (1.0 - b)
    if denom <= 0.0:
        return 1.0
    return min(1.0, c * b / denom)


@numba.njit(cache=True)
def tick_metrics(
    lam: float, servers: float, mu: float, slo: float, tick_seconds: float
) -> tuple[float, float, float, float]:
    """(utilization, mean latency s, error rate, goal attainment) of one module for one tick."""
    if lam <= 0.0:
        return 0.0, 1.0 / mu, 0.0, 1.0
    if servers <= 1e-9:
        return 1.0, math.inf, 1.0, 0.0
    per_server = mu * tick_seconds
    served = min(lam, RHO_MAX * servers * per_server)
    a = served / per_server
    return _metrics(lam, servers, mu, slo, served, a, erlang_c(servers, a))


@numba.njit(cache=True, inline="always")
def _metrics(lam, servers, mu, slo, served, a, wait_c):  # pragma: no cover - compiled
    """The formulas of the module docstring, given the load served and Erlang C."""
    rho = a / servers
    theta = mu * (servers - a)
    latency = 1.0 / mu + wait_c / theta
    es = math.exp(-mu * slo)
    if abs(theta - mu) < 1e-9 * mu:
        tail_wait = (1.0 + mu * slo) * es
    else:
        tail_wait = (theta * es - mu * math.exp(-theta * slo)) / (theta - mu)
    p_late = (1.0 - wait_c) * es + wait_c * tail_wait
    p_ok = min(1.0, max(0.0, 1.0 - p_late))
    errors = (lam - served) / lam
    return rho, latency, errors, (served / lam) * p_ok


@numba.njit(cache=True)
def attainment(
    lam: np.ndarray, servers: np.ndarray, mu: np.ndarray, slo: np.ndarray, tick_seconds: float
) -> np.ndarray:  # pragma: no cover - compiled
    """Goal attainment per module (1-D arrays): what a planner expects for ``servers``."""
    out = np.empty(lam.shape[0])
    for i in range(lam.shape[0]):
        out[i] = tick_metrics(lam[i], servers[i], mu[i], slo[i], tick_seconds)[3]
    return out


@numba.njit(cache=True)
def attainment_curve(
    lam, mu, slo, tick_seconds, units_per_server, out, wait_tol=-1.0
):  # pragma: no cover - compiled
    """Fill ``out[u] = tick_metrics(lam, u / units_per_server, mu, slo, tick_seconds)[3]``,
    bit for bit, with one Erlang B recursion carried along the sweep (O(len) instead of
    O(len^2): the oracle's hot loop); return how many entries were filled.

    With ``wait_tol < 0`` every entry is filled. With ``wait_tol >= 0`` the sweep stops at the
    first ``u`` where the module sheds nothing and its probability of waiting ``C`` is at most
    ``wait_tol``, and ``out[u]`` is then the curve's *supremum* ``1 - e^{-mu slo}`` (the limit
    as servers grow: ``R >= S``, so ``P(R <= slo) <= P(S <= slo)`` at every ``u``), which is
    at least every later entry and exceeds the true ``out[u]`` by at most ``C <= wait_tol``
    (the late share is ``e^{-mu slo} + C (P(R > slo | wait) - e^{-mu slo})``). With no demand
    the curve is 1 everywhere and one entry is filled. So ``out[n - 1]`` bounds the curve
    from ``n - 1`` on, and a caller may treat the curve as flat beyond it.
    """
    per_server = mu * tick_seconds
    if lam <= 0.0 and wait_tol >= 0.0:
        out[0] = 1.0
        return 1
    n_done, b = 0, 1.0  # b = B(n_done, lam / per_server)
    for u in range(out.shape[0]):
        servers = u / units_per_server
        if lam <= 0.0:
            out[u] = 1.0
            continue
        if servers <= 1e-9:
            out[u] = 0.0
            continue
        served = min(lam, RHO_MAX * servers * per_server)
        a = served / per_server
        if served < lam:  # shedding: the load depends on the servers, nothing to carry
            out[u] = _metrics(lam, servers, mu, slo, served, a, erlang_c(servers, a))[3]
            continue
        n = math.floor(servers)
        while n_done < n:
            n_done += 1
            b = a * b / (n_done + a * b)
        wait_c = 0.0 if a <= 0.0 else erlang_c_from_b(servers, a, b)
        if wait_c <= wait_tol:
            out[u] = min(1.0, max(0.0, 1.0 - math.exp(-mu * slo)))
            return u + 1
        out[u] = _metrics(lam, servers, mu, slo, served, a, wait_c)[3]
    return out.shape[0]
