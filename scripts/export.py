"""Export a trained model as a policy folder (policy.json + weights.npz [+ policy.onnx]).

    python scripts/export.py --model runs/ppo-default --out agents/ppo-default
    python scripts/export.py --model runs/ppo-default/checkpoints/step_000576000 --out /tmp/p

RUN picks its newest checkpoint. Only checkpoints listed with their sha256 in the manifest
that training writes next to them are loaded (model.zip is SB3's pickle-based format and runs
code when loaded). The folder loads with shift_rl.runtime.load_policy (numpy only) and runs
in scripts/evaluate.py and scripts/controller.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from shift_rl.config import ConfigError, load_scenario, train_config_from_dict


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="run or checkpoint folder")
    ap.add_argument("--out", type=Path, required=True, help="policy folder to write")
    args = ap.parse_args(argv)
    try:
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
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = export_trained(model, cfg, scenario, args.out)
    print(f"exported {ckpt} ({model.num_timesteps:,} steps) to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
