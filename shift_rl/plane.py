"""The env's batch: simulated control planes, each the control-plane core plus the simulator.

:class:`PlaneBatch` drives the tick of :mod:`shift_rl.core` (guard, forecaster, reputation,
observation, reward: the same object the runtime controller runs) against a
:class:`~shift_rl.sim.simulator.Simulator` that owns the resources and the truth. Both the
single env (a batch of one) and the batched env are thin shells around it. It also owns what
both report (:meth:`PlaneBatch.metrics`, :meth:`PlaneBatch.step_info`), so the shells cannot
drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from shift_rl.config import ScenarioConfig
from shift_rl.core import ControlCore
from shift_rl.safety import CLIPPED, INVALID
from shift_rl.scenario import ScenarioParams, layout_differences
from shift_rl.sim.simulator import Simulator


def row_info(info: dict[str, Any], row: int) -> dict[str, Any]:
    """One env's ``info`` out of a batch's: (B,) arrays become Python scalars, others that
    row (a view of a fresh array), nested dicts likewise."""
    out: dict[str, Any] = {}
    for key, value in info.items():
        if type(value) is dict:
            out[key] = row_info(value, row)
        elif value.ndim == 1:
            out[key] = value.item(row)
        else:
            out[key] = value[row]
    return out


@dataclass
class StepResult:
    """What one tick produced for every env of the batch (arrays with a leading env axis)."""

    obs: np.ndarray  # (B, D) float32
    reward: np.ndarray  # (B,)
    goal_attainment: np.ndarray  # (B,) value-weighted, true
    move_cost: np.ndarray  # (B,)
    rollback_cost: np.ndarray  # (B,)
    units_moved: np.ndarray  # (B,) incl. rollbacks
    rollbacks: np.ndarray  # (B,)
    invalid: np.ndarray  # (B,) bool: the plan asked for units and none moved
    clipped: np.ndarray  # (B,) bool: the plan was executed in part (limits, unmatched)
    shifts: np.ndarray  # (B, S, 4) executed (src, dst, kind, units), S = max(1, M // 2)
    num_shifts: np.ndarray  # (B,) int64: rows of ``shifts`` used, the rest are zeros
    units_failed: np.ndarray  # (B, R)
    truncated: np.ndarray  # (B,) bool: the episode reached its time limit


class PlaneBatch:
    """``num_envs`` control planes of one scenario, stepped together.

    ``variants`` (optional) are the scenarios rows play, one chosen per row and episode at
    :meth:`reset` by its index: they must share ``scenario``'s layout (modules, pool, rails,
    forecaster, rewards) and differ only in what the exogenous draws read (demand, fault
    settings), so one batch steps them all. Without ``variants``, every row plays
    ``scenario`` (variant 0).
    """

    def __init__(
        self,
        scenario: ScenarioConfig,
        num_envs: int = 1,
        variants: Sequence[ScenarioConfig] = (),
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.params = p = ScenarioParams.from_config(scenario)
        self.num_envs = num_envs
        for i, v in enumerate(variants):
            diff = layout_differences(scenario, v)
            if diff:
                raise ValueError(
                    f"variant {i} ({v.name!r}) differs from {scenario.name!r} in "
                    f"{', '.join(diff)}: variants may only change demand and fault settings"
                )
        self.variant_params = [ScenarioParams.from_config(v) for v in variants] or [p]
        self.sim = Simulator(p, num_envs)
        self.core = ControlCore(p, num_envs)
        self._width = len(self.core.guard.action_nvec)

    def reset(
        self,
        seeds: Sequence[int],
        rows: np.ndarray | None = None,
        variants: Sequence[int] | None = None,
    ) -> np.ndarray:
        """Start fresh episodes in ``rows`` (all when None), row ``rows[k]`` with exogenous seed
        ``seeds[k]`` and variant ``variants[k]`` (0 when None); returns the batch's
        observations (rows not reset keep theirs)."""
        params = None if variants is None else [self.variant_params[v] for v in variants]
        self.sim.reset(seeds, rows, params)
        return self.core.start(self.sim.observed_history(), self.sim.telemetry(), rows)

    def action_masks(self) -> np.ndarray:
        """(B, sum(nvec)) per-dimension masks; a buffer the next call overwrites."""
        return self.core.mask(self.sim.telemetry())

    def metrics(self, goal: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """What every reset and step reports per env (fresh (B, ...) arrays): the tick and the
        true goal attainment (``goal`` when a step already summed it), utilization, latency
        and errors, gaps and allocation."""
        sim = self.sim
        tel = sim.telemetry()
        if goal is None:
            goal = self.core.goal(sim.true_attainment)
        return {
            "tick": tel.tick.copy(),
            "goal_attainment": goal.copy(),
            "attainment": sim.true_attainment.copy(),
            "utilization": sim.truth[:, :, 0].copy(),
            "latency": sim.truth[:, :, 1].copy(),
            "error_rate": sim.truth[:, :, 2].copy(),
            "telemetry_missing": tel.missing.copy(),
            "alloc": tel.alloc.copy(),
        }

    def step_info(self, res: StepResult) -> dict[str, Any]:
        """The ``info`` of a step, batched: ``res``'s parts and :meth:`metrics` (call right
        after :meth:`step`). The single env reports row 0 of it (:func:`row_info`)."""
        return {
            "reward_components": {
                "goal_attainment": res.goal_attainment,
                "move_cost": res.move_cost,
                "rollback_cost": res.rollback_cost,
            },
            "shifts": res.shifts,
            "num_shifts": res.num_shifts,
            "units_moved": res.units_moved.astype(np.int64),
            "rollbacks": res.rollbacks.astype(np.int64),
            "invalid_action": res.invalid,
            "clipped": res.clipped,
            "units_failed": res.units_failed,
            **self.metrics(res.goal_attainment),
        }

    def step(self, actions: np.ndarray) -> StepResult:
        """One tick: clip and execute proposals, advance, judge, update forecasts, observe."""
        sim, core, n = self.sim, self.core, self.num_envs
        if actions.shape != (n, self._width):  # the kernels do not check bounds
            raise ValueError(f"actions of shape {actions.shape}; expected {(n, self._width)}")
        tel = sim.telemetry()  # live views: they show each stage's state as the tick runs
        env, src, dst, kind, units, status = core.plan(tel, actions)
        moved = sim.shift(env, src, dst, kind, units)
        core.register(tel, env, src, dst, kind, moved)
        shifts, num_shifts, units_moved = self._executed(env, src, dst, kind, moved)
        invalid, clipped = status == INVALID, status == CLIPPED  # (status: the guard's buffer)
        sim.step()
        rb_env, rb_src, rb_dst, rb_kind, rb_units = core.judge(tel)
        rollbacks = np.zeros(n)
        if rb_env.size:
            rb_moved = sim.shift(rb_env, rb_src, rb_dst, rb_kind, rb_units)
            np.add.at(units_moved, rb_env, rb_moved)
            np.add.at(rollbacks, rb_env, 1.0)
        obs = core.observe(tel)
        goal = core.goal(sim.true_attainment)
        reward, move_cost, rollback_cost = core.reward(goal, units_moved, rollbacks)
        return StepResult(
            obs=obs,
            reward=reward,
            goal_attainment=goal,
            move_cost=move_cost,
            rollback_cost=rollback_cost,
            units_moved=units_moved,
            rollbacks=rollbacks,
            invalid=invalid,
            clipped=clipped,
            shifts=shifts,
            num_shifts=num_shifts,
            units_failed=sim.lost.copy(),
            truncated=tel.tick >= self.params.episode_ticks,
        )

    def _executed(self, env, src, dst, kind, moved) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A plan's shifts as fresh (B, S, 4) rows per env, their count and units moved."""
        n = self.num_envs
        out = np.zeros((n, max(1, self.params.num_modules // 2), 4), dtype=np.int64)
        num, units = np.zeros(n, dtype=np.int64), np.zeros(n)
        _pack(env, src, dst, kind, moved, out, num, units)
        return out, num, units


@numba.njit(cache=True)
def _pack(env, src, dst, kind, moved, out, num, units):  # pragma: no cover - compiled
    for i in range(env.shape[0]):
        b = env[i]
        j = num[b]
        out[b, j, 0], out[b, j, 1], out[b, j, 2], out[b, j, 3] = src[i], dst[i], kind[i], moved[i]
        num[b] = j + 1
        units[b] += moved[i]
