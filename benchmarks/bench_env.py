"""Env step cost: shift_rl scenarios side by side with gymnasium's CartPole-v1, in one run.

    python benchmarks/bench_env.py [--steps 20000] [--rounds 5] [--clock wall|cpu]

Both envs are made with ``gymnasium.make`` (so both carry the same default wrappers).
Actions are drawn in advance (uniform over the action space; for shift_rl also a run that
samples among the action mask every step, which adds the mask and the sampling). Rounds
alternate between the envs so machine noise hits both alike; the median round is reported.
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym
import numpy as np

import shift_rl
from shift_rl.machine import describe

CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}
"""``cpu`` counts this thread's CPU time only: steadier than wall time on a shared machine."""
clock = time.perf_counter


def _time_steps(env: gym.Env, actions: list, masked: bool, rng: np.random.Generator) -> float:
    """Seconds per step over ``len(actions)`` steps, resets excluded from the clock."""
    env.reset(seed=0)
    base = env.unwrapped
    total = 0.0
    nvec = getattr(env.action_space, "nvec", None)
    for a in actions:
        t0 = clock()
        if masked:
            mask = base.action_masks()
            splits = np.split(mask, np.cumsum(nvec)[:-1])
            a = np.array([rng.choice(np.flatnonzero(s)) for s in splits])
        _, _, term, trunc, _ = env.step(a)
        total += clock() - t0
        if term or trunc:
            env.reset()
    return total / len(actions)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--steps", type=int, default=20000, help="steps per round (default 20000)")
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    ap.add_argument("--scenarios", default="default,large", help="comma-separated scenario names")
    ap.add_argument("--clock", choices=CLOCKS, default="wall", help="wall (default) or cpu time")
    args = ap.parse_args()
    global clock
    clock = CLOCKS[args.clock]
    if args.steps < 100 or args.rounds < 1:
        ap.error("--steps must be >= 100 and --rounds >= 1")
    rng = np.random.default_rng(0)

    cases: dict[str, tuple[gym.Env, list, bool]] = {}
    cart = gym.make("CartPole-v1")
    cart.action_space.seed(0)
    cases["CartPole-v1"] = (cart, [cart.action_space.sample() for _ in range(args.steps)], False)
    for name in args.scenarios.split(","):
        env = gym.make(shift_rl.ENV_ID, scenario=name)
        env.action_space.seed(0)
        acts = [env.action_space.sample() for _ in range(args.steps)]
        cases[name] = (env, acts, False)
        cases[f"{name} (masked sampling)"] = (env, acts, True)
    for env, acts, masked in cases.values():  # warm-up: numba compilation, caches
        _time_steps(env, acts[:200], masked, rng)

    results: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.rounds):
        for key, (env, acts, masked) in cases.items():
            results[key].append(_time_steps(env, acts, masked, rng))

    cart_us = statistics.median(results["CartPole-v1"]) * 1e6
    print(f"machine: {describe()}")
    print(f"numpy {np.__version__}, gymnasium {gym.__version__}")
    print(f"{args.rounds} rounds x {args.steps} steps, median round, {args.clock} clock\n")
    print("| env | us / step | steps / s | x CartPole |")
    print("|---|---:|---:|---:|")
    for key, vals in results.items():
        us = statistics.median(vals) * 1e6
        print(f"| {key} | {us:.1f} | {1e6 / us:,.0f} | {us / cart_us:.1f} |")


if __name__ == "__main__":
    main()
