"""The envs training sees: scenario variants, reproducible episode seeds, the regret reward.

:class:`TrainingEnv` is one env as SB3 trains on it (``DummyVecEnv`` / ``SubprocVecEnv`` run
copies of it); :class:`BatchedTrainingEnv` is ``n`` of them in one
:class:`~shift_rl.plane.PlaneBatch`, bit for bit the same trajectories.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvStepReturn

from shift_rl.agents import oracle_goal
from shift_rl.config import RandomizationConfig, ScenarioConfig, TrainConfig, scenario_from_dict
from shift_rl.env import ResourceShiftEnv
from shift_rl.plane import PlaneBatch, row_info
from shift_rl.seeds import TRAIN_SEED_BASE, draw_episode_seed


def make_variants(base: ScenarioConfig, rc: RandomizationConfig, seed: int) -> list[ScenarioConfig]:
    """``rc.variants`` randomized copies of ``base`` (just ``[base]`` when 0).

    Demand levels, peak hours, daily swings and fault rates change; modules, pool, rails and
    scheduled events stay, so every variant has the same spaces.
    """
    if rc.variants == 0:
        return [base]
    rng = np.random.default_rng([seed, 7])
    out = []
    for v in range(rc.variants):
        data = base.model_dump(mode="json")
        data["name"] = f"{base.name}-variant{v}"
        for mod in data["modules"]:
            d = mod.get("demand")
            if d is None:
                continue
            d["base"] *= float(rng.uniform(*rc.demand_scale))
            di = d["diurnal"]
            di["peak_hour"] = float(
                (di["peak_hour"] + rng.uniform(-1, 1) * rc.peak_shift_hours) % 24
            )
            di["amplitude"] = float(min(1.0, di["amplitude"] * rng.uniform(*rc.amplitude_scale)))
        scale = float(rng.uniform(*rc.fault_rate_scale))
        for fault in data["faults"].values():
            fault["rate_per_day"] *= scale
        # a variant scaled out of a field's range is a ConfigError naming it, not a traceback
        out.append(scenario_from_dict(data, f"variant {v} of {base.name!r} (randomization.*)"))
    return out


def episode_plan(base_seed: int, episode: int, num_variants: int) -> tuple[int, int]:
    """(seed, variant) of a training env's episode ``episode``: a function of the env's base
    seed and the episode count alone, so a resumed run replays the same episodes."""
    ss = np.random.SeedSequence([base_seed, episode])
    seed, pick = ss.generate_state(2, dtype=np.uint64)
    return TRAIN_SEED_BASE + int(seed % (2**40)), int(pick % num_variants)


class TrainingEnv(gym.Env):
    """The env as training sees it: variants, reproducible episode seeds, regret reward.

    Episode ``k`` of this env plays the variant and seed that :func:`episode_plan` derives
    from (base seed, k) alone; ``reset(seed=s)`` re-bases the seeds on ``s`` but keeps the
    episode count, so a resumed run replays the same episodes. With ``regret=True`` the reward
    is the env's reward minus the oracle bound of the same tick: it depends on the demand
    alone, not on the actions, so the best policy is unchanged and much of the noise of the
    demand leaves the learning signal. ``info["episode"]`` carries the env's own return.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012

    def __init__(
        self, variants: list[ScenarioConfig], base_seed: int, start_episode: int = 0,
        regret: bool = True,
    ) -> None:  # fmt: skip
        self.envs = [ResourceShiftEnv(v) for v in variants]
        self.env = self.envs[0]
        self.observation_space = self.env.observation_space
        self.action_space = self.env.action_space
        self.base_seed = base_seed
        self.episode = start_episode
        self.regret = regret
        self._bound = np.zeros(0)
        self._ret = 0.0
        self._len = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):  # type: ignore[override]
        if seed is not None:
            self.base_seed = int(seed)
        episode_seed, pick = episode_plan(self.base_seed, self.episode, len(self.envs))
        self.episode += 1
        self.env = self.envs[pick]
        obs, info = self.env.reset(seed=episode_seed)
        if self.regret:
            self._bound = oracle_goal(self.env.params, self.env.plane.sim)
        self._ret, self._len = 0.0, 0
        return obs, info

    def step(self, action):  # type: ignore[override]
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._ret += reward
        self._len += 1
        if self.regret:
            reward -= self._bound[info["tick"] - 1]
        if terminated or truncated:
            info["episode"] = {"r": self._ret, "l": self._len, "t": 0.0}
        return obs, reward, terminated, truncated, info

    def action_masks(self) -> np.ndarray:
        return self.env.action_masks()


