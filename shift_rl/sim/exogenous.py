"""Everything an episode brings from outside: demand, faults, noise of the modules' reports.

All of it is drawn at reset from random streams of its own (one for demand, one for faults,
one for report noise), never from the actions. So one seed gives every policy the same demand
and the same faults whatever it does, and evaluations compare policies on paired episodes.

Arrays are indexed by ``i = history_ticks + t`` for episode tick ``t``: the first
``history_ticks`` rows are demand seen before the episode (to warm up the forecaster), and
``FORECAST_HORIZON_MAX`` rows past the end let planners look ahead at the last tick.

Synthetic demand of a module (requests per tick)::

    level(i) = base * (1 + trend * day) * (1 + A_d cos(2 pi (hour - peak) / 24))
               * (1 + A_w cos(2 pi day / 7)) * regime(i) * burst(i) * event(i)
               * exp(noise(i) - s^2 / 2)

with ``noise`` a stationary AR(1) process of std ``s`` (a share ``correlation`` of it common to
all modules), ``regime`` a product of log-normal level jumps at Poisson times and ``burst``
``1 + magnitude * exp(-(i - i_b) / duration)`` after each Poisson burst time ``i_b``;
``event`` is ``1 + magnitude`` while a scheduled daily event runs (linear ramps at both ends):
the same hour every day, so a policy that knows the time of day can prepare for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numba
import numpy as np

from shift_rl.config import ConfigError, DemandShape
from shift_rl.scenario import ScenarioParams

TICKS_PER_DAY_SECONDS = 86_400.0
MAX_DEMAND = 1e15
"""Requests per tick above which drawn demand is refused (a trend or regime walk run away)."""


@dataclass
class Exogenous:
    """Exogenous arrays of one episode (see module docstring for the indexing)."""

    demand: np.ndarray  # (X, M) requests per tick
    slowdown: np.ndarray  # (X, M) service-rate multiplier, 1 when healthy
    telemetry_missing: np.ndarray  # (X, M) bool
    report_eps: np.ndarray  # (X, M) standard normal, noise of reported need
    failures: np.ndarray  # (X, R) int64 units failing at that tick
    failure_pick: np.ndarray  # (X, R) uniform [0, 1): which unit fails (by allocation)
    start_hour: float


@numba.njit(cache=True)
def _ar1_paths(
    eps: np.ndarray, phi: np.ndarray, scale: np.ndarray
) -> np.ndarray:  # pragma: no cover
    """``out[i] = phi * out[i-1] + scale * eps[i]``, compiled: the recursion is sequential in
    time, and a Python loop over it was most of the cost of an episode's reset. Same
    operations in the same order as numpy's (no fast-math), so the paths are bit-identical."""
    n, cols = eps.shape
    out = np.empty((n, cols))
    for j in range(cols):
        out[0, j] = eps[0, j]
    for i in range(1, n):
        for j in range(cols):
            out[i, j] = phi[j] * out[i - 1, j] + scale[j] * eps[i, j]
    return out


def _ar1(rng: np.random.Generator, n: int, cols: int, phi: np.ndarray) -> np.ndarray:
    """Stationary AR(1) paths with unit variance, one per column."""
    eps = rng.standard_normal((n, cols))
    scale = np.sqrt(1.0 - phi**2)
    return _ar1_paths(eps, np.ascontiguousarray(phi, dtype=np.float64), scale)


def _poisson_times(rng: np.random.Generator, rate_per_tick: float, n: int) -> np.ndarray:
    if rate_per_tick <= 0.0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(rng.random(n) < rate_per_tick)


