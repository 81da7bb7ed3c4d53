"""Library side of ``scripts/train.py``: PPO / MaskablePPO on the shift env, reproducibly.

A run trains on ``n_envs`` copies of the scenario (or of randomized variants of it), logs
to TensorBoard under ``runs/<run-name>/``, evaluates periodically on validation seeds next to
the tuned Potential baseline, checkpoints atomically, exports the policy and evaluates it
against the baselines on held-out seeds.

Seeds are kept apart: training episodes use seeds from ``TRAIN_SEED_BASE``, periodic
validation from ``VALIDATION_SEED_BASE``, and the final evaluation the small seeds
``evaluation.seed ..`` that every report in the project uses.

Resuming gives the same result as an uninterrupted run (on CPU): every env's episode ``k``
has a seed that depends only on (run seed, env index, k); rollouts hold whole episodes; and a
checkpoint taken at a rollout boundary stores the model with the torch, numpy and Python
random states, which are restored just before the next rollout.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import yaml
from gymnasium.utils import seeding
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvStepReturn

from shift_rl.agents import make_policy, oracle_goal
from shift_rl.config import (
    PROJECT_ROOT,
    ConfigError,
    RandomizationConfig,
    ScenarioConfig,
    TrainConfig,
    load_scenario,
)
from shift_rl.env import ResourceShiftEnv
from shift_rl.evaluate import EvaluationReport, evaluate, run_episode
from shift_rl.export import export_model
from shift_rl.machine import describe
from shift_rl.plane import PlaneBatch, draw_episode_seed, row_info
from shift_rl.safety import GuardSettings
from shift_rl.tuning import TRAIN_SEED_BASE

logger = logging.getLogger(__name__)

VALIDATION_SEED_BASE = 500_000
RUNS_DIR = PROJECT_ROOT / "runs"
AGENTS_DIR = PROJECT_ROOT / "agents"


# -- environments ---------------------------------------------------------------------------
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
        out.append(ScenarioConfig.model_validate(data))
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


class BatchedTrainingEnv(VecEnv):
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
        self._actions = np.zeros((n, 3), dtype=np.int64)
        action_space = gym.spaces.MultiDiscrete(self.plane.guard.action_nvec)
        super().__init__(n, self.plane.builder.space, action_space)

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
        plans = [
            episode_plan(self.base_seed[i], int(self.episode[i]), self.num_variants) for i in rows
        ]
        self.episode[rows] += 1
        # as ResourceShiftEnv.reset(seed=s) draws its episode seed
        seeds = [draw_episode_seed(seeding.np_random(s)[0]) for s, _ in plans]
        picks = [v for _, v in plans]
        everyone = rows.size == self.num_envs
        obs = self.plane.reset(seeds, None if everyone else rows, variants=picks)
        self.variant[rows] = picks
        if self.regret:
            for i, v in zip(rows, picks, strict=True):
                self._bound[i] = oracle_goal(self.plane.variant_params[v], self.plane.sim, int(i))
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
        self._actions = np.asarray(actions, dtype=np.int64).reshape(self.num_envs, 3)

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
        """(n, 2M + RK) flat per-dimension masks, one row per env."""
        return self.plane.action_masks().copy()

    def close(self) -> None:
        """Nothing to release: the batch lives in this process."""

    _PER_ENV = ("base_seed", "episode", "variant")

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
        """Only ``action_masks`` (one row per env): the envs share one batch, not methods."""
        if method_name != "action_masks":
            raise AttributeError(f"BatchedTrainingEnv has no per-env method {method_name!r}")
        masks = self.action_masks()
        return [masks[i] for i in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]


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


def algo_class(cfg: TrainConfig) -> type:
    if cfg.algo == "maskable_ppo":
        from sb3_contrib import MaskablePPO

        return MaskablePPO
    return PPO


def build_model(cfg: TrainConfig, venv: VecEnv, tb_dir: Path) -> Any:
    activation = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[cfg.network.activation]
    arch = list(cfg.network.net_arch)
    return algo_class(cfg)(
        "MlpPolicy",
        venv,
        **cfg.ppo.model_dump(),  # PPOConfig's fields are SB3's keyword names
        policy_kwargs={"net_arch": {"pi": arch, "vf": arch}, "activation_fn": activation},
        tensorboard_log=str(tb_dir),
        seed=cfg.seed,
        device="cpu",
        verbose=0,
    )


class SB3Policy:
    """An SB3 model behind the :class:`~shift_rl.agents.Policy` protocol (deterministic)."""

    name = "sb3"

    def __init__(self, model: Any) -> None:
        self.model = model
        self.masked = type(model).__name__ == "MaskablePPO"

    def reset(self) -> None:
        """The MLP policy is memoryless."""

    def act(self, observation: np.ndarray, action_mask: np.ndarray | None = None) -> np.ndarray:
        kwargs = {"action_masks": action_mask} if self.masked else {}
        action, _ = self.model.predict(observation, deterministic=True, **kwargs)
        return np.asarray(action, dtype=np.int64)


# -- callbacks ------------------------------------------------------------------------------
class PeriodicEvaluation(BaseCallback):
    """Every ``every`` steps: the policy on validation episodes next to Potential's numbers.

    Logs ``eval/policy/*`` and ``eval/potential/*`` (goal attainment, gap closed, units
    moved, rollbacks) so TensorBoard shows them side by side.
    """

    def __init__(self, scenario: ScenarioConfig, every: int, episodes: int) -> None:
        super().__init__()
        self.every, self.next_at = every, every
        self.env = ResourceShiftEnv(scenario)
        self.seeds = [VALIDATION_SEED_BASE + i for i in range(episodes)]
        self.reference: dict[str, np.ndarray] = {}
        self.potential: dict[str, float] = {}

    def _init_callback(self) -> None:
        env = self.env
        static, oracle = [], []
        for i, s in enumerate(self.seeds):
            static.append(run_episode(env, make_policy("static", env.params), "static", i, s).ret)
            env.reset(seed=s)
            oracle.append(float(oracle_goal(env.params, env.plane.sim).sum()))
        self.reference = {"static": np.array(static), "oracle": np.array(oracle)}
        self.potential = self._measure(make_policy("potential", self.env.params))
        self.next_at = (self.num_timesteps // self.every + 1) * self.every

    def _measure(self, policy: Any) -> dict[str, float]:
        res = [run_episode(self.env, policy, "p", i, s) for i, s in enumerate(self.seeds)]
        ret = np.array([r.ret for r in res])
        span = self.reference["oracle"] - self.reference["static"]
        return {
            "goal_attainment": float(np.mean([r.goal_attainment for r in res])),
            "gap_closed": float(np.mean((ret - self.reference["static"]) / span)),
            "return": float(ret.mean()),
            "units_moved": float(np.mean([r.units_moved for r in res])),
            "rollbacks": float(np.mean([r.rollbacks for r in res])),
        }

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.next_at:
            self.next_at += self.every
            mine = self._measure(SB3Policy(self.model))
            for key, value in mine.items():
                self.logger.record(f"eval/policy/{key}", value)
                self.logger.record(f"eval/potential/{key}", self.potential[key])
            logger.info("step %d: eval %s", self.num_timesteps, mine)
        return True


class Checkpointer(BaseCallback):
    """Atomic checkpoints at rollout starts whose step count is a multiple of ``every``.

    Each checkpoint folder holds ``model.zip`` (SB3's format: a trusted training artefact,
    not a policy to share; exports are the safe format), ``state.json`` and ``rng.npz``.
    On resume, ``restore`` holds the saved random states, applied before the first rollout.
    """

    def __init__(
        self, folder: Path, every: int, cfg: TrainConfig, restore: Path | None = None
    ) -> None:
        super().__init__()
        self.folder, self.every, self.cfg = folder, every, cfg
        self.restore = restore
        self.saved: list[Path] = []

    def _on_step(self) -> bool:
        return True

    def _on_rollout_start(self) -> None:
        if self.restore is not None:
            restore_rng(self.restore)
            self.restore = None
            return
        if self.num_timesteps > 0 and self.num_timesteps % self.every == 0:
            self.saved.append(save_checkpoint(self.model, self.folder, self.cfg))


def save_checkpoint(model: Any, folder: Path, cfg: TrainConfig) -> Path:
    """Write ``folder/step_<n>/`` atomically: model, config and random states."""
    final = folder / f"step_{model.num_timesteps:09d}"
    tmp = folder / f".tmp_{final.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save(tmp / "model.zip")
    np_state = np.random.get_state()  # noqa: NPY002 - SB3 draws from the global state
    np.savez(
        tmp / "rng.npz",
        torch=torch.get_rng_state().numpy(),
        numpy_keys=np_state[1],
        numpy_pos=np.array([np_state[2], np_state[3]]),
        numpy_gauss=np.array([np_state[4]]),
        python=np.array(random.getstate()[1], dtype=np.int64),
        python_gauss=np.array([random.getstate()[2] or np.nan]),
    )
    state = {"num_timesteps": int(model.num_timesteps), "config": cfg.model_dump(mode="json")}
    (tmp / "state.json").write_text(json.dumps(state, indent=2))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final


def restore_rng(checkpoint: Path) -> None:
    """Put back the torch, numpy (global, SB3's) and Python random states of a checkpoint."""
    with np.load(checkpoint / "rng.npz", allow_pickle=False) as z:
        torch.set_rng_state(torch.from_numpy(z["torch"].copy()))
        pos, gauss_has = (int(v) for v in z["numpy_pos"])
        gauss = float(z["numpy_gauss"][0])
        np.random.set_state(("MT19937", z["numpy_keys"], pos, gauss_has, gauss))  # noqa: NPY002
        g = float(z["python_gauss"][0])
        random.setstate((3, tuple(int(v) for v in z["python"]), None if np.isnan(g) else g))


# -- the run --------------------------------------------------------------------------------
@dataclass
class TrainResult:
    run_dir: Path
    export_dir: Path
    timesteps: int
    seconds: float
    steps_per_second: float
    report: EvaluationReport | None


def _git_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True,
            timeout=5, check=False,
        )  # fmt: skip
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def _command() -> str:
    """How this run was started, as a user would type it (the CLI's arguments)."""
    if sys.argv and sys.argv[0].endswith("train.py"):
        return " ".join(["python scripts/train.py", *sys.argv[1:]])
    return "python scripts/train.py --config <this config as YAML>"


def _machine() -> str:
    return f"{describe()}, torch {torch.__version__}"


def check_alignment(cfg: TrainConfig, scenario: ScenarioConfig) -> None:
    """Checkpoints and rollouts must fall on episode boundaries (see module docstring)."""
    ticks = scenario.episode_ticks
    if cfg.ppo.n_steps % ticks != 0:
        raise ConfigError(
            f"ppo.n_steps: {cfg.ppo.n_steps} must be a multiple of the scenario's "
            f"episode_ticks ({ticks}) so rollouts hold whole episodes"
        )
    rollout = cfg.ppo.n_steps * cfg.n_envs
    for field in ("checkpoint_every", "total_timesteps"):
        value = getattr(cfg, field)
        if value % rollout != 0:
            raise ConfigError(
                f"{field}: {value} must be a multiple of n_steps x n_envs = {rollout} "
                f"(e.g. {max(1, round(value / rollout)) * rollout})"
            )


def train(
    cfg: TrainConfig,
    out: Path | None = None,
    resume: Path | None = None,
    progress: bool = True,
    evaluate_at_end: bool = True,
) -> TrainResult:
    """Train, checkpoint, export to ``out`` (default ``agents/<run_name>``) and evaluate."""
    torch.set_num_threads(cfg.torch_threads)
    scenario = load_scenario(cfg.scenario)
    check_alignment(cfg, scenario)
    run_dir = RUNS_DIR / cfg.run_name
    ckpt_dir = run_dir / "checkpoints"
    export_dir = Path(out) if out is not None else AGENTS_DIR / cfg.run_name
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(
        yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
    )
    (run_dir / "command.txt").write_text(
        " ".join([sys.executable, *sys.argv]) + f"\ngit {_git_revision()}\n"
    )
    variants = make_variants(scenario, cfg.randomization, cfg.seed)
    done = 0
    if resume is not None:
        state = json.loads((resume / "state.json").read_text())
        done = int(state["num_timesteps"])
    per_episode = cfg.n_envs * scenario.episode_ticks
    venv = make_vec_env(cfg, variants, start_episode=done // per_episode)
    if resume is None:
        model = build_model(cfg, venv, run_dir / "tb")
    else:
        model = algo_class(cfg).load(resume / "model.zip", env=venv, device="cpu")
        model.tensorboard_log = str(run_dir / "tb")
    ev = cfg.evaluation
    callbacks = CallbackList([
        Checkpointer(ckpt_dir, cfg.checkpoint_every, cfg, restore=resume),
        PeriodicEvaluation(scenario, ev.every_timesteps, ev.episodes_during),
    ])  # fmt: skip
    remaining = cfg.total_timesteps - done
    started = time.perf_counter()
    if remaining > 0:
        model.learn(
            total_timesteps=remaining,
            callback=callbacks,
            progress_bar=progress,
            reset_num_timesteps=resume is None,
            tb_log_name="ppo",
        )
    seconds = time.perf_counter() - started
    venv.close()
    save_checkpoint(model, ckpt_dir, cfg)
    export_trained(model, cfg, scenario, export_dir)
    report = None
    if evaluate_at_end:
        report = evaluate([str(export_dir), *ev.baselines], scenario, ev.episodes, ev.seed)
    rate = max(remaining, 0) / max(seconds, 1e-9)
    result = TrainResult(run_dir, export_dir, int(model.num_timesteps), seconds, rate, report)
    write_model_card(result, cfg)
    return result


def export_trained(model: Any, cfg: TrainConfig, scenario: ScenarioConfig, out: Path) -> Path:
    """Export a trained model with everything a controller needs to trust and run it."""
    env = ResourceShiftEnv(scenario)
    return export_model(
        model,
        out,
        observation_names=env.observation_names,
        observation_low=env.observation_space.low,
        observation_high=env.observation_space.high,
        scenario={
            "name": scenario.name,
            "fingerprint": env.params.fingerprint(),
            "modules": env.module_names,
            "resources": scenario.resource_names,
        },
        guard=GuardSettings.from_params(env.params).to_json(),
        training={
            "run_name": cfg.run_name,
            "algo": cfg.algo,
            "seed": cfg.seed,
            "timesteps": int(model.num_timesteps),
            "config": cfg.model_dump(mode="json"),
            "git": _git_revision(),
        },
    )


def write_model_card(result: TrainResult, cfg: TrainConfig) -> None:
    """``README.md`` of the exported policy: what it is, how it was made, how it scores."""
    lines = [
        f"# {cfg.run_name}",
        "",
        f"A {cfg.algo} policy for the `{cfg.scenario}` scenario, exported as the shift "
        "algorithm (`policy.json` + `weights.npz`, loaded with "
        "`shift_rl.export.load_policy`, numpy only).",
        "",
        "| | |",
        "|---|---|",
        f"| algorithm | {cfg.algo} |",
        f"| seed | {cfg.seed} |",
        f"| timesteps | {result.timesteps:,} |",
        f"| wall time | {result.seconds / 60:.1f} min "
        f"({result.steps_per_second:,.0f} env steps/s) |",
        f"| machine | {_machine()} |",
        f"| git | {_git_revision()} |",
        "",
        f"Reproduce: `{_command()}` (resolved config below).",
        "",
    ]
    if result.report is not None:
        ev = cfg.evaluation
        lines += [
            f"## Evaluation ({ev.episodes} held-out episodes, seeds {ev.seed}.."
            f"{ev.seed + ev.episodes - 1}, paired)",
            "",
            result.report.markdown().replace(str(result.export_dir), cfg.run_name),
            "",
        ]
    lines += [
        "## Config",
        "",
        "```yaml",
        yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False).rstrip(),
        "```",
        "",
    ]
    (result.export_dir / "README.md").write_text("\n".join(lines))
