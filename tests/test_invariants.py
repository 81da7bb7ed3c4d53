"""Property-based invariants of the pool, the guard and the observation over random scenarios.

Random *valid* scenarios (2..8 modules, 1..2 resource kinds, random pool sizes, floors, safety
rails, warm-up, faults, forecasters) are driven by random actions, drawn either uniformly over
the whole action space or among the per-dimension action mask. After every tick the test checks,
against its own bookkeeping of what the rules say should happen:

- conservation of units per kind (alloc + transit + failed + free == pool), integer and >= 0;
- exact accounting of every unit: the allocation after a tick is the allocation before, minus
  the executed shift, plus warm-up arrivals and returns from failure, minus new failures and
  rollbacks; ``units_failed`` is exactly what failed (what the fault schedule asked for, as far
  as online units allow);
- executed shifts respect per-shift / per-tick limits, floors and the share cap, and the guard
  executes exactly the clipped proposal (it neither lets through nor rejects too much);
- no shift touches a module locked by an earlier shift's or rollback's stabilization window,
  and judgements / rollbacks happen exactly when the rule says;
- a rollback restores both modules (without unit failures: exactly);
- observations are finite float32 inside the observation space;
- an invalid action is a no-op: the trajectory equals the one with an explicit no-op.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from shift_rl.config import ScenarioConfig, scenario_from_dict
from shift_rl.env import ResourceShiftEnv

KIND_NAMES = ("cpu", "mem")
SUPPRESS = [HealthCheck.too_slow, HealthCheck.data_too_large]

# ---------------------------------------------------------------------------------------------
# Random valid scenarios
# ---------------------------------------------------------------------------------------------


def _rate(max_per_day: float) -> st.SearchStrategy[float]:
    """A fault / event rate per day: often zero, otherwise up to ``max_per_day``."""
    return st.one_of(st.just(0.0), st.floats(1.0, max_per_day), st.just(float(max_per_day)))


@st.composite
def scenario_dicts(
    draw: st.DrawFn,
    *,
    unit_failures: bool = True,
    rollback_threshold: float | None = None,
    load: tuple[float, float] = (0.2, 2.5),
) -> dict[str, Any]:
    """A mapping that :func:`scenario_from_dict` accepts (validity is asserted by the callers)."""
    n_mod = draw(st.integers(2, 8), label="modules")
    n_kind = draw(st.integers(1, 2), label="kinds")
    kinds = KIND_NAMES[:n_kind]
    share = draw(st.floats(0.15, 1.0), label="max_module_share")
    pools: list[int] = []
    floors: list[list[int]] = []  # [kind][module]
    units: list[list[int]] = []
    for _ in kinds:
        pool = draw(st.integers(max(2, n_mod), 64))
        cap = math.floor(share * pool)
        top_floor = max(0, min(cap, pool // n_mod, 3))
        fl = draw(st.lists(st.integers(0, top_floor), min_size=n_mod, max_size=n_mod))
        weights = draw(st.lists(st.integers(0, 10), min_size=n_mod, max_size=n_mod))
        spare = pool - sum(fl)
        # Mostly a well-used pool (shifts possible), sometimes a half-empty one.
        extra = draw(st.one_of(st.integers(spare * 3 // 4, spare), st.integers(0, spare)))
        total_w = sum(weights)
        un = [
            f + (extra * w // total_w if total_w else 0) for f, w in zip(fl, weights, strict=True)
        ]
        pools.append(pool)
        floors.append(fl)
        units.append(un)

    per_shift = draw(st.integers(1, min(8, *pools)), label="max_units_per_shift")
    levels = sorted(draw(st.sets(st.integers(1, per_shift), min_size=1, max_size=4)))
    tick_seconds = draw(st.sampled_from([30.0, 60.0, 120.0]))
    ticks_per_day = 86_400.0 / tick_seconds

    def per_kind(values: list[Any]) -> Any:
        if n_kind == 1 and draw(st.booleans()):
            return values[0]
        return dict(zip(kinds, values, strict=True))

    modules = []
    for m in range(n_mod):
        mu = draw(st.floats(1.0, 100.0))
        ups = [draw(st.sampled_from([0.5, 1.0, 1.5, 2.0])) for _ in kinds]
        # Demand sized against the module's fair share of the scarcest kind.
        fair_servers = min(p / u for p, u in zip(pools, ups, strict=True)) / n_mod
        servers = draw(st.floats(*load)) * max(fair_servers, 0.5)
        base = servers * mu * tick_seconds * 0.7
        modules.append(
            {
                "name": f"mod-{m}",
                "service_rate": mu,
                "slo_seconds": draw(st.floats(1.5, 20.0)) / mu,
                "value": draw(st.floats(0.1, 5.0)),
                "units": per_kind([units[r][m] for r in range(n_kind)]),
                "floor": per_kind([floors[r][m] for r in range(n_kind)]),
                "units_per_server": per_kind(ups),
                "report_noise": draw(st.floats(0.0, 0.5)),
                "overconfidence": draw(st.floats(0.0, 0.9)),
                "demand": {
                    "base": base,
                    "diurnal": {
                        "amplitude": draw(st.floats(0.0, 1.0)),
                        "peak_hour": draw(st.floats(0.0, 23.9)),
                    },
                    "noise": draw(st.floats(0.0, 0.4)),
                    "bursts": {
                        "rate_per_day": draw(_rate(ticks_per_day / 20)),
                        "magnitude": draw(st.floats(0.0, 2.0)),
                        "duration_ticks": draw(st.integers(1, 20)),
                    },
                    "regime": {
                        "rate_per_day": draw(_rate(ticks_per_day / 30)),
                        "magnitude": draw(st.floats(0.0, 0.5)),
                    },
                },
            }
        )
    failure_rate = draw(_rate(ticks_per_day / 5)) if unit_failures else 0.0
    threshold = (
        draw(st.floats(0.0, 0.2)) if rollback_threshold is None else float(rollback_threshold)
    )
    forecaster = draw(st.sampled_from(["ema", "last"]))
    return {
        "name": "hypothesis",
        "tick_seconds": tick_seconds,
        "episode_ticks": draw(st.integers(50, 200), label="episode_ticks"),
        "warmup_ticks": draw(st.integers(0, 3), label="warmup_ticks"),
        "resources": [{"name": k, "units": p} for k, p in zip(kinds, pools, strict=True)],
        "demand": {
            "correlation": draw(st.floats(0.0, 1.0)),
            "start_hour": draw(st.one_of(st.just("random"), st.floats(0.0, 23.9))),
        },
        "modules": modules,
        "safety": {
            "max_units_per_shift": per_shift,
            "max_units_per_tick": draw(st.integers(1, 10), label="max_units_per_tick"),
            "max_module_share": share,
            "stabilization_ticks": draw(st.integers(1, 6), label="stabilization_ticks"),
            "rollback_threshold": threshold,
        },
        "action": {"amount_levels": levels},
        "faults": {
            "slowdown": {
                "rate_per_day": draw(_rate(ticks_per_day / 10)),
                "factor": draw(st.floats(0.1, 0.9)),
                "duration_ticks": draw(st.integers(1, 20)),
            },
            "unit_failure": {
                "rate_per_day": failure_rate,
                "units": draw(st.integers(1, 4)),
                "duration_ticks": draw(st.integers(1, 20)),
            },
            "telemetry_gap": {
                "rate_per_day": draw(_rate(ticks_per_day / 5)),
                "duration_ticks": draw(st.integers(1, 10)),
            },
        },
        "forecast": {
            "model": forecaster,
            "params": {"alpha": draw(st.floats(0.05, 1.0))} if forecaster == "ema" else {},
            "history_ticks": draw(st.integers(0, 8)),
        },
    }


@given(data=scenario_dicts())
@settings(max_examples=60, deadline=None, suppress_health_check=SUPPRESS)
def test_strategy_builds_valid_scenarios(data: dict[str, Any]) -> None:
    """The generator only produces valid scenarios (else the properties below test nothing)."""
    cfg = scenario_from_dict(data)
    assert 2 <= len(cfg.modules) <= 8 and 1 <= len(cfg.resources) <= 2


# ---------------------------------------------------------------------------------------------
# Policies
# ---------------------------------------------------------------------------------------------


def _masked_action(rng: np.random.Generator, mask: np.ndarray, m: int) -> np.ndarray:
    """Uniform per dimension among the mask's allowed entries; prefers src != dst."""
    src = rng.choice(np.flatnonzero(mask[:m]))
    dsts = np.flatnonzero(mask[m : 2 * m])
    if rng.random() < 0.8 and (dsts != src).any():
        dsts = dsts[dsts != src]
    lvl = rng.choice(np.flatnonzero(mask[2 * m :]))
    return np.array([src, rng.choice(dsts), lvl], dtype=np.int64)


