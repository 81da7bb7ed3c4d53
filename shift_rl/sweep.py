"""Sweeps over training configs on Ray Tune: seeds x hyperparameters, early stopping, resume.

A sweep is a YAML file (``configs/sweeps/*.yaml``, validated like every config here: an
unknown key or a bad value fails with one :class:`~shift_rl.config.ConfigError` naming the
file and the field)::

    name: ppo-lr-entropy
    train: ppo_default              # a name in configs/train/ or a path (relative to this file)
    set: [total_timesteps=576000]   # --set-style overrides for every trial
    seeds: [0, 1, 2]                # every configuration trains once per seed
    samples: 4                      # configurations drawn from the random dimensions
    sampler_seed: 0
    space:                          # dotted training-config key -> one distribution
      ppo.learning_rate: {loguniform: [1.0e-4, 1.0e-3]}
      ppo.ent_coef: {choice: [0.0, 0.01]}
      network.net_arch: {grid: [[64, 64], [128, 128]]}   # grid dimensions are crossed
    metric: gap_closed              # of the periodic validation (eval/policy/*)
    mode: max
    scheduler: {kind: asha, grace_period: 115200, reduction_factor: 2}

The configurations are drawn here, once, from ``sampler_seed`` (not by Tune), so the same
file gives the same trials and every seed of a configuration trains the same
hyperparameters. Each trial (configuration x seed) is one ``train()`` run whose periodic
validation (the ``eval/policy/*`` numbers the training callback computes on validation
seeds) is reported to Tune; ASHA stops the trials whose metric trails at its rungs
(measured in environment steps). A trial keeps everything in its own folder under the
sweep's folder (``<sweep>/<trial>/``: ``run/``, the trial's run folder with TensorBoard
logs, checkpoints and the export in ``run/policy/``, ``validation.jsonl``, ``trial.json``);
nothing goes to
``agents/``. An interrupted sweep resumes with ``resume=True``: finished trials stay
finished and unfinished ones continue from their last training checkpoint. The results
table (``results.md`` and ``results.json``) names the best configuration and the spread of
its seeds (mean and 95 % confidence interval of the final validation metric).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import yaml
from pydantic import Field, ValidationError, model_validator

from shift_rl.config import (
    PROJECT_ROOT,
    TRAIN_DIR,
    ConfigError,
    NonNegInt,
    PosFloat,
    PosInt,
    TrainConfig,
    _format_errors,
    _Model,
    _UniqueKeyLoader,
    load_scenario,
    load_train_config,
    train_config_from_dict,
)

logger = logging.getLogger(__name__)

SWEEPS_DIR = PROJECT_ROOT / "configs" / "sweeps"
SWEEP_RUNS_DIR = PROJECT_ROOT / "runs" / "sweeps"
METRICS = ("gap_closed", "goal_attainment", "return", "units_moved", "rollbacks")
"""What the periodic validation measures (``PeriodicEvaluation._measure``)."""
RESERVED = ("seed", "run_name")
"""Keys the sweep sets itself for every trial."""
Pair = Annotated[list[float], Field(min_length=2, max_length=2)]


class Distribution(_Model):
    """One dimension of the search space: exactly one of the fields."""

    choice: list[Any] | None = Field(None, min_length=1, description="one value drawn per sample")
    grid: list[Any] | None = Field(None, min_length=1, description="every value, crossed")
    uniform: Pair | None = Field(None, description="[low, high], a float")
    loguniform: Annotated[list[PosFloat], Field(min_length=2, max_length=2)] | None = Field(
        None, description="[low, high] > 0, a float drawn uniformly in log"
    )
    randint: Annotated[list[int], Field(min_length=2, max_length=2)] | None = Field(
        None, description="[low, high], an integer, both ends included"
    )

    @model_validator(mode="after")
    def _one(self) -> Distribution:
        given = [k for k in type(self).model_fields if getattr(self, k) is not None]
        if len(given) != 1:
            names = ", ".join(type(self).model_fields)
            raise ValueError(f"give exactly one of {names} (got {given or 'none'})")
        bounds = self.uniform or self.loguniform or self.randint
        if bounds is not None and bounds[0] >= bounds[1]:
            raise ValueError(f"{given[0]}: low {bounds[0]} must be below high {bounds[1]}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in type(self).model_fields if getattr(self, k) is not None)

    def draw(self, rng: np.random.Generator) -> Any:
        """One value of a random dimension (every kind but ``grid``)."""
        if self.choice is not None:
            return self.choice[int(rng.integers(len(self.choice)))]
        if self.uniform is not None:
            return float(rng.uniform(*self.uniform))
        if self.loguniform is not None:
            lo, hi = (math.log(v) for v in self.loguniform)
            return float(math.exp(rng.uniform(lo, hi)))
        if self.randint is not None:
            return int(rng.integers(self.randint[0], self.randint[1] + 1))
        raise ValueError("a grid dimension is not drawn")


class SchedulerConfig(_Model):
    """Early stopping on the validation metric; times are environment steps."""

    kind: Literal["asha", "none"] = Field("asha", description="ASHA, or run every trial fully")
    grace_period: PosInt | None = Field(
        None, description="steps before a trial may be stopped (default: 2 validations)"
    )
    reduction_factor: Annotated[float, Field(gt=1.0)] = Field(
        2.0, description="ASHA keeps the best 1/reduction_factor at each rung"
    )


class SweepConfig(_Model):
    """A sweep: a training config, overrides, seeds, a search space, a metric, a scheduler."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    train: str = Field("ppo_default", description="training config name or YAML path")
    set: list[str] = Field([], description="dotted.key=value overrides for every trial")
    seeds: list[NonNegInt] = Field(min_length=1, description="training seeds per configuration")
    samples: PosInt = Field(1, description="configurations drawn from the random dimensions")
    sampler_seed: NonNegInt = 0
    space: dict[str, Distribution] = Field({}, description="dotted key -> distribution")
    metric: Literal[METRICS] = "gap_closed"  # type: ignore[valid-type]
    mode: Literal["max", "min"] = "max"
    scheduler: SchedulerConfig = SchedulerConfig()
    cpus_per_trial: PosFloat = Field(1.0, description="CPUs Ray reserves for each trial")
    max_concurrent_trials: PosInt | None = None

    @model_validator(mode="after")
    def _consistent(self) -> SweepConfig:
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds: {self.seeds} repeats a seed; seeds must be unique")
        random_dims = [k for k, d in self.space.items() if d.kind != "grid"]
        if self.samples > 1 and not random_dims:
            raise ValueError(
                f"samples: {self.samples} configurations asked for but the space has no random "
                "dimension (choice, uniform, loguniform, randint) to draw them from"
            )
        return self


