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

from .plans import scenario

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
    mode: str | None = None,
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
        "action": {
            "amount_levels": levels,
            "mode": draw(st.sampled_from(["plan", "shift"]), label="mode")
            if mode is None
            else mode,
        },
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


def _masked_plan(rng: np.random.Generator, mask: np.ndarray, width: int) -> np.ndarray:
    """Per (module, kind) a level uniform among the allowed ones, "no change" a third of the
    time (else nearly every module asks, and the locks leave little to plan)."""
    allowed = mask.reshape(-1, width)
    out = (rng.random(allowed.shape) + allowed).argmax(axis=1)
    out[rng.random(out.shape[0]) < 1 / 3] = width // 2
    return out.astype(np.int64)


def _policy_action(
    policy: str, rng: np.random.Generator, env: ResourceShiftEnv, mask: np.ndarray
) -> np.ndarray:
    m = len(env.module_names)
    nvec = env.action_space.nvec
    guard = env.plane.core.guard
    if policy == "mixed":
        policy = str(rng.choice(["space", "mask", "wild"], p=[0.45, 0.45, 0.1]))
    if policy == "space":
        return rng.integers(nvec).astype(np.int64)
    if policy == "wild":  # outside the action space too (a buggy policy): the env refuses it
        return rng.integers(-2, nvec + 2).astype(np.int64)
    if policy == "noop":
        return guard.noop_action.copy()
    if guard.plan_mode:
        return _masked_plan(rng, mask, int(nvec[0]))
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


def _attainment_key(att: float, missing: float) -> float:
    """Attainment as the matching's tie-break sees it: in [0, 1], ``missing`` if NaN."""
    return missing if math.isnan(att) else min(max(att, 0.0), 1.0)


def reference_match(
    req: np.ndarray,
    attain: np.ndarray,
    busy: np.ndarray,
    alloc: np.ndarray,
    incoming: np.ndarray,
    floor: np.ndarray,
    cap: np.ndarray,
    per_shift: int,
    budget: np.ndarray,
) -> list[tuple[int, int, int, int]]:
    """The matching of safety.py's docstring, restated: per kind, takers by decreasing
    request (ties: worse attainment, then lower index), givers by decreasing offer (ties:
    better attainment, then lower index); the i-th taker with the next giver that can still
    give; ``min(take, offer, per shift, budget left, spare, room)`` units; a module in at most
    one shift. ``busy`` (M,): modules that may take part in none (locked)."""
    m_count, r_count = req.shape
    busy = busy.copy()
    out = []
    for r in range(r_count):
        takers = [m for m in range(m_count) if req[m, r] > 0 and not busy[m]]
        givers = [m for m in range(m_count) if req[m, r] < 0 and not busy[m]]
        if not takers or not givers:
            continue
        takers.sort(key=lambda m: (-req[m, r], _attainment_key(attain[m], 1.0), m))
        givers.sort(key=lambda m: (req[m, r], -_attainment_key(attain[m], 0.0), m))
        left = int(budget[r])
        i = j = 0
        while i < len(takers) and j < len(givers) and left > 0:
            t, g = takers[i], givers[j]
            room = int(cap[r] - alloc[t, r] - incoming[t, r])
            spare = int(alloc[g, r] - floor[g, r])
            if busy[t] or room <= 0:
                i += 1
                continue
            if busy[g] or spare <= 0:
                j += 1
                continue
            u = min(int(req[t, r]), int(-req[g, r]), per_shift, left, spare, room)
            out.append((g, t, r, u))
            left -= u
            busy[t] = busy[g] = True
            i += 1
            j += 1
    return out


