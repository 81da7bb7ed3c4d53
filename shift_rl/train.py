"""Library side of ``scripts/train.py``: PPO / MaskablePPO on the shift env, reproducibly.

A run trains on ``n_envs`` copies of the scenario (or of randomized variants of it), logs
to TensorBoard, evaluates periodically on validation seeds next to the tuned Potential
baseline, checkpoints atomically, exports the policy and evaluates it against the baselines
on held-out seeds. Everything goes into one run folder (``runs/<run-name>/`` or ``--out``;
see :func:`train`); the shipped releases in ``agents/`` are never written by a run.

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
import math
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
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
from shift_rl.evaluate import EvaluationReport, evaluate, ratio_of_means, run_episode
from shift_rl.export import export_model
from shift_rl.machine import describe
from shift_rl.observation import ADDED_FEATURES, feature_layout
from shift_rl.runtime import PolicyFileError, file_sha256
from shift_rl.safety import GuardSettings
from shift_rl.seeds import TRAIN_SEED_BASE, VALIDATION_SEED_BASE
from shift_rl.torch_policy import SelectColumns, ShiftActorCriticPolicy, ShiftMaskablePolicy
from shift_rl.training_envs import make_variants, make_vec_env

logger = logging.getLogger(__name__)

RUNS_DIR = PROJECT_ROOT / "runs"


def algo_class(cfg: TrainConfig) -> type:
    if cfg.algo == "maskable_ppo":
        from sb3_contrib import MaskablePPO

        return MaskablePPO
    return PPO


def mlp_columns(names: list[str]) -> list[int]:
    """The observation's columns an MLP policy reads: all but the ``ADDED_FEATURES``, which are
    constant over the one layout an MLP runs on (so its inputs, and a seeded run, are those
    of the releases made before they were added)."""
    return [i for i, n in enumerate(names) if not n.startswith(ADDED_FEATURES)]


def build_model(cfg: TrainConfig, venv: VecEnv, tb_dir: Path) -> Any:
    activation = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[cfg.network.activation]
    arch = list(cfg.network.net_arch)
    # SB3's / sb3-contrib's MlpPolicy with a faster distribution and rollouts (torch_policy)
    policy: type = ShiftActorCriticPolicy if cfg.algo == "ppo" else ShiftMaskablePolicy
    kwargs: dict[str, Any] = {"net_arch": {"pi": arch, "vf": arch}, "activation_fn": activation}
    if cfg.network.kind == "modular":  # one network shared across modules (shift_rl.modular)
        from shift_rl.modular_torch import modular_policy

        policy, kwargs = modular_policy(cfg, venv)
    else:
        sc = load_scenario(cfg.scenario)
        names = [f.name for f in feature_layout([m.name for m in sc.modules], sc.resource_names)]
        read = mlp_columns(names)
        if len(read) < len(names):  # the MLP reads the observation without ADDED_FEATURES
            kwargs |= {"features_extractor_class": SelectColumns,
                       "features_extractor_kwargs": {"columns": read}}  # fmt: skip
    return algo_class(cfg)(
        policy,
        venv,
        **cfg.ppo.model_dump(),  # PPOConfig's fields are SB3's keyword names
        policy_kwargs={
            **kwargs,
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

    def __init__(
        self,
        scenario: ScenarioConfig,
        every: int,
        episodes: int,
        on_result: Callable[[int, dict[str, float]], None] | None = None,
        policy_of: Callable[[Any], Any] | None = None,
    ) -> None:
        super().__init__()
        self.on_result = on_result  # e.g. the sweep's report to Ray Tune
        # the model as a Policy on this scenario (a suite run's model reads padded inputs)
        self.policy_of = policy_of or SB3Policy
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
        # on resume the callback starts before its first step: read the model's count
        self.next_at = (self.model.num_timesteps // self.every + 1) * self.every

    def _measure(self, policy: Any) -> dict[str, float]:
        res = [run_episode(self.env, policy, "p", i, s) for i, s in enumerate(self.seeds)]
        ret = np.array([r.ret for r in res])
        ref = self.reference
        gap = ratio_of_means(
            ret - ref["static"], ref["oracle"] - ref["static"], self.env.params.episode_ticks, 0
        )["mean"]
        return {
            "goal_attainment": float(np.mean([r.goal_attainment for r in res])),
            # the ratio of means; NaN (TensorBoard leaves a hole) where static reaches the bound
            "gap_closed": math.nan if gap is None else gap,
            "return": float(ret.mean()),
            "units_moved": float(np.mean([r.units_moved for r in res])),
            "rollbacks": float(np.mean([r.rollbacks for r in res])),
        }

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.next_at:
            self.next_at += self.every
            mine = self._measure(self.policy_of(self.model))
            for key, value in mine.items():
                self.logger.record(f"eval/policy/{key}", value)
                self.logger.record(f"eval/potential/{key}", self.potential[key])
            logger.info("step %d: eval %s", self.num_timesteps, mine)
            if self.on_result is not None:
                self.on_result(self.num_timesteps, mine)
        return True


class TrainingProgress(BaseCallback):
    """Steps done, elapsed time and time left, on stderr.

    On a terminal a tqdm bar (steps, elapsed, time left, steps/s); otherwise (a log file, a
    pipe) one line per tenth of the run, so a redirected log stays readable. The time left is
    extrapolated from the steps/s so far; it does not include the final evaluation, which the
    run announces.
    """

    def __init__(self, total: int, stream: Any = None, tty: bool | None = None) -> None:
        super().__init__()
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.bar: Any = None
        self.start_steps = 0
        self.started = 0.0
        self.next_line = 0

    def _on_training_start(self) -> None:
        self.start_steps = self.model.num_timesteps
        self.started = time.perf_counter()
        self.next_line = 1
        if self.tty:
            from tqdm import tqdm

            try:  # a terminal that reports no size (0 columns) would get an empty bar
                sized = os.get_terminal_size(self.stream.fileno()).columns > 0
            except (OSError, ValueError, AttributeError):
                sized = False
            self.bar = tqdm(
                total=self.total, unit=" steps", unit_scale=True, file=self.stream,
                dynamic_ncols=sized, ncols=None if sized else 100, nrows=None if sized else 24,
                smoothing=0.05,
                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed} elapsed, "
                "{remaining} left, {rate_fmt}]",
            )  # fmt: skip

    def _on_step(self) -> bool:
        done = self.model.num_timesteps - self.start_steps
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
        elif self.total > 0 and done * 10 >= self.next_line * self.total:
            self.next_line = done * 10 // self.total + 1
            elapsed = time.perf_counter() - self.started
            left = elapsed * (self.total - done) / max(done, 1)
            print(
                f"trained {done:,}/{self.total:,} steps ({100 * done / self.total:.0f} %), "
                f"{_minutes(elapsed)} elapsed, about {_minutes(left)} left",
                file=self.stream,
                flush=True,
            )
        return True

    def _on_training_end(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _minutes(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m}:{s:02d}"


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
            elif listed.get(name) != file_sha256(file):
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
    hashes = {name: file_sha256(tmp / name) for name in CHECKPOINT_FILES}
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


# -- the run ---------------------------------------------------------------------------------
RUN_KIND = "training run"
POLICY_DIR = "policy"
"""The run's export: ``<run folder>/policy/`` (a policy folder, see :mod:`shift_rl.export`)."""


