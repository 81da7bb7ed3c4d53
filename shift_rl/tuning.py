"""Tune a baseline's parameters on training scenarios and seeds only, then save them.

A learned policy is only compared with a baseline at its best. The search (Optuna's TPE
sampler, seeded) maximizes a score over training episodes, with seeds from
``TRAIN_SEED_BASE`` on: disjoint from the seeds evaluations report (0, 1, 2, ...). The best
parameters, the default parameters' score on the same episodes and every trial are saved to
``<out_dir>/<policy>/`` (``params.json``, ``trials.csv``). Two kinds of training set:

* :func:`tune`: named scenarios; the score is the mean episode return over ``episodes``
  episodes per scenario. Written to ``agents/<policy>/``: the parameters ``make_policy``
  (and so every script that names the policy on one scenario) uses by default.
* :func:`tune_suite`: the ``train`` members of a workload suite (:mod:`shift_rl.suite`:
  training variants, the early part of every trace), optionally without some families
  (leave-one-family-out). A member's score is its mean return **per tick** over its
  scenarios and ``episodes`` seeds each (members have different episode lengths), the score
  the mean over members (each member weighs alike, whatever its variant count). Written to
  ``agents/suites/<suite name>/<policy>/`` (:data:`~shift_rl.agents.SUITE_TUNED_DIR`; a
  suite with families left out is named ``<suite>-without-<families>``), never over the
  scenario-tuned ``agents/<policy>/``: those stay what the shipped scenarios use, the suite's
  are what ``scripts/benchmark.py`` compares against on the same suite.
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

from shift_rl.agents import POLICIES, SUITE_TUNED_DIR, TUNED_DIR, make_policy
from shift_rl.agents.autoscalers import HPAParams, ProportionalParams
from shift_rl.agents.oracle import MPCParams
from shift_rl.agents.potential import PotentialParams
from shift_rl.config import PROJECT_ROOT, ConfigError, ScenarioConfig, load_scenario
from shift_rl.distributed import FanOut
from shift_rl.env import ResourceShiftEnv
from shift_rl.evaluate import run_episode
from shift_rl.outputs import check_dir, claim_dir
from shift_rl.seeds import TRAIN_SEED_BASE
from shift_rl.suite import Expansion, Suite, expand_suite, load_suite

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
    "proportional": {
        "hysteresis": ("float", 0.0, 6.0),
    },
    "mpc": {
        "horizon": ("categorical", [2, 4, 6, 8]),
        "candidates": ("categorical", [8, 16]),
        "hedge": ("float", 0.0, 1.0),
    },
}
"""Per tunable policy: parameter -> (kind, range or choices) of the search."""
DEFAULTS = {"potential": PotentialParams, "hpa": HPAParams, "proportional": ProportionalParams,
            "mpc": MPCParams}  # fmt: skip


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
    if name in SEARCH_SPACES:  # exactly these parameters, never agents/<name>/ underneath
        policy = POLICIES[name](env.params, **params)
    else:
        policy = make_policy(name, env.params, **params)
    return [run_episode(env, policy, name, i, s).ret for i, s in enumerate(seeds)]


def _all_returns(
    name: str,
    params: dict[str, Any],
    scenarios: Sequence[ScenarioConfig],
    seeds: Sequence[int],
    pool: FanOut,
) -> list[list[float]]:
    """Per scenario, the returns of its episodes ``seeds`` (in order), fanned out over
    ``pool``: the same numbers however the episodes were spread."""
    chunks = max(1, min(len(seeds), -(-pool.width // len(scenarios))))
    parts = [list(seeds)[k::chunks] for k in range(chunks)]
    tasks = [(cfg, name, params, part) for cfg in scenarios for part in parts]
    done = pool.map(_returns, *zip(*tasks, strict=True))
    out: list[list[float]] = []
    for j in range(len(scenarios)):
        by_seed = {}
        for part, rets in zip(parts, done[j * chunks : (j + 1) * chunks], strict=True):
            by_seed.update(zip(part, rets, strict=True))
        out.append([by_seed[s] for s in seeds])
    return out


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
    total = [r for rets in _all_returns(name, params, scenarios, seeds, pool) for r in rets]
    return float(np.mean(total))


def member_scores(
    name: str,
    params: dict[str, Any],
    expansion: Expansion,
    seeds: Sequence[int],
    pool: FanOut | None = None,
) -> dict[str, float]:
    """Per member of ``expansion`` (in suite order): the mean return per tick over its
    scenarios and ``seeds``. Bit for bit the same however the episodes fan out."""
    if pool is None:
        with FanOut() as serial:
            return member_scores(name, params, expansion, seeds, serial)
    configs = [sc.scenario for sc in expansion.scenarios]
    rets = _all_returns(name, params, configs, seeds, pool)
    per_member: dict[str, list[float]] = {}
    for sc, r in zip(expansion.scenarios, rets, strict=True):
        ticks = max(int(sc.scenario.episode_ticks), 1)
        per_member.setdefault(sc.member, []).extend(x / ticks for x in r)
    return {m: float(np.mean(v)) for m, v in per_member.items()}


def suite_score(per_member: dict[str, float]) -> float:
    """The suite objective: the mean over members of their mean return per tick."""
    return float(np.mean(list(per_member.values())))


def _study(name: str, seed: int) -> Any:
    """A seeded TPE study whose first trial is the untuned defaults (tuning can only help)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    defaults = asdict(DEFAULTS[name]())
    study.enqueue_trial({k: defaults[k] for k in SEARCH_SPACES[name]})
    return study


def _check_name(name: str) -> None:
    if name not in SEARCH_SPACES:
        raise ValueError(f"no search space for {name!r}; tunable: {sorted(SEARCH_SPACES)}")


