"""Paired, seeded evaluation of shift policies, with confidence intervals.

Every policy plays the same episodes: episode ``i`` is ``env.reset(seed=seed + i)``, so it
sees the same demand and faults whatever it does. ``static`` and the ``oracle`` bound run on
every episode (listed or not) because *gap closed* needs them:
``(return - static) / (oracle - static)``, the share of the reachable improvement a policy
captures. Means come with 95 % confidence intervals (Student t over episodes); differences
against the first listed policy are paired per episode.

Gap closed is *undefined* in an episode where the oracle's headroom over static is below
``GAP_MIN_HEADROOM`` per tick (a lightly loaded plane where static already serves everything):
there is no improvement to close, and a ratio of two near-zero numbers would be noise. Such an
episode counts as NaN, never as 0; the summary then gives ``"mean": None`` with the reason in
``"undefined"`` (or, when only some episodes are undefined, how many in ``"undefined_episodes"``).

A module-tick *violates its SLO* when the module serves less than ``SLO_TARGET`` (95 %) of
its demand within the latency objective; ``slo_violation_ticks`` counts ticks with at least
one violating module.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from shift_rl.agents import Policy, oracle_goal, resolve_policy
from shift_rl.config import ScenarioConfig, load_scenario, with_trace
from shift_rl.env import ResourceShiftEnv
from shift_rl.runtime import PolicyFileError
from shift_rl.sim.exogenous import trace_quality

logger = logging.getLogger(__name__)

SLO_TARGET = 0.95
GAP_MIN_HEADROOM = 1e-3
"""Oracle minus static goal attainment per tick below which gap closed is undefined."""
METRICS = (
    "return",
    "goal_attainment",
    "gap_closed",
    "slo_violation_ticks",
    "units_moved",
    "rollbacks",
    "invalid_actions",
)


class EvaluationError(ValueError):
    """A policy name, policy folder or scenario that cannot be evaluated as asked."""


@dataclass
class EpisodeResult:
    policy: str
    episode: int
    seed: int
    ret: float
    goal_attainment: float
    slo_violation_ticks: int
    units_moved: int
    rollbacks: int
    invalid_actions: int
    trajectory: dict[str, list] | None = field(default=None, repr=False)


def load_any_policy(name: str, env: ResourceShiftEnv) -> Policy:
    """:func:`~shift_rl.agents.resolve_policy` for this env, bound to it when it plans on the
    true future; an unusable name or folder is an :class:`EvaluationError`."""
    try:
        policy = resolve_policy(name, env.params)
    except PolicyFileError as err:
        raise EvaluationError(str(err)) from None
    if hasattr(policy, "bind"):
        policy.bind(env)  # type: ignore[attr-defined]
    return policy


def run_episode(
    env: ResourceShiftEnv, policy: Policy, name: str, episode: int, seed: int, record: bool = False
) -> EpisodeResult:
    """Play one full episode; with ``record``, keep per-tick allocation, demand and reward."""
    obs, _ = env.reset(seed=seed)
    policy.reset()
    total = goal = 0.0
    violations = moved = rollbacks = invalid = 0
    traj: dict[str, list] | None = {"alloc": [], "need": [], "reward": []} if record else None
    done = False
    while not done:
        action = policy.act(obs, env.action_masks())
        obs, reward, terminated, truncated, info = env.step(action)
        done = terminated or truncated
        total += reward
        goal += info["goal_attainment"]
        violations += bool((info["attainment"] < SLO_TARGET).any())
        moved += info["units_moved"]
        rollbacks += info["rollbacks"]
        invalid += info["invalid_action"]
        if traj is not None:
            traj["alloc"].append(info["alloc"][:, 0].tolist())
            # demand as the units of the first kind it needs at the target utilization
            lam = env.plane.sim.exo_demand[0, env.params.history_ticks + info["tick"]]
            need = lam * env.params.servers_per_request * env.params.units_per_server[:, 0]
            traj["need"].append(need.tolist())
            traj["reward"].append(reward)
    ticks = env.params.episode_ticks
    return EpisodeResult(
        name, episode, seed, total, goal / ticks, violations, moved, rollbacks, invalid, traj
    )


def _oracle_episode(env: ResourceShiftEnv, episode: int, seed: int) -> EpisodeResult:
    env.reset(seed=seed)
    goal = oracle_goal(env.params, env.plane.sim)
    return EpisodeResult("oracle", episode, seed, float(goal.sum()), float(goal.mean()), 0, 0, 0, 0)


def _run_chunk(
    scenario: ScenarioConfig, name: str, episodes: Sequence[int], seed: int, record: bool
) -> list[EpisodeResult]:
    env = ResourceShiftEnv(scenario)
    if name == "oracle":
        return [_oracle_episode(env, i, seed + i) for i in episodes]
    policy = load_any_policy(name, env)
    return [run_episode(env, policy, name, i, seed + i, record and i == 0) for i in episodes]


def _summary(values: np.ndarray) -> dict[str, Any]:
    values = values[np.isfinite(values)]
    n = len(values)
    if n == 0:
        return {"mean": None, "ci95": [None, None], "n": 0}
    mean = float(values.mean())
    if n < 2:
        return {"mean": mean, "ci95": [mean, mean], "n": n}
    half = float(stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n))
    return {"mean": mean, "ci95": [mean - half, mean + half], "n": n}


@dataclass
class EvaluationReport:
    scenario: str
    fingerprint: str
    episodes: int
    seed: int
    trace: str | None
    policies: list[str]
    modules: list[str]
    kinds: list[str]
    results: dict[str, list[EpisodeResult]]
    seconds: float = 0.0
    ticks: int = 1
    """Ticks per episode (what the gap-closed headroom is measured per)."""
    trace_quality: dict[str, Any] | None = None
    """For a replayed trace: its series and the ticks filled in each (missing rows, samples)."""

    def per_episode(self, name: str, metric: str) -> np.ndarray:
        res = self.results[name]
        if metric == "gap_closed":
            static = np.array([r.ret for r in self.results["static"]])
            oracle = np.array([r.ret for r in self.results["oracle"]])
            ret = np.array([r.ret for r in res])
            return gap_closed(ret, static, oracle, self.ticks)
        key = "ret" if metric == "return" else metric
        return np.array([getattr(r, key) for r in res], dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary; identical for identical inputs (no timings inside)."""
        first = self.policies[0]
        out: dict[str, Any] = {
            "scenario": self.scenario,
            "fingerprint": self.fingerprint,
            "episodes": self.episodes,
            "seed": self.seed,
            "trace": self.trace,
            "slo_target": SLO_TARGET,
            "policies": {},
            "paired_against": first,
            "differences": {},
        }
        if self.trace_quality is not None:
            out["trace_quality"] = self.trace_quality
        for name in self.results:
            out["policies"][name] = {m: _summary(self.per_episode(name, m)) for m in METRICS}
            if name != first:
                out["differences"][name] = {
                    m: _summary(self.per_episode(name, m) - self.per_episode(first, m))
                    for m in ("return", "goal_attainment", "gap_closed")
                }
        for table in (out["policies"], out["differences"]):
            for summary in table.values():
                _mark_undefined(summary["gap_closed"], self.episodes)
        return out

    def markdown(self) -> str:
        """The result table: mean [95 % CI] per metric and policy."""
        d = self.to_dict()

        def fmt(s: dict[str, Any], digits: int) -> str:
            if s["mean"] is None:
                return "undefined" if "undefined" in s else "—"
            lo, hi = s["ci95"]
            return f"{s['mean']:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"

        head = (
            "| policy | return | goal attainment | gap closed | SLO-violation ticks "
            "| units moved | rollbacks | invalid |"
        )
        lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for name, s in d["policies"].items():
            lines.append(
                f"| {name} | {fmt(s['return'], 1)} | {fmt(s['goal_attainment'], 4)} "
                f"| {fmt(s['gap_closed'], 3)} | {fmt(s['slo_violation_ticks'], 1)} "
                f"| {fmt(s['units_moved'], 0)} | {fmt(s['rollbacks'], 1)} "
                f"| {fmt(s['invalid_actions'], 1)} |"
            )
        if d["differences"]:
            lines += [
                "",
                f"Paired difference against `{d['paired_against']}` (mean [95 % CI]):",
                "",
            ]
            lines += ["| policy | return | goal attainment | gap closed |", "|---|---:|---:|---:|"]
            for name, s in d["differences"].items():
                lines.append(
                    f"| {name} | {fmt(s['return'], 2)} | {fmt(s['goal_attainment'], 4)} "
                    f"| {fmt(s['gap_closed'], 3)} |"
                )
        reasons = {
            s["gap_closed"]["undefined"]
            for s in d["policies"].values()
            if "undefined" in s["gap_closed"]
        }
        lines += [f"\nGap closed is undefined: {r}" for r in sorted(reasons)]
        q = self.trace_quality
        if q is not None and any(q["filled_ticks"]):
            filled = ", ".join(
                f"{c} {n} ({100 * n / q['ticks']:.1f} %)"
                for c, n in zip(q["columns"], q["filled_ticks"], strict=True)
                if n
            )
            lines.append(
                f"\nTrace {q['path']}: ticks filled by interpolation (of {q['ticks']}): {filled}"
            )
        return "\n".join(lines)


