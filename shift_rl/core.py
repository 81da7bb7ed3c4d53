"""The control-plane core: everything a tick does between telemetry and resources.

A control plane, simulated or real, does the same thing every interval: it observes its
modules (:class:`~shift_rl.telemetry.Telemetry`), lets a policy propose on an observation,
passes the proposals through the :class:`~shift_rl.safety.SafetyGuard`, moves units on
whatever owns them, and after the interval judges earlier shifts, updates reputation and the
Demand Prediction Engine, builds the next observation and scores the tick. :class:`ControlCore`
is that tick for a batch of ``B`` planes, over telemetry alone; it never touches resources:

- the env's batch (:class:`~shift_rl.plane.PlaneBatch`) is a core plus the simulator;
- the runtime controller (:class:`~shift_rl.controller.ShiftController`) is a core with
  ``B = 1`` plus a backend plus its journal.

So a policy sees in production exactly what it saw in training, the rails are the same, and
each tick feature is written once. The order of one tick, for both::

    tel = <telemetry now>
    env, *shift, status = core.plan(tel, actions)  # the plan -> feasible shifts, in order
    <move the units>                          # simulator or backend
    core.register(tel, env, *shift[:3], moved)  # locks, budget, judgement baselines
    <one interval passes>; tel = <telemetry now>
    rollbacks = core.judge(tel)               # shifts whose window ended and that hurt
    <move the rollbacks back>
    obs = core.observe(tel)                   # reputation, forecaster, observation
    reward = core.reward(core.goal(truth) or core.observed_goal(tel), moved, rollbacks)

The core's state is explicit: :meth:`ControlCore.state` is one record of named arrays
(guard, reputation, forecaster, last forecast and observation, and ``core.version``), and
:meth:`ControlCore.load_state` checks a record before restoring it in place. The controller
saves it every tick; nothing else is needed to continue exactly.

This module and the parts it holds import neither the simulator nor the env.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

import numpy as np

from shift_rl.arraystate import StateError, load_arrays, save_arrays, unexpected_keys
from shift_rl.forecast import Forecaster, make_forecaster
from shift_rl.observation import ObservationBuilder
from shift_rl.reputation import Reputation
from shift_rl.safety import SafetyGuard
from shift_rl.scenario import ScenarioParams
from shift_rl.telemetry import Telemetry

STATE_VERSION = 1
"""Version of :meth:`ControlCore.state`'s record; a record of another version is refused."""
MIN_TRACKED_HORIZONS = 4
"""Forecast horizons whose errors are tracked exactly: at least the warm-up + 1 the
observation asks for, and a few beyond for planners."""

Shifts = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
Plan = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
Num = TypeVar("Num", np.ndarray, float)