@dataclass
class Checker:
    env: ResourceShiftEnv
    exact_rollback: bool = False
    probe: int = 4  # mask entries probed with the guard each tick (plan mode)
    lock_until: np.ndarray = field(init=False)
    open: dict[int, list[_Open]] = field(default_factory=dict)  # judged at tick -> shifts
    used: dict[tuple[int, int], int] = field(default_factory=dict)  # (tick, kind) -> units
    stats: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        p = self.env.params
        s = self.env.scenario.safety
        self.plan_mode = self.env.plane.core.guard.plan_mode
        self.m, self.r = p.num_modules, p.num_resources
        self.levels = p.amount_levels
        self.k = len(self.levels)
        self.width = 2 * self.k + 1
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
        self.rng = np.random.default_rng(0)
        for key in ("shifts", "rollbacks", "invalid", "clipped", "failed", "gaps",
                    "out_of_space", "multi_shift_ticks", "probes"):  # fmt: skip
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

    def budget(self, t: int) -> np.ndarray:
        return np.array([self.per_tick - self.used.get((t, r), 0) for r in range(self.r)])

    def check_mask(self, mask: np.ndarray, before: dict[str, Any]) -> None:
        if self.plan_mode:
            self.check_plan_mask(mask, before)
            return
        """Per-dimension mask: sources are exactly the unlocked modules with spare units."""
        t, alloc, inc = before["tick"], before["alloc"], before["incoming"]
        m = self.m
        free_lock = self.lock_until <= t
        budget = self.budget(t)
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

    def level_units(self) -> np.ndarray:
        return np.concatenate((-self.levels[::-1], [0], self.levels)).astype(np.int64)

    def check_plan_mask(self, mask: np.ndarray, before: dict[str, Any]) -> None:
        """Per (module, kind): "no change" always; while unlocked and the kind's tick budget
        lasts, offers up to the spare units above the floor and requests up to the room
        under the share cap (the smallest level with one unit of either)."""
        t, alloc, inc = before["tick"], before["alloc"], before["incoming"]
        assert mask.dtype == bool and mask.shape == (self.m * self.r * self.width,)
        budget = self.budget(t)
        units = self.level_units()
        expected = np.zeros((self.m, self.r, self.width), dtype=bool)
        expected[:, :, self.k] = True
        for m in range(self.m):
            for r in range(self.r):
                if self.lock_until[m] > t or budget[r] < 1:
                    continue
                spare = alloc[m, r] - self.floor[m, r]
                room = self.cap[r] - alloc[m, r] - inc[m, r]
                for j, u in enumerate(units):
                    if u < 0:
                        expected[m, r, j] = spare >= 1 and (-u == self.levels[0] or -u <= spare)
                    elif u > 0:
                        expected[m, r, j] = room >= 1 and (u == self.levels[0] or u <= room)
        np.testing.assert_array_equal(mask.reshape(expected.shape), expected, err_msg="plan mask")
        self.probe_plan_mask(mask.reshape(expected.shape), before)

    def probe_plan_mask(self, mask: np.ndarray, before: dict[str, Any]) -> None:
        """A few (module, kind, level) entries, played with the guard (nothing registered):
        a masked-in level with a counterpart asking the opposite moves >= 1 unit; a
        masked-out one is never executed as asked (nothing moves, or it is cut)."""
        guard = self.env.plane.core.guard
        t, alloc, inc = before["tick"], before["alloc"], before["incoming"]
        free = self.lock_until <= t
        tick = np.array([t])
        units = self.level_units()
        for _ in range(self.probe):
            m, r = int(self.rng.integers(self.m)), int(self.rng.integers(self.r))
            j = int(self.rng.integers(self.width))
            u = int(units[j])
            if u == 0:
                continue
            # the counterpart: any other unlocked module able to do the opposite
            if u > 0:
                ok = alloc[:, r] - self.floor[:, r] >= 1
            else:
                ok = self.cap[r] - alloc[:, r] - inc[:, r] >= 1
            cands = np.flatnonzero(ok & free & (np.arange(self.m) != m))
            if cands.size == 0:
                continue
            c = int(self.rng.choice(cands))
            req = np.zeros((1, self.m, self.r), dtype=np.int64)
            req[0, m, r], req[0, c, r] = u, -u
            _, src, dst, kind, got, _ = guard.match(
                tick, req, alloc[None], inc[None], before["attain"][None]
            )
            moved = int(got.sum())
            self.stats["probes"] += 1
            if mask[m, r, j]:
                assert moved >= 1, f"masked-in level {u} of module {m} kind {r} moves nothing"
                assert src.tolist() == ([c] if u > 0 else [m]) and kind.tolist() == [r]
                assert dst.tolist() == ([m] if u > 0 else [c])
            else:
                assert moved < abs(u), f"masked-out level {u} of module {m} ran as asked"

    # -- one tick -----------------------------------------------------------------------------
    def in_space(self, action: np.ndarray) -> bool:
        return bool(((action >= 0) & (action < self.env.action_space.nvec)).all())

    def expected_units(self, action: np.ndarray, before: dict[str, Any]) -> int:
        """Single-shift mode: units the rules allow for a proposal (0: invalid or no-op)."""
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

    def expected_single(
        self, action: np.ndarray, before: dict[str, Any], info: dict[str, Any]
    ) -> list[tuple[int, int, int, int]]:
        """Single-shift mode: the shift the old rules (kept) execute, and its status."""
        want = self.expected_units(action, before)
        a_s, a_d, a_l = (int(v) for v in action)
        a_r, a_k = divmod(a_l, self.k)
        assert info["invalid_action"] == (a_s != a_d and want == 0)
        assert info["clipped"] == (want > 0 and want < self.levels[a_k])
        return [(a_s, a_d, a_r, want)] if want > 0 else []

    def expected_plan(
        self, action: np.ndarray, before: dict[str, Any], info: dict[str, Any]
    ) -> list[tuple[int, int, int, int]]:
        """Plan mode: the reference matching of the plan, and its status."""
        t = before["tick"]
        req = self.level_units()[action].reshape(self.m, self.r)
        shifts = reference_match(
            req, before["attain"], self.lock_until > t, before["alloc"], before["incoming"],
            self.floor, self.cap, self.per_shift, self.budget(t),
        )  # fmt: skip
        asked = sum(min(req[:, r][req[:, r] > 0].sum(), -req[:, r][req[:, r] < 0].sum())
                    for r in range(self.r))  # fmt: skip
        moved = sum(u for *_, u in shifts)
        assert info["invalid_action"] == (asked > 0 and moved == 0), (asked, moved)
        assert info["clipped"] == (0 < moved < asked), (asked, moved)
        return shifts

    def check_step(
        self, action: np.ndarray, before: dict[str, Any], info: dict[str, Any], reward: float
    ) -> None:
        env, sim = self.env, self.env.plane.sim
        h = env.params.history_ticks
        t = before["tick"]
        after = self.snapshot()
        assert after["tick"] == t + 1 == info["tick"]
        rows = np.asarray(info["shifts"])
        n = int(info["num_shifts"])
        assert rows.shape == (max(1, self.m // 2), 4) and not rows[n:].any()
        got = [tuple(int(x) for x in row) for row in rows[:n]]

        # The guard executes exactly what the rules say.
        if not self.in_space(action):
            assert info["invalid_action"] and not info["clipped"] and not got, "out of space"
            self.stats["out_of_space"] += 1
            want: list[tuple[int, int, int, int]] = []
        elif self.plan_mode:
            want = self.expected_plan(action, before, info)
        else:
            want = self.expected_single(action, before, info)
        assert got == want, f"executed {got}, the rules give {want} for {action.tolist()}"

        # Limits, explicitly.
        touched = [m for s, d, _, _ in got for m in (s, d)]
        assert len(set(touched)) == len(touched), f"a module in two shifts of a tick: {got}"
        for s, d, r, u in got:
            assert s != d and 1 <= u <= self.per_shift
            if self.plan_mode:
                req = self.level_units()[action].reshape(self.m, self.r)
                assert u <= req[d, r] and u <= -req[s, r], "more than asked"
            assert before["alloc"][s, r] - u >= self.floor[s, r], "source below its floor"
            assert before["alloc"][d, r] + before["incoming"][d, r] + u <= self.cap[r], "share cap"
            assert self.lock_until[s] <= t and self.lock_until[d] <= t, "shift on a locked module"
            self.used[(t, r)] = self.used.get((t, r), 0) + u
            assert self.used[(t, r)] <= self.per_tick, (
                f"over the budget of tick {t}, rollback incl."
            )
            pair = np.stack([before["alloc"][i] + before["incoming"][i] for i in (s, d)])
            self.open.setdefault(t + self.window, []).append(
                _Open(t, s, d, r, u, self._pair(before["attain"], s, d), pair)
            )
            self.lock_until[[s, d]] = t + self.window
            self.stats["shifts"] += 1
        self.stats["multi_shift_ticks"] += len(got) > 1
        self.stats["invalid"] += info["invalid_action"]
        self.stats["clipped"] += info["clipped"]
        shifted = sum(u for *_, u in got)
        rb_units = info["units_moved"] - shifted
        assert rb_units >= 0

        # Exact accounting of every unit over the tick, up to the rollbacks.
        transit = before["transit"].copy()
        alloc = before["alloc"].copy()
        for s, d, r, u in got:
            alloc[s, r] -= u
            transit[-1, d, r] += u
        failed_b, failed_a = before["failed"], after["failed"]
        new_fail = failed_a[-1]  # (M + 1, R): the last slot holds only this tick's failures
        alloc += transit[0] + failed_b[0, : self.m] - new_fail[: self.m]
        free = before["free"] + failed_b[0, self.m] - new_fail[self.m]
        exp_transit = np.zeros_like(transit)
        exp_transit[:-1] = transit[1:]

        # Judgements of the shifts made `window` ticks ago, and their rollbacks: a rollback
        # takes its units back from the target (seen in the allocation: only rollbacks move
        # units after the accounting above).
        rolled: list[tuple[_Open, int]] = []
        for judged in self.open.pop(t + 1, []):
            pre = int(alloc[judged.dst, judged.kind])
            back = min(judged.units, pre - int(self.floor[judged.dst, judged.kind]))
            took = pre - int(after["alloc"][judged.dst, judged.kind])
            now = self._pair(after["attain"], judged.src, judged.dst)
            drop = judged.baseline - now
            if not (math.isfinite(drop) and abs(drop - self.threshold) < 1e-12):
                should = bool(drop > self.threshold) and back > 0
                assert (took > 0) == should, (
                    f"rolled back {took} but drop {drop} vs threshold {self.threshold}"
                    f" (back={back})"
                )
            if took:
                assert took == back, f"rollback moved {took}, expected {back}"
                rolled.append((judged, took))
                alloc[judged.dst, judged.kind] -= took
                exp_transit[-1, judged.src, judged.kind] += took
        assert info["rollbacks"] == len(rolled)
        assert rb_units == sum(u for _, u in rolled), "units moved no shift or rollback explains"
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
        for rb, u in rolled:
            online[rb.kind] += u
        np.testing.assert_array_equal(lost, np.minimum(want_fail, online))
        self.stats["failed"] += int(lost.sum())
        self.stats["gaps"] += int(info["telemetry_missing"].sum())

        # A rollback restores the pair, locks it again and uses the budget of its tick.
        for rb, u in rolled:
            self.stats["rollbacks"] += 1
            rb_tick = t + 1
            self.lock_until[[rb.src, rb.dst]] = rb_tick + self.window
            self.used[(rb_tick, rb.kind)] = self.used.get((rb_tick, rb.kind), 0) + u
            if self.exact_rollback:
                pair = np.stack(
                    [after["alloc"][i] + after["incoming"][i] for i in (rb.src, rb.dst)]
                )
                np.testing.assert_array_equal(
                    pair,
                    rb.pair_before,
                    err_msg=f"rollback of {rb} did not restore the pair (moved {u})",
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
            action = env.plane.core.guard.noop_action.copy()
        if not env.action_space.contains(action):  # a buggy policy: refused, nothing changes
            with pytest.raises(ValueError, match="outside the action space"):
                env.step(action)
            assert _same(chk.snapshot(), before)
            action = env.plane.core.guard.noop_action.copy()
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
@settings(max_examples=100, deadline=None, suppress_health_check=SUPPRESS)
def test_invariants_hold_every_tick(data: dict[str, Any], seed: int, policy: str) -> None:
    run_episode(scenario_from_dict(data), seed, policy)


@given(
    data=scenario_dicts(unit_failures=False, rollback_threshold=0.0, load=(0.6, 3.0)),
    seed=st.integers(0, 2**32 - 1),
)
@settings(max_examples=60, deadline=None, suppress_health_check=SUPPRESS)
def test_rollback_restores_the_pair_exactly(data: dict[str, Any], seed: int) -> None:
    """Without unit failures, a rollback puts both modules back where they were (units
    serving plus units warming up towards them) just before the original shift."""
    run_episode(scenario_from_dict(data), seed, "mask", exact_rollback=True)


@pytest.mark.parametrize("mode", ["plan", "shift"])
def test_rollbacks_do_happen(mode: str) -> None:
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
        "action": {"amount_levels": [2, 4], "mode": mode},
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


SHIPPED = {"default": 240, "multi_resource": 240, "faults": 240, "large": 100}
"""Shipped scenarios the plan properties run on, and their (shortened) episode lengths."""


@pytest.mark.parametrize("name", sorted(SHIPPED))
@given(seed=st.integers(0, 2**32 - 1), policy=st.sampled_from(["space", "mask", "mixed"]))
@settings(max_examples=10, deadline=None, suppress_health_check=SUPPRESS)
def test_random_plans_keep_the_invariants_on_shipped_scenarios(
    name: str, seed: int, policy: str
) -> None:
    """Every check of :class:`Checker` over whole episodes of random plans on the shipped
    scenarios (plan mode, the default): conservation, integers >= 0, floors, share caps,
    per-shift and per-tick limits, one shift per module and tick, locks, judgements and
    rollbacks, observations, masks; the executed shifts equal the reference matching."""
    cfg = scenario(name, SHIPPED[name])
    assert cfg.action.mode == "plan"
    chk, _, _ = run_episode(cfg, seed, policy)
    assert chk.stats["shifts"] > 0


def test_shipped_plans_are_not_vacuous() -> None:
    """On a shipped scenario, random masked plans do execute several shifts a tick, are cut
    to the limits, get rolled back, and the mask probes run."""
    chk, _, _ = run_episode(scenario("large", 100), 3, "mask", record=False)
    st_ = chk.stats
    assert st_["multi_shift_ticks"] > 50 and st_["shifts"] > 2 * 100, st_
    assert st_["clipped"] > 0 and st_["rollbacks"] > 0 and st_["probes"] > 100, st_


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
            obs, *_ = env.step(env.plane.core.guard.noop_action)
            assert np.isfinite(obs).all() and env.observation_space.contains(obs)
            steps += 1
    assert steps == env.scenario.episode_ticks