def _provenance(trials: int, seed: int, started: float) -> dict[str, Any]:
    return {
        "method": "optuna TPE",
        "trials": trials,
        "sampler_seed": seed,
        "seconds": round(time.perf_counter() - started, 1),
        "command": " ".join(["python", *sys.argv]) if sys.argv[0] else "",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"python {platform.python_version()}",
    }


def _write(folder_path: Path, record: dict[str, Any], study: Any) -> None:
    folder = claim_dir(folder_path, TUNED_KIND, legacy=_previous_tuning)
    folder.write_text("params.json", json.dumps(record, indent=2, sort_keys=True) + "\n")
    keys = sorted({k for t in study.trials for k in t.params})
    rows = ["trial,value," + ",".join(keys)]
    for t in study.trials:
        rows.append(f"{t.number},{t.value}," + ",".join(str(t.params.get(k, "")) for k in keys))
    folder.write_text("trials.csv", "\n".join(rows) + "\n")


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
    _check_name(name)
    check_dir(out_dir / name, TUNED_KIND, legacy=_previous_tuning)  # before the search runs
    configs = [load_scenario(s) for s in scenarios]
    seeds = [TRAIN_SEED_BASE + i for i in range(episodes)]
    study = _study(name, seed)
    started = time.perf_counter()
    with FanOut(workers, ray_address) as pool:
        study.optimize(
            lambda t: score(name, _suggest(t, SEARCH_SPACES[name]), configs, seeds, pool),
            n_trials=trials,
        )
    record = {
        "policy": name,
        "params": dict(study.best_params),
        "objective": study.best_value,
        "default_objective": study.trials[0].value,
        "search": {
            **_provenance(trials, seed, started),
            "objective": "mean episode return",
            "scenarios": list(scenarios),
            "seeds": seeds,
        },
    }
    _write(out_dir / name, record, study)
    return record


def suite_out_dir(suite_name: str) -> Path:
    """Where :func:`tune_suite` writes by default: ``agents/suites/<suite name>/``."""
    return SUITE_TUNED_DIR / suite_name


def _shown_path(path: str | Path) -> str:
    p = Path(path).resolve()
    try:
        return str(p.relative_to(PROJECT_ROOT))
    except ValueError:
        return str(p)


def tune_suite(
    name: str,
    suite: str | os.PathLike | Suite,
    trials: int = 40,
    episodes: int = 2,
    seed: int = 0,
    out_dir: Path | None = None,
    leave_out: Sequence[str] = (),
    workers: int | None = 1,
    ray_address: str | None = None,
) -> dict[str, Any]:
    """Search ``name``'s parameters on the ``train`` members of ``suite`` (without the
    families ``leave_out``): ``episodes`` training seeds per scenario, the score
    :func:`suite_score`. Writes ``<out_dir>/<name>/params.json`` and ``trials.csv``
    (``out_dir`` default: :func:`suite_out_dir` of the suite's name, ``-without-...`` for
    left-out families) and returns the record, which names the suite, its members, their
    scenarios, the seeds and each member's score at the best and at the default parameters.
    """
    import hashlib

    _check_name(name)
    s = load_suite(suite)
    expansion = expand_suite(s, "train", leave_out=leave_out)
    if not expansion.scenarios:
        notes = "; ".join(expansion.skipped) or "no member is for the train split"
        raise ConfigError(f"suite {s.name!r} has no train scenario to tune on: {notes}")
    out_dir = suite_out_dir(expansion.suite) if out_dir is None else Path(out_dir)
    check_dir(out_dir / name, TUNED_KIND, legacy=_previous_tuning)  # before the search runs
    seeds = [TRAIN_SEED_BASE + i for i in range(episodes)]
    study = _study(name, seed)
    started = time.perf_counter()

    def objective(trial: Any) -> float:
        per_member = member_scores(
            name, _suggest(trial, SEARCH_SPACES[name]), expansion, seeds, pool
        )
        trial.set_user_attr("members", per_member)
        return suite_score(per_member)

    with FanOut(workers, ray_address) as pool:
        study.optimize(objective, n_trials=trials)
    members: dict[str, dict[str, Any]] = {}
    for sc in expansion.scenarios:
        m = members.setdefault(
            sc.member,
            {"member": sc.member, "class": sc.class_, "family": sc.family, "scenarios": []},
        )
        m["scenarios"].append(
            {"name": sc.scenario.name, "modules": len(sc.scenario.modules),
             "episode_ticks": int(sc.scenario.episode_ticks)}
        )  # fmt: skip
    source = Path(s.source)
    record = {
        "policy": name,
        "params": dict(study.best_params),
        "objective": study.best_value,
        "default_objective": study.trials[0].value,
        "members_objective": study.best_trial.user_attrs["members"],
        "members_default_objective": study.trials[0].user_attrs["members"],
        "search": {
            **_provenance(trials, seed, started),
            "objective": "mean over the suite's train members of the member's mean return per "
            "tick (its scenarios x seeds)",
            "suite": {
                "name": expansion.suite,
                "file": _shown_path(source) if source.is_file() else s.source,
                "sha256": hashlib.sha256(source.read_bytes()).hexdigest()
                if source.is_file() else None,
                "split": "train",
                "left_out": sorted(set(leave_out)),
                "skipped": list(expansion.skipped),
            },
            "members": list(members.values()),
            "episodes_per_scenario": episodes,
            "seeds": seeds,
        },
    }  # fmt: skip
    _write(out_dir / name, record, study)
    return record


TUNED_KIND = "tuned parameters"


def _previous_tuning(folder: Path) -> list[str] | None:
    """A folder of tuned parameters written before output markers: its params.json."""
    if (folder / "params.json").is_file():
        return [n for n in ("params.json", "trials.csv") if (folder / n).is_file()]
    return None