def _policy_action(
    policy: str, rng: np.random.Generator, env: ResourceShiftEnv, mask: np.ndarray
) -> np.ndarray:
    m = len(env.module_names)
    nvec = env.action_space.nvec
    if policy == "mixed":
        policy = str(rng.choice(["space", "mask", "wild"], p=[0.45, 0.45, 0.1]))
    if policy == "space":
        return rng.integers(nvec).astype(np.int64)
    if policy == "wild":  # outside the action space too (a buggy policy): the env refuses it
        return rng.integers(-2, nvec + 2).astype(np.int64)
    if policy == "noop":
        return np.zeros(3, dtype=np.int64)
    return _masked_action(rng, mask, m)


# ---------------------------------------------------------------------------------------------
# The checker: the rules, restated independently of the implementation
# ---------------------------------------------------------------------------------------------


@dataclass
class _Open:
    """An executed shift awaiting judgement."""

    tick: int
    src: int
    dst: int
    kind: int
    units: int
    baseline: float
    pair_before: np.ndarray  # (2, R) alloc + incoming of (src, dst) just before the shift


@dataclass
class Checker:
    env: ResourceShiftEnv
    exact_rollback: bool = False
    lock_until: np.ndarray = field(init=False)
    open: dict[int, _Open] = field(default_factory=dict)  # judged at tick -> shift
    used: dict[tuple[int, int], int] = field(default_factory=dict)  # (tick, kind) -> units
    stats: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        p = self.env.params
        s = self.env.scenario.safety
        self.m, self.r = p.num_modules, p.num_resources
        self.levels = p.amount_levels
        self.k = len(self.levels)
        self.floor = p.floor
        self.cap = p.share_cap
        self.pool = p.pool_units
        # The window covers the warm-up: a shift is judged once its units serve at the target.
        self.window = max(s.stabilization_ticks, p.warmup_ticks + 1)
        self.per_shift = s.max_units_per_shift
        self.per_tick = s.max_units_per_tick
        self.threshold = s.rollback_threshold
        self.value = p.value
        self.lock_until = np.zeros(self.m, dtype=np.int64)
        for key in ("shifts", "rollbacks", "invalid", "clipped", "failed", "gaps", "out_of_space"):
            self.stats[key] = 0

    # -- state snapshots ------------------------------------------------------------------
    def snapshot(self) -> dict[str, np.ndarray]:
        sim = self.env.plane.sim
        tel = sim.telemetry()
        return {
            "tick": int(tel.tick[0]),
            "alloc": sim.alloc[0].copy(),
            "transit": sim.transit[0].copy(),
            "failed": sim.failed[0].copy(),
            "free": sim.free[0].copy(),
            "attain": tel.attainment[0].copy(),
            "incoming": tel.incoming[0].copy(),
        }

    def check_state(self, obs: np.ndarray) -> None:
        """Invariants that hold at every tick, whatever happened."""
        sim = self.env.plane.sim
        tel = sim.telemetry()
        for name, arr in (
            ("alloc", sim.alloc),
            ("transit", sim.transit),
            ("failed", sim.failed),
            ("free", sim.free),
            ("incoming", tel.incoming),
            ("capacity", tel.capacity),
        ):
            assert arr.dtype == np.int64, f"{name} is {arr.dtype}, not int64"
            assert (arr >= 0).all(), f"negative units in {name}: {arr}"
        total = sim.alloc[0].sum(0) + sim.transit[0].sum((0, 1)) + sim.failed[0].sum((0, 1))
        np.testing.assert_array_equal(total + sim.free[0], self.pool, err_msg="conservation")
        np.testing.assert_array_equal(tel.incoming[0], sim.transit[0].sum(0))
        np.testing.assert_array_equal(tel.capacity[0], self.pool - sim.failed[0].sum((0, 1)))
        assert obs.dtype == np.float32
        assert np.isfinite(obs).all(), (
            f"non-finite observation at {np.flatnonzero(~np.isfinite(obs))}"
        )
        assert self.env.observation_space.contains(obs), "observation outside its space"
        # The guard's locks agree with the ones the rules imply.
        t = int(tel.tick[0])
        np.testing.assert_array_equal(
            np.maximum(self.env.plane.core.guard.lock_until[0] - t, 0),
            np.maximum(self.lock_until - t, 0),
            err_msg="guard locks differ from the stabilization windows of executed shifts",
        )

    def check_mask(self, mask: np.ndarray, before: dict[str, Any]) -> None:
        """Per-dimension mask: sources are exactly the unlocked modules with spare units."""
        t, alloc, inc = before["tick"], before["alloc"], before["incoming"]
        m = self.m
        free_lock = self.lock_until <= t
        budget = np.array([self.per_tick - self.used.get((t, r), 0) for r in range(self.r)])
        spare = (alloc - self.floor >= 1) & (budget >= 1)[None, :]
        give = free_lock & spare.any(1)
        recv = free_lock & (self.cap[None, :] - alloc - inc >= 1).any(1)
        assert mask.dtype == bool and mask.shape == (2 * m + self.r * self.k,)
        if not give.any():
            expected = np.zeros_like(mask)
            expected[[0, m, 2 * m]] = True
            np.testing.assert_array_equal(mask, expected, err_msg="only the no-op should remain")
            return
        np.testing.assert_array_equal(mask[:m], give, err_msg="source mask")
        np.testing.assert_array_equal(mask[m : 2 * m], give | recv, err_msg="target mask")
        # Levels of a kind: offered when some unlocked module can give that kind; the first
        # level always (it is clipped), larger ones when some source has that many to spare.
        levels = np.zeros(self.r * self.k, dtype=bool)
        for r in range(self.r):
            givers = free_lock & spare[:, r]
            if givers.any():
                top = (alloc[:, r] - self.floor[:, r])[givers].max()
                levels[r * self.k : (r + 1) * self.k] = self.levels <= top
                levels[r * self.k] = True
        np.testing.assert_array_equal(mask[2 * m :], levels, err_msg="level mask")

    # -- one tick -----------------------------------------------------------------------------
    def in_space(self, action: np.ndarray) -> bool:
        s, d, a = (int(v) for v in action)
        return 0 <= s < self.m and 0 <= d < self.m and 0 <= a < self.r * self.k

    def expected_units(self, action: np.ndarray, before: dict[str, Any]) -> int:
        """Units the rules allow for a proposal (0: invalid or no-op)."""
        if not self.in_space(action):
            return 0
        s, d, a = (int(v) for v in action)
        r, k = divmod(a, self.k)
        t, alloc, inc = before["tick"], before["alloc"], before["incoming"]
        if s == d or self.lock_until[s] > t or self.lock_until[d] > t:
            return 0
        u = min(
            int(self.levels[k]),
            self.per_shift,
            self.per_tick - self.used.get((t, r), 0),
            int(alloc[s, r] - self.floor[s, r]),
            int(self.cap[r] - alloc[d, r] - inc[d, r]),
        )
        return max(u, 0)

    def check_step(
        self, action: np.ndarray, before: dict[str, Any], info: dict[str, Any], reward: float
    ) -> None:
        env, sim = self.env, self.env.plane.sim
        h = env.params.history_ticks
        t = before["tick"]
        after = self.snapshot()
        assert after["tick"] == t + 1 == info["tick"]
        s, d, r, u = info["shift"]
        a_s, a_d, a_l = (int(v) for v in action)
        a_r, a_k = divmod(a_l, self.k)

        # The guard executes exactly the clipped proposal.
        want = self.expected_units(action, before)
        assert u == want, f"executed {u} units, the rules allow {want} for {tuple(action)}"
        if self.in_space(action):
            assert info["invalid_action"] == (a_s != a_d and want == 0)
            assert info["clipped"] == (want > 0 and want < self.levels[a_k])
        else:
            assert info["invalid_action"] and not info["clipped"], "out-of-space action"
            self.stats["out_of_space"] += 1
        if u > 0:
            assert (s, d, r) == (a_s, a_d, a_r)
            # Limits, explicitly.
            assert u <= self.per_shift and u <= self.levels[a_k]
            assert self.used.get((t, r), 0) + u <= self.per_tick
            assert before["alloc"][s, r] - u >= self.floor[s, r], "source below its floor"
            assert before["alloc"][d, r] + before["incoming"][d, r] + u <= self.cap[r], "share cap"
            assert self.lock_until[s] <= t and self.lock_until[d] <= t, "shift on a locked module"
            self.used[(t, r)] = self.used.get((t, r), 0) + u
            assert self.used[(t, r)] <= self.per_tick, (
                f"over the budget of tick {t}, rollback incl."
            )
            pair = np.stack([before["alloc"][i] + before["incoming"][i] for i in (s, d)])
            self.open[t + self.window] = _Open(
                t, s, d, r, u, self._pair(before["attain"], s, d), pair
            )
            self.lock_until[[s, d]] = t + self.window
            self.stats["shifts"] += 1
        self.stats["invalid"] += info["invalid_action"]
        self.stats["clipped"] += info["clipped"]

        # Judgement of the shift made `window` ticks ago, and its rollback.
        rb_units = info["units_moved"] - u
        assert info["rollbacks"] in (0, 1) and rb_units >= 0
        judged = self.open.pop(t + 1, None)
        rb = None
        if judged is not None:
            now = self._pair(after["attain"], judged.src, judged.dst)
            pre_rb_alloc = after["alloc"][judged.dst, judged.kind] + rb_units
            back = min(judged.units, int(pre_rb_alloc - self.floor[judged.dst, judged.kind]))
            drop = judged.baseline - now
            if not (math.isfinite(drop) and abs(drop - self.threshold) < 1e-12):
                should = bool(drop > self.threshold) and back > 0
                assert info["rollbacks"] == int(should), (
                    f"rollback={info['rollbacks']} but drop {drop} vs threshold {self.threshold}"
                    f" (back={back})"
                )
            if info["rollbacks"]:
                assert rb_units == back, f"rollback moved {rb_units}, expected {back}"
                rb = judged
        else:
            assert info["rollbacks"] == 0, "rollback without a shift due for judgement"
        if rb is None:
            assert rb_units == 0, "units moved that no shift or rollback explains"

        # Exact accounting of every unit over the tick.
        transit = before["transit"].copy()
        alloc = before["alloc"].copy()
        if u > 0:
            alloc[s, r] -= u
            transit[-1, d, r] += u
        failed_b, failed_a = before["failed"], after["failed"]
        new_fail = failed_a[-1]  # (M + 1, R): the last slot holds only this tick's failures
        alloc += transit[0] + failed_b[0, : self.m] - new_fail[: self.m]
        free = before["free"] + failed_b[0, self.m] - new_fail[self.m]
        exp_transit = np.zeros_like(transit)
        exp_transit[:-1] = transit[1:]
        if rb is not None:
            alloc[rb.dst, rb.kind] -= rb_units
            exp_transit[-1, rb.src, rb.kind] += rb_units
        np.testing.assert_array_equal(after["alloc"], alloc, err_msg="allocation accounting")
        np.testing.assert_array_equal(after["transit"], exp_transit, err_msg="transit accounting")
        np.testing.assert_array_equal(after["free"], free, err_msg="free-pool accounting")
        np.testing.assert_array_equal(failed_a[:-1], failed_b[1:], err_msg="failed slots")
        np.testing.assert_array_equal(info["alloc"], after["alloc"])

        # Failures: exactly what the schedule asked for, as far as online units allow.
        lost = np.asarray(info["units_failed"])
        np.testing.assert_array_equal(lost, new_fail.sum(0), err_msg="units_failed")
        want_fail = sim.exo_fail[0, h + t + 1]
        online = alloc.sum(0) + free + new_fail.sum(0)  # before this tick's failures
        if rb is not None:
            online[rb.kind] += rb_units
        np.testing.assert_array_equal(lost, np.minimum(want_fail, online))
        self.stats["failed"] += int(lost.sum())
        self.stats["gaps"] += int(info["telemetry_missing"].sum())

        # A rollback restores the pair and locks it again.
        if rb is not None:
            self.stats["rollbacks"] += 1
            rb_tick = t + 1
            self.lock_until[[rb.src, rb.dst]] = rb_tick + self.window
            self.used[(rb_tick, rb.kind)] = rb_units  # the tick's budget is shared
            if self.exact_rollback:
                pair = np.stack(
                    [after["alloc"][i] + after["incoming"][i] for i in (rb.src, rb.dst)]
                )
                np.testing.assert_array_equal(
                    pair,
                    rb.pair_before,
                    err_msg=f"rollback of {rb} did not restore the pair (moved {rb_units})",
                )

        # Reward components.
        rc = info["reward_components"]
        cost = env.scenario.reward
        assert math.isclose(rc["move_cost"], cost.cost_per_unit * info["units_moved"])
        assert math.isclose(rc["rollback_cost"], cost.cost_per_rollback * info["rollbacks"])
        assert math.isclose(
            reward, rc["goal_attainment"] - rc["move_cost"] - rc["rollback_cost"], abs_tol=1e-12
        )
        assert 0.0 <= rc["goal_attainment"] <= 1.0

    def _pair(self, attain: np.ndarray, s: int, d: int) -> float:
        v = self.value
        return float((v[s] * attain[s] + v[d] * attain[d]) / (v[s] + v[d]))


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)


