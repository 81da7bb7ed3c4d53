"""Where the heuristics stall: the load on each held-out trace scenario and what each policy moves.

    python benchmarks/overload.py [--suite configs/suites/generalist.yaml] [--episodes 2]
        [--policies static,hpa,potential,mpc,oracle-mpc]

For every eval scenario of the suite's trace members (the late part of each trace, report
seeds), a row: the demand's need over the pool (units needed at the target utilization
summed over the modules, divided by the pool's units of the first kind, over the first
episode: above 1 the pool cannot serve everyone), then per policy the units it moved per
episode and the gap it closed (ratio of mean improvements over static; "-" where static is
within 0.001 per tick of the bound). Baselines play the parameters tuned on the same suite
when there (as ``scripts/benchmark.py`` does). Prints a Markdown table.
"""

from __future__ import annotations

import argparse

import numpy as np

from shift_rl.agents import make_policy
from shift_rl.benchmark import _play, baseline_parameters
from shift_rl.env import ResourceShiftEnv
from shift_rl.evaluate import GAP_MIN_HEADROOM, _oracle_episode, run_episode
from shift_rl.suite import expand_suite, load_suite


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="configs/suites/generalist.yaml")
    ap.add_argument("--episodes", type=int, default=2)
    ap.add_argument("--policies", default="static,hpa,potential,mpc,oracle-mpc")
    args = ap.parse_args()
    names = [n for n in args.policies.split(",") if n]
    suite = load_suite(args.suite)
    params = baseline_parameters(suite.name, names, None, None)
    expansion = expand_suite(suite, "eval")
    traced = {m.name for m in suite.config.members if m.trace is not None}
    print("| scenario | need / pool (mean, max) | " + " | ".join(names) + " |")
    print("|---|---:|" + "---:|" * len(names))
    for s in expansion.scenarios:
        if s.member not in traced:
            continue
        sc = s.scenario
        seeds = range(args.episodes)
        oracle = np.mean([_oracle_episode(ResourceShiftEnv(sc), i, i).ret for i in seeds])
        static_env = ResourceShiftEnv(sc)
        static = make_policy("static", static_env.params)
        rec = run_episode(static_env, static, "static", 0, 0, record=True)
        need = np.array(rec.trajectory["need"]).sum(axis=1) / static_env.params.pool_units[0]
        base = np.mean([r.ret for r in _play(sc, "static", None, list(seeds), 0)])
        cells = []
        for name in names:
            runs = _play(sc, name, params.get(name, {}).get("params"), list(seeds), 0)
            units = f"{np.mean([r.units_moved for r in runs]):.0f} units"
            if (oracle - base) / sc.episode_ticks < GAP_MIN_HEADROOM:
                cells.append(f"{units}, -")  # static is at the bound: no gap to close
                continue
            gap = (np.mean([r.ret for r in runs]) - base) / (oracle - base)
            cells.append(f"{units}, {gap:.2f}")
        print(f"| {s.key} | {need.mean():.2f}, {need.max():.2f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
