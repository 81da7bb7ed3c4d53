"""Training on a suite's members of different module counts and kinds: the padded env,
presence in the modular network, reproducible episodes, leave-one-family-out, a tiny
end-to-end run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from stable_baselines3 import PPO

from shift_rl.config import load_scenario, train_config_from_dict
from shift_rl.env import ResourceShiftEnv
from shift_rl.modular import ModularLayout, featurize, forward, padding_logits, presence
from shift_rl.modular_torch import ModularActorCriticPolicy
from shift_rl.suite import expand_suite
from shift_rl.suite_training import (
    Padder,
    SuiteTrainingEnv,
    padded_names,
    select_scenarios,
    split_rows,
    suite_selection,
)
from shift_rl.training_envs import BatchedTrainingEnv

TICKS = 48
SUITE = {
    "name": "tiny",
    "seed": 0,
    "episode_ticks": TICKS,
    "members": [
        {"name": "default-train", "class": "default", "splits": ["train"],
         "scenario": "default", "randomize": {"variants": 2}},
        {"name": "gen", "class": "generated", "splits": ["train", "eval"],
         "generator": {"variants": 2, "modules": [2, 4], "kinds": [["cpu"]]}},
        {"name": "faults-train", "class": "faults", "splits": ["train"], "scenario": "faults"},
    ],
}  # fmt: skip
M_MAX = 8


@pytest.fixture(scope="module")
def suite_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("suite") / "tiny.yaml"
    path.write_text(yaml.safe_dump(SUITE))
    return path


@pytest.fixture(scope="module")
def scenarios(suite_file: Path) -> list:
    sel = select_scenarios(expand_suite(suite_file, "train"), M_MAX)
    assert not sel.dropped
    return sel.scenarios


def _random_actions(env: SuiteTrainingEnv, rng: np.random.Generator) -> np.ndarray:
    levels = int(env.action_space.nvec[0])
    masks = env.action_masks().reshape(env.num_envs, -1, levels)
    u = rng.random(masks.shape) * masks
    return u.argmax(axis=2)


def test_split_rows() -> None:
    assert split_rows([2, 2, 1], 5) == [2, 2, 1]
    assert split_rows([8, 1], 4) == [3, 1]
    assert sum(split_rows([5, 3, 1, 1], 16)) == 16
    with pytest.raises(Exception, match="n_envs"):
        split_rows([1, 1, 1], 2)


def test_padded_observation_and_mask_layout(scenarios: list) -> None:
    env = SuiteTrainingEnv(scenarios, list(range(6)), M_MAX)
    names = env.observation_names
    assert names == padded_names(M_MAX, ["cpu"]) and len(names) == env.observation_space.shape[0]
    assert [n for n in names if n.endswith(".present")] == [f"m{i}.present" for i in range(M_MAX)]
    assert len(env.groups) >= 3  # 6-module default, faults, generated 2-4 module planes
    obs = env.reset()
    layout = ModularLayout.from_names(names)
    masks = env.action_masks().reshape(env.num_envs, M_MAX, 7)
    for g in env.groups:
        m = g.padder.num_modules
        flags = presence(obs[g.rows], layout)
        assert (flags[:, :m]).all() and not flags[:, m:].any()
        # padding slots are zero but for nothing; present flags 1 for the real modules
        pad = np.setdiff1d(np.arange(len(names)), g.padder.obs_index)
        flag_names = [f"m{j}.present" for j in range(m)] + ["pool.present.cpu"]
        present = [names.index(n) for n in flag_names]
        assert (obs[np.ix_(g.rows, np.setdiff1d(pad, present))] == 0).all()
        # padding entries allow only "no change"; real entries are the scenario's masks
        assert (masks[g.rows, m:, 3]).all() and not masks[g.rows, m:][..., [0, 1, 2, 4, 5, 6]].any()
        real_masks = g.plane.action_masks().reshape(g.rows.size, m, -1)
        np.testing.assert_array_equal(masks[g.rows, :m], real_masks.astype(bool))
    assert env.observation_space.contains(obs[0])


def test_padder_matches_the_real_observation() -> None:
    sc = load_scenario("default")
    e = ResourceShiftEnv(sc)
    obs, _ = e.reset(seed=3)
    p = Padder(sc, M_MAX)
    padded = p.obs(obs)[0]
    names = padded_names(M_MAX, ["cpu"])
    for j, mod in enumerate(e.module_names):
        assert (
            padded[names.index(f"m{j}.utilization")]
            == obs[e.observation_names.index(f"{mod}.utilization")]
        )
    assert padded[names.index("pool.free.cpu")] == obs[e.observation_names.index("pool.free.cpu")]


def _random_model(env: SuiteTrainingEnv, seed: int) -> PPO:
    """A small modular PPO on ``env`` with random (not SB3-initialized) weights."""
    model = PPO(ModularActorCriticPolicy, env, n_steps=TICKS, batch_size=48, device="cpu",
                policy_kwargs={"observation_names": env.observation_names, "encoder": [16, 16],
                               "actor": [16], "critic": [8]})  # fmt: skip
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for prm in model.policy.parameters():
            prm.copy_(torch.randn(prm.shape, generator=gen) * 0.5)
    return model


def _random_play(env: ResourceShiftEnv, steps: int) -> np.ndarray:
    """``steps + 1`` observations of an episode (seed 0) under random plans."""
    rows = [env.reset(seed=0)[0]]
    rng = np.random.default_rng(0)
    for _ in range(steps):
        rows.append(env.step(rng.integers(0, 7, env.action_space.shape))[0])
    return np.stack(rows)


def _padded_model(scenarios: list) -> PPO:
    return _random_model(SuiteTrainingEnv(scenarios, list(range(6)), M_MAX), 1)


def test_padding_changes_neither_context_nor_real_logits(scenarios: list) -> None:
    model = _padded_model(scenarios)
    ext = model.policy.mlp_extractor
    net = ext.net.numpy_weights()
    sc = load_scenario("default")
    e = ResourceShiftEnv(sc)
    obs = _random_play(e, 5)
    rng = np.random.default_rng(1)
    real_layout = ModularLayout.from_names(e.observation_names)
    z_real, v_real = forward(*featurize(obs, real_layout), net)  # no presence: unchanged path
    padded = Padder(sc, M_MAX).obs(obs)
    tok, glob = featurize(padded, ext.layout)
    z_pad, v_pad = forward(tok, glob, net, present=presence(padded, ext.layout))
    np.testing.assert_allclose(z_pad[:, :6], z_real, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(v_pad, v_real, rtol=1e-5, atol=1e-5)
    assert (z_pad[:, 6:] == padding_logits(7)).all()
    # garbage in the padding slots (flag 0) changes nothing
    junk = padded.copy()
    names = padded_names(M_MAX, ["cpu"])
    slots = [i for i, n in enumerate(names) if n.startswith(("m6.", "m7.")) and "present" not in n]
    junk[:, slots] = rng.random((junk.shape[0], len(slots)))
    z_junk, v_junk = forward(*featurize(junk, ext.layout), net, present=presence(junk, ext.layout))
    np.testing.assert_allclose(z_junk, z_pad, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(v_junk, v_pad, rtol=1e-6, atol=1e-6)
    # the torch twin agrees, presence included
    with torch.no_grad():
        zt, vt = ext.net(torch.from_numpy(tok), torch.from_numpy(glob),
                         torch.from_numpy(presence(padded, ext.layout)))  # fmt: skip
    np.testing.assert_allclose(zt.numpy(), z_pad, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(vt.numpy(), v_pad, rtol=1e-5, atol=1e-5)
    # the SB3 policy's log-probabilities ignore padding: training's and rollouts' paths agree
    x = torch.from_numpy(padded)
    with torch.no_grad():
        actions, _, logp = model.policy(x)
    assert (actions[:, 6:] == 3).all()
    _, logp2, _ = model.policy.evaluate_actions(x, actions)
    np.testing.assert_allclose(logp2.detach().numpy(), logp.numpy(), rtol=1e-4, atol=1e-4)


def test_a_padding_kind_changes_nothing() -> None:
    """A one-kind scenario in a two-kind layout: the kind it lacks is padding (no pooling, no
    critic, only "no change"), so its logits and value are those of its own observation, and
    its plan entries land where its kind sits."""
    one, two = load_scenario("default"), load_scenario("multi_resource")
    kinds = ["cpu", "mem"]
    env = SuiteTrainingEnv([one, two], [0, 1], M_MAX, kinds)
    names = env.observation_names
    assert names[-2:] == ["pool.present.cpu", "pool.present.mem"]
    model = _random_model(env, 2)
    ext = model.policy.mlp_extractor
    net = ext.net.numpy_weights()
    e = ResourceShiftEnv(one)
    obs = _random_play(e, 4)
    rng = np.random.default_rng(1)
    z_real, v_real = forward(*featurize(obs, ModularLayout.from_names(e.observation_names)), net)
    padder = Padder(one, M_MAX, kinds)
    padded = padder.obs(obs)
    flags = presence(padded, ext.layout)
    assert flags[:, :6, 0].all() and not flags[:, :, 1].any() and not flags[:, 6:].any()
    z_pad, v_pad = forward(*featurize(padded, ext.layout), net, present=flags)
    np.testing.assert_allclose(z_pad[:, :6, :1], z_real, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(v_pad, v_real, rtol=1e-5, atol=1e-5)
    assert (z_pad[:, :, 1] == padding_logits(7)).all()
    with torch.no_grad():
        _, vt = ext.net(*(torch.from_numpy(a) for a in featurize(padded, ext.layout)),
                        torch.from_numpy(flags))  # fmt: skip
    np.testing.assert_allclose(vt.numpy(), v_pad, rtol=1e-5, atol=1e-5)
    # the scenario's entry j is the padded entry 2 j (cpu); mem entries allow only no change
    np.testing.assert_array_equal(padder.entry_index, np.arange(6) * 2)
    plan = rng.integers(0, 7, (1, 6))
    np.testing.assert_array_equal(padder.actions(padder.pad_actions(plan)), plan)
    masks = padder.masks(e.action_masks()[None]).reshape(M_MAX, 2, 7)
    assert (masks[:, 1, 3]).all() and not masks[:, 1][:, [0, 1, 2, 4, 5, 6]].any()
    np.testing.assert_array_equal(masks[:6, 0], e.action_masks().reshape(6, 7))
    # a kind out of order or not among the layout's is refused
    with pytest.raises(ValueError, match="resource kinds"):
        Padder(two, M_MAX, ["mem", "cpu"])
    with pytest.raises(ValueError, match="resource kinds"):
        Padder(two, M_MAX, ["cpu"])
    # both layouts train together: a step of random plans is finite
    env.reset()
    _, rewards, _, _ = env.step(_random_actions(env, rng))
    assert np.isfinite(rewards).all() and len(env.groups) == 2


def test_episodes_are_reproducible_and_match_batched(scenarios: list) -> None:
    def run(env, steps=2 * TICKS + 3):
        rng = np.random.default_rng(5)
        out = [env.reset()]
        rewards = []
        for _ in range(steps):
            obs, r, _, _ = env.step(_random_actions(env, rng))
            out.append(obs)
            rewards.append(r)
        return np.stack(out), np.stack(rewards), [i["episode_seed"] for i in env.reset_infos]

    a = run(SuiteTrainingEnv(scenarios, list(range(6)), M_MAX))
    b = run(SuiteTrainingEnv(scenarios, list(range(6)), M_MAX))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    # one layout, same levels: the rewards and episode seeds of BatchedTrainingEnv
    one = [s for s in scenarios if len(s.modules) == 6][:2]
    suite_env = SuiteTrainingEnv(one, [7, 8], M_MAX)
    batched = BatchedTrainingEnv(one, [7, 8])
    assert len(suite_env.groups) == 1
    rng = np.random.default_rng(2)
    suite_env.reset()
    batched.reset()
    for _ in range(TICKS + 2):
        act = _random_actions(suite_env, rng)
        _, r1, d1, _ = suite_env.step(act)
        _, r2, d2, _ = batched.step(act[:, :6])
        np.testing.assert_allclose(r1, r2, rtol=1e-6)
        np.testing.assert_array_equal(d1, d2)
    assert [i["episode_seed"] for i in suite_env.reset_infos] == [
        i["episode_seed"] for i in batched.reset_infos
    ]


def _cfg(suite_file: Path, **extra):
    return train_config_from_dict({
        "run_name": "tiny-suite", "scenario": "default", "suite": str(suite_file),
        "suite_max_modules": M_MAX, "algo": "ppo", "total_timesteps": TICKS * 6 * 8,
        "n_envs": 6, "checkpoint_every": TICKS * 6 * 4,
        "ppo": {"n_steps": TICKS, "batch_size": 96, "n_epochs": 2},
        "network": {"kind": "modular", "encoder": [16, 16], "actor": [16], "critic": [8]},
        "evaluation": {"episodes": 1, "every_timesteps": 10**8, "episodes_during": 1},
        **extra,
    })  # fmt: skip


def test_leave_one_family_out(suite_file: Path) -> None:
    full = suite_selection(_cfg(suite_file))
    left = suite_selection(_cfg(suite_file, leave_out=["generated"]))
    assert "generated" in full.families and "generated" not in left.families
    assert len(left.scenarios) == len(full.scenarios) - 2
    assert not any(m.startswith("gen/") for m in left.members)


def test_tiny_training_run_end_to_end(suite_file: Path, tmp_path: Path) -> None:
    from shift_rl.agents import check_policy_fits
    from shift_rl.runtime import load_policy
    from shift_rl.train import train

    cfg = _cfg(suite_file)
    res = train(cfg, out=tmp_path / "run", progress=False, evaluate_at_end=False)
    assert res.timesteps == cfg.total_timesteps
    policy = load_policy(res.export_dir)
    for name in ("default", "large"):  # 6 and 64 modules: the same weights
        sc = load_scenario(name)
        env = ResourceShiftEnv(sc)
        check_policy_fits(policy, str(res.export_dir), env.params)
        obs, _ = env.reset(seed=0)
        for _ in range(3):
            obs, *_ = env.step(policy.act(obs, env.action_masks()))
