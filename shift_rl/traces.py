"""Workload traces for trace-replay demand: load, validate, pick series, split and resample.

File format (``.csv`` or ``.csv.gz``, UTF-8, comma separated):

* A header row is required. Its first cell names the time column; every further cell names one
  series (non-empty, unique, not a number).
* The first column is either an integer tick index (``0, 1, 2, ...``; one tick per row) or a
  timestamp (``YYYY-MM-DD HH:MM:SS`` or ISO 8601 ``YYYY-MM-DDTHH:MM:SS[.fff]``, no timezone),
  parsed with ``numpy.datetime64``. The kind is decided by the first data row.
* Every other cell is a finite number >= 0 (for example requests per tick). Each series needs at
  least one non-zero value, and the file needs at least two data rows.

Gap policy: time must be strictly increasing. The grid step is the median difference between
consecutive rows (the lower median, so it is an observed difference); for a tick index it must
be 1. A difference of k whole steps means k - 1 missing ticks; they are filled by linear
interpolation between the two neighbouring rows and counted in ``Trace.filled_gaps`` (and
logged). Rows are never silently shifted onto the grid: a difference that is not a whole number
of steps is an error, as is any other malformed input (``TraceError`` naming the file, the line
and the column).

Values are copied as they are (not rescaled); the simulator scales a trace to its own capacity,
so only shape and relative size matter here.
"""

from __future__ import annotations

import csv
import gzip
import logging
import math
import os
import re
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Trace", "TraceError", "load_trace"]

logger = logging.getLogger(__name__)

_INT_RE = re.compile(r"^[+-]?\d+$")
# Refining by more than this factor would only invent data (and memory); coarsening must leave
# at least this many ticks.
MAX_REFINE_FACTOR = 1000
MIN_TICKS = 2
_REL_TOL = 1e-9


class TraceError(ValueError):
    """Bad trace input; the message names the file, the row/column and what was expected."""