class ControlCore:
    """Guard, forecaster, reputation and observation builder for ``num_envs`` planes."""

    def __init__(self, params: ScenarioParams, num_envs: int = 1) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.params = p = params
        self.num_envs = num_envs
        cfg = p.config
        self.guard = SafetyGuard.from_params(p, num_envs)
        self.forecaster: Forecaster = make_forecaster(
            cfg.forecast.model,
            num_envs,
            p.num_modules,
            tick_seconds=p.tick_seconds,  # seasonal models: one day of ticks
            **{"horizons": max(MIN_TRACKED_HORIZONS, p.forecast_horizon), **cfg.forecast.params},
        )
        rc = cfg.reputation
        self.reputation = Reputation(
            num_envs, p.num_modules, p.servers_per_request, rc.alpha, rc.attainment_weight
        )
        self.builder = ObservationBuilder(p, num_envs)
        self._cost_per_unit = cfg.reward.cost_per_unit
        self._cost_per_rollback = cfg.reward.cost_per_rollback
        self._all = np.ones(num_envs, dtype=bool)
        self._index = np.arange(num_envs, dtype=np.int64)
        self.forecast_mean = np.zeros((num_envs, p.num_modules))
        self.forecast_spread = np.zeros((num_envs, p.num_modules))
        self.obs = np.zeros((num_envs, *self.builder.space.shape), dtype=np.float32)

    # -- episodes ----------------------------------------------------------------------------
    def start(
        self, history: np.ndarray, tel: Telemetry, rows: np.ndarray | None = None
    ) -> np.ndarray:
        """Start planes ``rows`` (all when None) afresh: clear guard, reputation and
        forecaster, warm the forecaster on ``history`` (B, H, M) demand seen before the start
        (NaN where it was missing) and on ``tel``'s demand, and build the first observation.

        Rows not started are left exactly as they are. Returns the batch's observations.
        """
        self.guard.reset(rows)
        self.reputation.reset(rows)
        self.forecaster.reset(rows)
        keep = self._all if rows is None else np.isin(self._index, rows)
        for i in range(history.shape[1]):
            self.forecaster.update(np.where(keep[:, None], history[:, i], np.nan), active=keep)
        self.forecaster.update(np.where(keep[:, None], tel.demand, np.nan), active=keep)
        return self._build(tel)

    # -- deciding ------------------------------------------------------------------------------
    def mask(self, tel: Telemetry) -> np.ndarray:
        """(B, sum(nvec)) per-dimension action masks (:meth:`~shift_rl.safety.SafetyGuard.mask`);
        a buffer the next call overwrites."""
        return self.guard.mask(tel.tick, tel.alloc, tel.incoming)

    def plan(self, tel: Telemetry, actions: np.ndarray, exclude: np.ndarray | None = None) -> Plan:
        """The feasible shifts of an action batch (B, n), in execution order:
        ``(env, src, dst, kind, units, status)`` (:meth:`~shift_rl.safety.SafetyGuard.plan`);
        modules in ``exclude`` (B, M) take part in none."""
        return self.guard.plan(tel.tick, actions, tel.alloc, tel.incoming, tel.attainment, exclude)

    def pair_attainment(self, tel: Telemetry, env: int, src: int, dst: int) -> float:
        """A shift's judgement baseline: its pair's value-weighted attainment now."""
        return self.guard.pair_attainment(tel.attainment, env, src, dst)

    def register(
        self, tel: Telemetry, env: np.ndarray, src: np.ndarray, dst: np.ndarray,
        kind: np.ndarray, units: np.ndarray,
    ) -> None:  # fmt: skip
        """Record shifts that moved ``units`` (parallel arrays) at ``tel``'s tick: both
        modules locked, the budget charged, a judgement opened against the pair's attainment
        in ``tel`` (:meth:`pair_attainment`)."""
        self.guard.register(tel.tick, env, src, dst, kind, units, tel.attainment)

    def register_journaled(
        self, tick: int, env: int, src: int, dst: int, kind: int, units: int, baseline: float
    ) -> None:
        """Record one shift replayed from a journal, judged against the baseline it recorded."""
        arr = [np.array([v], dtype=np.int64) for v in (tick, env, src, dst, kind, units)]
        att = np.zeros((self.num_envs, self.params.num_modules))  # unused: baseline given
        self.guard.register(arr[0].repeat(self.num_envs), *arr[1:], att, np.array([baseline]))

    def relock(self, tick: np.ndarray, env: int, src: int, dst: int) -> None:
        """A rollback replayed after a restart: both modules locked, nothing pending."""
        self.guard.relock(tick, env, src, dst)

    # -- after the interval ---------------------------------------------------------------------
    def judge(self, tel: Telemetry) -> Shifts:
        """Rollbacks due now: ``(env, src, dst, kind, units)``, views reused by the next call."""
        return self.guard.judge(tel.tick, tel.attainment, tel.alloc)

    def observe(self, tel: Telemetry) -> np.ndarray:
        """Fold the interval's telemetry into reputation and forecasts; the next observation."""
        self.reputation.update(tel)
        self.forecaster.update(tel.demand)
        return self._build(tel)

    def goal(self, attainment: np.ndarray) -> np.ndarray:
        """(B,) value-weighted goal attainment of (B, M) per-module attainment (the truth, in
        the simulator; see :meth:`observed_goal` for telemetry).

        Row by row, not a matrix product: BLAS may sum differently for another batch size,
        and a plane must not depend on the rest of its batch.
        """
        return (attainment * self.params.value).sum(axis=1)

    def observed_goal(self, tel: Telemetry) -> np.ndarray:
        """:meth:`goal` as telemetry shows it: a module without telemetry (NaN) counts 0."""
        weighted = tel.attainment * self.params.value
        np.copyto(weighted, 0.0, where=np.isnan(weighted))
        return weighted.sum(axis=1)

    def reward(self, goal: Num, units_moved: Num, rollbacks: Num) -> tuple[Num, Num, Num]:
        """``(reward, move_cost, rollback_cost)`` per plane (arrays, or floats for one plane):
        goal attainment minus a cost per unit moved (rollbacks included) and per rollback."""
        move_cost = self._cost_per_unit * units_moved
        rollback_cost = self._cost_per_rollback * rollbacks
        return goal - move_cost - rollback_cost, move_cost, rollback_cost

    def _build(self, tel: Telemetry) -> np.ndarray:
        mean, spread = self.forecaster.predict(self.params.forecast_horizon)
        self.forecast_mean, self.forecast_spread = mean, spread
        rep = self.reputation.score
        self.obs = self.builder.build(tel, mean, spread, rep, self.guard)
        return self.obs

    # -- explicit state --------------------------------------------------------------------------
    _OWN = ("forecast_mean", "forecast_spread", "obs")

    def state(self) -> dict[str, np.ndarray]:
        """The whole state as one record of named arrays (copies), versioned."""
        return {
            "core.version": np.array(STATE_VERSION, dtype=np.int64),
            **save_arrays(self, self._OWN, "core."),
            **self.guard.state("guard."),
            **self.reputation.state("reputation."),
            **self.forecaster.state("forecaster."),  # type: ignore[attr-defined]
        }

    def load_state(self, record: Mapping[str, np.ndarray]) -> None:
        """Restore :meth:`state`; a record of another version or layout raises
        :class:`~shift_rl.arraystate.StateError` before anything changes."""
        version = record.get("core.version")
        if version is None or np.asarray(version).shape != () or int(version) != STATE_VERSION:
            raise StateError(
                f"core state: version {None if version is None else np.asarray(version)!r}; "
                f"expected {STATE_VERSION}"
            )
        extra = unexpected_keys(record, self.state())
        if extra:
            raise StateError(f"core state: unexpected arrays {extra} (another scenario?)")
        # check every part before writing any: load into copies first
        scratch = ControlCore(self.params, self.num_envs)
        scratch._load(record)
        self._load(record)

    def _load(self, record: Mapping[str, np.ndarray]) -> None:
        load_arrays(self, ("forecast_mean", "forecast_spread"), record, "core.", "core")
        self.obs = np.array(self.obs)  # never write into an observation handed out before
        load_arrays(self, ("obs",), record, "core.", "core")
        self.guard.load_state(dict(record), "guard.")
        self.reputation.load_state(dict(record), "reputation.")
        self.forecaster.load_state(record, "forecaster.")  # type: ignore[attr-defined]
