"""A plan policy shared across modules: one set of weights for any number of modules.

The flat observation (:mod:`shift_rl.observation`) is read **by name** into *tokens*, one per
(module, resource kind), and per-kind *globals*. One network runs on every token:

- an encoder ``phi`` (MLP, shared by all tokens) gives ``h[m, r]``;
- the context of kind ``r`` pools ``h`` over the modules (mean and max) and appends the
  kind's globals: ``c[r] = [mean_m h[m, r], max_m h[m, r], g[r]]``;
- the actor head ``psi([h[m, r], c[r]])`` gives the ``2K + 1`` logits of plan entry
  ``m * R + r`` (module ``m``'s requested change of kind ``r``, level ``K`` = no change);
- the critic ``rho(mean_r c[r])`` gives the value.

Nothing in it depends on the module count or order: permuting the modules permutes the
logits (tested), a 6-module and a 1024-module scenario run the same weights, and so do
scenarios of another kind count: the head is per kind and does not know which kind it reads
(a token's context pools its own kind only), so a policy runs on scenarios of any of its
kinds, and (with a warning) of others, each planned as the trained kinds were; the kinds of
one module see each other only through the critic, so cross-kind trade-offs are not learned.
Trained on ``[cpu, mem]`` (:mod:`shift_rl.suite_training` pads a one-kind scenario's missing
kind), one set of weights learns from one- and two-kind scenarios alike.

**Token features** (:data:`TOKEN_FEATURES`), all module-count invariant: the five shares of
the pool of the per-kind block (alloc, incoming, demand, forecast, reported need) times the
module count ``M`` (an average module reads ~1) squashed by ``x / (1 + x)``; the log-ratios of
demand, forecast and reported need to the units held (alloc + incoming), clipped to
``+-LOG_RATIO_MAX`` and scaled into ``[-1, 1]`` (the over- or under-provisioning a plan should
correct); the units the module holds, ``log2(1 + units) / 10`` (from ``pool.unit.<kind>``,
one unit's share of the pool: the *granularity* an amount level is measured against); and the
eleven per-module features as they are (all in ``[0, 1]``; ``value`` is already weight x
``M``). **Globals** per kind (:data:`GLOBAL_FEATURES`): the free share of the pool, the free
units against an average module's (``free x M``, squashed), the offline share, the total
demand and forecast over the pool (sums of shares: how tight the pool is), and an average
module's units (``log2(1 + pool / M) / 10``).

**What the network does not see.** No module index, name or position: a token is only what
its module measures, so the network cannot memorize "module 3 peaks at 20:00" (permuting
the modules permutes the logits, tested). The absolute time of day (``time.sin``,
``time.cos``) is left out by default (``time_features: false``). Evidence, a paired ablation
(same seed, same 460,800 steps of ``modular_default.yaml``, held-out seeds 0..N-1,
``scripts/evaluate.py``; return differences no-time minus time, 95 % CI):

==========================  ===================  =================================
held-out set                gap closed no / yes  return difference (no - yes)
==========================  ===================  =================================
default (trained), 20 ep.   0.822 / 0.854        -1.58 [-2.51, -0.66]
trace (real Azure), 10 ep.  0.911 / 0.907        +0.25 [-0.13, +0.63]
large (64 modules), 6 ep.   0.175 / 0.478        -21.0 [-37.3, -4.7]
==========================  ===================  =================================

The clock helps on the synthetic workloads, whose generator gives every module a daily
cycle on the same 24-hour calendar (the trained one and ``large``), and buys nothing on the
real trace, whose calendar it never saw. That is the memorization the flag guards against:
a clock learnt on one calendar is a prior about that calendar, not about demand, and users
bring their own. So it is off by default and a switch for training on a suite whose traces
are time-split (where the held-out period tests it honestly); on ``large`` both arms fail
anyway (see below), so that gain is no usable property. ``value`` (weight x M) and
``reputation`` stay: they are what the reward weighs and what the guard trusts, not names.

**Granularity.** Amount levels are absolute units: 2 units are a quarter of a module of 8
(``default``) and all but the floor of one of 3 (``large``). Shares of the pool alone cannot
tell them apart, so a network trained on ``default`` moved most of ``large``'s modules at once
(``configs/train/modular_default.yaml``: -14.3 on ``large``); the units held and an average
module's units are inputs for that reason.

**Advice** (``network.advisor`` of a training config). An advised network reads a heuristic's
plan as one more token feature, ``advice`` (the advisor's change of that entry, in the
policy's levels, :data:`ADVICE`), and adds a learned gain (:attr:`ModularWeights.
advice_gain`, 6 at the start) to the logit of the advised level: untrained, it plays its
advisor (tested), and PPO learns where to depart from it, a residual policy (Silver et al.
2018, "Residual Policy Learning"; Johannink et al. 2019) on a planner no network trained in
minutes matches. The advice is no memorization channel: the advisor reads the same
observation. The exported policy names its advisor and the parameters it was trained with,
builds it for the scenario it is bound to (:func:`check_modular_fits`) and runs it each tick;
``oracle-mpc`` is refused (:data:`ADVISORS`: it reads the simulator's truth).

This module needs numpy alone (the runtime loads :class:`ModularPolicy` with it); the torch
twin, the SB3 policies and the export are in :mod:`shift_rl.modular_torch`.
"""