def start_episodes(
    plane: PlaneBatch,
    num_variants: int,
    base_seed: np.ndarray,
    episode: np.ndarray,
    rows: np.ndarray,
    local: np.ndarray,
    bound: np.ndarray | None,
) -> tuple[np.ndarray, list[int], list[int]]:
    """Next episodes of training envs ``rows`` (rows ``local`` of ``plane``): each env's
    (seed, variant) from :func:`episode_plan` (its ``episode`` count advanced), its episode
    seed drawn as ``ResourceShiftEnv.reset(seed=s)`` draws it, the plane reset, and with
    ``bound`` the oracle bound of every new episode written into ``bound[local]``. Returns
    the plane's observations, the episode seeds and the variants."""
    plans = [episode_plan(base_seed[i], int(episode[i]), num_variants) for i in rows]
    episode[rows] += 1
    seeds = [draw_episode_seed(seeding.np_random(s)[0]) for s, _ in plans]
    picks = [v for _, v in plans]
    everyone = local.size == plane.num_envs
    obs = plane.reset(seeds, None if everyone else local, variants=picks)
    if bound is not None:
        for j, v in zip(local, picks, strict=True):
            bound[j] = oracle_goal(plane.variant_params[v], plane.sim, int(j))
    return obs, seeds, picks


class InProcessVecEnv(VecEnv):
    """What SB3 asks of a VecEnv whose envs are rows of batches in this process: per-env
    seeds and episode counters (``base_seed``, ``episode``, ``variant`` arrays of the
    subclass), ``action_masks`` per env, nothing to close."""

    _PER_ENV = ("base_seed", "episode", "variant")

    def close(self) -> None:
        """Nothing to release: the batches live in this process."""

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """Per-env values of ``base_seed``, ``episode``, ``variant``; any other attribute of
        the batch (e.g. ``action_masks``, ``render_mode``) once per env."""
        value = getattr(self, attr_name)
        rows = self._get_indices(indices)
        if attr_name in self._PER_ENV:
            return [int(value[i]) for i in rows]
        return [value for _ in rows]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        if attr_name not in self._PER_ENV:
            raise AttributeError(f"only {self._PER_ENV} can be set per env, not {attr_name!r}")
        for i in self._get_indices(indices):
            getattr(self, attr_name)[i] = value

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **kwargs: Any
    ) -> list[Any]:
        """Only ``action_masks`` (one row per env): the envs share batches, not methods."""
        if method_name != "action_masks":
            raise AttributeError(f"{type(self).__name__} has no per-env method {method_name!r}")
        masks = self.action_masks()  # type: ignore[attr-defined]
        return [masks[i] for i in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]


