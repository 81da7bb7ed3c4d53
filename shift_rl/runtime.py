"""The exported-policy runtime: load a policy folder and act with numpy alone.

Layout of an exported policy folder (written by :mod:`shift_rl.export`)::

    policy.json   format version, observation spec (names, bounds), action spec (mode,
                  nvec, masks), network layout, scenario fingerprint, guard settings, training
                  provenance, and the sha256 of every other file
    weights.npz   the actor's layers as plain float arrays (read with allow_pickle=False)
    policy.onnx   the same actor as an ONNX graph (observation -> logits), when onnx is
                  installed: for serving stacks that run ONNX

:func:`load_policy` checks the format version and every hash before it reads a weight, and
never unpickles anything: a policy file cannot run code. Acting needs neither torch nor
stable-baselines3 (this module imports numpy only): the actor is a small MLP whose logits are
split per action dimension, masked like MaskablePPO masks them, and arg-maxed (the SB3
model's deterministic action), whatever the action mode: a plan is ``M * R`` dimensions of
``2K + 1`` levels, a single shift three (``ACTION_MODES``). The training side
(:mod:`shift_rl.torch_policy`) runs the same :func:`mlp_forward` in its rollouts.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shift_rl.policyfile import (  # noqa: F401 - re-exported: the runtime's public names
    ADDED_FEATURES,
    MASKED_LOGIT,
    MAX_FILE_BYTES,
    MAX_LAYERS,
    MAX_SPEC_BYTES,
    MAX_WEIGHT_BYTES,
    ONNX,
    POLICY_JSON,
    SUPPORTED_VERSIONS,
    WEIGHTS,
    PolicyFileError,
    _check_files,
    _read_spec,
    _Spec,
    _zip_entries,
    file_sha256,
    listed_files,
    spec_digest,
)

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2
"""What the exporter writes: format 1 plus ``spec_sha256``, a hash over policy.json itself."""
KIND = "mlp-multidiscrete-actor"
PLAN, SHIFT = "plan", "shift"
ACTION_MODES = (PLAN, SHIFT)
"""``action.mode`` of a spec, the scenario's ``action.mode`` the policy was trained in: plan
(``nvec`` ``[2K + 1] * (M * R)``) or single-shift (``[M, M, R * K]``). Format 1, and format 2
files written before plans, have no ``action.mode``: they are single-shift."""
_ACTIVATIONS = {"tanh": np.tanh, "relu": lambda x: np.maximum(x, 0.0)}
_V1_KEYS = ("action", "files", "format_version", "guard", "kind", "network", "normalization",
            "observation", "scenario", "training")  # fmt: skip
MAX_OBSERVATIONS = 10_000_000


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


@dataclass
class ExportedPolicy:
    """An exported actor: ``act(observation, action_mask) -> action``, one index per entry of
    ``nvec``: a plan (one level per module and kind) or a single ``(source, target, level)``
    shift, as ``mode`` says."""

    name: str
    spec: dict[str, Any]
    hidden: list[tuple[np.ndarray, np.ndarray]]
    head: tuple[np.ndarray, np.ndarray]
    activation: str
    nvec: np.ndarray
    uses_masks: bool
    mode: str = "shift"  # ``action.mode``: "plan" or "shift" (ACTION_MODES)

    @property
    def inputs(self) -> int:
        """Features the network reads: the observation's first ``inputs``."""
        return len(self.spec["observation"]["names"])

    @property
    def observation_shape(self) -> tuple[int, ...]:
        """The observation it acts on: its inputs, then the ``ADDED_FEATURES`` it does not
        read (one per kind) when its names lack them (exported before they were added, or an
        MLP, for which they are constant)."""
        names = self.spec["observation"]["names"]
        if any(n.startswith(ADDED_FEATURES) for n in names):
            return (len(names),)
        return (len(names) + len(ADDED_FEATURES) * len(self.spec["scenario"]["resources"]),)

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
        return mlp_forward(x[: self.inputs], self.hidden, self.activation, self.head)

    def act(self, observation: np.ndarray, action_mask: np.ndarray | None = None) -> np.ndarray:
        logits = self.logits(observation)
        if not np.isfinite(logits).all():
            raise FloatingPointError(f"policy {self.name!r} produced non-finite logits")
        if self.uses_masks and action_mask is not None:
            logits = np.where(np.asarray(action_mask, dtype=bool), logits, MASKED_LOGIT)
        if (self.nvec == self.nvec[0]).all():  # a plan: M * R dimensions of 2K + 1 levels
            return logits.reshape(len(self.nvec), int(self.nvec[0])).argmax(axis=1).astype(np.int64)
        out = np.empty(len(self.nvec), dtype=np.int64)
        start = 0
        for i, n in enumerate(self.nvec.tolist()):
            out[i] = logits[start : start + n].argmax()
            start += n
        return out


