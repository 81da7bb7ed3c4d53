"""Batched env throughput and end-to-end PPO training speed, side by side in one run.

    python benchmarks/bench_vector.py [--scenarios default,large] [--sizes 1,16,256,4096]
        [--sync-max 256] [--rounds 3] [--train-rollouts 2] [--train-n-envs 8] [--skip-train]

**Env steps.** For each scenario and batch size N: ``ResourceShiftVectorEnv`` (``make_vec``,
``vector_entry_point``), Gymnasium's ``SyncVectorEnv`` of single envs (``make_vec``,
``sync``; only up to ``--sync-max`` envs: it is N single envs in a Python loop) and, as a
yardstick, Gymnasium's own vector CartPole (``make_vec("CartPole-v1", vector_entry_point)``).
The single env (``gym.make``, N = 1) is the reference. Actions are drawn in advance,
uniformly over the action space. Per case: the *step* cost (median over ``--rounds`` rounds
of a run of steps inside one episode), the *reset* cost (one ``reset`` of all N envs: an
episode's exogenous draws), and the *amortized* cost per env-step of whole episodes, ``step
+ reset / episode_ticks``, which is what a long run pays. Rounds alternate between cases so
machine noise hits all alike.

**Training.** ``configs/train/ppo_default.yaml`` (n_envs 8, n_steps 720, batch 720, 10
epochs, MLP 128x128, 8 variants, regret reward) with ``vec_env`` dummy, subproc (fork) or
batched, PPO and MaskablePPO, built by ``shift_rl.train.build_model`` for every vec_env (the
same policy classes, so the ratios compare the envs): one rollout of warm-up (numba caches,
first resets), then ``--train-rollouts`` rollouts timed; reported as env-steps per second,
with the time spent collecting rollouts (env + policy inference) and updating the network.
``--train-n-envs 8,64`` adds runs with more envs (other hyperparameters unchanged; subproc
only up to 8 envs); ``--train-set key=value`` overrides more of the config (e.g.
``reward=env``: no oracle bound per episode).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import shift_rl
from shift_rl.config import load_scenario, load_train_config
from shift_rl.machine import cpu_model

ROOT = Path(__file__).resolve().parents[1]


def _rss_gb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1e6
    return float("nan")


class Case:
    """One env to time: a vector env of ``n`` envs (or the single env when ``single``)."""

    def __init__(self, label: str, env: Any, n: int, ticks: int, single: bool = False) -> None:
        """``ticks``: episode length (0: the env ends episodes itself, as CartPole)."""
        self.label, self.env, self.n, self.ticks, self.single = label, env, n, ticks, single
        space = env.action_space
        space.seed(0)
        self.actions = [space.sample() for _ in range(64)]
        self.steps: list[float] = []  # seconds per env-step, per round
        self.reset_s = float("nan")  # seconds per env of one reset
        self.t = 0  # steps into the current episode

    def reset(self, seed: int) -> None:
        """Time resets of all ``n`` envs (repeated while short); median seconds per env."""
        times: list[float] = []
        while not times or (len(times) < 25 and sum(times) < 0.3):
            t0 = time.perf_counter()
            self.env.reset(seed=seed + len(times))
            times.append(time.perf_counter() - t0)
        self.reset_s = statistics.median(times) / self.n
        self.t = 0

    def run(self, calls: int) -> None:
        """Time ``calls`` steps, inside one episode (CartPole: its own autoresets included)."""
        if self.ticks and self.t + calls > self.ticks - 1:
            self.env.reset(seed=1)  # not timed: resets are timed apart
            self.t = 0
        env, acts = self.env, self.actions
        t0 = time.perf_counter()
        for i in range(calls):
            env.step(acts[i % len(acts)])
        self.steps.append((time.perf_counter() - t0) / (calls * self.n))
        self.t += calls

    @property
    def step_s(self) -> float:
        return statistics.median(self.steps)

    @property
    def amortized_s(self) -> float:
        return self.step_s + (self.reset_s / self.ticks if self.ticks else 0.0)


def bench_envs(args: argparse.Namespace) -> None:
    sizes = [int(s) for s in args.sizes.split(",")]
    cases: list[Case] = []
    for name in args.scenarios.split(","):
        ticks = load_scenario(name).episode_ticks
        single = gym.make(shift_rl.ENV_ID, scenario=name)
        cases.append(Case(f"{name} | single env (gym.make) | 1", single, 1, ticks, single=True))
        for n in sizes:
            before = _rss_gb()
            vec = gym.make_vec(shift_rl.ENV_ID, num_envs=n, scenario=name,
                               vectorization_mode="vector_entry_point")  # fmt: skip
            vec.reset(seed=0)  # allocates and fills the exogenous arrays
            sim = vec.unwrapped.plane.sim
            exo = sum(getattr(sim, k).nbytes for k in vars(sim) if k.startswith("exo_"))
            print(f"# {name} N={n}: exogenous arrays {exo / 1e9:.3f} GB "
                  f"({exo / n / 1e3:.0f} kB/env), RSS +{_rss_gb() - before:.2f} GB",
                  file=sys.stderr, flush=True)  # fmt: skip
            cases.append(Case(f"{name} | batched | {n}", vec, n, ticks))
            if n <= args.sync_max:
                sync = gym.make_vec(shift_rl.ENV_ID, num_envs=n, scenario=name,
                                    vectorization_mode="sync")  # fmt: skip
                cases.append(Case(f"{name} | SyncVectorEnv | {n}", sync, n, ticks))
    for n in sizes:
        cart = gym.make_vec("CartPole-v1", num_envs=n, vectorization_mode="vector_entry_point")
        cases.append(Case(f"CartPole-v1 | CartPoleVectorEnv | {n}", cart, n, 0))

    for c in cases:  # warm-up (numba, caches), then resets of every env timed
        c.env.reset(seed=0)
        c.run(3)
        c.run(3)  # the first steps after make load compiled code: not a measurement
        c.reset(seed=123)
        print(f"# reset {c.label}: {c.reset_s * 1e3:.3f} ms/env", file=sys.stderr, flush=True)
    for r in range(args.rounds):
        for c in cases:
            # about args.seconds of work per round, inside one episode
            calls = int(min(max(args.seconds / (c.steps[-1] * c.n), 3), 500))
            if r == 0:
                c.steps.clear()  # drop the warm-up
            c.run(calls)
        print(f"# round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)

    print("\n### Env steps\n")
    print("us = microseconds per env-step; amortized = step + reset / episode_ticks; "
          "x single = single env's amortized cost / this one's (same scenario)\n")  # fmt: skip
    print("| scenario | env | N | step us | reset ms/env | amortized us | env-steps/s | "
          "x single (amortized) | x single (step) |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    ref: dict[str, Case] = {}
    for c in cases:
        scen = c.label.split(" | ")[0]
        if c.single:
            ref[scen] = c
        base = ref.get(scen)
        xa = f"{base.amortized_s / c.amortized_s:.1f}" if base else ""
        xs = f"{base.step_s / c.step_s:.1f}" if base else ""
        reset = f"{c.reset_s * 1e3:.3f}" if c.ticks else "-"
        print(f"| {c.label} | {c.step_s * 1e6:.2f} | {reset} | {c.amortized_s * 1e6:.2f} | "
              f"{1 / c.amortized_s:,.0f} | {xa} | {xs} |")  # fmt: skip
    for c in cases:
        c.env.close()
    cases.clear()
    gc.collect()


def bench_training(args: argparse.Namespace) -> None:
    import torch
    from stable_baselines3.common.callbacks import BaseCallback

    from shift_rl.train import build_model
    from shift_rl.training_envs import make_variants, make_vec_env

    class Timer(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.collect, self.t0 = 0.0, 0.0

        def _on_rollout_start(self) -> None:
            self.t0 = time.perf_counter()

        def _on_rollout_end(self) -> None:
            self.collect += time.perf_counter() - self.t0

        def _on_step(self) -> bool:
            return True

    extra = f", {' '.join(args.train_set)}" if args.train_set else ""
    print(f"\n### End-to-end training (configs/train/ppo_default.yaml{extra})\n")
    print("| algo | n_envs | vec_env | env-steps/s | x dummy | x best other | collect s | "
          "update s |")  # fmt: skip
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for n_envs in [int(s) for s in args.train_n_envs.split(",")]:
        for algo in ("ppo", "maskable_ppo"):
            rates: dict[str, float] = {}
            for kind in ("dummy", "subproc", "batched"):
                if kind == "subproc" and n_envs > 8:
                    continue
                cfg = load_train_config(
                    None, [*args.train_set, f"vec_env={kind}", f"algo={algo}", f"n_envs={n_envs}"]
                )
                torch.set_num_threads(cfg.torch_threads)
                scenario = load_scenario(cfg.scenario)
                venv = make_vec_env(cfg, make_variants(scenario, cfg.randomization, cfg.seed))
                model = build_model(cfg, venv, Path("/tmp/bench_vector_tb"))
                model.tensorboard_log = None
                rollout = cfg.ppo.n_steps * n_envs
                model.learn(rollout)  # warm-up
                timer = Timer()
                steps = rollout * args.train_rollouts
                t0 = time.perf_counter()
                model.learn(steps, callback=timer, reset_num_timesteps=False)
                seconds = time.perf_counter() - t0
                venv.close()
                rates[kind] = steps / seconds
                others = [v for k, v in rates.items() if k != kind]
                best = f"{rates[kind] / max(others):.2f}" if kind == "batched" else ""
                print(f"| {algo} | {n_envs} | {kind} | {rates[kind]:,.0f} | "
                      f"{rates[kind] / rates['dummy']:.2f} | {best} | {timer.collect:.1f} | "
                      f"{seconds - timer.collect:.1f} |", flush=True)  # fmt: skip
                del model, venv
                gc.collect()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--scenarios", default="default,large")
    ap.add_argument("--sizes", default="1,16,256,4096", help="batch sizes N")
    ap.add_argument("--sync-max", type=int, default=256, help="largest N for SyncVectorEnv")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=1.0, help="work per case and round")
    ap.add_argument("--train-rollouts", type=int, default=2, help="timed rollouts per run")
    ap.add_argument("--train-n-envs", default="8", help="comma-separated n_envs for training")
    ap.add_argument(
        "--train-set", action="append", default=[], help="extra config override key=value"
    )
    ap.add_argument("--skip-envs", action="store_true")
    ap.add_argument("--skip-train", action="store_true")
    args = ap.parse_args()
    import numba
    import stable_baselines3
    import torch

    cpu = cpu_model()
    print(f"machine: {cpu}, nproc {os.cpu_count()}, load average at start "
          f"{os.getloadavg()[0]:.2f}; python {platform.python_version()}, numpy "
          f"{np.__version__}, numba {numba.__version__}, gymnasium {gym.__version__}, "
          f"stable-baselines3 {stable_baselines3.__version__}, "
          f"torch {torch.__version__}")  # fmt: skip
    print(f"command: python benchmarks/bench_vector.py {' '.join(sys.argv[1:])}")
    if not args.skip_envs:
        bench_envs(args)
    if not args.skip_train:
        bench_training(args)
    print(f"\nload average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
