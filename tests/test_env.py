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
from .plans import RandomPlan, executed, plan_action, shift_mode

NAMES = [p.stem for p in SCENARIOS]


def test_all_five_scenarios_ship() -> None:
    assert set(NAMES) >= {"default", "multi_resource", "large", "faults", "trace"}


@pytest.mark.parametrize("name", NAMES)
def test_checkers_pass(name: str) -> None:
    """Gymnasium's and SB3's checkers on every shipped scenario, in plan mode (the default)."""
    env = gym.make(shift_rl.ENV_ID, scenario=name)
    assert env.unwrapped.scenario.action.mode == "plan"
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
    assert env.scenario.action.mode == "plan"  # the default
    assert list(env.action_space.nvec) == [2 * k + 1] * (m * r)
    assert env.observation_space.shape == (len(env.observation_names),)
    assert len(set(env.observation_names)) == len(env.observation_names)
    assert env.action_masks().shape == (m * r * (2 * k + 1),)
    single = ResourceShiftEnv(shift_mode("multi_resource"))
    assert list(single.action_space.nvec) == [m, m, r * k]
    assert single.action_masks().shape == (m + m + r * k,)
    assert single.observation_space == env.observation_space


def test_single_shift_mode_passes_the_checkers() -> None:
    env = ResourceShiftEnv(shift_mode("default"))
    check_env(env, skip_render_check=True)
    sb3_check_env(env, warn=False)


def test_noop_is_free_and_counts_nothing() -> None:
    env = ResourceShiftEnv("default")
    env.reset(seed=0)
    _, reward, term, trunc, info = env.step(env.plane.core.guard.noop_action)
    assert not term and not trunc
    assert info["units_moved"] == 0 and not info["invalid_action"] and not info["clipped"]
    assert info["num_shifts"] == 0 and not info["shifts"].any()
    assert info["shifts"].shape == (len(env.module_names) // 2, 4)  # one shape every tick
    assert info["reward_components"]["move_cost"] == 0.0
    assert reward == pytest.approx(info["reward_components"]["goal_attainment"])


def test_shift_moves_units_after_warmup() -> None:
    env = ResourceShiftEnv("default")
    env.reset(seed=0)
    w = env.scenario.warmup_ticks
    before = env.plane.sim.alloc[0, :, 0].copy()
    # batch-etl offers 2 units, checkout asks for 2
    _, _reward, _, _, info = env.step(plan_action(env, {3: -2, 2: 2}))
    assert executed(info) == [[3, 2, 0, 2]] and info["num_shifts"] == 1
    assert info["units_moved"] == 2 and not info["clipped"] and not info["invalid_action"]
    assert info["alloc"][3, 0] == before[3] - 2
    assert info["alloc"][2, 0] == before[2]  # warming up, not serving yet
    cost = env.scenario.reward.cost_per_unit * 2
    assert info["reward_components"]["move_cost"] == pytest.approx(cost)
    for _ in range(w):
        _, _, _, _, info = env.step(env.plane.core.guard.noop_action)
    assert info["alloc"][2, 0] == before[2] + 2


def test_single_shift_mode_moves_the_same_units() -> None:
    env = ResourceShiftEnv(shift_mode("default"))
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([3, 2, 1]))  # 2 units batch-etl -> checkout
    assert executed(info) == [[3, 2, 0, 2]] and info["units_moved"] == 2
    _, _, _, _, info = env.step(np.array([1, 1, 0]))  # source == target: the no-op
    assert info["num_shifts"] == 0 and not info["invalid_action"]


