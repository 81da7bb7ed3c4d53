"""Tune the parameters of a baseline (potential, hpa, proportional, mpc) on training episodes only.

    python scripts/tune_baseline.py --policy potential --trials 60
    python scripts/tune_baseline.py --policy hpa --suite configs/suites/local.yaml --trials 30
    python scripts/tune_baseline.py --policy hpa --suite generalist --leave-out worldcup98

On scenarios (--scenarios, the default): the mean episode return over --episodes training
seeds per scenario (default 6); writes agents/<policy>/params.json (the chosen parameters and
the search record) and agents/<policy>/trials.csv, which the policy names use by default
afterwards.

On a workload suite (--suite): the suite's train members only (training variants, the early
part of every trace, training seeds), without the families of --leave-out; the objective is
the mean over members of the member's mean return per tick (members have different episode
lengths), --episodes training seeds per scenario (default 2). Writes
agents/suites/<suite>/<policy>/ (<suite>-without-<families> with --leave-out), never the
scenario-tuned agents/<policy>/; scripts/benchmark.py uses them on the same suite.

(A maintainer's command: those files ship with the project. The folder must be new or hold
earlier tuned parameters; other files in it stay.) A trial's episodes fan out with --workers
N (processes), --ray (a local Ray) or --ray-address ADDR (a Ray cluster); the chosen
parameters are the same.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from shift_rl.config import ConfigError
from shift_rl.distributed import DistributedError, add_cli_flags, cli_ray_address, cli_workers
from shift_rl.outputs import OutputError
from shift_rl.traces import TraceError
from shift_rl.tuning import SEARCH_SPACES, tune, tune_suite


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--policy", required=True, choices=sorted(SEARCH_SPACES))
    where = ap.add_mutually_exclusive_group()
    where.add_argument(
        "--scenarios",
        help="comma-separated training scenarios (default: default,multi_resource,faults)",
    )
    where.add_argument("--suite", help="a suite YAML or a name in configs/suites: its train split")
    ap.add_argument(
        "--leave-out",
        nargs="+",
        action="extend",
        default=[],
        metavar="FAMILY",
        help="with --suite: families to tune without (space- or comma-separated)",
    )
    ap.add_argument(
        "--trials", type=int, default=None, help="search trials (default 60; 40 on a suite)"
    )
    ap.add_argument(
        "--episodes",
        type=int,
        default=None,
        help="training seeds per scenario per trial (default 6; 2 on a suite)",
    )
    ap.add_argument("--seed", type=int, default=0, help="sampler seed")
    add_cli_flags(ap, "processes a trial's episodes fan out over (default 1)")
    ap.add_argument(
        "--out-dir",
        type=Path,
        default=None,
        help="default agents/, or agents/suites/<suite>/ with --suite",
    )
    args = ap.parse_args(argv)
    on_suite = args.suite is not None
    trials = args.trials if args.trials is not None else (40 if on_suite else 60)
    episodes = args.episodes if args.episodes is not None else (2 if on_suite else 6)
    leave_out = [f.strip() for text in args.leave_out for f in text.split(",") if f.strip()]
    if trials < 1 or episodes < 1:
        ap.error("--trials and --episodes must be >= 1")
    if not 0 <= args.seed < 2**32:
        ap.error(f"--seed must be an integer from 0 to 2**32 - 1, got {args.seed}")
    if leave_out and not on_suite:
        ap.error("--leave-out needs --suite")
    try:
        if on_suite:
            record = tune_suite(
                args.policy, args.suite, trials, episodes, args.seed, out_dir=args.out_dir,
                leave_out=leave_out, workers=cli_workers(args), ray_address=cli_ray_address(args),
            )  # fmt: skip
        else:
            from shift_rl.agents import TUNED_DIR

            scenarios = (args.scenarios or "default,multi_resource,faults").split(",")
            record = tune(
                args.policy, scenarios, trials, episodes, args.seed,
                out_dir=args.out_dir or TUNED_DIR, workers=cli_workers(args),
                ray_address=cli_ray_address(args),
            )  # fmt: skip
    except (ConfigError, TraceError, DistributedError, OutputError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    keys = ("params", "objective", "default_objective")
    if on_suite:
        keys += ("members_objective", "members_default_objective")
    shown = {k: record[k] for k in keys}
    shown["seconds"] = record["search"]["seconds"]
    print(json.dumps(shown, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