def _module_shapes(
    shapes: list[DemandShape],
    hours: np.ndarray,
    days: np.ndarray,
    noise: np.ndarray,
    rng: np.random.Generator,
    ticks_per_day: float,
) -> np.ndarray:
    """(n, M) synthetic demand of every module (formula in the module docstring).

    The random draws come module by module (regime jumps, then bursts), as they always did;
    the arithmetic runs on all modules at once, element by element the same operations, so
    each module's series is bit-identical to computing it on its own (the factor of a module
    without jumps, bursts or a k-th event is exactly 1). Arrays are (M, n) so numpy's inner
    loops run along time. An episode's reset in a batched env is mostly this function.
    """
    n, m = hours.shape[0], len(shapes)

    def col(values: list[float]) -> np.ndarray:
        return np.array(values, dtype=np.float64)[:, None]

    level = col([sh.base for sh in shapes]) * np.maximum(
        1.0 + col([sh.trend_per_day for sh in shapes]) * days, 0.05
    )
    peak = col([sh.diurnal.peak_hour for sh in shapes])
    amplitude = col([sh.diurnal.amplitude for sh in shapes])
    level = level * (1.0 + amplitude * np.cos(2 * np.pi * (hours - peak) / 24))
    weekly = col([sh.weekly_amplitude for sh in shapes])
    level = level * (1.0 + weekly * np.cos(2 * np.pi * days / 7.0))
    log_steps = np.zeros((m, n))
    burst = np.ones((m, n))
    idx = np.arange(n)
    for j, sh in enumerate(shapes):
        jumps = _poisson_times(rng, sh.regime.rate_per_day / ticks_per_day, n)
        if jumps.size:
            log_steps[j, jumps] = rng.normal(0.0, sh.regime.magnitude, jumps.size)
        bursts = _poisson_times(rng, sh.bursts.rate_per_day / ticks_per_day, n)
        if bursts.size:
            extra = np.zeros(n)
            for b in bursts:  # the ticks from b on
                extra[b:] += sh.bursts.magnitude * np.exp(-(idx[b:] - b) / sh.bursts.duration_ticks)
            burst[j] = 1.0 + extra
    level = level * np.exp(np.cumsum(log_steps, axis=1))
    level = level * burst
    for k in range(max(len(sh.events) for sh in shapes)):
        # the k-th event of every module that has one; the others get a factor of exactly 1
        evs = [sh.events[k] if k < len(sh.events) else None for sh in shapes]
        hour = col([0.0 if e is None else e.hour for e in evs])
        since = ((hours - hour) % 24.0) * ticks_per_day / 24.0  # ticks since today's start
        ramp = col([1 if e is None else max(e.ramp_ticks, 1) for e in evs])
        duration = col([1 if e is None else e.duration_ticks for e in evs])
        up = np.clip((since + 1.0) / ramp, 0.0, 1.0)
        down = np.clip((duration - since) / ramp, 0.0, 1.0)
        magnitude = col([0.0 if e is None else e.magnitude for e in evs])
        level = level * (1.0 + magnitude * np.minimum(up, down))
    s = col([sh.noise for sh in shapes])
    return (level * np.exp(s * noise.T - 0.5 * s * s)).T


@lru_cache(maxsize=8)
def _trace_series(
    path: str,
    columns: tuple[str | int, ...] | None,
    count: int,
    tick_seconds: float,
    step_seconds: float | None,
) -> tuple[np.ndarray, dict[str, object]]:
    """A trace's chosen series on the tick grid, each scaled to peak 1 (cached per process),
    and what had to be filled in them (:func:`trace_quality`)."""
    from shift_rl.traces import load_trace

    trace = load_trace(path)
    if step_seconds is not None and trace.step_seconds is None:
        trace = replace(trace, step_seconds=step_seconds)
    # pick the series first: refining only them keeps a wide, coarse trace within bounds
    trace = trace.select(list(columns) if columns else None, count).resample(tick_seconds)
    quality = {
        "path": Path(path).name,
        "columns": list(trace.columns),
        "ticks": trace.loaded_ticks,
        "missing_rows": trace.filled_gaps,
        "filled_ticks": list(trace.missing),
    }
    return trace.values / trace.values.max(axis=0, keepdims=True), quality


def _series_of(params: ScenarioParams) -> tuple[np.ndarray, dict[str, object]]:
    """(ticks, modules) series scaled to peak 1, one column per module; with
    ``demand.trace.offsets`` a listed column may drive several modules (loaded once)."""
    cfg = params.config
    tc = cfg.demand.trace
    assert tc is not None
    columns = tuple(tc.columns) if tc.columns else None
    if tc.offsets is None or columns is None:
        return _trace_series(
            tc.path, columns, params.num_modules, cfg.tick_seconds, tc.step_seconds
        )
    picked = columns[: params.num_modules]
    unique = tuple(dict.fromkeys(picked))
    series, quality = _trace_series(tc.path, unique, len(unique), cfg.tick_seconds, tc.step_seconds)
    if len(picked) < params.num_modules:  # let select word the error
        _trace_series(tc.path, columns, params.num_modules, cfg.tick_seconds, tc.step_seconds)
    return series[:, [unique.index(c) for c in picked]], quality