def run_episode(
    cfg: ScenarioConfig,
    seed: int,
    policy: str,
    *,
    exact_rollback: bool = False,
    replace_invalid: set[int] | None = None,
    record: bool = True,
) -> tuple[Checker, list[np.ndarray], set[int]]:
    """Drive one whole episode with every check on; returns the checker, observations and the
    ticks whose action was invalid (with ``replace_invalid``, those ticks play the no-op)."""
    env = ResourceShiftEnv(cfg)
    chk = Checker(env, exact_rollback=exact_rollback)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    chk.check_state(obs)
    observations, invalid_ticks = [obs], set()
    truncated = False
    while not truncated:
        before = chk.snapshot()
        mask = env.action_masks()
        chk.check_mask(mask, before)
        action = _policy_action(policy, rng, env, mask)
        if replace_invalid is not None and before["tick"] in replace_invalid:
            action = np.array([0, 0, 0], dtype=np.int64)
        if not env.action_space.contains(action):  # a buggy policy: refused, nothing changes
            with pytest.raises(ValueError, match="outside the action space"):
                env.step(action)
            assert _same(chk.snapshot(), before)
            action = np.array([0, 0, 0], dtype=np.int64)
            invalid_ticks.add(before["tick"])
        obs, reward, terminated, truncated, info = env.step(action)
        assert not terminated
        chk.check_step(action, before, info, reward)
        chk.check_state(obs)
        if info["invalid_action"]:
            invalid_ticks.add(before["tick"])
        observations.append(obs)
    assert chk.snapshot()["tick"] == cfg.episode_ticks
    if record:
        for key, n in chk.stats.items():
            event(f"{key}: {'0' if n == 0 else '>0'}")
    return chk, observations, invalid_ticks


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------


