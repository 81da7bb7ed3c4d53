"""The Gymnasium environment: one control plane shifting pool units between its modules."""

from __future__ import annotations

import os
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium.error import ResetNeeded

from shift_rl.config import ConfigError, ScenarioConfig, load_scenario
from shift_rl.plane import PlaneBatch, StepResult, row_info
from shift_rl.seeds import draw_episode_seed

_ENV0 = np.zeros(1, dtype=np.int64)


class EnvResetNeeded(ResetNeeded, RuntimeError):
    """``step`` before ``reset`` or after the episode ended (Gymnasium's ``ResetNeeded``,
    also a ``RuntimeError``)."""


def action_meaning(plan_mode: bool) -> str:
    """What an action's entries are, for messages."""
    return "one level per module and kind" if plan_mode else "(source, target, level)"


def check_actions(
    actions: Any, nvec: np.ndarray, shape: tuple[int, ...], meaning: str = "integers"
) -> np.ndarray:
    """``actions`` as int64 of ``shape`` if every entry is an integer inside its MultiDiscrete
    range ``0 .. nvec - 1`` (last axis); else a ``ValueError`` saying what is wrong.

    Integer arrays pass as they are; a float array passes only when every value is a whole
    number (``[2.0, 1.0, 0.0]``), never by rounding or truncating (``[0.7, 1.2, 0]`` is an
    error, not the shift ``[0, 1, 0]``). Booleans, strings and objects are refused.
    """
    try:
        a = actions if isinstance(actions, np.ndarray) else np.asarray(actions)
    except (ValueError, TypeError) as err:  # ragged lists and the like
        raise ValueError(f"action {actions!r:.80} is not an array ({err})") from None
    expected = f"{nvec.shape[0]} integers {meaning}, entry i below nvec[i] of {nvec.tolist()}"
    if a.shape != shape:
        raise ValueError(f"action of shape {a.shape}; expected {shape}: {expected}")
    kind = a.dtype.kind
    if kind == "f":
        with np.errstate(invalid="ignore"):
            bad = ~(np.isfinite(a) & (a == np.floor(a)))
        if bad.any():
            raise ValueError(
                f"action {_shown(a, bad)} has non-integer entries; expected {expected} "
                "(floats are never rounded)"
            )
    elif kind not in "iu":
        raise ValueError(f"action {_shown(a)} of dtype {a.dtype}; expected {expected}")
    bad = (a < 0) | (a >= nvec)
    if bad.any():
        raise ValueError(
            f"action {_shown(a, bad)} is outside the action space MultiDiscrete"
            f"({nvec.tolist()}): each entry must be >= 0 and below its bound"
        )
    return a.astype(np.int64, copy=False)


def _shown(a: np.ndarray, bad: np.ndarray | None = None) -> str:
    """An action for a message: itself, or for a batch the first row at fault."""
    if a.ndim <= 1:
        return repr(a.tolist())
    row = 0 if bad is None else int(np.argwhere(bad)[0][0])
    return f"{a[row].tolist()!r} (row {row})"