def trace_quality(params: ScenarioParams) -> dict[str, object] | None:
    """For a scenario replaying a trace: the series used and, per series, how many ticks of the
    loaded file were filled (missing rows and samples, interpolated); ``None`` without one."""
    if params.config.demand.trace is None:
        return None
    return dict(_series_of(params)[1])


def trace_demand(params: ScenarioParams, rng: np.random.Generator, n: int) -> np.ndarray:
    """Replay a trace window of ``n`` ticks, each series scaled to its module's peak share."""
    cfg = params.config
    tc = cfg.demand.trace
    assert tc is not None
    series = _series_of(params)[0]
    total = series.shape[0]
    if tc.window is not None:
        window = _window_demand(params, series, rng, n)
    else:
        if tc.start_tick != "random" and tc.start_tick >= total:
            raise ConfigError(
                f"demand.trace.start_tick: {tc.start_tick} is beyond the trace {tc.path!r}, "
                f"which has {total} ticks of {cfg.tick_seconds:g} s; expected 0 .. {total - 1} "
                "or 'random'"
            )
        start = int(rng.integers(total)) if tc.start_tick == "random" else tc.start_tick
        rows = start + np.arange(n)[:, None] + _offsets(params)
        # wraps around: traces are a day or more
        window = np.take_along_axis(series, rows % total, axis=0)
    # Peak servers the pool can give each module: the share of the scarcest kind.
    peak_servers = tc.peak_share * np.min(params.pool_units / params.units_per_server, axis=1)
    peak_requests = peak_servers / params.servers_per_request
    return window * peak_requests


def window_ticks(fraction: list[float], total: int) -> tuple[int, int]:
    """The ticks ``[lo, hi)`` of a trace of ``total`` ticks that ``demand.trace.window``
    (fractions ``[from, to)``) names: ``lo = floor(from * total)``, ``hi = floor(to * total)``.
    Windows that meet (``[0, 0.7]`` and ``[0.7, 1]``) share no tick."""
    return math.floor(fraction[0] * total), math.floor(fraction[1] * total)


def _window_demand(
    params: ScenarioParams, series: np.ndarray, rng: np.random.Generator, n: int
) -> np.ndarray:
    """``n`` ticks (history, episode, look-ahead) replayed from inside the trace's window,
    never wrapping out of it, each series scaled to peak 1 inside the window."""
    cfg = params.config
    tc = cfg.demand.trace
    assert tc is not None and tc.window is not None
    total = series.shape[0]
    lo, hi = window_ticks(tc.window, total)
    h = params.history_ticks
    offsets = _offsets(params)
    span = n + int(offsets.max())
    if hi - lo < span:
        raise ConfigError(
            f"demand.trace.window: {tc.window} of the trace {Path(tc.path).name!r} ({total} ticks "
            f"of {cfg.tick_seconds:g} s) holds ticks {lo}..{hi - 1} = {hi - lo} ticks, fewer than "
            f"an episode needs: {h} of forecast history + {params.episode_ticks} episode ticks + "
            f"{n - h - params.episode_ticks} of look-ahead + {span - n} of the largest "
            f"demand.trace.offsets = {span}; widen the window or shorten episode_ticks, "
            "forecast.history_ticks or the offsets"
        )
    if tc.start_tick == "random":
        start = lo + int(rng.integers(hi - lo - span + 1))
    elif not lo <= tc.start_tick <= hi - span:
        raise ConfigError(
            f"demand.trace.start_tick: {tc.start_tick} does not keep the episode's {n} ticks "
            f"inside demand.trace.window {tc.window} (ticks {lo}..{hi - 1} of the trace "
            f"{Path(tc.path).name!r}); expected {lo} .. {hi - span} or 'random'"
        )
    else:
        start = tc.start_tick
    inside = series[lo:hi]
    peak = inside.max(axis=0)
    if not (peak > 0).all():
        j = int(np.flatnonzero(~(peak > 0))[0])
        raise ConfigError(
            f"demand.trace.window: series {j} of {Path(tc.path).name!r} is all zero inside the "
            f"window {tc.window}; pick other demand.trace.columns or another window"
        )
    rows = start + np.arange(n)[:, None] + offsets
    return np.take_along_axis(series, rows, axis=0) / peak


