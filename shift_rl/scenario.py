"""A scenario's derived, frozen settings: the arrays every part of a control plane reads.

The simulator's kernels, the SafetyGuard, the observation builder, the control-plane core and
the controller all read a scenario through :class:`ScenarioParams` (per-module and per-kind
constants as numpy arrays, compiled once from a validated :class:`~shift_rl.config.ScenarioConfig`).
It lives outside :mod:`shift_rl.sim` so that the parts a production controller runs do not
depend on the simulator.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from shift_rl.config import ScenarioConfig

FORECAST_HORIZON_MAX = 32
"""Ticks of true future demand generated past an episode's end (for planners and forecasts)."""


_EXOGENOUS_ONLY = ("name", "description", "demand", "faults")
"""Scenario fields only the exogenous draws (or nobody) read: variants may change them."""


def _layout(cfg: ScenarioConfig) -> dict[str, Any]:
    data = cfg.model_dump(mode="json", exclude=set(_EXOGENOUS_ONLY))
    for mod in data["modules"]:
        mod.pop("demand", None)
    # the simulator sizes its pipeline of failed units by this one fault setting
    data["faults.unit_failure.duration_ticks"] = cfg.faults.unit_failure.duration_ticks
    return data


def layout_differences(a: ScenarioConfig, b: ScenarioConfig) -> list[str]:
    """Fields of ``b`` that differ from ``a`` beyond demand and fault settings (empty: one
    batch of planes can play both, drawing each row's demand and faults from its own)."""
    la, lb = _layout(a), _layout(b)
    out = [k for k in la if la[k] != lb.get(k)]
    ma, mb = la["modules"], lb["modules"]
    if ma != mb and len(ma) == len(mb):  # name the modules that differ
        out.remove("modules")
        out += [f"modules[{i}]" for i, (x, y) in enumerate(zip(ma, mb, strict=True)) if x != y]
    return out


@dataclass(frozen=True, eq=False)
class ScenarioParams:
    """Per-module and per-kind constants of one scenario (M modules, R resource kinds)."""

    config: ScenarioConfig
    pool_units: np.ndarray  # (R,) int64
    service_rate: np.ndarray  # (M,) requests / s / server
    slo_seconds: np.ndarray  # (M,)
    value: np.ndarray  # (M,) normalized to sum 1
    units_per_server: np.ndarray  # (M, R)
    floor: np.ndarray  # (M, R) int64
    initial_alloc: np.ndarray  # (M, R) int64
    share_cap: np.ndarray  # (R,) int64: most units one module may hold
    amount_levels: np.ndarray  # (K,) int64
    report_noise: np.ndarray  # (M,)
    claimed_noise: np.ndarray  # (M,) what the module's confidence admits
    tick_seconds: float
    episode_ticks: int
    warmup_ticks: int
    history_ticks: int
    target_utilization: float

    @property
    def num_modules(self) -> int:
        return int(self.service_rate.shape[0])

    @property
    def num_resources(self) -> int:
        return int(self.pool_units.shape[0])

    @property
    def forecast_horizon(self) -> int:
        """Ticks ahead that matter for a shift decided now: warm-up plus one."""
        return self.warmup_ticks + 1

    @property
    def exogenous_ticks(self) -> int:
        """Length of an episode's exogenous arrays: history, episode and future."""
        return self.history_ticks + self.episode_ticks + 1 + FORECAST_HORIZON_MAX

    @cached_property
    def servers_per_request(self) -> np.ndarray:
        """(M,) servers one request per tick needs at the target utilization."""
        return 1.0 / (self.service_rate * self.tick_seconds * self.target_utilization)

    def fingerprint(self) -> str:
        """Stable hash of everything that shapes observations and actions.

        A replayed trace counts by file name, not by where the checkout lies, so the same
        scenario has the same fingerprint on every machine.
        """
        data = self.config.model_dump(mode="json")
        trace = data["demand"].get("trace")
        if trace is not None:
            trace["path"] = Path(trace["path"]).name
        blob = json.dumps(data, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @classmethod
    def from_config(cls, cfg: ScenarioConfig) -> ScenarioParams:
        mods = cfg.modules
        value = np.array([m.value for m in mods], dtype=np.float64)
        noise = np.array([m.report_noise for m in mods], dtype=np.float64)
        return cls(
            config=cfg,
            pool_units=np.array([r.units for r in cfg.resources], dtype=np.int64),
            service_rate=np.array([m.service_rate for m in mods], dtype=np.float64),
            slo_seconds=np.array([m.slo_seconds for m in mods], dtype=np.float64),
            value=value / value.sum(),
            units_per_server=np.array(
                [cfg.per_kind(m, "units_per_server") for m in mods], dtype=np.float64
            ),
            floor=np.array([cfg.per_kind(m, "floor") for m in mods], dtype=np.int64),
            initial_alloc=np.array([cfg.per_kind(m, "units") for m in mods], dtype=np.int64),
            share_cap=np.array(
                [math.floor(cfg.safety.max_module_share * r.units) for r in cfg.resources],
                dtype=np.int64,
            ),
            amount_levels=np.array(cfg.action.amount_levels, dtype=np.int64),
            report_noise=noise,
            claimed_noise=noise * (1.0 - np.array([m.overconfidence for m in mods])),
            tick_seconds=cfg.tick_seconds,
            episode_ticks=cfg.episode_ticks,
            warmup_ticks=cfg.warmup_ticks,
            history_ticks=cfg.forecast.history_ticks,
            target_utilization=cfg.target_utilization,
        )