class BatchedTrainingEnv(InProcessVecEnv):
    """``len(base_seeds)`` :class:`TrainingEnv` s in one :class:`~shift_rl.plane.PlaneBatch`:
    an SB3 ``VecEnv`` with the trajectories, rewards and dones of ``DummyVecEnv`` of
    ``TrainingEnv(variants, base_seeds[i], start_episode, regret)``, bit for bit.

    Env ``i``'s episode ``k`` plays variant and seed :func:`episode_plan` of
    ``(base_seeds[i], k)``; :meth:`seed` (SB3 seeds ``s + i``) re-bases the seeds at the next
    :meth:`reset` and keeps the episode counts. SB3's API: :meth:`reset` returns observations
    only; :meth:`step` returns ``(obs, rewards float32, dones, infos)`` and restarts finished
    envs at once, with ``infos[i]["terminal_observation"]``, ``infos[i]["TimeLimit.truncated"]``
    and ``infos[i]["episode"]`` (the env's own return, not the regret). ``env_method
    ("action_masks")`` gives one flat mask per env (MaskablePPO).

    ``full_info=True`` gives every env the info dict of ``TrainingEnv`` (one dict per env
    and step: slow at large batches); by default infos hold only what SB3 reads (above) and
    ``reset_infos[i]`` only ``episode_seed``.
    """

    def __init__(
        self,
        variants: list[ScenarioConfig],
        base_seeds: list[int],
        start_episode: int = 0,
        regret: bool = True,
        full_info: bool = False,
    ) -> None:
        n = len(base_seeds)
        self.plane = PlaneBatch(variants[0], n, variants=variants)
        self.num_variants = len(variants)
        self.base_seed = [int(s) for s in base_seeds]
        self.episode = np.full(n, start_episode, dtype=np.int64)
        self.variant = np.zeros(n, dtype=np.int64)
        self.regret, self.full_info = regret, full_info
        self.render_mode = None
        self._rows = np.arange(n)
        self._bound = np.zeros((n, self.plane.params.episode_ticks))
        self._ret = np.zeros(n)
        self._len = np.zeros(n, dtype=np.int64)
        action_space = gym.spaces.MultiDiscrete(self.plane.core.guard.action_nvec)
        self._actions = np.zeros((n, len(action_space.nvec)), dtype=np.int64)
        super().__init__(n, self.plane.core.builder.space, action_space)

    def reset(self) -> np.ndarray:
        for i, s in enumerate(self._seeds):
            if s is not None:
                self.base_seed[i] = int(s)
        obs = self._start(self._rows)
        self._reset_seeds()
        self._reset_options()
        return obs

    def _start(self, rows: np.ndarray) -> np.ndarray:
        """Next episodes of ``rows``: draw, reset, oracle bound; the batch's observations."""
        bound = self._bound if self.regret else None
        obs, seeds, picks = start_episodes(
            self.plane, self.num_variants, self.base_seed, self.episode, rows, rows, bound
        )
        self.variant[rows] = picks
        self._ret[rows] = 0.0
        self._len[rows] = 0
        if self.full_info:
            info = {"episode_seed": np.zeros(self.num_envs, dtype=np.int64),
                    **self.plane.metrics()}  # fmt: skip
            info["episode_seed"][rows] = seeds
            for i in rows:
                self.reset_infos[i] = row_info(info, int(i))
        else:
            for i, s in zip(rows, seeds, strict=True):
                self.reset_infos[i] = {"episode_seed": s}
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=np.int64).reshape(self.num_envs, -1)

    def step_wait(self) -> VecEnvStepReturn:
        res = self.plane.step(self._actions)
        self._ret += res.reward
        self._len += 1
        rewards = res.reward
        if self.regret:
            rewards = rewards - self._bound[self._rows, self.plane.sim.t - 1]
        dones = res.truncated.copy()  # never terminated: the plane runs forever
        if self.full_info:
            batch = self.plane.step_info(res)
            infos = [row_info(batch, i) for i in range(self.num_envs)]
            for info, done in zip(infos, dones.tolist(), strict=True):
                info["TimeLimit.truncated"] = done
        else:
            infos = [{"TimeLimit.truncated": done} for done in dones.tolist()]
        obs = res.obs
        if dones.any():
            rows = np.flatnonzero(dones)
            for i in rows:
                infos[i]["episode"] = {"r": float(self._ret[i]), "l": int(self._len[i]), "t": 0.0}
                infos[i]["terminal_observation"] = res.obs[i]
            obs = self._start(rows)
        return obs, rewards.astype(np.float32), dones, infos

    def action_masks(self) -> np.ndarray:
        """(n, sum(nvec)) flat per-dimension masks, one row per env."""
        return self.plane.action_masks().copy()


def make_vec_env(
    cfg: TrainConfig, variants: list[ScenarioConfig], start_episode: int = 0
) -> VecEnv:
    """The training envs: env ``i`` is ``TrainingEnv(variants, seed * 1000 + i, ...)``, run
    one by one (``dummy``), in subprocesses (``subproc``) or as one batch (``batched``)."""
    if cfg.vec_env == "batched":
        return BatchedTrainingEnv(
            variants,
            [cfg.seed * 1000 + i for i in range(cfg.n_envs)],
            start_episode,
            cfg.reward == "regret",
        )
    fns = [
        (
            lambda i=i: TrainingEnv(
                variants, cfg.seed * 1000 + i, start_episode, cfg.reward == "regret"
            )
        )
        for i in range(cfg.n_envs)
    ]
    if cfg.vec_env == "subproc":
        return SubprocVecEnv(fns, start_method="fork")
    return DummyVecEnv(fns)
