"""Shift policies behind one protocol, and a registry by name.

``resolve_policy(name, params)`` is what every script calls: a built-in name or the path of an
exported policy folder (checked against the scenario). ``make_policy(name, params)`` builds a
built-in policy (``potential``, ``hpa``, ``vpa``,
``static``, ``proportional``, ``oracle-mpc``). ``potential``, ``hpa`` and ``proportional``
use the tuned parameters saved in ``agents/<name>/params.json`` when present (tuned on the
shipped scenarios, see ``scripts/tune_baseline.py``); keyword overrides win. Parameters tuned
on a workload suite live apart, in ``agents/suites/<suite>/<name>/params.json``
(:data:`SUITE_TUNED_DIR`): ``scripts/benchmark.py`` uses them on that suite, nothing else
does. ``oracle`` is not a policy but the
per-tick upper bound (:func:`~shift_rl.agents.oracle.oracle_goal`) the evaluation reports.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from shift_rl.agents.autoscalers import HPAPolicy, ProportionalPolicy, VPAPolicy
from shift_rl.agents.base import HeuristicPolicy, Policy, StaticPolicy
from shift_rl.agents.oracle import ForecastMPCPolicy, OracleMPCPolicy, oracle_goal
from shift_rl.agents.potential import PotentialPolicy
from shift_rl.config import PROJECT_ROOT, path_kind
from shift_rl.observation import ObservationBuilder, feature_layout, without_added
from shift_rl.runtime import PLAN, SHIFT, ExportedPolicy, PolicyFileError, load_policy
from shift_rl.safety import SafetyGuard
from shift_rl.scenario import ScenarioParams

logger = logging.getLogger(__name__)

POLICIES: dict[str, Callable[..., Policy]] = {
    "potential": PotentialPolicy,
    "hpa": HPAPolicy,
    "vpa": VPAPolicy,
    "static": StaticPolicy,
    "proportional": ProportionalPolicy,
    "oracle-mpc": OracleMPCPolicy,
    "mpc": ForecastMPCPolicy,
}
REFERENCES = ("oracle",)
"""Names the evaluation knows that are bounds, not policies."""
TUNED_DIR = PROJECT_ROOT / "agents"
SUITE_TUNED_DIR = TUNED_DIR / "suites"
"""Parameters tuned on a suite's train members: ``<suite name>/<policy>/params.json``."""


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


def _unknown(name: str) -> PolicyFileError:
    allowed = sorted(POLICIES) + list(REFERENCES)
    return PolicyFileError(
        f"unknown policy {name!r}: expected a built-in name {allowed} "
        "or the path of an exported policy folder"
    )


def resolve_policy(name: str, params: ScenarioParams) -> Policy:
    """A built-in policy by name, or an exported policy folder checked against the scenario.

    The one place scripts turn ``--policies`` / ``--policy`` into a policy: an unknown name,
    an untrustworthy folder or one made for another observation or action layout raises
    :class:`~shift_rl.runtime.PolicyFileError` with the reason. The observation names and
    bounds and the action ``nvec`` must be the scenario's; modules (or resource kinds)
    *renamed* at the same positions, or another scenario fingerprint of the same layout, are
    used with a warning; the same modules in another order are refused (the policy would act
    on the wrong ones). Policies that plan on the true future (``oracle-mpc``) still need
    ``policy.bind(env)``.
    """
    if name in POLICIES:
        return make_policy(name, params)
    if path_kind(name) in ("missing", "invalid"):
        raise _unknown(name)
    policy = load_policy(name)
    check_policy_fits(policy, name, params)
    return policy