@dataclass(frozen=True)
class TrialSpec:
    """One trial: configuration ``config_id`` (its ``values``) trained with ``seed``."""

    config_id: int
    seed: int
    values: dict[str, Any]
    train_config: dict[str, Any]

    @property
    def folder(self) -> str:
        return f"config{self.config_id:03d}_seed{self.seed}"

    def overrides(self) -> list[str]:
        """The configuration as ``--set`` arguments of ``scripts/train.py``."""
        return [f"{k}={json.dumps(v)}" for k, v in self.values.items()]


# -- loading ---------------------------------------------------------------------------------
def _train_keys(model: type = TrainConfig, prefix: str = "") -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, _Model):
            out += _train_keys(ann, f"{prefix}{name}.")
        else:
            out.append(prefix + name)
    return out


def _check_keys(keys: Sequence[str], where: str, source: str) -> None:
    import difflib

    known = _train_keys()
    for key in keys:
        if key in RESERVED:
            raise ConfigError(
                f"invalid sweep {source}: {where}{key}: the sweep sets {key!r} itself "
                "(list training seeds under seeds:)"
            )
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"invalid sweep {source}: {where}{key}: unknown training config key{hint}"
            )


def _train_path(spec: SweepConfig, base: Path) -> Path:
    name = Path(spec.train)
    if len(name.parts) == 1 and name.suffix not in (".yaml", ".yml"):
        return TRAIN_DIR / f"{name}.yaml"
    return name if name.is_absolute() else (base / name)


