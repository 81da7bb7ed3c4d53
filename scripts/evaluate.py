"""Evaluate shift policies on paired, seeded episodes.

    python scripts/evaluate.py --policies potential,hpa,vpa,static,oracle \
        --scenario configs/scenarios/default.yaml --episodes 20 --seed 0 --json out.json

NAME is a built-in policy (potential, hpa, vpa, static, proportional, oracle, oracle-mpc) or the
path of an exported policy folder. Prints a Markdown table (mean and 95 % CI per metric, paired
differences against the first policy) and the wall time.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from shift_rl.config import ConfigError
from shift_rl.evaluate import EvaluationError, evaluate, plot
from shift_rl.traces import TraceError


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--policies", required=True, help="comma-separated names or policy folders")
    ap.add_argument("--scenario", default="default", help="scenario name or YAML path")
    ap.add_argument("--trace", help="CSV/CSV.gz whose series replace the scenario's demand")
    ap.add_argument("--episodes", type=_positive, default=20, help="paired episodes (default 20)")
    ap.add_argument("--seed", type=_seed, default=0, help="episode i uses seed + i (default 0)")
    ap.add_argument("--workers", type=_positive, default=1, help="parallel processes (default 1)")
    ap.add_argument("--json", type=Path, help="write the summary here")
    ap.add_argument("--plots", type=Path, help="write PNG figures into this folder")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    names = [n.strip() for n in args.policies.split(",") if n.strip()]
    if not names:
        ap.error(f"--policies {args.policies!r} names no policy; expected NAME[,NAME...]")
    try:
        report = evaluate(
            [n for n in names if n != "oracle"] or ["static"],
            args.scenario,
            episodes=args.episodes,
            seed=args.seed,
            trace=args.trace,
            workers=args.workers,
            record=args.plots is not None,
        )
    except (EvaluationError, ConfigError, TraceError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(report.markdown())
    print(f"\n{args.episodes} episodes x {len(report.results)} policies in {report.seconds:.1f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_suffix(args.json.suffix + ".tmp")
        tmp.write_text(json.dumps(report.to_dict(), indent=2, sort_keys=True))
        tmp.replace(args.json)
    if args.plots:
        for path in plot(report, args.plots):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
