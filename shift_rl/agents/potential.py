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
        p, q = self.params, self.p
        potential, optimal, _ = self.scores(state)
        ups = p.units_per_server
        surplus, deficit = self.kind_gaps(optimal, state)
        give = np.minimum(surplus, self.giveable(state))
        room = self.room(state)
        held = state.alloc + state.incoming
        best, best_gap = NOOP_ACTION.copy(), 0.0
        sources = np.flatnonzero(give.max(axis=1) >= 1)
        targets = np.flatnonzero((room.max(axis=1) >= 1) & (potential > 0))
        for dst in targets:
            for src in sources:
                if src == dst or potential[dst] <= q.min_gap * potential[src]:
                    continue
                gap = potential[dst] - potential[src]
                if gap <= best_gap:
                    continue
                want = deficit[dst]
                if want.max() < 1:  # at its optimum: probe, in the kind that binds it
                    want = np.zeros_like(want)
                    want[np.argmin(held[dst] / ups[dst])] = q.probe_units
                usable = np.minimum(give[src], room[dst])
                fits = np.where((usable >= 1) & (want > 0), want, -1.0)
                kind = int(np.argmax(fits))
                if fits[kind] < 0:
                    continue
                base = min(usable[kind], max(want[kind], 1.0))
                amount = np.ceil(base * min(1.0, q.aggressiveness * gap / potential[dst]))
                action = self.shift(int(src), int(dst), kind, amount)
                if action[0] != action[1]:
                    best, best_gap = action, gap
        return best
