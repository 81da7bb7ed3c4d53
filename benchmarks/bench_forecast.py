#!/usr/bin/env python3
"""Cost of one forecaster tick (``update`` + ``predict(3)``) per model, 64 modules.

    python benchmarks/bench_forecast.py [--modules 64] [--batches 1,256] [--ticks 300]

Demand is synthetic and seeded (a daily sine per module with Poisson noise and 1 % missing
values); every model uses its defaults with ``season_ticks = 1440`` (one day of 60 s ticks).
Each forecaster is first warmed for ``--warm`` ticks (default 1500: past the first season, so
Holt-Winters has initialized and the AR model refits on schedule), then ``--ticks`` ticks are
timed, only around the ``update`` and ``predict`` calls (the demand is drawn outside the timer).
Reported: microseconds per tick for the whole batch (the median over blocks of 20 ticks, so a
busy neighbour on a shared machine moves it less than a mean), and per env (batch / B).
Compile time is excluded (one call before warming).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numba
import numpy as np

from shift_rl.forecast import FORECASTERS, make_forecaster
from shift_rl.machine import cpu_model

SEASON = 1440
HORIZON = 3
BLOCK = 20


def demand_at(t: int, base: np.ndarray, phase: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    lam = base * (1.0 + 0.5 * np.sin(2.0 * np.pi * (t / SEASON + phase)))
    d = rng.poisson(lam).astype(np.float64)
    d[rng.random(d.shape) < 0.01] = np.nan
    return d


def bench(name: str, batch: int, modules: int, warm: int, ticks: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    base = rng.uniform(20.0, 500.0, size=(batch, modules))
    phase = rng.uniform(0.0, 1.0, size=(batch, modules))
    f = (
        make_forecaster(name, batch, modules, season_ticks=SEASON)
        if getattr(FORECASTERS[name], "seasonal", False)
        else make_forecaster(name, batch, modules)
    )
    for t in range(warm):
        f.update(demand_at(t, base, phase, rng))
    f.predict(HORIZON)
    blocks = []
    for start in range(warm, warm + ticks, BLOCK):
        spent = 0.0
        n = min(BLOCK, warm + ticks - start)
        for t in range(start, start + n):
            d = demand_at(t, base, phase, rng)
            t0 = time.perf_counter()
            f.update(d)
            f.predict(HORIZON)
            spent += time.perf_counter() - t0
        blocks.append(spent / n)
    return float(np.median(blocks)) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modules", type=int, default=64)
    ap.add_argument("--batches", default="1,256")
    ap.add_argument("--warm", type=int, default=1500)
    ap.add_argument("--ticks", type=int, default=300)
    ap.add_argument("--models", default=",".join(FORECASTERS))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    models = [m for m in args.models.split(",") if m]
    print(
        f"# bench_forecast: {args.modules} modules, season {SEASON}, predict({HORIZON}), "
        f"warm {args.warm} ticks, timed {args.ticks} ticks"
    )
    print(
        f"# machine: nproc={os.cpu_count()}, cpu={cpu_model()}, python "
        f"{platform.python_version()}, numpy {np.__version__}, numba {numba.__version__}"
    )
    for name in models:  # compile outside the timings
        bench(name, 1, 2, 2, 1, args.seed)
    head = " | ".join(f"B={b} us/tick | B={b} us/env" for b in batches)
    print(f"| model | {head} |")
    print("|---|" + "---:|" * (2 * len(batches)))
    for name in models:
        cells = []
        for b in batches:
            us = bench(name, b, args.modules, args.warm, args.ticks, args.seed)
            cells += [f"{us:,.1f}", f"{us / b:,.2f}"]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
