"""The runtime controller: a trained (or heuristic) policy driving real resources.

``ShiftController(policy, backend, ...)`` runs the periodic shift loop with the env's own
observation builder, forecaster and SafetyGuard, a write-ahead journal, an audit log, shadow
and active modes and a kill switch. Backends: :class:`SimulatedBackend` (the simulator) and
``CgroupBackend`` (worker processes capped by Linux cgroups; imported lazily).
"""

from __future__ import annotations

from typing import Any

from shift_rl.controller.backend import BackendError, ResourceBackend, SimulatedBackend
from shift_rl.controller.controller import Crash, ShiftController, SystemClock, TickRecord

BACKENDS = ("sim", "cgroup")


def __getattr__(name: str) -> Any:
    if name == "CgroupBackend":  # lazy: only Linux hosts with cgroups need it
        from shift_rl.controller.cgroup import CgroupBackend

        return CgroupBackend
    raise AttributeError(name)


__all__ = [
    "BACKENDS",
    "BackendError",
    "Crash",
    "ResourceBackend",
    "ShiftController",
    "SimulatedBackend",
    "SystemClock",
    "TickRecord",
]