def sweep_path(path: str | os.PathLike) -> Path:
    """A sweep file by path, or by name in ``configs/sweeps/``."""
    path = Path(path)
    if not path.is_file() and len(path.parts) == 1:
        path = SWEEPS_DIR / (path.name if path.suffix else f"{path.name}.yaml")
    return path


def load_sweep(path: str | os.PathLike) -> tuple[SweepConfig, list[TrialSpec]]:
    """Read and validate a sweep file; draw its configurations; validate every trial's config.

    Every trial's training config is built and checked (types, ranges, rollout alignment)
    here, before Ray or any training starts.
    """
    path = sweep_path(path)
    if not path.is_file():
        known = sorted(p.name for p in SWEEPS_DIR.glob("*.yaml"))
        raise ConfigError(f"sweep file {str(path)!r} does not exist; shipped sweeps: {known}")
    source = str(path)
    try:
        data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as err:
        raise ConfigError(f"invalid sweep {source}: not valid YAML:\n{err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"invalid sweep {source}: the top level must be a mapping")
    try:
        spec = SweepConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source, SweepConfig, "sweep")) from None
    _check_keys(list(spec.space), "space.", source)
    _check_keys([s.partition("=")[0].strip() for s in spec.set], "set: ", source)
    try:
        base = load_train_config(_train_path(spec, path.parent), spec.set)
    except ConfigError as err:
        raise ConfigError(f"invalid sweep {source}: train / set: {err}") from None
    trials = [
        _trial(spec, base, i, seed, values, source)
        for i, values in enumerate(_configurations(spec))
        for seed in spec.seeds
    ]
    return spec, trials


def _configurations(spec: SweepConfig) -> list[dict[str, Any]]:
    """The grid dimensions crossed with ``samples`` draws of the random ones, in file order."""
    rng = np.random.default_rng(spec.sampler_seed)
    grid = {k: d.grid for k, d in spec.space.items() if d.grid is not None}
    random_dims = {k: d for k, d in spec.space.items() if d.grid is None}
    out = []
    for _ in range(spec.samples):
        drawn = {k: d.draw(rng) for k, d in random_dims.items()}
        for combo in itertools.product(*grid.values()):
            values = {**drawn, **dict(zip(grid, combo, strict=True))}
            out.append({k: values[k] for k in spec.space})
    return out


def _trial(
    spec: SweepConfig,
    base: TrainConfig,
    config_id: int,
    seed: int,
    values: dict[str, Any],
    source: str,
) -> TrialSpec:
    from shift_rl.train import check_alignment

    data = base.model_dump(mode="json")
    # a scenario path must still resolve in a Ray worker, whose working directory differs
    scenario = Path(data["scenario"])
    if scenario.suffix in (".yaml", ".yml") or len(scenario.parts) > 1:
        data["scenario"] = str(scenario.resolve())
    for key, value in {
        **values,
        "seed": seed,
        "run_name": f"{spec.name}-c{config_id:03d}-s{seed}",
    }.items():
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    shown = ", ".join(f"{k}={json.dumps(v)}" for k, v in values.items()) or "base config"
    where = f"sweep {source}, configuration {config_id} ({shown})"
    cfg = train_config_from_dict(data, (), f"({where})")
    try:
        check_alignment(cfg, load_scenario(cfg.scenario))
    except ConfigError as err:
        raise ConfigError(f"invalid {where}: {err}") from None
    every = cfg.evaluation.every_timesteps
    if cfg.total_timesteps % every != 0:
        raise ConfigError(
            f"invalid {where}: total_timesteps {cfg.total_timesteps} must be a multiple of "
            f"evaluation.every_timesteps {every}, so a trial's last validation is at its end"
        )
    return TrialSpec(config_id, seed, values, cfg.model_dump(mode="json"))


