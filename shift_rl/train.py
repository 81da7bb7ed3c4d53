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

import hashlib
import json
import logging
import math
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.vec_env import VecEnv

from shift_rl.agents import POLICIES, REFERENCES, make_policy, oracle_goal, resolve_policy
from shift_rl.config import (
    PROJECT_ROOT,
    ConfigError,
    ScenarioConfig,
    TrainConfig,
    load_scenario,
)
from shift_rl.env import ResourceShiftEnv
from shift_rl.evaluate import EvaluationReport, evaluate, gap_closed, run_episode
from shift_rl.export import export_model
from shift_rl.machine import describe
from shift_rl.runtime import PolicyFileError
from shift_rl.safety import GuardSettings
from shift_rl.seeds import VALIDATION_SEED_BASE
from shift_rl.torch_policy import ShiftActorCriticPolicy, ShiftMaskablePolicy
from shift_rl.training_envs import make_variants, make_vec_env

logger = logging.getLogger(__name__)

RUNS_DIR = PROJECT_ROOT / "runs"
AGENTS_DIR = PROJECT_ROOT / "agents"


def algo_class(cfg: TrainConfig) -> type:
    if cfg.algo == "maskable_ppo":
        from sb3_contrib import MaskablePPO

        return MaskablePPO
    return PPO


def build_model(cfg: TrainConfig, venv: VecEnv, tb_dir: Path) -> Any:
    activation = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[cfg.network.activation]
    arch = list(cfg.network.net_arch)
    # SB3's / sb3-contrib's MlpPolicy with a faster distribution and rollouts (torch_policy)
    policy = ShiftActorCriticPolicy if cfg.algo == "ppo" else ShiftMaskablePolicy
    return algo_class(cfg)(
        policy,
        venv,
        **cfg.ppo.model_dump(),  # PPOConfig's fields are SB3's keyword names
        policy_kwargs={
            "net_arch": {"pi": arch, "vf": arch},
            "activation_fn": activation,
            # SB3's Adam (eps 1e-5 is its default for PPO) as one fused kernel: the same
            # update, about 10 % less time per gradient step on the CPU
            "optimizer_kwargs": {"eps": 1e-5, "fused": True},
        },
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
        ref = self.reference
        gap = gap_closed(ret, ref["static"], ref["oracle"], self.env.params.episode_ticks)
        return {
            "goal_attainment": float(np.mean([r.goal_attainment for r in res])),
            # NaN (TensorBoard leaves a hole) where static already reaches the bound
            "gap_closed": float(np.nanmean(gap)) if np.isfinite(gap).any() else math.nan,
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
    not a policy to share; exports are the safe format), ``state.json`` and ``rng.npz``; their
    sha256 go to the checkpoints folder's ``manifest.json`` (:func:`load_checkpoint`).
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


MANIFEST = "manifest.json"
"""In a run's checkpoints folder: the sha256 of every file of every checkpoint the run wrote."""
CHECKPOINT_FILES = ("model.zip", "state.json", "rng.npz")


class UntrustedCheckpoint(ConfigError):
    """A checkpoint that is not one its run's manifest lists, unchanged: it is not loaded."""


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_manifest(folder: Path) -> dict[str, dict[str, str]]:
    path = folder / MANIFEST
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_bytes()[: 64 * 2**20])
        entries = data["checkpoints"]
        assert isinstance(entries, dict)
        return {str(k): dict(v) for k, v in entries.items()}
    except (OSError, ValueError, KeyError, TypeError, AssertionError) as err:
        raise UntrustedCheckpoint(f"{path}: unreadable checkpoint manifest ({err!r})") from None


def _record(folder: Path, name: str, hashes: dict[str, str]) -> None:
    entries = _read_manifest(folder)
    entries[name] = hashes
    tmp = folder / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps({"format": 1, "checkpoints": entries}, indent=2, sort_keys=True))
    os.replace(tmp, folder / MANIFEST)


