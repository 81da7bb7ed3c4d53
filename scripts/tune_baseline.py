"""Tune the parameters of a baseline (potential, hpa) on training scenarios and seeds only.

    python scripts/tune_baseline.py --policy potential --trials 60

Writes agents/<policy>/params.json (the chosen parameters and the search record) and
agents/<policy>/trials.csv; the policy names use those parameters by default afterwards. (A
maintainer's command: those files ship with the project. The folder must be new or hold earlier
tuned parameters; other files in it stay.)
A trial's episodes fan out with --workers N (processes), --ray (a local Ray) or
--ray-address ADDR (a Ray cluster); the chosen parameters are the same.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from shift_rl.agents import TUNED_DIR
from shift_rl.config import ConfigError
from shift_rl.distributed import DistributedError, add_cli_flags, cli_ray_address, cli_workers
from shift_rl.outputs import OutputError
from shift_rl.tuning import SEARCH_SPACES, tune


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--policy", required=True, choices=sorted(SEARCH_SPACES))
    ap.add_argument(
        "--scenarios",
        default="default,multi_resource,faults",
        help="comma-separated training scenarios (default: default,multi_resource,faults)",
    )
    ap.add_argument("--trials", type=int, default=60, help="search trials (default 60)")
    ap.add_argument("--episodes", type=int, default=6, help="episodes per scenario per trial")
    ap.add_argument("--seed", type=int, default=0, help="sampler seed")
    add_cli_flags(ap, "processes a trial's episodes fan out over (default 1)")
    ap.add_argument("--out-dir", type=Path, default=TUNED_DIR, help="default agents/")
    args = ap.parse_args(argv)
    if args.trials < 1 or args.episodes < 1:
        ap.error("--trials and --episodes must be >= 1")
    if not 0 <= args.seed < 2**32:
        ap.error(f"--seed must be an integer from 0 to 2**32 - 1, got {args.seed}")
    try:
        record = tune(
            args.policy, args.scenarios.split(","), args.trials, args.episodes, args.seed,
            out_dir=args.out_dir, workers=cli_workers(args), ray_address=cli_ray_address(args),
        )  # fmt: skip
    except (ConfigError, DistributedError, OutputError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        json.dumps({k: record[k] for k in ("params", "objective", "default_objective")}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
