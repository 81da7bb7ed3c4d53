"""Determinism and pairing on every shipped scenario.

- one seed gives one trajectory (observations, rewards, infos with their arrays), bit for bit;
- different seeds give different demand and observations;
- demand and faults of an episode do not depend on the actions: policies are compared on
  paired episodes;
- ``reset(seed=s)`` after other episodes replays the first episode exactly;
- a batch of planes steps each row exactly as a plane of its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import shift_rl
from shift_rl.config import ScenarioConfig, load_scenario, scenario_from_dict
from shift_rl.env import ResourceShiftEnv
from shift_rl.plane import PlaneBatch

from .conftest import SCENARIOS

TICKS = 120
IDS = [p.stem for p in SCENARIOS]


def short(path: Path, ticks: int = TICKS, faults: bool = False) -> ScenarioConfig:
    """A shipped scenario with a shorter episode (and, with ``faults``, frequent faults of
    every kind), validated again."""
    data = load_scenario(path).model_dump(mode="python")
    data["episode_ticks"] = ticks
    if faults:  # about one fault of each kind every 24 ticks, whatever the tick length
        rate = 86_400.0 / data["tick_seconds"] / 24
        data["faults"] = {
            "slowdown": {"rate_per_day": rate, "factor": 0.5, "duration_ticks": 10},
            "unit_failure": {"rate_per_day": rate, "units": 2, "duration_ticks": 15},
            "telemetry_gap": {"rate_per_day": rate, "duration_ticks": 3},
        }
    return scenario_from_dict(data, source=f"{path.stem} (test override)")


def masked_action(rng: np.random.Generator, mask: np.ndarray, cfg: ScenarioConfig) -> np.ndarray:
    """A random action inside the masks: a plan (each module and kind a random allowed
    level, "no change" one time in three) or a single shift, by the scenario's mode."""
    m = len(cfg.modules)
    if cfg.action.mode == "plan":
        width = 2 * len(cfg.action.amount_levels) + 1
        allowed = mask.reshape(-1, width)
        out = (rng.random(allowed.shape) + allowed).argmax(axis=1)
        out[rng.random(out.shape[0]) < 1 / 3] = width // 2
        return out.astype(np.int64)
    src = rng.choice(np.flatnonzero(mask[:m]))
    dsts = np.flatnonzero(mask[m : 2 * m])
    if (dsts != src).any():
        dsts = dsts[dsts != src]
    lvl = rng.choice(np.flatnonzero(mask[2 * m :]))
    return np.array([src, rng.choice(dsts), lvl], dtype=np.int64)


def rollout(
    env: gym.Env, seed: int | None, policy: str = "random", action_seed: int = 0
) -> list[tuple[Any, ...]]:
    """One whole episode: [(obs, info) of reset, (obs, reward, term, trunc, info) per step]."""
    base = env.unwrapped
    rng = np.random.default_rng(action_seed)
    noop = base.plane.core.guard.noop_action
    obs, info = env.reset(seed=seed)
    out: list[tuple[Any, ...]] = [(obs, info)]
    truncated = False
    while not truncated:
        if policy == "noop":
            action = noop.copy()
        else:
            action = masked_action(rng, base.action_masks(), base.scenario)
        obs, reward, terminated, truncated, info = env.step(action)
        out.append((obs, reward, terminated, truncated, info))
        assert len(out) <= base.scenario.episode_ticks + 1, "episode did not truncate"
    return out


