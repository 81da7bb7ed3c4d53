"""The control-plane core's explicit state: saved mid-episode and loaded into a fresh core,
the episode continues exactly; a record of another version or layout is refused whole."""

from __future__ import annotations

import numpy as np
import pytest

from shift_rl.arraystate import StateError
from shift_rl.config import load_scenario, scenario_from_dict
from shift_rl.core import STATE_VERSION, ControlCore
from shift_rl.forecast import FORECASTERS
from shift_rl.plane import PlaneBatch

from .plans import RandomPlan


def _scenario(model: str):
    data = load_scenario("faults").model_dump(mode="python")
    data["episode_ticks"] = 60
    data["forecast"] = {"model": model, "params": {}, "history_ticks": 30}
    return scenario_from_dict(data, source=f"faults with {model}")


@pytest.mark.parametrize("model", sorted(FORECASTERS))
def test_state_round_trip_continues_the_episode_exactly(model: str) -> None:
    cfg = _scenario(model)
    a, b = PlaneBatch(cfg, 2), PlaneBatch(cfg, 2)
    a.reset([11, 12])
    b.reset([11, 12])
    guard = a.core.guard
    policy = RandomPlan(len(guard.action_nvec), guard.num_levels, seed=1)

    def actions(plane: PlaneBatch) -> np.ndarray:
        masks = plane.action_masks()
        return np.stack([policy.act(None, masks[i]) for i in range(2)])

    for _ in range(25):
        act = actions(a)
        a.step(act)
        b.step(act)
    fresh = ControlCore(b.params, 2)
    fresh.load_state(a.core.state())
    b.core = fresh
    moved = 0
    for _ in range(30):
        act = actions(a)
        ra, rb = a.step(act), b.step(act)
        np.testing.assert_array_equal(ra.obs, rb.obs)
        np.testing.assert_array_equal(ra.reward, rb.reward)
        np.testing.assert_array_equal(ra.shifts, rb.shifts)
        np.testing.assert_array_equal(ra.num_shifts, rb.num_shifts)
        moved += int(ra.num_shifts.sum())
    assert moved > 0, "the plans moved nothing: the round trip was not exercised"


def test_state_is_copies_and_names_every_part() -> None:
    core = ControlCore(PlaneBatch(_scenario("ensemble")).params)
    record = core.state()
    assert int(record["core.version"]) == STATE_VERSION
    prefixes = {key.split(".")[0] for key in record}
    assert prefixes == {"core", "guard", "reputation", "forecaster"}
    assert any(key.startswith("forecaster.members.") for key in record)  # the ensemble's own
    record["guard.lock_until"][...] = 99
    assert not (core.guard.lock_until == 99).any()


def test_bad_records_are_refused_before_anything_changes() -> None:
    plane = PlaneBatch(_scenario("ema"))
    plane.reset([3])
    core = plane.core
    good = core.state()
    before = core.state()

    wrong_version = {**good, "core.version": np.array(STATE_VERSION + 1)}
    with pytest.raises(StateError, match="version"):
        core.load_state(wrong_version)
    missing = {k: v for k, v in good.items() if k != "reputation.score"}
    with pytest.raises(StateError, match=r"reputation\.score"):
        core.load_state(missing)
    wrong_shape = {**good, "forecaster.level": np.zeros((1, 3))}
    with pytest.raises(StateError, match=r"forecaster\.level"):
        core.load_state(wrong_shape)
    extra = {**good, "guard.surprise": np.zeros(1)}
    with pytest.raises(StateError, match="unexpected"):
        core.load_state(extra)
    # a record broken only in its last part must not have changed the first parts
    late = {**good, "guard.lock_until": good["guard.lock_until"] + 7,
            "forecaster.level": np.zeros((1, 3))}  # fmt: skip
    with pytest.raises(StateError):
        core.load_state(late)
    after = core.state()
    for key in before:
        np.testing.assert_array_equal(before[key], after[key], err_msg=key)