# -- one trial, inside a Ray worker ----------------------------------------------------------
def latest_checkpoint(folder: Path) -> Path | None:
    """The newest complete ``step_*`` checkpoint in ``folder`` (``None`` if there is none)."""
    done = sorted(p for p in folder.glob("step_*") if (p / "state.json").is_file())
    return done[-1] if done else None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by an interruption
            break
    return rows


def run_trial(config: dict[str, Any]) -> None:
    """Tune's function trainable: train one trial, reporting each validation to Tune."""
    from ray import tune

    from shift_rl.train import train

    spec = config["trial"]
    folder = Path(spec["sweep_dir"]) / spec["folder"]
    folder.mkdir(parents=True, exist_ok=True)
    cfg = train_config_from_dict(spec["train_config"], source=f"trial {spec['folder']}")
    resume = latest_checkpoint(folder / "run" / "checkpoints")
    log = folder / "validation.jsonl"
    done_at = 0
    if resume is not None:
        done_at = json.loads((resume / "state.json").read_text())["num_timesteps"]
        logger.info("trial %s resumes from %s", spec["folder"], resume)
    # validations past the checkpoint are measured again, identically
    kept = [r for r in _read_jsonl(log) if r["timesteps"] <= done_at]
    log.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))
    final: list[dict[str, Any]] = kept[-1:] if done_at >= cfg.total_timesteps else []

    def to_tune(row: dict[str, Any]) -> None:
        tune.report({"env_steps": row["timesteps"], **{f"val_{k}": row[k] for k in METRICS}})

    def report(timesteps: int, metrics: dict[str, float]) -> None:
        row = {"timesteps": int(timesteps), **{k: float(v) for k, v in metrics.items()}}
        with log.open("a") as f:
            f.write(json.dumps(row, sort_keys=True) + "\n")
        if row["timesteps"] >= cfg.total_timesteps:
            final[:] = [row]  # reported once the policy is exported: Tune may end us there
        else:
            to_tune(row)

    result = train(
        cfg,
        out=folder / "run",
        resume=resume,
        progress=False,
        evaluate_at_end=False,
        on_validation=report,
    )
    info = {
        "config_id": spec["config_id"],
        "seed": spec["seed"],
        "values": spec["values"],
        "timesteps": result.timesteps,
        "status": "complete",
    }
    (folder / "trial.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    if final:
        to_tune(final[0])


def _trial_dirname(trial: Any) -> str:
    return str(trial.config["trial"]["folder"])


# -- the sweep -------------------------------------------------------------------------------
def run_sweep(
    path: str | os.PathLike,
    out: Path | None = None,
    resume: bool = False,
    ray_address: str | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """Run (or resume) a sweep on Ray Tune; write and return its results table.

    ``out`` is the sweep's folder (default ``runs/sweeps/<name>``), which Tune uses as its
    experiment folder; on a cluster it must be a path every node sees (a shared
    filesystem). ``ray_address`` joins a cluster; without it a local Ray with ``workers``
    CPUs (all cores by default) is started for the sweep.
    """
    from shift_rl.distributed import LOCAL_RAY, check_nodes, import_ray, start_ray

    spec, trials = load_sweep(path)
    sweep_dir = Path(out).resolve() if out is not None else SWEEP_RUNS_DIR / spec.name
    saved = sweep_dir / "sweep.json"
    record = {
        "sweep": spec.model_dump(mode="json"),
        "train_path": str(_train_path(spec, sweep_path(path).parent)),
        "trials": [asdict(t) for t in trials],
    }
    ray = import_ray()
    from ray import tune

    can_restore = tune.Tuner.can_restore(str(sweep_dir))
    if resume and not can_restore:
        raise ConfigError(f"--resume: {sweep_dir} holds no sweep to resume")
    if not resume and (can_restore or saved.exists()):
        raise ConfigError(
            f"{sweep_dir} already holds a sweep: pass --resume to continue it, or --out "
            "another folder"
        )
    if resume and json.loads(saved.read_text()) != json.loads(json.dumps(record)):
        raise ConfigError(
            f"--resume: the sweep file {path} no longer describes the sweep in {sweep_dir} "
            f"(compare with {saved}); resume with the file it started from"
        )
    sweep_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        saved.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        (sweep_dir / "command.txt").write_text(" ".join([sys.executable, *sys.argv]) + "\n")
    ray_mod, started = start_ray(ray_address or LOCAL_RAY, workers)
    try:
        check_nodes(ray_mod)
        trainable = tune.with_resources(run_trial, {"cpu": spec.cpus_per_trial})
        if resume:
            tuner = tune.Tuner.restore(
                str(sweep_dir), trainable, resume_unfinished=True, resume_errored=True
            )
        else:
            tuner = _new_tuner(tune, trainable, spec, trials, sweep_dir)
        grid = tuner.fit()
        errors = {Path(r.path).name: str(r.error).strip().splitlines()[-1] for r in grid if r.error}
    finally:
        if started:
            ray.shutdown()
    return write_results(sweep_dir, errors)


def _new_tuner(
    tune: Any, trainable: Any, spec: SweepConfig, trials: list[TrialSpec], sweep_dir: Path
) -> Any:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    cfgs = [TrainConfig.model_validate(t.train_config) for t in trials]
    if spec.scheduler.kind == "asha":
        every = min(c.evaluation.every_timesteps for c in cfgs)
        scheduler: Any = ASHAScheduler(
            time_attr="env_steps",
            max_t=max(c.total_timesteps for c in cfgs),  # a trial's last report, after export
            grace_period=spec.scheduler.grace_period or 2 * every,
            reduction_factor=spec.scheduler.reduction_factor,
        )
    else:
        scheduler = FIFOScheduler()
    space = [
        {
            "config_id": t.config_id,
            "seed": t.seed,
            "values": t.values,
            "train_config": t.train_config,
            "folder": t.folder,
            "sweep_dir": str(sweep_dir),
        }
        for t in trials
    ]
    return tune.Tuner(
        trainable,
        param_space={"trial": tune.grid_search(space)},
        tune_config=tune.TuneConfig(
            metric=f"val_{spec.metric}",
            mode=spec.mode,
            scheduler=scheduler,
            max_concurrent_trials=spec.max_concurrent_trials,
            trial_dirname_creator=_trial_dirname,
            trial_name_creator=_trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=sweep_dir.name,
            storage_path=str(sweep_dir.parent),
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=0),
        ),
    )


# -- the results table -----------------------------------------------------------------------
def _mean_ci(values: Sequence[float]) -> dict[str, Any]:
    from shift_rl.evaluate import _summary

    return _summary(np.asarray(values, dtype=np.float64))


def write_results(sweep_dir: Path, errors: dict[str, str] | None = None) -> dict[str, Any]:
    """Build ``results.json`` and ``results.md`` from the trial folders of a sweep.

    A trial's score is its last validation's metric. A configuration's score is the mean
    over its seeds; the best configuration is chosen among those whose every seed trained
    to the end (among all configurations, and said so, when none did).
    """
    record = json.loads((sweep_dir / "sweep.json").read_text())
    spec = SweepConfig.model_validate(record["sweep"])
    errors = errors or {}
    metric, sign = spec.metric, (1.0 if spec.mode == "max" else -1.0)
    configs: dict[int, dict[str, Any]] = {}
    for t in record["trials"]:
        trial = TrialSpec(**t)
        folder = sweep_dir / trial.folder
        rows = _read_jsonl(folder / "validation.jsonl")
        info = folder / "trial.json"
        total = trial.train_config["total_timesteps"]
        if trial.folder in errors:
            status = "error"
        elif info.is_file() and json.loads(info.read_text())["timesteps"] >= total:
            status = "complete"
        elif rows:
            status = "stopped"
        else:
            status = "not run"
        c = configs.setdefault(
            trial.config_id,
            {"config_id": trial.config_id, "values": trial.values, "trials": []},
        )
        c["trials"].append({
            "seed": trial.seed,
            "folder": trial.folder,
            "status": status,
            "error": errors.get(trial.folder),
            "timesteps": rows[-1]["timesteps"] if rows else 0,
            "final": {k: rows[-1][k] for k in METRICS} if rows else None,
            "validations": len(rows),
        })  # fmt: skip
    for c in configs.values():
        scores = [t["final"][metric] for t in c["trials"] if t["final"] is not None]
        c["score"] = _mean_ci(scores)
        c["complete"] = all(t["status"] == "complete" for t in c["trials"])
    ranked = [c for c in configs.values() if c["score"]["mean"] is not None]
    pool = [c for c in ranked if c["complete"]] or ranked
    best = max(pool, key=lambda c: sign * c["score"]["mean"]) if pool else None
    out = {
        "sweep": spec.name,
        "metric": f"validation {metric} (mode {spec.mode}), last validation of each trial",
        "trials": sum(len(c["trials"]) for c in configs.values()),
        "configurations": [configs[k] for k in sorted(configs)],
        "best": None,
    }
    if best is not None:
        out["best"] = {
            "config_id": best["config_id"],
            "values": best["values"],
            "complete": best["complete"],
            "seeds": [t["seed"] for t in best["trials"]],
            metric: best["score"],
            "per_seed": {str(t["seed"]): t["final"] and t["final"][metric] for t in best["trials"]},
            "train": f"python scripts/train.py --config {_shown(record['train_path'])} "
            + " ".join(
                f"--set {a}"
                for a in [*spec.set, *(f"{k}={json.dumps(v)}" for k, v in best["values"].items())]
            ),
        }
    tmp = sweep_dir / "results.json.tmp"
    tmp.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    tmp.replace(sweep_dir / "results.json")
    (sweep_dir / "results.md").write_text(results_markdown(out) + "\n")
    return out


def _shown(path: str) -> str:
    """A path relative to the project when it lies inside it."""
    p = Path(path).resolve()
    return str(p.relative_to(PROJECT_ROOT)) if p.is_relative_to(PROJECT_ROOT) else str(p)


def _fmt(s: dict[str, Any]) -> str:
    if s["mean"] is None:
        return "—"
    lo, hi = s["ci95"]
    return f"{s['mean']:.4f} [{lo:.4f}, {hi:.4f}]"


def results_markdown(out: dict[str, Any]) -> str:
    """The sweep's table: one row per configuration, the best one named below."""
    lines = [
        f"# Sweep `{out['sweep']}`",
        "",
        f"Score: {out['metric']}; mean [95 % CI] over seeds.",
        "",
        "| config | values | seeds (status) | score | steps reached |",
        "|---:|---|---|---:|---:|",
    ]
    for c in out["configurations"]:
        values = ", ".join(f"`{k}={json.dumps(v)}`" for k, v in c["values"].items()) or "—"
        seeds = ", ".join(f"{t['seed']} ({t['status']})" for t in c["trials"])
        steps = ", ".join(f"{t['timesteps']:,}" for t in c["trials"])
        lines.append(f"| {c['config_id']} | {values} | {seeds} | {_fmt(c['score'])} | {steps} |")
    best = out["best"]
    lines.append("")
    if best is None:
        lines.append("No trial reported a validation yet.")
        return "\n".join(lines)
    metric = next(k for k in best if k in METRICS)
    per_seed = ", ".join(
        f"seed {s}: {v:.4f}" if v is not None else f"seed {s}: —"
        for s, v in best["per_seed"].items()
    )
    lines += [
        f"**Best: configuration {best['config_id']}** "
        f"({', '.join(f'`{k}={json.dumps(v)}`' for k, v in best['values'].items()) or 'base'}): "
        f"{metric} {_fmt(best[metric])} over seeds {best['seeds']} ({per_seed})"
        + ("" if best["complete"] else "; not every seed trained to the end"),
        "",
        f"Train it again: `{best['train']}`",
    ]
    return "\n".join(lines)


__all__ = [
    "Distribution",
    "SchedulerConfig",
    "SweepConfig",
    "TrialSpec",
    "latest_checkpoint",
    "load_sweep",
    "results_markdown",
    "run_sweep",
    "run_trial",
    "write_results",
]
