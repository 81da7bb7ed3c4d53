#!/usr/bin/env python3
"""Forecast accuracy of every registered forecaster on real workload traces.

    python scripts/forecast_report.py [--traces DIR] [--horizon H] [--json OUT] [--series N]

For each ``*.csv`` / ``*.csv.gz`` trace in DIR (default ``../shared/traces`` next to the
project root when present, else the shipped ``configs/traces``):

* Series: the first ``--series`` columns (default 8) in file order, forecast together as the
  modules of one env (each module is independent, so this equals one forecaster per series).
* Window: traces longer than ``--max-days`` days (default 14) are cut to their most recent
  ``max-days`` days (worldcup98: 125,300 rows -> the last 20,160 minutes; nasa_http_1995:
  84,332 -> 20,160), so the whole report runs in about a minute.
* Split by time (``Trace.split``, ``--train-fraction`` default 0.7): each model is warmed by
  ``update`` on every train tick, then runs online through the test split: after observing
  test tick ``i`` it predicts ticks ``i + 1 .. i + H``. All horizons are scored on the same
  targets, test ticks ``H - 1 ..`` (the first forecasts come from the last train tick).
* Season length: one day, ``86400 / step``, with the step from the timestamps
  (``Trace.step_seconds``) or, for tick-index traces, from the file name (azure: 60 s per row,
  google: 300 s, nasa: 60 s) or ``--step``. ``seasonal_naive`` forecasts the value one season
  earlier and, where it has none, the last value: on a trace of at most one day (the shipped
  ``configs/traces`` slice is one day of azure functions) a season never completes, so its
  rows equal ``last``. The report prints a note where this happens.

Metrics (test split, pooled over series and target ticks, horizon ``h``):

* MAPE = mean of ``100 |y - yhat| / y`` over targets with ``y > 0`` (zero actuals are skipped:
  their percentage error is undefined; the count skipped is printed).
* sMAPE = mean of ``200 |y - yhat| / (|y| + |yhat|)``, counting 0 when both are 0.
* MASE = mean over series of ``MAE_test(h) / MAE_naive_train``, where ``MAE_naive_train`` is
  the in-sample one-step **naive** (last value) mean absolute error on the train split. (Naive,
  not seasonal naive: the azure trace is one day long, so its train split holds no full
  season.) Near-constant series, whose ``MAE_naive_train`` is at most ``1e-3`` of their train
  mean (azure's timer functions, e.g. a constant 840/min), are left out of MASE: any forecast
  error would be divided by almost nothing. Their count is printed.

The check at the end: the best forecaster by MASE beats ``seasonal_naive`` at ``h = 1`` and at
``h = H`` on every trace (exit status 1 otherwise). ``--json OUT`` writes
``{trace_file_name: {forecaster: {horizon: {"mape": x, "smape": x, "mase": x}}}}``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from shift_rl.forecast import FORECASTERS, make_forecaster, season_ticks_for
from shift_rl.outputs import OutputError, check_file, write_file
from shift_rl.traces import Trace, load_trace

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "traces"
SHIPPED = ROOT / "configs" / "traces"
STEP_BY_PREFIX = {"azure_functions": 60.0, "google_2011_jobs": 300.0, "nasa_http": 60.0}
"""Seconds per row of the tick-index traces (see ../shared/traces/SOURCES.md)."""
BASELINE = "seasonal_naive"
NEAR_CONSTANT = 1e-3


def _is_report(path: Path) -> bool:
    """An earlier --json of this script: ``{trace file: {forecaster: {horizon: metrics}}}``."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return (
        isinstance(data, dict)
        and bool(data)
        and all(k.endswith((".csv", ".csv.gz")) and isinstance(v, dict) for k, v in data.items())
    )


def trace_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.endswith((".csv", ".csv.gz")))


def step_of(trace: Trace, path: Path, override: float | None) -> float:
    if trace.step_seconds is not None:
        return float(trace.step_seconds)
    if override is not None:
        return override
    for prefix, step in STEP_BY_PREFIX.items():
        if path.name.startswith(prefix):
            return step
    raise SystemExit(f"{path}: tick-index trace of unknown step; pass --step SECONDS")


