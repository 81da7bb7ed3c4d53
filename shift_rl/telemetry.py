"""What a control plane can observe of its modules: the simulator and real backends both
produce it, and the forecaster, reputation, guard and observation builder only read it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np


@dataclass
class Telemetry:
    """Observed state of a batch of control planes (leading axis: env).

    Per-module metrics are NaN where the module's telemetry is missing this tick
    (``missing`` is then True); allocations are always known to the control plane.
    """

    tick: np.ndarray  # (B,) int64, ticks since episode start
    hour: np.ndarray  # (B,) float, time of day in hours
    demand: np.ndarray  # (B, M) requests in the last tick
    utilization: np.ndarray  # (B, M) share of serving capacity in use, [0, 1]
    latency: np.ndarray  # (B, M) mean response time, seconds
    error_rate: np.ndarray  # (B, M) share of requests dropped, [0, 1]
    attainment: np.ndarray  # (B, M) share of demand served within the SLO, [0, 1]
    reported_need: np.ndarray  # (B, M) servers the module says it needs next tick
    confidence: np.ndarray  # (B, M) the module's confidence in that report, [0, 1]
    missing: np.ndarray  # (B, M) bool
    alloc: np.ndarray  # (B, M, R) int64 units serving
    incoming: np.ndarray  # (B, M, R) int64 units in transit to the module (warming up)
    capacity: np.ndarray  # (B, R) int64 units online (pool minus failed)
    free: np.ndarray  # (B, R) int64 units unallocated


class TelemetryError(ValueError):
    """Telemetry the control plane cannot use at all this tick: the backend is at fault.

    Wrong shapes or types, allocations that are not non-negative integers, a time of day
    outside [0, 24]: no module's numbers can be trusted, so the whole tick is refused (the
    controller treats it as a backend failure: hold, back off, retry).
    """


# (field, lowest, highest, +inf allowed): per-module metrics and what a usable value is.
# Latency may be +inf: a module without servers has no finite response time (the simulator
# says so), which is an observation, not a fault.
METRICS: tuple[tuple[str, float, float, bool], ...] = (
    ("demand", 0.0, math.inf, False),
    ("utilization", 0.0, 1.0, False),
    ("latency", 0.0, math.inf, True),
    ("error_rate", 0.0, 1.0, False),
    ("attainment", 0.0, 1.0, False),
    ("reported_need", 0.0, math.inf, False),
    ("confidence", 0.0, 1.0, False),
)
_COUNTS = ("alloc", "incoming", "capacity", "free")
_LOW = np.array([low for _, low, _, _ in METRICS])
_HIGH = np.array([high for _, _, high, _ in METRICS])
_INF_OK = np.array([inf_ok for *_, inf_ok in METRICS])
_PROBLEMS = ("not finite", "negative", "above {high:g}")


@numba.njit(cache=True)
def _int_range_ok(a):  # pragma: no cover - compiled
    for x in a:
        if x < 0 or x > 2**62:
            return False
    return True


@numba.njit(cache=True)
def _check_metrics(metrics, missing, low, high, inf_ok, counts, marked):  # pragma: no cover
    """One pass over (K metrics, B, M): unusable values of flagged modules become NaN; a
    module not flagged with an unusable value is marked (and counted per metric and problem),
    then all its metrics become NaN."""
    n_metric, n_env, n_mod = metrics.shape
    for b in range(n_env):
        for m in range(n_mod):
            flagged = missing[b, m]
            bad_module = False
            for k in range(n_metric):
                x = metrics[k, b, m]
                if math.isnan(x) or x == -math.inf or (x == math.inf and not inf_ok[k]):
                    problem = 0
                elif x < low[k]:
                    problem = 1
                elif x > high[k]:
                    problem = 2
                else:
                    continue
                if flagged:
                    metrics[k, b, m] = math.nan
                else:
                    counts[k, problem] += 1
                    bad_module = True
            if bad_module:
                marked[b, m] = True
                for k in range(n_metric):
                    metrics[k, b, m] = math.nan


@dataclass(frozen=True)
class TelemetryReport:
    """What :func:`validate_telemetry` did to one tick of telemetry.

    ``marked`` (B, M): modules it turned missing (their flag was off, a metric was unusable);
    ``reasons``: how many values were unusable, by ``"<metric> <problem>"`` (``not finite``,
    ``negative``, ``above 1``), among modules not already flagged missing.
    """

    marked: np.ndarray
    reasons: dict[str, int]

    @property
    def count(self) -> int:
        """Modules marked missing by validation."""
        return int(self.marked.sum())

    def as_dict(self) -> dict[str, Any]:
        """For an audit record: the marked modules (env 0) and the reasons."""
        return {"marked": np.flatnonzero(self.marked[0]).tolist() if self.marked.size else [],
                "reasons": dict(self.reasons)}  # fmt: skip


def _field(tel: Telemetry, name: str, shape: tuple[int, ...], sizes: str) -> np.ndarray:
    value = getattr(tel, name, None)
    if type(value) is np.ndarray and value.shape == shape and value.dtype.kind in "biuf":
        return value  # the common case, checked without conversions
    try:
        a = np.asarray(value)
    except Exception as err:  # ragged lists and the like
        raise TelemetryError(f"telemetry field {name!r}: not an array ({err})") from None
    if a.shape != shape:
        raise TelemetryError(
            f"telemetry field {name!r} has shape {a.shape}, expected {shape} ({sizes})"
        )
    if a.dtype.kind not in "biuf":
        raise TelemetryError(f"telemetry field {name!r}: expected numbers, got dtype {a.dtype}")
    return a


def _counts(name: str, a: np.ndarray) -> np.ndarray:
    """Non-negative integers as int64, else TelemetryError."""
    if a.dtype.kind == "b":
        raise TelemetryError(f"telemetry field {name!r}: expected integer units, got booleans")
    if a.dtype == np.int64:  # the common case: one compiled pass for the range
        if _int_range_ok(a.reshape(-1)):
            return a.copy()
        ok = (a >= 0) & (a <= 2**62)
    elif a.dtype.kind == "f":
        ok = np.isfinite(a) & (a >= 0) & (a <= 2.0**62) & (np.floor(a) == a)
    else:
        ok = (a >= 0) & (a <= 2**62)
    if not ok.all():
        i = tuple(int(j) for j in np.argwhere(~ok)[0])
        raise TelemetryError(
            f"telemetry field {name!r}: expected non-negative integers, got {a[i]!r} at index {i}"
        )
    return a.astype(np.int64)


def validate_telemetry(
    tel: Telemetry, num_modules: int, num_kinds: int, num_envs: int = 1
) -> tuple[Telemetry, TelemetryReport]:
    """Telemetry fit for the forecaster, reputation, guard and observation, and a report.

    Pure: ``tel`` is not modified; the result holds fresh arrays (float64 metrics, int64
    units and ticks, bool ``missing``).

    - a wrong shape or type of any field, allocations (``alloc``, ``incoming``, ``capacity``,
      ``free``) that are not non-negative integers, a ``tick`` that is not a non-negative
      integer, an ``hour`` outside [0, 24]: :class:`TelemetryError` (refuse the tick);
    - a module whose flag says missing keeps it; any unusable value of its metrics becomes
      NaN (a backend may leave stale numbers behind a missing flag);
    - a module not flagged missing with an unusable metric (NaN, -inf, +inf except latency,
      negative, above 1 for a share; see :data:`METRICS`) becomes missing for this tick,
      all its metrics NaN, and is counted in ``report.reasons`` per metric and problem.

    After it, every metric of a non-missing module is finite (latency may be +inf) and in
    range; on valid telemetry (the simulator's) it is the identity.
    """
    if not isinstance(tel, Telemetry):
        raise TelemetryError(f"telemetry must be a Telemetry, got {type(tel).__name__}")
    b, m, r = num_envs, num_modules, num_kinds
    sizes = f"{b} env(s), {m} modules, {r} resource kinds"
    tick = _counts("tick", _field(tel, "tick", (b,), sizes))
    hour = _field(tel, "hour", (b,), sizes).astype(np.float64)
    if not all(0.0 <= h <= 24.0 for h in hour.tolist()):  # NaN compares False
        raise TelemetryError(f"telemetry field 'hour': expected hours in [0, 24], got {hour}")
    units = {
        name: _counts(name, _field(tel, name, shape, sizes))
        for name, shape in zip(_COUNTS, ((b, m, r), (b, m, r), (b, r), (b, r)), strict=True)
    }
    flag = _field(tel, "missing", (b, m), sizes)
    if flag.dtype.kind != "b":
        if not np.isin(flag, (0, 1)).all():
            raise TelemetryError("telemetry field 'missing': expected booleans (or 0 / 1)")
    missing = flag.astype(bool)
    stack = np.empty((len(METRICS), b, m))  # fresh: the result never aliases the input
    for k, (name, *_) in enumerate(METRICS):
        stack[k] = _field(tel, name, (b, m), sizes)
    marked = np.zeros((b, m), dtype=bool)
    counts = np.zeros((len(METRICS), len(_PROBLEMS)), dtype=np.int64)
    _check_metrics(stack, missing, _LOW, _HIGH, _INF_OK, counts, marked)
    reasons: dict[str, int] = {}
    if counts.any():
        for k, j in zip(*np.nonzero(counts), strict=True):
            name, _, high, _ = METRICS[k]
            reasons[f"{name} {_PROBLEMS[j].format(high=high)}"] = int(counts[k, j])
    metrics = {name: stack[k] for k, (name, *_) in enumerate(METRICS)}
    out = Telemetry(tick=tick, hour=hour, missing=missing | marked, **units, **metrics)
    return out, TelemetryReport(marked=marked, reasons=reasons)


def validate_history(rows: Any, num_modules: int) -> tuple[np.ndarray, int]:
    """A backend's demand history ``(ticks, modules)`` as float64, unusable values (NaN,
    +-inf, negative) as NaN (missing), and how many there were; TelemetryError for a wrong
    shape or type."""
    try:
        a = np.asarray(rows)
    except Exception as err:
        raise TelemetryError(f"demand history: not an array ({err})") from None
    if a.size == 0:
        return np.zeros((0, num_modules)), 0
    if a.ndim != 2 or a.shape[1] != num_modules or a.dtype.kind not in "biuf":
        raise TelemetryError(f"demand history has shape {a.shape} and dtype {a.dtype}, "
                             f"expected (ticks, {num_modules}) numbers")  # fmt: skip
    a = a.astype(np.float64)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(a) | (a < 0)
    n = int((bad & ~np.isnan(a)).sum())
    a[bad] = np.nan
    return a, n