@dataclass
class TrainResult:
    run_dir: Path
    export_dir: Path
    timesteps: int  # the run's total after this call
    trained: int  # steps trained in this call (less than ``timesteps`` after a resume)
    seconds: float  # wall time of the training in this call (without the final evaluation)
    steps_per_second: float
    report: EvaluationReport | None
    resumed_from: int = 0  # the run's steps before this call


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


def run_folder(cfg: TrainConfig, out: Path | None = None, resume: Path | None = None) -> Path:
    """Where a run writes everything: ``out``, else the resumed checkpoint's run, else
    ``runs/<run_name>/`` (``runs/<run_name>-without-<families>/`` with ``leave_out``: a run
    of the same config with families left out is another run)."""
    if out is not None:
        return Path(out)
    if resume is not None and Path(resume).parent.name == "checkpoints":
        return Path(resume).parent.parent
    from shift_rl.suite import left_out_name

    return RUNS_DIR / left_out_name(cfg.run_name, cfg.leave_out)


def _previous_run(folder: Path) -> list[str] | None:
    """A run folder written before output markers existed: config.yaml and command.txt."""
    if (folder / "config.yaml").is_file() and (folder / "command.txt").is_file():
        return ["config.yaml", "command.txt"]
    return None


def _checkpoints(folder: Path) -> list[Path]:
    return sorted((folder / "checkpoints").glob("step_*/state.json"))


