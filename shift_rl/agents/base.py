"""The Policy protocol every shift algorithm satisfies, and what heuristics share.

A policy maps one observation (and the guard's action mask) to one action
``(source, target, level)``. Heuristics decode the observation with the same
:class:`~shift_rl.observation.ObservationBuilder` that built it and read only the scenario's
public facts (pool size, service rates, SLOs, values, limits): what a control plane knows.
So every policy runs unchanged in the env and in the runtime controller.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import fields
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np

from shift_rl.observation import ObservationBuilder, ObservedState
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
    """A no-op ``(m, m, k)`` that the per-dimension mask allows (the first such one).

    ``(0, 0, 0)`` is a no-op too, but the mask may forbid index 0 in some dimension; learned
    policies can only pick masked-in indices, so heuristics that teach them say "no shift"
    the same way.
    """
    m = num_modules
    both = np.flatnonzero(action_mask[:m] & action_mask[m : 2 * m])
    levels = np.flatnonzero(action_mask[2 * m :])
    i = int(both[0]) if both.size else 0
    return np.array([i, i, int(levels[0]) if levels.size else 0], dtype=np.int64)


@runtime_checkable
class Policy(Protocol):
    """A shift algorithm: ``act(observation, action_mask) -> action``."""

    name: str

    def act(self, observation: np.ndarray, action_mask: np.ndarray | None = None) -> np.ndarray:
        """The action ``(source, target, level)`` as an int64 array of shape (3,)."""

    def reset(self) -> None:
        """Forget episode state (called at every episode start)."""


class HeuristicPolicy(ABC):
    """Base of the built-in heuristics: decoding, guard-aware action building."""

    name = "heuristic"

    def __init__(self, params: ScenarioParams) -> None:
        self.params = params
        self.builder = ObservationBuilder(params)
        s = params.config.safety
        self.levels = params.amount_levels
        self.max_units = min(s.max_units_per_shift, s.max_units_per_tick)
        self.servers_per_request = params.servers_per_request

    def reset(self) -> None:  # noqa: B027 - stateless heuristics need no reset
        """Stateless by default."""

    def act(self, observation: np.ndarray, action_mask: np.ndarray | None = None) -> np.ndarray:
        action = self.decide(self.builder.decode(observation))
        if action[0] == action[1] and action_mask is not None:
            return masked_noop(action_mask, self.params.num_modules)
        return action

    @abstractmethod
    def decide(self, state: ObservedState) -> np.ndarray:
        """The heuristic's rule, on the decoded observation."""

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
        if action_mask is not None:
            return masked_noop(action_mask, self.params.num_modules)
        return NOOP_ACTION.copy()
