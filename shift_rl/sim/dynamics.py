"""Compiled per-tick dynamics of a batch of pools: shifts, warm-up, failures and metrics.

Conservation invariant, for every env ``b`` and kind ``r`` at every tick::

    alloc[b, :, r].sum() + transit[b, :, :, r].sum() + failed[b, :, :, r].sum() + free[b, r]
        == pool_units[r]

Units in transit are indexed by slot: slot 0 arrives at the next tick. A shift placed in slot
``warmup`` leaves its source at once and serves at its target ``warmup + 1`` ticks later, so
``warmup`` ticks of its capacity are lost: the cost that makes acting early pay.
Failed units sit in ``failed[b, slot, m, r]`` (``m == M`` is the free pool) until they return
to where they failed.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from shift_rl.sim.queueing import tick_metrics


@numba.njit(cache=True)
def apply_shifts(alloc, transit, incoming, env, src, dst, kind, units):  # pragma: no cover
    """Start shifts ``i``: ``units[i]`` of kind ``kind[i]`` leave ``src[i]`` of env ``env[i]``
    now and reach ``dst[i]`` after the warm-up. Returns the units actually moved per shift."""
    moved = np.zeros(src.shape[0], dtype=np.int64)
    last = transit.shape[1] - 1
    for i in range(src.shape[0]):
        b = env[i]
        u = min(units[i], alloc[b, src[i], kind[i]])
        if u <= 0 or src[i] == dst[i]:
            continue
        alloc[b, src[i], kind[i]] -= u
        transit[b, last, dst[i], kind[i]] += u
        incoming[b, dst[i], kind[i]] += u
        moved[i] = u
    return moved


@numba.njit(cache=True, inline="always")
def _shift_down(pipe, width):  # pragma: no cover - compiled
    """Move a flat pipeline of slots of ``width`` entries one slot down; the last empties."""
    busy = False
    for i in range(width, pipe.shape[0]):
        busy |= pipe[i] != 0
    if not busy:  # nothing in flight (the usual case): only slot 0 (just landed) to clear
        for i in range(width):
            pipe[i] = 0
        return
    for i in range(width, pipe.shape[0]):
        pipe[i - width] = pipe[i]
    for i in range(pipe.shape[0] - width, pipe.shape[0]):
        pipe[i] = 0


@numba.njit(cache=True)
def _advance_pipes(b, alloc, transit, failed, free):  # pragma: no cover - compiled
    """Slot 0 of both pipelines lands (warm-up arrivals, units back from failure) and the
    others move one slot down. Flat loops over each row's contiguous block: this runs for
    every env at every tick, mostly on empty pipelines."""
    n_mod, n_kind = alloc.shape[1], alloc.shape[2]
    for m in range(n_mod):
        for r in range(n_kind):
            alloc[b, m, r] += transit[b, 0, m, r] + failed[b, 0, m, r]
    for r in range(n_kind):
        free[b, r] += failed[b, 0, n_mod, r]
    _shift_down(transit[b].reshape(-1), n_mod * n_kind)
    _shift_down(failed[b].reshape(-1), (n_mod + 1) * n_kind)


@numba.njit(cache=True)
def _fail_units(b, i, alloc, failed, free, exo_fail, exo_pick, lost):  # pragma: no cover
    """Fail ``exo_fail[b, i, r]`` online units, picked in proportion to where units sit."""
    n_mod = alloc.shape[1]
    last = failed.shape[1] - 1
    for r in range(alloc.shape[2]):
        want = exo_fail[b, i, r]
        if want <= 0:
            continue
        total = free[b, r]
        for m in range(n_mod):
            total += alloc[b, m, r]
        if total <= 0:
            continue
        target = exo_pick[b, i, r] * total
        m = n_mod
        acc = 0.0
        for j in range(n_mod):
            acc += alloc[b, j, r]
            if target < acc:
                m = j
                break
        for _ in range(n_mod + 1):
            held = free[b, r] if m == n_mod else alloc[b, m, r]
            take = min(want, held)
            if take > 0:
                if m == n_mod:
                    free[b, r] -= take
                else:
                    alloc[b, m, r] -= take
                failed[b, last, m, r] += take
                lost[b, r] += take
                want -= take
            if want <= 0:
                break
            m = (m + 1) % (n_mod + 1)


@numba.njit(cache=True)
def compute_metrics(
    t, history, alloc, transit, failed, pool, start_hour, exo_demand, exo_slow, exo_missing,
    exo_eps, service_rate, slo, units_per_server, servers_per_request, report_noise,
    tick_seconds, hour, incoming, capacity, demand, util, latency, errors, attain, truth,
    need, missing,
):  # pragma: no cover - compiled  # fmt: skip
    """Telemetry of every env at tick ``t[b]``; observed metrics are NaN where missing.

    ``truth[b, m]`` receives (utilization, latency, error rate, attainment) as they really
    were, missing telemetry or not: for rewards and analysis, never for the policy.
    """
    n_mod, n_kind = alloc.shape[1], alloc.shape[2]
    for b in range(alloc.shape[0]):
        i = history + t[b]
        hour[b] = (start_hour[b] + t[b] * tick_seconds / 3600.0) % 24.0
        for r in range(n_kind):
            offline = 0
            for s in range(failed.shape[1]):
                for m in range(n_mod + 1):
                    offline += failed[b, s, m, r]
            capacity[b, r] = pool[r] - offline
            for m in range(n_mod):
                inc = 0
                for s in range(transit.shape[1]):
                    inc += transit[b, s, m, r]
                incoming[b, m, r] = inc
        for m in range(n_mod):
            servers = math.inf
            for r in range(n_kind):
                servers = min(servers, alloc[b, m, r] / units_per_server[m, r])
            lam = exo_demand[b, i, m]
            rho, lat, err, att = tick_metrics(
                lam, servers, service_rate[m] * exo_slow[b, i, m], slo[m], tick_seconds
            )
            truth[b, m, 0] = rho
            truth[b, m, 1] = lat
            truth[b, m, 2] = err
            truth[b, m, 3] = att
            gone = exo_missing[b, i, m]
            missing[b, m] = gone
            if gone:
                demand[b, m] = np.nan
                util[b, m] = np.nan
                latency[b, m] = np.nan
                errors[b, m] = np.nan
                attain[b, m] = np.nan
                need[b, m] = np.nan
            else:
                s = report_noise[m]
                demand[b, m] = lam
                util[b, m] = rho
                latency[b, m] = lat
                errors[b, m] = err
                attain[b, m] = att
                need[b, m] = (
                    exo_demand[b, i + 1, m]
                    * servers_per_request[m]
                    * math.exp(s * exo_eps[b, i, m] - 0.5 * s * s)
                )


@numba.njit(cache=True)
def advance(t, alloc, transit, failed, free, exo_fail, exo_pick, history, lost):  # pragma: no cover
    """Move every env one tick on: arrivals, returns from failure, new failures."""
    lost[:] = 0
    for b in range(alloc.shape[0]):
        t[b] += 1
        _advance_pipes(b, alloc, transit, failed, free)
        _fail_units(b, history + t[b], alloc, failed, free, exo_fail, exo_pick, lost)
