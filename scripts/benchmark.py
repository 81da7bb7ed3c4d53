"""Leaderboard of shift policies over the held-out members of a workload suite.

    python scripts/benchmark.py --suite configs/suites/local.yaml --policies potential \
        --episodes 5 --seed 0 --out runs/benchmark-local

Plays the policies (the first is the one judged; NAME is a built-in policy or an exported
policy folder) and the baselines (tuned potential, hpa, proportional, mpc, static, oracle-mpc;
--baselines to change) on every eval member of the suite: held-out variants and seeds, the
late part of every trace. Writes leaderboard.json (byte-identical for the same inputs),
leaderboard.md and leaderboard.png into --out (a new or empty folder, or an earlier
leaderboard) and prints the Markdown. --leave-out FAMILY[,...] drops families, --only
FAMILY[,...] keeps just those (report on a family a policy was trained without).

Tunable baselines (potential, hpa, proportional, mpc) play with the parameters tuned on the same
suite's train members (scripts/tune_baseline.py --suite: agents/suites/<suite>/<name>/;
with --only or --leave-out FAMILIES, agents/suites/<suite>-without-<families>/ first) when
those exist, else with the scenario-tuned agents/<name>/, else with their defaults;
--tuned-dir DIR names another folder of <name>/params.json, --tuned-dir default the
scenario-tuned ones. The leaderboard's "Baseline parameters" section (and "parameters" in
the JSON) says which each one used.

--recipe LABEL says the --policies are training seeds of one recipe (e.g. four runs of one
config with --seed 0..3): the leaderboard then also judges them pooled, with intervals over
the training seeds and the episodes, and says how many seeds alone beat each baseline.

--workers N fans the episodes out over N processes, --ray over a local Ray, --ray-address
ADDR over a Ray cluster: the JSON is the same.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from shift_rl.benchmark import BASELINES, benchmark, check_out_dir, write
from shift_rl.cli import nonnegative_int, positive_int
from shift_rl.config import ConfigError
from shift_rl.distributed import DistributedError, add_cli_flags, cli_ray_address, cli_workers
from shift_rl.evaluate import EvaluationError
from shift_rl.outputs import OutputError
from shift_rl.traces import TraceError


def _names(text: str | None) -> list[str]:
    return [n.strip() for n in (text or "").split(",") if n.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--suite", required=True, help="suite YAML path or a name in configs/suites")
    ap.add_argument("--policies", required=True, help="comma-separated names or policy folders")
    ap.add_argument(
        "--baselines",
        default=",".join(BASELINES),
        help=f"comma-separated baselines (default {','.join(BASELINES)}; '' for static only)",
    )
    ap.add_argument("--episodes", type=positive_int, default=5, help="per scenario (default 5)")
    ap.add_argument("--seed", type=nonnegative_int, default=0, help="episode i uses seed + i")
    ap.add_argument("--leave-out", help="comma-separated families to drop")
    ap.add_argument("--only", help="comma-separated families to keep")
    ap.add_argument("--out", type=Path, help="write the leaderboard files into this folder")
    ap.add_argument(
        "--tuned-dir",
        help="folder of <baseline>/params.json (default: the suite's, agents/suites/<suite>/, "
        "if there; 'default': agents/<baseline>/)",
    )
    ap.add_argument(
        "--recipe",
        metavar="LABEL",
        help="the --policies are training seeds of one recipe: also judge them pooled",
    )
    add_cli_flags(ap)  # --workers, --ray, --ray-address
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    policies = _names(args.policies)
    if not policies:
        ap.error(f"--policies {args.policies!r} names no policy; expected NAME[,NAME...]")
    try:
        if args.out is not None:
            check_out_dir(args.out)
        board = benchmark(
            args.suite,
            policies,
            episodes=args.episodes,
            seed=args.seed,
            baselines=_names(args.baselines),
            workers=cli_workers(args),
            ray_address=cli_ray_address(args),
            leave_out=_names(args.leave_out),
            only=_names(args.only) if args.only else None,
            tuned_dir=args.tuned_dir,
            recipe=args.recipe,
        )
        print(board.markdown())
        scenarios = len(board.reports)
        print(
            f"{args.episodes} episodes x {scenarios} scenarios x {len(board.labels)} policies "
            f"in {board.seconds:.1f} s"
        )
        if args.out is not None:
            for path in write(board, args.out):
                print(f"wrote {path}")
    except (EvaluationError, ConfigError, TraceError, DistributedError, OutputError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
