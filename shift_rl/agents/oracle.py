"""Reference bounds that know the true demand: an upper bound and a clairvoyant planner.

**oracle** (unconstrained): at every tick, the best allocation for the true demand of that
tick with free, instant moves and no guard: the most goal attainment any policy could get.
It maximizes a separable sum ``sum_m value_m * attainment_m(units_m)`` over integer units
under the pool's online capacity, exactly whatever the shape of the attainment curves (to
within ``WAIT_TOL`` = 1e-12, always above), in time about linear in the modules: a Lagrangian
relaxation (each curve's concave envelope, filled greedily by slope) settles almost every
module, and a dynamic programme runs over the few unit counts it cannot rule out (proof in
:func:`best_goal`). With several resource kinds, each kind is solved as if it were the only
scarce one and the smallest of those optima is kept: a relaxation, so still an upper bound.
No move costs are charged.

**oracle-mpc** (clairvoyant MPC): a policy in the env that knows the true demand of the next
``warmup + horizon`` ticks and when units in transit land. Every tick it scores every feasible
shift (and doing nothing) by the value-weighted goal attainment it yields over that window,
with the moved units lost to both modules during the warm-up, minus the move cost, and takes
the best; in plan mode it then scores again on the window with that shift made, without the
two modules and with the budget left, and so on while a shift still gains (greedy). With
several kinds, in plan mode, a candidate may also ask for every kind at once between two
modules (a module whose servers need all its kinds gains from no single one). The guard lets
a module take part in one shift a tick, so it executes one kind of such a request now and the
planner can ask for the rest once the module's stabilization period is over: the window scores
the pair as if both landed together, an optimistic model that still pays (`multi_resource`,
benchmarks/RESULTS.md). On planes of more than twice ``candidates`` modules it scores only
the ``candidates`` most over-provisioned modules that can give and the ``candidates`` most
under-provisioned that can take (against the forecast), re-chosen after each shift of the
plan from the modules not yet in one. It obeys the guard like any policy: a strong
reachable reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from shift_rl.agents.base import NOOP_ACTION, HeuristicPolicy
from shift_rl.observation import ObservedState
from shift_rl.scenario import FORECAST_HORIZON_MAX, ScenarioParams
from shift_rl.sim.queueing import attainment_curve, tick_metrics
from shift_rl.sim.simulator import Simulator

WAIT_TOL = 1e-12
"""Attainment curves stop where the chance of waiting is at most this (see
:func:`~shift_rl.sim.queueing.attainment_curve`): the bound is then above the optimum of the
untruncated curves by at most this much (values sum to 1)."""
_TOL = 1e-12  # rounding slack in the comparisons of the exact step (including more is safe)


@numba.njit(cache=True)
def _curves(lam, slow, mu, slo, ups, value, tick_seconds, cap):  # pragma: no cover
    """Every module's value-weighted curve ``g_m(u)``, ``u = 0..n_m - 1``, truncated where it
    saturates, concatenated: ``g[start[m] + u]``."""
    n_mod = lam.shape[0]
    start = np.empty(n_mod + 1, dtype=np.int64)
    g = np.empty(max(64, 8 * n_mod))
    scratch = np.empty(cap + 1)
    pos = 0
    for m in range(n_mod):
        mu_m = mu[m] * slow[m]
        n = attainment_curve(lam[m], mu_m, slo[m], tick_seconds, ups[m], scratch, WAIT_TOL)
        if pos + n > g.shape[0]:
            grown = np.empty(max(2 * g.shape[0], pos + n))
            grown[:pos] = g[:pos]
            g = grown
        for u in range(n):
            g[pos + u] = value[m] * scratch[u]
        start[m] = pos
        pos += n
    start[n_mod] = pos
    return g, start


@numba.njit(cache=True)
def _hulls(g, start):  # pragma: no cover
    """Vertices of each curve's upper concave envelope (monotone chain), ``hv[hs[m]:hs[m+1]]``
    (unit counts), with strictly decreasing slopes as computed."""
    n_mod = start.shape[0] - 1
    hv = np.empty(start[n_mod], dtype=np.int64)
    hs = np.empty(n_mod + 1, dtype=np.int64)
    k = 0
    for m in range(n_mod):
        s0 = start[m]
        hs[m] = k
        for u in range(start[m + 1] - s0):
            while k - hs[m] >= 2:
                a, b = hv[k - 2], hv[k - 1]
                if (g[s0 + b] - g[s0 + a]) / (b - a) <= (g[s0 + u] - g[s0 + b]) / (u - b):
                    k -= 1
                else:
                    break
            hv[k] = u
            k += 1
    hs[n_mod] = k
    return hv, hs


@numba.njit(cache=True)
def _critical_slope(slope, length, cap):  # pragma: no cover
    """The slope at which taking segments by decreasing slope uses up ``cap`` units: the
    largest ``s`` with ``sum(length[slope >= s]) >= cap`` (weighted quickselect, expected
    linear time; needs ``0 < cap < sum(length)``)."""
    idx = np.arange(slope.shape[0])
    n = idx.shape[0]
    need = cap
    state = 12345
    while True:
        state = (state * 1103515245 + 12345) % 2147483648  # fixed seed: reproducible
        pivot = slope[idx[state % n]]
        above, at = 0, 0
        for k in range(n):
            v = slope[idx[k]]
            if v > pivot:
                above += length[idx[k]]
            elif v == pivot:
                at += length[idx[k]]
        if above >= need:  # the answer is steeper than the pivot
            keep = 0
            for k in range(n):
                if slope[idx[k]] > pivot:
                    idx[keep] = idx[k]
                    keep += 1
            n = keep
        elif above + at >= need:
            return pivot
        else:  # all segments at least as steep as the pivot are taken
            need -= above + at
            keep = 0
            for k in range(n):
                if slope[idx[k]] < pivot:
                    idx[keep] = idx[k]
                    keep += 1
            n = keep


@numba.njit(cache=True)
def _best_one_kind(g, start, cap):  # pragma: no cover
    """``max sum_m g_m(u_m)`` subject to ``sum_m u_m <= cap``, for any curves ``g_m`` (steps 2
    and 3 of :func:`best_goal`)."""
    n_mod = start.shape[0] - 1
    hv, hs = _hulls(g, start)
    # hull segments of positive slope, by decreasing slope (within a module: in hull order)
    n_seg = 0
    for m in range(n_mod):
        n_seg += hs[m + 1] - hs[m] - 1
    slope = np.empty(n_seg)
    seg_mod = np.empty(n_seg, dtype=np.int64)
    seg_len = np.empty(n_seg, dtype=np.int64)
    i, total, top = 0, 0, 0.0
    for m in range(n_mod):
        s0 = start[m]
        top += g[s0]
        for j in range(hs[m], hs[m + 1] - 1):
            a, b = hv[j], hv[j + 1]
            d = (g[s0 + b] - g[s0 + a]) / (b - a)
            if d <= 0.0:
                break
            top += g[s0 + b] - g[s0 + a]
            slope[i], seg_mod[i], seg_len[i] = d, m, b - a
            total += b - a
            i += 1
    if total <= cap:  # every module can have all it gains from: that is the optimum
        return top
    if cap == 0:
        return g[start[:-1]].sum()
    lam_star = _critical_slope(slope[:i], seg_len[:i], cap)
    # greedy fill of the envelopes (the LP optimum): every segment steeper than lam_star,
    # then segments of slope lam_star (one per module at most) until the pool is used up
    x = np.zeros(n_mod, dtype=np.int64)
    left = cap
    for j in range(i):
        if slope[j] > lam_star:
            x[seg_mod[j]] += seg_len[j]
            left -= seg_len[j]
    cross = -1
    for j in range(i):
        if slope[j] == lam_star and left > 0:
            step = min(seg_len[j], left)
            x[seg_mod[j]] += step
            left -= step
            if step < seg_len[j]:
                cross = seg_mod[j]
    lower = 0.0
    for m in range(n_mod):
        lower += g[start[m] + x[m]]
    if cross < 0:  # the fill ends on a vertex: the curves there are the envelopes, optimal
        return lower
    # upper: the envelopes at x (= the Lagrangian bound at lam_star); lower: the curves at x
    # (feasible). They differ only on the module filled partly.
    s0 = start[cross]
    j = hs[cross]
    while hv[j + 1] < x[cross]:
        j += 1
    a, b = hv[j], hv[j + 1]
    hull_x = g[s0 + a] + (g[s0 + b] - g[s0 + a]) * (x[cross] - a) / (b - a)
    gap = hull_x - g[s0 + x[cross]]
    if gap <= _TOL:
        return lower + gap
    # exact step (best_goal, 3.): keep the unit counts u with p_m(u) <= gap, DP over them
    lo = x.copy()
    hi = x.copy()
    for m in range(n_mod):
        s0 = start[m]
        best_m = g[s0 + x[m]] - lam_star * x[m]
        if m == cross:
            best_m = hull_x - lam_star * x[m]
        for u in range(start[m + 1] - s0):
            if best_m - (g[s0 + u] - lam_star * u) <= gap + _TOL:
                lo[m] = min(lo[m], u)
                hi[m] = max(hi[m], u)
    free = np.empty(n_mod, dtype=np.int64)
    n_free, fixed_value, room, width = 0, 0.0, cap, 0
    for m in range(n_mod):
        if lo[m] == hi[m]:
            fixed_value += g[start[m] + x[m]]
        else:
            free[n_free] = m
            n_free += 1
            width += hi[m] - lo[m]
        room -= lo[m]
    width = min(width, room)  # units above the free modules' lo, at most
    best = np.full(width + 1, -np.inf)
    best[0] = 0.0
    new = np.empty(width + 1)
    for f in range(n_free):
        m = free[f]
        s0 = start[m] + lo[m]
        span = hi[m] - lo[m]
        for w in range(width + 1):
            t = -np.inf
            for d in range(min(span, w) + 1):
                v = best[w - d] + g[s0 + d]
                if v > t:
                    t = v
            new[w] = t
        best[:] = new
    return fixed_value + best.max()


@numba.njit(cache=True)
def best_goal(lam, slow, capacity, value, mu, slo, ups, tick_seconds):  # pragma: no cover
    """Highest value-weighted goal attainment for one tick (see module docstring).

    Per resource kind, with ``g_m(u) = value_m * attainment_m(u)`` and ``U`` units:

    1. **Curves** (:func:`_curves`): ``g_m`` for ``u = 0 .. n_m - 1`` only, up to where the
       module sheds nothing and waits with probability at most ``WAIT_TOL``; the last entry is
       the curve's supremum, so taking ``g_m`` as flat from there can only raise the optimum,
       by at most ``WAIT_TOL`` in all (values sum to 1). ``n_m`` is a few units past the
       offered load, not ``U``.
    2. **Relaxation**: replace each ``g_m`` by its upper concave envelope ``h_m`` and fill the
       ``U`` units into envelope segments by decreasing slope (a fractional knapsack; the
       slope ``lam`` where the pool runs out is found by a weighted quickselect). If the
       segments of positive slope need at most ``U`` units, every module gets its maximum:
       optimal. Otherwise the fill ``x`` has ``sum x = U``, every module on a vertex of its
       envelope (where ``h = g``) but at most one, the one whose segment is filled partly; so
       ``upper = sum h_m(x_m)`` and the feasible ``lower = sum g_m(x_m)`` differ by that
       module's envelope gap ``gap``. ``gap = 0`` (concave curves, or a fill ending on a
       vertex) means ``lower`` is optimal.
    3. **Exact step**: segments steeper than ``lam`` are filled and flatter ones are not, so
       ``x_m`` maximizes ``g_m(u) - lam u`` (on the envelope) and
       ``upper = lam U + sum_m max_u (g_m(u) - lam u)``. For any allocation ``v`` with
       ``sum v <= U``: ``sum_m g_m(v_m) = upper - sum_m p_m(v_m) - lam (U - sum v)`` with
       ``p_m(v) = max_u (g_m(u) - lam u) - (g_m(v) - lam v) >= 0``. So if any
       ``p_m(v_m) > gap``, ``v`` is worse than ``lower`` and not optimal: each module keeps
       only the unit counts within ``gap`` of its Lagrangian best, a module left with one is
       fixed at ``x_m``, and a max-plus DP over the others' counts (from their smallest kept
       count up) gives the exact optimum. ``gap`` is at most one module's envelope gap, so
       few counts survive, and the DP runs only on ticks whose fill ends inside a non-concave
       segment.

    Cost per kind: ``O(sum_m n_m)`` (curves, envelopes, quickselect, fill) plus the DP over
    the surviving counts. The DP alone (what this replaced) was ``O(M U k)``, ``k`` the useful
    counts per module: ``O(M^2)`` when the pool grows with the modules.
    """
    result = np.inf
    for r in range(ups.shape[1]):
        cap = max(capacity[r], 0)
        g, start = _curves(lam, slow, mu, slo, ups[:, r], value, tick_seconds, cap)
        result = min(result, _best_one_kind(g, start, cap))
    return result


@numba.njit(cache=True)
def _episode_bound(
    demand, slow, fails, first, last, dur, pool, value, mu, slo, ups, tick_seconds
):  # pragma: no cover
    out = np.empty(last - first + 1)
    active = np.zeros(pool.shape[0], dtype=np.int64)
    for i in range(first, last + 1):
        # units fail from the first tick on and are back ``dur`` ticks later
        active += fails[i]
        if i - dur >= first:
            active -= fails[i - dur]
        out[i - first] = best_goal(
            demand[i], slow[i], pool - active, value, mu, slo, ups, tick_seconds
        )
    return out


def oracle_goal(params: ScenarioParams, sim: Simulator, row: int = 0) -> np.ndarray:
    """Per-tick upper bound of goal attainment for ticks 1..T of the episode in ``row``.

    Reads the episode's exogenous arrays (true demand, slow-downs, unit failures); call it
    right after ``reset``. The pool's capacity at a tick excludes units failed and not back.
    """
    h, n = params.history_ticks, params.episode_ticks
    dur = params.config.faults.unit_failure.duration_ticks
    return _episode_bound(
        sim.exo_demand[row], sim.exo_slow[row], sim.exo_fail[row], h + 1, h + n, dur,
        params.pool_units, params.value, params.service_rate, params.slo_seconds,
        params.units_per_server, params.tick_seconds,
    )  # fmt: skip


@numba.njit(cache=True)
def _plan(lam, units, ups, mu, slo, value, tick_seconds, warmup, cands, cost):  # pragma: no cover
    """Index of the best candidate shift (or -1 for none) over the planning window.

    ``units[h, m, r]``: units serving at window tick h without a new shift;
    ``cands[i] = (src, dst, kind, units)``, kind ``-1`` for ``units`` of every kind (a module
    whose servers need all its kinds gains only from all of them at once).
    """
    n_h, n_mod, n_kind = units.shape
    base = np.empty((n_h, n_mod))
    for h in range(n_h):
        for m in range(n_mod):
            s = np.inf
            for r in range(n_kind):
                s = min(s, units[h, m, r] / ups[m, r])
            base[h, m] = value[m] * tick_metrics(lam[h, m], s, mu[m], slo[m], tick_seconds)[3]
    best, best_i = 0.0, -1
    for i in range(cands.shape[0]):
        src, dst, kind, u = cands[i, 0], cands[i, 1], cands[i, 2], cands[i, 3]
        delta = -cost * u * (n_kind if kind < 0 else 1)
        for h in range(n_h):
            for m, sign in ((src, -1), (dst, 1)):
                if sign > 0 and h < warmup:
                    continue
                s = np.inf
                for r in range(n_kind):
                    extra = sign * u if r == kind or kind < 0 else 0
                    s = min(s, (units[h, m, r] + extra) / ups[m, r])
                att = tick_metrics(lam[h, m], s, mu[m], slo[m], tick_seconds)[3]
                delta += value[m] * att - base[h, m]
        if delta > best:
            best, best_i = delta, i
    return best_i


@dataclass(frozen=True)
class MPCParams:
    """The planners' parameters and defaults (the tuner's first trial for ``mpc``): window
    past the warm-up, candidate sources and destinations on big planes, and (``mpc`` only)
    forecast half-widths of hedge."""

    horizon: int = 6
    candidates: int = 8
    hedge: float = 0.0


class OracleMPCPolicy(HeuristicPolicy):
    """Clairvoyant planner (see module docstring); needs the env it acts in (:meth:`bind`)."""

    name = "oracle-mpc"

    reads_truth = True
    """Plans on the simulator's true demand: needs :meth:`bind` (or :meth:`bind_row`)."""

    def __init__(
        self,
        params: ScenarioParams,
        horizon: int = MPCParams.horizon,
        candidates: int = MPCParams.candidates,
    ) -> None:
        super().__init__(params)
        for key, value in (("horizon", horizon), ("candidates", candidates)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{self.name}: {key} must be an integer >= 1, got {value!r}")
        if params.warmup_ticks + horizon > FORECAST_HORIZON_MAX:
            raise ValueError(
                f"{self.name}: warm-up {params.warmup_ticks} + horizon {horizon} ticks is more "
                f"than the {FORECAST_HORIZON_MAX} ticks a planning window may span"
            )
        self.horizon, self.candidates = horizon, candidates
        self.sim: Simulator | None = None
        self.row = 0

    def bind(self, env: object) -> OracleMPCPolicy:
        """Give the planner the simulator of the env it acts in (the truth it may read)."""
        return self.bind_row(env.unwrapped.plane.sim, 0)  # type: ignore[attr-defined]

    def bind_row(self, sim: Simulator, row: int) -> OracleMPCPolicy:
        """Plan for row ``row`` of a batched simulator (a teacher in a batch of envs)."""
        self.sim, self.row = sim, int(row)
        return self

    def requests(self, state: ObservedState) -> np.ndarray:
        req = np.zeros((self.params.num_modules, self.params.num_resources))
        for src, dst, kind, u in self._shifts(state):
            req[src, kind] -= u
            req[dst, kind] += u
        return req

    def decide(self, state: ObservedState) -> np.ndarray:
        shifts = self._shifts(state, limit=1)
        return self.shift(*shifts[0]) if shifts else NOOP_ACTION.copy()

    def window(self, state: ObservedState) -> tuple[np.ndarray, np.ndarray]:
        """``(lam (H, M), units (H, M, R))`` over the planning window of ``H = warmup +
        horizon`` ticks: the true demand, and the units serving at each tick without a new
        shift (now plus the transit slots landed by then)."""
        if self.sim is None:
            raise RuntimeError("oracle-mpc needs the env it acts in: call policy.bind(env)")
        sim, row = self.sim, self.row
        n_h = self.params.warmup_ticks + self.horizon
        lam = sim.demand_window(1, n_h)[row]
        landed = np.cumsum(sim.transit[row], axis=0)  # slot s lands at tick t + s + 1
        units = np.repeat(sim.alloc[row][None].astype(np.float64), n_h, axis=0)
        steps = min(n_h, landed.shape[0])
        units[:steps] += landed[:steps]
        units[steps:] += landed[-1]
        return lam, units

    def _shifts(self, state: ObservedState, limit: int | None = None) -> list[tuple]:
        """The greedy plan (module docstring): ``(src, dst, kind, units)``, at most ``limit``."""
        p = self.params
        w = p.warmup_ticks
        lam, units = self.window(state)
        give, room = self.giveable(state).astype(np.float64), self.room(state).astype(np.float64)
        budget = np.full(p.num_resources, p.config.safety.max_units_per_tick, dtype=np.float64)
        out: list[tuple] = []
        while limit is None or len(out) < limit:
            cands = self._candidates(give, room, state, budget)
            if cands.shape[0] == 0:
                break
            i = _plan(lam, units, p.units_per_server, p.service_rate, p.slo_seconds, p.value,
                      p.tick_seconds, w, cands, p.config.reward.cost_per_unit)  # fmt: skip
            if i < 0:
                break
            src, dst, kind, u = (int(v) for v in cands[i])
            kinds = list(range(p.num_resources)) if kind < 0 else [kind]
            out.extend((src, dst, r, u) for r in kinds)
            units[:, src, kinds] -= u
            units[w:, dst, kinds] += u
            give[[src, dst]] = 0.0
            room[[src, dst]] = 0.0
            budget[kinds] -= u
        return out

    def _candidates(
        self, give: np.ndarray, room: np.ndarray, state: ObservedState, budget: np.ndarray
    ) -> np.ndarray:
        """Feasible (src, dst, kind, units) shifts; on big planes only the likeliest modules."""
        m = give.shape[0]
        k = min(self.candidates, m)
        gap = state.forecast_servers - self.servers(state.alloc + state.incoming)
        # sources: the most over-provisioned of those that can give (not the largest: a big
        # module is usually a busy one, and one step with no gain ends the plan)
        surplus = np.where(give.max(axis=1) >= 1, -gap, -np.inf)
        srcs = np.argsort(-surplus, kind="stable")[:k] if m > 2 * k else np.arange(m)
        gap = np.where(room.max(axis=1) >= 1, gap, -np.inf)
        dsts = np.argsort(-gap, kind="stable")[:k] if m > 2 * k else np.arange(m)
        n_kind = give.shape[1]
        # in plan mode with several kinds, also every kind at once (kind -1), where a shift
        # of one kind alone gains nothing (the guard executes it one kind a tick)
        kinds = list(range(n_kind)) + ([-1] if n_kind > 1 and self.plan_mode else [])
        # the most each (kind, src, dst) may move: min over its kinds of give, room, budget
        sls = [slice(None) if r < 0 else slice(r, r + 1) for r in kinds]
        most = np.stack([np.minimum.outer(give[srcs, sl].min(axis=1), room[dsts, sl].min(axis=1))
                         for sl in sls])  # (kinds, srcs, dsts)  # fmt: skip
        cap = np.minimum([budget[sl].min() for sl in sls], self.max_units)
        most = np.minimum(most, cap[:, None, None])
        most[:, srcs[:, None] == dsts[None, :]] = -np.inf  # no shift to itself
        levels = np.asarray(self.levels, dtype=np.float64)
        ok = levels[None, None, None, :] <= most[..., None]  # (kinds, srcs, dsts, levels)
        r, s, d, lv = np.nonzero(ok)  # C order: kind, src, dst, level, as the plan scans them
        out = np.stack([srcs[s], dsts[d], np.asarray(kinds)[r], np.asarray(self.levels)[lv]])
        return out.T.astype(np.int64).reshape(-1, 4)


class ForecastMPCPolicy(OracleMPCPolicy):
    """**mpc**: the planner of ``oracle-mpc`` on what a control plane knows, not the truth.

    The same greedy scoring of shifts over ``warmup + horizon`` ticks with the same queueing
    model of each module, but the window's demand is the observation's: the demand seen now
    for the ticks before a moved unit lands, the Demand Prediction Engine's forecast (warm-up
    + 1 ahead) raised by ``hedge`` forecast half-widths after; units in transit are counted
    from the warm-up on (their landing tick is not observed). A causal model-predictive
    controller, as a control plane with a forecaster and a model of its services could run;
    unlike ``potential`` and ``hpa`` it takes units from a module that needs them when
    another gains more from them (an overloaded pool: serve the modules it can, fully).
    """

    name = "mpc"
    reads_truth = False

    def __init__(
        self,
        params: ScenarioParams,
        horizon: int = MPCParams.horizon,
        candidates: int = MPCParams.candidates,
        hedge: float = MPCParams.hedge,
    ) -> None:
        super().__init__(params, horizon, candidates)
        if isinstance(hedge, bool) or not 0.0 <= hedge <= 4.0:
            raise ValueError(f"mpc: hedge must be in [0, 4], got {hedge}")
        self.hedge = float(hedge)

    def bind(self, env: object) -> ForecastMPCPolicy:
        """Nothing to bind: it reads only the observation."""
        return self

    def bind_row(self, sim: Simulator, row: int) -> ForecastMPCPolicy:
        return self

    def window(self, state: ObservedState) -> tuple[np.ndarray, np.ndarray]:
        p = self.params
        w = p.warmup_ticks
        n_h = w + self.horizon
        per = p.servers_per_request
        seen = np.where(state.missing, state.forecast_servers, state.demand_servers) / per
        ahead = state.forecast_servers * (1.0 + self.hedge * state.forecast_spread) / per
        lam = np.repeat(ahead[None], n_h, axis=0)
        lam[:w] = seen
        units = np.repeat(state.alloc[None].astype(np.float64), n_h, axis=0)
        units[w:] += state.incoming
        return lam, units