def check_run_folder(folder: Path, resume: Path | None = None) -> None:
    """Raise :class:`~shift_rl.outputs.OutputError` unless ``folder`` may take this run.

    It must be new, empty or an earlier run folder (:mod:`shift_rl.outputs`), outside the
    releases in ``agents/``; a fresh run never goes into a folder that already holds
    checkpoints of another run (resume that one, or choose another folder).
    """
    from shift_rl.export import RELEASES_DIR
    from shift_rl.outputs import OutputError, check_dir, inside, shown

    if inside(folder, RELEASES_DIR):
        raise OutputError(
            f"run folder {str(folder)!r} is inside {RELEASES_DIR}, which holds the shipped "
            "releases; train into runs/ (the default) or another folder, and release the "
            "result explicitly with scripts/export.py --model RUN --out agents/NAME --release"
        )
    check_dir(folder, RUN_KIND, legacy=_previous_run)
    found = _checkpoints(folder) if folder.is_dir() else []
    if resume is None and found:
        last = found[-1].parent
        raise OutputError(
            f"run folder {shown(folder)!r} already holds a run (checkpoints up to "
            f"{last.name}); continue it with --resume {shown(last)}, or train into another "
            "folder with --out DIR or --set run_name=NAME"
        )
    check_dir(folder / POLICY_DIR, "policy export", legacy=_previous_export)


def _previous_export(folder: Path) -> list[str] | None:
    from shift_rl.export import previous_export

    return previous_export(folder)


def describe_run(
    cfg: TrainConfig, folder: Path, scenario: ScenarioConfig, resume: Path | None = None
) -> str:
    """The header a run prints before it trains: what, where, how long, how it is judged."""
    from shift_rl.outputs import shown

    ev = cfg.evaluation
    per_episode = cfg.n_envs * scenario.episode_ticks
    what = (
        f"suite {cfg.suite!r} (train members, padded to {cfg.suite_max_modules} modules"
        + (f", without {', '.join(cfg.leave_out)}" if cfg.leave_out else "")
        + f"), validated on scenario {scenario.name!r}"
        if cfg.suite is not None
        else f"scenario {scenario.name!r}"
    )
    lines = [
        f"Training {cfg.algo} on {what} "
        f"({len(scenario.modules)} modules, {scenario.episode_ticks} ticks per episode)",
        f"  run name     {cfg.run_name}",
        f"  run folder   {shown(folder)}/  (checkpoints, TensorBoard logs, config, export in "
        f"{POLICY_DIR}/)",
        f"  timesteps    {cfg.total_timesteps:,} env steps = {cfg.n_envs} envs x "
        f"{cfg.total_timesteps // per_episode:,} episodes each (vec_env {cfg.vec_env})",
        f"  seed         {cfg.seed} (training episodes from seed {TRAIN_SEED_BASE:,}, "
        f"validation from {VALIDATION_SEED_BASE:,})",
        f"  evaluation   {ev.episodes} paired held-out episodes, seeds {ev.seed}.."
        f"{ev.seed + ev.episodes - 1}, against {', '.join(ev.baselines)} "
        "(and the oracle bound)",
    ]
    if resume is not None:
        done = int(json.loads((Path(resume) / "state.json").read_text())["num_timesteps"])
        lines.append(
            f"  resuming     from {resume} at {done:,} steps: "
            f"{max(cfg.total_timesteps - done, 0):,} steps to train"
        )
    return "\n".join(lines)


def check_alignment(cfg: TrainConfig, scenario: ScenarioConfig) -> None:
    """Checkpoints and rollouts must fall on episode boundaries (see module docstring)."""
    ticks = scenario.episode_ticks
    where = _where(cfg)
    if cfg.ppo.n_steps % ticks != 0 and cfg.suite is None:  # a suite: check_suite
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


