"""Leaderboard of shift policies over the held-out (``eval``) members of a workload suite.

:func:`benchmark` expands the suite's ``eval`` split (:mod:`shift_rl.suite`: held-out
randomized variants, the late part of every trace), plays every policy on the same episodes
of every scenario (episode ``i`` is seed ``seed + i``: report seeds, never training ones; see
:mod:`shift_rl.seeds`), always with ``static`` and the ``oracle`` bound, and by default the
baselines ``potential``, ``hpa``, ``proportional`` and ``mpc`` (with tuned parameters, see
below), ``static`` and ``oracle-mpc``. All episodes of all scenarios go through one
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

One training run is one draw of a recipe: ``recipe=LABEL`` says the policies asked for are
training seeds of one recipe. They are then also judged pooled (``across_seeds`` in the
JSON): per class the mean over seeds and episodes with a 95 % bootstrap interval that
resamples both (:func:`~shift_rl.evaluate.over_seeds_and_episodes`), each seed's own gap
closed, and how many seeds alone lie above or below each baseline.

Baseline parameters (:func:`baseline_parameters`): a tunable baseline (``potential``,
``hpa``, ``proportional``, ``mpc``) plays with the parameters tuned on **the same suite's train
members** when they exist, ``agents/suites/<suite>/<name>/params.json`` (with ``--only`` or
``--leave-out`` FAMILIES, ``agents/suites/<suite>-without-<families>/`` first: baselines as
blind to those families as a policy trained without them), else with the parameters tuned on
the shipped scenarios (``agents/<name>/params.json``), else with its defaults. ``tuned_dir``
names another folder (``"default"``: the scenario-tuned ones only). The leaderboard records,
per baseline, which file it used, what that was tuned on and the parameters.

:meth:`Leaderboard.to_dict` holds no timing or date, and no path but those parameter files'
(relative to the project when inside it): the same inputs give the same JSON, byte for byte.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shift_rl.agents import POLICIES, SUITE_TUNED_DIR, TUNED_DIR
from shift_rl.config import PROJECT_ROOT, ScenarioConfig
from shift_rl.distributed import FanOut
from shift_rl.env import ResourceShiftEnv
from shift_rl.evaluate import (
    EpisodeResult,
    EvaluationError,
    EvaluationReport,
    _run_chunk,
    _summary,
    load_any_policy,
    over_seeds_and_episodes,
    policy_label,
    ratio_of_means,
    run_episode,
)
from shift_rl.sim.exogenous import trace_quality
from shift_rl.suite import Expansion, Suite, expand_suite, left_out_name, load_suite

logger = logging.getLogger(__name__)

BASELINES = ("potential", "hpa", "proportional", "mpc", "static", "oracle-mpc")
"""Compared with the first policy unless told otherwise (the references of DESIGN.md)."""
KIND = "benchmark leaderboard"
FILES = ("leaderboard.json", "leaderboard.md", "leaderboard.png")
TUNABLE = ("potential", "hpa", "proportional", "mpc")
"""Baselines with tuned parameters (``shift_rl.tuning.SEARCH_SPACES``)."""


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
    parameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per tunable policy played: the parameters, their file and what they were tuned on."""
    recipe: list[str] = field(default_factory=list)
    """Policies that are training seeds of one recipe (``recipe_label``), also judged pooled."""
    recipe_label: str | None = None

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
        """What the first policy (and a recipe) is judged against: every other policy but the
        recipe's other seeds."""
        return [n for n in self.policies[1:] if n not in self.recipe]

    def recipe_summary(self, cls: str) -> dict[str, Any]:
        """The recipe's seeds pooled on ``cls``: gap closed and paired differences over
        training seeds and episodes (:func:`~shift_rl.evaluate.over_seeds_and_episodes`),
        and what each seed alone shows."""
        static, oracle = self._pooled(cls, "static"), self._pooled(cls, "oracle")
        span = oracle - static
        mine = np.stack([self._pooled(cls, n) for n in self.recipe])
        out: dict[str, Any] = {
            "gap_closed": over_seeds_and_episodes(mine - static, span),
            "per_seed_gap_closed": {
                n: ratio_of_means(row - static, span, 1)["mean"]
                for n, row in zip(self.recipe, mine, strict=True)
            },
            "differences": {},
        }
        for name in self.baselines:
            theirs = self._pooled(cls, name)
            alone = [_summary(row - theirs) for row in mine]
            out["differences"][name] = {
                "return_per_tick": over_seeds_and_episodes(mine - theirs),
                "seeds_above": sum(s["n"] >= 2 and s["ci95"][0] > 0 for s in alone),
                "seeds_below": sum(s["n"] >= 2 and s["ci95"][1] < 0 for s in alone),
            }
        return out

    def recipe_verdicts(
        self, summaries: dict[str, dict[str, Any]] | None = None
    ) -> list[dict[str, Any]]:
        """Per class and baseline, the recipe's verdict over its seeds pooled (``summaries``:
        :meth:`recipe_summary` per class, if already computed: each is a bootstrap)."""
        if not self.recipe:
            return []
        out = []
        k = len(self.recipe)
        for cls in self.classes:
            s = summaries[cls] if summaries is not None else self.recipe_summary(cls)
            for name in self.baselines:
                d = s["differences"][name]
                ret = d["return_per_tick"]
                if ret["mean"] is None:
                    continue
                lo, hi = ret["ci95"]
                outcome = "beats" if lo > 0 else "loses to" if hi < 0 else None
                amount = (
                    f"{ret['mean']:+.4f} return per tick [{lo:+.4f}, {hi:+.4f}] (95 % CI over "
                    f"{k} training seeds x {ret['n']} paired episodes; seeds alone: "
                    f"{d['seeds_above']} above zero, {d['seeds_below']} below)"
                )
                me, other = f"{self.recipe_label} ({k} seeds)", self.labels[name]
                if outcome is None:
                    text = f"{me} shows no significant difference from {other} on class {cls}: "
                else:
                    text = f"{me} {outcome} {other} on class {cls} by "
                out.append(
                    {
                        "class": cls,
                        "baseline": name,
                        "outcome": outcome or "no significant difference from",
                        "text": text + amount,
                    }
                )
        return out

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
        classes = {cls: self.class_summary(cls) for cls in self.classes}
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
            "parameters": self.parameters,
            "class_order": self.classes,
            "classes": classes,
            "mean_gap_closed": {
                n: _mean_of([classes[c]["policies"][n]["gap_closed"]["mean"] for c in classes])
                for n in [*self.policies, "oracle"]
            },
            "verdicts": self.verdicts(),
            "scenarios": [
                {"class": cls, "scenario": key, **r.to_dict()} for cls, key, r in self.reports
            ],
            "skipped": list(self.skipped),
            **({"across_seeds": self._across_seeds()} if self.recipe else {}),
        }

    def _across_seeds(self) -> dict[str, Any]:
        classes = {cls: self.recipe_summary(cls) for cls in self.classes}
        return {
            "label": self.recipe_label,
            "policies": list(self.recipe),
            "measure": (
                "the recipe's training seeds pooled: mean over seeds and paired episodes, 95 % "
                "percentile bootstrap resampling both; seeds_above / seeds_below: seeds whose "
                "own paired interval lies above / below zero"
            ),
            "classes": classes,
            "verdicts": self.recipe_verdicts(classes),
        }

    def _versus_table(self, d: dict[str, Any], cell: Callable[[str, str], str]) -> list[str]:
        """A table of one row per class and one ``cell(cls, baseline)`` per baseline."""
        lab = self.labels
        lines = [
            "",
            "| class | " + " | ".join(f"vs {lab[n]}" for n in self.baselines) + " |",
            "|---|" + "---:|" * len(self.baselines),
        ]
        for cls in d["class_order"]:
            lines.append(f"| {cls} | " + " | ".join(cell(cls, n) for n in self.baselines) + " |")
        return lines

    def _recipe_markdown(self, d: dict[str, Any], fmt: Any) -> list[str]:
        a, lab = d["across_seeds"], self.labels
        pooled = _mean_of([a["classes"][c]["gap_closed"]["mean"] for c in d["class_order"]])
        seed_means = [
            _mean_of([a["classes"][c]["per_seed_gap_closed"][n] for c in d["class_order"]])
            for n in self.recipe
        ]
        k = len(self.recipe)
        lines = [
            "",
            f"## Across training seeds: `{self.recipe_label}` ({k} seeds)",
            "",
            f"Its seeds pooled ({', '.join(f'`{lab[n]}`' for n in self.recipe)}): mean over "
            "seeds and paired episodes, 95 % CI resampling both; per seed, its own gap closed.",
            "",
            "| class | pooled | per seed | " + " | ".join(lab[n] for n in self.baselines) + " |",
            "|---|---:|---:|" + "---:|" * len(self.baselines),
        ]
        for cls in d["class_order"]:
            s = a["classes"][cls]
            seeds = ", ".join(
                "—" if g is None else f"{g:.2f}" for g in s["per_seed_gap_closed"].values()
            )
            cols = d["classes"][cls]["policies"]
            theirs = [fmt(cols[n]["gap_closed"], 2) for n in self.baselines]
            lines.append(
                f"| {cls} | {fmt(s['gap_closed'], 2)} | {seeds} | " + " | ".join(theirs) + " |"
            )
        shown = [
            "—" if m is None else f"{m:.3f}"
            for m in [pooled, *seed_means, *(d["mean_gap_closed"][n] for n in self.baselines)]
        ]
        lines.append(
            f"| **mean of the classes** | {shown[0]} | {', '.join(shown[1 : k + 1])} | "
            + " | ".join(shown[k + 1 :])
            + " |"
        )
        lines += [
            "",
            f"Paired return per tick, `{self.recipe_label}` minus each baseline (seeds above / "
            "below zero alone):",
        ]

        def cell(cls: str, n: str) -> str:
            s = a["classes"][cls]["differences"][n]
            return f"{fmt(s['return_per_tick'], 4, True)} ({s['seeds_above']}↑ {s['seeds_below']}↓)"

        lines += self._versus_table(d, cell)
        lines += ["", "### Verdicts over the seeds", ""] + [f"- {v['text']}" for v in a["verdicts"]]
        return lines

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
        if self.parameters:
            lines += ["## Baseline parameters", ""]
            for n, info in self.parameters.items():
                lines.append(f"- `{lab[n]}`: {info['tuned_on']}")
            lines.append("")
        names = [*self.policies, "oracle"]
        head = "| class | scenarios | " + " | ".join(lab[n] for n in names) + " |"
        lines += ["## Gap closed per class", "", head, "|---|---:|" + "---:|" * len(names)]
        for cls in d["class_order"]:
            s = d["classes"][cls]
            cells = [fmt(s["policies"][n]["gap_closed"], 2) for n in names]
            lines.append(f"| {cls} | {len(s['scenarios'])} | " + " | ".join(cells) + " |")
        means = ["—" if d["mean_gap_closed"][n] is None else f"{d['mean_gap_closed'][n]:.3f}"
                 for n in names]  # fmt: skip
        lines.append(
            f"| **mean of the classes** | {len(d['scenarios'])} | " + " | ".join(means) + " |"
        )
        if self.baselines:
            first = lab[self.first]
            lines += [
                "",
                f"## `{first}` minus each baseline, paired",
                "",
                "Return per tick (mean [95 % CI]) / gap closed (first minus baseline):",
            ]

            def cell(cls: str, n: str) -> str:
                s = d["classes"][cls]["differences"][n]
                return f"{fmt(s['return_per_tick'], 4, True)} / {fmt(s['gap_closed'], 3, True)}"

            lines += self._versus_table(d, cell)
        lines += ["", "## Verdicts", ""] + [f"- {v['text']}" for v in d["verdicts"]]
        if self.recipe:
            lines += self._recipe_markdown(d, fmt)
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


