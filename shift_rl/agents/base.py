"""The Policy protocol every shift algorithm satisfies, and what heuristics share.

A policy maps one observation (and the guard's action mask) to one action: a plan (per
module and kind a requested change, :mod:`shift_rl.safety`) or, in single-shift mode,
``(source, target, level)``. Heuristics decode the observation with the same
:class:`~shift_rl.observation.ObservationBuilder` that built it and read only the scenario's
public facts (pool size, service rates, SLOs, values, limits): what a control plane knows.
So every policy runs unchanged in the env and in the runtime controller.

A heuristic states what it wants as *requests*: (M, R) signed units per module and kind
(:meth:`HeuristicPolicy.requests`). In plan mode they become the plan's levels, and the
guard matches them as it matches any plan; in single-shift mode the heuristic takes its
first shift (:meth:`HeuristicPolicy.decide`: by default the pair the guard's matching
would execute first, the largest request with the largest offer).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import fields
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np

from shift_rl.observation import ObservationBuilder, ObservedState
from shift_rl.safety import PLAN, GuardSettings
from shift_rl.scenario import ScenarioParams

NOOP_ACTION = np.zeros(3, dtype=np.int64)


P = TypeVar("P")


def parse_params(cls: type[P], name: str, overrides: dict[str, Any]) -> P:
    """A heuristic's parameter dataclass from keyword overrides, with a clear error."""
    try:
        return cls(**overrides)
    except TypeError as err:
        allowed = sorted(f.name for f in fields(cls))  # type: ignore[arg-type]
        raise ValueError(f"{name}: bad parameter ({err}); allowed: {allowed}") from None


def masked_noop(action_mask: np.ndarray, num_modules: int) -> np.ndarray:
    """A single-shift no-op ``(m, m, k)`` that the per-dimension mask allows (the first).

    ``(0, 0, 0)`` is a no-op too, but the mask may forbid index 0 in some dimension; learned
    policies can only pick masked-in indices, so heuristics that teach them say "no shift"
    the same way. (In plan mode "no change" is always masked in: no such search.)
    """
    m = num_modules
    both = np.flatnonzero(action_mask[:m] & action_mask[m : 2 * m])
    levels = np.flatnonzero(action_mask[2 * m :])
    i = int(both[0]) if both.size else 0
    return np.array([i, i, int(levels[0]) if levels.size else 0], dtype=np.int64)


def noop_action(params: ScenarioParams) -> np.ndarray:
    """The action asking for nothing in ``params``' action mode."""
    if params.config.action.mode == PLAN:
        k = len(params.amount_levels)
        return np.full(params.num_modules * params.num_resources, k, dtype=np.int64)
    return NOOP_ACTION.copy()


def plan_action(
    requests: np.ndarray, levels: np.ndarray, action_mask: np.ndarray | None = None
) -> np.ndarray:
    """The plan action for (M, R) signed requests in units: each rounded to whole units (half
    a unit asks for one), then the largest level not above it (at least the smallest level),
    or, when the mask forbids that, the largest allowed level below it on the same side; else
    no change.
    """
    k = len(levels)
    req = np.floor(np.abs(np.asarray(requests, dtype=np.float64).reshape(-1)) + 0.5)
    req *= np.sign(np.asarray(requests, dtype=np.float64).reshape(-1))
    idx = np.maximum(np.searchsorted(levels, np.abs(req), side="right") - 1, 0)
    action = np.where(req >= 1, k + 1 + idx, np.where(req <= -1, k - 1 - idx, k))
    if action_mask is not None:
        mask = np.asarray(action_mask, dtype=bool).reshape(req.size, 2 * k + 1)
        for i in np.flatnonzero(~mask[np.arange(req.size), action]).tolist():
            step = 1 if action[i] < k else -1  # towards "no change"
            j = int(action[i])
            while j != k and not mask[i, j]:
                j += step
            action[i] = j
    return action.astype(np.int64)


@runtime_checkable
class Policy(Protocol):
    """A shift algorithm: ``act(observation, action_mask) -> action``."""

    name: str

    def act(self, observation: np.ndarray, action_mask: np.ndarray | None = None) -> np.ndarray:
        """The action as an int64 array of shape ``(len(nvec),)``: the plan's levels, or
        ``(source, target, level)`` in single-shift mode."""

    def reset(self) -> None:
        """Forget episode state (called at every episode start)."""