def check_suite(cfg: TrainConfig, scenario: ScenarioConfig) -> Any:
    """The suite's train scenarios (:func:`shift_rl.suite_training.suite_selection`), checked:
    rollouts hold whole episodes of each, and the validation scenario fits the padding."""
    from shift_rl.suite_training import Padder, suite_selection

    sel = suite_selection(cfg)
    ticks = sorted({s.episode_ticks for s in sel.scenarios})
    bad = [t for t in ticks if cfg.ppo.n_steps % t]
    if bad:
        raise ConfigError(
            f"{_where(cfg)}ppo.n_steps: {cfg.ppo.n_steps} must be a multiple of every train "
            f"scenario's episode_ticks ({ticks}) so rollouts hold whole episodes"
        )
    try:
        Padder(scenario, cfg.suite_max_modules, cfg.suite_kinds, cfg.suite_amount_levels)
    except ValueError as err:
        raise ConfigError(
            f"{_where(cfg)}scenario: validation runs on it through the suite's padding: {err}"
        ) from None
    for note in sel.dropped:
        logger.warning("suite %s: not trained on: %s", cfg.suite, note)
    return sel


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
    for name in cfg.evaluation.baselines:  # a typo fails now, not after hours of training
        if name not in POLICIES and name not in REFERENCES:
            try:
                resolve_policy(name, env.params)
            except PolicyFileError as err:
                allowed = sorted(POLICIES) + list(REFERENCES)
                raise ConfigError(
                    f"{_where(cfg)}evaluation.baselines: {err} (baselines are built-in "
                    f"policies {allowed} or exported policy folders)"
                ) from None


