"""The modular plan policy: numpy and torch agree, it is permutation equivariant, one export
loads for any module count, its files are checked, and ONNX gives the runtime's actions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO

from shift_rl.agents import check_policy_fits, resolve_policy
from shift_rl.config import ConfigError, load_scenario, load_train_config
from shift_rl.env import ResourceShiftEnv
from shift_rl.modular import ModularLayout, ModularPolicy, featurize, forward
from shift_rl.modular_torch import ModularActorCriticPolicy, ModularMaskablePolicy
from shift_rl.runtime import PolicyFileError, load_policy
from shift_rl.training_envs import BatchedTrainingEnv

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "train" / "modular_default.yaml"


def _model(algo: str = "ppo", scenario: str = "default", seed: int = 0, **net) -> PPO:
    sc = load_scenario(scenario)
    venv = BatchedTrainingEnv([sc], [0, 1])
    kwargs = {"observation_names": ResourceShiftEnv(sc).observation_names,
              "encoder": [16, 16], "actor": [16], "critic": [8], **net}  # fmt: skip
    if algo == "maskable_ppo":
        from sb3_contrib import MaskablePPO

        return MaskablePPO(ModularMaskablePolicy, venv, n_steps=720, batch_size=64,
                           policy_kwargs=kwargs, seed=seed, device="cpu")  # fmt: skip
    return PPO(ModularActorCriticPolicy, venv, n_steps=720, batch_size=64,
               policy_kwargs=kwargs, seed=seed, device="cpu")  # fmt: skip


def _shake(model: PPO, seed: int = 1) -> None:
    """Random weights everywhere (the init's 0.01 logits would make every test trivial)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.policy.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)


def _observations(scenario: str, n: int = 12, seed: int = 0) -> tuple[ResourceShiftEnv, np.ndarray]:
    env = ResourceShiftEnv(load_scenario(scenario))
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    out = [obs]
    for _ in range(n - 1):
        obs, *_ = env.step(rng.integers(0, 7, env.action_space.shape))
        out.append(obs)
    return env, np.stack(out)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PPO]:
    from shift_rl.train import export_trained

    model = _model()
    _shake(model)
    cfg = load_train_config(CONFIG, ["network.encoder=[16, 16]", "network.actor=[16]",
                                     "network.critic=[8]"])  # fmt: skip
    out = tmp_path_factory.mktemp("modular") / "policy"
    export_trained(model, cfg, load_scenario("default"), out)
    return out, model


