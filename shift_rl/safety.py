"""SafetyGuard: the rails every shift passes, in training and in production alike.

Pure bookkeeping over what a control plane observes (allocations, units warming up, goal
attainment): no simulator internals, so the env, the baselines and the runtime controller
share this one implementation.

Rules, per env:

- a shift ``(src, dst, kind, units)`` moves at most ``max_units_per_shift`` units, and all
  shifts of one tick together at most ``max_units_per_tick`` per kind;
- ``src`` keeps at least its ``floor``; ``dst`` holds at most ``max_module_share`` of the pool
  (units warming up towards it included);
- both modules are locked for ``stabilization_ticks`` (at least ``warmup_ticks + 1``, so
  the shifted units serve before the window ends): no other shift may touch them;
- at the end of that window the shift is judged on observed goal attainment: when the
  pair's value-weighted attainment fell by more than ``rollback_threshold`` against the tick
  of the shift, the units are sent back (the rollback locks the pair again for a window and
  uses the budget of the tick it happens in, but is not judged itself). Missing telemetry at
  either end of the window gives no evidence, and the shift is kept;
- a proposal outside the action space is an error of the caller, never an index.

**Actions are plans.** A tick's action asks each module for a change: per module ``m`` and
kind ``r`` a signed number of units, one of ``-amount_levels[K-1] .. -amount_levels[0], 0,
amount_levels[0] .. amount_levels[K-1]`` (a *level*, ``2K + 1`` of them). The guard
*matches* the requests into shifts, kind by kind: modules asking for units (takers) by
decreasing request, modules offering units (givers) by decreasing offer, ties broken by
observed goal attainment (the taker serving worst and the giver serving best first, then the
lower index); the i-th taker is paired with the next giver that can still give; each pair
moves ``min(take, offer, max_units_per_shift, budget left, spare above the floor, room under
the share cap)`` units. The locks of a shift apply to the rest of the plan: a module takes
part in at most one shift per tick, whatever the kind, and the shifts share the tick's
budget. Requests nobody matches are simply not executed.

The **single-shift** mode (``action.mode: shift``) is the same implementation with another
action: ``(src, dst, level)``, ``level = kind * K + k``, asks ``src`` for
``amount_levels[k]`` units of ``kind`` and ``dst`` to take them; ``src == dst`` is the
no-op. It becomes the two-module plan and is matched like any plan, so a single shift is
clipped to the limits exactly as a plan's shift is; one that cannot move a unit is
*invalid* and moves nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numba
import numpy as np

from shift_rl.arraystate import load_arrays, save_arrays
from shift_rl.scenario import ScenarioParams

NOOP, OK, CLIPPED, INVALID = 0, 1, 2, -1
"""Status of a tick's plan after :meth:`SafetyGuard.plan`, against what it asked for on both
sides (per kind the smaller of the units requested and the units offered): nothing; all of
it moved; some of it (cut to the limits, or pairs the locks or budget stopped); none."""
PLAN, SHIFT = "plan", "shift"
"""The action modes (``action.mode`` of a scenario)."""
_NO_BASELINE = np.zeros(0)
_NO_EXCLUDE = np.zeros((0, 0), dtype=bool)


@dataclass(frozen=True)
class GuardSettings:
    floor: np.ndarray  # (M, R) int64
    share_cap: np.ndarray  # (R,) int64
    amount_levels: np.ndarray  # (K,) int64
    value: np.ndarray  # (M,) float, weights of goal attainment
    max_units_per_shift: int
    max_units_per_tick: int
    stabilization_ticks: int
    rollback_threshold: float
    mode: str = PLAN  # PLAN or SHIFT: the action's form (module docstring)

    @classmethod
    def from_params(cls, p: ScenarioParams) -> GuardSettings:
        """The scenario's rails. The stabilization window lasts at least ``warmup_ticks + 1``
        ticks: a shift is only judged (and rolled back) once its units serve at the target."""
        s = p.config.safety
        return cls(
            floor=p.floor,
            share_cap=p.share_cap,
            amount_levels=p.amount_levels,
            value=p.value,
            max_units_per_shift=s.max_units_per_shift,
            max_units_per_tick=s.max_units_per_tick,
            stabilization_ticks=max(s.stabilization_ticks, p.warmup_ticks + 1),
            rollback_threshold=s.rollback_threshold,
            mode=p.config.action.mode,
        )

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values, for the exported policy's record of the rails it was made for."""
        return {
            f.name: getattr(self, f.name).tolist()
            if isinstance(getattr(self, f.name), np.ndarray)
            else getattr(self, f.name)
            for f in fields(self)
        }