def train(
    cfg: TrainConfig,
    out: Path | None = None,
    resume: Path | None = None,
    progress: bool = True,
    evaluate_at_end: bool = True,
    on_validation: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train, checkpoint, export, evaluate: everything goes into one run folder.

    The run folder is ``out``, else the resumed checkpoint's run folder, else
    ``runs/<run_name>/`` (:func:`run_folder`); it holds ``config.yaml``, ``command.txt``
    (one entry per invocation), ``checkpoints/``, ``tb/`` and the export ``policy/`` with its
    model card. It must pass :func:`check_run_folder`. ``agents/`` is never written.
    ``on_validation(timesteps, metrics)`` is called after each periodic validation with the
    ``eval/policy/*`` values (the sweep reports them to Ray Tune).
    """
    from shift_rl.outputs import claim_dir, shown

    torch.set_num_threads(cfg.torch_threads)
    scenario = load_scenario(cfg.scenario)
    check_alignment(cfg, scenario)
    check_inputs(cfg, scenario)
    selection = check_suite(cfg, scenario) if cfg.suite is not None else None
    run_dir = run_folder(cfg, out, resume)
    check_run_folder(run_dir, resume)
    folder = claim_dir(run_dir, RUN_KIND, legacy=_previous_run)
    ckpt_dir = run_dir / "checkpoints"
    export_dir = run_dir / POLICY_DIR
    folder.write_text("config.yaml", yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    previous = (run_dir / "command.txt").read_text() if (run_dir / "command.txt").is_file() else ""
    folder.write_text(
        "command.txt",
        previous + " ".join([sys.executable, *sys.argv]) + f"\ngit {_git_revision()}\n",
    )
    variants = make_variants(scenario, cfg.randomization, cfg.seed)
    done = 0
    if resume is not None:
        verify_checkpoint(resume)
        state = json.loads((resume / "state.json").read_text())
        done = int(state["num_timesteps"])
    per_episode = cfg.n_envs * scenario.episode_ticks
    policy_of = None
    if cfg.suite is not None:  # the suite's train members, padded (shift_rl.suite_training)
        from shift_rl.pretrain import advisor_maker
        from shift_rl.suite_training import PaddedSB3Policy, Padder, make_suite_env

        advisor = advisor_maker(cfg)
        venv = make_suite_env(cfg, selection, done, advisor)
        padder = Padder(scenario, cfg.suite_max_modules, cfg.suite_kinds,
                        cfg.suite_amount_levels, advisor is not None)  # fmt: skip
        policy_of = lambda model: PaddedSB3Policy(  # noqa: E731
            model, padder, advisor and advisor(scenario)
        )
    else:
        venv = make_vec_env(cfg, variants, start_episode=done // per_episode)
    started = time.perf_counter()
    if resume is None:
        model = build_model(cfg, venv, run_dir / "tb")
        if cfg.pretrain.rollouts:  # a warm start: clone a tuned heuristic (shift_rl.pretrain)
            from shift_rl.pretrain import pretrain

            pretrain(model, cfg, selection)
    else:
        model = load_checkpoint(cfg, resume, env=venv)
        model.tensorboard_log = str(run_dir / "tb")
    ev = cfg.evaluation
    remaining = cfg.total_timesteps - done
    callbacks = [
        Checkpointer(ckpt_dir, cfg.checkpoint_every, cfg, restore=resume),
        PeriodicEvaluation(
            scenario, ev.every_timesteps, ev.episodes_during, on_validation, policy_of
        ),
    ]
    if progress:
        callbacks.append(TrainingProgress(max(remaining, 0)))
    if remaining > 0:
        model.learn(
            total_timesteps=remaining,
            callback=CallbackList(callbacks),
            reset_num_timesteps=resume is None,
            tb_log_name="ppo",
        )
    seconds = time.perf_counter() - started
    venv.close()
    save_checkpoint(model, ckpt_dir, cfg)
    export_trained(model, cfg, scenario, export_dir)
    report = None
    if evaluate_at_end:
        if progress:
            print(
                f"evaluating on {ev.episodes} held-out episodes against "
                f"{', '.join(ev.baselines)} ...",
                file=sys.stderr,
                flush=True,
            )
        report = evaluate([shown(export_dir), *ev.baselines], scenario, ev.episodes, ev.seed)
    trained = int(model.num_timesteps) - done
    rate = max(trained, 0) / max(seconds, 1e-9)
    result = TrainResult(
        run_dir, export_dir, int(model.num_timesteps), trained, seconds, rate, report, done
    )
    write_model_card(result, cfg)
    return result


def export_trained(
    model: Any, cfg: TrainConfig, scenario: ScenarioConfig, out: Path, release: bool = False
) -> Path:
    """Export a trained model with everything a controller needs to trust and run it."""
    env = ResourceShiftEnv(scenario)
    write = export_model
    read = list(range(len(env.observation_names)))
    extra: dict[str, Any] = {}
    if cfg.network.kind == "modular":
        from shift_rl.modular_torch import export_modular as write

        if cfg.network.advisor is not None:  # the advisor the exported policy runs itself
            from shift_rl.pretrain import heuristic_maker

            chosen = heuristic_maker(cfg, cfg.network.advisor)[1]
            extra["advisor"] = {"name": cfg.network.advisor, **chosen}
    elif isinstance(getattr(model.policy, "features_extractor", None), SelectColumns):
        read = model.policy.features_extractor.columns.tolist()  # what build_model's MLP reads
    return write(
        model,
        out,
        observation_names=[env.observation_names[i] for i in read],
        observation_low=env.observation_space.low[read],
        observation_high=env.observation_space.high[read],
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
        release=release,
        **extra,
    )


def write_model_card(result: TrainResult, cfg: TrainConfig) -> None:
    """``README.md`` of the exported policy: what it is, how it was made, how it scores."""
    from shift_rl.export import POLICY_KIND, previous_export
    from shift_rl.outputs import claim_dir

    resumed = (
        f" (this call: {result.trained:,} steps after a resume at {result.resumed_from:,})"
        if result.resumed_from
        else ""
    )
    lines = [
        f"# {cfg.run_name}",
        "",
        (
            f"A {cfg.algo} policy trained on the train members of suite `{cfg.suite}`"
            + (f" without {', '.join(cfg.leave_out)}" if cfg.leave_out else "")
            + f" (evaluated below on `{cfg.scenario}`)"
            if cfg.suite is not None
            else f"A {cfg.algo} policy for the `{cfg.scenario}` scenario"
        )
        + ", exported as the shift algorithm (`policy.json` + `weights.npz`, loaded with "
        "`shift_rl.runtime.load_policy`, numpy only).",
        "",
        "| | |",
        "|---|---|",
        f"| algorithm | {cfg.algo} |",
        f"| seed | {cfg.seed} |",
        f"| timesteps | {result.timesteps:,} |",
        f"| wall time | {result.seconds / 60:.1f} min "
        f"({result.steps_per_second:,.0f} env steps/s){resumed} |",
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
            result.report.markdown(),
            "",
            *result.report.legend(),
            "",
            *result.report.verdict_lines(),
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
    folder = claim_dir(result.export_dir, POLICY_KIND, legacy=previous_export)
    folder.write_text("README.md", "\n".join(lines))