from __future__ import annotations

import logging
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shift_rl.policyfile import (
    MASKED_LOGIT,
    MAX_LAYERS,
    MAX_WEIGHT_BYTES,
    POLICY_JSON,
    SUPPORTED_VERSIONS,
    WEIGHTS,
    PolicyFileError,
    _check_files,
    _Spec,
    _zip_entries,
    listed_files,
    spec_digest,
)

logger = logging.getLogger(__name__)

MODULAR_KIND = "modular-plan-actor"
"""``kind`` of an exported modular policy in ``policy.json``."""
PER_KIND = ("alloc", "incoming", "demand", "forecast", "reported_need")
"""The per-kind block of a module in the observation (``<module>.<feature>.<kind>``)."""
PER_MODULE = ("utilization", "latency", "error_rate", "attainment", "forecast_spread",
              "confidence", "reputation", "locked", "pending", "missing", "value")  # fmt: skip
"""The per-module block of the observation (``<module>.<feature>``)."""
UNITS_LOG2_MAX = 10.0
"""Unit counts enter as ``log2(1 + units) / 10`` (clipped to 1: 1023 units and more)."""
LOG_RATIO_MAX = 3.0
"""Log-ratios to the units held are clipped to +-3 (a factor of 20)."""
RATIO_EPS = 0.05
"""Added to both sides of a ratio, in shares x M (5 % of an average module's units)."""
TOKEN_FEATURES = (
    *(f"{f}_x_m" for f in PER_KIND),
    "log_demand_over_held",
    "log_forecast_over_held",
    "log_need_over_held",
    "units_held",
    *PER_MODULE,
)
ADVICE = "advice"
"""The advised token feature and ``<module>.advice.<kind>`` in a padded training observation
(:mod:`shift_rl.suite_training`): an advisor's change of the plan entry, the policy's level
``a`` of ``2K + 1`` encoded as ``(a - K) / K`` in ``[-1, 1]`` (0: no change)."""
ADVISORS = ("mpc", "hpa", "potential", "proportional", "vpa", "static")
"""Policies an advised network may lean on: causal ones (they read only the observation);
never ``oracle-mpc``, which needs the simulator's truth a controller does not have."""
GLOBAL_FEATURES = ("free", "free_x_m", "offline", "total_demand", "total_forecast",
                   "units_per_module")  # fmt: skip
TIME_FEATURES = ("time.sin", "time.cos")
PRESENT = "present"
"""``<module>.present``: 1 for a real module, 0 for a padding slot (only in the padded
observations of :mod:`shift_rl.suite_training`; a real scenario's observation has none, and
every module counts as present)."""
KIND_PRESENT = "pool.present."
"""``pool.present.<kind>``: 1 for a kind the row's scenario has, 0 for a padding kind (a
one-kind scenario in a two-kind padded layout); like :data:`PRESENT`, only in padded
observations."""
ACTIVATIONS = {"tanh": np.tanh, "relu": lambda x: np.maximum(x, 0.0)}


def token_features(advised: bool = False) -> tuple[str, ...]:
    return TOKEN_FEATURES + ((ADVICE,) if advised else ())


def encode_advice(levels: np.ndarray, k: int) -> np.ndarray:
    """``(a - K) / K`` float32 of policy levels ``a`` in ``0..2K`` (see :data:`ADVICE`)."""
    return ((np.asarray(levels, dtype=np.float32) - k) / np.float32(k)).astype(np.float32)


def decode_advice(advice: np.ndarray, k: int) -> np.ndarray:
    """The policy levels of encoded advice (:func:`encode_advice`), clipped to ``0..2K``."""
    return np.clip(np.rint(np.asarray(advice, dtype=np.float32) * k) + k, 0, 2 * k).astype(np.int64)


def global_features(time_features: bool) -> tuple[str, ...]:
    return GLOBAL_FEATURES + (TIME_FEATURES if time_features else ())