def run_model(
    name: str, train: np.ndarray, test: np.ndarray, horizon: int, step: float
) -> tuple[np.ndarray, np.ndarray]:
    """(H, T, N) means and spreads for test ticks, made h ticks earlier (NaN if not issued)."""
    n_series = train.shape[1]
    f = make_forecaster(name, 1, n_series, tick_seconds=step)
    for row in train:
        f.update(row[None])
    T = test.shape[0]
    out = np.full((2, horizon, T, n_series), np.nan)
    for i in range(-1, T):
        if i >= 0:
            f.update(test[i][None])
        for h in range(1, horizon + 1):
            if i + h < T:
                mean, spread = f.predict(h)
                out[0, h - 1, i + h] = mean[0]
                out[1, h - 1, i + h] = spread[0]
    return out[0], out[1]


def metrics(pred: np.ndarray, actual: np.ndarray, scale: np.ndarray) -> dict[str, float]:
    """MAPE, sMAPE and MASE of (T, N) forecasts against actuals (see the module doc)."""
    err = np.abs(actual - pred)
    pos = actual > 0
    mape = float(np.mean(100.0 * err[pos] / actual[pos])) if pos.any() else math.nan
    denom = np.abs(actual) + np.abs(pred)
    smape = float(np.mean(np.where(denom > 0, 200.0 * err / np.where(denom > 0, denom, 1), 0.0)))
    ok = scale > 0
    mase = float(np.mean(err[:, ok].mean(axis=0) / scale[ok])) if ok.any() else math.nan
    return {"mape": mape, "smape": smape, "mase": mase}