def _mean_of(values: list[float | None]) -> float | None:
    """The mean of per-class figures; None if a class has none (gap closed undefined)."""
    return None if not values or None in values else float(np.mean(values))


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
    tuned_dir: str | os.PathLike | None = None,
    recipe: str | None = None,
) -> Leaderboard:
    """Evaluate ``policies`` (the first one is judged) and the ``baselines`` on every eval
    scenario of ``suite``; see the module docstring (``tuned_dir``: see
    :func:`baseline_parameters`). With ``recipe`` (a label) the ``policies`` are training
    seeds of one recipe, two or more, also judged pooled."""
    if not policies:
        raise EvaluationError("no policy given: expected at least one name")
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise EvaluationError(f"episodes must be an integer >= 1, got {episodes!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= 2**63 - episodes:
        raise EvaluationError(f"seed must be an integer >= 0, got {seed!r}")
    s = load_suite(suite)
    leave_out, only = list(leave_out), (None if only is None else list(only))
    expansion: Expansion = expand_suite(s, "eval", leave_out=leave_out, only=only)
    if not expansion.scenarios:
        notes = "; ".join(expansion.skipped) or "no member is for the eval split"
        raise EvaluationError(f"suite {s.name!r} has no eval scenario to report on: {notes}")
    asked = [n for n in dict.fromkeys(policies) if n != "oracle"]
    if recipe is not None and (not str(recipe).strip() or len(asked) < 2):
        raise EvaluationError(
            f"recipe {recipe!r}: expected a label and two or more policies (its training "
            f"seeds), got {len(asked)} policy(ies)"
        )
    names = [*asked, *(b for b in (baselines or ()) if b not in asked and b != "oracle")]
    names += [n for n in ("static",) if n not in names]
    everything = [*names, "oracle"]
    source = Path(s.source)
    digest = hashlib.sha256(source.read_bytes()).hexdigest() if source.is_file() else None
    chosen = baseline_parameters(s.name, names, tuned_dir, only or leave_out, digest)
    given = {n: chosen[n]["params"] for n in chosen}
    labels = {"oracle": "oracle"}
    for sc in expansion.scenarios:  # fail fast: every policy on every scenario, traces loaded
        env = ResourceShiftEnv(sc.scenario)
        for name in names:
            try:
                if name in given:
                    policy = POLICIES[name](env.params, **given[name])
                else:
                    policy = load_any_policy(name, env)
            except (EvaluationError, ValueError, TypeError) as err:
                raise EvaluationError(f"{sc.key} ({sc.class_}): {name}: {err}") from None
            labels.setdefault(name, policy_label(name, policy))
        trace_quality(env.params)
    if len(set(labels.values())) < len(labels):  # two exports of one run: show their paths
        labels = {name: name for name in labels}
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
            _play,
            [t[1] for t in tasks],
            [t[2] for t in tasks],
            [given.get(t[2]) for t in tasks],
            [t[3] for t in tasks],
            [seed] * len(tasks),
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
        parameters=chosen,
        recipe=asked if recipe is not None else [],
        recipe_label=recipe,
    )