@numba.njit(cache=True, inline="always")
def pair_attainment(value, att_s, att_d, s, d):  # pragma: no cover - compiled
    """Value-weighted goal attainment of a shift's two modules: what a judgement compares."""
    return (value[s] * att_s + value[d] * att_d) / (value[s] + value[d])


@numba.njit(cache=True)
def _budget(b, tick, budget_tick, used, max_per_tick, r):  # pragma: no cover - compiled
    return max_per_tick if budget_tick[b] != tick[b] else max_per_tick - used[b, r]


@numba.njit(cache=True)
def _mask(
    tick, alloc, incoming, lock_until, budget_tick, used, floor, cap, levels, per_tick, out
):  # pragma: no cover
    n_env, n_mod, n_kind = alloc.shape
    n_lvl = levels.shape[0]
    out[:] = False
    for b in range(n_env):
        any_give = False
        for m in range(n_mod):
            if lock_until[b, m] > tick[b]:
                continue
            give = False
            recv = False
            for r in range(n_kind):
                spare = alloc[b, m, r] - floor[m, r]
                if spare >= 1 and _budget(b, tick, budget_tick, used, per_tick, r) >= 1:
                    give = True
                    for k in range(n_lvl):
                        if k == 0 or levels[k] <= spare:
                            out[b, 2 * n_mod + r * n_lvl + k] = True
                if cap[r] - alloc[b, m, r] - incoming[b, m, r] >= 1:
                    recv = True
            out[b, m] = give
            out[b, n_mod + m] = give or recv
            any_give = any_give or give
        if not any_give:  # only the no-op (0, 0, 0) remains
            for j in range(out.shape[1]):
                out[b, j] = False
            out[b, 0] = True
            out[b, n_mod] = True
            out[b, 2 * n_mod] = True


@numba.njit(cache=True)
def _plan_mask(
    tick, alloc, incoming, lock_until, budget_tick, used, floor, cap, levels, per_tick, out
):  # pragma: no cover - compiled
    """Plan mode: per (module, kind) the levels it may ask for (layout in SafetyGuard.mask)."""
    n_env, n_mod, n_kind = alloc.shape
    n_lvl = levels.shape[0]
    width = 2 * n_lvl + 1
    out[:] = False
    for b in range(n_env):
        for m in range(n_mod):
            free = lock_until[b, m] <= tick[b]
            for r in range(n_kind):
                base = (m * n_kind + r) * width
                out[b, base + n_lvl] = True  # no change: always allowed
                if not free or _budget(b, tick, budget_tick, used, per_tick, r) < 1:
                    continue
                spare = alloc[b, m, r] - floor[m, r]
                room = cap[r] - alloc[b, m, r] - incoming[b, m, r]
                for k in range(n_lvl):
                    if spare >= 1 and (k == 0 or levels[k] <= spare):
                        out[b, base + n_lvl - 1 - k] = True
                    if room >= 1 and (k == 0 or levels[k] <= room):
                        out[b, base + n_lvl + 1 + k] = True


@numba.njit(cache=True)
def _requests(actions, levels, n_mod, n_kind, shift_mode, req):  # pragma: no cover - compiled
    """Signed units asked per (env, module, kind), from plan or single-shift actions."""
    n_lvl = levels.shape[0]
    req[:] = 0
    for b in range(actions.shape[0]):
        if shift_mode:
            s, d, a = actions[b, 0], actions[b, 1], actions[b, 2]
            if s != d:
                r, k = a // n_lvl, a % n_lvl
                req[b, s, r] = -levels[k]
                req[b, d, r] = levels[k]
            continue
        for m in range(n_mod):
            for r in range(n_kind):
                j = actions[b, m * n_kind + r] - n_lvl
                if j > 0:
                    req[b, m, r] = levels[j - 1]
                elif j < 0:
                    req[b, m, r] = -levels[-j - 1]