def test_numpy_and_torch_forward_agree() -> None:
    model = _model(time_features=True)
    _shake(model)
    _, obs = _observations("default")
    ext = model.policy.mlp_extractor
    tokens, globals_ = featurize(obs, ext.layout, True)
    z, v = forward(tokens, globals_, ext.net.numpy_weights())
    with torch.no_grad():
        zt, vt = ext.net(torch.from_numpy(tokens), torch.from_numpy(globals_))
    np.testing.assert_allclose(z, zt.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(v, vt.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("algo", ["ppo", "maskable_ppo"])
def test_numpy_rollouts_match_torch(algo: str) -> None:
    """Values and log-probabilities of the numpy rollout equal the torch update's."""
    model = _model(algo)
    _shake(model)
    env, obs = _observations("default", 6)
    x = torch.from_numpy(obs)
    masks = np.stack([env.action_masks()] * len(obs))
    kwargs = {"action_masks": masks} if algo == "maskable_ppo" else {}
    with torch.no_grad():
        actions, values, log_prob = model.policy(x, **kwargs)
    ev_values, ev_log_prob, _ = model.policy.evaluate_actions(x, actions, **kwargs)
    np.testing.assert_allclose(values.numpy(), ev_values.detach().numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(log_prob.numpy(), ev_log_prob.detach().numpy(), rtol=1e-4,
                               atol=1e-3)  # fmt: skip
    assert actions.shape == (len(obs), 6) and int(actions.max()) < 7


def test_permuting_modules_permutes_logits(exported: tuple[Path, PPO]) -> None:
    policy = load_policy(exported[0])
    env, obs = _observations("large", 3)
    layout = ModularLayout.from_names(env.observation_names)
    m = layout.num_modules
    perm = np.random.default_rng(3).permutation(m)
    for x in obs:
        moved = x.copy()
        # module i of the permuted observation is module perm[i] of the original
        moved[layout.kind_index] = x[layout.kind_index[perm]]
        moved[layout.module_index] = x[layout.module_index[perm]]
        base = policy.logits(x).reshape(m, -1)
        np.testing.assert_allclose(policy.logits(moved).reshape(m, -1), base[perm], atol=1e-5)


@pytest.mark.parametrize("scenario", ["default", "large", "scale_256", "trace"])
def test_one_export_runs_any_module_count(exported: tuple[Path, PPO], scenario: str) -> None:
    env = ResourceShiftEnv(load_scenario(scenario))
    policy = resolve_policy(str(exported[0]), env.params)
    assert isinstance(policy, ModularPolicy)
    obs, _ = env.reset(seed=0)
    for _ in range(3):
        action = policy.act(obs, env.action_masks())
        assert action.shape == env.action_space.shape
        assert env.action_space.contains(action)
        obs, *_ = env.step(action)


def test_export_round_trip_acts_as_the_model(exported: tuple[Path, PPO]) -> None:
    folder, model = exported
    policy = load_policy(folder)
    spec = json.loads((folder / "policy.json").read_text())
    assert spec["kind"] == "modular-plan-actor" and spec["action"]["levels"] == 7
    env, obs = _observations("default", 8)
    check_policy_fits(policy, "p", env.params)
    for x in obs:
        want, _ = model.predict(x, deterministic=True)
        np.testing.assert_array_equal(policy.act(x), want)


def test_kinds_and_levels(exported: tuple[Path, PPO], tmp_path: Path) -> None:
    """A one-kind policy plans each kind of a two-kind scenario; a two-kind policy runs on a
    scenario of one of its kinds; levels the scenario lacks are refused."""
    from shift_rl.train import export_trained

    policy = load_policy(exported[0])
    env = ResourceShiftEnv(load_scenario("multi_resource"))
    check_policy_fits(policy, "p", env.params)
    obs, _ = env.reset(seed=0)
    assert env.action_space.contains(policy.act(obs, env.action_masks()))
    two = _model(scenario="multi_resource")
    cfg = load_train_config(CONFIG, ["scenario=multi_resource", "network.encoder=[16, 16]"])
    export_trained(two, cfg, load_scenario("multi_resource"), tmp_path / "two")
    # a two-kind policy runs on a scenario of one of its kinds (as its padded training rows
    # of one kind did: the head is per kind), and back on two
    two_policy = load_policy(tmp_path / "two")
    one = ResourceShiftEnv(load_scenario("default"))
    check_policy_fits(two_policy, "p", one.params)
    obs, _ = one.reset(seed=0)
    assert one.action_space.contains(two_policy.act(obs, one.action_masks()))
    check_policy_fits(two_policy, "p", env.params)
    obs, _ = env.reset(seed=0)
    assert env.action_space.contains(two_policy.act(obs, env.action_masks()))
    policy = load_policy(exported[0])
    sc = load_scenario("default").model_dump(mode="json")
    sc["action"]["amount_levels"] = [1, 2]
    from shift_rl.config import scenario_from_dict

    with pytest.raises(PolicyFileError, match="amount levels"):
        check_policy_fits(policy, "p", ResourceShiftEnv(scenario_from_dict(sc, "x")).params)


def test_bad_files_refused(exported: tuple[Path, PPO], tmp_path: Path) -> None:
    import shutil

    src = exported[0]
    edited = tmp_path / "edited"
    shutil.copytree(src, edited)
    spec = json.loads((edited / "policy.json").read_text())
    spec["action"]["uses_masks"] = not spec["action"]["uses_masks"]
    (edited / "policy.json").write_text(json.dumps(spec))
    with pytest.raises(PolicyFileError, match="spec_sha256 does not match"):
        load_policy(edited)
    weights = tmp_path / "weights"
    shutil.copytree(src, weights)
    blob = bytearray((weights / "weights.npz").read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (weights / "weights.npz").write_bytes(bytes(blob))
    with pytest.raises(PolicyFileError, match="sha256 does not match"):
        load_policy(weights)


def test_onnx_matches_the_runtime(exported: tuple[Path, PPO]) -> None:
    ort = pytest.importorskip("onnxruntime")
    folder = exported[0]
    if not (folder / "policy.onnx").is_file():
        pytest.skip("onnx / onnxscript not installed: no ONNX graph exported")
    session = ort.InferenceSession(str(folder / "policy.onnx"))
    policy = load_policy(folder)
    for scenario in ("default", "large"):
        env, obs = _observations(scenario, 5)
        check_policy_fits(policy, "p", env.params)
        tokens, globals_ = featurize(obs, policy.layout_for(obs.shape[1]), policy.time_features)
        (logits,) = session.run(None, {"tokens": tokens, "globals": globals_})
        assert logits.shape == (len(obs), env.params.num_modules, 1, 7)
        for i, x in enumerate(obs):
            # the runtime's levels (a PPO policy acts unmasked; the guard clips); on large
            # (levels 1, 2, 4, 8) the policy's seven go to the matching scenario levels
            best = logits[i].reshape(-1, 7).argmax(axis=1)
            if policy.level_map is not None:
                best = policy.level_map[best]
            np.testing.assert_array_equal(best, policy.act(x))
            np.testing.assert_allclose(logits[i].reshape(-1, 7), policy.logits(x), atol=1e-4)


def test_config_switch() -> None:
    cfg = load_train_config(CONFIG)
    assert cfg.network.kind == "modular" and not cfg.network.time_features
    with pytest.raises(ConfigError, match=r"network\.kind"):
        load_train_config(CONFIG, ["network.kind=transformer"])
    with pytest.raises(ConfigError, match=r"network\.encoder"):
        load_train_config(CONFIG, ["network.encoder=[]"])


def test_untrained_kinds_warn_once_per_policy_and_kinds(
    exported: tuple[Path, PPO], caplog: pytest.LogCaptureFixture
) -> None:
    """A one-kind policy on a two-kind scenario warns (each kind is planned as the trained one
    was), once per process and (policy, kinds): evaluations bind a policy per episode."""
    import logging

    from shift_rl import modular

    modular._WARNED.clear()
    params = ResourceShiftEnv(load_scenario("multi_resource")).params
    with caplog.at_level(logging.WARNING, logger="shift_rl.modular"):
        for _ in range(3):
            check_policy_fits(load_policy(exported[0]), "p", params)
        check_policy_fits(load_policy(exported[0]), "q", params)
    said = [r.getMessage() for r in caplog.records if "trained on resource kinds" in r.getMessage()]
    assert len(said) == 2 and said[0].startswith("p ") and said[1].startswith("q "), said
    assert "mem planned as the trained kinds were" in said[0]
