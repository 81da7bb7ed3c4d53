"""Plans against single shifts, and gap closed at scale, on paired held-out episodes.

    python benchmarks/plans.py SCENARIO EPISODES LABEL=POLICY:MODE:PARAMS [...]

Each variant is a built-in policy played in action mode ``plan`` or ``shift`` (the scenario
with ``action.mode`` set) with the parameters of a tuned record (``PARAMS``: a params.json
as scripts/tune_baseline.py writes it, or ``tuned`` for the shipped agents/<policy>/, or
``-`` for the defaults). Episodes use the report seeds (``REPORT_SEED_BASE + i``, never
trained or tuned on); ``static`` and the ``oracle`` bound run on the same seeds. Printed per
variant: mean return and gap closed as the ratio of mean improvements over static with its
paired-bootstrap 95 % interval (``shift_rl.evaluate.ratio_of_means``); then the first
variant minus each other, paired, with a Student-t 95 % interval. E.g. the single-shift era's
tuned potential (``git show a9ba33e:agents/potential/params.json > old.json``) against today's::

    python benchmarks/plans.py faults 30 plan=potential:plan:tuned shift=potential:shift:old.json
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
from scipy import stats

from shift_rl.agents import make_policy, tuned_params
from shift_rl.agents.base import StaticPolicy
from shift_rl.config import load_scenario
from shift_rl.env import ResourceShiftEnv
from shift_rl.evaluate import _oracle_episode, ratio_of_means, run_episode
from shift_rl.seeds import REPORT_SEED_BASE


def _variant(text: str) -> tuple[str, str, str, dict]:
    label, _, spec = text.partition("=")
    name, mode, path = spec.split(":")
    if mode not in ("plan", "shift"):
        raise SystemExit(f"{text}: mode must be plan or shift")
    if path == "tuned":
        params = tuned_params(name)
    elif path == "-":
        params = {}
    else:
        with open(path) as f:
            params = json.load(f)["params"]
    return label, name, mode, params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scenario")
    ap.add_argument("episodes", type=int)
    ap.add_argument("variants", nargs="+", help="LABEL=POLICY:MODE:PARAMS")
    args = ap.parse_args()
    base = load_scenario(args.scenario)

    def scenario(mode: str):
        return base.model_copy(update={"action": base.action.model_copy(update={"mode": mode})})

    seeds = [REPORT_SEED_BASE + i for i in range(args.episodes)]
    env = ResourceShiftEnv(scenario("plan"))
    static = np.array([run_episode(env, StaticPolicy(env.params), "static", i, s).ret
                       for i, s in enumerate(seeds)])  # fmt: skip
    oracle = np.array([_oracle_episode(env, i, s).ret for i, s in enumerate(seeds)])
    ticks = env.params.episode_ticks
    print(f"## {args.scenario}: {len(seeds)} paired held-out episodes (seeds {seeds[0]}..)")
    print(f"static {static.mean():.2f}, oracle bound {oracle.mean():.2f}")
    rets = {}
    for label, name, mode, params in map(_variant, args.variants):
        env = ResourceShiftEnv(scenario(mode))
        policy = make_policy(name, env.params, **params)
        if hasattr(policy, "bind"):
            policy.bind(env)
        start = time.perf_counter()
        rets[label] = np.array(
            [run_episode(env, policy, name, i, s).ret for i, s in enumerate(seeds)]
        )
        gap = ratio_of_means(rets[label] - static, oracle - static, ticks)
        lo, hi = gap["ci95"]
        print(
            f"{label} ({name}, {mode}): return {rets[label].mean():.2f}, gap closed "
            f"{gap['mean']:.3f} [{lo:.3f}, {hi:.3f}] "
            f"({(time.perf_counter() - start) / len(seeds):.2f} s/episode)"
        )
    first, *others = list(rets)
    for label in others:
        d = rets[first] - rets[label]
        n = len(d)
        half = stats.t.ppf(0.975, n - 1) * d.std(ddof=1) / math.sqrt(n) if n > 1 else math.nan
        print(
            f"{first} - {label}: {d.mean():+.3f} [{d.mean() - half:+.3f}, {d.mean() + half:+.3f}]"
        )


if __name__ == "__main__":
    main()