def test_a_plan_executes_several_shifts_sharing_the_tick_budget() -> None:
    env = ResourceShiftEnv("default")  # max_units_per_tick 4, per shift 4
    env.reset(seed=0)
    # larger requests first: 3 -> 2 (2 units), then 4 -> 5 (1 unit)
    _, _, _, _, info = env.step(plan_action(env, {3: -2, 2: 2, 4: -1, 5: 1}))
    assert executed(info) == [[3, 2, 0, 2], [4, 5, 0, 1]]
    assert info["units_moved"] == 3 and not info["clipped"]
    env.reset(seed=0)
    # the first shift spends the whole budget: the second pair moves nothing
    _, _, _, _, info = env.step(plan_action(env, {3: -4, 2: 4, 4: -2, 5: 2}))
    assert executed(info) == [[3, 2, 0, 4]]
    assert info["clipped"] and not info["invalid_action"]


def test_locked_module_action_is_invalid_noop() -> None:
    env = ResourceShiftEnv("default")
    env.reset(seed=0)
    env.step(plan_action(env, {3: -1, 2: 1}))
    alloc = env.plane.sim.alloc.copy()
    _, _, _, _, info = env.step(plan_action(env, {2: -1, 0: 1}))  # checkout is locked
    assert info["invalid_action"] and info["units_moved"] == 0 and info["num_shifts"] == 0
    np.testing.assert_array_equal(env.plane.sim.alloc[0, 2], alloc[0, 2])
    k = len(env.scenario.action.amount_levels)
    mask = env.action_masks().reshape(len(env.module_names), 2 * k + 1)
    for m in (2, 3):  # locked: nothing but "no change"
        assert mask[m].tolist() == [j == k for j in range(2 * k + 1)]
    assert mask[[0, 1, 4, 5]].sum(axis=1).min() > 1


def test_locked_module_single_shift_is_invalid_noop() -> None:
    env = ResourceShiftEnv(shift_mode("default"))
    env.reset(seed=0)
    env.step(np.array([3, 2, 0]))
    _, _, _, _, info = env.step(np.array([2, 0, 0]))  # checkout is locked
    assert info["invalid_action"] and info["units_moved"] == 0
    mask = env.action_masks()
    m = len(env.module_names)
    assert not mask[2] and not mask[3] and not mask[m + 2] and not mask[m + 3]


def test_mask_always_allows_a_noop_and_masked_actions_rarely_invalid() -> None:
    env = ResourceShiftEnv(shift_mode("default"))
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


def test_plan_masks_always_allow_no_change_and_masked_plans_move_units() -> None:
    env = ResourceShiftEnv("default")
    env.reset(seed=1)
    guard = env.plane.core.guard
    policy = RandomPlan(len(guard.action_nvec), guard.num_levels, seed=0, wild=0.0)
    k, moved, shifts, several = guard.num_levels, 0, 0, 0
    for _ in range(400):
        mask = env.action_masks().reshape(-1, 2 * k + 1)
        assert mask[:, k].all(), "no change must stay allowed for every module"
        _, _, _, _, info = env.step(policy.act(None, mask.ravel()))
        moved += info["units_moved"]
        shifts += info["num_shifts"]
        several += info["num_shifts"] > 1
        assert info["num_shifts"] <= len(env.module_names) // 2
    # locks hold a shifted pair for the stabilization window: about one shift in 3 ticks
    assert shifts > 100 and several > 0 and moved > shifts


def test_episode_truncates_at_time_limit() -> None:
    cfg = load_scenario("default").model_copy(update={"episode_ticks": 15})
    env = ResourceShiftEnv(cfg)
    env.reset(seed=0)
    noop = env.plane.core.guard.noop_action
    flags = [env.step(noop)[2:4] for _ in range(15)]
    assert flags[-1] == (False, True)
    assert all(f == (False, False) for f in flags[:-1])


