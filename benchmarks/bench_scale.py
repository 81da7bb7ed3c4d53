"""Hot paths against the number of modules M: cost per call and per module.

    python benchmarks/bench_scale.py [--sizes 6,64,256,1024] [--steps 2000] [--clock cpu]
                                     [--action-mode shift]

Per M, one scenario: M = 6 is ``default``; any other M (a multiple of 8) is
``scale_1024``'s eight archetypes with M / 8 modules each (same seeds, jitter, pool of 2.5
units per module), so 64, 256 and 1024 differ only in their module count. Measured:

- **env step**: ``ResourceShiftEnv.step`` with uniform random actions (resets off the clock);
- **batched step**: ``ResourceShiftVectorEnv`` of 16 envs, one ``step`` of all 16;
- **potential / hpa / static / mpc**: ``policy.act(obs, mask)`` (tuned parameters, as evaluation
  loads them), on the observations of an episode the policy plays itself;
- **oracle bound**: ``oracle_goal`` for ``--oracle-ticks`` ticks of an episode, per tick;
- **controller tick**: ``ShiftController.tick`` with ``potential`` on the simulated backend,
  no state dir (so the simulator's step is inside, no journal I/O), inside one episode;
- **eval episode**: what ``shift_rl.evaluate.evaluate`` runs for one episode of potential,
  hpa and static plus the oracle bound (``--eval-ticks`` ticks; the env made once).

``--action-mode`` overrides the scenarios' ``action.mode`` (``plan`` by default, ``shift``
for the single-shift action the heuristics emitted before plans).

Calls per measurement shrink with M (``--steps`` x 64 / M, at least 20); each is repeated
``--rounds`` times and the median taken. ``--clock cpu`` counts this thread's CPU time
(steadier on a shared machine; numba and numpy here run on this thread).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from functools import partial

import numpy as np

from shift_rl.agents import oracle_goal, resolve_policy
from shift_rl.config import ScenarioConfig, _read_yaml, load_scenario, scenario_from_dict
from shift_rl.controller import ShiftController, SimulatedBackend
from shift_rl.env import ResourceShiftEnv
from shift_rl.evaluate import run_episode
from shift_rl.machine import describe
from shift_rl.vector import ResourceShiftVectorEnv

CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}
clock = time.perf_counter
HEURISTICS = ("potential", "hpa", "static")
DECISIONS = (*HEURISTICS, "mpc")
"""Timed per decision; the eval episode plays :data:`HEURISTICS`."""


def scenario_for(
    m: int, episode_ticks: int | None = None, action_mode: str | None = None
) -> ScenarioConfig:
    if m == 6:
        cfg = load_scenario("default")
        data = cfg.model_dump(mode="python")
    else:
        if m % 8:
            raise SystemExit(f"--sizes: {m} is neither 6 nor a multiple of 8")
        from shift_rl.config import SCENARIO_DIR

        data = copy.deepcopy(_read_yaml(SCENARIO_DIR / "scale_1024.yaml"))
        data["name"] = f"scale_{m}"
        for g in data["module_groups"]:
            g["count"] = m // 8
    if episode_ticks is not None:
        data["episode_ticks"] = episode_ticks
    if action_mode is not None:
        data["action"] = {**(data.get("action") or {}), "mode": action_mode}
    return scenario_from_dict(data, source=f"bench_scale M={m}")


def _median(fn, rounds: int) -> float:
    return statistics.median(fn() for _ in range(rounds))


def time_env_step(cfg: ScenarioConfig, n: int) -> float:
    env = ResourceShiftEnv(cfg)
    env.action_space.seed(0)
    acts = [env.action_space.sample() for _ in range(n)]
    env.reset(seed=0)
    total = 0.0
    for a in acts:
        t = clock()
        _, _, term, trunc, _ = env.step(a)
        total += clock() - t
        if term or trunc:
            env.reset()
    return total / n


def time_batched_step(cfg: ScenarioConfig, n: int, envs: int = 16) -> float:
    venv = ResourceShiftVectorEnv(envs, cfg)
    venv.action_space.seed(0)
    acts = [venv.action_space.sample() for _ in range(n)]
    venv.reset(seed=0)
    t = clock()
    for a in acts:
        venv.step(a)
    return (clock() - t) / n


def time_decision(cfg: ScenarioConfig, name: str, n: int) -> float:
    env = ResourceShiftEnv(cfg)
    policy = resolve_policy(name, env.params)
    obs, _ = env.reset(seed=0)
    policy.reset()
    total = 0.0
    for _ in range(n):
        mask = env.action_masks()
        t = clock()
        action = policy.act(obs, mask)
        total += clock() - t
        obs, _, term, trunc, _ = env.step(action)
        if term or trunc:
            obs, _ = env.reset()
            policy.reset()
    return total / n


def time_oracle(cfg: ScenarioConfig, ticks: int) -> float:
    short = scenario_from_dict({**cfg.model_dump(mode="python"), "episode_ticks": ticks})
    env = ResourceShiftEnv(short)
    env.reset(seed=0)
    t = clock()
    oracle_goal(env.params, env.plane.sim)
    return (clock() - t) / ticks


def time_controller(cfg: ScenarioConfig, n: int) -> float:
    backend = SimulatedBackend(cfg, seed=0)
    policy = resolve_policy("potential", backend.params)
    ctl = ShiftController(policy, backend, interval=0)
    ctl.run(5)
    t = clock()
    for _ in range(n):
        ctl.tick()
    return (clock() - t) / n


def time_eval_episode(cfg: ScenarioConfig) -> float:
    """One episode of potential, hpa and static and the oracle bound, as evaluation runs."""
    env = ResourceShiftEnv(cfg)
    policies = {name: resolve_policy(name, env.params) for name in HEURISTICS}
    t = clock()
    for name, policy in policies.items():
        run_episode(env, policy, name, 0, 0)
    env.reset(seed=0)
    oracle_goal(env.params, env.plane.sim)
    return clock() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="6,64,256,1024", help="module counts")
    ap.add_argument("--steps", type=int, default=2000, help="calls at M <= 64 (fewer above)")
    ap.add_argument("--rounds", type=int, default=3, help="repetitions, median taken")
    ap.add_argument("--oracle-ticks", type=int, default=60, help="ticks of the oracle bound")
    ap.add_argument("--eval-ticks", type=int, default=None, help="episode length (scenario's)")
    ap.add_argument("--clock", choices=CLOCKS, default="wall", help="wall (default) or cpu time")
    ap.add_argument("--action-mode", choices=("plan", "shift"), default=None,
                    help="override the scenarios' action.mode")  # fmt: skip
    args = ap.parse_args()
    global clock
    clock = CLOCKS[args.clock]
    sizes = [int(s) for s in args.sizes.split(",")]
    rows: dict[int, dict[str, float]] = {}
    started = time.perf_counter()
    load0 = os.getloadavg()[0]
    for m in sizes:
        cfg = scenario_for(m, action_mode=args.action_mode)
        n = max(20, args.steps * 64 // max(m, 64))
        if m == sizes[0]:  # warm-up: numba compilation (or cache loads), imports
            for fn, a in ((time_env_step, 20), (time_batched_step, 5), (time_controller, 5)):
                fn(cfg, a)
            for name in DECISIONS:
                time_decision(cfg, name, 5)
            time_oracle(cfg, 2)
        jobs = {
            "env step": partial(time_env_step, cfg, n),
            "batched step (16 envs)": partial(time_batched_step, cfg, max(10, n // 8)),
            **{f"{h} decision": partial(time_decision, cfg, h, n) for h in DECISIONS},
            "oracle bound, per tick": partial(time_oracle, cfg, args.oracle_ticks),
            "controller tick": partial(time_controller, cfg, min(n, cfg.episode_ticks - 10)),
        }
        r = {key: _median(fn, args.rounds) for key, fn in jobs.items()}
        r["eval episode (3 policies + oracle)"] = time_eval_episode(
            scenario_for(m, args.eval_ticks, args.action_mode)
        )
        rows[m] = r
        print(f"  M={m} done ({time.perf_counter() - started:.0f} s)", flush=True)
    load1 = os.getloadavg()[0]

    print(f"\nmachine: {describe()}, numpy {np.__version__}")
    print(f"load average {load0:.1f} at start, {load1:.1f} at end; {args.clock} clock, "
          f"median of {args.rounds}; eval episode: one run; "
          f"action mode: {args.action_mode or 'as the scenarios'}\n")  # fmt: skip
    ref = 64 if 64 in rows else sizes[0]
    head = " | ".join(f"M={m}" for m in sizes)
    print(f"| path | {head} | per module {ref} -> {sizes[-1]} |")
    print("|---|" + "---:|" * (len(sizes) + 1))
    for key in rows[sizes[0]]:
        eval_row = key.startswith("eval")
        cells = []
        for m in sizes:
            v = rows[m][key]
            per = v / m * 1e6
            cells.append(f"{v:.2f} s ({per:,.0f} us/mod)" if eval_row else
                         f"{v * 1e6:,.0f} us ({per:,.1f})")  # fmt: skip
        growth = (rows[sizes[-1]][key] / sizes[-1]) / (rows[ref][key] / ref)
        print(f"| {key} | {' | '.join(cells)} | x{growth:.1f} |")
    if 64 in rows and 1024 in rows:
        k = "eval episode (3 policies + oracle)"
        print(f"\neval episode at 1024 / at 64: x{rows[1024][k] / rows[64][k]:.1f}")
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
