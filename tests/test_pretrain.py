"""The warm start: teacher actions in the padded layout, returns, and cloning that imitates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from shift_rl.agents import make_policy
from shift_rl.config import ConfigError, load_scenario, train_config_from_dict
from shift_rl.pretrain import Demonstrations, clone, collect, teacher_maker
from shift_rl.scenario import ScenarioParams
from shift_rl.suite_training import Padder, SuiteTrainingEnv, policy_levels, suite_selection

TICKS = 48
SUITE = {
    "name": "tiny-pretrain",
    "seed": 0,
    "episode_ticks": TICKS,
    "members": [
        {"name": "default-train", "class": "default", "splits": ["train"],
         "scenario": "default", "randomize": {"variants": 2}},
        {"name": "gen", "class": "generated", "splits": ["train"],
         "generator": {"variants": 2, "modules": [2, 5], "kinds": [["cpu"]]}},
    ],
}  # fmt: skip


@pytest.fixture(scope="module")
def suite_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("suite") / "tiny-pretrain.yaml"
    path.write_text(yaml.safe_dump(SUITE))
    return path


def _cfg(suite_file: Path, **pretrain):
    return train_config_from_dict({
        "run_name": "tiny-pretrain", "scenario": "default", "suite": str(suite_file),
        "suite_max_modules": 8, "algo": "ppo", "total_timesteps": TICKS * 4, "n_envs": 4,
        "ppo": {"n_steps": TICKS, "batch_size": 96, "n_epochs": 1},
        "network": {"kind": "modular", "encoder": [32, 32], "actor": [32], "critic": [16]},
        "pretrain": {"teacher": "hpa", "rollouts": 4, "epochs": 40, "batch_size": 64,
                     **pretrain},
        "evaluation": {"episodes": 1, "every_timesteps": 10**8, "episodes_during": 1},
    })  # fmt: skip


def test_policy_levels_map_to_the_nearest_at_or_below() -> None:
    # scenario levels [1, 2, 4, 8] (indices 0..8, 4 = no change) onto the policy's [1, 2, 4]
    np.testing.assert_array_equal(
        policy_levels([1, 2, 4], [1, 2, 4, 8]), [0, 0, 1, 2, 3, 4, 5, 6, 6]
    )
    np.testing.assert_array_equal(policy_levels([1, 2, 4], [1, 2, 4]), np.arange(7))
    np.testing.assert_array_equal(policy_levels([2, 4], [1, 2, 4]), [0, 1, 2, 2, 2, 3, 4])


def test_pad_actions_inverts_actions_on_the_policy_levels() -> None:
    sc = load_scenario("large")  # levels [1, 2, 4, 8], 64 modules
    padder = Padder(sc, 80)
    rng = np.random.default_rng(0)
    policy = rng.integers(0, 7, size=(3, 80))
    policy[:, 64:] = 3  # padding asks for nothing
    np.testing.assert_array_equal(padder.pad_actions(padder.actions(policy)), policy)
    obs = rng.random((3, padder.obs_index.size)).astype(np.float32)
    np.testing.assert_array_equal(padder.unpad_obs(padder.obs(obs)), obs)


def test_returns_restart_at_episode_ends() -> None:
    rewards = np.array([[1.0], [1.0], [1.0], [1.0]], dtype=np.float32)
    dones = np.array([[False], [True], [False], [True]])
    demo = Demonstrations(np.zeros((4, 1, 1)), np.zeros((4, 1, 1)), np.zeros((4, 1, 1)),
                          rewards, dones)  # fmt: skip
    np.testing.assert_allclose(demo.returns(0.5)[:, 0], [1.5, 1.0, 1.5, 1.0])


def _check_teacher_rows(env: SuiteTrainingEnv, make, check) -> int:
    """Step ``env`` on its teachers' plans across an episode boundary (teachers are reset or
    remade there), calling ``check(g, i, j, teacher, scenario_action, raw, mask)`` for every
    row ``i`` (local row ``j`` of group ``g``); the entries the teachers changed."""
    obs = env.reset()
    moved = 0
    for _ in range(TICKS + 3):
        padded = env.teacher_actions(make)
        for g in env.groups:
            raw = g.padder.unpad_obs(obs[g.rows])
            masks = g.plane.action_masks()
            for j, i in enumerate(g.rows.tolist()):
                teacher = env._teacher.policies[(i, int(env.variant[i]))]
                check(g, i, j, teacher, g.padder.actions(padded[i][None])[0], raw[j], masks[j])
        moved += int((padded != 3).sum())
        obs, *_ = env.step(padded)
    return moved


def test_teacher_actions_are_the_heuristics_on_each_row(suite_file: Path) -> None:
    cfg = _cfg(suite_file)
    sel = suite_selection(cfg)
    env = SuiteTrainingEnv(sel.scenarios, [7, 8, 9, 10], 8)
    make, _ = teacher_maker(cfg)

    def check(g, i, j, teacher, scenario_action, raw, mask) -> None:
        assert isinstance(teacher, type(make_policy("hpa", g.plane.params)))
        # what the heuristic asks (in the policy's levels, which hold the scenario's)
        np.testing.assert_array_equal(scenario_action, teacher.act(raw, mask))

    moved = _check_teacher_rows(env, make, check)
    assert moved > 0, "the teacher asked for nothing: the test would be weak"


def test_cloning_imitates_the_teacher(suite_file: Path, tmp_path: Path) -> None:
    from shift_rl.suite_training import make_suite_env
    from shift_rl.train import build_model

    cfg = _cfg(suite_file)
    sel = suite_selection(cfg)
    model = build_model(cfg, make_suite_env(cfg, sel), tmp_path)
    demo = collect(cfg, sel)
    moving = demo.actions != 3
    assert moving.any()

    def agreement() -> tuple[float, float]:
        obs = demo.obs.reshape(-1, demo.obs.shape[-1])
        got, _ = model.predict(obs, deterministic=True)
        want = demo.actions.reshape(got.shape)
        real = obs[:, -9:-1] > 0.5  # the modules' present flags (one kind: one entry each)
        return float((got == want)[real].mean()), float((got == want)[want != 3].mean())

    before = agreement()
    losses = clone(model, demo, cfg)
    after = agreement()
    assert np.isfinite(losses["nll"]) and np.isfinite(losses["value"])
    # measured: 0.14 -> 0.89 of all entries, 0.07 -> 0.79 of those where the teacher moves
    assert after[0] > 0.8 and after[1] > 0.6 and after[1] > before[1] + 0.3, (before, after)


def test_pretrain_needs_a_suite() -> None:
    with pytest.raises(ConfigError, match="pretrain"):
        train_config_from_dict({"run_name": "x", "pretrain": {"rollouts": 1}})


def test_a_privileged_teacher_plans_on_its_rows_truth(suite_file: Path) -> None:
    """oracle-mpc as the teacher: each row's planner reads that row of the batch's simulator
    (the plan of a planner of the row's own scenario bound to that row by hand)."""
    from shift_rl.agents.oracle import OracleMPCPolicy

    cfg = _cfg(suite_file, teacher="oracle-mpc")
    sel = suite_selection(cfg)
    env = SuiteTrainingEnv(sel.scenarios, [7, 8, 9, 10], 8)
    make, _ = teacher_maker(cfg)

    def check(g, i, j, teacher, scenario_action, raw, mask) -> None:
        assert isinstance(teacher, OracleMPCPolicy)
        assert teacher.sim is g.plane.sim and teacher.row == j
        own = ScenarioParams.from_config(g.scenarios[int(env.variant[i])])
        fresh = OracleMPCPolicy(own).bind_row(g.plane.sim, j)
        np.testing.assert_array_equal(scenario_action, fresh.act(raw, mask))

    moved = _check_teacher_rows(env, make, check)
    assert moved > 0, "the planner asked for nothing: the test would be weak"


def test_change_weight_clones_a_teacher_that_mostly_waits(suite_file: Path, tmp_path: Path) -> None:
    """mpc changes ~4 % of the plan entries: cloned plainly, the student never moves; with
    its shifts weighing 8 it learns a good part of them."""
    import torch

    from shift_rl.pretrain import imitation_loss
    from shift_rl.suite_training import make_suite_env
    from shift_rl.train import build_model

    cfg = _cfg(suite_file, teacher="mpc", rollouts=3)
    sel = suite_selection(cfg)
    demo = collect(cfg, sel)
    want = demo.actions.reshape(-1, demo.actions.shape[-1])
    x = demo.obs.reshape(-1, demo.obs.shape[-1])
    real = x[:, -9:-1] > 0.5
    assert 0 < (want != 3)[real].mean() < 0.1
    # the loss: weight 1 is the plain log-likelihood; else changed entries count w times
    model = build_model(cfg, make_suite_env(cfg, sel), tmp_path / "loss")
    obs_t, act_t = torch.as_tensor(x[:64]), torch.as_tensor(want[:64])
    _, plain = imitation_loss(model.policy, obs_t, act_t, 3)
    _, weighted = imitation_loss(model.policy, obs_t, act_t, 3, 5.0)
    _, log_prob, _ = model.policy.evaluate_actions(obs_t, act_t)
    per_entry = model.policy.action_dist.log_p.gather(2, act_t[..., None]).squeeze(2)
    manual = -(per_entry * torch.where(act_t == 3, 1.0, 5.0)).sum(dim=1).mean()
    assert torch.allclose(plain, -log_prob.mean()) and torch.allclose(weighted, manual)
    agreement = {}
    for w in (1.0, 8.0):
        wcfg = _cfg(suite_file, teacher="mpc", rollouts=3, change_weight=w)
        model = build_model(wcfg, make_suite_env(wcfg, sel), tmp_path / str(w))
        clone(model, demo, wcfg)
        got, _ = model.predict(x, deterministic=True)
        agreement[w] = float((got == want)[want != 3].mean())
    # measured: 0.01 plain, 0.37 weighted
    assert agreement[1.0] < 0.15 and agreement[8.0] > agreement[1.0] + 0.2, agreement


def test_demonstrations_add_rows_and_keep_returns_per_row() -> None:
    rng = np.random.default_rng(0)

    def demo(n: int) -> Demonstrations:
        return Demonstrations(rng.random((4, n, 3)), rng.integers(0, 3, (4, n, 2)),
                              rng.random((4, n, 6)) > 0.5, rng.random((4, n)),
                              rng.random((4, n)) > 0.7)  # fmt: skip

    a, b = demo(2), demo(3)
    both = a + b
    assert both.obs.shape == (4, 5, 3) and both.actions.shape == (4, 5, 2)
    np.testing.assert_array_equal(both.masks[:, 2:], b.masks)
    np.testing.assert_allclose(
        both.returns(0.9), np.concatenate([a.returns(0.9), b.returns(0.9)], axis=1)
    )


class _Waiting:
    """A student that never asks for a change: level 3 of 7 on every entry."""

    def __init__(self) -> None:
        self.calls = 0

    def predict(self, obs: np.ndarray, deterministic: bool = False) -> tuple[np.ndarray, None]:
        assert deterministic
        self.calls += 1
        return np.full((obs.shape[0], 8), 3, dtype=np.int64), None


def test_dagger_rounds_play_the_student_and_record_the_teacher(suite_file: Path) -> None:
    """In a DAgger round the env follows the student (here: one that never moves, so every
    row stays at its initial allocation) while the labels are the teacher's plans in the
    states the student reached; its rows play seeds of their own."""
    cfg = _cfg(suite_file, teacher="hpa", rollouts=2)
    sel = suite_selection(cfg)
    teacher = collect(cfg, sel)
    student = _Waiting()
    dagger = collect(cfg, sel, student, round_=0)
    assert student.calls == teacher.obs.shape[0]
    # same seeds, same first state and labels; then the teacher's play moves units, the
    # student's does not, and the teacher keeps asking in the states the student leaves
    np.testing.assert_array_equal(dagger.obs[0], teacher.obs[0])
    np.testing.assert_array_equal(dagger.actions[0], teacher.actions[0])
    assert not np.array_equal(dagger.obs[TICKS - 1], teacher.obs[TICKS - 1])
    assert (dagger.actions != 3).sum() > (teacher.actions != 3).sum() > 0
    later = collect(cfg, sel, student, round_=1)
    assert not np.array_equal(later.obs[0], dagger.obs[0])


def test_pretrain_rounds_aggregate(suite_file: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    import shift_rl.pretrain as pre
    from shift_rl.suite_training import make_suite_env
    from shift_rl.train import build_model

    cfg = _cfg(suite_file, teacher="hpa", rollouts=1, rounds=3, epochs=1)
    sel = suite_selection(cfg)
    model = build_model(cfg, make_suite_env(cfg, sel), tmp_path / "tb")
    seen: list[tuple[bool, int]] = []
    sizes: list[int] = []
    real_collect, real_clone = pre.collect, pre.clone

    def collect_(c, s, student=None, round_=0):
        seen.append((student is model, round_))
        return real_collect(c, s, student, round_)

    def clone_(m, d, c):
        sizes.append(d.obs.shape[1])
        return real_clone(m, d, c)

    monkeypatch.setattr(pre, "collect", collect_)
    monkeypatch.setattr(pre, "clone", clone_)
    losses = pre.pretrain(model, cfg, sel)
    assert seen == [(False, 0), (True, 1), (True, 2)]
    assert sizes == [4, 8, 12] and np.isfinite(losses["nll"])
    with pytest.raises(ConfigError, match="rounds"):
        _cfg(suite_file, rounds=0)
