"""Potential: the seed's shift algorithm, faithfully and with every threshold a parameter.

Per module ``m`` (all from the observation and the scenario's public facts)::

    potential_m = reputation_m * predicted_demand_m * projected_gain_m / shift_cost_m

- ``predicted_demand``: the forecast demand ``warmup + 1`` ticks ahead (when units shifted now
  start serving), in servers needed at the target utilization;
- ``projected_gain``: value-weighted increase of goal attainment if the module had
  ``probe_units`` more units, from the M/M/c model at the forecast demand with the service
  rate estimated from observed utilization (so a slowed-down module shows it);
- ``shift_cost``: the cost of moving units to the module: ``cost_per_unit`` per unit, the
  ``warmup_ticks`` during which they serve nowhere, plus ``incoming_penalty`` per unit already
  warming up towards it (don't pile on before the last shift lands).

Shift candidates, as in the seed's loop: a module whose usage exceeds its *optimal usage*
(forecast need x (1 + ``headroom``)) and whose potential is lower gives units to a module of
higher potential, when that potential is ``min_gap`` times higher. With several resource
kinds, usage is compared kind by kind: the source gives a kind it holds beyond its optimum,
the target receives a kind it lacks (or, at its optimum, the kind that binds its servers).
``calculateShiftAmount`` grows with the potential gap: the smaller of the source's surplus
and the target's deficit, times ``min(1, aggressiveness * gap / potential_target)``.

**The whole loop every tick** (plan mode): every qualifying pair, by decreasing potential
gap, each module in one shift at most (the guard's stabilization lock), inside the tick's
budget per kind; the plan asks each pair's source for the amount and its target to take it
(the guard matches them, larger amounts first). In single-shift mode: the first pair.

**Feedback loop** (the seed's step 4): the policy watches its own shifts. A pair it
proposed whose two modules show ``pending`` on the next tick was executed; at the end of the
stabilization window it compares the pair's value-weighted attainment with that at the
shift, as the guard's judgement does. A shift that hurt adds caution ``feedback_rate x
min(1, drop / rollback_threshold)`` (the full rate for one the guard rolls back): the
global caution raises the gap a pair needs (``min_gap x (1 + caution)``), and the source's
own caution raises its optimal usage (``headroom + caution_source``), so a module that
suffered from giving keeps more. Caution fades by ``feedback_decay`` per tick.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from shift_rl.agents.base import NOOP_ACTION, HeuristicPolicy, parse_params
from shift_rl.observation import ObservedState
from shift_rl.scenario import ScenarioParams
from shift_rl.sim.queueing import attainment


@dataclass(frozen=True)
class PotentialParams:
    headroom: float = 0.1  # optimal usage = forecast need x (1 + headroom)
    probe_units: int = 2  # units behind the projected gain
    min_gap: float = 1.5  # target potential must be this many times the source's
    aggressiveness: float = 1.0  # how fast the amount grows with the potential gap
    incoming_penalty: float = 0.01  # shift cost per unit already warming up
    reputation_power: float = 1.0  # exponent of reputation in the potential
    mu_smoothing: float = 0.2  # EMA weight of the observed service-rate estimate
    feedback_rate: float = 0.5  # caution a hurtful shift adds (a rollback: all of it)
    feedback_decay: float = 0.05  # share of caution forgotten per tick


class PotentialPolicy(HeuristicPolicy):
    """The seed's Potential shift algorithm (see module docstring)."""

    name = "potential"

    def __init__(self, params: ScenarioParams, **overrides: float) -> None:
        super().__init__(params)
        self.p = parse_params(PotentialParams, self.name, overrides)
        self.mu_ratio = np.ones(params.num_modules)
        self.caution = 0.0
        self.source_caution = np.zeros(params.num_modules)
        self._tick = 0
        self._proposed: list[tuple[int, int, float]] = []  # (src, dst, baseline) last tick
        self._open: list[tuple[int, int, int, float]] = []  # (due tick, src, dst, baseline)

    def reset(self) -> None:
        self.mu_ratio[:] = 1.0
        self.caution = 0.0
        self.source_caution[:] = 0.0
        self._tick = 0
        self._proposed, self._open = [], []

    # -- the feedback loop --------------------------------------------------------------------
    def _pair_attainment(self, state: ObservedState, src: int, dst: int) -> float:
        v = self.params.value
        if state.missing[src] or state.missing[dst]:
            return float("nan")
        att = state.attainment
        return float((v[src] * att[src] + v[dst] * att[dst]) / (v[src] + v[dst]))

    def feedback(self, state: ObservedState) -> None:
        """Learn from the outcome of past shifts (module docstring); call once per tick."""
        self._tick += 1
        window = self.rails.stabilization_ticks
        for src, dst, base in self._proposed:
            if state.pending[src] and state.pending[dst]:
                self._open.append((self._tick - 1 + window, src, dst, base))
        self._proposed = []
        fade = 1.0 - self.p.feedback_decay
        self.caution *= fade
        self.source_caution *= fade
        keep = []
        for due, src, dst, base in self._open:
            if due > self._tick:
                keep.append((due, src, dst, base))
                continue
            drop = base - self._pair_attainment(state, src, dst)
            if drop > 0:  # NaN (no evidence) compares False, as the guard's judgement
                hurt = self.p.feedback_rate * min(1.0, drop / self.rails.rollback_threshold)
                self.caution += hurt
                self.source_caution[src] += hurt
        self._open = keep

    def _observe_service_rate(self, state: ObservedState) -> None:
        """Estimate each module's effective service rate from demand and utilization."""
        p = self.params
        busy = self.servers(state.alloc) * state.utilization
        seen = ~state.missing & (busy > 0.05) & (state.utilization < 0.95)
        demand = state.demand_servers / self.servers_per_request  # requests / tick
        est = demand / np.maximum(busy, 1e-9) / (p.service_rate * p.tick_seconds)
        est = np.clip(est, 0.2, 2.0)
        a = self.p.mu_smoothing
        self.mu_ratio = np.where(seen, (1 - a) * self.mu_ratio + a * est, self.mu_ratio)

    def scores(self, state: ObservedState) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(potential, optimal usage in servers, current servers incl. warming up) per module."""
        p, q = self.params, self.p
        self._observe_service_rate(state)
        mu = p.service_rate * self.mu_ratio
        servers = self.servers(state.alloc + state.incoming)
        lam = state.forecast_servers / self.servers_per_request
        probe = q.probe_units / p.units_per_server.max(axis=1)
        now = attainment(lam, servers, mu, p.slo_seconds, p.tick_seconds)
        more = attainment(lam, servers + probe, mu, p.slo_seconds, p.tick_seconds)
        gain = p.value * np.maximum(more - now, 0.0)
        rc = p.config.reward
        cost = (
            rc.cost_per_unit * q.probe_units * (1 + p.warmup_ticks)
            + q.incoming_penalty * state.incoming.sum(axis=1)
            + 1e-6
        )
        rep = np.clip(state.reputation, 0.0, 1.0) ** q.reputation_power
        potential = rep * state.forecast_servers * gain / cost
        optimal = state.forecast_servers * (1.0 + q.headroom + self.source_caution)
        return potential, optimal, servers

    def requests(self, state: ObservedState) -> np.ndarray:
        """The seed's whole loop for this tick as requests: every pair it shifts."""
        req = np.zeros((self.params.num_modules, self.params.num_resources))
        for src, dst, kind, units in self.plan_pairs(state):
            req[src, kind] -= units
            req[dst, kind] += units
        return req

    def decide(self, state: ObservedState) -> np.ndarray:
        """The single shift: the first pair of the loop (:meth:`plan_pairs`)."""
        pairs = self.plan_pairs(state, limit=1)
        return self.shift(*pairs[0]) if pairs else NOOP_ACTION.copy()

    def plan_pairs(self, state: ObservedState, limit: int | None = None) -> list[tuple]:
        """The seed's loop over every pair, by decreasing potential gap (ties: the lowest
        ``(dst, src)``), as ``(src, dst, kind, units)``: each module in one shift, units in
        levels inside the tick's budget per kind; at most ``limit`` pairs.

        Pairs are visited in gap order by a heap from the corner of targets sorted by
        decreasing potential and sources by increasing one (the key ``(-gap, dst, src)`` grows
        along both axes: IEEE subtraction is monotone), restarted after each shift from the
        corner of the modules still free (the same pairs as the seed's loop over every pair,
        checked against it in the tests). So a tick costs O(M log M) plus a few heap steps
        per shift.
        """
        self.feedback(state)
        potential, optimal, _ = self.scores(state)
        ctx = self._pair_context(potential, optimal, state)
        sources, targets = ctx[0], ctx[1]
        pot = potential.tolist()
        t = targets[np.lexsort((targets, -potential[targets]))].tolist()
        s = sources[np.lexsort((sources, potential[sources]))].tolist()
        budget = np.full(self.params.num_resources, self.params.config.safety.max_units_per_tick)
        used = [False] * self.params.num_modules
        pairs: list[tuple] = []
        i0 = j0 = 0
        while limit is None or len(pairs) < limit:
            while i0 < len(t) and used[t[i0]]:
                i0 += 1
            while j0 < len(s) and used[s[j0]]:
                j0 += 1
            if i0 == len(t) or j0 == len(s) or budget.max() < 1:
                break
            found = self._best_pair(t, s, i0, j0, used, pot, potential, ctx, budget)
            if found is None:
                break
            src, dst, kind, units = found
            pairs.append(found)
            budget[kind] -= units
            used[src] = used[dst] = True
        for src, dst, _, _ in pairs:
            self._proposed.append((src, dst, self._pair_attainment(state, src, dst)))
        return pairs

    def _best_pair(self, t, s, i0, j0, used, pot, potential, ctx, budget):
        """The free qualifying pair of largest gap whose shift fits (or None)."""
        heap = [(-(pot[t[i0]] - pot[s[j0]]), t[i0], s[j0], i0, j0)]
        seen = {(i0, j0)}
        gap_factor = self.p.min_gap * (1.0 + self.caution)
        while heap:
            neg_gap, dst, src, i, j = heapq.heappop(heap)
            if -neg_gap <= 0.0:
                return None
            if pot[dst] <= gap_factor * pot[src]:
                # nor does any pair below or right of it qualify (targets' potential falls,
                # sources' rises): the walk need not go there
                continue
            if src != dst and not used[src] and not used[dst]:
                found = self._pair_shift(src, dst, -neg_gap, potential, ctx, budget)
                if found is not None:
                    return (src, dst, *found)
            for a, b in ((i + 1, j), (i, j + 1)):
                if a < len(t) and b < len(s) and (a, b) not in seen:
                    seen.add((a, b))
                    heapq.heappush(heap, (-(pot[t[a]] - pot[s[b]]), t[a], s[b], a, b))
        return None

    def _pair_context(self, potential: np.ndarray, optimal: np.ndarray, state: ObservedState):
        surplus, deficit = self.kind_gaps(optimal, state)
        give = np.minimum(surplus, self.giveable(state))
        room = self.room(state)
        held = state.alloc + state.incoming
        sources = np.flatnonzero(give.max(axis=1) >= 1)
        targets = np.flatnonzero((room.max(axis=1) >= 1) & (potential > 0))
        return sources, targets, give, room, deficit, held

    def _pair_shift(self, src: int, dst: int, gap: float, potential: np.ndarray, ctx, budget):
        """``(kind, units)`` of one (src, dst) pair's shift in a level that fits the limits
        and ``budget`` (R,), or None when it moves nothing."""
        q, ups = self.p, self.params.units_per_server
        _, _, give, room, deficit, held = ctx
        want = deficit[dst]
        if want.max() < 1:  # at its optimum: probe, in the kind that binds it
            want = np.zeros_like(want)
            want[np.argmin(held[dst] / ups[dst])] = q.probe_units
        usable = np.minimum(np.minimum(give[src], room[dst]), budget)
        fits = np.where((usable >= 1) & (want > 0), want, -1.0)
        kind = int(np.argmax(fits))
        if fits[kind] < 0:
            return None
        base = min(usable[kind], max(want[kind], 1.0))
        amount = np.ceil(base * min(1.0, q.aggressiveness * gap / potential[dst]))
        most = min(amount, self.max_units, budget[kind])
        k = int(np.searchsorted(self.levels, most, side="right")) - 1
        if amount < 1 or k < 0:
            return None
        return kind, int(self.levels[k])
