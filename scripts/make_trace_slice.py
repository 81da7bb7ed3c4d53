#!/usr/bin/env python3
"""Cut a few series out of a replay-ready trace CSV so the project ships a small real trace.

Cells are copied as text (no rescaling, no re-formatting) and the gzip header has mtime=0 and
no file name, so running this twice gives byte-identical output.

    python scripts/make_trace_slice.py \
        --src ../shared/traces/azure_functions_2019.csv.gz \
        --out configs/traces/azure_functions_2019_top6.csv.gz
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import logging
import sys
from pathlib import Path

from shift_rl.outputs import OutputError, check_file, write_file
from shift_rl.traces import TraceError, load_trace

logger = logging.getLogger("make_trace_slice")

# Six of the 32 busiest always-invoked Azure functions, chosen for different daily shapes:
# a midnight batch burst, an evening peak, a night + afternoon double hump, office hours,
# a flat base with a one-hour burst at 09:00, and a night-high / day-low step.
DEFAULT_COLUMNS = (
    "fn_bcbea1f2",
    "fn_63ecf88a",
    "fn_4ee40796",
    "fn_c761e93b",
    "fn_07044c0a",
    "fn_2c08d9e8",
)
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SRC = REPO_ROOT.parent / "shared" / "traces" / "azure_functions_2019.csv.gz"
DEFAULT_OUT = REPO_ROOT / "configs" / "traces" / "azure_functions_2019_top6.csv.gz"


def _open_text(path: Path):
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def make_slice(src: Path, out: Path, columns: list[str]) -> int:
    """Write the first column plus ``columns`` of ``src`` to ``out``; return the data row count."""
    with _open_text(src) as f:
        reader = csv.reader(f)
        header = next(reader)
        missing = [c for c in columns if c not in header[1:]]
        if missing:
            raise SystemExit(f"{src}: no column(s) {missing}; available: {header[1:]}")
        idx = [0] + [header.index(c) for c in columns]
        buf = io.StringIO(newline="")
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow([header[i] for i in idx])
        rows = 0
        for row in reader:
            writer.writerow([row[i] for i in idx])
            rows += 1
    packed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, compresslevel=9, mtime=0) as gz:
        gz.write(buf.getvalue().encode("utf-8"))
    write_file(out, packed.getvalue(), _is_trace, "trace slice (--out)")
    return rows


def _is_trace(path: Path) -> bool:
    """An existing --out is replaced only if it is a trace (an earlier slice)."""
    try:
        load_trace(path)
    except (TraceError, OSError, ValueError):
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=DEFAULT_SRC, help="source .csv or .csv.gz")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output .csv.gz")
    parser.add_argument(
        "--columns",
        nargs="+",
        default=list(DEFAULT_COLUMNS),
        help="series to copy, in output order (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        check_file(args.out, _is_trace, "trace slice (--out)")
        rows = make_slice(args.src, args.out, args.columns)
    except OutputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    logger.info(
        "wrote %s: %d rows x %d series, %d bytes",
        args.out,
        rows,
        len(args.columns),
        args.out.stat().st_size,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