def report_file(
    path: Path, args: argparse.Namespace, models: list[str]
) -> dict[str, dict[str, dict[str, float]]]:
    trace = load_trace(path)
    step = step_of(trace, path, args.step)
    season = season_ticks_for(step)
    n = min(args.series, len(trace.columns))
    trace = trace.select(None, n)
    total = trace.num_ticks
    keep = int(args.max_days * season)
    if total > keep:
        _, trace = trace.split(1.0 - keep / total)
    train, test = trace.split(args.train_fraction)
    tr, te = np.asarray(train.values), np.asarray(test.values)
    scale = np.abs(np.diff(tr, axis=0)).mean(axis=0)
    scale = np.where(scale > NEAR_CONSTANT * np.abs(tr).mean(axis=0), scale, 0.0)
    H = args.horizon
    targets = slice(H - 1, None)
    zeros = int((te[targets] <= 0).sum())
    print(
        f"\n## {path.name}: {n} series, step {step:g}s, season {season} ticks, "
        f"rows used {trace.num_ticks} of {total} (train {train.num_ticks}, test "
        f"{test.num_ticks}); {zeros} zero actual(s) skipped in MAPE; "
        f"{int((scale == 0).sum())} near-constant series left out of MASE"
    )
    note = seasonal_note(trace.num_ticks, train.num_ticks, season, H)
    if note:
        print(note)
    result: dict[str, dict[str, dict[str, float]]] = {}
    cover: dict[str, list[float]] = {}
    for name in models:
        t0 = time.perf_counter()
        pred, spread = run_model(name, tr, te, H, step)
        result[name] = {
            str(h): metrics(pred[h - 1][targets], te[targets], scale) for h in range(1, H + 1)
        }
        inside = np.abs(te[targets] - pred[:, targets]) <= spread[:, targets]
        cover[name] = [float(inside[h - 1].mean()) for h in range(1, H + 1)]
        if args.verbose:
            print(f"  {name}: {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    head = "| model | " + " | ".join(f"MAPE h{h} | sMAPE h{h} | MASE h{h}" for h in range(1, H + 1))
    print(head + " |")
    print("|---|" + "---:|" * (3 * H))
    for name, res in result.items():
        cells = []
        for h in range(1, H + 1):
            r = res[str(h)]
            cells += [f"{r['mape']:.1f}", f"{r['smape']:.1f}", f"{r['mase']:.3f}"]
        print(f"| {name} | " + " | ".join(cells) + " |")
    COVERAGE[path.name] = cover
    return result


def seasonal_note(rows: int, train_rows: int, season: int, horizon: int) -> str | None:
    """Why ``seasonal_naive`` may equal ``last``: the rows used hold less than a season back."""
    if rows <= season:
        return (
            f"note: the {rows} rows used are at most one season ({season} ticks), so no target "
            f"has a value one season earlier: {BASELINE} falls back to the last value and its "
            "row equals `last`"
        )
    if train_rows + horizon <= season:
        same = season - train_rows - horizon + 1
        return (
            f"note: the train split ({train_rows} rows) is shorter than one season ({season} "
            f"ticks): {BASELINE} equals `last` on the first {same} test ticks"
        )
    return None


COVERAGE: dict[str, dict[str, list[float]]] = {}
"""Share of test actuals inside mean +- spread (the nominal 95 % interval), per horizon."""


def print_coverage(models: list[str], horizon: int) -> None:
    print(f"\n## Share of actuals inside mean +- spread (nominal 95 %), h = 1 / h = {horizon}")
    print("| trace | " + " | ".join(models) + " |")
    print("|---|" + "---:|" * len(models))
    for trace, cov in COVERAGE.items():
        cells = [f"{cov[m][0]:.2f} / {cov[m][-1]:.2f}" for m in models]
        print(f"| {trace} | " + " | ".join(cells) + " |")


def check(results: dict, horizon: int) -> bool:
    """Print the best model by MASE at h = 1 and h = H against seasonal naive; all beat it?"""
    ok = True
    print(f"\n## Best by MASE vs {BASELINE}")
    print("| trace | h | best | MASE | seasonal_naive MASE | beats it |")
    print("|---|---:|---|---:|---:|---|")
    for trace, res in results.items():
        if BASELINE not in res:
            continue
        for h in sorted({1, horizon}):
            key = str(h)
            best = min(res, key=lambda m: res[m][key]["mase"])
            b, s = res[best][key]["mase"], res[BASELINE][key]["mase"]
            win = b < s
            ok &= win
            print(f"| {trace} | {h} | {best} | {b:.3f} | {s:.3f} | {'yes' if win else 'NO'} |")
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="The module docstring (python -m pydoc scripts.forecast_report) gives the "
        "split, the metrics and the check in full.",
    )
    default = SHARED if SHARED.is_dir() else SHIPPED
    ap.add_argument(
        "--traces",
        type=Path,
        default=default,
        help="folder of trace files (*.csv, *.csv.gz: a time column, then one column per "
        "series; format in README 'Trace CSV format'); every file in it is reported "
        f"(default {default})",
    )
    ap.add_argument("--horizon", type=int, default=3, help="horizons 1..H (default 3)")
    ap.add_argument("--json", type=Path, default=None, help="write the metrics as JSON here")
    ap.add_argument("--series", type=int, default=8, help="first N series per file (default 8)")
    ap.add_argument("--max-days", type=float, default=14.0, help="most recent days kept")
    ap.add_argument(
        "--train-fraction",
        type=float,
        default=0.7,
        help="share of each trace's rows (oldest first) that warms the models up; they are "
        "scored online on the rest (default 0.7)",
    )
    ap.add_argument("--step", type=float, default=None, help="seconds per row, tick-index files")
    ap.add_argument("--models", default=",".join(FORECASTERS), help="comma-separated names")
    ap.add_argument("-v", "--verbose", action="store_true", help="time each model (stderr)")
    args = ap.parse_args(argv)
    if args.horizon < 1 or args.series < 1 or args.max_days <= 0:
        ap.error("--horizon, --series and --max-days must be positive")
    if not 0.0 < args.train_fraction < 1.0:
        ap.error(f"--train-fraction must lie in (0, 1), got {args.train_fraction}")
    if args.json is not None:
        try:
            check_file(args.json, _is_report, "forecast report (--json)")
        except OutputError as err:
            ap.error(str(err))
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(FORECASTERS))
    if unknown:
        ap.error(f"unknown model(s) {unknown}; allowed: {sorted(FORECASTERS)}")
    files = trace_files(args.traces)
    if not files:
        ap.error(f"no .csv/.csv.gz traces in {args.traces}")
    t0 = time.perf_counter()
    print(
        f"# Forecast report: {args.traces}, horizons 1..{args.horizon}, first {args.series} "
        f"series, last {args.max_days:g} days, train fraction {args.train_fraction}"
    )
    results = {p.name: report_file(p, args, models) for p in files}
    print_coverage(models, args.horizon)
    ok = check(results, args.horizon)
    print(f"\n{'all traces pass' if ok else 'SOME TRACE FAILS'}; {time.perf_counter() - t0:.0f}s")
    if args.json is not None:
        text = json.dumps(results, indent=2, sort_keys=False) + "\n"
        write_file(args.json, text, _is_report, "forecast report (--json)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
