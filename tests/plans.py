"""Test helpers for the two action modes: scenarios with dotted overrides, seeded random
plans and single shifts inside the masks, and the old (single-shift) step info."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from shift_rl.config import ScenarioConfig, load_scenario, scenario_from_dict

from .test_config import _set


def scenario(
    name: str | Path | ScenarioConfig, ticks: int | None = None, **dotted: Any
) -> ScenarioConfig:
    """A shipped (or given) scenario with ``episode_ticks`` and dotted overrides, keys with
    ``__`` for the dots: ``scenario("default", action__mode="shift")``."""
    data = load_scenario(name).model_dump(mode="python")
    if ticks is not None:
        data["episode_ticks"] = ticks
    for key, value in dotted.items():
        _set(data, key.replace("__", "."), value)
    label = Path(name).stem if isinstance(name, str | Path) else "scenario"
    return scenario_from_dict(data, source=f"{label} (test)")


def shift_mode(name: str | Path | ScenarioConfig, ticks: int | None = None, **dotted: Any):
    """:func:`scenario` in single-shift mode (``action.mode: shift``)."""
    return scenario(name, ticks, action__mode="shift", **dotted)


class RandomPlan:
    """A seeded policy drawing each (module, kind) level at random: inside the mask with
    probability ``1 - wild`` (masked-out levels otherwise, still inside the space), and
    "no change" with probability ``idle``."""

    name = "random-plan"

    def __init__(
        self, num_entries: int, num_levels: int, seed: int, idle: float = 0.3, wild: float = 0.1
    ) -> None:
        self.n, self.width, self.k = num_entries, 2 * num_levels + 1, num_levels
        self.rng = np.random.default_rng(seed)
        self.idle, self.wild = idle, wild

    def act(self, obs: Any, mask: np.ndarray) -> np.ndarray:
        rng, w = self.rng, self.width
        allowed = np.asarray(mask, dtype=bool).reshape(self.n, w)
        wild = rng.random(self.n) < self.wild
        pick = np.where(wild[:, None], True, allowed)
        # a random allowed level per entry: argmax of random keys over the allowed ones
        keys = rng.random((self.n, w)) + pick
        out = keys.argmax(axis=1).astype(np.int64)
        out[rng.random(self.n) < self.idle] = self.k
        return out

    def reset(self) -> None:
        pass


def random_plans(rng: np.random.Generator, n: int, width: int, idle: float = 0.3) -> np.ndarray:
    """(n,) plan levels uniform over the space, each "no change" with probability ``idle``."""
    out = rng.integers(0, width, size=n)
    out[rng.random(n) < idle] = width // 2
    return out.astype(np.int64)


def old_info(info: dict[str, Any], action: np.ndarray, num_levels: int) -> dict[str, Any]:
    """A single-shift mode step's info as the env reported it before plans: ``shift`` (4,)
    ``[src, dst, kind, units]`` of the proposal (units 0 when nothing moved) instead of
    ``shifts`` and ``num_shifts``."""
    out = {k: v for k, v in info.items() if k not in ("shifts", "num_shifts")}
    if info["num_shifts"]:
        assert info["num_shifts"] == 1
        out["shift"] = np.asarray(info["shifts"][0], dtype=np.int64)
    else:
        s, d, a = (int(x) for x in action)
        out["shift"] = np.array([s, d, a // num_levels, 0], dtype=np.int64)
    return out


def level_of(levels: Any, units: int) -> int:
    """The plan level (``0 .. 2K``) asking for ``units`` (signed; 0 is no change)."""
    a = [int(x) for x in levels]
    k = len(a)
    if units == 0:
        return k
    j = a.index(abs(units))
    return k + 1 + j if units > 0 else k - 1 - j


def plan_action(env_or_guard: Any, requests: dict[Any, int]) -> np.ndarray:
    """A plan asking ``requests`` ({module: units} of kind 0, or {(module, kind): units};
    signed: + take, - give), every other (module, kind) at "no change"."""
    guard = getattr(env_or_guard, "plane", env_or_guard)
    guard = getattr(getattr(guard, "core", guard), "guard", guard)
    levels = guard.settings.amount_levels
    out = guard.noop_action.copy()
    for key, units in requests.items():
        m, r = key if isinstance(key, tuple) else (key, 0)
        out[m * guard.num_kinds + r] = level_of(levels, units)
    return out


def executed(info: dict[str, Any]) -> list[list[int]]:
    """The shifts a single env's step executed, ``[src, dst, kind, units]`` in plan order."""
    return np.asarray(info["shifts"])[: int(info["num_shifts"])].tolist()