class HeuristicPolicy(ABC):
    """Base of the built-in heuristics: decoding, requests, guard-aware action building."""

    name = "heuristic"

    def __init__(self, params: ScenarioParams) -> None:
        self.params = params
        self.builder = ObservationBuilder(params)
        s = params.config.safety
        self.rails = GuardSettings.from_params(params)
        self.plan_mode = self.rails.mode == PLAN
        self.levels = params.amount_levels
        self.max_units = min(s.max_units_per_shift, s.max_units_per_tick)
        self.servers_per_request = params.servers_per_request

    def reset(self) -> None:  # noqa: B027 - stateless heuristics need no reset
        """Stateless by default."""

    def act(self, observation: np.ndarray, action_mask: np.ndarray | None = None) -> np.ndarray:
        state = self.builder.decode(observation)
        if self.plan_mode:
            return plan_action(self.requests(state), self.levels, action_mask)
        action = self.decide(state)
        if action[0] == action[1] and action_mask is not None:
            return masked_noop(action_mask, self.params.num_modules)
        return action

    @abstractmethod
    def requests(self, state: ObservedState) -> np.ndarray:
        """(M, R) signed units the heuristic asks of each module this tick (+ take, - give),
        on the decoded observation."""

    def decide(self, state: ObservedState) -> np.ndarray:
        """The single shift (single-shift mode): the first pair the guard would match of
        :meth:`requests`, the largest request and the largest offer."""
        req = self.requests(state)
        return self.best_pair(np.maximum(-req, 0.0), np.maximum(req, 0.0), state)

    # -- helpers shared by the heuristics -------------------------------------------------
    def servers(self, units: np.ndarray) -> np.ndarray:
        """(M,) servers the given (M, R) units make (the scarcest kind decides)."""
        return np.min(units / self.params.units_per_server, axis=1)

    def giveable(self, state: ObservedState) -> np.ndarray:
        """(M, R) units each module could give now: above floor, unlocked, telemetry seen."""
        spare = np.maximum(state.alloc - self.params.floor, 0)
        spare[state.locked | state.missing] = 0
        return spare

    def room(self, state: ObservedState) -> np.ndarray:
        """(M, R) units each module could receive now under the share cap, if unlocked."""
        room = np.maximum(self.params.share_cap - state.alloc - state.incoming, 0)
        room[state.locked] = 0
        return room

    def shift(self, src: int, dst: int, kind: int, units: float) -> np.ndarray:
        """Action moving about ``units`` of ``kind``: the largest level not above it."""
        if src == dst or units < 1:
            return NOOP_ACTION.copy()
        k = int(np.searchsorted(self.levels, min(units, self.max_units), side="right")) - 1
        return np.array([src, dst, kind * len(self.levels) + max(k, 0)], dtype=np.int64)

    def kind_gaps(
        self, target_servers: np.ndarray, state: ObservedState
    ) -> tuple[np.ndarray, np.ndarray]:
        """(surplus, deficit) in units per module and kind against a target in servers.

        Kinds are compared one by one: a module whose servers are bound by its CPU may still
        hold spare memory to give, and needs CPU, not memory, to grow.
        """
        held = state.alloc + state.incoming
        target = target_servers[:, None] * self.params.units_per_server
        return np.floor(np.maximum(held - target, 0.0)), np.maximum(target - held, 0.0)

    def resize(self, surplus: np.ndarray, deficit: np.ndarray, state: ObservedState) -> np.ndarray:
        """Requests that resize every module towards its target: (M, R) signed units, each
        module asking for its deficit (up to its room) or offering its surplus (up to what it
        may give); the guard keeps each shift inside the limits."""
        return np.minimum(deficit, self.room(state)) - np.minimum(surplus, self.giveable(state))

    def best_pair(
        self, surplus: np.ndarray, deficit: np.ndarray, state: ObservedState
    ) -> np.ndarray:
        """Shift from the largest surplus to the largest deficit (units, (M, R) each)."""
        give = np.minimum(surplus, self.giveable(state))
        take = np.minimum(deficit, self.room(state))
        if give.max() < 1 or take.max() < 1:
            return NOOP_ACTION.copy()
        # the kind where the biggest deficit meets some surplus
        kind = int(np.argmax(np.where(give.max(axis=0) >= 1, take.max(axis=0), -1)))
        dst = int(np.argmax(take[:, kind]))
        give[dst, kind] = 0
        src = int(np.argmax(give[:, kind]))
        return self.shift(src, dst, kind, min(give[src, kind], take[dst, kind]))


class StaticPolicy:
    """Never shifts: the allocation the scenario starts with (the reference of gap closed)."""

    name = "static"

    def __init__(self, params: ScenarioParams) -> None:
        self.params = params

    def reset(self) -> None:
        """Nothing to forget."""

    def act(self, observation: np.ndarray, action_mask: np.ndarray | None = None) -> np.ndarray:
        if action_mask is not None and self.params.config.action.mode != PLAN:
            return masked_noop(action_mask, self.params.num_modules)
        return noop_action(self.params)
