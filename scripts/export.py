"""Export a trained model as a policy folder (policy.json + weights.npz [+ policy.onnx]).

    python scripts/export.py --model runs/ppo-default --out agents/ppo-default
    python scripts/export.py --model runs/ppo-default/checkpoints/step_000576000 --out /tmp/p

RUN picks its newest checkpoint. The folder loads with shift_rl.runtime.load_policy (numpy
only) and runs in scripts/evaluate.py and scripts/controller.py.
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
        state = json.loads((ckpt / "state.json").read_text())
        cfg = train_config_from_dict(state["config"], source=f"checkpoint {ckpt}")
        scenario = load_scenario(cfg.scenario)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from shift_rl.train import algo_class, export_trained

    model = algo_class(cfg).load(ckpt / "model.zip", device="cpu")
    out = export_trained(model, cfg, scenario, args.out)
    print(f"exported {ckpt} ({model.num_timesteps:,} steps) to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