def gap_closed(ret: np.ndarray, static: np.ndarray, oracle: np.ndarray, ticks: int) -> np.ndarray:
    """Per episode ``(ret - static) / (oracle - static)``; NaN (undefined, never 0) where the
    oracle's headroom over static is below ``GAP_MIN_HEADROOM`` per tick."""
    span = np.asarray(oracle, dtype=np.float64) - np.asarray(static, dtype=np.float64)
    ok = np.isfinite(span) & (span > GAP_MIN_HEADROOM * max(int(ticks), 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, (np.asarray(ret) - static) / np.where(ok, span, 1.0), np.nan)


def _mark_undefined(summary: dict[str, Any], episodes: int) -> None:
    """Say why a gap-closed summary has no value, or how many episodes it leaves out."""
    if summary["n"] == 0:
        summary["undefined"] = (
            f"the oracle's headroom over static is below {GAP_MIN_HEADROOM:g} goal attainment "
            "per tick in every episode (static already serves about all the demand): there is "
            "no improvement to close"
        )
    elif summary["n"] < episodes:
        summary["undefined_episodes"] = episodes - summary["n"]


def evaluate(
    policies: Sequence[str],
    scenario: str | os.PathLike | ScenarioConfig,
    episodes: int = 20,
    seed: int = 0,
    trace: str | os.PathLike | None = None,
    workers: int = 1,
    record: bool = False,
) -> EvaluationReport:
    """Evaluate ``policies`` on the same ``episodes`` (seeds ``seed .. seed + episodes - 1``)."""
    if not policies:
        raise EvaluationError("no policy given: expected at least one name")
    if isinstance(episodes, bool) or not isinstance(episodes, int | np.integer) or episodes < 1:
        raise EvaluationError(f"episodes must be an integer >= 1, got {episodes!r}")
    if (
        isinstance(seed, bool)
        or not isinstance(seed, int | np.integer)
        or not 0 <= seed <= 2**63 - episodes
    ):
        raise EvaluationError(
            f"seed must be an integer >= 0 (episode i uses seed + i, below 2**63), got {seed!r}"
        )
    if workers < 1:
        raise EvaluationError(f"workers must be >= 1, got {workers}")
    cfg = load_scenario(scenario)
    if trace is not None:
        cfg = with_trace(cfg, trace)
    names = list(dict.fromkeys(policies))
    everything = [*names, *(r for r in ("static", "oracle") if r not in names)]
    env = ResourceShiftEnv(cfg)
    for name in everything:  # fail fast, before any episode runs
        if name != "oracle":
            load_any_policy(name, env)
    quality = trace_quality(env.params)  # loads the trace: a bad one fails here, once
    start = time.perf_counter()
    chunks = max(1, min(episodes, workers))
    parts = [list(range(episodes))[k::chunks] for k in range(chunks)]
    tasks = [(cfg, name, part, seed, record) for name in everything for part in parts]
    if workers == 1:
        done = [_run_chunk(*t) for t in tasks]
    else:
        with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
            done = list(pool.map(_run_chunk, *zip(*tasks, strict=True)))
    results: dict[str, list[EpisodeResult]] = {name: [] for name in everything}
    for chunk in done:
        for r in chunk:
            results[r.policy].append(r)
    for rs in results.values():
        rs.sort(key=lambda r: r.episode)
    return EvaluationReport(
        scenario=cfg.name,
        fingerprint=env.params.fingerprint(),
        episodes=episodes,
        seed=seed,
        trace=str(trace) if trace is not None else None,
        policies=names,
        modules=env.module_names,
        kinds=cfg.resource_names,
        results=results,
        seconds=time.perf_counter() - start,
        ticks=cfg.episode_ticks,
        trace_quality=quality,
    )


def plot(report: EvaluationReport, directory: str | os.PathLike) -> list[Path]:
    """PNG figures: allocation and demand over episode 0 per policy, reward per tick, metrics."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    recorded = {n: rs[0].trajectory for n, rs in report.results.items() if rs and rs[0].trajectory}
    for name, traj in recorded.items():
        fig, ax = plt.subplots(figsize=(11, 5))
        alloc, need = np.array(traj["alloc"]), np.array(traj["need"])
        for m, module in enumerate(report.modules):
            (line,) = ax.plot(alloc[:, m], lw=1.4, label=module)
            ax.plot(need[:, m], lw=0.7, ls="--", color=line.get_color())
        ax.set_xlabel("tick")
        ax.set_ylabel(f"units of {report.kinds[0]}")
        ax.set_title(
            f"{report.scenario}: {name}, episode 0 (solid: units serving; "
            "dashed: units the demand needs at the target utilization)"
        )
        ax.legend(ncol=3, fontsize=8)
        path = out / f"allocation_{name.replace('/', '_')}.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        files.append(path)
    if recorded:
        fig, ax = plt.subplots(figsize=(10, 4))
        for name, traj in recorded.items():
            ax.plot(traj["reward"], label=name, lw=0.8)
        ax.set_xlabel("tick")
        ax.set_ylabel("reward")
        ax.legend()
        path = out / "reward_per_tick.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        files.append(path)
    d = report.to_dict()["policies"]
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.5))
    for ax, metric in zip(
        axes, ("goal_attainment", "gap_closed", "units_moved", "rollbacks"), strict=True
    ):
        names = [n for n in d if d[n][metric]["mean"] is not None]
        means = np.array([d[n][metric]["mean"] for n in names])
        lo = means - np.array([d[n][metric]["ci95"][0] for n in names])
        ax.bar(names, means, yerr=lo, capsize=3)
        ax.set_title(metric)
        ax.tick_params(axis="x", rotation=60)
    path = out / "metrics.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    files.append(path)
    return files


__all__ = [
    "EpisodeResult",
    "EvaluationError",
    "EvaluationReport",
    "evaluate",
    "gap_closed",
    "plot",
]
