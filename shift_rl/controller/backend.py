"""What the controller drives: the ResourceBackend protocol and the simulated backend.

A backend owns the real resources. It lists its modules, reports telemetry (metrics NaN
when missing, allocations always known), moves units between modules and lets one control
interval pass. Every backend runs the same conformance suite (``tests/test_backends.py``).

A backend's allocation is the source of truth, and it outlives the controller: a controller
that restarts reads the backend's state and reconciles with it (level-triggered, as
Kubernetes controllers are). The simulated backend therefore keeps its state in a folder
(``state_dir``), written atomically after every move and every interval, and continues its
episode from there when it is made again; a state that does not fit the scenario and seed, or
that breaks conservation of units, is refused with :class:`BackendStateError`, never reset.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from gymnasium.utils import seeding

from shift_rl.arraystate import StateError, load_arrays, save_arrays
from shift_rl.config import ScenarioConfig, load_scenario
from shift_rl.controller.statefile import STATE_FILE, StateFileError, read_state, write_state
from shift_rl.scenario import ScenarioParams
from shift_rl.seeds import draw_episode_seed
from shift_rl.sim.simulator import Simulator
from shift_rl.telemetry import Telemetry


class BackendError(RuntimeError):
    """A backend operation failed; the controller holds and retries later."""


class BackendStateError(ValueError):
    """A backend's saved state cannot be trusted; the message names the file and the reason."""


def read_backend_state(
    state_dir: Path, identity: dict, what: str, expect: dict | None = None,
    meta_fields: dict[str, str] | None = None,
) -> tuple[dict, dict[str, np.ndarray]] | None:  # fmt: skip
    """A backend's saved state, or None when there is none; :class:`BackendStateError` when it
    cannot be read or belongs to another backend (``identity``: the meta it must carry, e.g.
    scenario fingerprint and seed)."""
    fields = {"backend": "str", "fingerprint": "str", **(meta_fields or {})}
    try:
        saved = read_state(state_dir, expect, meta_fields=fields)
    except StateFileError as err:
        raise BackendStateError(str(err)) from None
    if saved is not None and {k: saved[0].get(k) for k in identity} != identity:
        raise BackendStateError(
            f"{state_dir / STATE_FILE}: the saved {what} ran {saved[0]} but this one is "
            f"{identity}: use the state folder of this scenario, seed and settings"
        )
    return saved


@runtime_checkable
class ResourceBackend(Protocol):
    """The resources a :class:`~shift_rl.controller.ShiftController` shifts."""

    params: ScenarioParams  # the plane's layout: modules, kinds, pool, rails

    def telemetry(self) -> Telemetry:
        """Observed state now, as a batch of one (copy what you keep)."""

    def move(self, src: int, dst: int, kind: int, units: int) -> int:
        """Start moving ``units`` of ``kind`` from ``src`` to ``dst``; returns units moved."""

    def advance(self) -> None:
        """Let one control interval pass (a real backend waits; a simulated one steps)."""

    @property
    def tick(self) -> int:
        """Intervals the backend has run since its episode started (its own clock)."""

    def history(self) -> np.ndarray:
        """Demand seen before the controller started, (ticks, modules), to warm forecasts."""


class SimulatedBackend:
    """The simulator behind the backend protocol (same dynamics as the env).

    ``seed`` reproduces the env's episode: ``ResourceShiftEnv.reset(seed=seed)`` and this
    backend draw the same demand and faults. With ``state_dir``, the backend's state (the
    simulator's pool, transit, faults and last measurement) is saved there atomically after
    every move and interval, and a backend made again on the same folder continues the
    episode where it was (a simulated world does not restart with its controller).
    """

    _SIM_STATE = ("t", "alloc", "transit", "failed", "free", "lost", "truth")
    _TEL_STATE = ("hour", "demand", "utilization", "latency", "error_rate", "attainment",
                  "reported_need", "confidence", "missing", "incoming", "capacity")  # fmt: skip

    def __init__(
        self, scenario: str | ScenarioConfig, seed: int = 0, *,
        state_dir: str | os.PathLike | None = None,
    ) -> None:  # fmt: skip
        self.params = ScenarioParams.from_config(load_scenario(scenario))
        self.sim = Simulator(self.params, 1)
        rng, _ = seeding.np_random(seed)
        self.seed = int(seed)
        self.episode_seed = draw_episode_seed(rng)  # as ResourceShiftEnv.reset(seed=seed)
        self.sim.reset([self.episode_seed])
        self._env = np.zeros(1, dtype=np.int64)
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.resumed = False
        if self.state_dir is not None:
            self.resumed = self._load()
            if not self.resumed:
                self._save()

    # -- durable state ---------------------------------------------------------------------------
    def _meta(self) -> dict:
        return {"backend": "simulated", "fingerprint": self.params.fingerprint(),
                "seed": self.seed}  # fmt: skip

    def _save(self) -> None:
        if self.state_dir is None:
            return
        arrays = {
            **save_arrays(self.sim, self._SIM_STATE, "sim."),
            **save_arrays(self.sim.telemetry(), self._TEL_STATE, "tel."),
        }
        write_state(self.state_dir, self._meta(), arrays)

    def _load(self) -> bool:
        assert self.state_dir is not None
        file = self.state_dir / STATE_FILE
        saved = read_backend_state(self.state_dir, self._meta(), "simulated backend")
        if saved is None:
            return False
        _, arrays = saved
        try:
            load_arrays(self.sim, self._SIM_STATE, arrays, "sim.", owner=str(file))
            load_arrays(self.sim.telemetry(), self._TEL_STATE, arrays, "tel.", owner=str(file))
        except StateError as err:
            raise BackendStateError(str(err)) from None
        sim, p = self.sim, self.params
        held = (sim.alloc.sum(axis=1) + sim.transit.sum(axis=(1, 2)) + sim.failed.sum(axis=(1, 2))
                + sim.free)[0]  # fmt: skip
        t = int(sim.t[0])
        if (
            not np.array_equal(held, p.pool_units)
            or (sim.alloc < 0).any() or (sim.transit < 0).any() or (sim.free < 0).any()
            or not 0 <= t <= p.episode_ticks
        ):  # fmt: skip
            raise BackendStateError(
                f"{file}: the saved state breaks the pool's invariants (units held "
                f"{held.tolist()} of {p.pool_units.tolist()}, tick {t}): refusing to use it"
            )
        return True

    # -- the protocol ------------------------------------------------------------------------------
    @property
    def tick(self) -> int:
        return int(self.sim.t[0])

    def telemetry(self) -> Telemetry:
        return self.sim.telemetry()

    def move(self, src: int, dst: int, kind: int, units: int) -> int:
        """One shift of a plan (several per interval are applied in turn, as the env's plane
        applies a plan). Allowed at the episode's last tick too: the env executes the
        rollbacks judged after its last interval, and so does the controller."""
        if int(self.sim.t[0]) > self.params.episode_ticks:
            raise BackendError("the simulated episode is over")
        a = [np.array([v], dtype=np.int64) for v in (src, dst, kind, units)]
        moved = int(self.sim.shift(self._env, *a)[0])
        self._save()
        return moved

    def advance(self) -> None:
        if self.done:
            raise BackendError("the simulated episode is over")
        self.sim.step()
        self._save()

    def history(self) -> np.ndarray:
        return self.sim.observed_history()[0]

    @property
    def done(self) -> bool:
        return int(self.sim.t[0]) >= self.params.episode_ticks

    def true_goal_attainment(self) -> float:
        """Value-weighted goal attainment as it really is (for evaluation, not control)."""
        return float((self.sim.true_attainment[0] * self.params.value).sum())
