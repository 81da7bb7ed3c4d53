"""Fan-out on Ray vs serial: evaluation wall time, per-task and per-trial overhead.

    python benchmarks/bench_ray.py --json benchmarks/ray_results.json     # ~7 min on 2 cores

Measured in one run, so the ratios are side by side under the same load:

1. **Evaluation, end to end**: ``scripts/evaluate.py`` on ``--episodes`` paired episodes of
   the default scenario (ppo-default, potential, hpa, static and the oracle), as a user
   runs it: serial, ``--workers 2`` and ``--ray --workers 2`` (a local Ray with 2 CPUs,
   started by the command). Fresh processes: interpreter start, imports, Ray start and every
   worker's numba compilation are included; median of ``--e2e-rounds``. Every JSON file
   written is compared byte for byte.
2. **Evaluation, warm**: the same evaluation in one process, the workers already started and
   compiled (a Ray session kept across calls, as a sweep or a long tuning run keeps it);
   median of ``--rounds`` alternating rounds.
3. **Per-task overhead**: no-op tasks, submitted all at once (cost per task when the queue
   is full) and one after the other (a round trip), on Ray and on a process pool.
4. **Per-trial overhead of Tune**: trials that do nothing, and trials that import the trainer
   and play one 120-tick episode (the start-up every sweep trial pays: a new process, torch,
   SB3 and the numba kernels compiled), run by Tune on 2 CPUs.
5. **A trial's training rate**: ``train()`` of the ``ppo_lr_entropy`` sweep's configuration
   for ``--trial-steps`` steps, from which the paper estimate of a 100-trial sweep follows:
   on N trial slots, FIFO takes ceil(100 / N) x (trial + start-up); ASHA about
   100 x (share x trial + start-up) / N, share being the expected part of the budget a trial
   trains when 1 / reduction_factor of the trials pass each rung (never less than one
   full trial).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shift_rl.distributed import LOCAL_RAY, FanOut, noop, start_ray  # noqa: E402
from shift_rl.evaluate import evaluate  # noqa: E402
from shift_rl.machine import describe  # noqa: E402

POLICIES = [str(ROOT / "agents" / "ppo-default"), "potential", "hpa", "static"]


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def end_to_end(episodes: int, tmp: Path, rounds: int) -> dict:
    """The CLI in fresh processes: serial, 2 processes, local Ray with 2 CPUs (median)."""
    base = [sys.executable, str(ROOT / "scripts" / "evaluate.py"), "--policies",
            ",".join(POLICIES), "--scenario", "default", "--episodes", str(episodes),
            "--seed", "0"]  # fmt: skip
    modes = {
        "serial": [],
        "processes (2)": ["--workers", "2"],
        "local Ray (2)": ["--ray", "--workers", "2"],
    }
    pythonpath = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": pythonpath}
    times: dict[str, list[float]] = {k: [] for k in modes}
    texts = set()
    for _ in range(rounds):
        for name, extra in modes.items():
            path = tmp / f"{name.split()[0]}.json"
            t = time.perf_counter()
            cmd = [*base, *extra, "--json", str(path)]
            subprocess.run(cmd, check=True, env=env, capture_output=True)
            times[name].append(time.perf_counter() - t)
            texts.add(path.read_bytes())
    return {
        "median_seconds": {k: round(statistics.median(v), 2) for k, v in times.items()},
        "all_seconds": {k: [round(x, 2) for x in v] for k, v in times.items()},
        "identical_json": len(texts) == 1,
    }


def warm(episodes: int, rounds: int) -> dict:
    """evaluate() in this process with warm workers; median of alternating rounds."""
    modes = {"serial": (1, None), "processes (2)": (2, None), "local Ray (2)": (2, LOCAL_RAY)}
    times: dict[str, list[float]] = {k: [] for k in modes}
    results = {}
    for r in range(rounds + 1):  # round 0 warms up (compiles here and in the Ray workers)
        for name, (workers, address) in modes.items():
            t = time.perf_counter()
            rep = evaluate(POLICIES, "default", episodes, 0, workers=workers, ray_address=address)
            if r > 0:
                times[name].append(time.perf_counter() - t)
            results[name] = json.dumps(rep.to_dict(), sort_keys=True)
    med = {k: round(statistics.median(v), 3) for k, v in times.items()}
    return {
        "median_seconds": med,
        "all_seconds": {k: [round(x, 3) for x in v] for k, v in times.items()},
        "episodes_x_policies": episodes * (len(POLICIES) + 1),
        "identical_json": len(set(results.values())) == 1,
    }


def per_task(n_batch: int = 2000, n_seq: int = 200) -> dict:
    """No-op tasks: throughput with a full queue, and one round trip at a time."""
    out = {}
    for name, (workers, address) in {
        "local Ray (2)": (2, LOCAL_RAY),
        "processes (2)": (2, None),
    }.items():
        with FanOut(workers, address) as pool:
            pool.map(noop, range(50))  # warm
            t = time.perf_counter()
            assert pool.map(noop, range(n_batch)) == list(range(n_batch))
            batch = (time.perf_counter() - t) / n_batch
            t = time.perf_counter()
            for i in range(n_seq):
                pool.map(noop, [i])
            seq = (time.perf_counter() - t) / n_seq
        out[name] = {
            "us_per_task_batched": round(batch * 1e6, 1),
            "ms_per_round_trip": round(seq * 1e3, 3),
        }
    return out


def _empty_trial(config: dict) -> None:
    from ray import tune

    tune.report({"x": config["i"]})


def _startup_trial(config: dict) -> None:
    from ray import tune

    from shift_rl.agents import make_policy
    from shift_rl.config import load_scenario
    from shift_rl.env import ResourceShiftEnv
    from shift_rl.evaluate import run_episode
    from shift_rl.train import train  # noqa: F401  (torch and SB3, as a sweep trial imports)

    env = ResourceShiftEnv(load_scenario("default").model_copy(update={"episode_ticks": 120}))
    ret = run_episode(env, make_policy("potential", env.params), "potential", 0, 1).ret
    tune.report({"x": float(ret)})


def per_trial(trials: int, tmp: Path) -> dict:
    """Tune on 2 CPUs: wall time per trial-slot of empty trials and of start-up trials."""
    from ray import tune

    out = {}
    kinds = {"empty": _empty_trial, "start-up (imports + 1 episode)": _startup_trial}
    for name, fn in kinds.items():
        t = time.perf_counter()
        tuner = tune.Tuner(
            tune.with_resources(fn, {"cpu": 1}),
            param_space={"i": tune.grid_search(list(range(trials)))},
            run_config=tune.RunConfig(
                name=name.split()[0], storage_path=str(tmp / "tune"), verbose=0
            ),
        )
        grid = tuner.fit()
        assert not grid.errors, grid.errors
        wall = time.perf_counter() - t
        out[name] = {
            "trials": trials,
            "wall_seconds": round(wall, 2),
            "cpu_seconds_per_trial": round(2 * wall / trials, 2),
        }
    return out


def trial_rate(steps: int, tmp: Path) -> dict:
    """train() of the ppo_lr_entropy configuration for ``steps`` steps, in this process."""
    from shift_rl.sweep import load_sweep
    from shift_rl.train import train

    _, trials = load_sweep(ROOT / "configs" / "sweeps" / "ppo_lr_entropy.yaml")
    from shift_rl.config import train_config_from_dict

    data = dict(trials[0].train_config)
    cfg = train_config_from_dict(data, [f"total_timesteps={steps}"], "bench")
    t = time.perf_counter()
    res = train(cfg, out=tmp / "policy", run_dir=tmp / "run", progress=False, evaluate_at_end=False)
    return {
        "steps": res.timesteps,
        "seconds": round(time.perf_counter() - t, 2),
        "validations": steps // cfg.evaluation.every_timesteps,
        "full_trial_steps": trials[0].train_config["total_timesteps"],
    }


def asha_fraction(grace: int, max_t: int, rf: float) -> float:
    """Expected share of the full budget an ASHA trial trains, if ``1/rf`` pass each rung."""
    rungs, t = [], grace
    while t < max_t:
        rungs.append(t)
        t = int(t * rf)
    share, alive = 0.0, 1.0
    for t in rungs:
        stop = alive * (1 - 1 / rf)
        share += stop * t / max_t
        alive -= stop
    return share + alive


def estimate(rec: dict, trials: int = 100, widths: tuple[int, ...] = (1, 2, 8, 32, 100)) -> dict:
    """On paper: wall time of a ``trials``-trial ppo_lr_entropy-like sweep on N trial slots."""
    from shift_rl.sweep import load_sweep

    spec, _ = load_sweep(ROOT / "configs" / "sweeps" / "ppo_lr_entropy.yaml")
    tr = rec["trial_rate"]
    full = tr["full_trial_steps"]
    t_trial = tr["seconds"] * full / tr["steps"]  # linear in steps: fixed costs scaled too
    overhead = rec["per_trial"]["start-up (imports + 1 episode)"]["cpu_seconds_per_trial"]
    f = asha_fraction(spec.scheduler.grace_period, full, spec.scheduler.reduction_factor)
    rows = []
    for n in widths:
        fifo = -(-trials // n) * (t_trial + overhead)
        asha = max(trials * (f * t_trial + overhead) / n, t_trial + overhead)
        rows.append({"slots": n, "fifo_minutes": round(fifo / 60, 1),
                     "asha_minutes": round(asha / 60, 1)})  # fmt: skip
    return {"trial_seconds": round(t_trial, 1), "overhead_seconds": overhead,
            "asha_budget_share": round(f, 3), "trials": trials, "rows": rows}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--episodes", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=5, help="warm rounds (default 5)")
    ap.add_argument("--e2e-rounds", type=int, default=2, help="end-to-end rounds (default 2)")
    ap.add_argument("--tune-trials", type=int, default=8)
    ap.add_argument("--trial-steps", type=int, default=115_200)
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()
    import ray

    rec: dict = {
        "machine": describe(),
        "ray": ray.__version__,
        "load_start": _load(),
        "date": time.strftime("%Y-%m-%d"),
    }
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rec["end_to_end"] = end_to_end(args.episodes, tmp, args.e2e_rounds)
        print(json.dumps(rec["end_to_end"]), flush=True)
        start_ray(LOCAL_RAY, 2)  # one session for the warm figures and Tune
        rec["warm"] = warm(args.episodes, args.rounds)
        print(json.dumps(rec["warm"]), flush=True)
        rec["per_task"] = per_task()
        print(json.dumps(rec["per_task"]), flush=True)
        rec["per_trial"] = per_trial(args.tune_trials, tmp)
        print(json.dumps(rec["per_trial"]), flush=True)
        ray.shutdown()
        rec["trial_rate"] = trial_rate(args.trial_steps, tmp)
        print(json.dumps(rec["trial_rate"]), flush=True)
    rec["load_end"] = _load()
    rec["estimate"] = estimate(rec)
    if args.json:
        args.json.write_text(json.dumps(rec, indent=2) + "\n")
    print(json.dumps(rec, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
