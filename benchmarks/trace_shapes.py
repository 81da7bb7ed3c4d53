"""How flat each real trace family is, over the late part that the suite reports on.

Per family, over its series that are non-zero at least half the time, the means of:
- the hourly coefficient of variation: the std of the hourly means over their mean;
- mean / max of each series.

Long-running jobs hold flat levels (low values of the first, high of the second), and web
and arrival traces swing (benchmarks/RESULTS.md, "Flat overloaded planes").

    python benchmarks/trace_shapes.py [--traces ../shared/traces] [--from 0.7]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from shift_rl.traces import TraceError, load_trace

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = {  # file stem -> step in seconds where the file has a tick index, not timestamps
    "google_2011_jobs_cpu": 300,
    "google_2011_jobs_mem": 300,
    "azure_functions_2019": 60,
    "huawei_geo_vm": 600,
    "nasa_http_1995": 60,
    "nab_tweets": 300,
    "worldcup98": 60,
}


def shape(values: np.ndarray, step_seconds: float) -> tuple[int, float, float]:
    """(series kept, mean hourly coefficient of variation, mean of mean / max)."""
    keep = values[:, (values > 0).mean(axis=0) >= 0.5]
    per_hour = max(1, round(3600 / step_seconds))
    hours = len(keep) // per_hour
    hourly = keep[: hours * per_hour].reshape(hours, per_hour, -1).mean(axis=1)
    cv = hourly.std(axis=0) / hourly.mean(axis=0)
    return keep.shape[1], float(cv.mean()), float((keep.mean(axis=0) / keep.max(axis=0)).mean())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traces", type=Path, default=ROOT.parent / "shared" / "traces")
    ap.add_argument(
        "--from", dest="start", type=float, default=0.7, help="share of the ticks skipped"
    )
    args = ap.parse_args(argv)
    if not 0.0 <= args.start < 1.0:
        ap.error(f"--from: expected a share in [0, 1), got {args.start}")
    print("| family | series | hourly coefficient of variation | mean / max |")
    print("|---|---:|---:|---:|")
    for stem, step in FAMILIES.items():
        path = args.traces / f"{stem}.csv.gz"
        if not path.is_file():
            print(f"| {stem} | missing: {path} | | |")
            continue
        try:
            trace = load_trace(path)
        except TraceError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        values = np.asarray(trace.values, dtype=np.float64)
        late = values[int(args.start * len(values)) :]
        n, cv, flat = shape(late, trace.step_seconds or step)
        print(f"| {stem} | {n} | {cv:.2f} | {flat:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
