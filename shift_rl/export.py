"""Write a trained SB3 actor as an exported policy folder (the format of :mod:`shift_rl.runtime`).

The training side of the export: it reads the torch model, so it needs torch and
stable-baselines3; loading and running an export (:func:`shift_rl.runtime.load_policy`) needs
numpy alone.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from shift_rl.runtime import FORMAT_VERSION, KIND, ONNX, POLICY_JSON, WEIGHTS, spec_digest


def _atomic_dir(out: Path, files: dict[str, bytes]) -> None:
    """Write all files into a fresh sibling folder, then swap it into place."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; a policy folder is meant to be shared
    for name, blob in files.items():
        (tmp / name).write_bytes(blob)
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        if old.exists():
            for p in old.iterdir():
                p.unlink()
            old.rmdir()
        os.replace(out, old)
        os.replace(tmp, out)
        for p in old.iterdir():
            p.unlink()
        old.rmdir()
    else:
        os.replace(tmp, out)


def export_model(
    model: Any,
    out: str | os.PathLike,
    *,
    observation_names: list[str],
    observation_low: np.ndarray,
    observation_high: np.ndarray,
    scenario: dict[str, Any],
    guard: dict[str, Any],
    training: dict[str, Any],
    extra_files: dict[str, bytes] | None = None,
) -> Path:
    """Export an SB3 PPO / MaskablePPO actor (MLP, MultiDiscrete) as a policy folder."""
    from shift_rl.torch_policy import linear_numpy, mlp_numpy

    policy = model.policy
    hidden, activation = mlp_numpy(policy.mlp_extractor.policy_net)
    arrays: dict[str, np.ndarray] = {}
    for i, (w, b) in enumerate([*hidden, linear_numpy(policy.action_net)]):
        key = f"hidden{i}" if i < len(hidden) else "head"
        arrays[f"{key}_w"] = w.astype(np.float32)  # copies: the views share the model's memory
        arrays[f"{key}_b"] = b.astype(np.float32)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    weights = buf.getvalue()
    files = {WEIGHTS: weights, **(extra_files or {})}
    onnx_graph = _onnx_actor(policy, len(observation_names))
    if onnx_graph is not None:
        files[ONNX] = onnx_graph
    nvec = [int(n) for n in model.action_space.nvec]
    spec = {
        "format_version": FORMAT_VERSION,
        "kind": KIND,
        "observation": {
            "names": list(observation_names),
            "low": [float(v) for v in observation_low],
            "high": [float(v) for v in observation_high],
        },
        "action": {
            "nvec": nvec,
            "layout": "(source, target, kind * K + level); source == target is no shift",
            "uses_masks": type(model).__name__ == "MaskablePPO",
        },
        "network": {"hidden": len(hidden), "activation": activation},
        "normalization": None,
        "scenario": scenario,
        "guard": guard,
        "training": training,
        "files": {name: hashlib.sha256(blob).hexdigest() for name, blob in files.items()},
    }
    spec["spec_sha256"] = spec_digest(spec)  # covers policy.json itself, file hashes included
    files[POLICY_JSON] = (json.dumps(spec, indent=2, sort_keys=True) + "\n").encode()
    out_path = Path(out)
    _atomic_dir(out_path, files)
    return out_path


def _onnx_actor(policy: Any, obs_dim: int) -> bytes | None:
    """The actor (observation -> logits) as ONNX bytes, or None without the onnx package."""
    try:
        import onnx  # noqa: F401 - only to know whether the export can be checked and used
    except ImportError:
        return None
    import torch

    class Actor(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body, self.head = policy.mlp_extractor.policy_net, policy.action_net

        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            return self.head(self.body(obs))

    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(
            Actor().eval(),
            (torch.zeros(1, obs_dim),),
            buf,
            input_names=["observation"],
            output_names=["logits"],
            dynamic_axes={"observation": {0: "batch"}, "logits": {0: "batch"}},
            dynamo=False,
        )
    return buf.getvalue()
