"""Paired, seeded evaluation of shift policies, with confidence intervals.

Every policy plays the same episodes: episode ``i`` is ``env.reset(seed=seed + i)``, so it
sees the same demand and faults whatever it does. ``static`` and the ``oracle`` bound run on
every episode (listed or not) because *gap closed* needs them: the share of the reachable
improvement a policy captures, as the **ratio of mean improvements** over the episodes,
``mean(return - static) / mean(oracle - static)``, with a 95 % interval from a seeded paired
bootstrap over episodes (the mean of per-episode ratios explodes in episodes where static is
near the oracle; :func:`gap_closed` still gives them, per episode, for figures and records).
Other means come with 95 % confidence intervals (Student t over episodes), clipped to the
metric's range: a mean of counts (SLO-violation ticks, units moved, rollbacks, invalid
proposals) cannot be negative, nor goal attainment leave [0, 1], so neither can its interval.
Differences are paired per episode: *the first listed policy minus the other* (positive: the
first policy did better on return, goal attainment and gap closed), and :meth:`verdicts`
turns them into plain statements (beats / loses to / no significant difference from).

Gap closed is *undefined* where the oracle's mean headroom over static is below
``GAP_MIN_HEADROOM`` per tick (a lightly loaded plane where static already serves everything):
there is no improvement to close, and a ratio of two near-zero numbers would be noise. It is
then never 0: the summary gives ``"mean": None`` with the reason in ``"undefined"``.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from shift_rl.agents import POLICIES, Policy, oracle_goal, resolve_policy
from shift_rl.config import ScenarioConfig, load_scenario, with_trace
from shift_rl.distributed import FanOut
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
BOUNDS: dict[str, tuple[float, float]] = {
    "goal_attainment": (0.0, 1.0),
    "slo_violation_ticks": (0.0, math.inf),
    "units_moved": (0.0, math.inf),
    "rollbacks": (0.0, math.inf),
    "invalid_actions": (0.0, math.inf),
}
"""The range of each bounded metric: its mean and confidence interval are clipped to it."""


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
    env: ResourceShiftEnv,
    policy: Policy,
    name: str,
    episode: int,
    seed: int,
    record: bool = False,
    record_reward: bool = False,
) -> EpisodeResult:
    """Play one full episode; with ``record``, keep per-tick allocation, demand and reward,
    with ``record_reward`` only the reward."""
    obs, _ = env.reset(seed=seed)
    policy.reset()
    total = goal = 0.0
    violations = moved = rollbacks = invalid = 0
    traj: dict[str, list] | None = None
    if record or record_reward:
        traj = {"alloc": [], "need": [], "reward": []}
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
            traj["reward"].append(reward)
        if record and traj is not None:
            traj["alloc"].append(info["alloc"][:, 0].tolist())
            # demand as the units of the first kind it needs at the target utilization
            lam = env.plane.sim.exo_demand[0, env.params.history_ticks + info["tick"]]
            need = lam * env.params.servers_per_request * env.params.units_per_server[:, 0]
            traj["need"].append(need.tolist())
    ticks = env.params.episode_ticks
    return EpisodeResult(
        name, episode, seed, total, goal / ticks, violations, moved, rollbacks, invalid, traj
    )


def _oracle_episode(
    env: ResourceShiftEnv, episode: int, seed: int, record: bool = False
) -> EpisodeResult:
    env.reset(seed=seed)
    goal = oracle_goal(env.params, env.plane.sim)
    traj = {"alloc": [], "need": [], "reward": goal.tolist()} if record else None
    return EpisodeResult(
        "oracle", episode, seed, float(goal.sum()), float(goal.mean()), 0, 0, 0, 0, traj
    )


def _run_chunk(
    scenario: ScenarioConfig, name: str, episodes: Sequence[int], seed: int, record: bool
) -> list[EpisodeResult]:
    env = ResourceShiftEnv(scenario)
    if name == "oracle":
        return [_oracle_episode(env, i, seed + i, record) for i in episodes]
    policy = load_any_policy(name, env)
    return [
        run_episode(env, policy, name, i, seed + i, record and i == 0, record_reward=record)
        for i in episodes
    ]


def _summary(
    values: np.ndarray, bounds: tuple[float, float] = (-math.inf, math.inf)
) -> dict[str, Any]:
    """Mean and 95 % Student-t interval of the finite values, clipped to ``bounds``."""
    values = values[np.isfinite(values)]
    n = len(values)
    if n == 0:
        return {"mean": None, "ci95": [None, None], "n": 0}
    mean = float(values.mean())
    if n < 2:
        return {"mean": mean, "ci95": [mean, mean], "n": n}
    half = float(stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n))
    lo, hi = bounds
    return {"mean": mean, "ci95": [max(mean - half, lo), min(mean + half, hi)], "n": n}


def policy_label(name: str, policy: Any) -> str:
    """A short name for a policy: a built-in's name, an export's run name or folder name."""
    if name in POLICIES or name == "oracle":
        return name
    spec = getattr(policy, "spec", None)
    run = spec.get("training", {}).get("run_name") if isinstance(spec, dict) else None
    return str(run) if run else Path(name).name


def _signed(x: float, digits: int) -> str:
    return f"{x:+.{digits}f}"


@dataclass(frozen=True)
class Verdict:
    """The first policy against a baseline on paired episodes: ``difference = first - other``."""

    policy: str
    baseline: str
    metric: str
    mean: float
    low: float
    high: float
    episodes: int

    @property
    def outcome(self) -> str:
        """``beats`` if the whole 95 % interval is above 0, ``loses to`` if below, else
        ``no significant difference from`` (also with fewer than 2 episodes)."""
        if self.episodes >= 2 and self.low > 0:
            return "beats"
        if self.episodes >= 2 and self.high < 0:
            return "loses to"
        return "no significant difference from"

    def line(self, labels: dict[str, str] | None = None) -> str:
        labels = labels or {}
        me, other = labels.get(self.policy, self.policy), labels.get(self.baseline, self.baseline)
        what = self.metric.replace("_", " ")
        digits = 1 if self.high - self.low >= 1 else 3
        amount = (
            f"{_signed(self.mean, digits)} {what} "
            f"[{_signed(self.low, digits)}, {_signed(self.high, digits)}]"
        )
        if self.episodes < 2:
            return (
                f"{me} vs {other}: {_signed(self.mean, digits)} {what} on 1 episode; "
                "at least 2 paired episodes are needed for a verdict"
            )
        how = f"(95 % CI, {self.episodes} paired episodes)"
        if self.outcome == "no significant difference from":
            return f"{me} shows no significant difference from {other}: {amount} {how}"
        return f"{me} {self.outcome} {other} by {amount} {how}"


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
    labels: dict[str, str] = field(default_factory=dict)
    episode_ticks: int = 0
    """Ticks per episode (also what the gap-closed headroom is measured per)."""
    tick_seconds: float = 60.0
    trace_quality: dict[str, Any] | None = None
    """For a replayed trace: its series and the ticks filled in each (missing rows, samples)."""

    def label(self, name: str) -> str:
        return self.labels.get(name, name)

    def per_episode(self, name: str, metric: str) -> np.ndarray:
        res = self.results[name]
        if metric == "gap_closed":
            static = np.array([r.ret for r in self.results["static"]])
            oracle = np.array([r.ret for r in self.results["oracle"]])
            ret = np.array([r.ret for r in res])
            return gap_closed(ret, static, oracle, self.episode_ticks)
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
            "labels": {name: self.label(name) for name in self.results},
            "paired_against": first,
            "difference": f"per episode: {first} minus the policy (positive: {first} did better)",
            "differences": {},
            "verdicts": [],
        }
        if self.trace_quality is not None:
            out["trace_quality"] = self.trace_quality
        for name in self.results:
            out["policies"][name] = {
                m: self.gap_summary(name)
                if m == "gap_closed"
                else _summary(self.per_episode(name, m), BOUNDS.get(m, (-math.inf, math.inf)))
                for m in METRICS
            }
            if name != first:
                out["differences"][name] = {
                    m: _summary(self.per_episode(first, m) - self.per_episode(name, m))
                    for m in ("return", "goal_attainment")
                }
                out["differences"][name]["gap_closed"] = self.gap_summary(first, name)
        out["verdicts"] = [
            {**vars(v), "outcome": v.outcome, "text": v.line(out["labels"])}
            for v in self.verdicts()
        ]
        return out

    def gap_summary(self, name: str, minus: str | None = None) -> dict[str, Any]:
        """Gap closed of ``name`` (or ``name`` minus ``minus``, paired) as the ratio of mean
        improvements over static, with its 95 % bootstrap interval (module docstring)."""
        ret = self.per_episode(name, "return")
        base = self.per_episode(minus or "static", "return")
        span = self.per_episode("oracle", "return") - self.per_episode("static", "return")
        return ratio_of_means(ret - base, span, self.episode_ticks)

    def baselines(self) -> list[str]:
        """What the first policy is judged against: the other listed policies (not the oracle
        bound), or ``static`` when nothing else was listed."""
        first = self.policies[0]
        others = [n for n in self.policies[1:] if n != "oracle"]
        if not others and first != "static":
            others = ["static"]
        return others

    def verdicts(self, metric: str = "return") -> list[Verdict]:
        """One :class:`Verdict` per baseline on the paired difference of ``metric``."""
        first = self.policies[0]
        out = []
        for name in self.baselines():
            s = _summary(self.per_episode(first, metric) - self.per_episode(name, metric))
            if s["mean"] is None:
                continue
            lo, hi = s["ci95"]
            out.append(Verdict(first, name, metric, s["mean"], lo, hi, s["n"]))
        return out

    def verdict_lines(self) -> list[str]:
        """The verdicts as sentences, then the share of the gap the first policy closed."""
        lines = [v.line(self.labels) for v in self.verdicts()]
        first = self.policies[0]
        gap = self.gap_summary(first)
        if first not in ("static", "oracle") and gap["mean"] is not None:
            lo, hi = gap["ci95"]
            lines.append(
                f"{self.label(first)} closes {100 * gap['mean']:.0f} % [{100 * lo:.0f}, "
                f"{100 * hi:.0f}] of the gap between static (0 %) and the oracle bound "
                f"(100 %) (95 % CI, {gap['n']} paired episodes)"
            )
        return lines

    def legend(self) -> list[str]:
        """What the table's columns mean, in plain words (printed under the table)."""
        ticks = f" of {self.episode_ticks} ticks" if self.episode_ticks else ""
        lines = [
            f"Each cell: mean [95 % CI] over {self.episodes} paired episodes{ticks} (seeds "
            f"{self.seed}..{self.seed + self.episodes - 1}); intervals of counts are clipped "
            "at 0.",
            "- return: the episode's summed reward (value-weighted goal attainment per tick "
            "minus the costs of units moved and rollbacks); higher is better.",
            "- goal attainment: value-weighted share of demand served within its SLO, mean per "
            "tick (1 = all of it).",
            "- gap closed: mean(return - static) / mean(oracle - static) over the episodes "
            "(ratio of means; CI by a seeded paired bootstrap): 0 = static allocation, 1 = the "
            "oracle upper bound.",
            f"- SLO-violation ticks: ticks in which some module served less than "
            f"{100 * SLO_TARGET:.0f} % of its demand within its SLO.",
            "- units moved: units shifted per episode, rollbacks included; rollbacks: shifts "
            "the guard undid because they hurt.",
            "- invalid: ticks per episode whose plan asked for units (requests with offers "
            "against them) and the SafetyGuard could move none (modules still in their "
            "stabilization window, at their floor or share cap, or the tick's budget spent); "
            "they move nothing and cost nothing.",
        ]
        paths = {n: lab for n, lab in self.labels.items() if lab != n}
        for name, lab in paths.items():
            lines.append(f"- {lab} = {name}")
        return lines

    def markdown(self) -> str:
        """The result table: mean [95 % CI] per metric and policy, then paired differences."""
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
                f"| {self.label(name)} | {fmt(s['return'], 1)} | "
                f"{fmt(s['goal_attainment'], 4)} | {fmt(s['gap_closed'], 3)} "
                f"| {fmt(s['slo_violation_ticks'], 1)} | {fmt(s['units_moved'], 0)} "
                f"| {fmt(s['rollbacks'], 1)} | {fmt(s['invalid_actions'], 1)} |"
            )
        if d["differences"]:
            first = self.label(d["paired_against"])
            lines += [
                "",
                f"Paired difference `{first}` minus each policy, per episode (mean [95 % CI]; "
                f"positive: `{first}` did better):",
                "",
            ]
            lines += ["| policy | return | goal attainment | gap closed |", "|---|---:|---:|---:|"]
            for name, s in d["differences"].items():
                lines.append(
                    f"| {self.label(name)} | {fmt(s['return'], 2)} | "
                    f"{fmt(s['goal_attainment'], 4)} | {fmt(s['gap_closed'], 3)} |"
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


BOOTSTRAP_RESAMPLES = 2000


def ratio_of_means(
    gain: np.ndarray, span: np.ndarray, ticks: int, resamples: int = BOOTSTRAP_RESAMPLES
) -> dict[str, Any]:
    """``mean(gain) / mean(span)`` over paired episodes with a 95 % percentile bootstrap
    interval (episodes resampled together, seed 0: the same inputs give the same interval).

    Undefined (``"mean": None`` and the reason in ``"undefined"``) when the mean span is below
    ``GAP_MIN_HEADROOM`` per tick; resamples below it are left out of the interval.
    """
    gain, span = np.asarray(gain, dtype=np.float64), np.asarray(span, dtype=np.float64)
    n, least = len(gain), GAP_MIN_HEADROOM * max(int(ticks), 1)
    if n == 0 or not np.isfinite(span).all() or not span.mean() > least:
        return {
            "mean": None,
            "ci95": [None, None],
            "n": 0,
            "undefined": (
                f"the oracle's mean headroom over static is below {GAP_MIN_HEADROOM:g} goal "
                "attainment per tick (static already serves about all the demand): there is no "
                "improvement to close"
            ),
        }
    mean = float(gain.mean() / span.mean())
    if n < 2 or resamples < 1:
        return {"mean": mean, "ci95": [mean, mean], "n": n}
    idx = np.random.default_rng(0).integers(0, n, size=(resamples, n))
    den = span[idx].mean(axis=1)
    ratios = gain[idx].mean(axis=1)[den > least] / den[den > least]
    lo, hi = np.percentile(ratios, [2.5, 97.5]) if ratios.size else (mean, mean)
    return {"mean": mean, "ci95": [float(lo), float(hi)], "n": n}


def over_seeds_and_episodes(
    values: np.ndarray, span: np.ndarray | None = None, resamples: int = BOOTSTRAP_RESAMPLES
) -> dict[str, Any]:
    """Mean of ``values[j, i]`` (training seed ``j`` of one recipe, paired episode ``i``) with
    a 95 % percentile bootstrap interval that resamples **both** the training seeds and the
    episodes (seed 0). With ``span`` (per episode, the oracle's headroom over static) it is
    the ratio of means ``mean(values) / mean(span)``: gap closed, ``values`` the gains.

    Episodes are shared by every seed (the same report seeds), so one episode resample serves
    all seeds: the crossed design's two sources of noise, a training run's luck and the
    episodes', both widen the interval. Over few seeds a percentile bootstrap is narrow (it
    cannot see more spread than the seeds show); the per-seed figures go next to it.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or 0 in v.shape or not np.isfinite(v).all():
        return {"mean": None, "ci95": [None, None], "seeds": 0, "n": 0}
    seeds, n = v.shape
    if span is not None:
        span = np.asarray(span, dtype=np.float64)
        if span.shape != (n,) or not np.isfinite(span).all() or not span.mean() > GAP_MIN_HEADROOM:
            return {"mean": None, "ci95": [None, None], "seeds": seeds, "n": n,
                    "undefined": "the oracle's mean headroom over static is below "
                    f"{GAP_MIN_HEADROOM:g} goal attainment per tick"}  # fmt: skip
    den = 1.0 if span is None else float(span.mean())
    mean = float(v.mean() / den)
    if seeds * n < 2 or resamples < 1:
        return {"mean": mean, "ci95": [mean, mean], "seeds": seeds, "n": n}
    rng = np.random.default_rng(0)
    js = rng.integers(0, seeds, size=(resamples, seeds))
    eps = rng.integers(0, n, size=(resamples, n))
    # mean over the resampled seeds and episodes: mean_j' mean_i' v[j', i']
    per_seed = np.take_along_axis(v[js], eps[:, None, :], axis=2).mean(axis=(1, 2))
    if span is None:
        stats_ = per_seed
    else:
        dens = span[eps].mean(axis=1)
        ok = dens > GAP_MIN_HEADROOM
        stats_ = per_seed[ok] / dens[ok]
    lo, hi = np.percentile(stats_, [2.5, 97.5]) if stats_.size else (mean, mean)
    return {"mean": mean, "ci95": [float(lo), float(hi)], "seeds": seeds, "n": n}


def evaluate(
    policies: Sequence[str],
    scenario: str | os.PathLike | ScenarioConfig,
    episodes: int = 20,
    seed: int = 0,
    trace: str | os.PathLike | None = None,
    workers: int | None = 1,
    record: bool = False,
    ray_address: str | None = None,
) -> EvaluationReport:
    """Evaluate ``policies`` on the same ``episodes`` (seeds ``seed .. seed + episodes - 1``).

    ``workers`` and ``ray_address`` say how the episodes fan out (see
    :class:`shift_rl.distributed.FanOut`: serially, over processes, over a local Ray or a
    Ray cluster); the report is the same whichever is used.
    """
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
    if workers is not None and workers < 1:
        raise EvaluationError(f"workers must be >= 1, got {workers}")
    cfg = load_scenario(scenario)
    if trace is not None:
        cfg = with_trace(cfg, trace)
    names = list(dict.fromkeys(policies))
    everything = [*names, *(r for r in ("static", "oracle") if r not in names)]
    env = ResourceShiftEnv(cfg)
    labels = {"oracle": "oracle"}
    for name in everything:  # fail fast, before any episode runs
        if name != "oracle":
            labels[name] = policy_label(name, load_any_policy(name, env))
    if len(set(labels.values())) < len(labels):  # two exports of one run: show their paths
        labels = {name: name for name in labels}
    quality = trace_quality(env.params)  # loads the trace: a bad one fails here, once
    start = time.perf_counter()
    with FanOut(workers, ray_address) as pool:  # serial, processes or Ray: same results
        chunks = max(1, min(episodes, pool.width))
        parts = [list(range(episodes))[k::chunks] for k in range(chunks)]
        tasks = [(cfg, name, part, seed, record) for name in everything for part in parts]
        done = pool.map(_run_chunk, *zip(*tasks, strict=True))
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
        labels=labels,
        episode_ticks=cfg.episode_ticks,
        tick_seconds=float(cfg.tick_seconds),
        trace_quality=quality,
    )


PLOTS_KIND = "evaluation figures"


def check_plots_dir(directory: str | os.PathLike) -> None:
    """Raise :class:`~shift_rl.outputs.OutputError` unless :func:`plot` may write there."""
    from shift_rl.outputs import check_dir

    check_dir(directory, PLOTS_KIND)


def plot(report: EvaluationReport, directory: str | os.PathLike) -> list[Path]:
    """Write the figures of :mod:`shift_rl.plots` into ``directory``; return their paths.

    ``directory`` must be new, empty or hold earlier figures (:mod:`shift_rl.outputs`); the
    earlier figures are replaced, other files stay.
    """
    from shift_rl.outputs import claim_dir
    from shift_rl.plots import figures

    check_plots_dir(directory)
    rendered = figures(report)
    return claim_dir(directory, PLOTS_KIND).replace_files(rendered)


__all__ = [
    "EpisodeResult",
    "EvaluationError",
    "EvaluationReport",
    "Verdict",
    "check_plots_dir",
    "evaluate",
    "gap_closed",
    "plot",
]
