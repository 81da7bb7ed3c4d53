"""The exported-policy runtime: load a policy folder and act with numpy alone.

Layout of an exported policy folder (written by :mod:`shift_rl.export`)::

    policy.json   format version, observation spec (names, bounds), action spec, network
                  layout, scenario fingerprint, guard settings, training provenance, and the
                  sha256 of every other file
    weights.npz   the actor's layers as plain float arrays (read with allow_pickle=False)
    policy.onnx   the same actor as an ONNX graph (observation -> logits), when onnx is
                  installed: for serving stacks that run ONNX

:func:`load_policy` checks the format version and every hash before it reads a weight, and
never unpickles anything: a policy file cannot run code. Acting needs neither torch nor
stable-baselines3 (this module imports numpy only): the actor is a small MLP whose logits are
split per action dimension, masked like MaskablePPO masks them, and arg-maxed (the SB3
model's deterministic action). The training side (:mod:`shift_rl.torch_policy`) runs the same
:func:`mlp_forward` in its rollouts.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1
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