def test_step_before_reset_and_after_truncation_raises() -> None:
    """Gymnasium's order: no step before the first reset (it used to play a tick with reward
    1.0) and none after truncation (it used to go on for 31 more steps); reset clears it."""
    cfg = load_scenario("default").model_copy(update={"episode_ticks": 3})
    env = ResourceShiftEnv(cfg)
    noop = env.plane.core.guard.noop_action
    with pytest.raises(gym.error.ResetNeeded, match="reset"):
        env.step(noop)
    env.reset(seed=0)
    assert [env.step(noop)[3] for _ in range(3)] == [False, False, True]
    with pytest.raises(RuntimeError, match="truncated"):
        env.step(noop)
    env.reset(seed=1)
    assert env.step(noop)[3] is False


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
def test_single_shifts_outside_the_space_are_refused(action, needle: str) -> None:
    env = ResourceShiftEnv(shift_mode("default"))
    env.reset(seed=0)
    with pytest.raises(ValueError) as info:
        env.step(action)
    assert needle in str(info.value)
    if needle.startswith("shape"):
        assert "(source, target, level)" in str(info.value)
    # whole-number floats and plain lists are integers inside the space: they run
    assert executed(env.step([3.0, 2.0, 1.0])[4]) == [[3, 2, 0, 2]]


@pytest.mark.parametrize(
    ("action", "needle"),
    [
        ([3.5, 3, 3, 3, 3, 3], "non-integer"),
        ([3, 3, 3, 3, 3, np.inf], "non-integer"),
        ([7, 3, 3, 3, 3, 3], "outside the action space"),
        ([3, 3, -1, 3, 3, 3], "outside the action space"),
        ([True] * 6, "dtype bool"),
        ([2**70, 3, 3, 3, 3, 3], "dtype object"),
        ([0, 0, 0], "shape (3,)"),  # a single shift is not a plan
        ([[3] * 6], "shape (1, 6)"),
        ([[3, 3], [3]], "not an array"),
    ],
)
def test_plans_outside_the_space_are_refused(action, needle: str) -> None:
    env = ResourceShiftEnv("default")
    env.reset(seed=0)
    alloc = env.plane.sim.alloc.copy()
    with pytest.raises(ValueError) as info:
        env.step(action)
    assert needle in str(info.value)
    if needle.startswith("shape"):
        assert "one level per module and kind" in str(info.value)
    np.testing.assert_array_equal(env.plane.sim.alloc, alloc)
    # whole-number floats and plain lists inside the space run
    plan = plan_action(env, {3: -2, 2: 2}).astype(float).tolist()
    assert executed(env.step(plan)[4]) == [[3, 2, 0, 2]]


def test_render_ansi_shows_every_module() -> None:
    env = gym.make(shift_rl.ENV_ID, scenario="default", render_mode="ansi")
    env.reset(seed=0)
    env.step(plan_action(env.unwrapped, {3: -2, 2: 2, 4: -1, 5: 1}))
    text = env.render()
    assert isinstance(text, str)
    names = env.unwrapped.module_names
    for name in names:
        assert name in text
    assert (
        f"last tick's shifts: 2 units of cpu from {names[3]} to {names[2]}; "
        f"1 units of cpu from {names[4]} to {names[5]}"
    ) in text
    env.step(env.unwrapped.plane.core.guard.noop_action)
    assert env.render().splitlines()[-1] == "last tick's shifts: none (no shift proposed)"
    env.step(plan_action(env.unwrapped, {3: -2, 2: 2}))  # both are locked by the first shift
    assert "the guard could execute nothing of the plan" in env.render()


def test_unknown_render_mode_rejected() -> None:
    with pytest.raises(ValueError, match="render_mode 'human' not supported"):
        ResourceShiftEnv("default", render_mode="human")


def test_faults_scenario_reports_failures_and_gaps() -> None:
    env = ResourceShiftEnv("faults")
    env.reset(seed=0)
    failed = gaps = 0
    for _ in range(720):
        obs, _, _, _, info = env.step(env.plane.core.guard.noop_action)
        failed += int(info["units_failed"].sum())
        gaps += int(info["telemetry_missing"].sum())
        assert np.isfinite(obs).all()
    assert failed > 0 and gaps > 0
