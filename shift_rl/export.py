"""Write a trained SB3 actor as an exported policy folder (the format of :mod:`shift_rl.runtime`).

Layout of an export (``runs/<run>/policy/`` after training, ``agents/<name>/`` for a
release)::

    policy.json   format version, observation spec (names, bounds), action spec, network
                  layout, scenario fingerprint, guard settings, training provenance, and the
                  sha256 of every other file
    weights.npz   the actor's layers as plain float arrays (read with allow_pickle=False)
    policy.onnx   the same actor as an ONNX graph (observation -> logits), when onnx and
                  onnxscript are installed: for serving stacks that run ONNX
    README.md     the model card (training writes it after its evaluation; not hashed)

Exports are written through :mod:`shift_rl.outputs`: only into a new or empty folder or onto
an earlier export, file by file atomically with ``policy.json`` last; the folder's other files
stay. ``agents/`` takes an export only when asked for a release (:func:`check_export_target`).

This is the training side: it reads the torch model, so it needs torch and stable-baselines3.
Loading and running an export (:func:`shift_rl.runtime.load_policy`) needs numpy alone.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from shift_rl.runtime import (
    FORMAT_VERSION,
    KIND,
    ONNX,
    PLAN,
    POLICY_JSON,
    SHIFT,
    WEIGHTS,
    check_spec,
    spec_digest,
)

RELEASES_DIR = Path(__file__).resolve().parents[1] / "agents"
"""The shipped releases (``agents/`` of the project): written only by an explicit release."""

POLICY_KIND = "policy export"
MODEL_CARD = "README.md"


def previous_export(folder: Path) -> list[str] | None:
    """The files of a policy folder written before output markers existed, or None.

    Recognized by a ``policy.json`` of a known format that lists its files: those, the
    ``policy.json`` itself and the model card are what the earlier export wrote.
    """
    try:
        spec = json.loads((folder / POLICY_JSON).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(spec, dict) or not isinstance(spec.get("files"), dict):
        return None
    if "format_version" not in spec:
        return None
    names = [n for n in spec["files"] if isinstance(n, str) and Path(n).name == n]
    return [*names, POLICY_JSON, *([MODEL_CARD] if (folder / MODEL_CARD).is_file() else [])]


def check_export_target(out: str | os.PathLike, release: bool = False) -> None:
    """Raise :class:`~shift_rl.outputs.OutputError` unless ``out`` may receive an export.

    ``agents/`` holds the shipped releases: writing there is a maintainer's explicit act
    (``release=True``, ``scripts/export.py --release``), and even then only onto a folder
    that is new or holds an earlier export. Elsewhere: a new or empty folder, or one holding
    an earlier export (see :mod:`shift_rl.outputs`).
    """
    from shift_rl.outputs import OutputError, check_dir, inside

    path = Path(out)
    if inside(path, RELEASES_DIR) and not release:
        raise OutputError(
            f"{str(path)!r} is inside {RELEASES_DIR}, which holds the shipped releases; "
            "updating a release is a maintainer's explicit act: scripts/export.py --model RUN "
            f"--out {path} --release"
        )
    if release and path.resolve() == RELEASES_DIR.resolve():
        raise OutputError(f"{str(path)!r} is the releases folder itself; name a release in it")
    check_dir(path, POLICY_KIND, legacy=previous_export)


def write_export(out: str | os.PathLike, files: dict[str, bytes], release: bool = False) -> Path:
    """Replace the export in ``out`` with ``files``; ``policy.json`` goes last.

    Each file is replaced atomically and ``policy.json`` (which holds the others' hashes) last,
    so a reader never trusts a half-written export: until the last rename the old hashes do
    not match the new weights and :func:`load_policy` refuses the folder. Only the files of the
    earlier export are replaced or removed; other files in the folder stay.
    """
    from shift_rl.outputs import claim_dir

    check_export_target(out, release)
    folder = claim_dir(out, POLICY_KIND, legacy=previous_export)
    ordered = {k: v for k, v in files.items() if k != POLICY_JSON}
    ordered[POLICY_JSON] = files[POLICY_JSON]
    folder.replace_files(ordered)
    return folder.path


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
    release: bool = False,
) -> Path:
    """Export an SB3 PPO / MaskablePPO actor (MLP, MultiDiscrete) as a policy folder.

    The action mode recorded (``action.mode``) is ``guard["mode"]`` (the scenario's, as
    :meth:`~shift_rl.safety.GuardSettings.to_json` gives it). The spec is checked with the
    loader's own rules before anything is written: a model whose ``nvec`` does not fit that
    mode and the scenario raises :class:`~shift_rl.runtime.PolicyFileError`, never becomes a
    folder that cannot be loaded.

    ``out`` must be new, empty or an earlier export (:func:`check_export_target`; inside
    ``agents/`` only with ``release``).
    """
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
    mode = guard.get("mode", SHIFT)  # GuardSettings.to_json(): the scenario's action.mode
    layout = {
        PLAN: "one level per (module, kind), module-major (entry m * R + r): level j of 2K + 1 "
        "asks for -a[K-1] .. -a[0], 0, a[0] .. a[K-1] units (a = guard.amount_levels; "
        "j = K: no change); the guard matches the requests into shifts",
        SHIFT: "(source, target, kind * K + level); source == target is no shift",
    }[mode]
    spec = {
        "format_version": FORMAT_VERSION,
        "kind": KIND,
        "observation": {
            "names": list(observation_names),
            "low": [float(v) for v in observation_low],
            "high": [float(v) for v in observation_high],
        },
        "action": {
            "mode": mode,
            "nvec": nvec,
            "layout": layout,
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
    check_spec(spec, Path(out) / POLICY_JSON)
    files[POLICY_JSON] = (json.dumps(spec, indent=2, sort_keys=True) + "\n").encode()
    return write_export(out, files, release)


def _onnx_actor(policy: Any, obs_dim: int) -> bytes | None:
    """The actor (observation -> logits) as ONNX bytes, or None without onnx / onnxscript.

    Uses torch's supported exporter (``torch.export`` based, ``dynamo=True``), with a dynamic
    batch axis. Its own chatter while exporting (log lines about torchvision operators it
    skips, and a deprecation inside torch's pytree code) is kept out of the user's output.
    """
    try:
        import onnx  # noqa: F401 - only to know whether the export can be checked and used
        import onnxscript  # noqa: F401 - the exporter builds the graph with it
    except ImportError:
        return None
    import logging
    import warnings

    import torch

    class Actor(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body, self.head = policy.mlp_extractor.policy_net, policy.action_net

        def forward(self, observation: torch.Tensor) -> torch.Tensor:
            return self.head(self.body(observation))

    quiet = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)
            program = torch.onnx.export(
                Actor().eval(),
                (torch.zeros(1, obs_dim),),
                input_names=["observation"],
                output_names=["logits"],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                dynamo=True,
                verbose=False,
            )
    finally:
        quiet.setLevel(level)
    return program.model_proto.SerializeToString()
