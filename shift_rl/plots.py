"""Figures of an evaluation, as a reader of a paper would want them (PNG bytes by file name).

Every figure names the scenario, the number of paired episodes and their seeds; every axis
its unit; intervals are the report's 95 % confidence intervals (counts clipped at 0, see
:mod:`shift_rl.evaluate`). Colours are fixed per policy across figures; ``static`` is grey
and the ``oracle`` upper bound black (dashed where it is a reference line).

* ``metrics.png``: mean and 95 % CI per policy of return, gap closed, goal attainment,
  SLO-violation ticks, units moved and rollbacks (dot and whisker);
* ``leaderboard.png``: policies ranked by gap closed, and the paired difference in return
  between the first policy and each other one, with its verdict;
* ``reward_per_tick.png``: reward per tick over the episode, averaged over episodes and
  smoothed, against the oracle bound; and the cumulative shortfall to the oracle;
* ``allocation_<policy>.png`` (needs ``evaluate(..., record=True)``): episode 0, one panel
  per module, the units allocated against the units its demand needs.
"""

from __future__ import annotations

import io
import math
import re
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from shift_rl.evaluate import EvaluationReport

DPI = 150
MAX_MODULE_PANELS = 12
_PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
            "#17becf", "#bcbd22"]  # fmt: skip
_FIXED = {"static": "#7f7f7f", "oracle": "#000000"}


def colors(report: EvaluationReport) -> dict[str, str]:
    """One colour per policy, the same in every figure."""
    out, k = {}, 0
    for name in report.results:
        if name in _FIXED:
            out[name] = _FIXED[name]
        else:
            out[name] = _PALETTE[k % len(_PALETTE)]
            k += 1
    return out


def _where(report: EvaluationReport) -> str:
    trace = f" (trace {report.trace})" if report.trace else ""
    last = report.seed + report.episodes - 1
    return (
        f"scenario '{report.scenario}'{trace}, {report.episodes} paired episodes "
        f"(seeds {report.seed}..{last})"
    )


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _style(ax: Axes) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="x", color="#dddddd", lw=0.6)
    ax.set_axisbelow(True)


# -- metrics ----------------------------------------------------------------------------------
_PANELS = (
    ("return", "return per episode (sum of rewards)", True),
    ("gap_closed", "gap closed (0 = static, 1 = oracle)", True),
    ("goal_attainment", "goal attainment (share of demand within SLO)", True),
    ("slo_violation_ticks", "SLO-violation ticks per episode", False),
    ("units_moved", "units moved per episode", False),
    ("rollbacks", "rollbacks per episode", False),
)


def _dot_whisker(
    ax: Axes, report: EvaluationReport, summary: dict, names: list[str], metric: str, col: dict
) -> None:
    for y, name in enumerate(names):
        s = summary[name][metric]
        if s["mean"] is None:
            continue
        lo, hi = s["ci95"]
        ax.errorbar(
            s["mean"], y, xerr=[[s["mean"] - lo], [hi - s["mean"]]], fmt="o", ms=6,
            color=col[name], ecolor=col[name], elinewidth=2, capsize=4,
        )  # fmt: skip
    ax.set_yticks(range(len(names)), [report.label(n) for n in names])
    ax.set_ylim(len(names) - 0.5, -0.5)


def metrics_figure(report: EvaluationReport) -> Figure:
    summary = report.to_dict()["policies"]
    col = colors(report)
    fig = _figure(14, 7.5)
    axes = fig.subplots(2, 3)
    oracle_line = None
    for ax, (metric, xlabel, has_oracle) in zip(axes.flat, _PANELS, strict=True):
        names = [n for n in report.results if n != "oracle"]
        _dot_whisker(ax, report, summary, names, metric, col)
        ends = [x for n in names for x in summary[n][metric]["ci95"] if x is not None]
        bound = summary["oracle"][metric]["mean"] if has_oracle else None
        if bound is not None:
            oracle_line = ax.axvline(bound, color="black", ls="--", lw=1.2)
            ends.append(bound)
        if metric == "gap_closed":
            ax.axvline(0.0, color=_FIXED["static"], ls=":", lw=1)
        lo, hi = (min(ends), max(ends)) if ends else (0.0, 1.0)
        pad = 0.06 * (hi - lo) if hi > lo else 0.5
        # counts cannot be negative: the axis starts just left of 0 only so a dot at 0 shows
        ax.set_xlim(lo - pad if has_oracle else -pad, hi + pad)
        ax.set_xlabel(xlabel)
        _style(ax)
    if oracle_line is not None:
        fig.legend([oracle_line], ["oracle upper bound (no policy can pass it)"],
                   loc="outside lower center", frameon=False)  # fmt: skip
    fig.suptitle(f"Policies compared: mean and 95 % CI per episode\n{_where(report)}",
                 fontsize=13)  # fmt: skip
    return fig


