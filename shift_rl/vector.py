"""The natively batched env: ``num_envs`` control planes stepped together in numpy/numba.

A thin shell around :class:`~shift_rl.plane.PlaneBatch`, like the single env, so the two run
the same code and give bit-for-bit the same trajectories for the same seeds (checked in
``tests/test_vector.py``).
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from shift_rl.config import ScenarioConfig, load_scenario
from shift_rl.env import EnvResetNeeded, action_meaning, check_actions
from shift_rl.plane import PlaneBatch
from shift_rl.seeds import draw_episode_seed

MAX_BATCH_BYTES = 16 * 2**30
"""Most memory the episode arrays of one batch may take (checked before allocating)."""


def with_masks(info: dict[str, Any], mask: np.ndarray) -> dict[str, Any]:
    """Gymnasium vector info: each (B, ...) array with its ``_key`` mask of the rows that
    report it; the other rows are zeroed, as :class:`gymnasium.vector.SyncVectorEnv` leaves
    them. Modifies the arrays of ``info`` in place (they must be fresh)."""
    out: dict[str, Any] = {}
    absent = ~mask
    partial = bool(absent.any())
    for key, value in info.items():
        if isinstance(value, dict):
            out[key] = with_masks(value, mask)
        else:
            if partial:
                value[absent] = 0
            out[key] = value
        out[f"_{key}"] = mask.copy()
    return out


class ResourceShiftVectorEnv(VectorEnv):
    """
    ## Description

    ``num_envs`` copies of :class:`~shift_rl.env.ResourceShiftEnv` (see its docstring for
    the dynamics, spaces, reward and info) stepped together: one
    :class:`~shift_rl.plane.PlaneBatch` holds every env's state in arrays with a leading env
    axis, and each tick runs once for the whole batch in compiled kernels.

    ## Spaces

    ``single_observation_space`` and ``single_action_space`` are the single env's;
    ``observation_space`` is their batch ``Box((num_envs, D), float32)`` and
    ``action_space`` ``MultiDiscrete`` of shape ``(num_envs, len(nvec))``. ``action_masks()``
    gives ``(num_envs, sum(nvec))`` booleans, one flat per-dimension mask per env.

    ## Seeding

    As Gymnasium's vector envs: ``reset(seed=s)`` seeds env ``i`` with ``s + i`` (or
    ``seed=[s_0, ..., s_{n-1}]``, ``None`` entries leaving an env's generator as it is), and
    each env draws its episode seeds from its own generator exactly as the single env does.
    So env ``i`` plays the episodes of ``ResourceShiftEnv`` reset with ``s + i``: same
    observations, rewards, truncations and infos, bit for bit, for the same actions.

    ## Autoreset

    ``metadata["autoreset_mode"]`` is ``AutoresetMode.NEXT_STEP``: the step after an env's
    episode ended resets that env and ignores its action; it returns the new episode's first
    observation, reward 0, ``terminated = truncated = False`` and the reset's info
    (``episode_seed``). ``reset(options={"reset_mask": mask})`` resets only the masked envs.
    Actions are checked as the single env checks them, batched: ``(num_envs, 3)`` integers
    inside the space (rows being reset included), else ``ValueError``.
    ``terminated`` is always False (no terminal state); ``truncated`` at ``episode_ticks``.

    ## Info

    The single env's keys as Gymnasium vector infos: a dict of arrays with a leading env axis,
    each with a boolean ``_key`` array of the envs that report it (nested for
    ``reward_components``), as :class:`~gymnasium.vector.SyncVectorEnv` would build them.

    ## Memory

    Each env keeps its episode's exogenous inputs (demand, slow-downs, telemetry gaps, report
    noise, unit failures) for ``X = history_ticks + episode_ticks + 33`` ticks: about
    ``X * (25 M + 16 R)`` bytes per env (~135 kB on ``default``, 1.3 MB on ``large``, so
    5.4 GB for 4096 envs of ``large``); a batch that would keep more than 16 GiB is refused
    with a ``ValueError`` before anything is allocated.

    ## Arguments

    ``gymnasium.make_vec("shift_rl/ResourceShift-v0", num_envs=N, scenario="default")``
    (the registered ``vector_entry_point``) or ``ResourceShiftVectorEnv(N, scenario)``:
    ``scenario`` is a name in ``configs/scenarios``, a YAML path or a
    :class:`~shift_rl.config.ScenarioConfig`.

    ## Version History

    * v0: initial version.
    """

    metadata: ClassVar[dict[str, Any]] = {
        "render_modes": [],
        "autoreset_mode": AutoresetMode.NEXT_STEP,
    }

    def __init__(
        self,
        num_envs: int = 1,
        scenario: str | os.PathLike | ScenarioConfig = "default",
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None:
            raise ValueError(f"render_mode {render_mode!r} not supported by the vector env")
        if isinstance(num_envs, bool) or not isinstance(num_envs, int | np.integer) or num_envs < 1:
            raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        self.num_envs = int(num_envs)
        self.render_mode = render_mode
        self.scenario = load_scenario(scenario)
        cfg = self.scenario
        ticks = cfg.forecast.history_ticks + cfg.episode_ticks + 33
        need = self.num_envs * ticks * (25 * len(cfg.modules) + 16 * len(cfg.resources))
        if need > MAX_BATCH_BYTES:
            raise ValueError(
                f"num_envs={self.num_envs} envs of scenario {cfg.name!r} would keep "
                f"~{need / 2**30:.1f} GiB of episode arrays (see Memory), above the "
                f"{MAX_BATCH_BYTES // 2**30} GiB allowed: use fewer envs"
            )
        self.plane = PlaneBatch(self.scenario, num_envs=self.num_envs)
        self.params = self.plane.params
        self.single_observation_space = self.plane.core.builder.space
        self.single_action_space = gym.spaces.MultiDiscrete(self.plane.core.guard.action_nvec)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.observation_names = self.plane.core.builder.names
        self.module_names = [m.name for m in self.scenario.modules]
        self._rngs: list[np.random.Generator | None] = [None] * self.num_envs
        self._restart = np.zeros(self.num_envs, dtype=bool)  # ended last step: reset next step
        self._started = False
        self._nvec = np.asarray(self.single_action_space.nvec, dtype=np.int64)

    def reset(
        self,
        *,
        seed: int | list[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        n = self.num_envs
        if seed is None:
            seeds: list[int | None] = [None] * n
        elif isinstance(seed, int | np.integer):
            super().reset(seed=int(seed))
            seeds = [int(seed) + i for i in range(n)]
        else:
            seeds = [None if s is None else int(s) for s in seed]
            if len(seeds) != n:
                raise ValueError(f"seed list of length {len(seeds)}; expected num_envs={n}")
        mask = np.ones(n, dtype=bool)
        if options is not None and "reset_mask" in options:
            mask = options["reset_mask"]
            if not isinstance(mask, np.ndarray) or mask.shape != (n,) or mask.dtype != np.bool_:
                raise ValueError(f"options['reset_mask'] must be a bool array of shape ({n},)")
            if not mask.any():
                raise ValueError("options['reset_mask'] must select at least one env")
            if not self._started and not mask.all():
                raise ValueError("the first reset must reset every env")
        rows = np.flatnonzero(mask)
        for i in rows:
            if seeds[i] is not None or self._rngs[i] is None:
                self._rngs[i] = seeding.np_random(seeds[i])[0]
        obs, info = self._start(rows)
        self._restart[rows] = False
        self._started = True
        return obs, with_masks(info, mask)

    def _start(self, rows: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        """New episodes in ``rows``: (observations of the batch, reset info of every env)."""
        episode_seeds = [draw_episode_seed(self._rngs[i]) for i in rows]  # type: ignore[arg-type]
        everyone = rows.size == self.num_envs
        obs = self.plane.reset(episode_seeds, None if everyone else rows)
        seed_arr = np.zeros(self.num_envs, dtype=np.int64)
        seed_arr[rows] = episode_seeds
        return obs, {"episode_seed": seed_arr, **self.plane.metrics()}

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if not self._started:
            raise EnvResetNeeded("step() called before reset(): call reset() first")
        n = self.num_envs
        actions = check_actions(
            actions,
            self._nvec,
            (n, self._nvec.shape[0]),
            action_meaning(self.plane.core.guard.plan_mode),
        )
        restart = self._restart
        terminated = np.zeros(n, dtype=bool)
        if restart.all():  # every episode ended: the whole step is a reset
            obs, info = self._start(np.arange(n))
            rewards = np.zeros(n)
            truncated = np.zeros(n, dtype=bool)
            info = with_masks(info, restart.copy())
        else:
            res = self.plane.step(actions)
            step_info = self.plane.step_info(res)
            obs, rewards, truncated = res.obs, res.reward.copy(), res.truncated.copy()
            stepped = ~restart
            if restart.any():
                rows = np.flatnonzero(restart)
                obs, reset_info = self._start(rows)
                rewards[rows] = 0.0
                truncated[rows] = False
                # the metrics of every env are current after the restart; the step's own
                # parts belong to the envs that stepped, the seed to those that restarted
                parts = {k: v for k, v in step_info.items() if k not in reset_info}
                metrics = {k: v for k, v in reset_info.items() if k != "episode_seed"}
                info = {
                    **with_masks(parts, stepped),
                    **with_masks({"episode_seed": reset_info["episode_seed"]}, restart.copy()),
                    **with_masks(metrics, np.ones(n, dtype=bool)),
                }
            else:
                info = with_masks(step_info, stepped)
        self._restart = terminated | truncated
        return obs, rewards, terminated, truncated, info

    def action_masks(self) -> np.ndarray:
        """(num_envs, sum(nvec)) flat per-dimension masks (see the single env's)."""
        return self.plane.action_masks().copy()
