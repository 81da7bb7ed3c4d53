"""What the controller drives: the ResourceBackend protocol and the simulated backend.

A backend owns the real resources. It lists its modules, reports telemetry (metrics NaN
when missing, allocations always known), moves units between modules and lets one control
interval pass. Every backend runs the same conformance suite (``tests/test_backends.py``).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
from gymnasium.utils import seeding

from shift_rl.config import ScenarioConfig, load_scenario
from shift_rl.scenario import ScenarioParams
from shift_rl.seeds import draw_episode_seed
from shift_rl.sim.simulator import Simulator
from shift_rl.telemetry import Telemetry


class BackendError(RuntimeError):
    """A backend operation failed; the controller holds and retries later."""


@runtime_checkable
class ResourceBackend(Protocol):
    """The resources a :class:`~shift_rl.controller.ShiftController` shifts."""

    params: ScenarioParams  # the plane's layout: modules, kinds, pool, rails

    def telemetry(self) -> Telemetry:
        """Observed state now, as a batch of one (copy what you keep)."""

    def move(self, src: int, dst: int, kind: int, units: int) -> int:
        """Start moving ``units`` of ``kind`` from ``src`` to ``dst``; returns units moved."""

    def advance(self) -> None:
        """Let one control interval pass (a real backend waits; a simulated one steps)."""

    def history(self) -> np.ndarray:
        """Demand seen before the controller started, (ticks, modules), to warm forecasts."""


class SimulatedBackend:
    """The simulator behind the backend protocol (same dynamics as the env).

    ``seed`` reproduces the env's episode: ``ResourceShiftEnv.reset(seed=seed)`` and this
    backend draw the same demand and faults.
    """

    def __init__(self, scenario: str | ScenarioConfig, seed: int = 0) -> None:
        self.params = ScenarioParams.from_config(load_scenario(scenario))
        self.sim = Simulator(self.params, 1)
        rng, _ = seeding.np_random(seed)
        self.episode_seed = draw_episode_seed(rng)  # as ResourceShiftEnv.reset(seed=seed)
        self.sim.reset([self.episode_seed])
        self._env = np.zeros(1, dtype=np.int64)

    def telemetry(self) -> Telemetry:
        return self.sim.telemetry()

    def move(self, src: int, dst: int, kind: int, units: int) -> int:
        if self.done:
            raise BackendError("the simulated episode is over")
        a = [np.array([v], dtype=np.int64) for v in (src, dst, kind, units)]
        return int(self.sim.shift(self._env, *a)[0])

    def advance(self) -> None:
        if self.done:
            raise BackendError("the simulated episode is over")
        self.sim.step()

    def history(self) -> np.ndarray:
        h = self.params.history_ticks
        demand = np.where(self.sim.exo_missing[0, :h], np.nan, self.sim.exo_demand[0, :h])
        return demand

    @property
    def done(self) -> bool:
        return int(self.sim.t[0]) >= self.params.episode_ticks

    def true_goal_attainment(self) -> float:
        """Value-weighted goal attainment as it really is (for evaluation, not control)."""
        return float((self.sim.true_attainment[0] * self.params.value).sum())
