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
- a proposal outside the action space is invalid (a no-op), never an index.

Actions are ``(src, dst, level)`` with ``level = kind * K + k`` choosing ``amount_levels[k]``
units of resource kind ``kind``; ``src == dst`` is the no-op. Proposals are clipped to the
limits; one that cannot move a single unit is *invalid* and becomes a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numba
import numpy as np

from shift_rl.arraystate import load_arrays, save_arrays
from shift_rl.scenario import ScenarioParams

NOOP, OK, CLIPPED, INVALID = 0, 1, 2, -1
"""Status of a proposed shift after :meth:`SafetyGuard.clip`."""
_NO_BASELINE = np.zeros(0)


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
def _clip(
    tick,
    actions,
    alloc,
    incoming,
    lock_until,
    budget_tick,
    used,
    floor,
    cap,
    levels,
    per_shift,
    per_tick,
    src,
    dst,
    kind,
    units,
    status,
):  # pragma: no cover - compiled
    n_lvl = levels.shape[0]
    n_mod, n_kind = alloc.shape[1], alloc.shape[2]
    for b in range(actions.shape[0]):
        s, d, a = actions[b, 0], actions[b, 1], actions[b, 2]
        r, k = a // n_lvl, a % n_lvl
        if s < 0 or s >= n_mod or d < 0 or d >= n_mod or a < 0 or r >= n_kind:
            # Outside the action space: invalid, and never used as an index (numba does not
            # check bounds: a module index M would write past the arrays).
            src[b], dst[b], kind[b], units[b] = 0, 0, 0, 0
            status[b] = -1
            continue
        src[b], dst[b], kind[b], units[b] = s, d, r, 0
        if s == d:
            status[b] = 0
            continue
        if lock_until[b, s] > tick[b] or lock_until[b, d] > tick[b]:
            status[b] = -1
            continue
        u = min(
            levels[k],
            per_shift,
            _budget(b, tick, budget_tick, used, per_tick, r),
            alloc[b, s, r] - floor[s, r],
            cap[r] - alloc[b, d, r] - incoming[b, d, r],
        )
        if u <= 0:
            status[b] = -1
        else:
            units[b] = u
            status[b] = 1 if u == levels[k] else 2


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
        cap = m + m + r * self.num_levels
        self._mask = np.zeros((num_envs, cap), dtype=bool)
        self._rb = [np.zeros(num_envs * m, dtype=np.int64) for _ in range(5)]

    @classmethod
    def from_params(cls, params: ScenarioParams, num_envs: int = 1) -> SafetyGuard:
        return cls(GuardSettings.from_params(params), num_envs)

    @property
    def action_nvec(self) -> list[int]:
        """Sizes of the MultiDiscrete action: (source, target, kind x amount level)."""
        return [self.num_modules, self.num_modules, self.num_kinds * self.num_levels]

    def reset(self, rows: np.ndarray | None = None) -> None:
        sel = slice(None) if rows is None else rows
        self.lock_until[sel] = 0
        self.partner[sel] = -1
        self.is_src[sel] = False
        self.budget_tick[sel] = -1
        self.used[sel] = 0

    def mask(self, tick: np.ndarray, alloc: np.ndarray, incoming: np.ndarray) -> np.ndarray:
        """Per-dimension action masks, concatenated: the layout MaskablePPO expects.

        Sources: unlocked modules above their floor; targets: those plus unlocked modules
        below the share cap (a source doubles as a target so the no-op ``src == dst`` stays
        available); amounts: levels some source can give. With no possible source, only the
        no-op ``(0, 0, 0)`` is left. The masks are per dimension, so a masked pair can still
        be infeasible jointly; :meth:`clip` then turns it into an invalid no-op.
        """
        s = self.settings
        _mask(tick, alloc, incoming, self.lock_until, self.budget_tick, self.used, s.floor,
              s.share_cap, s.amount_levels, s.max_units_per_tick, self._mask)  # fmt: skip
        return self._mask

    def clip(
        self, tick: np.ndarray, actions: np.ndarray, alloc: np.ndarray, incoming: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Feasible shifts for proposed actions (B, 3): (src, dst, kind, units, status)."""
        s = self.settings
        n = actions.shape[0]
        out = [np.zeros(n, dtype=np.int64) for _ in range(5)]
        _clip(tick, np.asarray(actions, dtype=np.int64), alloc, incoming, self.lock_until,
              self.budget_tick, self.used, s.floor, s.share_cap, s.amount_levels,
              s.max_units_per_shift, s.max_units_per_tick, *out)  # fmt: skip
        return out[0], out[1], out[2], out[3], out[4]

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