@dataclass(frozen=True)
class ModularLayout:
    """Where each token and global input sits in a flat observation, found by name."""

    modules: tuple[str, ...]
    kinds: tuple[str, ...]
    kind_index: np.ndarray  # (M, R, 5) indices of PER_KIND per module and kind
    module_index: np.ndarray  # (M, 11) indices of PER_MODULE per module
    free_index: np.ndarray  # (R,)
    offline_index: np.ndarray  # (R,)
    unit_index: np.ndarray  # (R,) of ``pool.unit.<kind>`` (1 / pool units)
    time_index: np.ndarray  # (2,)
    width: int  # length of the observation
    present_index: np.ndarray | None = None  # (M,) of ``<module>.present``, None: all present
    kind_present_index: np.ndarray | None = None  # (R,) of ``pool.present.<kind>``, None: all
    advice_index: np.ndarray | None = None  # (M, R) of ``<module>.advice.<kind>``, None: none

    @property
    def num_modules(self) -> int:
        return len(self.modules)

    @classmethod
    def from_names(cls, names: list[str] | tuple[str, ...]) -> ModularLayout:
        """The layout of an observation with these feature names (``ObservationBuilder.names``).

        Modules are the prefixes of the ``<module>.utilization`` names, kinds the suffixes of
        ``pool.free.<kind>``; every feature the network reads must be present (else
        ``ValueError`` naming the first missing one). Other names are ignored. When every
        module has a ``<module>.present`` feature (padded observations), the layout reads it:
        modules whose flag is 0 are padding, left out of the pooling and acting "no change";
        likewise the kinds of ``pool.present.<kind>``. ``<module>.advice.<kind>`` features
        (all or none) are an advisor's plan (:data:`ADVICE`), read as the last token feature.
        """
        at = {n: i for i, n in enumerate(names)}
        if len(at) != len(names):
            raise ValueError("observation names are not unique")
        kinds = tuple(n[len("pool.free.") :] for n in names if n.startswith("pool.free."))
        suffix = ".utilization"
        modules = tuple(n[: -len(suffix)] for n in names if n.endswith(suffix))
        if not kinds or not modules:
            raise ValueError(
                "observation names hold no modules (<module>.utilization) or no resource kinds "
                "(pool.free.<kind>): not a shift_rl observation"
            )

        def find(name: str) -> int:
            if name not in at:
                raise ValueError(f"observation has no feature {name!r}")
            return at[name]

        kind_index = np.array(
            [[[find(f"{m}.{f}.{k}") for f in PER_KIND] for k in kinds] for m in modules],
            dtype=np.int64,
        )
        module_index = np.array(
            [[find(f"{m}.{f}") for f in PER_MODULE] for m in modules], dtype=np.int64
        )

        def flags(wanted: list[str], what: str) -> np.ndarray | None:
            """Indices of presence flags: all of them or none (None: everything is real)."""
            there = [n in at for n in wanted]
            if any(there) and not all(there):
                raise ValueError(f"observation has presence flags for some {what}, not all")
            return np.array([at[n] for n in wanted], dtype=np.int64) if all(there) else None

        present = flags([f"{m}.{PRESENT}" for m in modules], "modules")
        kind_present = flags([f"{KIND_PRESENT}{k}" for k in kinds], "kinds")
        advice = flags([f"{m}.{ADVICE}.{k}" for m in modules for k in kinds], "advice entries")
        return cls(
            modules=modules,
            kinds=kinds,
            kind_index=kind_index,
            module_index=module_index,
            free_index=np.array([find(f"pool.free.{k}") for k in kinds], dtype=np.int64),
            offline_index=np.array([find(f"pool.offline.{k}") for k in kinds], dtype=np.int64),
            unit_index=np.array([find(f"pool.unit.{k}") for k in kinds], dtype=np.int64),
            time_index=np.array([find(n) for n in TIME_FEATURES], dtype=np.int64),
            width=len(names),
            present_index=present,
            kind_present_index=kind_present,
            advice_index=None if advice is None else advice.reshape(len(modules), len(kinds)),
        )


def _squash(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + x)


def _log_units(units: np.ndarray) -> np.ndarray:
    return np.minimum(np.log2(1.0 + units) / np.float32(UNITS_LOG2_MAX), 1.0)


