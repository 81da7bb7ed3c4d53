"""The batched envs against the single env they batch, bit for bit.

- ``ResourceShiftVectorEnv`` (Gymnasium) gives exactly what ``SyncVectorEnv`` of single
  ``ResourceShiftEnv`` s gives with the same seeds and actions: observations, rewards,
  terminations, truncations, vector infos with their masks, action masks; over several
  episodes with autoresets, on every shipped scenario (shortened), also when envs are out of
  phase (partial resets);
- ``BatchedTrainingEnv`` (SB3) gives exactly what ``DummyVecEnv`` of ``TrainingEnv`` s gives,
  with variants, regret rewards and re-seeding, and trains the same PPO / MaskablePPO model;
- vector-env contract checks (Gymnasium has a checker for single envs only) and ``make_vec``.
"""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from stable_baselines3.common.vec_env import DummyVecEnv

import shift_rl
from shift_rl.config import RandomizationConfig, ScenarioConfig, load_scenario
from shift_rl.env import ResourceShiftEnv
from shift_rl.plane import PlaneBatch
from shift_rl.sim import exogenous
from shift_rl.training_envs import BatchedTrainingEnv, TrainingEnv, make_variants
from shift_rl.vector import ResourceShiftVectorEnv

from .conftest import SCENARIOS
from .plans import shift_mode
from .test_determinism import assert_identical, masked_action, short

IDS = [p.stem for p in SCENARIOS]
SCENARIOS_BY_NAME = {p.stem: p for p in SCENARIOS}
TICKS = 60


def masked_actions(rng: np.random.Generator, masks: np.ndarray, cfg: ScenarioConfig) -> np.ndarray:
    return np.stack([masked_action(rng, mask, cfg) for mask in masks])


# -- the Gymnasium vector env ----------------------------------------------------------------
@pytest.mark.parametrize("path", SCENARIOS, ids=IDS)
def test_vector_env_matches_single_envs(path: Path) -> None:
    """Three envs over ~3.5 episodes each, random plans inside the masks: one restarted
    mid-episode (so later autoresets happen at different steps), then everyone re-seeded;
    every step compared (infos with the executed shifts included)."""
    _matches_single_envs(short(path, TICKS))


def test_vector_env_matches_single_envs_in_single_shift_mode() -> None:
    _matches_single_envs(shift_mode(short(SCENARIOS_BY_NAME["faults"], TICKS)))


def _matches_single_envs(cfg: ScenarioConfig) -> None:
    n = 3
    vec = ResourceShiftVectorEnv(n, cfg)
    ref = SyncVectorEnv([lambda: ResourceShiftEnv(cfg) for _ in range(n)])
    assert ref.metadata["autoreset_mode"] == vec.metadata["autoreset_mode"]
    assert_identical(vec.reset(seed=42), ref.reset(seed=42), "reset")
    rng = np.random.default_rng(0)
    moved = restarts = 0
    for t in range(3 * TICKS + 30):
        if t == 25:
            opts = {"reset_mask": np.array([False, True, False])}
            assert_identical(
                vec.reset(options=dict(opts)), ref.reset(options=dict(opts)), f"partial {t}"
            )
        if t == 2 * TICKS + 40:
            assert_identical(vec.reset(seed=[7, None, 9]), ref.reset(seed=[7, None, 9]), "re")
        masks = vec.action_masks()
        assert_identical(masks, np.stack(ref.call("action_masks")), f"masks {t}")
        actions = masked_actions(rng, masks, cfg)
        got, want = vec.step(actions), ref.step(actions)
        assert_identical(got, want, f"step {t}")
        moved += int(want[4].get("units_moved", np.zeros(1)).sum())
        restarts += int(want[4].get("_episode_seed", np.zeros(1, bool)).sum())
    assert moved > 0, "no unit moved: the comparison would be weak"
    assert restarts >= 6, f"only {restarts} autoresets"


def test_rows_replay_single_envs_seeded_s_plus_i() -> None:
    """Env i of a batch reset with seed s replays ResourceShiftEnv reset with s + i."""
    cfg = short(SCENARIOS[0], 30)
    vec = ResourceShiftVectorEnv(4, cfg)
    obs, info = vec.reset(seed=100)
    singles = [ResourceShiftEnv(cfg) for _ in range(4)]
    for i, env in enumerate(singles):
        o, inf = env.reset(seed=100 + i)
        np.testing.assert_array_equal(obs[i], o)
        assert info["episode_seed"][i] == inf["episode_seed"]
    noop = singles[0].plane.core.guard.noop_action
    for _ in range(30):
        obs, rew, term, trunc, info = vec.step(np.tile(noop, (4, 1)))
        for i, env in enumerate(singles):
            o, r, te, tr, _ = env.step(noop)
            np.testing.assert_array_equal(obs[i], o)
            assert (rew[i], term[i], trunc[i]) == (r, te, tr)
    assert trunc.all()
    obs, rew, term, trunc, info = vec.step(np.tile(noop, (4, 1)))  # autoreset
    for i, env in enumerate(singles):
        o, inf = env.reset()
        np.testing.assert_array_equal(obs[i], o)
        assert info["episode_seed"][i] == inf["episode_seed"] and info["_episode_seed"][i]
    assert not rew.any() and not trunc.any() and "_reward_components" not in info