@numba.njit(cache=True)
def _match(
    tick,
    req,
    attainment,
    exclude,
    alloc,
    incoming,
    lock_until,
    budget_tick,
    used,
    floor,
    cap,
    per_shift,
    per_tick,
    out_env,
    out_src,
    out_dst,
    out_kind,
    out_units,
    status,
    busy,
    keys,
    idx,
    takers,
    givers,
    sizes,
):  # pragma: no cover - compiled
    """Requests -> shifts (module docstring); returns the number of shifts written. The last
    six arrays are scratch space of M entries."""
    n_env, n_mod, n_kind = req.shape
    n = 0
    for b in range(n_env):
        asked = 0
        moved = 0
        for m in range(n_mod):
            busy[m] = lock_until[b, m] > tick[b] or (exclude.shape[0] > 0 and exclude[b, m])
        for r in range(n_kind):
            take_sum = 0
            give_sum = 0
            for m in range(n_mod):
                q = req[b, m, r]
                if q > 0:
                    take_sum += q
                elif q < 0:
                    give_sum -= q
            asked += min(take_sum, give_sum)  # what both sides asked for: matchable
            if take_sum == 0 or give_sum == 0:
                continue
            budget = _budget(b, tick, budget_tick, used, per_tick, r)
            # Order: larger requests first; ties: worse (taker) / better (giver) attainment,
            # then the lower index: a stable sort by attainment, then a stable sort by size
            # (exact, lexicographic). Missing telemetry counts as serving fully / not at all.
            for side in range(2):
                c = 0
                for m in range(n_mod):
                    q = req[b, m, r] if side == 0 else -req[b, m, r]
                    if q > 0 and not busy[m]:
                        att = attainment[b, m]
                        if att != att:  # NaN: no telemetry
                            att = 1.0 if side == 0 else 0.0
                        att = min(max(att, 0.0), 1.0)
                        keys[c] = att if side == 0 else -att
                        idx[c] = m
                        c += 1
                by_att = np.argsort(keys[:c], kind="mergesort")
                for i in range(c):
                    m = idx[by_att[i]]
                    sizes[i] = -req[b, m, r] if side == 0 else req[b, m, r]
                by_size = np.argsort(sizes[:c], kind="mergesort")
                dest = takers if side == 0 else givers
                for i in range(c):
                    dest[i] = idx[by_att[by_size[i]]]
                if side == 0:
                    n_take = c
                else:
                    n_give = c
            i = 0
            j = 0
            while i < n_take and j < n_give and budget > 0:
                t, g = takers[i], givers[j]
                room = cap[r] - alloc[b, t, r] - incoming[b, t, r]
                spare = alloc[b, g, r] - floor[g, r]
                if busy[t] or room <= 0:
                    i += 1
                    continue
                if busy[g] or spare <= 0:
                    j += 1
                    continue
                u = min(req[b, t, r], -req[b, g, r], per_shift, budget, spare, room)
                out_env[n], out_src[n], out_dst[n], out_kind[n], out_units[n] = b, g, t, r, u
                n += 1
                moved += u
                budget -= u
                busy[t] = True
                busy[g] = True
                i += 1
                j += 1
        if asked == 0:
            status[b] = 0
        elif moved == 0:
            status[b] = -1
        elif moved < asked:
            status[b] = 2
        else:
            status[b] = 1
    return n