def _check_spec(sp: _Spec) -> dict[str, Any]:
    """Every field of the spec checked (types, ranges, consistency); its parts for loading."""
    spec = sp.data
    version = spec.get("format_version")
    if isinstance(version, bool) or version not in SUPPORTED_VERSIONS:
        raise PolicyFileError(
            f"{sp.meta}: format_version {version!r} is not supported (expected one of "
            f"{list(SUPPORTED_VERSIONS)})"
        )
    allowed = set(_V1_KEYS) | ({"spec_sha256"} if version >= 2 else set())
    extra = sorted(set(spec) - allowed)
    if extra:
        raise sp.fail(", ".join(extra), f"unknown field(s) for format {version}")
    missing = [k for k in _V1_KEYS if k not in spec]
    if missing:
        raise sp.fail(", ".join(missing), "required field(s) missing")
    if version >= 2:
        digest = sp.get("spec_sha256", "str")
        if digest != spec_digest(spec):
            raise PolicyFileError(
                f"{sp.meta}: spec_sha256 does not match the file's content (policy.json was "
                "edited or corrupted); refusing to load it"
            )
    else:
        logger.warning(
            "%s: format 1 has no hash over policy.json, so an edit of it cannot be detected "
            "(only its types and consistency are checked); re-export it (scripts/export.py) "
            "to get format %d",
            sp.meta, FORMAT_VERSION,
        )  # fmt: skip
    sp.get("kind", "str", choices=(KIND,))
    if spec["normalization"] is not None:
        raise sp.fail("normalization", "must be null (no observation normalization is supported)")
    names = sp.items("observation.names", "str", 1, MAX_OBSERVATIONS)
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise sp.fail("observation.names", f"name {dup!r} is given twice")
    low = sp.items("observation.low", "number", len(names), len(names))
    high = sp.items("observation.high", "number", len(names), len(names))
    if any(lo > hi for lo, hi in zip(low, high, strict=True)):
        raise sp.fail("observation.low", "a lower bound is above its upper bound")
    nvec = sp.items("action.nvec", "int", 1, MAX_OBSERVATIONS, lo=1, hi=MAX_OBSERVATIONS)
    action = sp.mapping(spec["action"], "action")
    if "mode" not in action:
        mode = SHIFT  # format 1, and format 2 written before plans: single-shift actions
    elif version < 2:
        raise sp.fail("action.mode", "format 1 has no action mode (it is single-shift only)")
    else:
        mode = sp.get("action.mode", "str", choices=ACTION_MODES)
    sp.get("action.layout", "str")
    uses_masks = sp.get("action.uses_masks", "bool")
    hidden = sp.get("network.hidden", "int", lo=0, hi=MAX_LAYERS)
    activation = sp.get("network.activation", "str", choices=tuple(_ACTIVATIONS))
    sp.get("scenario.name", "str")
    fingerprint = sp.get("scenario.fingerprint", "str")
    if not re.fullmatch(r"[0-9a-f]{16}", fingerprint):
        raise sp.fail("scenario.fingerprint", "must be 16 lowercase hex digits", fingerprint)
    modules = sp.items("scenario.modules", "str", 2, MAX_OBSERVATIONS)
    resources = sp.items("scenario.resources", "str", 1, 64)
    guard = sp.mapping(spec["guard"], "guard")
    if "mode" in guard and guard["mode"] != mode:
        raise sp.fail("guard.mode", f"contradicts action.mode {mode!r}", guard["mode"])
    levels = sp.get("guard.amount_levels", "any")
    k = len(levels) if isinstance(levels, list) else None
    m, r = len(modules), len(resources)
    if mode == SHIFT:
        if len(nvec) != 3:
            raise sp.fail(
                "action.nvec", "must be 3 entries (source, target, level) in single-shift mode",
                nvec,
            )  # fmt: skip
        if nvec[0] != m or nvec[1] != m:
            raise sp.fail("action.nvec", f"must start with the module count {m} twice", nvec)
        if k is not None and nvec[2] != r * k:
            raise sp.fail("action.nvec", f"its last entry must be kinds x levels = {r} x {k}", nvec)
    else:
        if len(nvec) != m * r:
            raise sp.fail(
                "action.nvec",
                f"must be one entry per module and kind in plan mode: {m} x {r} = {m * r} "
                f"entries, not {len(nvec)}",
                nvec,
            )
        if len(set(nvec)) != 1 or (k is not None and nvec[0] != 2 * k + 1):
            want = f"2K + 1 = {2 * k + 1} (K = {k} amount levels)" if k is not None else "equal"
            raise sp.fail("action.nvec", f"its entries must all be {want} in plan mode", nvec)
    training = sp.mapping(spec["training"], "training")
    if version >= 2:  # spec_sha256 covers every field: the training record is provenance only
        training = {}
    # Format 1 has no hash over policy.json: what it records twice must agree.
    algo = training.get("algo")
    if algo is not None and uses_masks != (algo == "maskable_ppo"):
        raise sp.fail("action.uses_masks", f"contradicts training.algo {algo!r}", uses_masks)
    net = training.get("config", {}).get("network") if isinstance(training.get("config"),
                                                                  dict) else None  # fmt: skip
    if isinstance(net, dict):
        if "activation" in net and net["activation"] != activation:
            raise sp.fail(
                "network.activation",
                f"contradicts training.config.network.activation {net['activation']!r}",
                activation,
            )
        arch = net.get("net_arch")
        if isinstance(arch, list) and len(arch) != hidden:
            raise sp.fail(
                "network.hidden", f"contradicts training.config.network.net_arch {arch}", hidden
            )
    else:
        arch = None
    files = listed_files(sp)
    return {
        "names": names, "nvec": nvec, "mode": mode, "uses_masks": uses_masks, "hidden": hidden,
        "activation": activation, "arch": arch if isinstance(arch, list) else None,
        "files": files,
    }  # fmt: skip


