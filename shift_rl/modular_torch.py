"""The torch twin of :mod:`shift_rl.modular`, the SB3 policies that train it, and its export.

:class:`ModularNet` is the math of :func:`shift_rl.modular.forward` in torch (same layers,
same order, the actor's first layer split into its ``h`` and context parts); the inputs are
the same numpy features (:func:`shift_rl.modular.featurize`, no parameters, no gradient
needed), so there is one feature implementation for training, the runtime and ONNX.

:class:`ModularActorCriticPolicy` (PPO) and :class:`ModularMaskablePolicy` (MaskablePPO) are
SB3's policies with the network replaced: the "MLP extractor" returns the flat plan logits
(entry ``m * R + r`` holds ``2K + 1`` contiguous logits, SB3's ``MultiDiscrete`` order) and
the value, ``action_net`` and ``value_net`` are identities. Actions use
:class:`~shift_rl.torch_policy.PaddedMultiCategorical` (all entries have ``2K + 1`` choices:
no padding) and, without gradients, the forward pass runs in numpy on views of the parameters
(:func:`shift_rl.modular.forward`), as :mod:`shift_rl.torch_policy` does for the MLP.

:func:`export_modular` writes the policy folder (``kind: modular-plan-actor``) and an ONNX
graph with dynamic batch and module axes: inputs ``tokens (B, M, R, F)`` and
``globals (B, R, G)``, output ``logits (B, M, R, 2K + 1)``. An advised network's advice is
the tokens' last feature, and its gain is in the graph.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3.common.policies import ActorCriticPolicy
from torch import nn

from shift_rl.modular import (
    MODULAR_KIND,
    PER_KIND,
    PER_MODULE,
    ModularLayout,
    ModularWeights,
    feature_bounds,
    featurize,
    forward,
    global_features,
    padding_logits,
    presence,
    token_features,
)
from shift_rl.runtime import FORMAT_VERSION, MASKED_LOGIT, ONNX, POLICY_JSON, WEIGHTS, spec_digest
from shift_rl.torch_policy import PaddedMultiCategorical

_ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU}


def _mlp(sizes: list[int]) -> nn.ModuleList:
    return nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))


class ModularNet(nn.Module):
    """phi (encoder), psi (actor head), rho (critic) of the module docstring of
    :mod:`shift_rl.modular`, on featurized inputs."""

    def __init__(
        self, token_dim: int, global_dim: int, levels: int, encoder: list[int],
        actor: list[int], critic: list[int], activation: str = "tanh",
        advice_gain: float | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        self.activation = activation
        self.advice_gain = (None if advice_gain is None
                            else nn.Parameter(torch.tensor([float(advice_gain)])))  # fmt: skip
        self.act = _ACTIVATIONS[activation]()
        self.encoder = _mlp([token_dim, *encoder])
        h = encoder[-1]
        self.hidden = h
        self.actor = _mlp([3 * h + global_dim, *actor, levels])
        self.critic = _mlp([2 * h + global_dim, *critic, 1])

    def encode(
        self, tokens: torch.Tensor, globals_: torch.Tensor, present: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:
        """``(h, ctx)``; ``present`` (B, M, R) bool leaves padding tokens out of the pooling."""
        h = tokens
        for layer in self.encoder:
            h = self.act(layer(h))
        if present is None:
            ctx = torch.cat([h.mean(dim=1), h.amax(dim=1), globals_], dim=2)  # (B, R, C)
            return h, ctx
        p = present[..., None]  # (B, M, R, 1)
        n = p.sum(dim=1).clamp(min=1).to(h.dtype)
        mean = torch.where(p, h, torch.zeros((), dtype=h.dtype)).sum(dim=1) / n
        top = torch.where(p, h, torch.full((), -torch.inf, dtype=h.dtype)).amax(dim=1)
        top = torch.where(torch.isfinite(top), top, torch.zeros((), dtype=h.dtype))
        return h, torch.cat([mean, top, globals_], dim=2)

    def logits(
        self, h: torch.Tensor, ctx: torch.Tensor, present: torch.Tensor | None = None,
        advice: torch.Tensor | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """Per-token logits; an advised net adds its gain at the level ``advice`` (the tokens'
        last feature, ``(B, M, R)`` encoded) names (:func:`shift_rl.modular.forward`)."""
        first = self.actor[0]
        w = first.weight  # (out, 3H + G)
        z = h @ w[:, : self.hidden].T + (ctx @ w[:, self.hidden :].T + first.bias)[:, None]
        for layer in self.actor[1:]:
            z = layer(self.act(z))
        if self.advice_gain is not None:
            if advice is None:
                raise ValueError("an advised network needs the advice")
            k = z.shape[-1] // 2
            level = torch.clamp(torch.round(advice * k) + k, 0, 2 * k)
            hit = level[..., None] == torch.arange(z.shape[-1], dtype=level.dtype)
            z = z + self.advice_gain * hit.to(z.dtype)
        if present is not None:  # padding tokens: only "no change" (modular.padding_logits)
            pad = torch.from_numpy(padding_logits(z.shape[-1])).to(z.dtype)
            z = torch.where(present[..., None], z, pad)
        return z  # (B, M, R, L)

    def value(self, ctx: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
        """The critic on the mean of ``ctx`` over the kinds (the row's real kinds)."""
        if present is None:
            v = ctx.mean(dim=1)
        else:
            k = present.any(dim=1)[..., None]  # (B, R, 1)
            zero = torch.zeros((), dtype=ctx.dtype)
            v = torch.where(k, ctx, zero).sum(dim=1) / k.sum(dim=1).clamp(min=1).to(ctx.dtype)
        for i, layer in enumerate(self.critic):
            v = layer(v)
            if i < len(self.critic) - 1:
                v = self.act(v)
        return v  # (B, 1)

    def forward(
        self, tokens: torch.Tensor, globals_: torch.Tensor, present: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:
        h, ctx = self.encode(tokens, globals_, present)
        return self.logits(h, ctx, present, self.advice_of(tokens)), self.value(ctx, present)

    def advice_of(self, tokens: torch.Tensor) -> torch.Tensor | None:
        return None if self.advice_gain is None else tokens[..., -1]

    def numpy_weights(self) -> ModularWeights:
        """Numpy views of the parameters (``w`` as (in, out)): they follow optimizer steps."""

        def layers(mods: nn.ModuleList) -> list[tuple[np.ndarray, np.ndarray]]:
            return [(m.weight.detach().numpy().T, m.bias.detach().numpy()) for m in mods]

        gain = None if self.advice_gain is None else self.advice_gain.detach().numpy()
        return ModularWeights(layers(self.encoder), layers(self.actor), layers(self.critic),
                              self.activation, gain)  # fmt: skip

    def init_weights(self) -> None:
        """SB3's orthogonal init: hidden layers gain sqrt(2), logits 0.01, value 1; zero bias."""
        for mods in (self.encoder, self.actor, self.critic):
            for layer in mods:
                nn.init.orthogonal_(layer.weight, gain=math.sqrt(2))
                nn.init.zeros_(layer.bias)
        nn.init.orthogonal_(self.actor[-1].weight, gain=0.01)
        nn.init.orthogonal_(self.critic[-1].weight, gain=1.0)


class ModularExtractor(nn.Module):
    """SB3's "MLP extractor" slot: flat observations -> (flat plan logits, value)."""

    def __init__(self, layout: ModularLayout, net: ModularNet, time_features: bool) -> None:
        super().__init__()
        self.layout, self.net, self.time_features = layout, net, time_features
        levels = net.actor[-1].out_features
        self.latent_dim_pi = layout.num_modules * len(layout.kinds) * levels
        self.latent_dim_vf = 1

    def inputs(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Tokens, globals and (padded observations) the presence flags of ``obs``."""
        x = obs.detach().cpu().numpy().reshape(obs.shape[0], -1)
        tokens, globals_ = featurize(x, self.layout, self.time_features)
        present = presence(x, self.layout)
        flags = None if present is None else torch.from_numpy(present)
        return torch.from_numpy(tokens), torch.from_numpy(globals_), flags

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, value = self.net(*self.inputs(obs))
        return logits.reshape(obs.shape[0], -1), value

    def forward_actor(self, obs: torch.Tensor) -> torch.Tensor:
        tokens, globals_, present = self.inputs(obs)
        h, ctx = self.net.encode(tokens, globals_, present)
        z = self.net.logits(h, ctx, present, self.net.advice_of(tokens))
        return z.reshape(obs.shape[0], -1)

    def forward_critic(self, obs: torch.Tensor) -> torch.Tensor:
        tokens, globals_, present = self.inputs(obs)
        _, ctx = self.net.encode(tokens, globals_, present)
        return self.net.value(ctx, present)


class _Modular:
    """Policy mixin (before the SB3 policy class): the modular network in SB3's slots,
    :class:`PaddedMultiCategorical`, numpy rollouts."""

    mlp_extractor: ModularExtractor

    def _setup(self, observation_names: list[str], encoder: list[int], actor: list[int],
               critic: list[int], activation: str, time_features: bool,
               advice_gain: float | None) -> None:  # fmt: skip
        layout = ModularLayout.from_names(list(observation_names))
        if (advice_gain is None) != (layout.advice_index is None):
            raise ValueError(
                "an advised modular policy (advice_gain) needs observations with the advice "
                "features (<module>.advice.<kind>), and only it reads them"
            )
        self._modular = {
            "layout": layout, "encoder": list(encoder), "actor": list(actor),
            "critic": list(critic), "activation": activation, "time_features": time_features,
            "advice_gain": advice_gain,
        }  # fmt: skip

    def _build(self, lr_schedule: Any) -> None:  # replaces SB3's: same optimizer, other net
        cfg = self._modular
        layout: ModularLayout = cfg["layout"]
        nvec = np.asarray(self.action_space.nvec)  # type: ignore[attr-defined]
        levels = int(nvec[0])
        if nvec.tolist() != [levels] * (layout.num_modules * len(layout.kinds)):
            raise ValueError(
                f"the modular policy needs a plan action of {layout.num_modules} modules x "
                f"{len(layout.kinds)} kinds entries of equal levels, got nvec {nvec.tolist()}"
            )
        advised = cfg["advice_gain"] is not None
        net = ModularNet(len(token_features(advised)), len(global_features(cfg["time_features"])),
                         levels, cfg["encoder"], cfg["actor"], cfg["critic"],
                         cfg["activation"], cfg["advice_gain"])  # fmt: skip
        net.init_weights()
        self.mlp_extractor = ModularExtractor(layout, net, cfg["time_features"])
        self.action_net = nn.Identity()
        self.value_net = nn.Identity()
        self.action_dist = PaddedMultiCategorical(nvec.tolist())
        self._numpy_views: tuple[int, ModularWeights] | None = None
        self.optimizer = self.optimizer_class(  # type: ignore[attr-defined]
            self.parameters(),  # type: ignore[attr-defined]
            lr=lr_schedule(1),
            **self.optimizer_kwargs,  # type: ignore[attr-defined]
        )

    def _weights(self) -> ModularWeights:
        net = self.mlp_extractor.net
        address = net.encoder[0].weight.data_ptr()
        if self._numpy_views is None or self._numpy_views[0] != address:
            self._numpy_views = (address, net.numpy_weights())
        return self._numpy_views[1]

    def forward(
        self, obs: torch.Tensor, deterministic: bool = False, action_masks: Any = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Actions, values and log-probabilities: in numpy when no gradient is wanted."""
        if torch.is_grad_enabled() or obs.device.type != "cpu":
            if action_masks is None:
                return super().forward(obs, deterministic)  # type: ignore[misc]
            return super().forward(obs, deterministic, action_masks=action_masks)  # type: ignore[misc]
        ext = self.mlp_extractor
        x = obs.numpy().reshape(obs.shape[0], -1)
        tokens, globals_ = featurize(x, ext.layout, ext.time_features)
        z, values = forward(tokens, globals_, self._weights(),
                            present=presence(x, ext.layout))  # fmt: skip
        b = x.shape[0]
        z = z.reshape(b, -1, z.shape[-1])  # (B, E, L): no padding, every entry has L levels
        if action_masks is not None:  # as PaddedMultiCategorical.apply_masking
            mask = np.asarray(action_masks, dtype=bool).reshape(z.shape)
            z = np.where(mask, z, np.float32(MASKED_LOGIT))
        z = z - z.max(axis=2, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=2, keepdims=True))
        if deterministic:
            actions = log_p.argmax(axis=2)
        else:  # inverse CDF of a uniform, as shift_rl.torch_policy's rollouts draw
            u = torch.rand(b, z.shape[1]).numpy()
            cdf = np.cumsum(np.exp(log_p), axis=2)
            actions = np.minimum((cdf < u[:, :, None]).sum(axis=2), z.shape[2] - 1)
        log_prob = np.take_along_axis(log_p, actions[:, :, None], axis=2)[:, :, 0].sum(axis=1)
        assert values is not None
        return (torch.from_numpy(actions), torch.from_numpy(values.astype(np.float32)),
                torch.from_numpy(log_prob.astype(np.float32)))  # fmt: skip


class ModularActorCriticPolicy(_Modular, ActorCriticPolicy):
    """PPO's policy with the modular network (``policy_kwargs``: ``observation_names``, the
    env's; ``encoder``, ``actor``, ``critic`` hidden sizes; ``activation``; ``time_features``;
    ``advice_gain``, the initial gain of an advised network, whose observations carry an
    advisor's plan: :mod:`shift_rl.suite_training`)."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space,
                 lr_schedule: Any, *, observation_names: list[str], encoder: list[int],
                 actor: list[int], critic: list[int], activation: str = "tanh",
                 time_features: bool = False, advice_gain: float | None = None,
                 **kwargs: Any) -> None:  # fmt: skip
        self._setup(observation_names, encoder, actor, critic, activation, time_features,
                    advice_gain)  # fmt: skip
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)


class ModularMaskablePolicy(_Modular, MaskableActorCriticPolicy):
    """MaskablePPO's policy with the modular network (same keyword arguments)."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space,
                 lr_schedule: Any, *, observation_names: list[str], encoder: list[int],
                 actor: list[int], critic: list[int], activation: str = "tanh",
                 time_features: bool = False, advice_gain: float | None = None,
                 **kwargs: Any) -> None:  # fmt: skip
        self._setup(observation_names, encoder, actor, critic, activation, time_features,
                    advice_gain)  # fmt: skip
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)


