"""The exported policy: a folder that runs as the shift algorithm with numpy alone.

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

:func:`load_policy` checks the format version and every hash before it reads a weight, and
never unpickles anything: a policy file cannot run code. Acting needs neither torch nor
stable-baselines3: the actor is a small MLP whose logits are split per action dimension,
masked like MaskablePPO masks them, and arg-maxed (the SB3 model's deterministic action).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1
RELEASES_DIR = Path(__file__).resolve().parents[1] / "agents"
"""The shipped releases (``agents/`` of the project): written only by an explicit release."""
POLICY_JSON = "policy.json"
WEIGHTS = "weights.npz"
ONNX = "policy.onnx"
MASKED_LOGIT = -1e8  # what sb3-contrib's masking gives forbidden actions
_ACTIVATIONS = {"tanh": np.tanh, "relu": lambda x: np.maximum(x, 0.0)}


def mlp_forward(
    x: np.ndarray, hidden: list[tuple[np.ndarray, np.ndarray]], activation: str,
    head: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:  # fmt: skip
    """SB3's MLP in numpy: ``act(x @ w + b)`` per hidden layer (``w`` is (in, out)), then the
    linear head. ``x`` is one observation or a batch (rows)."""
    act = _ACTIVATIONS[activation]
    for w, b in hidden:
        x = act(x @ w + b)
    w, b = head
    return x @ w + b


class PolicyFileError(ValueError):
    """A policy folder that cannot be trusted or used; the message says what is wrong."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class ExportedPolicy:
    """An exported actor: ``act(observation, action_mask) -> (source, target, level)``."""

    name: str
    spec: dict[str, Any]
    hidden: list[tuple[np.ndarray, np.ndarray]]
    head: tuple[np.ndarray, np.ndarray]
    activation: str
    nvec: np.ndarray
    uses_masks: bool

    @property
    def observation_shape(self) -> tuple[int, ...]:
        return (len(self.spec["observation"]["names"]),)

    def reset(self) -> None:
        """The exported actor is memoryless."""

    def logits(self, observation: np.ndarray) -> np.ndarray:
        """Unmasked action logits, concatenated over the action dimensions."""
        x = np.asarray(observation, dtype=np.float32).reshape(-1)
        if x.shape != self.observation_shape:
            raise ValueError(
                f"policy {self.name!r} expects an observation of shape "
                f"{self.observation_shape}, got {x.shape}"
            )
        return mlp_forward(x, self.hidden, self.activation, self.head)

    def act(self, observation: np.ndarray, action_mask: np.ndarray | None = None) -> np.ndarray:
        logits = self.logits(observation)
        if not np.isfinite(logits).all():
            raise FloatingPointError(f"policy {self.name!r} produced non-finite logits")
        if self.uses_masks and action_mask is not None:
            logits = np.where(np.asarray(action_mask, dtype=bool), logits, MASKED_LOGIT)
        out = np.empty(len(self.nvec), dtype=np.int64)
        start = 0
        for i, n in enumerate(self.nvec.tolist()):
            out[i] = logits[start : start + n].argmax()
            start += n
        return out


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
    spec = {
        "format_version": FORMAT_VERSION,
        "kind": "mlp-multidiscrete-actor",
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


def load_policy(path: str | os.PathLike) -> ExportedPolicy:
    """Load an exported policy folder after checking its format version and file hashes."""
    folder = Path(path)
    meta = folder / POLICY_JSON
    if not meta.is_file():
        raise PolicyFileError(
            f"{str(folder)!r} is not a policy folder: {POLICY_JSON} not found "
            "(expected a folder written by scripts/export.py or scripts/train.py)"
        )
    try:
        spec = json.loads(meta.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PolicyFileError(f"{meta}: not valid JSON ({err})") from None
    version = spec.get("format_version") if isinstance(spec, dict) else None
    if version != FORMAT_VERSION:
        raise PolicyFileError(
            f"{meta}: format_version {version!r} is not supported (expected {FORMAT_VERSION})"
        )
    hashes = spec.get("files")
    if not isinstance(hashes, dict) or WEIGHTS not in hashes:
        raise PolicyFileError(f"{meta}: 'files' must list {WEIGHTS} with its sha256")
    for name, digest in hashes.items():
        file = folder / name
        if Path(name).name != name or not file.is_file():
            raise PolicyFileError(f"{folder}: file {name!r} listed in {POLICY_JSON} is missing")
        if _sha256(file) != digest:
            raise PolicyFileError(
                f"{file}: sha256 does not match {POLICY_JSON} (the file was changed or "
                "corrupted); refusing to load it"
            )
    try:
        with np.load(folder / WEIGHTS, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, zipfile.BadZipFile) as err:
        raise PolicyFileError(f"{folder / WEIGHTS}: not a plain numpy archive ({err})") from None
    try:
        n = int(spec["network"]["hidden"])
        hidden = [(arrays[f"hidden{i}_w"], arrays[f"hidden{i}_b"]) for i in range(n)]
        head = (arrays["head_w"], arrays["head_b"])
        nvec = np.array(spec["action"]["nvec"], dtype=np.int64)
        activation = spec["network"]["activation"]
        names = spec["observation"]["names"]
    except (KeyError, TypeError, ValueError) as err:
        raise PolicyFileError(f"{meta}: incomplete policy description ({err!r})") from None
    if activation not in _ACTIVATIONS:
        raise PolicyFileError(f"{meta}: activation {activation!r} not one of {list(_ACTIVATIONS)}")
    sizes = [len(names)] + [w.shape[1] for w, _ in hidden]
    for (w, b), fan_in in zip([*hidden, head], sizes, strict=True):
        if w.ndim != 2 or w.shape[0] != fan_in or b.shape != (w.shape[1],):
            raise PolicyFileError(f"{folder / WEIGHTS}: layer shapes do not chain ({w.shape})")
    if head[0].shape[1] != int(nvec.sum()):
        raise PolicyFileError(f"{folder / WEIGHTS}: head size does not match nvec {nvec.tolist()}")
    return ExportedPolicy(
        name=folder.name,
        spec=spec,
        hidden=hidden,
        head=head,
        activation=activation,
        nvec=nvec,
        uses_masks=bool(spec["action"].get("uses_masks", False)),
    )