def check_spec(spec: Any, meta: Path) -> None:
    """Raise :class:`PolicyFileError` unless ``spec`` is a policy description
    :func:`load_policy` accepts (its files aside); ``meta`` names it in the messages. The
    exporter checks what it is about to write with it."""
    _check_spec(_Spec(spec, meta))


def _read_weights(path: Path, hidden: int) -> dict[str, np.ndarray]:
    """The arrays of ``weights.npz``, each checked from its header before it is read: the
    expected members only, plain float arrays (never pickled objects), their declared size
    bounded, so a small archive cannot inflate into gigabytes."""
    expected = {f"{k}_{p}.npy" for k in [*(f"hidden{i}" for i in range(hidden)), "head"]
                for p in "wb"}  # fmt: skip
    out: dict[str, np.ndarray] = {}
    total = 0
    try:
        if _zip_entries(path) > len(expected):
            raise PolicyFileError(
                f"{path}: not a plain numpy archive of a {hidden}-hidden-layer actor (more "
                f"than its {len(expected)} arrays)"
            )
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            for info in infos:
                name = info.filename
                with zf.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    if version not in ((1, 0), (2, 0)):
                        raise PolicyFileError(f"{path}: {name}: npy format {version} unsupported")
                    read_header = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    shape, _, dtype = read_header(f)
                bad_shape = len(shape) not in (1, 2) or any(d < 0 for d in shape)
                if dtype.hasobject or dtype.kind != "f" or bad_shape:
                    raise PolicyFileError(
                        f"{path}: not a plain numpy archive: {name} is {dtype} of shape "
                        f"{shape}; expected a float vector or matrix (never pickled objects)"
                    )
                total += int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
                if total > MAX_WEIGHT_BYTES:
                    raise PolicyFileError(
                        f"{path}: its arrays declare more than {MAX_WEIGHT_BYTES:,} bytes "
                        f"({name}: shape {shape}); refusing to expand them"
                    )
            names = {info.filename for info in infos}
            if names != expected or len(infos) != len(expected):
                raise PolicyFileError(
                    f"{path}: not the arrays of a {hidden}-hidden-layer actor (unexpected "
                    f"{sorted(names - expected)[:5]}, missing {sorted(expected - names)[:5]})"
                )
            for info in infos:
                with zf.open(info) as f:
                    arr = np.lib.format.read_array(f, allow_pickle=False)
                if not np.isfinite(arr).all():
                    raise PolicyFileError(f"{path}: {info.filename} holds NaN or infinite weights")
                out[info.filename.removesuffix(".npy")] = arr
    except PolicyFileError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise PolicyFileError(f"{path}: not a plain numpy archive ({err})") from None
    return out