class ResourceShiftEnv(gym.Env):
    """
    ## Description

    A control plane keeps a pool of resource units (one or more kinds, e.g. ``cpu``,
    ``mem``) shared by ``M`` modules (services). Every tick (one control interval, 60 s by
    default) the agent may shift units from one module to another. Each module's demand
    follows a synthetic pattern (daily and weekly cycles, noise, bursts, trend, regime
    changes) or a replayed real trace; an M/M/c queue per module turns demand and units
    into utilization, latency, dropped requests and **goal attainment** (share of demand
    served within the module's SLO). Shifted units warm up for ``warmup_ticks`` before they
    serve, so acting on a forecast beats reacting late. Every shift passes the
    :class:`~shift_rl.safety.SafetyGuard`: limits per shift, per tick and per module share,
    floors, a stabilization window that locks both modules, and automatic rollback of shifts
    that hurt.

    ## Action Space

    **Plan mode** (``action.mode: plan``, the default): a tick's action is a *plan*, one
    request per module and resource kind, ``MultiDiscrete([2K + 1] * (M * R))`` with entry
    ``m * R + r`` choosing the signed change in units of kind ``r`` that module ``m`` asks for:

    | level | meaning |
    |-------|---------|
    | ``0 .. K-1`` | offer ``amount_levels[K-1-level]`` units (give) |
    | ``K`` | no change |
    | ``K+1 .. 2K`` | ask for ``amount_levels[level-K-1]`` units (take) |

    The :class:`~shift_rl.safety.SafetyGuard` matches the requests into shifts (larger
    requests first, ties by attainment), each clipped to the limits (per shift, per tick
    budget, floor, share cap); a module takes part in at most one shift per tick (its
    stabilization lock applies to the rest of the plan), and unmatched requests are not
    executed. Every entry has the same meaning for every module, so one network shared
    across modules can produce the plan for any module count. ``action_masks()`` gives
    per-(module, kind) masks, ``2K + 1`` booleans each: offers up to the module's spare
    units, requests up to its room, nothing but "no change" while it is locked.

    **Single-shift mode** (``action.mode: shift``): ``MultiDiscrete([M, M, R * K])``,
    ``(source, target, kind * K + k)``: move ``amount_levels[k]`` units from the source to the
    target (equal modules: no shift). It is the two-module plan, matched the same way;
    ``action_masks()`` are per dimension (sources, targets, levels).

    In both modes, what a plan asks for is, per kind, the smaller of the units requested and
    the units offered (a request with no offer against it is simply not executed). A plan that
    asks for units and can move none is a no-op counted in ``info["invalid_action"]``; one
    executed in part (cut to the limits, or pairs stopped by locks or the budget) sets
    ``info["clipped"]``. An action that is not integers inside the space
    (a float like ``0.7``, a negative or too large index, another shape) raises
    ``ValueError``: it is never rounded or clipped.

    ## Observation Space

    ``Box`` of float32; per module ``m`` and kind ``r`` (shares of the pool of that kind):

    | feature | range | meaning |
    |---------|-------|---------|
    | ``m.alloc.r`` | [0, 1] | units serving |
    | ``m.incoming.r`` | [0, 1] | units warming up towards the module |
    | ``m.demand.r`` | [0, 2] | units the observed demand needs at the target utilization |
    | ``m.forecast.r`` | [0, 2] | same for the forecast ``warmup_ticks + 1`` ahead |
    | ``m.reported_need.r`` | [0, 2] | units the module itself says it needs |

    then per module: ``utilization``, ``latency`` (/ SLO / 4), ``error_rate``, ``attainment``,
    ``forecast_spread``, ``confidence``, ``reputation``, ``locked`` (window left),
    ``pending`` (awaiting judgement), ``missing`` (telemetry gap), ``value``, all in [0, 1];
    then ``time.sin``, ``time.cos`` of the time of day and, per kind, ``pool.free`` and
    ``pool.offline`` (failed units). Missing telemetry is 0 with ``missing = 1``, never NaN.
    ``env.unwrapped.observation_names`` names every index.

    ## Rewards

    Per tick: value-weighted goal attainment of all modules in [0, 1] minus
    ``cost_per_unit`` per unit moved (rollbacks included) minus ``cost_per_rollback`` per
    rollback. ``info["reward_components"]`` carries the three parts.

    ## Info

    After every reset and step: ``tick``, ``goal_attainment`` (true, value-weighted), per
    module the true ``attainment``, ``utilization``, ``latency``, ``error_rate``, and
    ``telemetry_missing``, ``alloc`` (M, R). Reset adds ``episode_seed``; step adds
    ``reward_components``, ``shifts`` (int64 ``(max(1, M // 2), 4)``: the first
    ``num_shifts`` rows are the shifts ``[src, dst, kind, units]`` executed, in plan order,
    the rest zeros; one shape every tick, as Gymnasium's vector envs need to stack infos:
    ``info["shifts"][: info["num_shifts"]]``), ``units_moved`` and ``rollbacks`` (ints),
    ``invalid_action``, ``clipped`` and ``units_failed`` (R,).
    :class:`~shift_rl.vector.ResourceShiftVectorEnv` reports the same, batched.

    ## Starting State

    The scenario's initial allocation; demand and faults are drawn from the episode seed, with
    ``history_ticks`` of demand fed to the forecaster before the first tick.

    ## Episode End

    No terminal state (the plane runs forever): ``terminated`` is always False; the episode
    is truncated after ``episode_ticks`` ticks. ``step`` before the first ``reset`` or after
    truncation raises ``EnvResetNeeded`` (a ``gymnasium.error.ResetNeeded`` and a
    ``RuntimeError``).

    ## Arguments

    ``gymnasium.make("shift_rl/ResourceShift-v0", scenario="default")``: ``scenario`` is a
    name in ``configs/scenarios``, a path to a YAML file or a
    :class:`~shift_rl.config.ScenarioConfig`; ``render_mode`` may be ``"ansi"``.

    ## Randomness

    ``reset(seed=s)`` seeds ``self.np_random``; each episode draws one seed from it and
    derives separate streams for demand, faults and report noise. Actions never touch those
    streams, so the same seed gives every policy the same demand and faults.

    ## Version History

    * v0: initial version.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        scenario: str | os.PathLike | ScenarioConfig = "default",
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode {render_mode!r} not supported; "
                f"allowed: {self.metadata['render_modes']}"
            )
        self.scenario = load_scenario(scenario)
        self.source = (
            str(scenario) if isinstance(scenario, str | os.PathLike) else repr(self.scenario.name)
        )
        """The scenario as given (its file or name): errors of an episode's draw name it."""
        self.render_mode = render_mode
        self.plane = PlaneBatch(self.scenario, num_envs=1)
        self.params = self.plane.params
        self.observation_space = self.plane.core.builder.space
        self.action_space = gym.spaces.MultiDiscrete(self.plane.core.guard.action_nvec)
        self.observation_names = self.plane.core.builder.names
        self.module_names = [m.name for m in self.scenario.modules]
        self._last: StepResult | None = None
        self._nvec = np.asarray(self.action_space.nvec, dtype=np.int64)
        self._meaning = action_meaning(self.plane.core.guard.plan_mode)
        self._needs_reset = True  # before the first reset and after truncation

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        episode_seed = draw_episode_seed(self.np_random)
        try:
            obs = self.plane.reset([episode_seed])
        except ConfigError as err:  # drawn demand or a trace window out of bounds
            raise ConfigError(f"scenario {self.source}: {err}") from None
        self._last = None
        self._needs_reset = False
        return obs[0], {"episode_seed": episode_seed, **row_info(self.plane.metrics(), 0)}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._needs_reset:
            raise EnvResetNeeded(
                "step() called before reset() or after the episode was truncated: call "
                "env.reset() to start an episode"
            )
        a = check_actions(action, self._nvec, self._nvec.shape, self._meaning)
        res = self.plane.step(a.reshape(1, -1))
        self._last = res
        info = row_info(self.plane.step_info(res), 0)
        truncated = bool(res.truncated[0])
        self._needs_reset = truncated
        return res.obs[0], float(res.reward[0]), False, truncated, info

    def action_masks(self) -> np.ndarray:
        """Flat per-dimension mask of bools (see Action Space): ``2K + 1`` per module and
        kind (plan mode), or ``[M sources | M targets | R*K levels]`` (single-shift)."""
        return self.plane.action_masks()[0].copy()

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        sim = self.plane.sim
        tel = sim.telemetry()
        kinds = [r.name for r in self.scenario.resources]
        lines = [
            f"tick {int(tel.tick[0])}/{self.params.episode_ticks}  hour {tel.hour[0]:5.2f}  "
            f"goal attainment {sim.true_attainment[0] @ self.params.value:.3f}",
            f"{'module':<14}" + "".join(f"{k + ' (+in)':>12}" for k in kinds)
            + f"{'demand':>10}{'util':>7}{'lat/SLO':>9}{'attain':>8}{'lock':>6}",
        ]  # fmt: skip
        lock = self.plane.core.guard.lock_remaining(tel.tick)[0]
        for m, name in enumerate(self.module_names):
            units = "".join(
                f"{int(tel.alloc[0, m, r]):>7} (+{int(tel.incoming[0, m, r])})"
                for r in range(len(kinds))
            )
            lat = tel.latency[0, m] / self.params.slo_seconds[m]
            lines.append(
                f"{name:<14}{units}{tel.demand[0, m]:>10.0f}{tel.utilization[0, m]:>7.2f}"
                f"{lat:>9.2f}{sim.true_attainment[0, m]:>8.3f}{lock[m]:>6.1f}"
            )
        if self._last is not None:
            n, names = int(self._last.num_shifts[0]), self.module_names
            done = [
                f"{u} units of {kinds[k]} from {names[s]} to {names[d]}"
                for s, d, k, u in self._last.shifts[0, :n].tolist()
            ]
            if done:
                last = "; ".join(done[:8]) + (f"; ... ({n} shifts)" if n > 8 else "")
            elif self._last.invalid[0]:
                last = "none (the guard could execute nothing of the plan)"
            else:
                last = "none (no shift proposed)"
            lines.append(f"last tick's shifts: {last}")
        return "\n".join(lines)