@given(
    data=scenario_dicts(),
    seed=st.integers(0, 2**32 - 1),
    policy=st.sampled_from(["space", "mask", "mixed", "wild"]),
)
@settings(max_examples=150, deadline=None, suppress_health_check=SUPPRESS)
def test_invariants_hold_every_tick(data: dict[str, Any], seed: int, policy: str) -> None:
    run_episode(scenario_from_dict(data), seed, policy)


@given(
    data=scenario_dicts(unit_failures=False, rollback_threshold=0.0, load=(0.6, 3.0)),
    seed=st.integers(0, 2**32 - 1),
)
@settings(max_examples=80, deadline=None, suppress_health_check=SUPPRESS)
def test_rollback_restores_the_pair_exactly(data: dict[str, Any], seed: int) -> None:
    """Without unit failures, a rollback puts both modules back where they were (units
    serving plus units warming up towards them) just before the original shift."""
    run_episode(scenario_from_dict(data), seed, "mask", exact_rollback=True)


def test_rollbacks_do_happen() -> None:
    """The rollback properties above are not vacuous: a plane whose shifts hurt rolls back."""
    data = {
        "name": "hurt",
        "episode_ticks": 120,
        "warmup_ticks": 1,
        "resources": [{"name": "cpu", "units": 24}],
        "demand": {"start_hour": 0.0},
        "modules": [
            {
                "name": f"m{i}",
                "service_rate": 10.0,
                "slo_seconds": 0.3,
                "units": 8,
                "floor": 1,
                "demand": {"base": 10.0 * 60 * 0.7 * 7.5, "noise": 0.02},
            }
            for i in range(3)
        ],
        "safety": {
            "max_units_per_shift": 4,
            "max_units_per_tick": 4,
            "max_module_share": 0.75,
            "stabilization_ticks": 3,
            "rollback_threshold": 0.0,
        },
        "action": {"amount_levels": [2, 4]},
        "forecast": {"history_ticks": 5},
    }
    chk, _, _ = run_episode(scenario_from_dict(data), 7, "mask", exact_rollback=True, record=False)
    assert chk.stats["shifts"] >= 10
    assert chk.stats["rollbacks"] >= 5, chk.stats