def _play(
    scenario: ScenarioConfig,
    name: str,
    params: dict[str, Any] | None,
    episodes: Sequence[int],
    seed: int,
) -> list[EpisodeResult]:
    """Episodes ``episodes`` (seed ``seed + i``) of ``name``: with ``params`` exactly those
    parameters (a tunable baseline), else as :func:`~shift_rl.evaluate._run_chunk` resolves it."""
    if params is None:
        return _run_chunk(scenario, name, episodes, seed, False)
    env = ResourceShiftEnv(scenario)
    policy = POLICIES[name](env.params, **params)
    return [run_episode(env, policy, name, i, seed + i) for i in episodes]


def _shown(path: Path) -> str:
    p = path.resolve()
    try:
        return str(p.relative_to(PROJECT_ROOT))
    except ValueError:
        return str(p)


def _described(
    record: dict[str, Any], path: Path, suite_sha256: str | None = None, board: str | None = None
) -> str:
    """What a params.json was tuned on, in a line of the leaderboard (saying so when the
    suite file has changed since: ``suite_sha256`` is the current file's, ``board`` the
    leaderboard's suite: parameters tuned on another suite are named as such)."""
    search = record.get("search", {}) if isinstance(record.get("search"), dict) else {}
    suite = search.get("suite")
    trials = search.get("trials")
    seeds = search.get("seeds") or []
    how = f"{trials} trials" if trials else "tuned"
    if seeds:
        how += f", training seeds {seeds[0]}..{seeds[-1]}"
    if isinstance(suite, dict):
        left = suite.get("left_out") or []
        members = search.get("members") or []
        what = f"tuned on the train split of suite `{suite.get('name')}`"
        if left:
            what += f" (without {', '.join(left)})"
        line = f"{what}: {len(members)} members, {how} (`{_shown(path)}`)"
        if board is not None and suite.get("name") != board:
            line += f"; not this leaderboard's suite (`{board}`)"
        elif suite_sha256 and suite.get("sha256") and suite["sha256"] != suite_sha256:
            line += "; the suite file has changed since (another sha256): re-tune"
        return line
    scenarios = search.get("scenarios") or []
    return f"tuned on scenarios {', '.join(scenarios) or '?'}: {how} (`{_shown(path)}`)"


