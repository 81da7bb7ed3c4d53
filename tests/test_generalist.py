"""The released generalist (agents/ppo-generalist): one set of weights on 2 to 1024 modules,
driven by the controller in shadow and in active mode on scenarios it was not trained on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shift_rl.agents import resolve_policy
from shift_rl.config import load_scenario
from shift_rl.controller import ShiftController, SimulatedBackend
from shift_rl.env import ResourceShiftEnv
from shift_rl.modular import ModularPolicy
from shift_rl.suite import expand_suite, suite_from_dict

from .conftest import ROOT

RELEASE = ROOT / "agents" / "ppo-generalist"


def _two_modules():
    """A generated plane of two modules (the smallest a plan can shift between)."""
    generator = {"variants": 1, "modules": [2, 2], "kinds": [["cpu"]]}
    member = {"name": "two", "class": "generated", "splits": ["eval"], "generator": generator}
    suite = {"name": "two", "seed": 0, "episode_ticks": 48, "members": [member]}
    return expand_suite(suite_from_dict(suite), "eval").scenarios[0].scenario


@pytest.mark.parametrize("scenario", ["two", "default", "large", "scale_256", "scale_1024"])
def test_one_set_of_weights_runs_on_2_to_1024_modules(scenario: str) -> None:
    sc = _two_modules() if scenario == "two" else load_scenario(scenario)
    env = ResourceShiftEnv(sc)
    policy = resolve_policy(str(RELEASE), env.params)
    assert isinstance(policy, ModularPolicy)
    obs, _ = env.reset(seed=0)
    for _ in range(3):
        action = policy.act(obs, env.action_masks())
        assert env.action_space.contains(action)
        obs, *_ = env.step(action)


@pytest.mark.parametrize("mode", ["shadow", "active"])
def test_the_controller_drives_it_where_it_was_not_trained(mode: str, tmp_path: Path) -> None:
    be = SimulatedBackend("scale_256", seed=3)  # above the 64 slots it trained on
    initial = be.sim.alloc.copy()
    policy = resolve_policy(str(RELEASE), be.params)
    ctl = ShiftController(policy, be, interval=0, mode=mode, state_dir=tmp_path)
    records = ctl.run(40)
    ctl.close()
    assert all(r.source == "policy" and r.held is None for r in records)
    assert sum(r.units for r in records) > 0, "its plans moved (or would have moved) nothing"
    if mode == "shadow":
        assert {r.status for r in records} <= {"shadow", "noop"}
        assert all(r.shadow_potential is not None for r in records)
        np.testing.assert_array_equal(be.sim.alloc, initial)  # shadow moves nothing
    else:
        assert any(r.status in ("ok", "clipped") for r in records)
        assert not np.array_equal(be.sim.alloc, initial)