def modular_policy(cfg: Any, venv: Any) -> tuple[type, dict[str, Any]]:
    """The policy class and ``policy_kwargs`` of a ``network.kind: modular`` training config
    (:class:`~shift_rl.config.TrainConfig`) on its scenario's observation names, or on the
    venv's ``observation_names`` when it publishes them (the padded layout of
    :class:`~shift_rl.suite_training.SuiteTrainingEnv`)."""
    from shift_rl.config import ConfigError, load_scenario
    from shift_rl.observation import feature_layout

    padded = getattr(venv, "observation_names", None)  # a suite's padded layout
    if padded is not None:
        names = list(padded)
        if len(names) != int(np.prod(venv.observation_space.shape)):
            raise ConfigError("the training envs' observation names do not fit their space")
        return _policy_kwargs(cfg, names)
    scenario = load_scenario(cfg.scenario)
    if scenario.action.mode != "plan":
        raise ConfigError(
            f"network.kind modular produces plans; scenario {scenario.name!r} has action.mode "
            f"{scenario.action.mode!r} (set action.mode: plan)"
        )
    names = [f.name for f in feature_layout([m.name for m in scenario.modules],
                                            scenario.resource_names)]  # fmt: skip
    if len(names) != int(np.prod(venv.observation_space.shape)):
        raise ConfigError(f"the training envs' observations are not scenario {scenario.name!r}'s")
    return _policy_kwargs(cfg, names)