def featurize(
    obs: np.ndarray,
    layout: ModularLayout,
    time_features: bool = False,
    advice: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(tokens (B, M, R, F), globals (B, R, G))`` float32 of observations ``(B, D)``.

    ``F = len(token_features(advised))``, ``G = len(global_features(time_features))`` (see the
    module docstring for what each is). Observations are the builder's: finite and inside
    bounds. The advice column (:data:`ADVICE`) comes from the observation when the layout has
    advice features, else from ``advice`` (``(B, M, R)`` encoded, an advisor's plan), else
    there is none.
    """
    x = np.asarray(obs, dtype=np.float32)
    if x.ndim == 1:
        x = x[None]
    if x.shape[1] != layout.width:
        raise ValueError(
            f"observation of width {x.shape[1]}, the layout reads {layout.width} "
            f"({layout.num_modules} modules, kinds {list(layout.kinds)})"
        )
    present = presence(x, layout)
    if present is None:
        m: Any = np.float32(layout.num_modules)
        mg: Any = m
    else:  # padded: M is the count of real modules of each row
        count = np.maximum(present.any(axis=2).sum(axis=1), 1).astype(np.float32)
        m, mg = count[:, None, None, None], count[:, None]
    shares = x[:, layout.kind_index]  # (B, M, R, 5)
    s = shares * m
    held = s[..., 0:1] + s[..., 1:2]
    eps = np.float32(RATIO_EPS)
    ratio = np.log((s[..., 2:5] + eps) / (held + eps))
    ratio = np.clip(ratio, -LOG_RATIO_MAX, LOG_RATIO_MAX) / np.float32(LOG_RATIO_MAX)
    per_module = x[:, layout.module_index]  # (B, M, 11)
    b, n_mod, n_kind, _ = shares.shape
    per_module = np.broadcast_to(per_module[:, :, None, :], (b, n_mod, n_kind, len(PER_MODULE)))
    unit = np.maximum(x[:, layout.unit_index], np.float32(1e-9))  # (B, R): 1 / pool units
    units = (shares[..., 0] + shares[..., 1]) / unit[:, None, :]  # (B, M, R) units held
    parts_t = [_squash(s), ratio, _log_units(units)[..., None], per_module]
    if layout.advice_index is not None:
        advice = x[:, layout.advice_index]
    if advice is not None:
        parts_t.append(np.asarray(advice, dtype=np.float32).reshape(b, n_mod, n_kind, 1))
    tokens = np.concatenate(parts_t, axis=3)
    free = x[:, layout.free_index]  # (B, R)
    real = shares if present is None else shares * present[..., None]
    parts = [
        free,
        _squash(free * mg),
        x[:, layout.offline_index],
        _squash(real[..., 2].sum(axis=1)),
        _squash(real[..., 3].sum(axis=1)),
        _log_units(1.0 / (unit * mg)),
    ]
    if time_features:
        t = x[:, layout.time_index]
        parts += [np.broadcast_to(t[:, None, i], (b, n_kind)) for i in range(2)]
    return tokens.astype(np.float32, copy=False), np.stack(parts, axis=2).astype(np.float32)


def presence(obs: np.ndarray, layout: ModularLayout) -> np.ndarray | None:
    """``(B, M, R)`` bool: which (module, kind) tokens of observations ``(B, D)`` are real (the
    ``<module>.present`` and ``pool.present.<kind>`` flags of a padded observation), None when
    the layout has no flags (every token is real)."""
    if layout.present_index is None and layout.kind_present_index is None:
        return None
    x = np.asarray(obs)
    if x.ndim == 1:
        x = x[None]
    b, m, r = x.shape[0], layout.num_modules, len(layout.kinds)
    mods = np.ones((b, m), bool) if layout.present_index is None else x[:, layout.present_index]
    kinds = (np.ones((b, r), bool) if layout.kind_present_index is None
             else x[:, layout.kind_present_index])  # fmt: skip
    return (mods > 0.5)[:, :, None] & (kinds > 0.5)[:, None, :]


def level_map(policy_levels: list[int] | tuple[int, ...],
              scenario_levels: list[int] | tuple[int, ...]) -> np.ndarray | None:  # fmt: skip
    """Scenario level index of each of the policy's ``2K + 1`` levels (None: the same levels):
    the policy's outputs go to the matching amounts, the scenario's others are never chosen;
    ``ValueError`` when the scenario's levels do not hold the policy's."""
    mine, theirs = [int(v) for v in policy_levels], [int(v) for v in scenario_levels]
    if mine == theirs:
        return None
    if not set(mine) <= set(theirs):
        raise ValueError(f"amount levels {theirs} do not hold {mine}")
    k = len(theirs)
    up = [k + 1 + theirs.index(v) for v in mine]
    down = [k - 1 - theirs.index(v) for v in reversed(mine)]
    return np.array([*down, k, *up], dtype=np.int64)


def policy_levels(levels: list[int] | tuple[int, ...],
                  scenario_levels: list[int] | tuple[int, ...]) -> np.ndarray:  # fmt: skip
    """Index among a policy's ``levels`` of each of the scenario's ``2K_s + 1`` levels: the
    same signed amount, or the policy's largest below it (a teacher's 8 units are the 4 of a
    policy of ``[1, 2, 4]``; below the smallest, no change)."""
    mine, theirs = [int(v) for v in levels], [int(v) for v in scenario_levels]
    k, ks = len(mine), len(theirs)
    out = np.full(2 * ks + 1, k, dtype=np.int64)
    for j, units in enumerate(theirs, start=1):
        below = [i for i, v in enumerate(mine, start=1) if v <= units]
        if below:
            out[ks + j], out[ks - j] = k + below[-1], k - below[-1]
    return out


def padding_logits(levels: int) -> np.ndarray:
    """The logits a padding module acts with: ``MASKED_LOGIT`` everywhere but level ``K``
    (no change), so it never moves anything, adds nothing to log-probabilities or entropy,
    and gets no gradient."""
    z = np.full(levels, np.float32(MASKED_LOGIT), dtype=np.float32)
    z[levels // 2] = 0.0
    return z


Layer = tuple[np.ndarray, np.ndarray]
ADVICE_GAIN = "advice_gain"


@dataclass
class ModularWeights:
    """The network as numpy arrays: ``w`` is (in, out). ``actor[0]`` reads ``[h, context]``:
    its first ``H`` rows multiply ``h``, the others the context (computed once per kind)."""

    encoder: list[Layer]
    actor: list[Layer]  # hidden layers then the logits layer
    critic: list[Layer]  # hidden layers then the value layer
    activation: str = "tanh"
    advice_gain: np.ndarray | None = None
    """(1,): an advised network adds ``gain`` to the logit of the advised level (the last
    token feature, :data:`ADVICE`) of every entry: at the start of training it acts as its
    advisor does, and what it learns is where to depart from it (residual policy learning,
    Silver et al. 2018). None: not advised."""

    def arrays(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for part in ("encoder", "actor", "critic"):
            for i, (w, b) in enumerate(getattr(self, part)):
                out[f"{part}{i}_w"] = np.asarray(w, dtype=np.float32)
                out[f"{part}{i}_b"] = np.asarray(b, dtype=np.float32)
        if self.advice_gain is not None:
            out[ADVICE_GAIN] = np.asarray(self.advice_gain, dtype=np.float32).reshape(1)
        return out


def forward(
    tokens: np.ndarray,
    globals_: np.ndarray,
    net: ModularWeights,
    critic: bool = True,
    present: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """``(logits (B, M, R, L), value (B, 1) or None)`` of the network on featurized inputs.

    ``present`` (``(B, M, R)`` bool, :func:`presence`): padding tokens are left out of the
    mean and max pooling and get :func:`padding_logits`, padding kinds out of the critic's
    mean over kinds; None: all real. An advised network (``net.advice_gain``) reads the
    advice from the tokens' last feature.
    """
    act = ACTIVATIONS[net.activation]
    h = tokens
    for w, b in net.encoder:
        h = act(h @ w + b)
    if present is None:
        ctx = np.concatenate([h.mean(axis=1), h.max(axis=1), globals_], axis=2)  # (B, R, C)
    else:
        p = np.asarray(present, dtype=bool)[..., None]  # (B, M, R, 1)
        n = np.maximum(p.sum(axis=1), 1).astype(h.dtype)
        mean = np.where(p, h, 0).sum(axis=1) / n
        top = np.where(p, h, -np.inf).max(axis=1)
        top = np.where(np.isfinite(top), top, 0).astype(h.dtype)
        ctx = np.concatenate([mean, top, globals_], axis=2)
    width = h.shape[-1]
    w0, b0 = net.actor[0]
    z = h @ w0[:width] + (ctx @ w0[width:] + b0)[:, None]
    for w, b in net.actor[1:]:
        z = act(z) @ w + b
    if net.advice_gain is not None:  # the advisor's level gets the gain
        levels = z.shape[-1]
        advised = decode_advice(tokens[..., -1], levels // 2)
        z = z + np.float32(net.advice_gain[0]) * (advised[..., None] == np.arange(levels))
    if present is not None:
        z = np.where(p, z, padding_logits(z.shape[-1]))
    value = None
    if critic:
        if present is None:
            v = ctx.mean(axis=1)
        else:  # the mean over the row's real kinds
            k = p.any(axis=1)  # (B, R, 1)
            v = np.where(k, ctx, 0).sum(axis=1) / np.maximum(k.sum(axis=1), 1).astype(h.dtype)
        for i, (w, b) in enumerate(net.critic):
            v = v @ w + b
            if i < len(net.critic) - 1:
                v = act(v)
        value = v
    return z, value


def masked_argmax(logits: np.ndarray, action_mask: np.ndarray | None) -> np.ndarray:
    """Per plan entry the best allowed level: ``logits`` (..., E, L), ``action_mask`` flat
    ``E * L`` booleans per row or None; masked as MaskablePPO masks (``MASKED_LOGIT``)."""
    if action_mask is not None:
        mask = np.asarray(action_mask, dtype=bool).reshape(logits.shape)
        logits = np.where(mask, logits, np.float32(MASKED_LOGIT))
    return logits.argmax(axis=-1).astype(np.int64)


@dataclass
class ModularPolicy:
    """An exported modular plan actor: ``act(observation, action_mask) -> plan``.

    Runs on any observation whose per-module features and kinds are those it was trained with;
    the module count is free. The layout is found by name after :meth:`bind_names` (what
    :func:`shift_rl.agents.check_policy_fits` does with the scenario's names), else from the
    builder's positional layout for the observation's width. An advised policy (its
    ``policy.json`` names an ``advisor``) runs that heuristic on the same observation and
    mask each tick and reads its plan as the last token feature (:data:`ADVICE`): it needs
    the scenario (:func:`check_modular_fits` builds the advisor for it).
    """

    name: str
    spec: dict[str, Any]
    net: ModularWeights
    kinds: tuple[str, ...]
    levels: int  # 2K + 1
    time_features: bool
    uses_masks: bool
    _layout: ModularLayout | None = field(default=None, repr=False)
    level_map: np.ndarray | None = field(default=None, repr=False)
    """Index of each of the policy's levels among the scenario's (:meth:`bind_levels`), when
    the scenario offers more amount levels; None when they are the same."""
    choices: int | None = field(default=None, repr=False)
    """The scenario's levels per plan entry when :attr:`level_map` is set."""
    advisor: Any = field(default=None, repr=False)
    """The advisor built for the bound scenario (advised policies only)."""
    advice_levels: np.ndarray | None = field(default=None, repr=False)
    """The policy's level of each of the scenario's (:func:`policy_levels`)."""

    @property
    def nvec(self) -> np.ndarray:
        """The plan's ``MultiDiscrete`` for the bound layout (empty before one is known)."""
        if self._layout is None:
            return np.zeros(0, dtype=np.int64)
        n = self.levels if self.choices is None else self.choices
        return np.full(self._layout.num_modules * len(self.kinds), n, np.int64)

    def bind_levels(self, scenario_levels: list[int]) -> None:
        """Act in a scenario whose amount levels hold the policy's (e.g. ``[1, 2, 4, 8]`` for
        a policy of ``[1, 2, 4]``): its outputs go to the matching levels, the others are
        never chosen. Else :class:`PolicyFileError`."""
        mine = [int(v) for v in self.spec["action"]["amount_levels"]]
        theirs = [int(v) for v in scenario_levels]
        try:
            self.level_map = level_map(mine, theirs)
        except ValueError:
            raise PolicyFileError(
                f"policy {self.name!r} was trained for amount levels {mine}; the scenario has "
                f"{theirs}, which do not hold them all"
            ) from None
        self.choices = None if self.level_map is None else 2 * len(theirs) + 1
        self.advice_levels = policy_levels(mine, theirs)

    @property
    def observation_shape(self) -> tuple[int, ...]:
        return () if self._layout is None else (self._layout.width,)

    def reset(self) -> None:
        """The actor is memoryless; an advisor starts a new episode."""
        if self.advisor is not None:
            self.advisor.reset()

    @property
    def advised(self) -> bool:
        return self.spec.get("advisor") is not None

    def bind_names(self, names: list[str]) -> ModularLayout:
        """Read observations with these names from now on (checked: kinds must match)."""
        layout = ModularLayout.from_names(names)
        if layout.kinds != self.kinds:
            raise PolicyFileError(
                f"policy {self.name!r} reads resource kinds {list(self.kinds)}, the observation "
                f"has {list(layout.kinds)}"
            )
        self._layout = layout
        return layout

    def layout_for(self, width: int) -> ModularLayout:
        if self._layout is not None and self._layout.width == width:
            return self._layout
        from shift_rl.observation import feature_layout

        r = len(self.kinds)
        per, extra = len(PER_KIND) * r + len(PER_MODULE), 2 + 3 * r
        m, rest = divmod(width - extra, per)
        if m < 1 or rest:
            raise ValueError(
                f"policy {self.name!r}: an observation of width {width} is not M modules x "
                f"{per} + {extra} for kinds {list(self.kinds)}"
            )
        names = [f.name for f in feature_layout([f"m{i}" for i in range(m)], list(self.kinds))]
        return self.bind_names(names)

    def advice(self, observation: np.ndarray, action_mask: np.ndarray | None) -> np.ndarray:
        """``(1, M, R)`` encoded plan of the advisor on this observation (it steps its state:
        one call per tick)."""
        if self.advisor is None or self.advice_levels is None or self._layout is None:
            raise PolicyFileError(
                f"policy {self.name!r} is advised by {self.spec['advisor']['name']!r}: bind it "
                "to a scenario first (shift_rl.agents.check_policy_fits)"
            )
        plan = np.asarray(self.advisor.act(observation, action_mask), dtype=np.int64)
        levels = self.advice_levels[plan].reshape(1, self._layout.num_modules, len(self.kinds))
        return encode_advice(levels, self.levels // 2)

    def logits(self, observation: np.ndarray, action_mask: np.ndarray | None = None) -> np.ndarray:
        """Unmasked logits ``(M * R, 2K + 1)`` of one observation, in plan-entry order (an
        advised policy's advisor acts on it with ``action_mask``, the scenario's)."""
        x = np.asarray(observation, dtype=np.float32).reshape(1, -1)
        layout = self.layout_for(x.shape[1])
        advice = self.advice(observation, action_mask) if self.advised else None
        tokens, globals_ = featurize(x, layout, self.time_features, advice)
        z, _ = forward(tokens, globals_, self.net, critic=False, present=presence(x, layout))
        return z.reshape(-1, self.levels)

    def act(self, observation: np.ndarray, action_mask: np.ndarray | None = None) -> np.ndarray:
        z = self.logits(observation, action_mask)
        if not np.isfinite(z).all():
            raise FloatingPointError(f"policy {self.name!r} produced non-finite logits")
        mask = action_mask if self.uses_masks else None
        if self.level_map is None:
            return masked_argmax(z, mask)
        if mask is not None:  # the scenario's mask at the policy's levels
            mask = np.asarray(mask, dtype=bool).reshape(z.shape[0], -1)[:, self.level_map]
        return self.level_map[masked_argmax(z, mask)]


# -- loading ---------------------------------------------------------------------------------
_KEYS = ("action", "features", "files", "format_version", "guard", "kind", "network",
         "scenario", "spec_sha256", "training")  # fmt: skip
_OPTIONAL_KEYS = ("advisor",)


def weight_names(network: dict[str, int], advised: bool = False) -> set[str]:
    names = {f"{part}{i}_{p}" for part in ("encoder", "actor", "critic")
             for i in range(network[part]) for p in "wb"}  # fmt: skip
    return names | ({ADVICE_GAIN} if advised else set())


def _read_arrays(path: Path, expected: set[str]) -> dict[str, np.ndarray]:
    """The arrays of an npz, each checked from its header before it is read: exactly the
    expected members, plain float vectors or matrices (never pickled objects), bounded size."""
    out: dict[str, np.ndarray] = {}
    total = 0
    files = {f"{n}.npy" for n in expected}
    try:
        if _zip_entries(path) != len(files):
            raise PolicyFileError(f"{path}: not the {len(files)} arrays of a modular actor")
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            names = {i.filename for i in infos}
            if names != files:
                raise PolicyFileError(
                    f"{path}: not the arrays of the modular actor policy.json describes "
                    f"(unexpected {sorted(names - files)[:5]}, missing {sorted(files - names)[:5]})"
                )
            for info in infos:
                with zf.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    if version not in ((1, 0), (2, 0)):
                        raise PolicyFileError(f"{path}: {info.filename}: npy {version} unsupported")
                    read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                            else np.lib.format.read_array_header_2_0)  # fmt: skip
                    shape, _, dtype = read(f)
                if dtype.hasobject or dtype.kind != "f" or len(shape) not in (1, 2):
                    raise PolicyFileError(
                        f"{path}: {info.filename} is {dtype} of shape {shape}; expected a float "
                        "vector or matrix (never pickled objects)"
                    )
                total += int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
                if total > MAX_WEIGHT_BYTES:
                    raise PolicyFileError(f"{path}: arrays declare above {MAX_WEIGHT_BYTES:,} B")
            for info in infos:
                with zf.open(info) as f:
                    arr = np.lib.format.read_array(f, allow_pickle=False)
                if not np.isfinite(arr).all():
                    raise PolicyFileError(f"{path}: {info.filename} holds NaN or infinite weights")
                out[info.filename.removesuffix(".npy")] = arr.astype(np.float32)
    except PolicyFileError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise PolicyFileError(f"{path}: not a plain numpy archive ({err})") from None
    return out


def load_modular(folder: Path, spec: dict[str, Any]) -> ModularPolicy:
    """A :class:`ModularPolicy` from a folder whose ``policy.json`` (already parsed) has kind
    :data:`MODULAR_KIND`: every field checked, the file hashes, then the weights' shapes."""
    meta = folder / POLICY_JSON
    sp = _Spec(spec, meta)
    version = spec.get("format_version")
    if isinstance(version, bool) or version not in SUPPORTED_VERSIONS or version < 2:
        raise PolicyFileError(f"{meta}: a {MODULAR_KIND} needs format_version 2, got {version!r}")
    extra = sorted(set(spec) - set(_KEYS) - set(_OPTIONAL_KEYS))
    if extra:
        raise sp.fail(", ".join(extra), f"unknown field(s) for a {MODULAR_KIND}")
    missing = [k for k in _KEYS if k not in spec]
    if missing:
        raise sp.fail(", ".join(missing), "required field(s) missing")
    if sp.get("spec_sha256", "str") != spec_digest(spec):
        raise PolicyFileError(
            f"{meta}: spec_sha256 does not match the file's content (policy.json was edited or "
            "corrupted); refusing to load it"
        )
    kinds = tuple(sp.items("features.kinds", "str", 1, 64))
    time_features = sp.get("features.time_features", "bool")
    if sp.items("features.per_kind", "str", 0, 64) != list(PER_KIND):
        raise sp.fail("features.per_kind", f"must be {list(PER_KIND)} (this runtime's inputs)")
    if sp.items("features.per_module", "str", 0, 64) != list(PER_MODULE):
        raise sp.fail("features.per_module", f"must be {list(PER_MODULE)} (this runtime's inputs)")
    advised = spec.get("advisor") is not None
    if advised:
        sp.get("advisor.name", "str", choices=ADVISORS)
        if not isinstance(spec["advisor"].get("params"), dict):
            raise sp.fail("advisor.params", "must be a mapping of the advisor's parameters")
        sp.get("advisor.tuned_on", "str")
    if sp.items("features.token", "str", 0, 256) != list(token_features(advised)):
        raise sp.fail("features.token", "must be the token features of this runtime")
    if sp.items("features.global", "str", 0, 256) != list(global_features(time_features)):
        raise sp.fail("features.global", "must be the global features of this runtime")
    sp.get("action.mode", "str", choices=("plan",))
    levels = sp.items("action.amount_levels", "int", 1, 64, lo=1)
    n_levels = sp.get("action.levels", "int", lo=3, hi=129)
    if n_levels != 2 * len(levels) + 1:
        raise sp.fail("action.levels", f"must be 2 x {len(levels)} amount levels + 1", n_levels)
    uses_masks = sp.get("action.uses_masks", "bool")
    network = {p: sp.get(f"network.{p}", "int", lo=1, hi=MAX_LAYERS)
               for p in ("encoder", "actor", "critic")}  # fmt: skip
    activation = sp.get("network.activation", "str", choices=tuple(ACTIVATIONS))
    sp.items("network.pooling", "str", 2, 2, choices=("mean", "max"))
    sp.items("scenario.resources", "str", 1, 64)
    files = listed_files(sp)
    _check_files(folder, files)
    arrays = _read_arrays(folder / WEIGHTS, weight_names(network, advised))
    layers = {p: [(arrays[f"{p}{i}_w"], arrays[f"{p}{i}_b"]) for i in range(n)]
              for p, n in network.items()}  # fmt: skip
    gain = arrays.get(ADVICE_GAIN)
    if gain is not None and gain.shape != (1,):
        raise PolicyFileError(f"{folder / WEIGHTS}: {ADVICE_GAIN} has shape {gain.shape}, not (1,)")
    net = ModularWeights(layers["encoder"], layers["actor"], layers["critic"], activation, gain)
    _check_shapes(folder / WEIGHTS, net, len(token_features(advised)),
                  len(global_features(time_features)), n_levels)  # fmt: skip
    return ModularPolicy(folder.name, spec, net, kinds, n_levels, time_features, uses_masks)


def _check_shapes(path: Path, net: ModularWeights, tokens: int, globals_: int, levels: int) -> None:
    def chain(layers: list[Layer], fan_in: int, what: str) -> int:
        for i, (w, b) in enumerate(layers):
            if w.ndim != 2 or w.shape[0] != fan_in or b.shape != (w.shape[1],):
                raise PolicyFileError(
                    f"{path}: {what} layer {i} has shape {w.shape} / {b.shape}, expected "
                    f"({fan_in}, n) / (n,)"
                )
            fan_in = w.shape[1]
        return fan_in

    h = chain(net.encoder, tokens, "encoder")
    if chain(net.actor, 3 * h + globals_, "actor") != levels:
        raise PolicyFileError(f"{path}: the actor gives {net.actor[-1][0].shape[1]} logits, "
                              f"policy.json says {levels} levels")  # fmt: skip
    if chain(net.critic, 2 * h + globals_, "critic") != 1:
        raise PolicyFileError(f"{path}: the critic does not end in one value")


_WARNED: set[tuple[str, tuple[str, ...]]] = set()


def check_modular_fits(
    policy: ModularPolicy, name: str, params: Any, make_policy: Any = None
) -> None:
    """Refuse a modular policy for a scenario whose per-module features, kinds, levels or
    bounds differ from its own; any module count is accepted. Binds the policy to the
    scenario's observation names (read by name)."""
    from shift_rl.observation import ObservationBuilder

    scenario = params.config.name
    builder = ObservationBuilder(params, 1)
    kinds = tuple(r.name for r in params.config.resources)
    trained = list(policy.spec["features"]["kinds"])  # policy.kinds: the bound scenario's
    untrained = [k for k in kinds if k not in trained]
    if untrained and (name, kinds) not in _WARNED:
        _WARNED.add((name, kinds))  # once per process: evaluations bind a policy per episode
        # the head is per kind and kind-agnostic: each kind is read as the trained ones were
        logger.warning(
            "%s was trained on resource kinds %s; scenario %r has %s: %s planned as the "
            "trained kinds were (cross-kind trade-offs are not learned)",
            name, trained, scenario, list(kinds), ", ".join(untrained),
        )  # fmt: skip
    policy.kinds = kinds  # any of them, in the scenario's order: tokens are per kind
    mode = params.config.action.mode
    if mode != "plan":
        raise PolicyFileError(
            f"policy {name!r} produces plans; scenario {scenario!r} takes action.mode {mode!r}"
        )
    try:
        policy.bind_levels([int(v) for v in params.amount_levels])
    except PolicyFileError as err:
        raise PolicyFileError(f"{err} (scenario {scenario!r})") from None
    bounds = policy.spec["features"].get("bounds", {})
    first = params.config.modules[0].name
    for feat in builder.spec:
        base = _base_name(feat.name, first, kinds)
        if base is not None and base in bounds and list(bounds[base]) != [feat.low, feat.high]:
            raise PolicyFileError(
                f"policy {name!r} was trained with {base} in {bounds[base]}; scenario "
                f"{scenario!r} gives [{feat.low}, {feat.high}] (another observation version)"
            )
    policy.bind_names(builder.names)
    if policy.advised:
        _bind_advisor(policy, name, params, make_policy)


def _bind_advisor(policy: ModularPolicy, name: str, params: Any, make_policy: Any) -> None:
    """Build the policy's advisor for the scenario, with the parameters it was trained with
    (``make_policy``: :func:`shift_rl.agents.make_policy`, passed in: the runtime imports
    nothing of the package beyond itself)."""
    if make_policy is None:
        raise PolicyFileError(f"policy {name!r} is advised: bind it with check_policy_fits")
    advisor = policy.spec["advisor"]
    try:
        policy.advisor = make_policy(advisor["name"], params, **advisor["params"])
    except (TypeError, ValueError) as err:
        raise PolicyFileError(
            f"policy {name!r}: its advisor {advisor['name']!r} with parameters "
            f"{advisor['params']} does not run on scenario {params.config.name!r}: {err}"
        ) from None


def _base_name(full: str, module: str, kinds: tuple[str, ...]) -> str | None:
    """``alloc.cpu`` / ``utilization`` for the first module's features, else None."""
    if not full.startswith(module + "."):
        return None
    return full[len(module) + 1 :]


def feature_bounds(names: list[str], low: np.ndarray, high: np.ndarray) -> dict[str, list[float]]:
    """The bounds of the first module's features by base name (what the export records)."""
    layout = ModularLayout.from_names(names)
    first = layout.modules[0]
    out = {}
    for n, lo, hi in zip(names, low, high, strict=True):
        base = _base_name(n, first, layout.kinds)
        if base is not None:
            out[base] = [float(lo), float(hi)]
    return out


__all__ = [
    "ADVICE",
    "ADVISORS",
    "GLOBAL_FEATURES",
    "MODULAR_KIND",
    "TOKEN_FEATURES",
    "ModularLayout",
    "ModularPolicy",
    "ModularWeights",
    "check_modular_fits",
    "decode_advice",
    "encode_advice",
    "featurize",
    "forward",
    "level_map",
    "load_modular",
    "masked_argmax",
    "padding_logits",
    "policy_levels",
    "presence",
    "token_features",
]