# -- leaderboard ------------------------------------------------------------------------------
def leaderboard_figure(report: EvaluationReport) -> Figure:
    d = report.to_dict()
    summary, col = d["policies"], colors(report)
    gap = {n: summary[n]["gap_closed"]["mean"] for n in report.results if n != "oracle"}
    ranked = sorted((n for n in gap if gap[n] is not None), key=lambda n: -gap[n])
    verdicts = {v.baseline: v for v in report.verdicts()}
    others = [n for n in report.results if n not in (report.policies[0], "oracle")]
    fig = _figure(14, max(3.2, 0.55 * max(len(ranked), len(others)) + 2.0))
    left, right = fig.subplots(1, 2, width_ratios=[1.1, 1])
    # ranking by gap closed
    for y, name in enumerate(ranked):
        s = summary[name]["gap_closed"]
        lo, hi = s["ci95"]
        left.barh(y, s["mean"], color=col[name], alpha=0.85, height=0.6)
        left.errorbar(s["mean"], y, xerr=[[s["mean"] - lo], [hi - s["mean"]]], fmt="none",
                      ecolor="black", elinewidth=1.2, capsize=4)  # fmt: skip
        ret = summary[name]["return"]["mean"]
        left.annotate(  # right of the oracle line, so no line crosses the text
            f"{s['mean']:.2f} [{lo:.2f}, {hi:.2f}]; return {ret:.1f}",
            (1.04, y), va="center", fontsize=9,
        )  # fmt: skip
    left.set_yticks(range(len(ranked)), [f"{i + 1}. {report.label(n)}" for i, n in
                                         enumerate(ranked)])  # fmt: skip
    left.set_ylim(len(ranked) - 0.5, -0.5)
    left.axvline(1.0, color="black", ls="--", lw=1.2)
    left.axvline(0.0, color="#555555", lw=0.8)
    lows = [summary[n]["gap_closed"]["ci95"][0] for n in ranked]
    left.set_xlim(min(0.0, *lows) - 0.05, 1.85)
    left.set_xlabel("gap closed: mean(return − static) / mean(oracle − static); dashed: oracle")
    left.set_title("Ranking by gap closed (mean, 95 % CI)", fontsize=11)
    left.set_xticks([t for t in left.get_xticks() if left.get_xlim()[0] <= t <= 1.0])
    _style(left)
    # paired differences against the first policy
    first = report.label(report.policies[0])
    shades = {"beats": "#2ca02c", "loses to": "#d62728"}
    ends = [0.0]
    for y, name in enumerate(others):
        s = d["differences"][name]["return"]
        if s["mean"] is None:
            continue
        lo, hi = s["ci95"]
        ends += [lo, hi]
        v = verdicts.get(name)
        outcome = v.outcome if v is not None else "no significant difference from"
        c = shades.get(outcome, "#7f7f7f")
        right.errorbar(s["mean"], y, xerr=[[s["mean"] - lo], [hi - s["mean"]]], fmt="o", ms=6,
                       color=c, ecolor=c, elinewidth=2, capsize=4)  # fmt: skip
        word = {"no significant difference from": "no significant difference"}.get(
            outcome, outcome.replace(" to", "")
        )
        right.annotate(
            f"{word}: {s['mean']:+.2f} [{lo:+.2f}, {hi:+.2f}]",
            (hi, y), xytext=(8, 0), textcoords="offset points", va="center", fontsize=9,
        )  # fmt: skip
    right.set_yticks(range(len(others)), [f"vs {report.label(n)}" for n in others])
    right.set_ylim(len(others) - 0.5, -0.5)
    right.axvline(0.0, color="black", lw=1)
    span = max(ends) - min(ends) or 1.0
    right.set_xlim(min(ends) - 0.08 * span, max(ends) + 0.75 * span)  # room for the words
    right.set_xlabel(f"paired difference in return per episode: {first} − other")
    right.set_title(f"Paired difference {first} − other in return (95 % CI)", fontsize=11)
    _style(right)
    fig.suptitle(f"Leaderboard\n{_where(report)}", fontsize=13)
    return fig


# -- reward over the episode ------------------------------------------------------------------
def _rewards(report: EvaluationReport, name: str) -> np.ndarray | None:
    rows = [r.trajectory["reward"] for r in report.results[name] if r.trajectory]
    if len(rows) != len(report.results[name]) or not rows:
        return None
    return np.array(rows, dtype=np.float64)


