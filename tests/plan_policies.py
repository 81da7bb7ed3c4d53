"""Test-only policies that produce plans of several shifts (not part of the package).

``RandomPlans`` asks, per module and kind, for a random level the action mask allows (or no
change), drawn from a hash of the observation: the same observation gets the same plan, in
the env and in the controller alike, and across controller restarts. ``FixedPlan`` asks the
same signed levels every tick. ``python -m tests.plan_policies <scripts/controller.py
arguments>`` runs the controller script with ``--policy random-plans`` resolving to
``RandomPlans`` (the crash test drives it so).
"""

from __future__ import annotations

import sys
import zlib

import numpy as np

from shift_rl.scenario import ScenarioParams


class RandomPlans:
    """A random valid plan per tick (see the module docstring); ``rate``: the share of
    (module, kind) entries that ask for something."""

    name = "random-plans"

    def __init__(self, params: ScenarioParams, rate: float = 0.7, salt: int = 0) -> None:
        assert params.config.action.mode == "plan", "RandomPlans makes plan actions"
        self.k = len(params.amount_levels)
        self.n = params.num_modules * params.num_resources
        self.rate, self.salt = rate, salt

    def reset(self) -> None:
        pass

    def act(self, observation: np.ndarray, action_mask: np.ndarray | None = None) -> np.ndarray:
        data = np.ascontiguousarray(observation, dtype=np.float32).tobytes()
        rng = np.random.default_rng([zlib.crc32(data), self.salt])
        width = 2 * self.k + 1
        mask = (
            np.ones((self.n, width), dtype=bool)
            if action_mask is None
            else np.asarray(action_mask, dtype=bool).reshape(self.n, width)
        )
        action = np.full(self.n, self.k, dtype=np.int64)
        for i in range(self.n):
            if rng.random() < self.rate:
                action[i] = rng.choice(np.flatnonzero(mask[i]))
        return action


class FixedPlan:
    """The same plan every tick: ``levels`` maps a module to a signed level index (``-j``
    offers ``amount_levels[j-1]`` units of kind 0, ``+j`` asks for them)."""

    name = "fixed-plan"

    def __init__(self, params: ScenarioParams, levels: dict[int, int]) -> None:
        k, r = len(params.amount_levels), params.num_resources
        self.action = np.full(params.num_modules * r, k, dtype=np.int64)
        for m, j in levels.items():
            self.action[m * r] = k + j

    def reset(self) -> None:
        pass

    def act(self, observation: np.ndarray, action_mask: np.ndarray | None = None) -> np.ndarray:
        return self.action.copy()


def main(argv: list[str] | None = None) -> int:
    import scripts.controller as cli

    resolve = cli.resolve_policy

    def resolve_policy(name: str, params: ScenarioParams):
        return RandomPlans(params) if name == "random-plans" else resolve(name, params)

    cli.resolve_policy = resolve_policy
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