def assert_identical(a: Any, b: Any, where: str = "") -> None:
    """Exact equality of nested tuples / dicts / arrays / scalars (NaN equals NaN)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            assert_identical(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_identical(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray), where
        assert a.dtype == b.dtype and a.shape == b.shape, where
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, float):
        assert (a == b) or (np.isnan(a) and np.isnan(b)), f"{where}: {a!r} != {b!r}"
    else:
        assert type(a) is type(b) and a == b, f"{where}: {a!r} != {b!r}"


def obs_matrix(traj: list[tuple[Any, ...]]) -> np.ndarray:
    return np.stack([step[0] for step in traj])


def total_shifted(traj: list[tuple[Any, ...]]) -> int:
    return sum(step[4]["units_moved"] for step in traj[1:])


@pytest.mark.parametrize("path", SCENARIOS, ids=IDS)
def test_same_seed_same_trajectory(path: Path) -> None:
    cfg = short(path)
    made = gym.make(shift_rl.ENV_ID, scenario=cfg)
    a = rollout(made, seed=123, action_seed=5)
    b = rollout(ResourceShiftEnv(cfg), seed=123, action_seed=5)
    assert len(a) == TICKS + 1 and a[-1][3] is True
    assert total_shifted(a) > 0, "the policy never shifted: the comparison would be weak"
    assert_identical(a, b, "trajectory")


@pytest.mark.parametrize("path", SCENARIOS, ids=IDS)
def test_different_seeds_differ(path: Path) -> None:
    env = ResourceShiftEnv(short(path))
    a = rollout(env, seed=1, policy="noop")
    demand_a = env.plane.sim.exo_demand.copy()
    b = rollout(env, seed=2, policy="noop")
    demand_b = env.plane.sim.exo_demand.copy()
    assert a[0][1]["episode_seed"] != b[0][1]["episode_seed"]
    assert not np.array_equal(demand_a, demand_b)
    oa, ob = obs_matrix(a), obs_matrix(b)
    # Most ticks look different, not just one.
    differing = (oa != ob).any(axis=1).mean()
    assert differing > 0.9, f"only {differing:.0%} of the observations differ"
    ga = [s[4]["goal_attainment"] for s in a[1:]]
    gb = [s[4]["goal_attainment"] for s in b[1:]]
    assert ga != gb


@pytest.mark.parametrize("path", SCENARIOS, ids=IDS)
def test_exogenous_inputs_are_paired_across_policies(path: Path) -> None:
    """Two policies, one seed: same demand, telemetry gaps, slow-downs, reports and unit
    failures, though the allocations (and so the outcomes) differ."""
    cfg = short(path, faults=True)
    seed = 77
    envs = {p: ResourceShiftEnv(cfg) for p in ("noop", "random")}
    seen: dict[str, list[dict[str, np.ndarray]]] = {p: [] for p in envs}
    exo: dict[str, dict[str, Any]] = {}
    allocs: dict[str, list[np.ndarray]] = {p: [] for p in envs}
    for policy, env in envs.items():
        rng = np.random.default_rng(3)
        env.reset(seed=seed)
        sim = env.plane.sim
        exo[policy] = {
            k: getattr(sim, k).copy()
            for k in (
                "exo_demand", "exo_slow", "exo_missing", "exo_eps", "exo_fail", "exo_pick",
                "start_hour",
            )
        }  # fmt: skip
        truncated = False
        while not truncated:
            tel = sim.telemetry()
            seen[policy].append(
                {
                    "tick": tel.tick.copy(),
                    "hour": tel.hour.copy(),
                    "demand": tel.demand.copy(),
                    "reported_need": tel.reported_need.copy(),
                    "missing": tel.missing.copy(),
                    "capacity": tel.capacity.copy(),
                }
            )
            if policy == "noop":
                action = env.plane.core.guard.noop_action
            else:
                action = masked_action(rng, env.action_masks(), cfg)
            _, _, _, truncated, info = env.step(action)
            seen[policy][-1]["units_failed"] = np.asarray(info["units_failed"]).copy()
            allocs[policy].append(info["alloc"])
    assert_identical(exo["noop"], exo["random"], "exogenous arrays")
    assert_identical(seen["noop"], seen["random"], "observed exogenous telemetry")
    # The schedule is the one drawn for the episode (the pools are large enough to fail every
    # unit asked for), and the two policies really did different things.
    h = cfg.forecast.history_ticks
    failed = np.stack([s["units_failed"] for s in seen["noop"]])
    np.testing.assert_array_equal(failed, exo["noop"]["exo_fail"][0, h + 1 : h + 1 + TICKS])
    assert failed.sum() > 0, "no unit failed: the comparison of failures would be empty"
    assert np.stack([s["missing"] for s in seen["noop"]]).any(), "no telemetry gap"
    assert (exo["noop"]["exo_slow"] < 1).any(), "no slow-down"
    assert not np.array_equal(np.stack(allocs["noop"]), np.stack(allocs["random"]))


@pytest.mark.parametrize("path", SCENARIOS, ids=IDS)
def test_reset_with_seed_replays_the_first_episode(path: Path) -> None:
    cfg = short(path, 60)
    env = ResourceShiftEnv(cfg)
    first = rollout(env, seed=2024, action_seed=9)
    second = rollout(env, seed=None, action_seed=9)
    third = rollout(env, seed=None, action_seed=9)
    seeds = {t[0][1]["episode_seed"] for t in (first, second, third)}
    assert len(seeds) == 3, "unseeded resets must start new episodes"
    assert not np.array_equal(obs_matrix(first), obs_matrix(second))
    again = rollout(env, seed=2024, action_seed=9)
    assert_identical(first, again, "replayed episode")
    # ...and the unseeded episodes that follow a seeded reset are reproducible too.
    fresh = ResourceShiftEnv(cfg)
    rollout(fresh, seed=2024, action_seed=9)
    assert_identical(second, rollout(fresh, seed=None, action_seed=9), "second episode")


@pytest.mark.parametrize("path", SCENARIOS, ids=IDS)
def test_batch_rows_step_like_single_planes(path: Path) -> None:
    """PlaneBatch (the core of the single and the batched env) keeps its rows independent:
    each row is bit for bit the plane of its own seed and actions, also when one row is
    reset in the middle of the others' episodes."""
    cfg = short(path, 60)
    seeds = [11, 12, 13]
    batch = PlaneBatch(cfg, num_envs=3)
    singles = [PlaneBatch(cfg, num_envs=1) for _ in seeds]
    obs_b = batch.reset(seeds)
    obs_s = [p.reset([s]) for p, s in zip(singles, seeds, strict=True)]
    rng = np.random.default_rng(0)
    for tick in range(cfg.episode_ticks + 10):
        if tick == 20:  # restart row 1 only, as an autoresetting vector env would
            obs_b = batch.reset([99], rows=np.array([1]))
            singles[1] = PlaneBatch(cfg, num_envs=1)
            obs_s[1] = singles[1].reset([99])
        for i, o in enumerate(obs_s):
            np.testing.assert_array_equal(obs_b[i], o[0], err_msg=f"row {i}, tick {tick}")
        masks = batch.action_masks()
        for i, p in enumerate(singles):
            np.testing.assert_array_equal(masks[i], p.action_masks()[0])
        actions = np.stack([masked_action(rng, masks[i], cfg) for i in range(3)])
        res_b = batch.step(actions)
        res_s = [p.step(actions[i : i + 1]) for i, p in enumerate(singles)]
        for i, r in enumerate(res_s):
            for name in (
                "reward",
                "units_moved",
                "rollbacks",
                "shifts",
                "num_shifts",
                "units_failed",
                "truncated",
            ):
                got, want = getattr(res_b, name)[i], getattr(r, name)[0]
                np.testing.assert_array_equal(got, want, err_msg=f"{name}, row {i}, tick {tick}")
            np.testing.assert_array_equal(batch.sim.alloc[i], singles[i].sim.alloc[0])
        obs_b, obs_s = res_b.obs, [r.obs for r in res_s]
    assert res_b.truncated.tolist() == [True, False, True]