def load_policy(path: str | os.PathLike) -> ExportedPolicy:
    """Load an exported policy folder after checking its description and every file.

    Checks, before any weight is read: ``policy.json`` is a small, strict JSON document whose
    every field has the right type and agrees with the others (``nvec`` with the action mode
    and the module, kind and level counts, the activation and layer count with the training
    config, ``uses_masks`` with the algorithm); in format 2 its ``spec_sha256`` matches its
    content; every listed file's sha256 matches. Then the weights are read from their headers
    out (bounded sizes, floats only, no pickle) and must chain into the declared network.
    """
    folder = Path(path)
    meta = folder / POLICY_JSON
    try:
        found = stat.S_ISREG(os.stat(meta).st_mode)
    except (OSError, ValueError):  # missing, or a name the system refuses (NUL, too long)
        found = False
    if not found:
        shown = repr(str(folder)) if len(str(folder)) < 300 else repr(str(folder)[:297] + "...")
        raise PolicyFileError(
            f"{shown} is not a policy folder: {POLICY_JSON} not found "
            "(expected a folder written by scripts/export.py or scripts/train.py)"
        )
    spec = _read_spec(meta)
    if isinstance(spec, dict) and spec.get("kind") == "modular-plan-actor":
        from shift_rl.modular import load_modular  # a network shared across modules

        return load_modular(folder, spec)  # type: ignore[return-value]
    sp = _Spec(spec, meta)
    parts = _check_spec(sp)
    _check_files(folder, parts["files"])
    arrays = _read_weights(folder / WEIGHTS, parts["hidden"])
    n = parts["hidden"]
    hidden = [(arrays[f"hidden{i}_w"], arrays[f"hidden{i}_b"]) for i in range(n)]
    head = (arrays["head_w"], arrays["head_b"])
    names, nvec = parts["names"], np.array(parts["nvec"], dtype=np.int64)
    sizes = [len(names)] + [w.shape[1] if w.ndim == 2 else -1 for w, _ in hidden]
    for (w, b), fan_in in zip([*hidden, head], sizes, strict=True):
        if w.ndim != 2 or w.shape[0] != fan_in or b.shape != (w.shape[1],):
            raise PolicyFileError(f"{folder / WEIGHTS}: layer shapes do not chain ({w.shape})")
    if head[0].shape[1] != int(nvec.sum()):
        raise PolicyFileError(f"{folder / WEIGHTS}: head size does not match nvec {nvec.tolist()}")
    arch = parts["arch"]
    if arch is not None and [w.shape[1] for w, _ in hidden] != arch:
        raise PolicyFileError(
            f"{folder / WEIGHTS}: hidden widths {[w.shape[1] for w, _ in hidden]} contradict "
            f"training.config.network.net_arch {arch} in {POLICY_JSON}"
        )
    return ExportedPolicy(
        name=folder.name,
        spec=spec,
        hidden=hidden,
        head=head,
        activation=parts["activation"],
        nvec=nvec,
        uses_masks=parts["uses_masks"],
        mode=parts["mode"],
    )
