"""Tune a baseline's parameters on training scenarios and seeds only, then save them.

A learned policy is only compared with a baseline at its best. The search (Optuna's TPE
sampler, seeded) maximizes the mean return over ``episodes`` training episodes per scenario,
with seeds from ``TRAIN_SEED_BASE`` on: disjoint from the seeds evaluations report
(0, 1, 2, ...). The best parameters, the default parameters' score on the same episodes and
every trial are saved to ``agents/<policy>/``; ``make_policy`` then uses them by default.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from shift_rl.agents import TUNED_DIR, make_policy
from shift_rl.agents.autoscalers import HPAParams
from shift_rl.agents.potential import PotentialParams
from shift_rl.config import ScenarioConfig, load_scenario
from shift_rl.distributed import FanOut
from shift_rl.env import ResourceShiftEnv
from shift_rl.evaluate import run_episode
from shift_rl.outputs import check_dir, claim_dir
from shift_rl.seeds import TRAIN_SEED_BASE

logger = logging.getLogger(__name__)

SEARCH_SPACES: dict[str, dict[str, tuple]] = {
    "potential": {
        "headroom": ("float", 0.0, 0.5),
        "probe_units": ("categorical", [1, 2, 4]),
        "min_gap": ("log", 1.0, 8.0),
        "aggressiveness": ("log", 0.25, 4.0),
        "incoming_penalty": ("float", 0.0, 0.1),
        "reputation_power": ("float", 0.0, 2.0),
        "mu_smoothing": ("float", 0.05, 0.5),
        "feedback_rate": ("float", 0.0, 2.0),
        "feedback_decay": ("log", 0.005, 0.5),
    },
    "hpa": {
        "target_utilization": ("float", 0.4, 0.9),
        "tolerance": ("float", 0.0, 0.2),
        "downscale_window_s": ("categorical", [60.0, 120.0, 300.0, 600.0, 900.0]),
    },
}
"""Per tunable policy: parameter -> (kind, range or choices) of the search."""
DEFAULTS = {"potential": PotentialParams, "hpa": HPAParams}


def _suggest(trial: Any, space: dict[str, tuple]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, (kind, *args) in space.items():
        if kind == "categorical":
            out[key] = trial.suggest_categorical(key, args[0])
        else:
            out[key] = trial.suggest_float(key, args[0], args[1], log=kind == "log")
    return out


def _returns(
    scenario: ScenarioConfig, name: str, params: dict[str, Any], seeds: Sequence[int]
) -> list[float]:
    """Returns of ``name`` with ``params`` on ``scenario``'s episodes ``seeds`` (one task)."""
    env = ResourceShiftEnv(scenario)
    policy = make_policy(name, env.params, **params)
    return [run_episode(env, policy, name, i, s).ret for i, s in enumerate(seeds)]


def score(
    name: str,
    params: dict[str, Any],
    scenarios: Sequence[ScenarioConfig],
    seeds: Sequence[int],
    pool: FanOut | None = None,
) -> float:
    """Mean return of a parameter set over the given scenarios and seeds.

    With a ``pool`` (entered :class:`~shift_rl.distributed.FanOut`), the episodes are spread
    over its processes or Ray tasks; the returns are put back in order (scenario by
    scenario, seed by seed) before the mean is taken, so the float is the same bit for bit.
    """
    if pool is None:
        with FanOut() as serial:
            return score(name, params, scenarios, seeds, serial)
    chunks = max(1, min(len(seeds), -(-pool.width // len(scenarios))))
    parts = [list(seeds)[k::chunks] for k in range(chunks)]
    tasks = [(cfg, name, params, part) for cfg in scenarios for part in parts]
    done = pool.map(_returns, *zip(*tasks, strict=True))
    total: list[float] = []
    for j in range(len(scenarios)):
        by_seed = {}
        for part, rets in zip(parts, done[j * chunks : (j + 1) * chunks], strict=True):
            by_seed.update(zip(part, rets, strict=True))
        total += [by_seed[s] for s in seeds]
    return float(np.mean(total))


def tune(
    name: str,
    scenarios: Sequence[str],
    trials: int = 60,
    episodes: int = 6,
    seed: int = 0,
    out_dir: Path = TUNED_DIR,
    workers: int | None = 1,
    ray_address: str | None = None,
) -> dict[str, Any]:
    """Search ``name``'s parameters; write ``params.json`` and ``trials.csv``; return the record.

    The trials run one after the other (TPE learns from each); a trial's episodes fan out
    over ``workers`` processes or Ray (:class:`~shift_rl.distributed.FanOut`), which changes
    nothing in the result.
    """
    import optuna

    if name not in SEARCH_SPACES:
        raise ValueError(f"no search space for {name!r}; tunable: {sorted(SEARCH_SPACES)}")
    check_dir(out_dir / name, TUNED_KIND, legacy=_previous_tuning)  # before the search runs
    configs = [load_scenario(s) for s in scenarios]
    seeds = [TRAIN_SEED_BASE + i for i in range(episodes)]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    started = time.perf_counter()
    # the untuned defaults are the first trial, so tuning can only help
    defaults = asdict(DEFAULTS[name]())
    study.enqueue_trial({k: defaults[k] for k in SEARCH_SPACES[name]})
    with FanOut(workers, ray_address) as pool:
        study.optimize(
            lambda t: score(name, _suggest(t, SEARCH_SPACES[name]), configs, seeds, pool),
            n_trials=trials,
        )
    best = dict(study.best_params)
    default_score = study.trials[0].value
    record = {
        "policy": name,
        "params": best,
        "objective": study.best_value,
        "default_objective": default_score,
        "search": {
            "method": "optuna TPE",
            "objective": "mean episode return",
            "trials": trials,
            "scenarios": list(scenarios),
            "seeds": seeds,
            "sampler_seed": seed,
            "seconds": round(time.perf_counter() - started, 1),
            "command": " ".join(["python", *sys.argv]) if sys.argv[0] else "",
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
            f"python {platform.python_version()}",
        },
    }
    folder = claim_dir(out_dir / name, TUNED_KIND, legacy=_previous_tuning)
    folder.write_text("params.json", json.dumps(record, indent=2, sort_keys=True) + "\n")
    keys = sorted({k for t in study.trials for k in t.params})
    rows = ["trial,value," + ",".join(keys)]
    for t in study.trials:
        rows.append(f"{t.number},{t.value}," + ",".join(str(t.params.get(k, "")) for k in keys))
    folder.write_text("trials.csv", "\n".join(rows) + "\n")
    return record


TUNED_KIND = "tuned parameters"


def _previous_tuning(folder: Path) -> list[str] | None:
    """A folder of tuned parameters written before output markers: its params.json."""
    if (folder / "params.json").is_file():
        return [n for n in ("params.json", "trials.csv") if (folder / n).is_file()]
    return None