@numba.njit(cache=True)
def _register(
    tick,
    env,
    src,
    dst,
    kind,
    units,
    attainment,
    value,
    given,
    window,
    lock_until,
    partner,
    is_src,
    p_kind,
    p_units,
    judge_at,
    baseline,
    budget_tick,
    used,
):  # pragma: no cover
    for i in range(env.shape[0]):
        b, s, d, u = env[i], src[i], dst[i], units[i]
        if u <= 0 or s == d:
            continue
        if budget_tick[b] != tick[b]:
            budget_tick[b] = tick[b]
            used[b, :] = 0
        used[b, kind[i]] += u
        if given.shape[0] > 0:  # a baseline recorded at the shift (a journal's)
            pair = given[i]
        else:
            pair = pair_attainment(value, attainment[b, s], attainment[b, d], s, d)
        for m in (s, d):
            lock_until[b, m] = tick[b] + window
            p_kind[b, m] = kind[i]
            p_units[b, m] = u
            judge_at[b, m] = tick[b] + window
            baseline[b, m] = pair
        partner[b, s], partner[b, d] = d, s
        is_src[b, s], is_src[b, d] = True, False


@numba.njit(cache=True)
def _judge(
    tick,
    attainment,
    alloc,
    floor,
    value,
    threshold,
    window,
    lock_until,
    partner,
    is_src,
    p_kind,
    p_units,
    judge_at,
    baseline,
    budget_tick,
    used,
    out_env,
    out_src,
    out_dst,
    out_kind,
    out_units,
):  # pragma: no cover - compiled
    n = 0
    for b in range(partner.shape[0]):
        for s in range(partner.shape[1]):
            d = partner[b, s]
            if d < 0 or not is_src[b, s] or judge_at[b, s] > tick[b]:
                continue
            now = pair_attainment(value, attainment[b, s], attainment[b, d], s, d)
            r = p_kind[b, s]
            back = min(p_units[b, s], alloc[b, d, r] - floor[d, r])
            partner[b, s] = -1
            partner[b, d] = -1
            # NaN on either side compares False: no evidence, the shift is kept.
            if baseline[b, s] - now > threshold and back > 0:
                out_env[n], out_src[n], out_dst[n], out_kind[n], out_units[n] = b, d, s, r, back
                n += 1
                # A rollback is a shift of this tick: it uses the tick's budget too.
                if budget_tick[b] != tick[b]:
                    budget_tick[b] = tick[b]
                    used[b, :] = 0
                used[b, r] += back
                lock_until[b, s] = tick[b] + window
                lock_until[b, d] = tick[b] + window
    return n


