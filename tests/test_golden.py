"""Behaviour pinned across refactors: recorded trajectories replay bit for bit.

``tests/data/golden_trajectories.json`` holds, for every shipped scenario, an episode under
seeded random valid actions (observations, rewards and every ``info`` array, per tick), and
a controller run on the simulated backend (its tick records and observations), recorded
before the control-plane core was extracted from the env's tick and the controller's.
Refactors of the tick must replay them exactly.

The recordings are single-shift trajectories: they replay with ``action.mode: shift`` (a
single shift is the two-module plan of the plan kernel), and each tick's ``info`` is
compared in the form it had then (``shift``, the proposal's ``[src, dst, kind, units]``,
for today's ``shifts`` and ``num_shifts``): the proof that single-shift mode is the old
behaviour.

Each tick is stored as a SHA-256 digest of its bytes, plus float summaries (reward, goal,
sum of the observation). Digests are compared where numpy dispatches its transcendental
functions as on the recording machine (numpy's AVX-512 and AVX2 code paths may differ in
the last bit of ``exp`` / ``log``): there the replay must be exact. Elsewhere the summaries
must agree to 1e-9, so a machine with other SIMD paths still checks the dynamics.

Record again (only when a change of behaviour is intended, and say so in the commit):
``SHIFT_RL_RECORD_GOLDEN=1 python -m pytest tests/test_golden.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shift_rl.config import load_scenario, scenario_from_dict
from shift_rl.controller import ShiftController, SimulatedBackend
from shift_rl.env import ResourceShiftEnv
from shift_rl.observation import ADDED_FEATURES, ObservationBuilder

from .conftest import SCENARIOS
from .plans import old_info

GOLDEN = Path(__file__).parent / "data" / "golden_trajectories.json"
TICKS = 80
RECORD = os.environ.get("SHIFT_RL_RECORD_GOLDEN") == "1"
_SIMD = ("AVX512F", "AVX512_SKX", "AVX512_CLX", "AVX512_CNL", "AVX512_ICL", "AVX2", "FMA3")


def machine_signature() -> dict[str, Any]:
    """What decides the last bit of numpy's float64 transcendental functions here."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as feats
    except ImportError:  # numpy < 2
        from numpy.core._multiarray_umath import __cpu_features__ as feats
    return {"numpy": np.__version__, "simd": sorted(f for f in _SIMD if feats.get(f))}


def _digest(*parts: Any) -> str:
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, dict):
            for key in sorted(part):
                h.update(key.encode())
                h.update(_digest(part[key]).encode())
        elif isinstance(part, np.ndarray):
            h.update(str(part.dtype).encode() + str(part.shape).encode())
            h.update(np.ascontiguousarray(part).tobytes())
        else:
            h.update(repr(part).encode())
    return h.hexdigest()[:20]


class RandomMasked:
    """A seeded policy proposing a random action inside the per-dimension masks."""

    name = "random-masked"

    def __init__(self, num_modules: int, seed: int) -> None:
        self.m = num_modules
        self.rng = np.random.default_rng(seed)

    def act(self, obs: np.ndarray, mask: np.ndarray) -> np.ndarray:
        m = self.m
        src = self.rng.choice(np.flatnonzero(mask[:m]))
        dsts = np.flatnonzero(mask[m : 2 * m])
        if (dsts != src).any():
            dsts = dsts[dsts != src]
        lvl = self.rng.choice(np.flatnonzero(mask[2 * m :]))
        return np.array([src, self.rng.choice(dsts), lvl], dtype=np.int64)

    def reset(self) -> None:
        pass


def _short(path: Path, ticks: int) -> Any:
    """The scenario at ``path``, ``ticks`` long, in single-shift mode (as recorded)."""
    data = load_scenario(path).model_dump(mode="python")
    data["episode_ticks"] = ticks
    data["action"]["mode"] = "shift"
    return scenario_from_dict(data, source=f"{path.stem} (golden)")


def _recorded_columns(names: list[str]) -> np.ndarray:
    """The observation's columns as recorded: features added since (``ADDED_FEATURES``) are
    left out, so a new feature does not hide a change of the old ones."""
    return np.array([i for i, n in enumerate(names) if not n.startswith(ADDED_FEATURES)])


