"""A backend behind the telemetry boundary: what it reports is validated before use.

``ValidatedBackend(backend)`` is the backend itself for moves and time, but its
``telemetry()`` goes through :func:`shift_rl.telemetry.validate_telemetry` (unusable module
metrics become *missing* for that tick and are counted; wrong shapes, types or allocations
raise :class:`~shift_rl.telemetry.TelemetryError`, which the controller handles as any
backend failure) and its ``history()`` through :func:`~shift_rl.telemetry.validate_history`.
Nothing non-finite, negative or out of range reaches reputation or the forecaster.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shift_rl.telemetry import (
    Telemetry,
    TelemetryError,
    TelemetryReport,
    validate_history,
    validate_telemetry,
)


class ValidatedBackend:
    """Wraps a :class:`~shift_rl.controller.ResourceBackend`; see the module docstring.

    ``rejected`` counts, over the backend's life, unusable values by reason (as in
    :attr:`TelemetryReport.reasons`) plus ``"tick refused"`` for telemetry refused whole;
    ``last_report`` is the report of the last ``telemetry()`` call (``None`` if refused).
    """

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.params = backend.params
        self.rejected: dict[str, int] = {}
        self.last_report: TelemetryReport | None = None

    def _count(self, reason: str, n: int = 1) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + n

    def telemetry(self) -> Telemetry:
        p = self.params
        self.last_report = None
        try:
            tel, report = validate_telemetry(
                self.backend.telemetry(), p.num_modules, p.num_resources
            )
        except TelemetryError:
            self._count("tick refused")
            raise
        for reason, n in report.reasons.items():
            self._count(reason, n)
        self.last_report = report
        return tel

    def history(self) -> np.ndarray:
        rows, n = validate_history(self.backend.history(), self.params.num_modules)
        if n:
            self._count("history values", n)
        return rows

    def move(self, src: int, dst: int, kind: int, units: int) -> int:
        return self.backend.move(src, dst, kind, units)

    def advance(self) -> None:
        self.backend.advance()

    def __getattr__(self, name: str) -> Any:  # done, close, sim, ... of the real backend
        if name == "backend":
            raise AttributeError(name)
        return getattr(self.backend, name)
