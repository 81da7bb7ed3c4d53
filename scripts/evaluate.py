"""Evaluate shift policies on paired, seeded episodes.

    python scripts/evaluate.py --policies potential,hpa,vpa,static,oracle \
        --scenario configs/scenarios/default.yaml --episodes 20 --seed 0 --json out.json

NAME is a built-in policy (potential, hpa, vpa, static, proportional, oracle, oracle-mpc) or the
path of an exported policy folder. Prints a Markdown table (mean and 95 % CI per metric, paired
differences of the first policy minus each other one), what the columns mean, one verdict line
per policy the first one is compared with, and the wall time.

--json writes a new file or replaces an earlier summary of this script; --plots writes into a
new or empty folder or one holding earlier figures. Both are checked before anything runs.

--workers N fans the episodes out over N processes, --ray over a local Ray, --ray-address
ADDR over a Ray cluster: the JSON is the same.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from shift_rl.cli import nonnegative_int, positive_int
from shift_rl.config import ConfigError
from shift_rl.distributed import DistributedError, add_cli_flags, cli_ray_address, cli_workers
from shift_rl.evaluate import EvaluationError, check_plots_dir, evaluate, plot
from shift_rl.outputs import OutputError, check_file, json_with_keys, write_file
from shift_rl.traces import TraceError

SUMMARY = json_with_keys(("scenario", "fingerprint", "episodes", "policies", "paired_against"))
"""Recognizes an evaluation summary this script wrote (the only file --json replaces)."""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--policies", required=True, help="comma-separated names or policy folders")
    ap.add_argument("--scenario", default="default", help="scenario name or YAML path")
    ap.add_argument("--trace", help="CSV/CSV.gz whose series replace the scenario's demand")
    ap.add_argument(
        "--episodes", type=positive_int, default=20, help="paired episodes (default 20)"
    )
    ap.add_argument(
        "--seed", type=nonnegative_int, default=0, help="episode i uses seed + i (default 0)"
    )
    add_cli_flags(ap)  # --workers, --ray, --ray-address
    ap.add_argument("--json", type=Path, help="write the summary here")
    ap.add_argument("--plots", type=Path, help="write PNG figures into this folder")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    names = [n.strip() for n in args.policies.split(",") if n.strip()]
    if not names:
        ap.error(f"--policies {args.policies!r} names no policy; expected NAME[,NAME...]")
    try:
        if args.json is not None:
            check_file(args.json, SUMMARY, "evaluation summary (--json)")
        if args.plots is not None:
            check_plots_dir(args.plots)
        report = evaluate(
            [n for n in names if n != "oracle"] or ["static"],
            args.scenario,
            episodes=args.episodes,
            seed=args.seed,
            trace=args.trace,
            workers=cli_workers(args),
            record=args.plots is not None,
            ray_address=cli_ray_address(args),
        )
    except (EvaluationError, ConfigError, TraceError, DistributedError, OutputError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(report.markdown())
    print("\n" + "\n".join(report.legend()))
    print("\n" + "\n".join(report.verdict_lines()))
    print(f"\n{args.episodes} episodes x {len(report.results)} policies in {report.seconds:.1f} s")
    try:
        if args.json is not None:
            text = json.dumps(report.to_dict(), indent=2, sort_keys=True) + "\n"
            write_file(args.json, text, SUMMARY, "evaluation summary (--json)")
            print(f"wrote {args.json}")
        if args.plots is not None:
            for path in plot(report, args.plots):
                print(f"wrote {path}")
    except OutputError as err:  # the target changed while the evaluation ran
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