def baseline_parameters(
    suite: str,
    names: Iterable[str],
    tuned_dir: str | os.PathLike | None = None,
    families: Iterable[str] | None = None,
    suite_sha256: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Per tunable name of ``names``: ``{"params", "file", "tuned_on", "suite_tuned"}``.

    Looked up, first found: ``tuned_dir`` if given (a folder of ``<name>/params.json``;
    ``"default"`` skips to the scenario-tuned ones), else ``agents/suites/<suite>-without-
    <families>/`` (when ``families`` are given) and ``agents/suites/<suite>/``; then
    ``agents/<name>/`` (tuned on the shipped scenarios); else the policy's defaults."""
    import json

    fams = sorted(set(families or ()))
    if tuned_dir is not None and str(tuned_dir) == "default":
        folders: list[Path] = []
    elif tuned_dir is not None:
        folders = [Path(tuned_dir)]
        if not folders[0].is_dir():
            raise EvaluationError(f"--tuned-dir {str(tuned_dir)!r} is not a folder")
    else:
        folders = [SUITE_TUNED_DIR / left_out_name(suite, fams)] if fams else []
        folders.append(SUITE_TUNED_DIR / suite)
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        if name not in TUNABLE:
            continue
        for folder in [*folders, TUNED_DIR]:
            path = folder / name / "params.json"
            if not path.is_file():
                continue
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError) as err:
                raise EvaluationError(f"{path}: unreadable tuned parameters: {err}") from None
            params = record.get("params") if isinstance(record, dict) else None
            if not isinstance(params, dict):
                raise EvaluationError(f"{path}: expected a JSON object with a 'params' mapping")
            out[name] = {
                "params": params,
                "file": _shown(path),
                "suite_tuned": folder != TUNED_DIR,
                "tuned_on": _described(record, path, suite_sha256, suite),
            }
            break
        else:
            out[name] = {
                "params": {},
                "file": None,
                "suite_tuned": False,
                "tuned_on": "untuned: the policy's default parameters",
            }
    return out


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


__all__ = [
    "BASELINES",
    "TUNABLE",
    "Leaderboard",
    "baseline_parameters",
    "benchmark",
    "check_out_dir",
    "render",
    "write",
]
