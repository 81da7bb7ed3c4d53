"""The padded MultiDiscrete distribution is SB3's distribution, computed faster.

Log-probabilities, entropies and modes match SB3's ``MultiCategoricalDistribution`` on random
logits and uneven choice counts; samples follow the softmax probabilities and never land on
padding; gradients stay finite; and ``ShiftActorCriticPolicy`` with the weights of SB3's
``MlpPolicy`` evaluates actions as it does.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3 import PPO
from stable_baselines3.common.distributions import MultiCategoricalDistribution
from stable_baselines3.common.policies import ActorCriticPolicy

from shift_rl.config import load_scenario
from shift_rl.env import ResourceShiftEnv
from shift_rl.torch_policy import PaddedMultiCategorical, ShiftActorCriticPolicy

MODES = ["plan", "shift"]


def _scenario(mode: str = "plan", name: str = "default"):
    """The scenario with ``action.mode`` set: a plan (``[7] * 6`` on default) or a shift
    (``[6, 6, 3]``)."""
    from shift_rl.config import scenario_from_dict

    data = load_scenario(name).model_dump(mode="json")
    data["action"]["mode"] = mode
    return scenario_from_dict(data, f"{name} in {mode} mode")


def _pair(dims: list[int], logits: torch.Tensor):
    ref = MultiCategoricalDistribution(dims).proba_distribution(logits)
    new = PaddedMultiCategorical(dims).proba_distribution(logits)
    return ref, new


@settings(max_examples=40, deadline=None)
@given(
    dims=st.lists(st.integers(1, 7), min_size=1, max_size=4),
    batch=st.integers(1, 9),
    seed=st.integers(0, 2**31 - 1),
    scale=st.sampled_from([0.1, 1.0, 30.0]),
)
def test_matches_sb3_distribution(dims: list[int], batch: int, seed: int, scale: float) -> None:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, sum(dims), generator=gen) * scale
    actions = torch.stack([torch.randint(0, d, (batch,), generator=gen) for d in dims], dim=1)
    ref, new = _pair(dims, logits)
    torch.testing.assert_close(new.log_prob(actions), ref.log_prob(actions), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(new.entropy(), ref.entropy(), rtol=1e-5, atol=1e-5)
    assert torch.equal(new.mode(), ref.mode())
    sample = new.sample()
    assert sample.shape == (batch, len(dims))
    assert (sample < torch.tensor(dims)).all() and (sample >= 0).all()  # never a padding slot


def test_samples_follow_the_probabilities() -> None:
    torch.manual_seed(0)
    dims = [6, 6, 3]
    logits = torch.randn(1, sum(dims)).repeat(20_000, 1)
    _, new = _pair(dims, logits)
    sample = new.sample().numpy()
    start = 0
    for d, n in enumerate(dims):
        p = torch.softmax(logits[0, start : start + n], 0).numpy()
        freq = np.bincount(sample[:, d], minlength=n) / sample.shape[0]
        # 20,000 draws: a frequency's standard error is at most 0.0036
        assert np.abs(freq - p).max() < 0.015, (d, freq, p)
        start += n


def test_gradients_are_finite_with_padding() -> None:
    logits = torch.randn(5, 6 + 6 + 3, requires_grad=True)
    _, new = _pair([6, 6, 3], logits)
    actions = torch.tensor([[0, 5, 2]] * 5)
    (new.log_prob(actions).sum() + new.entropy().sum()).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0


@pytest.mark.parametrize("mode", MODES)
def test_policy_evaluates_as_sb3_mlp_policy(mode: str) -> None:
    env = ResourceShiftEnv(_scenario(mode))
    nvec = env.action_space.nvec
    kwargs = {
        "policy_kwargs": {"net_arch": [32]},
        "seed": 0,
        "device": "cpu",
        "n_steps": 8,
        "batch_size": 8,
    }
    ref = PPO("MlpPolicy", env, **kwargs).policy
    new = PPO(ShiftActorCriticPolicy, env, **kwargs).policy
    assert isinstance(new.action_dist, PaddedMultiCategorical)
    new.load_state_dict(ref.state_dict())  # same layers, same names
    obs = torch.as_tensor(np.stack([env.reset(seed=s)[0] for s in range(16)]))
    actions = torch.as_tensor(np.stack([env.action_space.sample() for _ in range(16)]))
    assert actions.shape == (16, len(nvec))
    for a, b in zip(ref.evaluate_actions(obs, actions), new.evaluate_actions(obs, actions),
                    strict=True):  # fmt: skip
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert np.array_equal(
        ref.predict(obs.numpy(), deterministic=True)[0],
        new.predict(obs.numpy(), deterministic=True)[0],
    )


def test_other_action_spaces_keep_sb3_distribution() -> None:
    import gymnasium as gym

    env = gym.make("CartPole-v1")
    policy = PPO(ShiftActorCriticPolicy, env, n_steps=8, batch_size=8, device="cpu").policy
    assert not isinstance(policy.action_dist, PaddedMultiCategorical)


@pytest.mark.parametrize("dims", [[1], [4, 1, 2]])
def test_single_choice_dimensions(dims: list[int]) -> None:
    """A dimension with one choice has log-probability 0 and no entropy."""
    logits = torch.randn(3, sum(dims))
    _, new = _pair(dims, logits)
    zero = torch.zeros(3, len(dims), dtype=torch.long)
    if dims == [1]:
        torch.testing.assert_close(new.log_prob(zero), torch.zeros(3))
        torch.testing.assert_close(new.entropy(), torch.zeros(3))
    assert torch.isfinite(new.entropy()).all()


def _policies(net_arch: list[int], activation: type[torch.nn.Module] = torch.nn.Tanh,
              mode: str = "plan"):  # fmt: skip
    env = ResourceShiftEnv(_scenario(mode))
    kwargs = {"net_arch": {"pi": net_arch, "vf": net_arch}, "activation_fn": activation}
    model = PPO(
        ShiftActorCriticPolicy,
        env,
        policy_kwargs=kwargs,
        seed=1,
        device="cpu",
        n_steps=8,
        batch_size=8,
    )
    obs = torch.as_tensor(np.stack([env.reset(seed=s)[0] for s in range(32)]))
    return model.policy, obs


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("activation", [torch.nn.Tanh, torch.nn.ReLU])
def test_numpy_rollout_forward_matches_torch(activation: type[torch.nn.Module], mode) -> None:
    """Without gradients the forward runs in numpy: same values, log-probabilities and
    deterministic actions as the torch forward PPO's update uses."""
    policy, obs = _policies([64, 32], activation, mode)
    with torch.no_grad():
        actions, values, log_prob = policy(obs)
        det = policy(obs, deterministic=True)[0]
    dims = 6 if mode == "plan" else 3
    assert actions.dtype == torch.int64 and actions.shape == (32, dims)
    assert values.shape == (32, 1) and log_prob.shape == (32,)
    ref_values, ref_log_prob, _ = policy.evaluate_actions(obs, actions)  # torch, with grad
    torch.testing.assert_close(values, ref_values.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(log_prob, ref_log_prob.detach(), rtol=1e-5, atol=1e-5)
    ref_det = ActorCriticPolicy.forward(policy, obs, deterministic=True)[0]
    assert torch.equal(det, ref_det)


@pytest.mark.parametrize("mode", MODES)
def test_numpy_rollout_forward_samples_the_distribution(mode: str) -> None:
    policy, obs = _policies([16], mode=mode)
    torch.manual_seed(0)
    one = obs[:1].repeat(20_000, 1)
    with torch.no_grad():
        actions = policy(one)[0].numpy()
    probs = torch.softmax(policy.action_net(policy.mlp_extractor.forward_actor(obs[:1])), 1)
    start = 0
    for d, n in enumerate([7] * 6 if mode == "plan" else [6, 6, 3]):
        p = probs[0, start : start + n].detach().numpy()
        p = p / p.sum()
        freq = np.bincount(actions[:, d], minlength=n) / actions.shape[0]
        assert np.abs(freq - p).max() < 0.015, (d, freq, p)
        start += n


def test_numpy_rollout_forward_follows_parameter_updates() -> None:
    """The numpy views share the parameters' memory: optimizer steps and loaded weights show."""
    policy, obs = _policies([16])
    other, _ = _policies([16])
    with torch.no_grad():
        other.value_net.bias.add_(3.0)
        before = policy(obs, deterministic=True)[1]
        policy.load_state_dict(other.state_dict())
        after = policy(obs, deterministic=True)[1]
    torch.testing.assert_close(after, other(obs, deterministic=True)[1])
    assert not torch.allclose(before, after)
    loss = policy.evaluate_actions(obs, torch.zeros(32, 6, dtype=torch.long))[0].sum()
    loss.backward()
    policy.optimizer.step()
    with torch.no_grad():
        stepped = policy(obs, deterministic=True)[1]
    torch.testing.assert_close(stepped, ActorCriticPolicy.forward(policy, obs, True)[1])
    assert not torch.allclose(after, stepped)


def test_forward_with_gradients_is_torch() -> None:
    policy, obs = _policies([16])
    _, values, log_prob = policy(obs)
    assert values.requires_grad and log_prob.requires_grad


@settings(max_examples=30, deadline=None)
@given(
    dims=st.lists(st.integers(1, 7), min_size=1, max_size=4),
    batch=st.integers(1, 9),
    seed=st.integers(0, 2**31 - 1),
)
def test_masking_matches_sb3_contrib(dims: list[int], batch: int, seed: int) -> None:
    from sb3_contrib.common.maskable.distributions import MaskableMultiCategoricalDistribution

    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, sum(dims), generator=gen) * 3
    masks = torch.rand(batch, sum(dims), generator=gen) < 0.6
    start = 0
    for n in dims:  # at least one allowed choice per dimension, as the guard's masks have
        masks[:, start] = True
        start += n
    actions = torch.stack([torch.randint(0, d, (batch,), generator=gen) for d in dims], dim=1)
    ref = MaskableMultiCategoricalDistribution(dims).proba_distribution(logits)
    new = PaddedMultiCategorical(dims).proba_distribution(logits)
    ref.apply_masking(masks)
    new.apply_masking(masks.numpy())
    torch.testing.assert_close(new.log_prob(actions), ref.log_prob(actions), rtol=1e-5, atol=1e-2)
    torch.testing.assert_close(new.entropy(), ref.entropy(), rtol=1e-5, atol=1e-5)
    assert torch.equal(new.mode(), ref.mode())
    sample = new.sample()
    start = 0
    for d, n in enumerate(dims):  # never a forbidden choice
        assert masks[torch.arange(batch), start + sample[:, d]].all()
        start += n
    new.apply_masking(None)  # lifting the masks restores the plain distribution
    plain = PaddedMultiCategorical(dims).proba_distribution(logits)
    torch.testing.assert_close(new.entropy(), plain.entropy())