def env_trajectory(path: Path) -> list[dict[str, Any]]:
    """Per tick: digest of (obs, reward, truncated, info) and float summaries."""
    env = ResourceShiftEnv(_short(path, TICKS))
    policy = RandomMasked(len(env.module_names), seed=7)
    levels = len(env.scenario.action.amount_levels)
    recorded = _recorded_columns(env.observation_names)
    obs, info = env.reset(seed=2024)
    obs = obs[recorded]
    out = [{"digest": _digest(obs, info), "obs_sum": float(obs.astype(np.float64).sum())}]
    truncated = False
    while not truncated:
        action = policy.act(obs, env.action_masks())
        obs, reward, _, truncated, info = env.step(action)
        obs = obs[recorded]
        info = old_info(info, action, levels)
        out.append(
            {
                "digest": _digest(obs, reward, truncated, info),
                "reward": float(reward),
                "goal": float(info["goal_attainment"]),
                "obs_sum": float(obs.astype(np.float64).sum()),
            }
        )
    return out


def controller_trajectory(tmp: Path) -> list[dict[str, Any]]:
    """A controller run (active, journal on) with the simulated backend."""
    be = SimulatedBackend(_short(SCENARIOS_BY_NAME["default"], 160), seed=5)
    policy = RandomMasked(be.params.num_modules, seed=3)
    ctl = ShiftController(policy, be, interval=0, state_dir=tmp)
    recorded = _recorded_columns(ObservationBuilder(be.params).names)
    out = []
    for rec in ctl.run(150):
        assert ctl.obs is not None
        record = _as_recorded(vars(rec))
        obs = ctl.obs[recorded]
        out.append(
            {
                "digest": _digest(json.dumps(record, sort_keys=True), obs),
                "reward": float(rec.reward),
                "goal": float(rec.goal_attainment),
                "obs_sum": float(obs.astype(np.float64).sum()),
            }
        )
    ctl.close()
    return out


def _as_recorded(rec: dict[str, Any]) -> dict[str, Any]:
    """A tick record in the form recorded before plans: ``shift`` (the one shift, or None)
    instead of ``shifts``, without the fields plans added (empty in single-shift mode)."""
    out = {k: v for k, v in rec.items() if k not in ("shifts", "excluded",
                                                     "shadow_potential_shifts")}  # fmt: skip
    assert len(rec["shifts"]) <= 1 and not rec["excluded"], "single-shift mode, no gaps"
    out["shift"] = rec["shifts"][0] if rec["shifts"] else None
    return out


SCENARIOS_BY_NAME = {p.stem: p for p in SCENARIOS}


def _compare(name: str, got: list[dict], want: list[dict], exact: bool) -> None:
    assert len(got) == len(want), f"{name}: {len(got)} ticks, recorded {len(want)}"
    for t, (g, w) in enumerate(zip(got, want, strict=True)):
        if exact:
            assert g["digest"] == w["digest"], f"{name}: tick {t} differs from the recording"
        for key in ("reward", "goal", "obs_sum"):
            if key in w:
                assert g[key] == pytest.approx(w[key], rel=1e-9, abs=1e-9), (
                    f"{name}: tick {t} {key} {g[key]!r} != recorded {w[key]!r}"
                )


def _recorded() -> dict[str, Any]:
    return json.loads(GOLDEN.read_text())


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_env_replays_the_recording(path: Path) -> None:
    got = env_trajectory(path)
    if RECORD:
        data = _recorded() if GOLDEN.exists() else {}
        data.setdefault("env", {})[path.stem] = got
        data["machine"] = machine_signature()
        GOLDEN.write_text(json.dumps(data, indent=0, sort_keys=True) + "\n")
        return
    data = _recorded()
    if path.stem not in data["env"]:
        pytest.skip(
            f"{path.stem}: no recorded trajectory (a scenario shipped after the recording; "
            "it pins no earlier behaviour, and re-recording would hide changes to the others)"
        )
    assert sum(t.get("reward", 0.0) != 0.0 for t in got) > 0
    _compare(path.stem, got, data["env"][path.stem], data["machine"] == machine_signature())


def test_controller_replays_the_recording(tmp_path: Path) -> None:
    got = controller_trajectory(tmp_path)
    if RECORD:
        data = _recorded() if GOLDEN.exists() else {}
        data["controller"] = got
        data["machine"] = machine_signature()
        GOLDEN.write_text(json.dumps(data, indent=0, sort_keys=True) + "\n")
        return
    data = _recorded()
    _compare("controller", got, data["controller"], data["machine"] == machine_signature())