def test_vector_env_contract() -> None:
    """What gymnasium.utils.env_checker checks of single envs, for the vector env: spaces,
    dtypes, seeded determinism, fresh arrays, declared autoreset mode."""
    cfg = short(SCENARIOS[0], 20)
    n = 5
    env = ResourceShiftVectorEnv(n, cfg)
    single = ResourceShiftEnv(cfg)
    assert env.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert env.single_observation_space == single.observation_space
    assert env.single_action_space == single.action_space
    assert env.observation_space.shape == (n, *single.observation_space.shape)
    width = len(single.action_space.nvec)  # a plan: one level per module and kind
    assert env.action_space.shape == (n, width) and width == single.plane.params.num_modules
    obs, info = env.reset(seed=3)
    assert env.observation_space.contains(obs)
    env.action_space.seed(0)
    actions = [env.action_space.sample() for _ in range(45)]
    first = [env.step(a) for a in actions]
    for o, r, te, tr, _ in first:
        assert env.observation_space.contains(o)
        assert r.dtype == np.float64 and r.shape == (n,)
        assert te.dtype == np.bool_ and tr.dtype == np.bool_ and not te.any()
    again = ResourceShiftVectorEnv(n, cfg)
    assert_identical(again.reset(seed=3), (obs, info), "seeded reset")
    assert_identical([again.step(a) for a in actions], first, "seeded steps")
    other, _ = again.reset(seed=4)
    assert not np.array_equal(other, obs)
    # returned arrays are not reused by the next step
    o1, r1, *_ = env.step(actions[0])
    keep = (o1.copy(), r1.copy())
    env.step(actions[1])
    np.testing.assert_array_equal(o1, keep[0])
    np.testing.assert_array_equal(r1, keep[1])
    masks = env.action_masks()
    assert masks.shape == (n, len(single.action_masks())) and masks.dtype == np.bool_
    with pytest.raises(RuntimeError, match="reset"):
        ResourceShiftVectorEnv(2, cfg).step(np.zeros((2, width), dtype=np.int64))
    bad = np.tile(single.plane.core.guard.noop_action.astype(float), (n, 1))
    bad[1, :2] = [0.7, 1.2]  # non-integer actions are refused, never truncated to a level
    with pytest.raises(ValueError, match=r"row 1.*non-integer"):
        env.step(bad)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(width * n, dtype=np.int64))
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros((n, width + 1), dtype=np.int64))
    with pytest.raises(ValueError, match="num_envs"):
        ResourceShiftVectorEnv(0, cfg)


@pytest.mark.parametrize("mode", ["vector_entry_point", None])
def test_make_vec_returns_the_batched_env(mode: str | None) -> None:
    env = gym.make_vec(shift_rl.ENV_ID, num_envs=4, vectorization_mode=mode, scenario="default")
    assert isinstance(env.unwrapped, ResourceShiftVectorEnv)
    assert env.num_envs == 4 and env.unwrapped.scenario.name == "default"
    assert env.spec is not None and env.spec.id == shift_rl.ENV_ID
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, *env.single_observation_space.shape)
    sync = gym.make_vec(shift_rl.ENV_ID, num_envs=2, vectorization_mode="sync", scenario="default")
    assert isinstance(sync, SyncVectorEnv)