@given(data=scenario_dicts(), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=40, deadline=None, suppress_health_check=SUPPRESS)
def test_invalid_action_is_a_noop(data: dict[str, Any], seed: int) -> None:
    """Replaying the same episode with every invalid action replaced by the explicit no-op
    gives the very same observations: an invalid action changes nothing."""
    cfg = scenario_from_dict(data)
    _, obs_a, invalid = run_episode(cfg, seed, "mixed")
    _, obs_b, invalid_b = run_episode(cfg, seed, "mixed", replace_invalid=invalid)
    assert not invalid_b
    np.testing.assert_array_equal(np.stack(obs_a), np.stack(obs_b))


def test_stepping_past_the_end_fails_loudly() -> None:
    """The step after truncation raises at once (and every observation before it is valid):
    never an extra step played on, never garbage read past the episode's arrays."""
    data = {
        "name": "short",
        "episode_ticks": 10,
        "resources": [{"name": "cpu", "units": 8}],
        "modules": [
            {"name": f"m{i}", "service_rate": 10.0, "slo_seconds": 0.5, "units": 4,
             "demand": {"base": 1000.0}}
            for i in range(2)
        ],
        "faults": {"telemetry_gap": {"rate_per_day": 100.0}},
    }  # fmt: skip
    env = ResourceShiftEnv(scenario_from_dict(data))
    env.reset(seed=0)
    steps = 0
    with pytest.raises(RuntimeError, match="reset"):
        for _ in range(100):
            obs, *_ = env.step(np.zeros(3, dtype=np.int64))
            assert np.isfinite(obs).all() and env.observation_space.contains(obs)
            steps += 1
    assert steps == env.scenario.episode_ticks
