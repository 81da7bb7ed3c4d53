"""The actor-critic policies PPO and MaskablePPO train: SB3's ``MlpPolicy``, made faster.

The action is ``MultiDiscrete``: a plan, one level of ``2K + 1`` per module and kind
(``M * R`` dimensions), or a single shift (source, target, kind x level: three). SB3 models
it as one ``torch.distributions.Categorical`` per dimension, so every forward pass builds
that many distribution objects, validates them and samples each: about 0.5 ms of Python per
call for three dimensions against 0.1 ms for the network itself at 8 envs, the largest cost
of collecting a rollout once the env is batched, and growing with the module count.
:class:`PaddedMultiCategorical` is the same distribution (a product of independent
categoricals over the logits of SB3's action head, masked as sb3-contrib masks) computed on
one ``(batch, dims, max_choices)`` tensor: one ``log_softmax``, one ``multinomial``, one
``gather``, whatever the number of dimensions. Same parameters, same layers
(``action_net`` is SB3's), so exports and the runtime controller do not change; only the
draws of the training samples differ from SB3's.

Collecting a rollout needs no gradient, and at a few envs torch's per-operation dispatch costs
more than the arithmetic: without gradients both policies (:class:`ShiftActorCriticPolicy`,
:class:`ShiftMaskablePolicy`) run their forward pass in numpy on views of their own
parameters (the MLP of :func:`shift_rl.runtime.mlp_forward`, the runtime's), drawing uniforms
from torch's generator so seeding and checkpoints cover them. With gradients (the update) it
is the torch forward; both give the same values and log-probabilities to float32 rounding
(tested).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3.common.distributions import MultiCategoricalDistribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, FlattenExtractor

from shift_rl.runtime import MASKED_LOGIT, mlp_forward

NumpyLayer = tuple[np.ndarray, np.ndarray]


class SelectColumns(BaseFeaturesExtractor):
    """The observation's features at ``columns``, as they are: the MLP's input when the
    observation holds features it does not read (``shift_rl.observation.ADDED_FEATURES``,
    constant over the one layout an MLP runs on)."""

    def __init__(self, observation_space: spaces.Box, columns: list[int]) -> None:
        super().__init__(observation_space, len(columns))
        self.columns = np.asarray(columns, dtype=np.int64)
        self.register_buffer("index", torch.as_tensor(self.columns), persistent=False)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return observations.index_select(1, self.index)


def linear_numpy(layer: torch.nn.Linear) -> NumpyLayer:
    """``(w, b)`` of a CPU linear layer as numpy views of its parameters, ``w`` as (in, out):
    they follow the parameters through optimizer steps and ``load_state_dict``."""
    return layer.weight.detach().cpu().numpy().T, layer.bias.detach().cpu().numpy()


def mlp_numpy(net: torch.nn.Module) -> tuple[list[NumpyLayer], str]:
    """The linear layers of an SB3 MLP (``Linear``, activation, ...) and its activation name."""
    layers = [linear_numpy(m) for m in net.modules() if isinstance(m, torch.nn.Linear)]
    acts = {type(m).__name__ for m in net.children()} - {"Linear"}
    activation = {"Tanh": "tanh", "ReLU": "relu"}.get(next(iter(acts), "Tanh"))
    if activation is None or len(acts) > 1:
        raise ValueError(f"MLP activations {sorted(acts)} not supported; one of Tanh, ReLU")
    return layers, activation


class PaddedMultiCategorical(MultiCategoricalDistribution):
    """Independent categoricals over ``action_dims`` choices, on one padded tensor.

    The flat logits ``(B, sum(action_dims))`` are gathered into ``(B, D, K)``, ``K`` the
    largest choice count; padding slots get ``-inf`` so they have probability 0 and never
    get sampled. :meth:`apply_masking` masks as sb3-contrib does (a forbidden choice's logit
    becomes ``-1e8``; it adds nothing to the entropy), so one class serves PPO and
    MaskablePPO. Log-probabilities and entropies equal those of SB3's and sb3-contrib's lists
    of categoricals up to float rounding (tested).
    """

    def __init__(self, action_dims: list[int]) -> None:
        super().__init__(action_dims)
        dims = [int(d) for d in action_dims]
        pad = sum(dims)  # index of the column appended to the logits (and to the masks)
        index = np.full((len(dims), max(dims)), pad, dtype=np.int64)
        start = 0
        for d, n in enumerate(dims):
            index[d, :n] = np.arange(start, start + n)
            start += n
        self.index = index
        self.padding = index == pad  # (D, K) slots that are no choice at all
        self.nvec = np.asarray(dims, dtype=np.int64)
        self._index = torch.as_tensor(index)
        self._raw = torch.empty(0)
        self.masks: torch.Tensor | None = None
        self.log_p = torch.empty(0)

    def proba_distribution(self, action_logits: torch.Tensor) -> PaddedMultiCategorical:  # type: ignore[override]
        b = action_logits.shape[0]
        pad = action_logits.new_full((b, 1), -torch.inf)
        self._raw = torch.cat([action_logits, pad], dim=1)[:, self._index]  # (B, D, K)
        self.masks = None
        self.log_p = torch.log_softmax(self._raw, dim=-1)
        return self

    def unmasked(self, masks: Any) -> np.ndarray:
        """``(B, D, K)``: the slots whose logits stay, for flat ``masks`` ``(B, sum(dims))``
        (True = allowed): allowed choices and the padding, which keeps its ``-inf`` so that a
        dimension with every choice forbidden is uniform over its own choices (as in
        sb3-contrib), never a padding slot. The others get ``MASKED_LOGIT``."""
        flat = np.asarray(masks, dtype=bool).reshape(-1, int(self.nvec.sum()))
        closed = np.zeros((flat.shape[0], 1), dtype=bool)
        return np.concatenate([flat, closed], axis=1)[:, self.index] | self.padding

    def apply_masking(self, masks: Any) -> None:
        """Forbid choices where ``masks`` (``(B, sum(action_dims))``, True = allowed) is
        False; None lifts the masks."""
        if masks is None:
            self.masks = None
            self.log_p = torch.log_softmax(self._raw, dim=-1)
            return
        self.masks = torch.from_numpy(self.unmasked(masks))
        masked = torch.where(self.masks, self._raw, torch.tensor(MASKED_LOGIT))
        self.log_p = torch.log_softmax(masked, dim=-1)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        picked = self.log_p.gather(2, actions.long().reshape(-1, self.log_p.shape[1], 1))
        return picked.squeeze(2).sum(dim=1)

    def entropy(self) -> torch.Tensor:
        # as torch's Categorical: clamp -inf to the lowest float so 0 * log 0 is 0, not nan
        log_p = self.log_p.clamp(min=torch.finfo(self.log_p.dtype).min)
        p_log_p = log_p.exp() * log_p
        if self.masks is not None:  # as sb3-contrib: forbidden choices carry no uncertainty
            # (padding slots count as kept but have probability 0: they add 0 either way)
            p_log_p = torch.where(self.masks, p_log_p, torch.zeros(()))
        return -p_log_p.sum(dim=(1, 2))

    def sample(self) -> torch.Tensor:
        b, d, k = self.log_p.shape
        return torch.multinomial(self.log_p.exp().reshape(b * d, k), 1).reshape(b, d)

    def mode(self) -> torch.Tensor:
        return self.log_p.argmax(dim=2)


class _NumpyRollouts:
    """Policy mixin (before the SB3 policy class): :class:`PaddedMultiCategorical` for
    ``MultiDiscrete`` actions, and a forward pass in numpy when no gradient is wanted."""

    action_net: torch.nn.Linear
    value_net: torch.nn.Linear
    mlp_extractor: Any

    def _use_padded(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        self._numpy: tuple[int, Any] | None = None  # (address of the weights, layers)
        self._numpy_ok = False
        if isinstance(action_space, spaces.MultiDiscrete):
            # the action head SB3 built has the same shape: only the distribution changes
            self.action_dist = PaddedMultiCategorical(list(action_space.nvec))
            self._numpy_ok = (
                self.share_features_extractor  # type: ignore[attr-defined]
                and isinstance(self.features_extractor, (FlattenExtractor, SelectColumns))  # type: ignore[attr-defined]
                and isinstance(observation_space, spaces.Box)
            )

    def forward(
        self, obs: torch.Tensor, deterministic: bool = False, action_masks: Any = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Actions, values and log-probabilities: in numpy when no gradient is wanted."""
        if torch.is_grad_enabled() or not self._numpy_ok or obs.device.type != "cpu":
            if action_masks is None:
                return super().forward(obs, deterministic)  # type: ignore[misc]
            return super().forward(obs, deterministic, action_masks=action_masks)  # type: ignore[misc]
        (pi, vf, head, value_head), activation = self._numpy_layers()
        x = obs.numpy().reshape(obs.shape[0], -1).astype(np.float32, copy=False)
        extractor = self.features_extractor  # type: ignore[attr-defined]
        if isinstance(extractor, SelectColumns):
            x = np.ascontiguousarray(x[:, extractor.columns])  # C order: the BLAS path of x
        logits = mlp_forward(x, pi, activation, head)
        values = mlp_forward(x, vf, activation, value_head)
        dist = self.action_dist
        assert isinstance(dist, PaddedMultiCategorical)
        b = x.shape[0]
        z = np.concatenate([logits, np.full((b, 1), -np.inf, np.float32)], 1)[:, dist.index]
        if action_masks is not None:  # as PaddedMultiCategorical.apply_masking
            z = np.where(dist.unmasked(action_masks), z, np.float32(MASKED_LOGIT))
        z = z - z.max(axis=2, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=2, keepdims=True))
        nvec = dist.nvec
        if deterministic:
            actions = log_p.argmax(axis=2)
        else:  # inverse CDF of a uniform; the clip guards rounding of the last cumulative sum
            u = torch.rand(b, len(nvec)).numpy()
            cdf = np.cumsum(np.exp(log_p), axis=2)
            actions = np.minimum((cdf < u[:, :, None]).sum(axis=2), nvec - 1)
        log_prob = np.take_along_axis(log_p, actions[:, :, None], axis=2)[:, :, 0].sum(axis=1)
        return torch.from_numpy(actions), torch.from_numpy(values), torch.from_numpy(log_prob)

    def _numpy_layers(self) -> tuple[tuple[Any, ...], str]:
        """Numpy views of the networks, rebuilt if the parameters moved (e.g. ``to()``)."""
        address = self.action_net.weight.data_ptr()
        if self._numpy is None or self._numpy[0] != address:
            pi, activation = mlp_numpy(self.mlp_extractor.policy_net)
            vf, vf_activation = mlp_numpy(self.mlp_extractor.value_net)
            assert activation == vf_activation
            layers = (pi, vf, linear_numpy(self.action_net), linear_numpy(self.value_net))
            self._numpy = (address, (layers, activation))
        return self._numpy[1]


class ShiftActorCriticPolicy(_NumpyRollouts, ActorCriticPolicy):
    """PPO's policy: SB3's ``ActorCriticPolicy`` (``MlpPolicy``) with
    :class:`PaddedMultiCategorical` and numpy rollouts; any other action space or network
    keeps SB3's distribution and forward."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space, *args: Any,
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(observation_space, action_space, *args, **kwargs)
        self._use_padded(observation_space, action_space)


class ShiftMaskablePolicy(_NumpyRollouts, MaskableActorCriticPolicy):
    """MaskablePPO's policy: sb3-contrib's ``MaskableActorCriticPolicy`` with the same
    changes (masks applied as sb3-contrib applies them)."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space, *args: Any,
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(observation_space, action_space, *args, **kwargs)
        self._use_padded(observation_space, action_space)
