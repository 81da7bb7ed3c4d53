"""Reputation: how far the control plane trusts each module, from what it has delivered.

``reputation = w * EMA(goal attainment) + (1 - w) * EMA(report accuracy)``, where report
accuracy compares the need a module reported for this tick with the need its observed
demand implies: ``exp(-|log((reported + 1) / (realized + 1))|)`` in (0, 1]. Both EMAs start
at 1 (trust until evidence) and skip ticks whose telemetry is missing.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from shift_rl.arraystate import load_arrays, save_arrays
from shift_rl.telemetry import Telemetry


@numba.njit(cache=True)
def _update(attain, demand, need, missing, servers_per_request, alpha, weight,
            ema_att, ema_acc, prev_need, score):  # pragma: no cover - compiled  # fmt: skip
    for b in range(attain.shape[0]):
        for m in range(attain.shape[1]):
            if not missing[b, m]:
                ema_att[b, m] += alpha * (attain[b, m] - ema_att[b, m])
                realized = demand[b, m] * servers_per_request[m]
                if not math.isnan(prev_need[b, m]):
                    acc = math.exp(-abs(math.log((prev_need[b, m] + 1.0) / (realized + 1.0))))
                    ema_acc[b, m] += alpha * (acc - ema_acc[b, m])
            prev_need[b, m] = need[b, m]
            score[b, m] = weight * ema_att[b, m] + (1.0 - weight) * ema_acc[b, m]


class Reputation:
    """Per-module reputation over a batch of control planes."""

    def __init__(
        self,
        num_envs: int,
        num_modules: int,
        servers_per_request: np.ndarray,
        alpha: float = 0.05,
        attainment_weight: float = 0.7,
    ) -> None:
        self.alpha, self.weight = float(alpha), float(attainment_weight)
        self.servers_per_request = np.ascontiguousarray(servers_per_request, dtype=np.float64)
        shape = (num_envs, num_modules)
        self.attainment = np.ones(shape)
        self.accuracy = np.ones(shape)
        self.prev_need = np.full(shape, np.nan)
        self.score = np.ones(shape)

    def reset(self, rows: np.ndarray | None = None) -> None:
        sel = slice(None) if rows is None else rows
        self.attainment[sel] = 1.0
        self.accuracy[sel] = 1.0
        self.prev_need[sel] = np.nan
        self.score[sel] = 1.0

    def update(self, tel: Telemetry) -> None:
        """Fold in one tick of telemetry (the reports of the previous tick are judged now)."""
        _update(tel.attainment, tel.demand, tel.reported_need, tel.missing,
                self.servers_per_request, self.alpha, self.weight, self.attainment,
                self.accuracy, self.prev_need, self.score)  # fmt: skip

    STATE = ("attainment", "accuracy", "prev_need", "score")
    """The arrays that make up the reputation's state (see :mod:`shift_rl.arraystate`)."""

    def state(self, prefix: str = "reputation.") -> dict[str, np.ndarray]:
        return save_arrays(self, self.STATE, prefix)

    def load_state(self, record: dict[str, np.ndarray], prefix: str = "reputation.") -> None:
        load_arrays(self, self.STATE, record, prefix, owner="reputation")
