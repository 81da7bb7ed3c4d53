"""The forecaster protocol and the shared residual-spread bookkeeping."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Forecaster(Protocol):
    """Incremental demand forecaster over a batch of environments and their modules."""

    name: str

    def reset(self, rows: np.ndarray | None = None) -> None:
        """Forget the history of the given env rows (all when ``None``)."""

    def update(self, demand: np.ndarray) -> None:
        """Take the demand of the tick just observed, shape ``(num_envs, num_modules)``."""

    def predict(self, horizon: int) -> tuple[np.ndarray, np.ndarray]:
        """Mean and spread ``horizon`` ticks ahead, each ``(num_envs, num_modules)``."""


def make_forecaster(name: str, num_envs: int, num_modules: int, **params: Any) -> Forecaster:
    """Build a registered forecaster by name, with a clear error for unknown names/params."""
    from shift_rl.forecast import FORECASTERS

    if name not in FORECASTERS:
        raise ValueError(f"unknown forecaster {name!r}; allowed: {sorted(FORECASTERS)}")
    try:
        return FORECASTERS[name](num_envs, num_modules, **params)
    except TypeError as err:
        raise ValueError(f"forecaster {name!r}: bad parameters {params}: {err}") from None
