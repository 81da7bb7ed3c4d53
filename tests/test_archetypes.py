"""Modules declared from archetypes (``module_groups``) and pools per module."""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import shift_rl
from shift_rl.archetypes import MAX_MODULES
from shift_rl.config import ConfigError, load_scenario, scenario_from_dict

ARCHE = {"service_rate": 20, "slo_seconds": 0.25, "units": 2, "demand": {"base": 1000.0}}


def scenario(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "groups",
        "resources": [{"name": "cpu", "units_per_module": 3}],
        "module_groups": [
            {"name": "web-{i}", "count": 5, "seed": 1, "archetype": copy.deepcopy(ARCHE),
             "jitter": {"demand_base": 0.2, "peak_hour": 12, "value": 0.1}},
            {"name": "db-{i:02d}", "count": 3, "archetype": {**copy.deepcopy(ARCHE), "value": 2.0}},
        ],
    }  # fmt: skip
    data.update(over)
    return data


def error(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        scenario_from_dict(data)
    return str(info.value)


def test_groups_expand_into_named_modules_and_pool() -> None:
    cfg = scenario_from_dict(scenario())
    names = [m.name for m in cfg.modules]
    assert names == [f"web-{i}" for i in range(5)] + ["db-00", "db-01", "db-02"]
    assert cfg.resources[0].units == 24  # 3 per module x 8
    web = cfg.modules[:5]
    bases = [m.demand.base for m in web]
    assert all(800.0 <= b <= 1200.0 for b in bases) and len(set(bases)) == 5
    assert all(0.0 <= m.demand.diurnal.peak_hour < 24.0 for m in web)
    assert all(0.9 <= m.value <= 1.1 for m in web)
    db = cfg.modules[5:]
    assert all(m.demand.base == 1000.0 and m.value == 2.0 for m in db)  # no jitter
    assert all(m.demand.diurnal.peak_hour == 14.0 for m in db)


def test_expansion_is_reproducible_and_seeded() -> None:
    a = scenario_from_dict(scenario()).model_dump()
    assert scenario_from_dict(scenario()).model_dump() == a
    other = scenario()
    other["module_groups"][0]["seed"] = 2
    assert scenario_from_dict(other).model_dump()["modules"] != a["modules"]


def test_one_jitter_does_not_change_the_others_draws() -> None:
    base_only = scenario()
    base_only["module_groups"][0]["jitter"] = {"demand_base": 0.2}
    a = scenario_from_dict(base_only).modules[:5]
    b = scenario_from_dict(scenario()).modules[:5]
    assert [m.demand.base for m in a] == [m.demand.base for m in b]


def test_explicit_modules_come_first_and_names_stay_unique() -> None:
    explicit = [{"name": "web-3", **ARCHE}]
    msg = error(scenario(modules=explicit))
    assert "module_groups.0.name" in msg and "'web-3'" in msg and "unique" in msg
    ok = scenario_from_dict(scenario(modules=[{"name": "edge", **ARCHE}]))
    assert ok.modules[0].name == "edge" and len(ok.modules) == 9
    assert ok.resources[0].units == 27


@pytest.mark.parametrize(
    ("group", "field"),
    [
        ({"count": 0}, "module_groups.0.count"),
        ({"count": 1.5}, "module_groups.0.count"),
        ({"name": "web"}, "module_groups.0.name"),
        ({"name": "web-{j}"}, "module_groups.0.name"),
        ({"name": "web-{i"}, "module_groups.0.name"),
        ({"jitter": {"demand_base": 1.0}}, "module_groups.0.jitter.demand_base"),
        ({"jitter": {"peak_hour": 13}}, "module_groups.0.jitter.peak_hour"),
        ({"jitter": {"spread": 1}}, "module_groups.0.jitter.spread"),
        ({"colour": "red"}, "module_groups.0.colour"),
        ({"seed": -1}, "module_groups.0.seed"),
        ({"archetype": {**ARCHE, "service_rate": -1}}, "module_groups.0.archetype.service_rate"),
        ({"archetype": {**ARCHE, "name": "x"}}, "module_groups.0.archetype.name"),
        ({"archetype": {**ARCHE, "slo_seconds": 0.01}}, "module_groups.0.archetype: "),
        ({"archetype": {**ARCHE, "demand": {"base": 1, "nois": 0}}}, "archetype.demand.nois"),
    ],
)
def test_bad_groups_name_the_field(group: dict[str, Any], field: str) -> None:
    data = scenario()
    data["module_groups"][0].update(group)
    assert field in error(data)


def test_module_count_is_bounded() -> None:
    data = scenario()
    data["module_groups"][1]["count"] = MAX_MODULES
    msg = error(data)
    assert "module_groups:" in msg and f"at most {MAX_MODULES}" in msg
    assert "module_groups.1.count" in msg
    assert "module_groups" in error(scenario(module_groups={"name": "x"}))


@pytest.mark.parametrize(
    ("res", "problem"),
    [
        ({"name": "cpu", "units": 8, "units_per_module": 1}, "not both"),
        ({"name": "cpu", "units_per_module": 0}, "> 0"),
        ({"name": "cpu", "units_per_module": 1e9}, "<= 1024"),
        ({"name": "cpu", "units_per_module": "many"}, "a number"),
    ],
)
def test_bad_units_per_module(res: dict[str, Any], problem: str) -> None:
    msg = error(scenario(resources=[res]))
    assert "resources.0.units_per_module" in msg and problem in msg


def test_units_per_module_works_without_groups() -> None:
    data = {"name": "plain", "resources": [{"name": "cpu", "units_per_module": 2.5}],
            "modules": [{"name": f"m{i}", **ARCHE} for i in range(3)]}  # fmt: skip
    assert scenario_from_dict(data).resources[0].units == 8  # round(7.5) half up


def test_pool_problems_after_expansion_still_fail() -> None:
    data = scenario(resources=[{"name": "cpu", "units_per_module": 1}])  # 8 units, 16 needed
    assert "initial cpu allocations add up to 16" in error(data)


@pytest.mark.parametrize("name", ["scale_256", "scale_1024"])
def test_shipped_scale_scenarios(name: str) -> None:
    cfg = load_scenario(name)
    m = int(name.split("_")[1])
    assert len(cfg.modules) == m and cfg.resources[0].units == int(2.5 * m)
    assert load_scenario(name).model_dump() == cfg.model_dump()  # reproducible
    env = gym.make(shift_rl.ENV_ID, scenario=name)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    k = len(cfg.action.amount_levels)
    assert env.action_space.nvec.tolist() == [2 * k + 1] * (m * len(cfg.resources))  # a plan
    for _ in range(5):
        obs, reward, *_ = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs) and np.isfinite(reward)