@dataclass(frozen=True, eq=False)
class Trace:
    """A validated multi-series trace on a regular grid (rows = ticks, columns = series).

    ``values`` is stored read-only so a trace shared by several environments cannot be mutated
    by one of them.
    """

    columns: tuple[str, ...]
    values: np.ndarray
    step_seconds: float | None
    start: str
    filled_gaps: int
    source: str

    def __post_init__(self) -> None:
        values = np.asarray(self.values, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != len(self.columns):
            raise TraceError(
                f"{self.source}: values of shape {values.shape} do not match "
                f"{len(self.columns)} columns; expected (ticks, {len(self.columns)})"
            )
        if values.shape[0] < MIN_TICKS:
            raise TraceError(
                f"{self.source}: {values.shape[0]} tick(s); expected at least {MIN_TICKS}"
            )
        view = values.view()
        view.flags.writeable = False
        object.__setattr__(self, "columns", tuple(self.columns))
        object.__setattr__(self, "values", view)

    @property
    def num_ticks(self) -> int:
        """Number of ticks (rows)."""
        return int(self.values.shape[0])

    def select(self, columns: Sequence[str | int] | None, count: int) -> Trace:
        """Pick ``count`` series by name or index (``None``: the first ``count`` in file order).

        Used to map one series onto each module; asking for more modules than listed series is an
        error rather than a silent reuse.
        """
        if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 1:
            raise TraceError(f"{self.source}: count={count!r}; expected an integer >= 1")
        if columns is None:
            if count > len(self.columns):
                raise TraceError(
                    f"{self.source}: {count} series requested but the trace has only "
                    f"{len(self.columns)} ({', '.join(self.columns)})"
                )
            idx = list(range(count))
        else:
            if isinstance(columns, str):
                raise TraceError(
                    f"{self.source}: columns={columns!r}; expected a list of names or indices"
                )
            picked = list(columns)
            if len(picked) < count:
                raise TraceError(
                    f"{self.source}: {len(picked)} column(s) given ({picked}) but {count} "
                    "series are needed"
                )
            if len(picked) > count:
                logger.warning(
                    "%s: %d columns given, using the first %d: %s",
                    self.source,
                    len(picked),
                    count,
                    picked[:count],
                )
                picked = picked[:count]
            idx = [self._column_index(c) for c in picked]
            if len(set(idx)) != len(idx):
                names = [self.columns[i] for i in idx]
                raise TraceError(
                    f"{self.source}: columns {names} repeat a series; expected distinct"
                )
        return Trace(
            columns=tuple(self.columns[i] for i in idx),
            values=self.values[:, idx],
            step_seconds=self.step_seconds,
            start=self.start,
            filled_gaps=self.filled_gaps,
            source=self.source,
        )

    def _column_index(self, col: str | int) -> int:
        if isinstance(col, str):
            try:
                return self.columns.index(col)
            except ValueError:
                raise TraceError(
                    f"{self.source}: no column {col!r}; expected one of {', '.join(self.columns)}"
                ) from None
        if isinstance(col, bool) or not isinstance(col, int | np.integer):
            raise TraceError(f"{self.source}: column {col!r}; expected a name or an integer index")
        if not 0 <= int(col) < len(self.columns):
            raise TraceError(
                f"{self.source}: column index {col}; expected 0..{len(self.columns) - 1}"
            )
        return int(col)

    def split(self, train_fraction: float) -> tuple[Trace, Trace]:
        """Split by time into (train, test), train first, so evaluation replays unseen time."""
        try:
            fraction = float(train_fraction)
        except (TypeError, ValueError):
            fraction = math.nan
        if not 0.0 < fraction < 1.0:
            raise TraceError(
                f"{self.source}: train_fraction={train_fraction!r}; expected 0 < fraction < 1"
            )
        n_train = round(self.num_ticks * fraction)
        if n_train < MIN_TICKS or self.num_ticks - n_train < MIN_TICKS:
            raise TraceError(
                f"{self.source}: train_fraction={train_fraction} splits {self.num_ticks} ticks "
                f"into {n_train} + {self.num_ticks - n_train}; expected at least {MIN_TICKS} each"
            )
        head = self._derive(self.values[:n_train], self.start, self.step_seconds)
        tail_start = _advance(self.start, n_train, self.step_seconds)
        tail = self._derive(self.values[n_train:], tail_start, self.step_seconds)
        return head, tail

    def resample(self, tick_seconds: float) -> Trace:
        """Bring the trace to the simulator's tick length.

        Coarsening averages whole groups of rows (a trailing partial group is dropped), so a
        value stays a rate per original step; the later scaling to capacity absorbs the factor.
        Refining interpolates linearly between rows and holds the last row for the remainder of
        its step, so the covered duration stays the same. A tick-index trace has no known step and
        is taken to be at the tick length already, so it is returned unchanged.
        """
        try:
            tick = float(tick_seconds)
        except (TypeError, ValueError):
            tick = math.nan
        if not (math.isfinite(tick) and tick > 0):
            raise TraceError(
                f"{self.source}: tick_seconds={tick_seconds!r}; expected a finite number > 0"
            )
        if self.step_seconds is None:
            logger.debug("%s: tick-index trace, taken as already %gs/tick", self.source, tick)
            return self
        step = self.step_seconds
        ratio = tick / step
        if abs(ratio - 1.0) <= _REL_TOL:
            return self
        if ratio > 1.0:
            k = round(ratio)
            if abs(ratio - k) > 1e-6 * ratio:
                raise TraceError(
                    f"{self.source}: tick {tick:g}s is {ratio:.6g} x the trace step {step}s; "
                    "expected a whole multiple to coarsen"
                )
            groups = self.num_ticks // k
            if groups < MIN_TICKS:
                raise TraceError(
                    f"{self.source}: tick {tick:g}s groups {k} steps of {step}s, leaving "
                    f"{groups} tick(s) of {self.num_ticks}; expected at least {MIN_TICKS}"
                )
            dropped = self.num_ticks - groups * k
            if dropped:
                logger.info(
                    "%s: coarsening by %d drops the last %d row(s)", self.source, k, dropped
                )
            values = self.values[: groups * k].reshape(groups, k, -1).mean(axis=1)
        else:
            factor = 1.0 / ratio
            if factor > MAX_REFINE_FACTOR:
                raise TraceError(
                    f"{self.source}: tick {tick:g}s refines the trace step {step}s by "
                    f"{factor:.6g}x; expected at most {MAX_REFINE_FACTOR}x"
                )
            # Keep the covered duration (num_ticks steps); past the last row the value is held.
            n_new = math.floor(self.num_ticks * step / tick * (1 + _REL_TOL))
            x_new = np.arange(n_new) * ratio  # positions in original rows
            x_old = np.arange(self.num_ticks, dtype=np.float64)
            values = np.column_stack(
                [np.interp(x_new, x_old, self.values[:, j]) for j in range(len(self.columns))]
            )
        return self._derive(values, self.start, tick)

    def _derive(self, values: np.ndarray, start: str, step_seconds: float | None) -> Trace:
        return Trace(
            columns=self.columns,
            values=values,
            step_seconds=step_seconds,
            start=start,
            filled_gaps=self.filled_gaps,
            source=self.source,
        )


_UNIT_NS = {"D": 86_400 * 10**9, "h": 3_600 * 10**9, "m": 60 * 10**9, "s": 10**9}
_UNIT_NS.update({"ms": 10**6, "us": 10**3, "ns": 1})


def _advance(start: str, ticks: int, step_seconds: float | None) -> str:
    """Text label of the tick ``ticks`` rows after ``start`` (same style as ``start``)."""
    if step_seconds is None:
        return str(int(start) + ticks)
    t0 = np.datetime64(start.replace(" ", "T"))
    offset_ns = round(ticks * step_seconds * 1e9)
    t0_unit = np.datetime_data(t0.dtype)[0]
    # The start's own unit if it holds the offset exactly, else the coarsest of s/ms/us/ns
    # that does (and is no coarser than the start's unit).
    fine = [u for u in ("s", "ms", "us", "ns") if _UNIT_NS[u] <= _UNIT_NS.get(t0_unit, 10**9)]
    candidates = ([t0_unit] if t0_unit in _UNIT_NS else []) + fine
    unit = next(u for u in candidates if offset_ns % _UNIT_NS[u] == 0)
    shifted = t0.astype(f"datetime64[{unit}]") + np.timedelta64(offset_ns // _UNIT_NS[unit], unit)
    text = str(shifted)
    return text.replace("T", " ") if " " in start else text


def _read_rows(path: Path, src: str) -> tuple[list[list[str]], list[int]]:
    """All non-blank CSV rows with their 1-based line numbers."""
    name = path.name.lower()
    if not (name.endswith(".csv") or name.endswith(".csv.gz")):
        raise TraceError(f"{src}: unsupported file name; expected a .csv or .csv.gz file")
    if not path.is_file():
        raise TraceError(f"{src}: no such file; expected an existing .csv or .csv.gz trace")
    rows: list[list[str]] = []
    lines: list[int] = []
    try:
        if name.endswith(".gz"):
            handle = gzip.open(path, "rt", encoding="utf-8-sig", newline="")
        else:
            handle = open(path, encoding="utf-8-sig", newline="")
        with handle as f:
            reader = csv.reader(f)
            for row in reader:
                if row and any(cell.strip() for cell in row):
                    rows.append(row)
                    lines.append(reader.line_num)
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise TraceError(
            f"{src}: cannot read ({exc}); expected a readable (gzip) CSV file"
        ) from exc
    except UnicodeDecodeError as exc:
        raise TraceError(f"{src}: not UTF-8 text ({exc}); expected a UTF-8 CSV") from exc
    except csv.Error as exc:
        raise TraceError(f"{src}: malformed CSV ({exc}); expected comma-separated rows") from exc
    return rows, lines


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parse_header(header: list[str], line: int, src: str) -> tuple[str, tuple[str, ...]]:
    names = [cell.strip() for cell in header]
    if len(names) < 2:
        raise TraceError(
            f"{src}: line {line} has {len(names)} column(s); expected a time column and at least "
            "one series column"
        )
    series = names[1:]
    if all(_is_number(n) for n in series):
        raise TraceError(
            f"{src}: line {line} looks like data ({','.join(names)}); expected a header row "
            "naming the time column and the series"
        )
    for j, n in enumerate(names):
        if not n:
            raise TraceError(
                f"{src}: line {line}, column {j + 1}: empty name; expected a header name"
            )
        if j and _is_number(n):
            raise TraceError(
                f"{src}: line {line}, column {j + 1}: name {n!r} is a number; expected a name"
            )
    seen: set[str] = set()
    for j, n in enumerate(series, start=2):
        if n in seen:
            raise TraceError(f"{src}: line {line}, column {j}: duplicate series name {n!r}")
        seen.add(n)
    return names[0], tuple(series)


def _col(name: str, j: int) -> str:
    return f"column {j + 1} ({name!r})"


def _parse_values(
    rows: list[list[str]], lines: list[int], names: list[str], src: str
) -> np.ndarray:
    """Numeric cells as (T, S) float64, with the first bad cell reported precisely."""
    cells = [row[1:] for row in rows]
    try:
        values = np.array(cells, dtype=np.str_).astype(np.float64)
    except ValueError:
        values = None
    if values is None or not np.isfinite(values).all():
        for i, row in enumerate(cells):
            for j, cell in enumerate(row, start=1):
                text = cell.strip()
                where = f"{src}: line {lines[i]}, {_col(names[j], j)}"
                if not text:
                    raise TraceError(f"{where}: missing value (empty cell); expected a number >= 0")
                try:
                    v = float(text)
                except ValueError:
                    raise TraceError(
                        f"{where}: {text!r} is not a number; expected a number >= 0"
                    ) from None
                if not math.isfinite(v):
                    raise TraceError(
                        f"{where}: missing value ({text!r}); expected a finite number >= 0"
                    )
        raise AssertionError("unreachable: a bad cell was expected")  # pragma: no cover
    negative = np.argwhere(values < 0)
    if negative.size:
        i, j = (int(v) for v in negative[0])
        raise TraceError(
            f"{src}: line {lines[i]}, {_col(names[j + 1], j + 1)}: negative value "
            f"{rows[i][j + 1].strip()}; expected a number >= 0"
        )
    return values + 0.0  # turns -0.0 into 0.0


def _parse_time(first: list[str], lines: list[int], name: str, src: str) -> tuple[np.ndarray, bool]:
    """The time column as int64 ticks (tick index) or datetime64; the flag says which."""
    col = _col(name, 0)
    if _INT_RE.match(first[0]):
        try:
            return np.array(first, dtype=np.str_).astype(np.int64), False
        except (ValueError, OverflowError):
            for i, text in enumerate(first):
                if not _INT_RE.match(text):
                    raise TraceError(
                        f"{src}: line {lines[i]}, {col}: {text!r}; expected an integer tick index "
                        f"(line {lines[0]} has one)"
                    ) from None
            i = next(i for i, text in enumerate(first) if abs(int(text)) >= 2**63)
            raise TraceError(
                f"{src}: line {lines[i]}, {col}: {first[i]!r} is out of range; expected an "
                "integer tick index below 2**63"
            ) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            times = np.array(first, dtype=np.str_).astype("datetime64")
    except (ValueError, UserWarning, DeprecationWarning):
        times = None
    if times is None or np.isnat(times).any():
        for i, text in enumerate(first):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("error")
                    bad = np.isnat(np.datetime64(text)) or _INT_RE.match(text) is not None
            except (ValueError, UserWarning, DeprecationWarning):
                bad = True
            if bad:
                raise TraceError(
                    f"{src}: line {lines[i]}, {col}: {text!r}; expected a timestamp "
                    "'YYYY-MM-DD HH:MM:SS' or ISO 8601 'YYYY-MM-DDTHH:MM:SS' without timezone "
                    f"(line {lines[0]} is not an integer tick index)"
                )
        raise TraceError(f"{src}: {col}: mixed timestamps; expected one format")  # pragma: no cover
    return times, True


def _fill_gaps(
    t: np.ndarray,
    values: np.ndarray,
    is_time: bool,
    lines: list[int],
    first: list[str],
    name: str,
    src: str,
) -> tuple[np.ndarray, float | None, int]:
    """Check strict increase, infer the step, fill whole missing steps by interpolation."""
    col = _col(name, 0)
    diffs = np.diff(t)
    if is_time:
        diffs = diffs.astype(np.int64)  # in the parsed datetime unit
    bad = np.flatnonzero(diffs <= 0)
    if bad.size:
        i = int(bad[0]) + 1
        what = "duplicate of" if diffs[i - 1] == 0 else "goes back from"
        raise TraceError(
            f"{src}: line {lines[i]}, {col}: {first[i]!r} {what} line {lines[i - 1]} "
            f"({first[i - 1]!r}); expected strictly increasing time"
        )
    # Lower median: always an observed difference, even when gaps make up half the rows.
    step = float(np.sort(diffs)[(diffs.size - 1) // 2])
    if is_time:
        unit_seconds = np.timedelta64(1, np.datetime_data(t.dtype)[0]) / np.timedelta64(1, "s")
        step_seconds: float | None = step * float(unit_seconds)
        step_text = f"{step_seconds:g}s"
    else:
        step_seconds = None
        step_text = "1 tick"
        if step != 1.0:
            raise TraceError(
                f"{src}: {col}: the tick index advances by {step:g} per row (median); "
                "expected 1 per row"
            )
    k = diffs / step
    off = np.flatnonzero(np.abs(k - np.round(k)) > 1e-9 * np.maximum(k, 1.0))
    if off.size:
        i = int(off[0]) + 1
        raise TraceError(
            f"{src}: line {lines[i]}, {col}: {first[i]!r} is {k[i - 1]:.6g} steps of "
            f"{step_text} after line {lines[i - 1]}; expected a whole number of steps "
            "(the step is the median difference)"
        )
    k_int = np.round(k).astype(np.int64)
    filled = int((k_int - 1).sum())
    if filled:
        grid = np.concatenate([[0], np.cumsum(k_int)])
        full = np.arange(int(grid[-1]) + 1)
        values = np.column_stack(
            [np.interp(full, grid, values[:, j]) for j in range(values.shape[1])]
        )
        worst = int(np.argmax(k_int))
        logger.warning(
            "%s: filled %d missing tick(s) of %s by linear interpolation (largest gap: %d "
            "tick(s) after line %d)",
            src,
            filled,
            step_text,
            int(k_int[worst]) - 1,
            lines[worst],
        )
    return values, step_seconds, filled


def load_trace(path: str | os.PathLike[str]) -> Trace:
    """Load and validate a trace file (see the module docstring for the format and gap policy)."""
    p = Path(path)
    src = str(path)
    rows, lines = _read_rows(p, src)
    if not rows:
        raise TraceError(f"{src}: file is empty; expected a header row and at least 2 data rows")
    time_name, series = _parse_header(rows[0], lines[0], src)
    names = [time_name, *series]
    data, data_lines = rows[1:], lines[1:]
    if len(data) < MIN_TICKS:
        raise TraceError(
            f"{src}: {len(data)} data row(s) after the header; expected at least {MIN_TICKS}"
        )
    width = len(names)
    for row, line in zip(data, data_lines, strict=True):
        if len(row) != width:
            raise TraceError(
                f"{src}: line {line}: {len(row)} column(s); expected {width} like the header"
            )
    first = [row[0].strip() for row in data]
    t, is_time = _parse_time(first, data_lines, time_name, src)
    values = _parse_values(data, data_lines, names, src)
    zero = np.flatnonzero(~values.any(axis=0))
    if zero.size:
        j = int(zero[0]) + 1
        raise TraceError(
            f"{src}: {_col(names[j], j)}: series is all zero; expected at least one value > 0"
        )
    values, step_seconds, filled = _fill_gaps(t, values, is_time, data_lines, first, time_name, src)
    trace = Trace(
        columns=series,
        values=values,
        step_seconds=step_seconds,
        start=first[0],
        filled_gaps=filled,
        source=src,
    )
    logger.debug(
        "loaded %s: %d ticks x %d series, step %s, %d filled",
        src,
        trace.num_ticks,
        len(series),
        step_seconds,
        filled,
    )
    return trace