class SafetyGuard:
    """Limits, floors, stabilization locks and rollback judgement for a batch of planes."""

    def __init__(self, settings: GuardSettings, num_envs: int = 1) -> None:
        self.settings = s = settings
        m, r = s.floor.shape
        self.num_envs, self.num_modules, self.num_kinds = num_envs, m, r
        self.num_levels = int(s.amount_levels.shape[0])
        self.lock_until = np.zeros((num_envs, m), dtype=np.int64)
        self.partner = np.full((num_envs, m), -1, dtype=np.int64)
        self.is_src = np.zeros((num_envs, m), dtype=bool)
        self.kind = np.zeros((num_envs, m), dtype=np.int64)
        self.units = np.zeros((num_envs, m), dtype=np.int64)
        self.judge_at = np.zeros((num_envs, m), dtype=np.int64)
        self.baseline = np.zeros((num_envs, m))
        self.budget_tick = np.full(num_envs, -1, dtype=np.int64)
        self.used = np.zeros((num_envs, r), dtype=np.int64)
        cap = m * r * (2 * self.num_levels + 1) if s.mode == PLAN else m + m + r * self.num_levels
        self._mask = np.zeros((num_envs, cap), dtype=bool)
        self._rb = [np.zeros(num_envs * m, dtype=np.int64) for _ in range(5)]
        self._req = np.zeros((num_envs, m, r), dtype=np.int64)
        self._plan = [np.zeros(num_envs * max(1, m // 2), dtype=np.int64) for _ in range(5)]
        self._status = np.zeros(num_envs, dtype=np.int64)
        self._scratch = (np.zeros(m, dtype=np.bool_), np.zeros(m),
                         *(np.zeros(m, dtype=np.int64) for _ in range(3)), np.zeros(m))  # fmt: skip

    @classmethod
    def from_params(cls, params: ScenarioParams, num_envs: int = 1) -> SafetyGuard:
        return cls(GuardSettings.from_params(params), num_envs)

    @property
    def plan_mode(self) -> bool:
        return self.settings.mode == PLAN

    @property
    def action_nvec(self) -> list[int]:
        """Sizes of the MultiDiscrete action: per (module, kind), module-major, one of
        ``2K + 1`` levels (plan mode); or (source, target, kind x amount level)."""
        if self.plan_mode:
            return [2 * self.num_levels + 1] * (self.num_modules * self.num_kinds)
        return [self.num_modules, self.num_modules, self.num_kinds * self.num_levels]

    @property
    def noop_action(self) -> np.ndarray:
        """The action that asks for nothing: every module at level ``K`` (no change), or
        ``(0, 0, 0)``."""
        if self.plan_mode:
            return np.full(self.num_modules * self.num_kinds, self.num_levels, dtype=np.int64)
        return np.zeros(3, dtype=np.int64)

    def level_units(self) -> np.ndarray:
        """(2K + 1,) signed units of each plan level: ``-a[K-1] .. -a[0], 0, a[0] .. a[K-1]``."""
        a = self.settings.amount_levels
        return np.concatenate((-a[::-1], [0], a)).astype(np.int64)

    def reset(self, rows: np.ndarray | None = None) -> None:
        sel = slice(None) if rows is None else rows
        self.lock_until[sel] = 0
        self.partner[sel] = -1
        self.is_src[sel] = False
        self.budget_tick[sel] = -1
        self.used[sel] = 0

    def mask(self, tick: np.ndarray, alloc: np.ndarray, incoming: np.ndarray) -> np.ndarray:
        """(B, sum(nvec)) action masks, concatenated per action dimension: the layout
        MaskablePPO expects. A buffer the next call overwrites.

        Plan mode: for module ``m`` and kind ``r``, entries ``(m * R + r) * (2K + 1) + j``
        for the levels of :meth:`level_units`. No change is always allowed; a locked module
        (or a kind whose tick budget is spent) may ask for nothing else; otherwise it may
        offer a level up to its spare units above the floor and ask for one up to its room
        under the share cap (the smallest level whenever it has one unit of either).

        Single-shift mode: sources are unlocked modules above their floor; targets those plus
        unlocked modules below the share cap (a source doubles as a target so the no-op
        ``src == dst`` stays available); amounts: levels some source can give. With no
        possible source, only the no-op ``(0, 0, 0)`` is left. Per dimension, so a masked
        pair can still be infeasible jointly: it then moves nothing (invalid).
        """
        s = self.settings
        kernel = _plan_mask if self.plan_mode else _mask
        kernel(tick, alloc, incoming, self.lock_until, self.budget_tick, self.used, s.floor,
               s.share_cap, s.amount_levels, s.max_units_per_tick, self._mask)  # fmt: skip
        return self._mask

    def requests(self, actions: np.ndarray) -> np.ndarray:
        """(B, M, R) signed units an action batch asks of each module (see the module
        docstring); actions must be inside the action space (the env checks)."""
        a = np.asarray(actions, dtype=np.int64)
        req = (
            self._req
            if a.shape[0] == self.num_envs
            else np.zeros((a.shape[0], self.num_modules, self.num_kinds), dtype=np.int64)
        )
        _requests(a, self.settings.amount_levels, self.num_modules, self.num_kinds,
                  not self.plan_mode, req)  # fmt: skip
        return req

    def plan(
        self,
        tick: np.ndarray,
        actions: np.ndarray,
        alloc: np.ndarray,
        incoming: np.ndarray,
        attainment: np.ndarray,
        exclude: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The feasible shifts of an action batch, in execution order:
        ``(env, src, dst, kind, units, status)``, ``status`` (B,) one of ``NOOP``, ``OK``,
        ``CLIPPED``, ``INVALID`` per plane. ``attainment`` (B, M) breaks ties of the
        matching; modules in ``exclude`` (B, M) take part in no shift this tick (a
        controller's modules without telemetry). Nothing is registered (:meth:`register`).
        The arrays are views reused by the next call: copy what you keep.
        """
        return self.match(tick, self.requests(actions), alloc, incoming, attainment, exclude)

    def match(
        self,
        tick: np.ndarray,
        requests: np.ndarray,
        alloc: np.ndarray,
        incoming: np.ndarray,
        attainment: np.ndarray,
        exclude: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`plan` for (B, M, R) signed requests in units. The arrays are views reused
        by the next call: copy what you keep."""
        s = self.settings
        out, status = self._plan, self._status
        if requests.shape[0] != self.num_envs:
            raise ValueError(f"requests for {requests.shape[0]} planes; the guard has "
                             f"{self.num_envs}")  # fmt: skip
        ex = _NO_EXCLUDE if exclude is None else np.asarray(exclude, dtype=bool)
        n = _match(tick, np.asarray(requests, dtype=np.int64), attainment, ex, alloc, incoming,
                   self.lock_until, self.budget_tick, self.used, s.floor, s.share_cap,
                   s.max_units_per_shift, s.max_units_per_tick, *out, status,
                   *self._scratch)  # fmt: skip
        return out[0][:n], out[1][:n], out[2][:n], out[3][:n], out[4][:n], status

    def pair_attainment(self, attainment: np.ndarray, env: int, src: int, dst: int) -> float:
        """Value-weighted attainment of a shift's pair: the baseline a judgement compares
        with at the end of the window (NaN when either side's telemetry is missing)."""
        return float(pair_attainment(self.settings.value, attainment[env, src],
                                     attainment[env, dst], src, dst))  # fmt: skip

    def register(
        self,
        tick: np.ndarray,
        env: np.ndarray,
        src: np.ndarray,
        dst: np.ndarray,
        kind: np.ndarray,
        units: np.ndarray,
        attainment: np.ndarray,
        baseline: np.ndarray | None = None,
    ) -> None:
        """Record executed shifts (parallel arrays): lock both modules, charge the tick budget,
        open a judgement against the pair's attainment in ``attainment`` (B, M) at the tick
        of the shift, or against ``baseline`` (one per shift: what a journal recorded)."""
        s = self.settings
        given = _NO_BASELINE if baseline is None else np.asarray(baseline, dtype=np.float64)
        _register(tick, env, src, dst, kind, units, attainment, s.value, given,
                  s.stabilization_ticks, self.lock_until, self.partner, self.is_src, self.kind,
                  self.units, self.judge_at, self.baseline, self.budget_tick,
                  self.used)  # fmt: skip

    def relock(self, tick: np.ndarray, env: int, src: int, dst: int) -> None:
        """Lock a rolled-back pair for a window with nothing pending, as :meth:`judge` leaves
        it: for a rollback replayed from a journal after a restart."""
        for m in (src, dst):
            self.lock_until[env, m] = tick[env] + self.settings.stabilization_ticks
            self.partner[env, m] = -1

    STATE = ("lock_until", "partner", "is_src", "kind", "units", "judge_at", "baseline",
             "budget_tick", "used")  # fmt: skip
    """The arrays that make up the guard's state (see :mod:`shift_rl.arraystate`)."""

    def state(self, prefix: str = "guard.") -> dict[str, np.ndarray]:
        return save_arrays(self, self.STATE, prefix)

    def load_state(self, record: dict[str, np.ndarray], prefix: str = "guard.") -> None:
        load_arrays(self, self.STATE, record, prefix, owner="guard")

    def judge(
        self, tick: np.ndarray, attainment: np.ndarray, alloc: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Close due judgements; returns rollbacks to execute: (env, src, dst, kind, units).

        The arrays are views reused by the next call: copy what you keep."""
        s = self.settings
        n = _judge(tick, attainment, alloc, s.floor, s.value, s.rollback_threshold,
                   s.stabilization_ticks, self.lock_until, self.partner, self.is_src, self.kind,
                   self.units, self.judge_at, self.baseline, self.budget_tick, self.used,
                   *self._rb)  # fmt: skip
        rb = self._rb
        return rb[0][:n], rb[1][:n], rb[2][:n], rb[3][:n], rb[4][:n]

    def lock_remaining(self, tick: np.ndarray) -> np.ndarray:
        """(B, M) share of the stabilization window still to run, in [0, 1]."""
        left = np.maximum(self.lock_until - tick[:, None], 0)
        return left / self.settings.stabilization_ticks
