"""ShiftController: the seed's periodic loop, with the env's safety rails, in production.

Every interval (:meth:`ShiftController.tick`):

1. decide on the current observation: the policy proposes an action (a plan: one requested
   change per module and kind; or a single shift in ``action.mode: shift``), the
   SafetyGuard matches it into an ordered list of feasible shifts;
2. apply (mode ``active``): for each shift of the plan, in order, journal its intent, move
   through the backend, journal it as applied, register it with the guard (one write-ahead
   intent per shift, each judged against its pair's attainment at the tick of the plan); in
   mode ``shadow`` log the plan that would have moved, next to ``potential``'s, and move
   nothing;
3. let the interval pass (``backend.advance``), read telemetry, judge shifts whose
   stabilization window ended and roll back the ones that hurt, update reputation and the
   forecaster, and build the next observation with the env's own builder;
4. append an audit record and save the state atomically.

It is the control-plane core of :mod:`shift_rl.core` (the very object the env's batch steps,
with one plane) plus a backend plus the journal: the env's tick in the same order, so with a
:class:`SimulatedBackend` and the same seed the controller reproduces the env's returns
exactly. Its state is the core's record (:meth:`~shift_rl.core.ControlCore.state`) and the
controller's clock and journal position, saved atomically every tick.

Safe behaviour, never a crash of the loop:

- the policy raises, or returns an action that is not finite or outside the action space:
  the tuned ``potential`` decides this tick instead (``fallback`` in the audit log);
- modules whose telemetry is missing take part in no shift this tick: the guard matches the
  rest of the plan around them (``excluded`` in the audit log);
- the backend fails (telemetry or move): hold, and retry after a back-off of 1, 2, 4 ...
  up to 32 intervals; a move failing mid-plan ends the plan there (the shifts after it are
  not executed); an interrupted move is resolved from the backend's allocation;
- kill switch: while the file ``<state_dir>/HOLD`` exists (or after ``hold()``), nothing
  moves (rollbacks included; judgements wait), while telemetry, forecasts and reputation
  keep updating.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from shift_rl.agents import Policy, make_policy
from shift_rl.controller.backend import BackendStateError, ResourceBackend
from shift_rl.controller.journal import Journal, JsonLines
from shift_rl.controller.statedir import StateDir, state_specs
from shift_rl.controller.validated import ValidatedBackend
from shift_rl.core import ControlCore
from shift_rl.safety import CLIPPED, INVALID, OK
from shift_rl.telemetry import Telemetry

logger = logging.getLogger(__name__)

Mode = Literal["active", "shadow"]
MAX_BACKOFF = 32


class Clock(Protocol):
    def now(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Wall-clock time."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class Crash(BaseException):
    """Raised by test hooks to kill the controller between two journal steps."""


@dataclass
class TickRecord:
    """What one interval did (also the audit log's record)."""

    tick: int
    mode: str
    held: str | None = None
    proposal: list[int] | None = None  # the raw action (the plan's levels), as proposed
    source: str = "policy"
    # executed [src, dst, kind, units], in plan order (shadow: the plan that would move)
    shifts: list[list[int]] = field(default_factory=list)
    status: str = "noop"  # noop / ok / clipped / invalid (the plan's), shadow, failed, held
    excluded: list[int] = field(default_factory=list)  # modules without telemetry: no shift
    shadow_potential: list[int] | None = None  # shadow: potential's raw action ...
    shadow_potential_shifts: list[list[int]] | None = None  # ... and the shifts it gives
    rollbacks: list[list[int]] = field(default_factory=list)
    goal_attainment: float | None = None
    reward: float | None = None

    @property
    def units(self) -> int:
        """Units of the plan's shifts (executed, or that would move in shadow mode)."""
        return sum(s[3] for s in self.shifts)


class ShiftController:
    """Runs a policy against a backend through the env's control-plane core."""

    def __init__(
        self,
        policy: Policy,
        backend: ResourceBackend,
        interval: float = 60.0,
        *,
        mode: Mode = "active",
        state_dir: str | Path | None = None,
        clock: Clock | None = None,
        hook: Any = None,
    ) -> None:
        if mode not in ("active", "shadow"):
            raise ValueError(f"mode must be 'active' or 'shadow', got {mode!r}")
        if not (math.isfinite(interval) and interval >= 0):
            raise ValueError(f"interval must be a finite number >= 0 seconds, got {interval}")
        self.policy, self.backend = policy, ValidatedBackend(backend)
        self.params = p = backend.params
        self.core = ControlCore(p, 1)
        space = self.core.builder.space
        shape = getattr(policy, "observation_shape", None)
        if shape is not None and tuple(shape) != space.shape:
            raise ValueError(
                f"policy {getattr(policy, 'name', policy)!r} expects observations of shape "
                f"{tuple(shape)}, the backend's scenario {p.config.name!r} gives "
                f"{space.shape} ({p.num_modules} modules)"
            )
        self.fallback = make_policy("potential", p)
        self.interval, self.mode = interval, mode
        self.clock = clock or SystemClock()
        self.hook = hook or (lambda stage: None)
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.tick_no = int(backend.tick)  # the backend's clock is the episode's
        self.seq = 0
        self.backoff_until = -1
        self.backoff = 1
        self._manual_hold = False
        self._move_failed = False
        self._nvec = np.asarray(self.core.guard.action_nvec, dtype=np.int64)
        self.store: StateDir | None = None
        self.journal: Journal | None = None
        self.audit: JsonLines | None = None
        self.obs: np.ndarray | None = None
        try:
            if self.state_dir is not None:  # locked: a second controller on it fails at once
                self.store = StateDir(self.state_dir, num_modules=p.num_modules,
                                      num_kinds=p.num_resources)  # fmt: skip
                self.journal, self.audit = self.store.journal, self.store.audit
            if not self._recover():
                self._start()
        except BaseException:
            self.close()
            raise

    # -- start and recovery ------------------------------------------------------------------
    def _tel(self) -> Telemetry:
        tel = self.backend.telemetry()
        tel.tick = np.array([self.tick_no], dtype=np.int64)  # the controller's own clock
        return tel

    def _start(self) -> None:
        """Warm the forecaster on the backend's history and build the first observation."""
        history = np.asarray(self.backend.history(), dtype=np.float64)[None]
        self.obs = self.core.start(history, self._tel())[0]
        self._save()

    def _save(self) -> None:
        if self.store is None:
            return
        meta = {"tick": self.tick_no, "seq": self.seq, "fingerprint": self.params.fingerprint()}
        self.store.write_state(meta, self.core.state())
        self.hook("state_saved")

    def _recover(self) -> bool:
        """Reconcile with the backend and the journal; False when there is no saved state.

        Level-triggered, as Kubernetes controllers are: the backend's allocation is the
        truth. Every intent without an outcome is resolved against it (applied when the
        source holds what the intent expected after the move, aborted otherwise) and the
        outcome journaled; moves applied after the saved state are registered with the core
        again (locks, budget, judgements). The clock is the backend's: intervals the backend
        ran after the saved state are closed now (judgements due, reputation, forecasts).
        Ids continue after the highest in the journal or the state, so they are never reused,
        even when ``state.npz`` was lost.

        A plan's shifts are journaled one intent each, in plan order, and a module takes part
        in at most one shift (or rollback) per tick: each intent's ``expected_src_after`` is
        its source's units at the tick of the plan minus its own shift's, so the check per
        source stays unambiguous when a kill falls between two shifts of one plan (the first
        is applied and registered again, the second resolved from the backend).
        """
        if self.store is None:
            return False
        saved = self.store.read_state(state_specs(self.core.state()))
        meta = saved[0] if saved is not None else None
        self.seq = self.store.last_seq(meta)
        if saved is not None:
            meta, arrays = saved
            if meta["fingerprint"] != self.params.fingerprint():
                raise ValueError(
                    f"{self.state_dir}: saved state belongs to another scenario "
                    f"(fingerprint {meta['fingerprint']} != {self.params.fingerprint()})"
                )
            if self.tick_no < meta["tick"]:
                raise BackendStateError(
                    f"{self.state_dir}: the controller's state is at tick {meta['tick']} but "
                    f"the backend is at tick {self.tick_no}: the backend lost its state (or "
                    "is another one); restore it, or start with an empty state dir"
                )
            self.core.load_state(arrays)
        for e in self.store.journal.open_intents:  # killed between intent and outcome
            held = int(self.backend.telemetry().alloc[0, e["src"], e["kind"]])
            applied = held == e["expected_src_after"]
            self._log("applied" if applied else "aborted", e, recovered=True)
        if meta is None:
            return False
        for e in self.store.journal.records_after(meta["seq"]):
            if e["event"] == "applied":
                self._register(e)
        if self.tick_no > meta["tick"]:  # intervals the controller did not close
            rec = TickRecord(tick=meta["tick"], mode=self.mode, status="held",
                             held="closed after a restart")  # fmt: skip
            tel = self._tel()
            if not self.holding:
                self._judge(tel, rec)
            self.obs = self.core.observe(tel)[0]
            self._audit(rec)
        else:
            self.obs = self.core.obs[0]
        self._save()
        logger.info("recovered at tick %d (journal seq %d)", self.tick_no, self.seq)
        return True

    # -- the loop ----------------------------------------------------------------------------
    def hold(self, on: bool = True) -> None:
        """Manual hold: stop all shifting now (telemetry keeps flowing)."""
        self._manual_hold = on

    @property
    def holding(self) -> bool:
        return self._manual_hold or (
            self.state_dir is not None and (self.state_dir / "HOLD").exists()
        )

    def run(self, ticks: int, on_tick: Any = None) -> list[TickRecord]:
        """Run ``ticks`` intervals (fewer when the backend's episode ends first: a replayed
        or simulated backend has a last tick), sleeping on the clock so each lasts
        ``interval`` s."""
        records = []
        for _ in range(ticks):
            if getattr(self.backend, "done", False):
                break
            start = self.clock.now()
            rec = self.tick()
            records.append(rec)
            if on_tick is not None:
                on_tick(rec)
            self.clock.sleep(self.interval - (self.clock.now() - start))
        return records

    def tick(self) -> TickRecord:
        rec = TickRecord(tick=self.tick_no, mode=self.mode)
        tel = None
        if self.holding:
            rec.held = "kill switch"
        elif self.tick_no < self.backoff_until:
            rec.held = "backend back-off"
        else:
            try:
                tel = self._tel()
                self._decide_and_apply(tel, rec)
            except Exception as err:
                self._backend_failed(rec, err)
        moved_before = rec.units if rec.status != "shadow" else 0
        try:
            self.backend.advance()
        except Exception as err:
            self._backend_failed(rec, err)
            self._audit(rec)
            return rec
        self.tick_no = int(self.backend.tick)
        try:
            tel = self._tel()
        except Exception as err:
            self._backend_failed(rec, err)
            self._audit(rec)
            return rec
        rb_units = 0
        if not self.holding:
            rb_units = self._judge(tel, rec)
        self.obs = self.core.observe(tel)[0]
        rec.goal_attainment = float(self.core.observed_goal(tel)[0])
        rec.reward = float(
            self.core.reward(rec.goal_attainment, moved_before + rb_units, len(rec.rollbacks))[0]
        )
        self._save()
        self._audit(rec)
        return rec

    def _decide_and_apply(self, tel: Telemetry, rec: TickRecord) -> None:
        assert self.obs is not None
        mask = self.core.mask(tel)[0].copy()
        action = self._propose(mask, rec)
        missing = np.asarray(tel.missing, dtype=bool).copy()  # (1, M): in no shift this tick
        rec.excluded = np.flatnonzero(missing[0]).tolist()
        shifts, status = self._plan(tel, action, missing)
        rec.status = {OK: "ok", CLIPPED: "clipped", INVALID: "invalid"}.get(status, "noop")
        if self.mode == "shadow":
            # potential's plan on the same telemetry (its action again when it decided)
            theirs = action if rec.source != "policy" else self.fallback.act(self.obs, mask)
            rec.shadow_potential = np.asarray(theirs).tolist()
            rec.shadow_potential_shifts = self._plan(tel, theirs, missing)[0]
            if shifts:
                rec.shifts, rec.status = shifts, "shadow"
            return
        # Every shift's source units and judgement baseline as they are at the tick of the
        # plan, before any of its moves: a module takes part in at most one shift of a plan,
        # so each intent's expected source units account for its own shift alone.
        before = [
            (int(tel.alloc[0, s, k]), float(self.core.pair_attainment(tel, 0, s, d)))
            for s, d, k, _ in shifts
        ]
        for (s, d, k, u), (src_units, pair) in zip(shifts, before, strict=True):
            entry = self._move("shift", s, d, k, u, src_units, pair)
            if entry is not None:
                rec.shifts.append([s, d, k, int(entry["units"])])
            if self._move_failed:  # the rest of the plan is not executed; back off
                if entry is not None:  # found applied after the error: back off all the same
                    self._arm_backoff()
                rec.status = "failed"
                return

    def _plan(
        self, tel: Telemetry, action: np.ndarray, exclude: np.ndarray
    ) -> tuple[list[list[int]], int]:
        """The guard's shifts for one action, ``[src, dst, kind, units]`` in execution order
        (copied: the guard reuses its arrays), and the plan's status."""
        a = np.asarray(action, dtype=np.int64)[None]
        _, src, dst, kind, units, status = self.core.plan(tel, a, exclude=exclude)
        rows = np.stack((src, dst, kind, units), axis=1)[units > 0]
        shifts = rows.tolist()
        modules = [m for sh in shifts for m in sh[:2]]
        if len(modules) != len(set(modules)):  # the guard's rule; recovery relies on it
            raise RuntimeError(f"the guard's plan {shifts} uses a module twice")
        return shifts, int(status[0])

    def _propose(self, mask: np.ndarray, rec: TickRecord) -> np.ndarray:
        assert self.obs is not None
        try:
            action = np.asarray(self.policy.act(self.obs, mask))
            if action.shape == self._nvec.shape and action.dtype.kind in "biuf":
                v = action.astype(np.float64)
                if (
                    np.isfinite(v).all() and (v == np.floor(v)).all()
                    and (v >= 0).all() and (v < self._nvec).all()
                ):  # fmt: skip
                    rec.proposal = v.astype(np.int64).tolist()
                    return np.array(rec.proposal, dtype=np.int64)
            rec.source = "fallback: invalid action"
        except Exception as err:
            logger.warning("policy failed (%s): falling back to potential", err)
            rec.source = f"fallback: policy error ({type(err).__name__})"
        action = np.asarray(self.fallback.act(self.obs, mask), dtype=np.int64)
        rec.proposal = action.tolist()
        return action

    def _move(self, reason: str, s: int, d: int, k: int, u: int, src_units: int,
              baseline: float) -> dict | None:  # fmt: skip
        """Journal, move, journal: the write-ahead protocol (see journal.py). Returns the
        applied entry, or None when the move was aborted or cannot be told; ``_move_failed``
        says whether the backend's call failed (even when the move is found applied)."""
        self._move_failed = False
        self.seq += 1
        entry = {
            "seq": self.seq, "id": self.seq, "event": "intent", "reason": reason,
            "tick": self.tick_no, "src": s, "dst": d, "kind": k, "units": u,
            "expected_src_after": src_units - u, "baseline": baseline,
        }  # fmt: skip
        self._journal(entry)
        self.hook("intent")
        try:
            moved = self.backend.move(s, d, k, u)
        except Exception as err:
            logger.warning("backend move failed (%s); checking what happened", err)
            self._move_failed = True
            try:
                held = int(self.backend.telemetry().alloc[0, s, k])
            except Exception:  # cannot tell: the recovery on restart will ask again
                self._arm_backoff()
                return None
            if held != src_units - u:
                self._log("aborted", entry)
                self._arm_backoff()
                return None
            moved = u
        self.hook("moved")
        if moved != u:
            entry = {**entry, "units": moved, "expected_src_after": src_units - moved}
        self._log("applied", entry)
        self.hook("applied")
        self._register(entry)
        self.hook("registered")
        return entry

    def _register(self, e: dict) -> None:
        """Tell the core about a journaled move: a shift opens its judgement against the
        baseline the journal recorded; a rollback locks its pair again."""
        if e["reason"] == "shift":
            self.core.register_journaled(
                e["tick"], 0, e["src"], e["dst"], e["kind"], e["units"], e["baseline"]
            )
        else:
            self.core.relock(np.array([e["tick"]], dtype=np.int64), 0, e["src"], e["dst"])

    def _judge(self, tel: Telemetry, rec: TickRecord) -> int:
        rb_env, rb_src, rb_dst, rb_kind, rb_units = self.core.judge(tel)
        moved = 0
        for s, d, k, u in zip(rb_src.tolist(), rb_dst.tolist(), rb_kind.tolist(),
                              rb_units.tolist(), strict=True):  # fmt: skip
            entry = self._move("rollback", s, d, k, u, int(tel.alloc[0, s, k]), float("nan"))
            if entry is not None:
                rec.rollbacks.append([s, d, k, entry["units"]])
                moved += entry["units"]
        if rb_env.size:  # the observation shows the allocation after the rollbacks (as the env's)
            fresh = self.backend.telemetry()
            tel.alloc[...], tel.incoming[...] = fresh.alloc, fresh.incoming
        return moved

    # -- faults and records -------------------------------------------------------------------
    def _arm_backoff(self) -> None:
        self.backoff_until = self.tick_no + 1 + self.backoff  # skip the next `backoff` ticks
        self.backoff = min(self.backoff * 2, MAX_BACKOFF)

    def _backend_failed(self, rec: TickRecord, err: Exception) -> None:
        logger.warning("backend failed at tick %d: %s; holding", self.tick_no, err)
        rec.held, rec.status = f"backend error: {err}", "held"
        self._arm_backoff()

    def _log(self, event: str, entry: dict, **extra: Any) -> dict:
        self.seq += 1
        out = {**entry, "seq": self.seq, "event": event, **extra}
        self._journal(out)
        return out

    def _journal(self, record: dict) -> None:
        if self.journal is not None:
            self.journal.append(record)

    def _audit(self, rec: TickRecord) -> None:
        if rec.held is None and rec.status not in ("held", "failed"):
            self.backoff = 1
        if self.audit is not None:
            self.audit.append(vars(rec))

    def close(self) -> None:
        """Close the journal and the audit log and release the state dir's lock."""
        if self.store is not None:
            self.store.close()
