"""Export a trained model as a policy folder (policy.json + weights.npz [+ policy.onnx]).

    python scripts/export.py --model runs/ppo-default --out /tmp/ppo-default
    python scripts/export.py --model runs/ppo-default/checkpoints/step_000576000 --out /tmp/p
    python scripts/export.py --model runs/ppo-default --out agents/ppo-default --release

RUN picks its newest checkpoint. Only checkpoints listed with their sha256 in the manifest
that training writes next to them are loaded (model.zip is SB3's pickle-based format and runs
code when loaded). The folder loads with shift_rl.runtime.load_policy (numpy only) and runs
in scripts/evaluate.py and scripts/controller.py.

--out must be a new or empty folder or an earlier export: only the export's own files are
replaced, anything else in the folder stays, and any other folder is refused. agents/ holds
the shipped releases: writing there needs --release (a maintainer's explicit act), and even
then only onto an earlier release or a new folder. When the run's own export (RUN/policy/) is
of the same checkpoint, its model card (README.md, with the evaluation) comes along.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from shift_rl.config import ConfigError, load_scenario, train_config_from_dict
from shift_rl.outputs import OutputError


def find_checkpoint(model: Path) -> Path:
    """A checkpoint folder: ``model`` itself, or the newest one of a run folder."""
    if (model / "model.zip").is_file() and (model / "state.json").is_file():
        return model
    found = sorted((model / "checkpoints").glob("step_*/model.zip"))
    if not found:
        raise ConfigError(
            f"--model {str(model)!r}: no checkpoint there (expected a run folder with "
            "checkpoints/step_*/model.zip or a checkpoint folder with model.zip and state.json)"
        )
    return found[-1].parent


def model_card(ckpt: Path, steps: int) -> str | None:
    """The run's model card when the run's own export is of this checkpoint's step."""
    from shift_rl.export import MODEL_CARD, POLICY_JSON

    run_export = ckpt.parent.parent / "policy"
    try:
        spec = json.loads((run_export / POLICY_JSON).read_text())
        card = (run_export / MODEL_CARD).read_text()
    except (OSError, ValueError):
        return None
    return card if spec.get("training", {}).get("timesteps") == steps else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", type=Path, required=True, help="run or checkpoint folder")
    ap.add_argument("--out", type=Path, required=True, help="policy folder to write")
    ap.add_argument(
        "--release",
        action="store_true",
        help="allow writing a shipped release in agents/ (maintainers)",
    )
    args = ap.parse_args(argv)
    from shift_rl.export import MODEL_CARD, POLICY_KIND, check_export_target, previous_export

    try:
        check_export_target(args.out, release=args.release)
        ckpt = find_checkpoint(args.model)
        from shift_rl.train import export_trained, load_checkpoint, verify_checkpoint

        verify_checkpoint(ckpt)  # before anything of it is read
        try:
            state = json.loads((ckpt / "state.json").read_text())
            saved = state["config"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ConfigError(f"checkpoint {ckpt}: unreadable state.json ({err!r})") from None
        cfg = train_config_from_dict(saved, source=f"checkpoint {ckpt}")
        scenario = load_scenario(cfg.scenario)
        model = load_checkpoint(cfg, ckpt)
    except (ConfigError, OutputError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from shift_rl.outputs import claim_dir

    try:
        out = export_trained(model, cfg, scenario, args.out, release=args.release)
    except OutputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    card = model_card(ckpt, int(model.num_timesteps))
    if card is not None:
        claim_dir(out, POLICY_KIND, legacy=previous_export).write_text(MODEL_CARD, card)
    with_card = " with the run's model card" if card is not None else " (no model card)"
    print(f"exported {ckpt} ({model.num_timesteps:,} steps) to {out}{with_card}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