def _offsets(params: ScenarioParams) -> np.ndarray:
    """(M,) ticks by which each module's series is read late (``demand.trace.offsets``)."""
    tc = params.config.demand.trace
    assert tc is not None
    if tc.offsets is None:
        return np.zeros(params.num_modules, dtype=np.int64)
    return np.array(tc.offsets, dtype=np.int64)


def _check_demand(demand: np.ndarray, params: ScenarioParams) -> None:
    """Refuse demand that is not finite or beyond ``MAX_DEMAND`` (valid fields can still
    compound: a regime walk with many large jumps over a long episode), naming the module."""
    ok = np.isfinite(demand) & (demand <= MAX_DEMAND)
    if ok.all():
        return
    i, j = (int(v) for v in np.argwhere(~ok)[0])
    name = params.config.modules[j].name
    raise ConfigError(
        f"modules.{j}.demand: the demand drawn for module {name!r} reaches "
        f"{float(demand[i, j]):.3g} requests per tick at tick {i - params.history_ticks} "
        f"(limit {MAX_DEMAND:g}): lower its base, trend_per_day, regime, bursts or events, "
        "or shorten the episode"
    )


def draw_exogenous(params: ScenarioParams, seed: int) -> Exogenous:
    """Draw one episode's exogenous arrays from ``seed`` (independent streams per concern)."""
    cfg = params.config
    demand_rng, fault_rng, report_rng = (
        np.random.Generator(np.random.PCG64(s)) for s in np.random.SeedSequence(seed).spawn(3)
    )
    n, m, r = params.exogenous_ticks, params.num_modules, params.num_resources
    ticks_per_day = TICKS_PER_DAY_SECONDS / cfg.tick_seconds
    start_hour = (
        float(demand_rng.uniform(0.0, 24.0))
        if cfg.demand.start_hour == "random"
        else float(cfg.demand.start_hour)
    )
    rel = (np.arange(n) - params.history_ticks) * cfg.tick_seconds / 3600.0 + start_hour
    hours, days = rel % 24.0, rel / 24.0

    if cfg.demand.trace is not None:
        demand = trace_demand(params, demand_rng, n)
    else:
        phi = np.array([mod.demand.noise_autocorr for mod in cfg.modules])
        own = _ar1(demand_rng, n, m, phi)
        common = _ar1(demand_rng, n, 1, np.array([phi.mean()]))
        c = cfg.demand.correlation
        noise = np.sqrt(c) * common + np.sqrt(1.0 - c) * own
        shapes = [mod.demand for mod in cfg.modules]
        demand = _module_shapes(shapes, hours, days, noise, demand_rng, ticks_per_day)

    faults = cfg.faults
    slowdown = np.ones((n, m))
    missing = np.zeros((n, m), dtype=bool)
    for j in range(m):
        for start in _poisson_times(fault_rng, faults.slowdown.rate_per_day / ticks_per_day, n):
            slowdown[start : start + faults.slowdown.duration_ticks, j] = faults.slowdown.factor
        gap = faults.telemetry_gap
        for start in _poisson_times(fault_rng, gap.rate_per_day / ticks_per_day, n):
            missing[start : start + gap.duration_ticks, j] = True
    failures = np.zeros((n, r), dtype=np.int64)
    uf = faults.unit_failure
    for k in range(r):
        failures[_poisson_times(fault_rng, uf.rate_per_day / ticks_per_day, n), k] = uf.units
    failure_pick = fault_rng.random((n, r))

    _check_demand(demand, params)
    return Exogenous(
        demand=np.ascontiguousarray(demand, dtype=np.float64),
        slowdown=slowdown,
        telemetry_missing=missing,
        report_eps=report_rng.standard_normal((n, m)),
        failures=failures,
        failure_pick=failure_pick,
        start_hour=start_hour,
    )