def check_policy_fits(policy: ExportedPolicy, name: str, params: ScenarioParams) -> None:
    """Refuse an exported policy made for another layout than the scenario's (see
    :func:`resolve_policy`); warn about renamed modules and another fingerprint. A modular
    policy (:mod:`shift_rl.modular`) fits any module count with its features, kinds and levels."""
    from shift_rl.modular import ModularPolicy, check_modular_fits

    if isinstance(policy, ModularPolicy):
        check_modular_fits(policy, name, params, make_policy)
        return
    builder = ObservationBuilder(params, 1)
    scenario = params.config.name
    expected = builder.space.shape
    got = policy.observation_shape
    if tuple(got) != tuple(expected):
        raise PolicyFileError(
            f"policy {name!r} expects observations of shape {tuple(got)} but scenario "
            f"{scenario!r} gives {tuple(expected)} ({params.num_modules} modules): "
            "train or export it for this scenario"
        )
    guard = SafetyGuard.from_params(params)
    mode, nvec = guard.settings.mode, list(guard.action_nvec)  # the env's MultiDiscrete
    theirs = getattr(policy, "mode", SHIFT)
    if theirs != mode:
        said = {PLAN: "plan mode", SHIFT: "single-shift mode"}
        raise PolicyFileError(
            f"policy {name!r} acts in {said.get(theirs, theirs)} (MultiDiscrete of "
            f"{len(policy.nvec)} entries) but scenario {scenario!r} is in {said[mode]} "
            f"(action.mode: {mode}, MultiDiscrete of {len(nvec)} entries): retrain or export "
            f"it for this scenario, or run the scenario with action.mode: {theirs}"
        )
    if policy.nvec.tolist() != nvec:
        m, r, k = guard.num_modules, guard.num_kinds, guard.num_levels
        layout = (
            f"{m} modules x {r} kinds, {2 * k + 1} levels each" if mode == PLAN
            else "modules, modules, kinds x levels"
        )  # fmt: skip
        raise PolicyFileError(
            f"policy {name!r} acts in MultiDiscrete({_shown_nvec(policy.nvec.tolist())}) but "
            f"scenario {scenario!r} takes MultiDiscrete({_shown_nvec(nvec)}) ({layout}): "
            "train or export it for this scenario"
        )
    spec = policy.spec
    mine_modules = [m.name for m in params.config.modules]
    mine_kinds = [r.name for r in params.config.resources]
    theirs_modules = list(spec["scenario"]["modules"])
    theirs_kinds = list(spec["scenario"]["resources"])
    names = list(spec["observation"]["names"])
    layout = [f.name for f in feature_layout(theirs_modules, theirs_kinds)]
    if names not in (layout, without_added(layout)):
        raise PolicyFileError(
            f"policy {name!r}: its observation.names do not follow the layout of its own "
            "scenario.modules and scenario.resources (policy.json is inconsistent)"
        )
    for what, theirs, mine in (("modules", theirs_modules, mine_modules),
                               ("resource kinds", theirs_kinds, mine_kinds)):  # fmt: skip
        if theirs == mine:
            continue
        if sorted(theirs) == sorted(mine):
            raise PolicyFileError(
                f"policy {name!r} was trained for the {what} {theirs} in that order; scenario "
                f"{scenario!r} has them as {mine}: it would act on the wrong ones (a policy "
                "acts by position)"
            )
        logger.warning(
            "%s was trained for the %s %s; scenario %r has %s at the same positions: the "
            "policy acts on them by position",
            name, what, theirs, scenario, mine,
        )  # fmt: skip
    low, high = spec["observation"]["low"], spec["observation"]["high"]
    read = slice(policy.inputs)  # without the ADDED_FEATURES it does not read
    if not (np.array_equal(np.float32(low), builder.low[read])
            and np.array_equal(np.float32(high), builder.high[read])):  # fmt: skip
        raise PolicyFileError(
            f"policy {name!r} was trained with other observation bounds than scenario "
            f"{scenario!r} gives: train or export it for this scenario"
        )
    trained_for = spec["scenario"]["fingerprint"]
    if trained_for != params.fingerprint():
        logger.warning(
            "%s was trained for scenario fingerprint %s, this scenario is %s",
            name, trained_for, params.fingerprint(),
        )  # fmt: skip


def _shown_nvec(nvec: list[int]) -> str:
    """An ``nvec`` for a message: a plan's ``[7] * 1024`` is not written out in full."""
    if len(nvec) > 8 and len(set(nvec)) == 1:
        return f"[{nvec[0]}] * {len(nvec)}"
    return str(nvec)


def policy_scenario(name: str) -> str:
    """The scenario a policy runs on when none is given: an exported folder's own, else
    ``default``."""
    if name in POLICIES:
        return "default"
    if path_kind(name) in ("missing", "invalid"):
        raise _unknown(name)
    return str(load_policy(name).spec["scenario"]["name"])


__all__ = [
    "POLICIES",
    "REFERENCES",
    "SUITE_TUNED_DIR",
    "TUNED_DIR",
    "HPAPolicy",
    "HeuristicPolicy",
    "OracleMPCPolicy",
    "Policy",
    "PotentialPolicy",
    "ProportionalPolicy",
    "StaticPolicy",
    "VPAPolicy",
    "check_policy_fits",
    "make_policy",
    "oracle_goal",
    "policy_scenario",
    "resolve_policy",
    "tuned_params",
]