@pytest.mark.parametrize(("mode", "name"), [("plan", "default"), ("plan", "multi_resource"),
                                           ("shift", "default")])  # fmt: skip
def test_maskable_numpy_rollout_forward_matches_torch(mode: str, name: str) -> None:
    from sb3_contrib import MaskablePPO

    from shift_rl.torch_policy import ShiftMaskablePolicy

    env = ResourceShiftEnv(_scenario(mode, name))
    nvec = env.action_space.nvec
    kwargs = {"net_arch": {"pi": [32], "vf": [32]}}
    model = MaskablePPO(ShiftMaskablePolicy, env, policy_kwargs=kwargs, seed=2, device="cpu",
                        n_steps=8, batch_size=8)  # fmt: skip
    policy = model.policy
    obs, masks = [], []
    for s in range(16):
        o, _ = env.reset(seed=s)
        for _ in range(s % 5):  # some steps in, so locks and limits close some choices
            o, *_ = env.step(env.action_space.sample())
        obs.append(o)
        masks.append(env.action_masks())
    obs_t, masks_np = torch.as_tensor(np.stack(obs)), np.stack(masks)
    assert not masks_np.all()
    torch.manual_seed(0)
    with torch.no_grad():
        actions, values, log_prob = policy(obs_t, action_masks=masks_np)
        det = policy(obs_t, deterministic=True, action_masks=masks_np)[0]
    ref_values, ref_log_prob, _ = policy.evaluate_actions(obs_t, actions, torch.as_tensor(masks_np))
    torch.testing.assert_close(values, ref_values.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(log_prob, ref_log_prob.detach(), rtol=1e-5, atol=1e-4)
    offsets = np.cumsum([0, *nvec[:-1]])
    assert masks_np[np.arange(16)[:, None], offsets + actions.numpy()].all()  # allowed only
    ref_det = MaskableActorCriticPolicy.forward(policy, obs_t, True, action_masks=masks_np)[0]
    assert torch.equal(det, ref_det)


def test_a_fully_masked_dimension_is_uniform_over_its_own_choices() -> None:
    """Every choice forbidden: uniform over the dimension's own choices (sb3-contrib's intent;
    its float32 normalisation of two -1e8 logits rounds log(1/2) to 0), never padding."""
    dims = [2, 5]
    logits = torch.randn(4000, 7)
    masks = torch.ones(4000, 7, dtype=torch.bool)
    masks[:, :2] = False  # nothing allowed in the 2-choice dimension
    new = PaddedMultiCategorical(dims).proba_distribution(logits)
    new.apply_masking(masks)
    actions = torch.zeros(4000, 2, dtype=torch.long)
    want = -np.log(2.0) + torch.log_softmax(logits[:, 2:], dim=1)[:, 0]
    torch.testing.assert_close(new.log_prob(actions), want, rtol=1e-5, atol=1e-5)
    sample = new.sample()
    assert (sample[:, 0] < 2).all() and 0.45 < sample[:, 0].float().mean() < 0.55