def _policy_kwargs(cfg: Any, names: list[str]) -> tuple[type, dict[str, Any]]:
    net = cfg.network
    policy = ModularActorCriticPolicy if cfg.algo == "ppo" else ModularMaskablePolicy
    return policy, {
        "observation_names": names, "encoder": list(net.encoder), "actor": list(net.actor),
        "critic": list(net.critic), "activation": net.activation,
        "time_features": net.time_features,
        "advice_gain": net.advice_gain if net.advisor is not None else None,
    }  # fmt: skip


# -- export ----------------------------------------------------------------------------------
def export_modular(
    model: Any,
    out: str | os.PathLike,
    *,
    observation_names: list[str],
    observation_low: np.ndarray,
    observation_high: np.ndarray,
    scenario: dict[str, Any],
    guard: dict[str, Any],
    training: dict[str, Any],
    release: bool = False,
    advisor: dict[str, Any] | None = None,
) -> Path:
    """Export the modular actor of an SB3 model as a ``modular-plan-actor`` policy folder
    (an advised one with its ``advisor``: ``{name, params, tuned_on}``)."""
    from shift_rl.export import write_export

    policy = model.policy
    ext: ModularExtractor = policy.mlp_extractor
    net = ext.net
    weights = net.numpy_weights()
    buf = io.BytesIO()
    np.savez(buf, **{k: v.copy() for k, v in weights.arrays().items()})
    files = {WEIGHTS: buf.getvalue()}
    graph = onnx_actor(net)
    if graph is not None:
        files[ONNX] = graph
    levels = int(net.actor[-1].out_features)
    spec = {
        "format_version": FORMAT_VERSION,
        "kind": MODULAR_KIND,
        "features": {
            "kinds": list(ext.layout.kinds),
            "per_kind": list(PER_KIND),
            "per_module": list(PER_MODULE),
            "token": list(token_features(net.advice_gain is not None)),
            "global": list(global_features(ext.time_features)),
            "time_features": ext.time_features,
            "bounds": feature_bounds(observation_names, observation_low, observation_high),
        },
        "action": {
            "mode": "plan",
            "levels": levels,
            "amount_levels": [int(v) for v in guard["amount_levels"]],
            "layout": "entry m * R + r: module m's change of kind r, level K = no change",
            "uses_masks": type(model).__name__ == "MaskablePPO",
        },
        "network": {
            "encoder": len(net.encoder),
            "actor": len(net.actor),
            "critic": len(net.critic),
            "activation": net.activation,
            "pooling": ["mean", "max"],
            "onnx_inputs": ["tokens (B, M, R, F)", "globals (B, R, G)"],
        },
        "scenario": scenario,
        "guard": guard,
        "training": training,
        "files": {name: hashlib.sha256(blob).hexdigest() for name, blob in files.items()},
    }
    if (advisor is None) != (net.advice_gain is None):
        raise ValueError("an advised network is exported with its advisor, and only it")
    if advisor is not None:
        spec["advisor"] = {"name": advisor["name"], "params": dict(advisor["params"]),
                           "tuned_on": advisor["tuned_on"]}  # fmt: skip
    spec["spec_sha256"] = spec_digest(spec)
    files[POLICY_JSON] = (json.dumps(spec, indent=2, sort_keys=True) + "\n").encode()
    return write_export(out, files, release)


def onnx_actor(net: ModularNet) -> bytes | None:
    """The actor (tokens, globals -> logits) as ONNX bytes with dynamic batch and module
    axes, or None without onnx / onnxscript."""
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        return None
    import copy
    import logging
    import warnings

    class Actor(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = copy.deepcopy(net)

        def forward(self, tokens: torch.Tensor, globals_: torch.Tensor) -> torch.Tensor:
            h, ctx = self.net.encode(tokens, globals_)
            return self.net.logits(h, ctx, None, self.net.advice_of(tokens))

    n_tok, n_glob = net.encoder[0].in_features, net.critic[0].in_features - 2 * net.hidden
    quiet = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    batch, modules = torch.export.Dim("batch"), torch.export.Dim("modules")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)
            program = torch.onnx.export(
                Actor().eval(),
                (torch.zeros(2, 3, 1, n_tok), torch.zeros(2, 1, n_glob)),
                input_names=["tokens", "globals"],
                output_names=["logits"],
                dynamic_shapes=({0: batch, 1: modules}, {0: batch}),
                dynamo=True,
                verbose=False,
            )
    finally:
        quiet.setLevel(level)
    return program.model_proto.SerializeToString()
