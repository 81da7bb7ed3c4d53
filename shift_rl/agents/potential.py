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
(forecast need x (1 + ``headroom``)) and whose potential is lower gives units to the module
of highest potential, when that potential is ``min_gap`` times higher. With several resource
kinds, usage is compared kind by kind: the source gives a kind it holds beyond its optimum,
the target receives a kind it lacks (or, at its optimum, the kind that binds its servers).
``calculateShiftAmount`` grows with the potential gap: the smaller of the source's surplus
and the target's deficit, times ``min(1, aggressiveness * gap / potential_target)``; the guard
keeps it inside the limits. One shift per tick (the env's action), the best pair.
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


class PotentialPolicy(HeuristicPolicy):
    """The seed's Potential shift algorithm (see module docstring)."""

    name = "potential"

    def __init__(self, params: ScenarioParams, **overrides: float) -> None:
        super().__init__(params)
        self.p = parse_params(PotentialParams, self.name, overrides)
        self.mu_ratio = np.ones(params.num_modules)

    def reset(self) -> None:
        self.mu_ratio[:] = 1.0

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
        optimal = state.forecast_servers * (1.0 + q.headroom)
        return potential, optimal, servers

    def decide(self, state: ObservedState) -> np.ndarray:
        """The pair of largest potential gap whose shift is feasible (ties: the lowest
        ``(dst, src)``): the seed's loop over every pair (:meth:`decide_every_pair`), found by
        visiting pairs in decreasing gap order and stopping at the first feasible one."""
        potential, optimal, _ = self.scores(state)
        ctx = self._pair_context(potential, optimal, state)
        sources, targets = ctx[0], ctx[1]
        if not np.isfinite(potential).all():  # (never, the observation is finite): the loop
            return self._every_pair(potential, ctx)
        # Targets by decreasing potential, sources by increasing one, ties by index: the key
        # (-gap, dst, src) then grows along both axes (IEEE subtraction is monotone), so a
        # heap from the corner yields pairs exactly in the seed loop's order of preference.
        t = targets[np.lexsort((targets, -potential[targets]))].tolist()
        s = sources[np.lexsort((sources, potential[sources]))].tolist()
        if not t or not s:
            return NOOP_ACTION.copy()
        pot = potential.tolist()
        heap = [(-(pot[t[0]] - pot[s[0]]), t[0], s[0], 0, 0)]
        seen = {(0, 0)}
        while heap:
            neg_gap, dst, src, i, j = heapq.heappop(heap)
            if -neg_gap <= 0.0:
                break
            if src != dst and not pot[dst] <= self.p.min_gap * pot[src]:
                action = self._pair_action(src, dst, -neg_gap, potential, ctx)
                if action is not None:
                    return action
            for a, b in ((i + 1, j), (i, j + 1)):
                if a < len(t) and b < len(s) and (a, b) not in seen:
                    seen.add((a, b))
                    heapq.heappush(heap, (-(pot[t[a]] - pot[s[b]]), t[a], s[b], a, b))
        return NOOP_ACTION.copy()

    def decide_every_pair(self, state: ObservedState) -> np.ndarray:
        """:meth:`decide` as the seed writes it: every (target, source) pair, O(M^2)."""
        potential, optimal, _ = self.scores(state)
        return self._every_pair(potential, self._pair_context(potential, optimal, state))

    def _pair_context(self, potential: np.ndarray, optimal: np.ndarray, state: ObservedState):
        surplus, deficit = self.kind_gaps(optimal, state)
        give = np.minimum(surplus, self.giveable(state))
        room = self.room(state)
        held = state.alloc + state.incoming
        sources = np.flatnonzero(give.max(axis=1) >= 1)
        targets = np.flatnonzero((room.max(axis=1) >= 1) & (potential > 0))
        return sources, targets, give, room, deficit, held

    def _every_pair(self, potential: np.ndarray, ctx) -> np.ndarray:
        sources, targets = ctx[0], ctx[1]
        best, best_gap = NOOP_ACTION.copy(), 0.0
        for dst in targets:
            for src in sources:
                if src == dst or potential[dst] <= self.p.min_gap * potential[src]:
                    continue
                gap = potential[dst] - potential[src]
                if gap <= best_gap:
                    continue
                action = self._pair_action(int(src), int(dst), gap, potential, ctx)
                if action is not None:
                    best, best_gap = action, gap
        return best

    def _pair_action(self, src: int, dst: int, gap: float, potential: np.ndarray, ctx):
        """The shift of one (src, dst) pair, or None when it moves nothing."""
        q, ups = self.p, self.params.units_per_server
        _, _, give, room, deficit, held = ctx
        want = deficit[dst]
        if want.max() < 1:  # at its optimum: probe, in the kind that binds it
            want = np.zeros_like(want)
            want[np.argmin(held[dst] / ups[dst])] = q.probe_units
        usable = np.minimum(give[src], room[dst])
        fits = np.where((usable >= 1) & (want > 0), want, -1.0)
        kind = int(np.argmax(fits))
        if fits[kind] < 0:
            return None
        base = min(usable[kind], max(want[kind], 1.0))
        amount = np.ceil(base * min(1.0, q.aggressiveness * gap / potential[dst]))
        action = self.shift(src, dst, kind, amount)
        return action if action[0] != action[1] else None
