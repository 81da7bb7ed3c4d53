"""Plans of shifts: the guard's matching on hand-built cases, and the single shift as the
two-module plan.

- :meth:`SafetyGuard.plan` orders requests as safety.py's docstring says: larger requests
  first; ties by attainment (the taker serving worst, the giver serving best; missing
  telemetry last), then the lower index; each taker with the next giver that can still give;
  every shift cut to the limits; a module in one shift per tick; the budget shared;
- the statuses ``NOOP`` / ``OK`` / ``CLIPPED`` / ``INVALID``;
- single-shift mode is the plan ``{src: -a, dst: +a}``: an env in single-shift mode and one
  in plan mode playing the translated actions give the same trajectories, bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest

from shift_rl.env import ResourceShiftEnv
from shift_rl.safety import CLIPPED, INVALID, NOOP, OK, PLAN, SHIFT, GuardSettings, SafetyGuard

from .plans import level_of, scenario, shift_mode
from .test_determinism import assert_identical, masked_action

NAN = float("nan")


def _guard(m: int = 6, r: int = 1, *, per_shift: int = 8, per_tick: int = 100, mode=PLAN):
    settings = GuardSettings(
        floor=np.zeros((m, r), dtype=np.int64),
        share_cap=np.full(r, 100, dtype=np.int64),
        amount_levels=np.array([1, 2, 4, 8], dtype=np.int64),
        value=np.ones(m),
        max_units_per_shift=per_shift,
        max_units_per_tick=per_tick,
        stabilization_ticks=3,
        rollback_threshold=0.05,
        mode=mode,
    )
    return SafetyGuard(settings)


def _match(guard, requests, alloc=None, attainment=None, tick=0, incoming=None, exclude=None):
    """Shifts ``[(src, dst, kind, units)]`` and the status of {module: units} (kind 0) or
    {(module, kind): units} requests, every module holding 10 units unless told."""
    m, r = guard.num_modules, guard.num_kinds
    req = np.zeros((1, m, r), dtype=np.int64)
    for key, units in requests.items():
        mod, kind = key if isinstance(key, tuple) else (key, 0)
        req[0, mod, kind] = units
    alloc = np.full((1, m, r), 10, dtype=np.int64) if alloc is None else alloc
    incoming = np.zeros_like(alloc) if incoming is None else incoming
    att = np.full((1, m), 0.9) if attainment is None else np.asarray([attainment], dtype=float)
    ex = None if exclude is None else np.asarray([exclude], dtype=bool)
    env, src, dst, kind, units, status = guard.match(
        np.array([tick]), req, alloc, incoming, att, ex
    )
    assert (env == 0).all()
    return list(zip(src.tolist(), dst.tolist(), kind.tolist(), units.tolist(), strict=True)), int(
        status[0]
    )


def test_larger_requests_are_matched_first() -> None:
    g = _guard()
    # takers 0 (+1), 1 (+4); givers 2 (-4), 3 (-1): the big pair first, then the small one
    assert _match(g, {0: 1, 1: 4, 2: -4, 3: -1}) == ([(2, 1, 0, 4), (3, 0, 0, 1)], OK)
    # the larger request wins over a better tie-break: taker 0 serves worst but asks less
    shifts, status = _match(g, {0: 2, 1: 8, 2: -8}, attainment=[0.0, 1.0, 0.5, 0.5, 0.5, 0.5])
    # taker 0 is left unmatched: no offer against it, so not part of what the plan asked
    assert shifts == [(2, 1, 0, 8)] and status == OK


def test_ties_by_attainment_then_index() -> None:
    g = _guard()
    att = [0.9, 0.5, 0.6, 0.95, 0.9, 0.9]
    # takers of equal requests: the one serving worst first (1, not 0)
    assert _match(g, {0: 2, 1: 2, 2: -2}, attainment=att)[0] == [(2, 1, 0, 2)]
    # givers of equal offers: the one serving best first (3, not 2)
    assert _match(g, {0: 2, 2: -2, 3: -2}, attainment=att)[0] == [(3, 0, 0, 2)]
    # full ties: the lower index, on both sides
    assert _match(g, {4: 2, 5: 2, 1: -2, 0: -2})[0] == [(0, 4, 0, 2), (1, 5, 0, 2)]
    # attainment outside [0, 1] counts as its bound: a tie, then the index
    assert _match(g, {0: 2, 1: 2, 2: -2}, attainment=[-3.0, 0.0, 1, 1, 1, 1])[0] == [(2, 0, 0, 2)]


def test_missing_telemetry_goes_last_in_a_tie() -> None:
    g = _guard()
    # a taker without telemetry counts as serving fully (matched after the others) ...
    att = [NAN, 0.99, 0.5, 0.5, 0.5, 0.5]
    assert _match(g, {0: 2, 1: 2, 2: -2}, attainment=att)[0] == [(2, 1, 0, 2)]
    # ... and a giver without it as serving not at all (it gives after the others)
    att = [0.5, NAN, 0.01, 0.5, 0.5, 0.5]
    assert _match(g, {0: 2, 1: -2, 2: -2}, attainment=att)[0] == [(2, 0, 0, 2)]


def test_each_taker_gets_the_next_giver_that_can_still_give() -> None:
    g = _guard()
    alloc = np.full((1, 6, 1), 10, dtype=np.int64)
    alloc[0, 2, 0] = 0  # giver 2 (the largest offer) has nothing above its floor
    assert _match(g, {0: 4, 1: 2, 2: -8, 3: -4, 4: -1}, alloc=alloc) == (
        [(3, 0, 0, 4), (4, 1, 0, 1)],
        CLIPPED,
    )
    # a taker without room under the share cap is skipped, the giver goes to the next one
    alloc = np.full((1, 6, 1), 10, dtype=np.int64)
    alloc[0, 0, 0] = 100
    assert _match(g, {0: 8, 1: 4, 2: -4}, alloc=alloc)[0] == [(2, 1, 0, 4)]


def test_each_shift_is_cut_to_the_limits_and_the_budget_is_shared() -> None:
    g = _guard(per_shift=4, per_tick=6)
    alloc = np.full((1, 6, 1), 10, dtype=np.int64)
    alloc[0, 3, 0] = 2  # giver 3: 2 units above its floor
    incoming = np.zeros_like(alloc)
    incoming[0, 1, 0] = 97  # taker 1: room for 100 - 10 - 97 < 0 units: skipped
    shifts, status = _match(
        g, {0: 8, 1: 8, 4: 2, 2: -8, 3: -8, 5: -2}, alloc=alloc, incoming=incoming
    )
    # 2 -> 0: per shift 4; 3 -> 4: its spare 2 (the budget of 6 is then spent); 5 unmatched
    assert shifts == [(2, 0, 0, 4), (3, 4, 0, 2)] and status == CLIPPED


def test_a_module_takes_part_in_one_shift_per_tick_whatever_the_kind() -> None:
    g = _guard(m=4, r=2)
    # kind 0 pairs 1 -> 0; module 0 also asks for kind 1, but it is busy: 2 -> 3 instead
    shifts, status = _match(g, {(0, 0): 2, (1, 0): -2, (0, 1): 4, (2, 1): -4, (3, 1): 2})
    assert shifts == [(1, 0, 0, 2), (2, 3, 1, 2)] and status == CLIPPED


def test_locked_and_excluded_modules_take_part_in_nothing() -> None:
    g = _guard()
    tick = np.array([5])
    att = np.full((1, 6), 0.9)
    g.register(tick, np.array([0]), np.array([0]), np.array([1]), np.array([0]), np.array([2]),
               att)  # fmt: skip
    # modules 0 and 1 are locked until tick 8: 2 -> 3 instead; the budget of tick 5 is used
    assert _match(g, {1: 4, 3: 4, 0: -4, 2: -4}, tick=5)[0] == [(2, 3, 0, 4)]
    assert _match(g, {1: 4, 0: -4}, tick=5) == ([], INVALID)
    assert _match(g, {1: 4, 0: -4}, tick=8)[0] == [(0, 1, 0, 4)]  # the window has ended
    excluded = [False, False, True, False, False, False]
    assert _match(g, {3: 4, 2: -4, 4: -1}, tick=8, exclude=excluded)[0] == [(4, 3, 0, 1)]


def test_plan_statuses() -> None:
    g = _guard()
    assert _match(g, {}) == ([], NOOP)
    assert _match(g, {0: 4, 1: -4}) == ([(1, 0, 0, 4)], OK)
    # asked: per kind the smaller of requested and offered units (what can be matched)
    assert _match(g, {0: 4, 1: -2}) == ([(1, 0, 0, 2)], OK)
    assert _match(g, {0: 4, 1: 4}) == ([], NOOP)  # takers only: nothing to match
    g.lock_until[0, 1] = 5  # the only giver locked: asked for, none moved
    assert _match(g, {0: 4, 1: -2, 2: 1}) == ([], INVALID)
    g.lock_until[0, 1] = 0
    assert _match(_guard(per_shift=3), {0: 4, 1: -4}) == ([(1, 0, 0, 3)], CLIPPED)
    alloc = np.zeros((1, 6, 1), dtype=np.int64)
    assert _match(g, {0: 4, 1: -4}, alloc=alloc) == ([], INVALID)  # nothing to give


def test_plan_actions_are_requests_in_levels() -> None:
    g = _guard(m=3, r=2)
    assert g.action_nvec == [9] * 6 and g.noop_action.tolist() == [4] * 6
    assert g.level_units().tolist() == [-8, -4, -2, -1, 0, 1, 2, 4, 8]
    action = np.array([[0, 4, 5, 8, 4, 4]])
    assert g.requests(action)[0].tolist() == [[-8, 0], [1, 8], [0, 0]]
    single = _guard(m=3, r=2, mode=SHIFT)
    assert single.action_nvec == [3, 3, 8] and single.noop_action.tolist() == [0, 0, 0]
    # (src, dst, kind * K + k): kind 1, level 2 (4 units) from 2 to 0
    assert single.requests(np.array([[2, 0, 6]]))[0].tolist() == [[0, 4], [0, 0], [0, -4]]
    assert not single.requests(np.array([[1, 1, 6]])).any()  # src == dst: the no-op


def _as_plan(action: np.ndarray, levels: list[int], m: int, r: int) -> np.ndarray:
    """The single shift ``(src, dst, kind * K + k)`` as the plan {src: -a, dst: +a}."""
    k = len(levels)
    plan = np.full(m * r, k, dtype=np.int64)
    s, d, a = (int(x) for x in action)
    if s != d:
        kind, j = divmod(a, k)
        plan[s * r + kind] = level_of(levels, -levels[j])
        plan[d * r + kind] = level_of(levels, levels[j])
    return plan


@pytest.mark.parametrize("name", ["default", "multi_resource", "faults"])
def test_single_shift_mode_is_the_two_module_plan(name: str) -> None:
    """Single-shift mode and plan mode, fed the same shifts (one as ``(src, dst, level)``, the
    other as the plan {src: -a, dst: +a}), give the same trajectory bit for bit: rewards,
    observations, executed shifts, statuses, rollbacks."""
    single = ResourceShiftEnv(shift_mode(name, 200))
    plan = ResourceShiftEnv(scenario(name, 200))  # the same scenario in plan mode
    assert plan.plane.core.guard.plan_mode and not single.plane.core.guard.plan_mode
    m, r = single.params.num_modules, single.params.num_resources
    levels = [int(x) for x in single.params.amount_levels]
    rng = np.random.default_rng(1)
    assert_identical(single.reset(seed=8), plan.reset(seed=8), "reset")
    moved = rollbacks = invalid = 0
    for t in range(200):
        mask = single.action_masks()
        action = (
            rng.integers(single.action_space.nvec)
            if rng.random() < 0.3
            else masked_action(rng, mask, single.scenario)
        )
        got = single.step(action)
        want = plan.step(_as_plan(action, levels, m, r))
        assert_identical(got, want, f"tick {t}, action {action.tolist()}")
        moved += got[4]["units_moved"]
        rollbacks += got[4]["rollbacks"]
        invalid += got[4]["invalid_action"]
    assert moved > 0 and rollbacks > 0 and invalid > 0, (moved, rollbacks, invalid)