def verify_checkpoint(ckpt: Path) -> None:
    """Refuse a checkpoint folder unless its run's manifest (``../manifest.json``, written by
    :func:`save_checkpoint`) lists each of its files with the sha256 it has now.

    ``model.zip`` is SB3's pickle-based format: loading it runs whatever code it holds. So
    only checkpoints this project's training wrote, unchanged since, are loaded; a
    ``model.zip`` from anywhere else is refused before it is opened.
    """
    ckpt = Path(ckpt)
    manifest = ckpt.parent / MANIFEST
    listed = _read_manifest(ckpt.parent).get(ckpt.name)
    problem = None
    if listed is None:
        problem = f"is not listed in {manifest}"
    else:
        for name in CHECKPOINT_FILES:
            file = ckpt / name
            if not file.is_file():
                problem = f"has no {name}"
            elif listed.get(name) != _file_sha256(file):
                problem = f"has a {name} whose sha256 is not the one {manifest} records"
            if problem:
                break
    if problem:
        raise UntrustedCheckpoint(
            f"checkpoint {str(ckpt)!r} {problem}: model.zip is SB3's pickle-based format and "
            "runs code when loaded, so only checkpoints written by this project's training "
            "(listed with their sha256 in the manifest next to them) are loaded; retrain, or "
            "export from the run folder that wrote it"
        )


def load_checkpoint(cfg: TrainConfig, ckpt: Path, env: VecEnv | None = None) -> Any:
    """The SB3 model of a checkpoint, after :func:`verify_checkpoint`."""
    verify_checkpoint(ckpt)
    return algo_class(cfg).load(Path(ckpt) / "model.zip", env=env, device="cpu")


def save_checkpoint(model: Any, folder: Path, cfg: TrainConfig) -> Path:
    """Write ``folder/step_<n>/`` atomically: model, config and random states, and record
    their sha256 in ``folder/manifest.json`` (what :func:`load_checkpoint` trusts)."""
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
    hashes = {name: _file_sha256(tmp / name) for name in CHECKPOINT_FILES}
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    _record(folder, final.name, hashes)
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


def _where(cfg: TrainConfig) -> str:
    return f"invalid training config for run {cfg.run_name!r} (scenario {cfg.scenario!r}): "


def check_alignment(cfg: TrainConfig, scenario: ScenarioConfig) -> None:
    """Checkpoints and rollouts must fall on episode boundaries (see module docstring)."""
    ticks = scenario.episode_ticks
    where = _where(cfg)
    if cfg.ppo.n_steps % ticks != 0:
        raise ConfigError(
            f"{where}ppo.n_steps: {cfg.ppo.n_steps} must be a multiple of the scenario's "
            f"episode_ticks ({ticks}) so rollouts hold whole episodes"
        )
    rollout = cfg.ppo.n_steps * cfg.n_envs
    for field in ("checkpoint_every", "total_timesteps"):
        value = getattr(cfg, field)
        if value % rollout != 0:
            raise ConfigError(
                f"{where}{field}: {value} must be a multiple of n_steps x n_envs = {rollout} "
                f"(e.g. {max(1, round(value / rollout)) * rollout})"
            )


MAX_ROLLOUT_BYTES = 4 * 2**30
"""Most memory one rollout buffer may take (observations, actions, values, masks)."""


def check_inputs(cfg: TrainConfig, scenario: ScenarioConfig) -> None:
    """Everything a run needs that the config alone cannot tell, checked before it trains: the
    rollout buffer fits in memory and every baseline folder loads for this scenario."""
    env = ResourceShiftEnv(scenario)
    obs_dim = int(env.observation_space.shape[0])
    per_sample = 4 * (obs_dim + 2 * int(env.action_space.nvec.sum()) + 8)
    need = cfg.ppo.n_steps * cfg.n_envs * per_sample
    if need > MAX_ROLLOUT_BYTES:
        raise ConfigError(
            f"{_where(cfg)}ppo.n_steps: a rollout of n_steps x n_envs = "
            f"{cfg.ppo.n_steps * cfg.n_envs:,} samples of {obs_dim} observations takes "
            f"~{need / 2**30:.1f} GiB, above the "
            f"{MAX_ROLLOUT_BYTES // 2**30} GiB allowed"
        )
    for name in cfg.evaluation.baselines:
        if name not in POLICIES and name not in REFERENCES:
            try:
                resolve_policy(name, env.params)
            except PolicyFileError as err:
                raise ConfigError(f"{_where(cfg)}evaluation.baselines: {err}") from None


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
    check_inputs(cfg, scenario)
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
        verify_checkpoint(resume)
        state = json.loads((resume / "state.json").read_text())
        done = int(state["num_timesteps"])
    per_episode = cfg.n_envs * scenario.episode_ticks
    venv = make_vec_env(cfg, variants, start_episode=done // per_episode)
    if resume is None:
        model = build_model(cfg, venv, run_dir / "tb")
    else:
        model = load_checkpoint(cfg, resume, env=venv)
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
        "`shift_rl.runtime.load_policy`, numpy only).",
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
