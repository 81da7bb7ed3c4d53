"""Shift policies behind one protocol, and a registry by name.

``make_policy(name, params)`` builds a built-in policy (``potential``, ``hpa``, ``vpa``,
``static``, ``proportional``, ``oracle-mpc``). ``potential`` and ``hpa`` use the tuned
parameters saved in ``agents/<name>/params.json`` when present (see
``scripts/tune_baseline.py``); keyword overrides win. ``oracle`` is not a policy but the
per-tick upper bound (:func:`~shift_rl.agents.oracle.oracle_goal`) the evaluation reports.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shift_rl.agents.autoscalers import HPAPolicy, ProportionalPolicy, VPAPolicy
from shift_rl.agents.base import HeuristicPolicy, Policy, StaticPolicy
from shift_rl.agents.oracle import OracleMPCPolicy, oracle_goal
from shift_rl.agents.potential import PotentialPolicy
from shift_rl.config import PROJECT_ROOT
from shift_rl.sim.params import ScenarioParams

POLICIES: dict[str, Callable[..., Policy]] = {
    "potential": PotentialPolicy,
    "hpa": HPAPolicy,
    "vpa": VPAPolicy,
    "static": StaticPolicy,
    "proportional": ProportionalPolicy,
    "oracle-mpc": OracleMPCPolicy,
}
REFERENCES = ("oracle",)
"""Names the evaluation knows that are bounds, not policies."""
TUNED_DIR = PROJECT_ROOT / "agents"


def tuned_params(name: str, directory: Path | None = None) -> dict[str, Any]:
    """Parameters chosen by ``scripts/tune_baseline.py`` for ``name`` ({} when untuned)."""
    path = (directory or TUNED_DIR) / name / "params.json"
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    params = data.get("params") if isinstance(data, dict) else None
    if not isinstance(params, dict):
        raise ValueError(f"{path}: expected a JSON object with a 'params' mapping")
    return params


def make_policy(name: str, params: ScenarioParams, **overrides: Any) -> Policy:
    """A built-in policy by name, with tuned defaults and ``overrides`` applied."""
    if name not in POLICIES:
        allowed = sorted(POLICIES) + list(REFERENCES)
        raise ValueError(f"unknown policy {name!r}; built-in policies: {allowed}")
    if name == "static":
        return StaticPolicy(params)
    return POLICIES[name](params, **{**tuned_params(name), **overrides})


__all__ = [
    "POLICIES",
    "REFERENCES",
    "HPAPolicy",
    "HeuristicPolicy",
    "OracleMPCPolicy",
    "Policy",
    "PotentialPolicy",
    "ProportionalPolicy",
    "StaticPolicy",
    "VPAPolicy",
    "make_policy",
    "oracle_goal",
    "tuned_params",
]
