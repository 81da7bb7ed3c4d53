"""Sweep training configs on Ray Tune: seeds x hyperparameters, ASHA early stopping, resume.

    python scripts/sweep.py configs/sweeps/smoke.yaml --out /tmp/sweep-smoke
    python scripts/sweep.py configs/sweeps/ppo_lr_entropy.yaml --ray-address HEAD_IP:6379
    python scripts/sweep.py configs/sweeps/ppo_lr_entropy.yaml --resume     # after a stop
    python scripts/sweep.py configs/sweeps/ppo_lr_entropy.yaml --dry-run    # list the trials

Each trial (configuration x seed) trains in its own folder under the sweep's folder (default
runs/sweeps/<name>/); results.md and results.json there name the best configuration and the
spread of its seeds. Needs Ray: pip install "shift_rl[ray]". Without --ray-address a local Ray
is started with --workers CPUs (default: all cores).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from shift_rl.cli import positive_int
from shift_rl.config import ConfigError
from shift_rl.distributed import DistributedError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("sweep", help="sweep YAML (or a name in configs/sweeps/)")
    ap.add_argument("--out", type=Path, help="sweep folder (default runs/sweeps/<name>)")
    ap.add_argument("--resume", action="store_true", help="continue an interrupted sweep")
    ap.add_argument("--workers", type=positive_int, help="CPUs of the local Ray (default: all)")
    ap.add_argument("--ray-address", metavar="ADDR", help="run on this Ray cluster")
    ap.add_argument("--dry-run", action="store_true", help="validate and list the trials only")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from shift_rl.sweep import load_sweep, results_markdown, run_sweep

    try:
        spec, trials = load_sweep(args.sweep)
        if args.dry_run:
            print(f"sweep {spec.name}: {len(trials)} trials")
            for t in trials:
                print(f"  {t.folder}: " + (" ".join(t.overrides()) or "(base config)"))
            return 0
        out = run_sweep(args.sweep, args.out, args.resume, args.ray_address, args.workers)
    except (ConfigError, DistributedError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(results_markdown(out))
    if out["best"] is not None:
        print("\n" + json.dumps({k: out["best"][k] for k in ("config_id", "values")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