# -- the SB3 adapter -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "regret"), [("default", True), ("faults", True), ("multi_resource", False)]
)
def test_sb3_adapter_matches_dummy_vec_env(name: str, regret: bool) -> None:
    """Variants, regret rewards, SB3 seeding (re-based mid-run) and autoresets: everything
    DummyVecEnv of TrainingEnvs returns, and the same without the full infos."""
    base = load_scenario(name).model_copy(update={"episode_ticks": 40})
    variants = make_variants(base, RandomizationConfig(variants=3), seed=1)
    n = 3
    seeds = [5000 + i for i in range(n)]
    ref = DummyVecEnv([lambda s=s: TrainingEnv(variants, s, 2, regret) for s in seeds])
    full = BatchedTrainingEnv(variants, seeds, 2, regret, full_info=True)
    lean = BatchedTrainingEnv(variants, seeds, 2, regret)
    for env in (ref, full, lean):
        env.seed(11)
    obs = ref.reset()
    assert_identical(full.reset(), obs, "reset")
    assert_identical(lean.reset(), obs, "reset")
    assert_identical(full.reset_infos, ref.reset_infos, "reset infos")
    rng = np.random.default_rng(0)
    played: set[int] = set()
    for t in range(170):
        if t == 90:  # SB3 re-seeds: episodes keep counting from the new base seeds
            for env in (ref, full, lean):
                env.seed(77)
            obs = ref.reset()
            assert_identical(full.reset(), obs, "re-seeded reset")
            assert_identical(lean.reset(), obs, "re-seeded reset")
        masks = np.stack(ref.env_method("action_masks"))
        assert_identical(np.stack(full.env_method("action_masks")), masks, f"masks {t}")
        actions = masked_actions(rng, masks, base)
        want = ref.step(actions)
        assert_identical(full.step(actions), want, f"step {t}")
        assert_identical(full.reset_infos, ref.reset_infos, f"reset infos {t}")
        o, r, d, infos = lean.step(actions)
        assert_identical((o, r, d), want[:3], f"lean step {t}")
        for mine, theirs in zip(infos, want[3], strict=True):
            assert_identical(mine, {k: theirs[k] for k in mine}, f"lean info {t}")
            assert {"episode", "terminal_observation"} & theirs.keys() <= mine.keys()
        played.update(full.get_attr("variant"))
    assert ref.get_attr("episode") == full.get_attr("episode") == lean.get_attr("episode")
    assert played == {0, 1, 2}, f"variants played: {played}"


@pytest.mark.parametrize("algo", ["ppo", "maskable_ppo"])
def test_sb3_adapter_trains_the_same_model(algo: str) -> None:
    """Two rollouts of PPO / MaskablePPO on each: identical parameters."""
    from sb3_contrib import MaskablePPO
    from stable_baselines3 import PPO

    from shift_rl.torch_policy import ShiftActorCriticPolicy, ShiftMaskablePolicy

    cls = MaskablePPO if algo == "maskable_ppo" else PPO
    policy = ShiftMaskablePolicy if algo == "maskable_ppo" else ShiftActorCriticPolicy
    base = load_scenario("default").model_copy(update={"episode_ticks": 40})
    variants = make_variants(base, RandomizationConfig(variants=2), seed=0)
    seeds = [0, 1]
    envs = {
        "dummy": DummyVecEnv([lambda s=s: TrainingEnv(variants, s) for s in seeds]),
        "batched": BatchedTrainingEnv(variants, seeds),
    }
    params = {}
    for key, venv in envs.items():
        model = cls(policy, venv, n_steps=40, batch_size=40, n_epochs=2, seed=3,
                    policy_kwargs={"net_arch": [16]}, device="cpu")  # fmt: skip
        model.learn(160)
        params[key] = model.policy.state_dict()
    for k, v in params["dummy"].items():
        assert torch.equal(v, params["batched"][k]), k


def test_sb3_adapter_attributes() -> None:
    base = load_scenario("default").model_copy(update={"episode_ticks": 10})
    env = BatchedTrainingEnv([base], [3, 4, 5], start_episode=7)
    assert env.get_attr("base_seed") == [3, 4, 5] and env.get_attr("episode", 1) == [7]
    assert env.has_attr("action_masks") and env.get_attr("render_mode") == [None] * 3
    env.seed(10)
    env.reset()
    assert env.get_attr("base_seed") == [10, 11, 12] and env.get_attr("episode") == [8] * 3
    assert len(env.env_method("action_masks", indices=[0, 2])) == 2
    with pytest.raises(AttributeError):
        env.env_method("render")
    assert env.env_is_wrapped(gym.Wrapper) == [False] * 3


# -- shared pieces ---------------------------------------------------------------------------
def test_variants_must_share_the_layout() -> None:
    base = load_scenario("default")
    other = base.model_copy(update={"warmup_ticks": base.warmup_ticks + 1, "name": "x"})
    with pytest.raises(ValueError, match="warmup_ticks"):
        PlaneBatch(base, 2, variants=[base, other])
    demand_only = make_variants(base, RandomizationConfig(variants=2), seed=0)
    PlaneBatch(base, 2, variants=demand_only)  # demand and fault rates may differ


