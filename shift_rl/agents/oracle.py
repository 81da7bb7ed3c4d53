"""Reference bounds that know the true demand: an upper bound and a clairvoyant planner.

**oracle** (unconstrained): at every tick, the best allocation for the true demand of that
tick with free, instant moves and no guard: the most goal attainment any policy could get.
It maximizes a separable sum ``sum_m value_m * attainment_m(units_m)`` over integer units
under the pool's online capacity, exactly, by dynamic programming over modules
(``O(M U^2)`` per tick; exact whatever the shape of the attainment curves). With several
resource kinds, each kind is solved as if it were the only scarce one and the smallest of
those optima is kept: a relaxation, so still an upper bound. No move costs are charged.

**oracle-mpc** (clairvoyant MPC): a policy in the env that knows the true demand of the next
``warmup + horizon`` ticks and when units in transit land. Every tick it scores every feasible
shift (and doing nothing) by the value-weighted goal attainment it yields over that window,
with the moved units lost to both modules during the warm-up, minus the move cost, and takes
the best; in plan mode it then scores again on the window with that shift made, without the
two modules and with the budget left, and so on while a shift still gains (greedy). It obeys
the guard like any policy: a strong reachable reference.
"""

from __future__ import annotations

import numba
import numpy as np

from shift_rl.agents.base import NOOP_ACTION, HeuristicPolicy
from shift_rl.observation import ObservedState
from shift_rl.scenario import FORECAST_HORIZON_MAX, ScenarioParams
from shift_rl.sim.queueing import attainment_curve, tick_metrics
from shift_rl.sim.simulator import Simulator


@numba.njit(cache=True)
def best_goal(lam, slow, capacity, value, mu, slo, ups, tick_seconds):  # pragma: no cover
    """Highest value-weighted goal attainment for one tick (see module docstring).

    ``best[u]`` is the optimum of the modules so far using *at most* ``u`` units, so it never
    decreases in ``u``; that is what lets the max-plus convolution skip unit counts that add
    nothing over one unit fewer (such a count is dominated: same result, far fewer steps once
    attainment saturates). Starting from "exactly ``u`` units" (``-inf`` above 0) instead made
    the skipped counts unreachable and the bound ``-inf`` on a lightly loaded plane, where every
    module saturates at a unit or two.
    """
    n_mod, n_kind = ups.shape
    result = np.inf
    for r in range(n_kind):
        cap = max(capacity[r], 0)
        best = np.zeros(cap + 1)  # no module yet: 0 with at most u units, for every u
        gain = np.empty(cap + 1)
        new = np.empty(cap + 1)
        useful = np.empty(cap + 1, dtype=np.int64)
        for m in range(n_mod):
            attainment_curve(lam[m], mu[m] * slow[m], slo[m], tick_seconds, ups[m, r], gain)
            n_useful = 0
            for a in range(cap + 1):
                gain[a] *= value[m]
                if a == 0 or gain[a] > gain[a - 1]:
                    useful[n_useful] = a
                    n_useful += 1
            for u in range(cap + 1):
                top = -np.inf
                for i in range(n_useful):
                    a = useful[i]
                    if a > u:
                        break
                    v = best[u - a] + gain[a]
                    if v > top:
                        top = v
                new[u] = top
            best[:] = new
        result = min(result, best[cap])
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
    ``cands[i] = (src, dst, kind, units)``.
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
        delta = -cost * u
        for h in range(n_h):
            for m, sign in ((src, -1), (dst, 1)):
                if sign > 0 and h < warmup:
                    continue
                s = np.inf
                for r in range(n_kind):
                    extra = sign * u if r == kind else 0
                    s = min(s, (units[h, m, r] + extra) / ups[m, r])
                att = tick_metrics(lam[h, m], s, mu[m], slo[m], tick_seconds)[3]
                delta += value[m] * att - base[h, m]
        if delta > best:
            best, best_i = delta, i
    return best_i


class OracleMPCPolicy(HeuristicPolicy):
    """Clairvoyant planner (see module docstring); needs the env it acts in (:meth:`bind`)."""

    name = "oracle-mpc"

    def __init__(self, params: ScenarioParams, horizon: int = 6, candidates: int = 8) -> None:
        super().__init__(params)
        if horizon < 1 or candidates < 1:
            raise ValueError(
                f"oracle-mpc: horizon and candidates must be >= 1, got {horizon}, {candidates}"
            )
        if params.warmup_ticks + horizon > FORECAST_HORIZON_MAX:
            raise ValueError(
                f"oracle-mpc: warm-up {params.warmup_ticks} + horizon {horizon} ticks is more "
                f"than the {FORECAST_HORIZON_MAX} ticks of demand known past an episode's end"
            )
        self.horizon, self.candidates = horizon, candidates
        self.sim: Simulator | None = None

    def bind(self, env: object) -> OracleMPCPolicy:
        """Give the planner the simulator of the env it acts in (the truth it may read)."""
        self.sim = env.unwrapped.plane.sim  # type: ignore[attr-defined]
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

    def _shifts(self, state: ObservedState, limit: int | None = None) -> list[tuple]:
        """The greedy plan (module docstring): ``(src, dst, kind, units)``, at most ``limit``."""
        if self.sim is None:
            raise RuntimeError("oracle-mpc needs the env it acts in: call policy.bind(env)")
        p, sim = self.params, self.sim
        w = p.warmup_ticks
        n_h = w + self.horizon
        lam = sim.demand_window(1, n_h)[0]
        # units serving at window tick h: now plus transit slots landed by then
        landed = np.cumsum(sim.transit[0], axis=0)  # slot s lands at tick t + s + 1
        units = np.repeat(sim.alloc[0][None].astype(np.float64), n_h, axis=0)
        steps = min(n_h, landed.shape[0])
        units[:steps] += landed[:steps]
        units[steps:] += landed[-1]
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
            out.append((src, dst, kind, u))
            units[:, src, kind] -= u
            units[w:, dst, kind] += u
            give[[src, dst]] = 0.0
            room[[src, dst]] = 0.0
            budget[kind] -= u
        return out

    def _candidates(
        self, give: np.ndarray, room: np.ndarray, state: ObservedState, budget: np.ndarray
    ) -> np.ndarray:
        """Feasible (src, dst, kind, units) shifts; on big planes only the likeliest modules."""
        m = give.shape[0]
        k = min(self.candidates, m)
        srcs = np.argsort(-give.sum(axis=1))[:k] if m > 2 * k else np.arange(m)
        gap = state.forecast_servers - self.servers(state.alloc + state.incoming)
        gap = np.where(room.max(axis=1) >= 1, gap, -np.inf)
        dsts = np.argsort(-gap)[:k] if m > 2 * k else np.arange(m)
        out = []
        for r in range(give.shape[1]):
            for s in srcs:
                for d in dsts:
                    if s == d:
                        continue
                    most = min(give[s, r], room[d, r], self.max_units, budget[r])
                    for level in self.levels:
                        if level <= most:
                            out.append((s, d, r, level))
        return np.array(out, dtype=np.int64).reshape(-1, 4)