def _rolling(x: np.ndarray, window: int) -> np.ndarray:
    kernel = np.ones(window) / window
    padded = np.pad(x, (window // 2, window - 1 - window // 2), mode="edge")
    return np.convolve(padded, kernel, mode="valid")


def reward_figure(report: EvaluationReport) -> Figure | None:
    series = {n: r for n in report.results if (r := _rewards(report, n)) is not None}
    if "oracle" not in series or len(series) < 2:
        return None
    col = colors(report)
    oracle = series["oracle"]
    ticks = oracle.shape[1]
    hours = np.arange(1, ticks + 1) * report.tick_seconds / 3600.0
    window = max(1, ticks // 24)
    fig = _figure(13, 5.2)
    top, bottom = fig.subplots(1, 2)
    for name, r in series.items():
        mean = _rolling(r.mean(axis=0), window)
        if name == "oracle":
            top.plot(hours, mean, color="black", ls="--", lw=1.6, label="oracle upper bound")
            continue
        top.plot(hours, mean, color=col[name], lw=1.6, label=report.label(name))
        short = np.cumsum(oracle - r, axis=1)
        m = short.mean(axis=0)
        n = short.shape[0]
        half = (
            stats.t.ppf(0.975, n - 1) * short.std(axis=0, ddof=1) / math.sqrt(n)
            if n > 1
            else np.zeros_like(m)
        )
        bottom.plot(hours, m, color=col[name], lw=1.6, label=report.label(name))
        bottom.fill_between(hours, m - half, m + half, color=col[name], alpha=0.15, lw=0)
    top.set_xlabel("hours since the episode's start")
    top.set_ylabel("reward per tick (max 1)")
    top.set_title(f"Reward per tick, mean over episodes, {window}-tick rolling mean", fontsize=11)
    top.legend(fontsize=8, frameon=False, loc="lower left")
    bottom.set_xlabel("hours since the episode's start")
    bottom.set_ylabel("cumulative shortfall to the oracle (reward)")
    bottom.set_title("Cumulative shortfall to the oracle bound (mean, 95 % CI); lower is better",
                     fontsize=11)  # fmt: skip
    bottom.set_ylim(bottom=0)
    bottom.legend(fontsize=8, frameon=False, loc="upper left")
    for ax in (top, bottom):
        _style(ax)
        ax.grid(axis="y", color="#dddddd", lw=0.6)
        ax.set_xlim(0, hours[-1])
    fig.suptitle(f"Reward over the episode\n{_where(report)}", fontsize=13)
    return fig


# -- allocation against need -------------------------------------------------------------------
def allocation_figure(report: EvaluationReport, name: str) -> Figure | None:
    res = report.results[name][0]
    traj = res.trajectory
    if not traj or not traj.get("alloc"):
        return None
    alloc, need = np.array(traj["alloc"], dtype=float), np.array(traj["need"], dtype=float)
    ticks, modules = alloc.shape
    shown = min(modules, MAX_MODULE_PANELS)
    ncols = 2 if shown <= 4 else 3
    nrows = math.ceil(shown / ncols)
    hours = np.arange(1, ticks + 1) * report.tick_seconds / 3600.0
    color = colors(report)[name]
    fig = _figure(4.6 * ncols, 2.4 * nrows + 1.3)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharex=True, squeeze=False)).reshape(-1)
    kind = report.kinds[0] if report.kinds else "the resource"
    for m in range(shown):
        ax = axes[m]
        ax.fill_between(hours, alloc[:, m], need[:, m], where=need[:, m] > alloc[:, m],
                        color="#d62728", alpha=0.25, lw=0, step="pre",
                        label="shortfall (need above allocation)")  # fmt: skip
        ax.step(hours, alloc[:, m], where="pre", color=color, lw=1.5, label="units allocated")
        ax.plot(hours, need[:, m], color="black", ls="--", lw=1.0,
                label="units the demand needs")  # fmt: skip
        ax.set_title(report.modules[m], fontsize=10)
        ax.set_ylim(bottom=0)
        if m % ncols == 0:
            ax.set_ylabel(f"units of {kind}")
        if m >= shown - ncols:
            ax.set_xlabel("hours since the episode's start")
        ax.tick_params(labelbottom=True)
        _style(ax)
        ax.grid(axis="y", color="#dddddd", lw=0.6)
    for ax in axes[shown:]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=3, frameon=False)
    more = f"; first {shown} of {modules} modules" if shown < modules else ""
    fig.suptitle(
        f"Allocation against need per module: {report.label(name)}\n"
        f"scenario '{report.scenario}', episode 0 (seed {res.seed}){more}; need = demand at "
        "the target utilization",
        fontsize=12,
    )
    return fig


def _file_name(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("._") or "policy"


def figures(report: EvaluationReport) -> dict[str, bytes]:
    """Every figure the report supports, rendered: ``{file name: PNG bytes}``."""
    out = {"metrics.png": _png(metrics_figure(report))}
    out["leaderboard.png"] = _png(leaderboard_figure(report))
    reward = reward_figure(report)
    if reward is not None:
        out["reward_per_tick.png"] = _png(reward)
    for name in report.results:
        if name == "oracle":
            continue
        fig = allocation_figure(report, name)
        if fig is not None:
            out[f"allocation_{_file_name(report.label(name))}.png"] = _png(fig)
    return out


__all__ = ["colors", "figures"]
