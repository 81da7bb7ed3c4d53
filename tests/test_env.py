"""The env's contract: Gymnasium and SB3 checkers, spaces, masks, info, render, make()."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import shift_rl
from shift_rl.config import load_scenario
from shift_rl.env import ResourceShiftEnv

from .conftest import SCENARIOS

NAMES = [p.stem for p in SCENARIOS]


def test_all_five_scenarios_ship() -> None:
    assert set(NAMES) >= {"default", "multi_resource", "large", "faults", "trace"}


@pytest.mark.parametrize("name", NAMES)
def test_checkers_pass(name: str) -> None:
    env = gym.make(shift_rl.ENV_ID, scenario=name)
    check_env(env.unwrapped, skip_render_check=True)
    sb3_check_env(env.unwrapped, warn=False)


@pytest.mark.parametrize("how", ["name", "path", "config"])
def test_make_accepts_name_path_or_config(how: str) -> None:
    path = next(p for p in SCENARIOS if p.stem == "default")
    arg = {"name": "default", "path": str(path), "config": load_scenario(path)}[how]
    env = gym.make(shift_rl.ENV_ID, scenario=arg)
    obs, _ = env.reset(seed=3)
    assert env.observation_space.contains(obs)
    assert env.unwrapped.scenario.name == "default"


def test_spaces_match_scenario() -> None:
    env = ResourceShiftEnv("multi_resource")
    m, r = len(env.scenario.modules), len(env.scenario.resources)
    k = len(env.scenario.action.amount_levels)
    assert list(env.action_space.nvec) == [m, m, r * k]
    assert env.observation_space.shape == (len(env.observation_names),)
    assert len(set(env.observation_names)) == len(env.observation_names)
    assert env.action_masks().shape == (m + m + r * k,)


def test_noop_is_free_and_counts_nothing() -> None:
    env = ResourceShiftEnv("default")
    env.reset(seed=0)
    _, reward, term, trunc, info = env.step(np.array([2, 2, 1]))
    assert not term and not trunc
    assert info["units_moved"] == 0 and not info["invalid_action"]
    assert info["reward_components"]["move_cost"] == 0.0
    assert reward == pytest.approx(info["reward_components"]["goal_attainment"])


def test_shift_moves_units_after_warmup() -> None:
    env = ResourceShiftEnv("default")
    env.reset(seed=0)
    w = env.scenario.warmup_ticks
    before = env.plane.sim.alloc[0, :, 0].copy()
    _, _reward, _, _, info = env.step(np.array([3, 2, 1]))  # 2 units batch-etl -> checkout
    assert tuple(info["shift"]) == (3, 2, 0, 2) and info["units_moved"] == 2
    assert info["alloc"][3, 0] == before[3] - 2
    assert info["alloc"][2, 0] == before[2]  # warming up, not serving yet
    cost = env.scenario.reward.cost_per_unit * 2
    assert info["reward_components"]["move_cost"] == pytest.approx(cost)
    for _ in range(w):
        _, _, _, _, info = env.step(np.array([0, 0, 0]))
    assert info["alloc"][2, 0] == before[2] + 2


def test_locked_module_action_is_invalid_noop() -> None:
    env = ResourceShiftEnv("default")
    env.reset(seed=0)
    env.step(np.array([3, 2, 0]))
    alloc = env.plane.sim.alloc.copy()
    _, _, _, _, info = env.step(np.array([2, 0, 0]))  # checkout is locked
    assert info["invalid_action"] and info["units_moved"] == 0
    np.testing.assert_array_equal(env.plane.sim.alloc[0, 2], alloc[0, 2])
    mask = env.action_masks()
    m = len(env.module_names)
    assert not mask[2] and not mask[3] and not mask[m + 2] and not mask[m + 3]


def test_mask_always_allows_a_noop_and_masked_actions_rarely_invalid() -> None:
    env = ResourceShiftEnv("default")
    env.reset(seed=1)
    rng = np.random.default_rng(0)
    m = len(env.module_names)
    invalid = 0
    for _ in range(400):
        mask = env.action_masks()
        src, dst, lvl = mask[:m], mask[m : 2 * m], mask[2 * m :]
        assert src.any() and dst.any() and lvl.any()
        assert (src & dst).any(), "the no-op src == dst must stay reachable"
        a = [rng.choice(np.flatnonzero(x)) for x in (src, dst, lvl)]
        _, _, _, _, info = env.step(np.array(a))
        invalid += info["invalid_action"]
    # masks are per dimension, so some joint choices stay infeasible, but few
    assert invalid < 0.2 * 400


def test_episode_truncates_at_time_limit() -> None:
    cfg = load_scenario("default").model_copy(update={"episode_ticks": 15})
    env = ResourceShiftEnv(cfg)
    env.reset(seed=0)
    flags = [env.step(np.array([0, 0, 0]))[2:4] for _ in range(15)]
    assert flags[-1] == (False, True)
    assert all(f == (False, False) for f in flags[:-1])


def test_step_before_reset_and_after_truncation_raises() -> None:
    """Gymnasium's order: no step before the first reset (it used to play a tick with reward
    1.0) and none after truncation (it used to go on for 31 more steps); reset clears it."""
    cfg = load_scenario("default").model_copy(update={"episode_ticks": 3})
    env = ResourceShiftEnv(cfg)
    with pytest.raises(gym.error.ResetNeeded, match="reset"):
        env.step(np.array([0, 0, 0]))
    env.reset(seed=0)
    assert [env.step(np.array([0, 0, 0]))[3] for _ in range(3)] == [False, False, True]
    with pytest.raises(RuntimeError, match="truncated"):
        env.step(np.array([0, 0, 0]))
    env.reset(seed=1)
    assert env.step(np.array([0, 0, 0]))[3] is False


@pytest.mark.parametrize(
    ("action", "needle"),
    [
        ([0.7, 1.2, 0], "non-integer"),  # used to run as the shift [0, 1, 0]
        ([0.0, 1.0, np.nan], "non-integer"),
        ([6, 0, 0], "outside the action space"),
        ([-1, 0, 0], "outside the action space"),
        ([0, 0, 3], "outside the action space"),
        ([True, False, True], "dtype bool"),
        ([2**70, 0, 0], "dtype object"),
        ([0, 0], "shape (2,)"),
        ([[0, 0, 0]], "shape (1, 3)"),
        ("abc", "shape ()"),
        ([[0, 1], [2]], "not an array"),
    ],
)
def test_actions_outside_the_space_are_refused(action, needle: str) -> None:
    env = ResourceShiftEnv("default")
    env.reset(seed=0)
    with pytest.raises(ValueError) as info:
        env.step(action)
    assert needle in str(info.value)
    # whole-number floats and plain lists are integers inside the space: they run
    assert env.step([3.0, 2.0, 1.0])[4]["shift"].tolist() == [3, 2, 0, 2]


def test_render_ansi_shows_every_module() -> None:
    env = gym.make(shift_rl.ENV_ID, scenario="default", render_mode="ansi")
    env.reset(seed=0)
    env.step(np.array([3, 2, 1]))
    text = env.render()
    assert isinstance(text, str)
    for name in env.unwrapped.module_names:
        assert name in text
    names = env.unwrapped.module_names
    assert f"last shift: 2 units of cpu from {names[3]} to {names[2]}" in text
    env.step(np.array([1, 1, 0]))  # source == target: no shift, not "0 units from 1 to 1"
    assert env.render().splitlines()[-1] == "last shift: none (no shift proposed)"
    env.step(np.array([3, 2, 1]))  # both modules are locked by the first shift
    assert "the guard turned the proposal into a no-op" in env.render()


def test_unknown_render_mode_rejected() -> None:
    with pytest.raises(ValueError, match="render_mode 'human' not supported"):
        ResourceShiftEnv("default", render_mode="human")


def test_faults_scenario_reports_failures_and_gaps() -> None:
    env = ResourceShiftEnv("faults")
    env.reset(seed=0)
    failed = gaps = 0
    for _ in range(720):
        obs, _, _, _, info = env.step(np.array([0, 0, 0]))
        failed += int(info["units_failed"].sum())
        gaps += int(info["telemetry_missing"].sum())
        assert np.isfinite(obs).all()
    assert failed > 0 and gaps > 0
