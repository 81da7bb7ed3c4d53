"""Train a PPO shift policy, evaluate it against the baselines and export it.

    python scripts/train.py                  # the default: configs/train/ppo_default.yaml
    python scripts/train.py --config configs/train/X.yaml --set ppo.learning_rate=1e-4
    python scripts/train.py --out runs/my-run --set seed=3
    python scripts/train.py --resume runs/ppo-default/checkpoints/step_000115200

Everything a run writes goes into its run folder: runs/<run_name>/ (or --out DIR; a resumed
run continues in its checkpoint's run folder): config.yaml, command.txt, checkpoints/, tb/
(TensorBoard: tensorboard --logdir runs/) and the exported policy in policy/ with its model
card. The shipped releases in agents/ are never written here: releasing a run is a separate,
explicit step (scripts/export.py --model RUN --out agents/NAME --release).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from shift_rl.config import ConfigError, TrainConfig, load_train_config, train_config_from_dict
from shift_rl.outputs import OutputError, shown


def _flat(data: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _resumed_config(resume: Path, config: Path | None, overrides: list[str]) -> TrainConfig:
    """The checkpoint's own config (with ``--set`` overrides). A ``--config`` given too must
    say the same: a resumed run continues as it was, so a different file is an error listing
    the differences, never silently ignored."""
    state = resume / "state.json"
    if not state.is_file():
        raise ConfigError(f"--resume {str(resume)!r}: no state.json (expected a checkpoint folder)")
    try:
        saved = json.loads(state.read_text())["config"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"--resume {str(resume)!r}: unreadable state.json ({err!r})") from None
    cfg = train_config_from_dict(saved, overrides, f"checkpoint {resume}")
    if config is not None:
        given = load_train_config(config, overrides)
        if given != cfg:
            a, b = _flat(cfg.model_dump(mode="json")), _flat(given.model_dump(mode="json"))
            diff = [f"{k} (checkpoint {a.get(k)!r}, --config {b.get(k)!r})"
                    for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]  # fmt: skip
            raise ConfigError(
                f"--config {str(config)!r} differs from the config of checkpoint "
                f"{str(resume)!r} in {len(diff)} field(s): {'; '.join(diff[:10])}. --resume "
                "continues the checkpoint's run as it was: drop --config, or change a value "
                "with --set"
            )
    return cfg


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--config", type=Path, help="training YAML (default configs/train/ppo_default.yaml)"
    )
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config value, dotted keys (repeatable)")  # fmt: skip
    ap.add_argument("--seed", type=int, help="run seed (same as --set seed=N)")
    ap.add_argument(
        "--timesteps", type=int, help="total env steps (same as --set total_timesteps=N)"
    )
    ap.add_argument(
        "--out",
        type=Path,
        help="run folder: checkpoints, TensorBoard logs, config, command and the export in "
        "policy/ (default runs/<run_name>, or the resumed checkpoint's run folder)",
    )
    ap.add_argument("--leave-out", action="append", default=[], metavar="FAMILY",
                    help="leave this suite family out of training (repeatable; needs a config "
                    "with suite:, same as --set leave_out=[...])")  # fmt: skip
    ap.add_argument("--resume", type=Path, help="checkpoint folder to continue from")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("shift_rl.pretrain").setLevel(logging.INFO)  # a warm start takes minutes

    overrides = list(args.overrides)
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    if args.timesteps is not None:
        overrides.append(f"total_timesteps={args.timesteps}")
    if args.leave_out:
        overrides.append("leave_out=" + json.dumps(args.leave_out))
    try:
        if args.resume is not None:
            cfg = _resumed_config(args.resume, args.config, overrides)
        else:
            cfg = load_train_config(args.config, overrides)
        from shift_rl.config import load_scenario
        from shift_rl.train import (  # torch and SB3 load only for a valid config
            check_alignment,
            check_run_folder,
            describe_run,
            run_folder,
            train,
        )

        scenario = load_scenario(cfg.scenario)
        check_alignment(cfg, scenario)
        folder = run_folder(cfg, args.out, args.resume)
        check_run_folder(folder, args.resume)
        print(describe_run(cfg, folder, scenario, args.resume), flush=True)
        started = time.perf_counter()
        result = train(cfg, out=folder, resume=args.resume, progress=not args.no_progress)
    except (ConfigError, OutputError) as err:
        source = args.resume or args.config
        named = source is None or str(source) in str(err)
        print(f"error: {'' if named else f'{source}: '}{err}", file=sys.stderr)
        return 2
    wall = time.perf_counter() - started
    report = result.report
    if report is not None:
        print(f"\n## Evaluation: {report.episodes} held-out episodes, paired\n")
        print(report.markdown())
        print("\n" + "\n".join(report.legend()))
        print("\n" + "\n".join(report.verdict_lines()))
    if result.resumed_from:
        trained = (
            f"trained {result.trained:,} steps in this call (resumed at "
            f"{result.resumed_from:,}; the run now has {result.timesteps:,})"
        )
    else:
        trained = f"trained {result.trained:,} steps"
    print(
        f"\n{trained} in {result.seconds / 60:.1f} min ({result.steps_per_second:,.0f} env "
        f"steps/s); total wall time with the evaluation {wall / 60:.1f} min"
    )
    run, policy = shown(result.run_dir), shown(result.export_dir)
    print(f"run folder {run}/: the policy in {policy}/, TensorBoard logs in {run}/tb/")
    print(
        f"release it (maintainers only): python scripts/export.py --model {run} "
        f"--out agents/{cfg.run_name} --release"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
