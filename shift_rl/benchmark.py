"""Leaderboard of shift policies over the held-out (``eval``) members of a workload suite.

:func:`benchmark` expands the suite's ``eval`` split (:mod:`shift_rl.suite`: held-out
randomized variants, the late part of every trace), plays every policy on the same episodes
of every scenario (episode ``i`` is seed ``seed + i``: report seeds, never training ones; see
:mod:`shift_rl.seeds`), always with ``static`` and the ``oracle`` bound, and by default the
baselines ``potential`` and ``hpa`` (with their tuned parameters from ``agents/``),
``proportional``, ``static`` and ``oracle-mpc``. All episodes of all scenarios go through one
:class:`~shift_rl.distributed.FanOut` (serial, processes or Ray: the same numbers).

Per scenario class (the classes of the suite's members) episodes are pooled over the class's
scenarios, each measured **per tick** (return / episode ticks) so scenarios of different
lengths weigh alike:

* *gap closed* = mean(return - static) / mean(oracle - static) over the pooled episodes (the
  ratio of means of :func:`shift_rl.evaluate.ratio_of_means`, 95 % seeded paired bootstrap);
* the first policy's *paired differences* against each baseline: return per tick (mean and
  95 % Student t interval over the pooled episodes) and gap closed (first minus baseline, the
  same ratio of means of the paired gains);
* a plain verdict per class and baseline: ``X beats Y on class C by ...`` when the return
  interval lies above 0, ``loses to`` below, else ``shows no significant difference``.

The pooled intervals treat the episodes of a class as independent draws; scenarios of one
class differ (variants, module counts), so read them as intervals over that mix.
:meth:`Leaderboard.to_dict` holds no timing, path or date: the same inputs give the same JSON,
byte for byte.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shift_rl.distributed import FanOut
from shift_rl.env import ResourceShiftEnv
from shift_rl.evaluate import (
    EvaluationError,
    EvaluationReport,
    _run_chunk,
    _summary,
    load_any_policy,
    policy_label,
    ratio_of_means,
)
from shift_rl.sim.exogenous import trace_quality
from shift_rl.suite import Expansion, Suite, expand_suite, load_suite

logger = logging.getLogger(__name__)

BASELINES = ("potential", "hpa", "proportional", "static", "oracle-mpc")
"""Compared with the first policy unless told otherwise (the references of DESIGN.md)."""
KIND = "benchmark leaderboard"
FILES = ("leaderboard.json", "leaderboard.md", "leaderboard.png")


@dataclass
class Leaderboard:
    """Per scenario class, the paired results of every policy on the suite's eval members."""

    suite: str
    episodes: int
    seed: int
    policies: list[str]
    """What was asked for (the first is the one judged), then the baselines added."""
    labels: dict[str, str]
    reports: list[tuple[str, str, EvaluationReport]]
    """(class, member/variant, report) per scenario, in suite order."""
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def first(self) -> str:
        return self.policies[0]

    @property
    def classes(self) -> list[str]:
        return list(dict.fromkeys(c for c, _, _ in self.reports))

    def _pooled(self, cls: str, name: str) -> np.ndarray:
        """Return per tick of ``name``, every episode of every scenario of ``cls``."""
        parts = [
            r.per_episode(name, "return") / max(r.episode_ticks, 1)
            for c, _, r in self.reports
            if c == cls
        ]
        return np.concatenate(parts)

    def _goal(self, cls: str, name: str) -> np.ndarray:
        return np.concatenate(
            [r.per_episode(name, "goal_attainment") for c, _, r in self.reports if c == cls]
        )

    def class_summary(self, cls: str) -> dict[str, Any]:
        static, oracle = self._pooled(cls, "static"), self._pooled(cls, "oracle")
        span = oracle - static
        out: dict[str, Any] = {
            "scenarios": [key for c, key, _ in self.reports if c == cls],
            "episodes": int(static.size),
            "policies": {},
            "differences": {},
        }
        for name in [*self.policies, "oracle"]:
            ret = self._pooled(cls, name)
            out["policies"][name] = {
                "gap_closed": ratio_of_means(ret - static, span, 1),
                "return_per_tick": _summary(ret),
                "goal_attainment": _summary(self._goal(cls, name), (0.0, 1.0)),
            }
        mine = self._pooled(cls, self.first)
        for name in self.baselines:
            theirs = self._pooled(cls, name)
            out["differences"][name] = {
                "return_per_tick": _summary(mine - theirs),
                "gap_closed": ratio_of_means(mine - theirs, span, 1),
            }
        return out

    @property
    def baselines(self) -> list[str]:
        """What the first policy is judged against: every other policy."""
        return list(self.policies[1:])

    def verdicts(self) -> list[dict[str, Any]]:
        """One verdict per class and baseline, on the paired return per tick."""
        out = []
        for cls in self.classes:
            s = self.class_summary(cls)
            for name in self.baselines:
                d = s["differences"][name]
                ret, gap = d["return_per_tick"], d["gap_closed"]
                if ret["mean"] is None:
                    continue
                lo, hi = ret["ci95"]
                n = ret["n"]
                outcome = (
                    "beats" if n >= 2 and lo > 0 else "loses to" if n >= 2 and hi < 0 else None
                )
                me, other = self.labels[self.first], self.labels[name]
                amount = f"{ret['mean']:+.4f} return per tick [{lo:+.4f}, {hi:+.4f}]"
                if gap["mean"] is not None:
                    glo, ghi = gap["ci95"]
                    amount += f" and {gap['mean']:+.3f} gap closed [{glo:+.3f}, {ghi:+.3f}]"
                how = f"(95 % CI, {n} paired episodes)"
                if outcome is None:
                    text = (
                        f"{me} shows no significant difference from {other} on class {cls}: "
                        f"{amount} {how}"
                    )
                else:
                    text = f"{me} {outcome} {other} on class {cls} by {amount} {how}"
                out.append(
                    {
                        "class": cls,
                        "policy": self.first,
                        "baseline": name,
                        "outcome": outcome or "no significant difference from",
                        "text": text,
                    }
                )
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; identical for identical inputs (no timings, dates or paths)."""
        return {
            "suite": self.suite,
            "split": "eval",
            "episodes": self.episodes,
            "seed": self.seed,
            "policies": self.policies,
            "labels": self.labels,
            "paired_against": self.first,
            "measure": (
                "per scenario class, episodes of all its scenarios pooled, each in return per "
                "tick; gap closed = mean(return - static) / mean(oracle - static) (ratio of "
                "means, seeded paired bootstrap 95 % CI); differences = first policy minus the "
                "baseline (positive: the first did better)"
            ),
            "class_order": self.classes,
            "classes": {cls: self.class_summary(cls) for cls in self.classes},
            "verdicts": self.verdicts(),
            "scenarios": [
                {"class": cls, "scenario": key, **r.to_dict()} for cls, key, r in self.reports
            ],
            "skipped": list(self.skipped),
        }

    def markdown(self) -> str:
        d = self.to_dict()

        def fmt(s: dict[str, Any], digits: int, signed: bool = False) -> str:
            if s["mean"] is None:
                return "undefined" if "undefined" in s else "—"
            f = f"+.{digits}f" if signed else f".{digits}f"
            lo, hi = s["ci95"]
            return f"{s['mean']:{f}} [{lo:{f}}, {hi:{f}}]"

        lab = self.labels
        lines = [
            f"# Leaderboard: suite `{self.suite}`, eval split",
            "",
            f"{self.episodes} paired episodes per scenario (seeds {self.seed}.."
            f"{self.seed + self.episodes - 1}); per class, the episodes of its scenarios "
            "pooled, in return per tick. Gap closed: mean(return − static) / mean(oracle − "
            "static), 0 = static, 1 = the oracle upper bound (95 % CI, paired bootstrap).",
            "",
        ]
        names = [*self.policies, "oracle"]
        head = "| class | scenarios | " + " | ".join(lab[n] for n in names) + " |"
        lines += ["## Gap closed per class", "", head, "|---|---:|" + "---:|" * len(names)]
        for cls in d["class_order"]:
            s = d["classes"][cls]
            cells = [fmt(s["policies"][n]["gap_closed"], 2) for n in names]
            lines.append(f"| {cls} | {len(s['scenarios'])} | " + " | ".join(cells) + " |")
        if self.baselines:
            first = lab[self.first]
            lines += [
                "",
                f"## `{first}` minus each baseline, paired",
                "",
                "Return per tick (mean [95 % CI]) / gap closed (first minus baseline):",
                "",
                "| class | " + " | ".join(f"vs {lab[n]}" for n in self.baselines) + " |",
                "|---|" + "---:|" * len(self.baselines),
            ]
            for cls in d["class_order"]:
                s = d["classes"][cls]
                cells = [
                    f"{fmt(s['differences'][n]['return_per_tick'], 4, True)} / "
                    f"{fmt(s['differences'][n]['gap_closed'], 3, True)}"
                    for n in self.baselines
                ]
                lines.append(f"| {cls} | " + " | ".join(cells) + " |")
        lines += ["", "## Verdicts", ""] + [f"- {v['text']}" for v in d["verdicts"]]
        lines += ["", "## Scenarios", ""]
        for cls, key, r in self.reports:
            kinds = "+".join(r.kinds)
            lines.append(
                f"- {cls}: `{key}` ({len(r.modules)} modules, {kinds}, {r.episode_ticks} ticks; "
                f"fingerprint {r.fingerprint})"
            )
        if self.skipped:
            lines += ["", "## Skipped", ""] + [f"- {s}" for s in self.skipped]
        return "\n".join(lines) + "\n"

    def figure(self) -> bytes:
        """Gap closed per class and policy (dot and 95 % CI), in the style of
        :mod:`shift_rl.plots`; PNG bytes."""
        from shift_rl.plots import _FIXED, _PALETTE, _figure, _png, _style

        d = self.to_dict()
        names = [*self.policies]
        col, k = {}, 0
        for n in names:
            if n in _FIXED:
                col[n] = _FIXED[n]
            else:
                col[n] = _PALETTE[k % len(_PALETTE)]
                k += 1
        classes = list(d["class_order"])
        fig = _figure(11, max(3.0, 0.55 * len(classes) * max(1, len(names)) / 3 + 2.0))
        ax = fig.subplots()
        step = 0.8 / max(len(names), 1)
        for j, n in enumerate(names):
            xs, ys, los, his = [], [], [], []
            for y, cls in enumerate(classes):
                s = d["classes"][cls]["policies"][n]["gap_closed"]
                if s["mean"] is None:
                    continue
                xs.append(s["mean"])
                ys.append(y - 0.4 + step * (j + 0.5))
                los.append(s["mean"] - s["ci95"][0])
                his.append(s["ci95"][1] - s["mean"])
            ax.errorbar(xs, ys, xerr=[los, his], fmt="o", ms=5, color=col[n], ecolor=col[n],
                        elinewidth=1.6, capsize=3, label=self.labels[n])  # fmt: skip
        ax.axvline(1.0, color="black", ls="--", lw=1.2)
        ax.axvline(0.0, color=_FIXED["static"], ls=":", lw=1)
        ax.set_yticks(range(len(classes)), classes)
        ax.set_ylim(len(classes) - 0.5, -0.5)
        ax.set_xlabel("gap closed: mean(return − static) / mean(oracle − static); dashed: oracle")
        _style(ax)
        ax.legend(loc="best", frameon=False, fontsize=9)
        fig.suptitle(
            f"Leaderboard of suite '{self.suite}' (eval split): gap closed per class, 95 % CI\n"
            f"{self.episodes} paired episodes per scenario (seeds {self.seed}.."
            f"{self.seed + self.episodes - 1})",
            fontsize=12,
        )
        return _png(fig)


def benchmark(
    suite: str | os.PathLike | Suite,
    policies: Sequence[str],
    episodes: int = 5,
    seed: int = 0,
    baselines: Sequence[str] | None = BASELINES,
    workers: int | None = 1,
    ray_address: str | None = None,
    leave_out: Iterable[str] = (),
    only: Iterable[str] | None = None,
) -> Leaderboard:
    """Evaluate ``policies`` (the first one is judged) and the ``baselines`` on every eval
    scenario of ``suite``; see the module docstring."""
    if not policies:
        raise EvaluationError("no policy given: expected at least one name")
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise EvaluationError(f"episodes must be an integer >= 1, got {episodes!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= 2**63 - episodes:
        raise EvaluationError(f"seed must be an integer >= 0, got {seed!r}")
    s = load_suite(suite)
    expansion: Expansion = expand_suite(s, "eval", leave_out=leave_out, only=only)
    if not expansion.scenarios:
        notes = "; ".join(expansion.skipped) or "no member is for the eval split"
        raise EvaluationError(f"suite {s.name!r} has no eval scenario to report on: {notes}")
    asked = [n for n in dict.fromkeys(policies) if n != "oracle"]
    names = [*asked, *(b for b in (baselines or ()) if b not in asked and b != "oracle")]
    names += [n for n in ("static",) if n not in names]
    everything = [*names, "oracle"]
    labels = {"oracle": "oracle"}
    for sc in expansion.scenarios:  # fail fast: every policy on every scenario, traces loaded
        env = ResourceShiftEnv(sc.scenario)
        for name in names:
            try:
                policy = load_any_policy(name, env)
            except EvaluationError as err:
                raise EvaluationError(f"{sc.key} ({sc.class_}): {err}") from None
            labels.setdefault(name, policy_label(name, policy))
        trace_quality(env.params)
    start = time.perf_counter()
    tasks = []
    with FanOut(workers, ray_address) as pool:
        chunks = max(1, min(episodes, pool.width))
        parts = [list(range(episodes))[k::chunks] for k in range(chunks)]
        for k, sc in enumerate(expansion.scenarios):
            for name in everything:
                for part in parts:
                    tasks.append((k, sc.scenario, name, part))
        done = pool.map(
            _run_chunk,
            [t[1] for t in tasks],
            [t[2] for t in tasks],
            [t[3] for t in tasks],
            [seed] * len(tasks),
            [False] * len(tasks),
        )
    reports = []
    for k, sc in enumerate(expansion.scenarios):
        results: dict[str, list] = {name: [] for name in everything}
        for (j, _, _, _), chunk in zip(tasks, done, strict=True):
            if j == k:
                for r in chunk:
                    results[r.policy].append(r)
        for rs in results.values():
            rs.sort(key=lambda r: r.episode)
        env = ResourceShiftEnv(sc.scenario)
        report = EvaluationReport(
            scenario=sc.scenario.name,
            fingerprint=env.params.fingerprint(),
            episodes=episodes,
            seed=seed,
            trace=None,
            policies=names,
            modules=env.module_names,
            kinds=sc.scenario.resource_names,
            results=results,
            labels={n: labels[n] for n in everything},
            episode_ticks=sc.scenario.episode_ticks,
            tick_seconds=float(sc.scenario.tick_seconds),
            trace_quality=trace_quality(env.params),
        )
        reports.append((sc.class_, sc.key, report))
    return Leaderboard(
        suite=expansion.suite,
        episodes=episodes,
        seed=seed,
        policies=names,
        labels={n: labels[n] for n in everything},
        reports=reports,
        skipped=list(expansion.skipped),
        seconds=time.perf_counter() - start,
    )


def check_out_dir(directory: str | os.PathLike) -> None:
    """Raise :class:`~shift_rl.outputs.OutputError` unless :func:`write` may write there."""
    from shift_rl.outputs import check_dir

    check_dir(directory, KIND)


def render(board: Leaderboard) -> dict[str, bytes]:
    """The leaderboard's files: JSON (sorted keys), Markdown and the figure."""
    import json

    text = json.dumps(board.to_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n"
    return {
        "leaderboard.json": text.encode(),
        "leaderboard.md": board.markdown().encode(),
        "leaderboard.png": board.figure(),
    }


def write(board: Leaderboard, directory: str | os.PathLike) -> list[Path]:
    """Write :func:`render`'s files into ``directory`` (claimed: new, empty or an earlier
    leaderboard, see :mod:`shift_rl.outputs`), atomically; return their paths."""
    from shift_rl.outputs import claim_dir

    check_out_dir(directory)
    return claim_dir(directory, KIND).replace_files(render(board))


__all__ = ["BASELINES", "Leaderboard", "benchmark", "check_out_dir", "render", "write"]