def test_compiled_ar1_matches_the_numpy_recursion() -> None:
    """The compiled AR(1) kernel is bit-identical to the numpy loop it replaced."""

    def reference(rng: np.random.Generator, n: int, cols: int, phi: np.ndarray) -> np.ndarray:
        eps = rng.standard_normal((n, cols))
        out = np.empty((n, cols))
        out[0] = eps[0]
        scale = np.sqrt(1.0 - phi**2)
        for i in range(1, n):
            out[i] = phi * out[i - 1] + scale * eps[i]
        return out

    for seed in range(30):
        cols = 1 + seed * 3
        phi = np.random.default_rng(seed).uniform(0.0, 0.999, cols)
        want = reference(np.random.default_rng([seed, 1]), 500, cols, phi)
        got = exogenous._ar1(np.random.default_rng([seed, 1]), 500, cols, phi)
        np.testing.assert_array_equal(got, want)


def test_vectorized_demand_matches_the_per_module_formula() -> None:
    """All modules' demand at once (reset speed) equals each module computed on its own,
    with the random draws in the same order: bit for bit, events, bursts and jumps included."""
    from shift_rl.config import DemandShape

    def one_module(sh: DemandShape, hours, days, noise, rng, ticks_per_day) -> np.ndarray:
        n = hours.shape[0]
        level = sh.base * np.maximum(1.0 + sh.trend_per_day * days, 0.05)
        diurnal = np.cos(2 * np.pi * (hours - sh.diurnal.peak_hour) / 24)
        level = level * (1.0 + sh.diurnal.amplitude * diurnal)
        level = level * (1.0 + sh.weekly_amplitude * np.cos(2 * np.pi * days / 7.0))
        jumps = exogenous._poisson_times(rng, sh.regime.rate_per_day / ticks_per_day, n)
        if jumps.size:
            log_steps = np.zeros(n)
            log_steps[jumps] = rng.normal(0.0, sh.regime.magnitude, jumps.size)
            level = level * np.exp(np.cumsum(log_steps))
        bursts = exogenous._poisson_times(rng, sh.bursts.rate_per_day / ticks_per_day, n)
        if bursts.size:
            idx, extra = np.arange(n), np.zeros(n)
            for b in bursts:
                after = idx >= b
                decay = np.exp(-(idx[after] - b) / sh.bursts.duration_ticks)
                extra[after] += sh.bursts.magnitude * decay
            level = level * (1.0 + extra)
        for ev in sh.events:
            since = ((hours - ev.hour) % 24.0) * ticks_per_day / 24.0
            ramp = max(ev.ramp_ticks, 1)
            up = np.clip((since + 1.0) / ramp, 0.0, 1.0)
            down = np.clip((ev.duration_ticks - since) / ramp, 0.0, 1.0)
            level = level * (1.0 + ev.magnitude * np.minimum(up, down))
        s = sh.noise
        return level * np.exp(s * noise - 0.5 * s * s)

    rng = np.random.default_rng(0)
    for trial in range(40):
        m, n = int(rng.integers(1, 9)), int(rng.integers(50, 900))
        shapes = [random_shape(rng) for _ in range(m)]
        rel = (np.arange(n) - 60) * 60.0 / 3600.0 + rng.uniform(0, 24)
        hours, days, noise = rel % 24.0, rel / 24.0, rng.standard_normal((n, m))
        draws = np.random.default_rng(trial)  # one stream, module after module
        want = np.stack(
            [
                one_module(sh, hours, days, noise[:, j], draws, 1440.0)
                for j, sh in enumerate(shapes)
            ],
            axis=1,
        )
        got = exogenous._module_shapes(
            shapes, hours, days, noise, np.random.default_rng(trial), 1440.0
        )
        np.testing.assert_array_equal(got, want, err_msg=f"trial {trial}")


def random_shape(rng: np.random.Generator):
    """A synthetic demand shape with every ingredient switched on or off at random."""
    from shift_rl.config import DemandShape

    def sometimes(x: float) -> float:
        return x if rng.random() < 0.5 else 0.0

    events = [
        {
            "hour": rng.uniform(0, 23.9),
            "magnitude": rng.uniform(0, 3),
            "duration_ticks": int(rng.integers(1, 300)),
            "ramp_ticks": int(rng.integers(0, 20)),
        }
        for _ in range(int(rng.integers(0, 4)))
    ]
    return DemandShape.model_validate(
        {
            "base": rng.uniform(10, 1e5),
            "weekly_amplitude": sometimes(rng.uniform()),
            "diurnal": {"amplitude": rng.uniform(), "peak_hour": rng.uniform(0, 23.9)},
            "noise": rng.uniform(0, 0.5),
            "trend_per_day": sometimes(rng.uniform(-0.9, 2)),
            "bursts": {
                "rate_per_day": sometimes(rng.uniform(0, 60)),
                "magnitude": rng.uniform(0, 3),
                "duration_ticks": int(rng.integers(1, 40)),
            },
            "regime": {"rate_per_day": sometimes(rng.uniform(0, 30)), "magnitude": rng.uniform()},
            "events": events,
        }
    )
