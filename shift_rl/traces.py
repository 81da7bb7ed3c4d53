"""Workload traces for trace-replay demand: load, validate, pick series, split and resample.

File format (``.csv`` or ``.csv.gz``, UTF-8, comma separated):

* A header row is required. Its first cell names the time column (it may be empty, as pandas
  writes an index); every further cell names one series. Names may be numbers (VM ids:
  ``step,1633748,223811``): the header is told from data by its first cell, which is never a
  tick index or a timestamp. A name given twice can only be picked by index.
* The first column is either an integer tick index (``0, 1, 2, ...``; one tick per row) or a
  timestamp (``YYYY-MM-DD HH:MM:SS`` or ISO 8601 ``YYYY-MM-DDTHH:MM:SS[.fff]``, no timezone),
  parsed with ``numpy.datetime64``. The kind is decided by the first data row; a column that
  mixes both kinds is an error naming the first row of the other kind.
* Every other cell is a finite number >= 0 (for example requests per tick), or a *missing
  sample*: an empty cell or ``nan``, ``NA``, ``N/A``, ``null``, ``None`` (any case). The file
  needs at least two data rows.

Gap policy: time must be strictly increasing. The grid step is the median difference between
consecutive rows (the lower median, so it is an observed difference); for a tick index it must
be 1. A difference of k whole steps means k - 1 missing ticks (rows). Missing rows and missing
samples are filled per series by linear interpolation between the nearest samples before and
after (the first or last sample is held at the ends), counted (``Trace.filled_gaps`` for rows,
``Trace.missing`` per series for every filled tick) and logged. Rows are never silently
shifted onto the grid: a difference that is not a whole number of steps is an error, as is any
other malformed input (``TraceError`` naming the file, the line and the column).

Usable series: a series is refused only when it is used (:meth:`Trace.select`, which the
scenario's ``demand.trace.columns`` go through) and more than ``MAX_MISSING_SHARE`` (50 %) of
its ticks had to be filled, or it is all zero; the message says how much is missing. A file
whose time column leaves more than half of its span missing is refused on load (no series of it
is usable).

Size bounds, checked while reading so nothing large is allocated first: at most
``MAX_TRACE_BYTES`` of (decompressed) text, ``MAX_COLUMNS`` columns and ``MAX_CELLS`` values,
on the file's rows and after gap filling or resampling alike.

Values are copied as they are (not rescaled); the simulator scales a trace to its own capacity,
so only shape and relative size matter here.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import math
import os
import re
import stat
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Trace", "TraceError", "load_trace"]

logger = logging.getLogger(__name__)

_INT_RE = re.compile(r"^[+-]?\d+$")
# Refining by more than this factor would only invent data (and memory); coarsening must leave
# at least this many ticks.
MAX_REFINE_FACTOR = 1000
MIN_TICKS = 2
_REL_TOL = 1e-9
MAX_TRACE_BYTES = 256 * 2**20
"""Most text read from one trace (after decompression: a gzip bomb stops here)."""
MAX_COLUMNS = 100_000
"""Most columns of a trace file."""
MAX_CELLS = 20_000_000
"""Most values of a trace, as read and after gap filling or resampling (160 MB as float64)."""
MAX_MISSING_SHARE = 0.5
"""Largest share of a used series' ticks that may be filled (rows or samples missing)."""
MISSING_TOKENS = frozenset({"", "nan", "na", "n/a", "null", "none"})
"""Cell texts (stripped, any case) read as a missing sample."""
_CHUNK_CELLS = 1 << 20


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
    missing: tuple[int, ...] = ()
    """Per series, the ticks of the loaded file that were filled (missing rows and samples);
    empty for a trace built in memory (nothing missing)."""
    loaded_ticks: int = 0
    """Ticks of the file as loaded (what ``missing`` counts against); 0 for one built in memory."""

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
        if values.size > MAX_CELLS:
            raise TraceError(
                f"{self.source}: {values.shape[0]} ticks x {values.shape[1]} series = "
                f"{values.size:,} values; at most {MAX_CELLS:,} are allowed"
            )
        missing = tuple(int(v) for v in self.missing) or (0,) * len(self.columns)
        if len(missing) != len(self.columns):
            raise TraceError(f"{self.source}: missing counts do not match the columns")
        view = values.view()
        view.flags.writeable = False
        object.__setattr__(self, "columns", tuple(self.columns))
        object.__setattr__(self, "values", view)
        object.__setattr__(self, "missing", missing)
        object.__setattr__(self, "loaded_ticks", int(self.loaded_ticks) or values.shape[0])

    @property
    def num_ticks(self) -> int:
        """Number of ticks (rows)."""
        return int(self.values.shape[0])

    def select(self, columns: Sequence[str | int] | None, count: int) -> Trace:
        """Pick ``count`` series by name or index (``None``: the first ``count`` in file order).

        Used to map one series onto each module; asking for more modules than listed series is an
        error rather than a silent reuse. A picked series that is unusable (more than
        ``MAX_MISSING_SHARE`` of it filled, or all zero) is an error saying how much is missing;
        the series not picked are not judged.
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
        for i in idx:
            self._check_usable(i)
        return Trace(
            columns=tuple(self.columns[i] for i in idx),
            values=self.values[:, idx],
            step_seconds=self.step_seconds,
            start=self.start,
            filled_gaps=self.filled_gaps,
            source=self.source,
            missing=tuple(self.missing[i] for i in idx),
            loaded_ticks=self.loaded_ticks,
        )

    def _check_usable(self, i: int) -> None:
        where = f"{self.source}: series {i} ({self.columns[i]!r}, column {i + 2})"
        share = self.missing[i] / self.loaded_ticks
        if share > MAX_MISSING_SHARE:
            gaps = f"; {self.filled_gaps} of them whole rows" if self.filled_gaps else ""
            raise TraceError(
                f"{where}: {self.missing[i]:,} of its {self.loaded_ticks:,} ticks are missing "
                f"({100 * share:.1f} %{gaps}); at most {100 * MAX_MISSING_SHARE:.0f} % may be "
                "filled: pick other series (demand.trace.columns)"
            )
        if not self.values[:, i].any():
            raise TraceError(f"{where}: series is all zero; expected at least one value > 0")

    def _column_index(self, col: str | int) -> int:
        if isinstance(col, str):
            found = [j for j, name in enumerate(self.columns) if name == col]
            if not found:
                shown = ", ".join(self.columns[:20]) + (" ..." if len(self.columns) > 20 else "")
                raise TraceError(f"{self.source}: no column {col!r}; expected one of {shown}")
            if len(found) > 1:
                raise TraceError(
                    f"{self.source}: {len(found)} series are named {col!r} (indices "
                    f"{found[:10]}); pick one by its index"
                )
            return found[0]
        if isinstance(col, bool) or not isinstance(col, int | np.integer):
            raise TraceError(f"{self.source}: column {col!r}; expected a name or an integer index")
        if not 0 <= int(col) < len(self.columns):
            named = str(col) in self.columns
            hint = f" (a series is named {str(col)!r}: quote the name to pick it)" if named else ""
            raise TraceError(
                f"{self.source}: column index {col}; expected 0..{len(self.columns) - 1}{hint}"
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
            if n_new * len(self.columns) > MAX_CELLS:
                raise TraceError(
                    f"{self.source}: refining {self.num_ticks:,} ticks of {step:g}s to {tick:g}s "
                    f"gives {n_new:,} ticks x {len(self.columns)} series, above the "
                    f"{MAX_CELLS:,} values allowed"
                )
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
            missing=self.missing,
            loaded_ticks=self.loaded_ticks,
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


class _Limited(io.RawIOBase):
    """A binary stream that raises once more than ``limit`` bytes were read through it."""

    def __init__(self, raw: Any, limit: int, src: str) -> None:
        self.raw, self.left, self.src = raw, limit, src

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.raw.close()
        super().close()

    def readinto(self, b: Any) -> int:
        data = self.raw.read(len(b))
        self.left -= len(data)
        if self.left < 0:
            raise TraceError(
                f"{self.src}: more than {MAX_TRACE_BYTES // 2**20} MiB of text (after "
                "decompression); expected a trace of at most that size"
            )
        b[: len(data)] = data
        return len(data)


def _open_text(path: Path, src: str) -> io.TextIOWrapper:
    name = path.name.lower()
    if not (name.endswith(".csv") or name.endswith(".csv.gz")):
        raise TraceError(f"{src}: unsupported file name; expected a .csv or .csv.gz file")
    try:
        mode: int | None = os.stat(path).st_mode
    except (OSError, ValueError):  # missing, or a name the system refuses (NUL, too long)
        mode = None
    if mode is None or not stat.S_ISREG(mode):
        what = "no such file" if mode is None else "is not a regular file"
        raise TraceError(f"{src}: {what}; expected an existing .csv or .csv.gz trace")
    raw: Any = gzip.open(path, "rb") if name.endswith(".gz") else open(path, "rb")
    limited = io.BufferedReader(_Limited(raw, MAX_TRACE_BYTES, src))
    return io.TextIOWrapper(limited, encoding="utf-8-sig", newline="")


@dataclass
class _Rows:
    """The data rows of a file, parsed chunk by chunk as they are read."""

    times: list[np.ndarray]
    values: list[np.ndarray]
    lines: list[np.ndarray]
    first_time: str = ""
    count: int = 0


def _read(path: Path, src: str) -> tuple[str, tuple[str, ...], int, _Rows]:
    """Header (time name, series names, its line) and the data rows, chunk by chunk."""
    rows = _Rows([], [], [])
    header: tuple[str, tuple[str, ...], int] | None = None
    buf: list[list[str]] = []
    buf_lines: list[int] = []
    chunk = 0
    try:
        with _open_text(path, src) as f:
            reader = csv.reader(f)
            for row in reader:
                if not row or not any(cell.strip() for cell in row):
                    continue
                if header is None:
                    header = (*_parse_header(row, reader.line_num, src), reader.line_num)
                    width = len(header[1]) + 1
                    chunk = max(1, _CHUNK_CELLS // width)
                    continue
                if len(row) != width:
                    raise TraceError(
                        f"{src}: line {reader.line_num}: {len(row)} column(s); expected {width} "
                        "like the header"
                    )
                if (rows.count + len(buf) + 1) * (width - 1) > MAX_CELLS:
                    raise TraceError(
                        f"{src}: more than {MAX_CELLS:,} values (line {reader.line_num} x "
                        f"{width - 1} series); expected a smaller trace"
                    )
                buf.append(row)
                buf_lines.append(reader.line_num)
                if len(buf) >= chunk:
                    _parse_chunk(buf, buf_lines, header, rows, src)
                    buf, buf_lines = [], []
            if buf:
                _parse_chunk(buf, buf_lines, header, rows, src)  # type: ignore[arg-type]
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise TraceError(
            f"{src}: cannot read ({exc}); expected a readable (gzip) CSV file"
        ) from exc
    except UnicodeDecodeError as exc:
        raise TraceError(f"{src}: not UTF-8 text ({exc}); expected a UTF-8 CSV") from exc
    except csv.Error as exc:
        raise TraceError(f"{src}: malformed CSV ({exc}); expected comma-separated rows") from exc
    if header is None:
        raise TraceError(f"{src}: file is empty; expected a header row and at least 2 data rows")
    return header[0], header[1], header[2], rows


def _time_kind(text: str) -> str:
    """'tick' (an integer tick index), 'time' (a timestamp) or '' (neither)."""
    if _INT_RE.match(text):
        return "tick"
    if not text or text[0] not in "0123456789":
        return ""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            return "" if np.isnat(np.datetime64(text)) else "time"
    except (ValueError, UserWarning, DeprecationWarning, OverflowError):
        return ""


def _parse_header(header: list[str], line: int, src: str) -> tuple[str, tuple[str, ...]]:
    names = [cell.strip() for cell in header]
    if len(names) < 2:
        raise TraceError(
            f"{src}: line {line} has {len(names)} column(s); expected a time column and at least "
            "one series column"
        )
    if len(names) > MAX_COLUMNS:
        raise TraceError(
            f"{src}: line {line} has {len(names):,} columns; at most {MAX_COLUMNS:,} are allowed"
        )
    kind = _time_kind(names[0])
    if kind:
        what = "a tick index" if kind == "tick" else "a timestamp"
        raise TraceError(
            f"{src}: line {line} looks like data (its first cell {names[0]!r} is {what}); "
            "expected a header row naming the time column and the series"
        )
    for j, n in enumerate(names[1:], start=2):
        if not n:
            raise TraceError(f"{src}: line {line}, column {j}: empty name; expected a header name")
    return names[0] or "(time)", tuple(names[1:])


def _col(name: str, j: int) -> str:
    return f"column {j + 1} ({name!r})"


def _parse_chunk(
    buf: list[list[str]],
    lines: list[int],
    header: tuple[str, tuple[str, ...], int],
    rows: _Rows,
    src: str,
) -> None:
    """Parse the time cells and values of some rows onto ``rows``."""
    time_name, series, _ = header
    first = [row[0].strip() for row in buf]
    if not rows.count:
        rows.first_time = first[0]
    rows.times.append(_parse_time(first, lines, time_name, rows.first_time, src))
    rows.values.append(_parse_values(buf, lines, (time_name, *series), src))
    rows.lines.append(np.array(lines, dtype=np.int64))
    rows.count += len(buf)


def _parse_values(
    buf: list[list[str]], lines: list[int], names: tuple[str, ...], src: str
) -> np.ndarray:
    """Numeric cells as (rows, S) float64, NaN for a missing sample; the first bad cell (not a
    number, infinite, negative) is reported precisely."""
    out = np.empty((len(buf), len(names) - 1))
    for i, row in enumerate(buf):
        try:
            out[i] = [float(cell) for cell in row[1:]]
        except ValueError:
            out[i] = [_cell(cell, lines[i], j, names, src) for j, cell in enumerate(row[1:], 1)]
    bad = np.isinf(out) | (out < 0)
    if bad.any():
        i, j = (int(v) for v in np.argwhere(bad)[0])
        text = buf[i][j + 1].strip()[:40]
        where = f"{src}: line {lines[i]}, {_col(names[j + 1], j + 1)}"
        if np.isinf(out[i, j]):
            raise TraceError(f"{where}: {text!r} is not finite; expected a finite number >= 0")
        raise TraceError(f"{where}: negative value {text}; expected a number >= 0")
    return out + 0.0  # turns -0.0 into 0.0


def _cell(cell: str, line: int, j: int, names: tuple[str, ...], src: str) -> float:
    text = cell.strip()
    if text.lower() in MISSING_TOKENS:
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise TraceError(
            f"{src}: line {line}, {_col(names[j], j)}: {text[:40]!r} is not a number; expected "
            "a number >= 0 or an empty cell for a missing sample"
        ) from None


def _parse_time(
    first: list[str], lines: list[int], name: str, first_time: str, src: str
) -> np.ndarray:
    """One chunk's time cells as int64 ticks or datetime64, of the kind of the file's first
    data row (``first_time``)."""
    col = _col(name, 0)
    kind = "tick" if _INT_RE.match(first_time) else "time"
    other = {"tick": "a timestamp", "time": "an integer tick index"}[kind]
    this = {"tick": "an integer tick index", "time": "a timestamp"}[kind]

    def mixed(i: int) -> TraceError:
        return TraceError(
            f"{src}: line {lines[i]}, {col}: {first[i][:40]!r} is {other}, but the first data "
            f"row's {first_time!r} is {this}; expected one kind of time in the whole column"
        )

    long = [i for i, text in enumerate(first) if len(text) > 40]
    if long:  # no tick index or timestamp is that long (and numpy would pad every cell to it)
        i = long[0]
        raise TraceError(
            f"{src}: line {lines[i]}, {col}: {first[i][:40]!r}... ({len(first[i])} characters); "
            f"expected {this}"
        )
    if kind == "tick":
        bad = [i for i, text in enumerate(first) if not _INT_RE.match(text)]
        if bad:
            i = bad[0]
            if _time_kind(first[i]) == "time":
                raise mixed(i)
            raise TraceError(
                f"{src}: line {lines[i]}, {col}: {first[i][:40]!r}; expected an integer tick "
                f"index (the first data row has one)"
            )
        try:
            return np.array([int(text) for text in first], dtype=np.int64)
        except OverflowError:
            i = next(i for i, text in enumerate(first) if abs(int(text)) >= 2**63)
            raise TraceError(
                f"{src}: line {lines[i]}, {col}: {first[i][:40]!r} is out of range; expected an "
                "integer tick index below 2**63"
            ) from None
    for i, text in enumerate(first):
        if _INT_RE.match(text):
            raise mixed(i)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            times = np.array(first, dtype=np.str_).astype("datetime64")
    except (ValueError, UserWarning, DeprecationWarning, OverflowError):
        times = None
    if times is None or np.isnat(times).any():
        for i, text in enumerate(first):
            if _time_kind(text) != "time":
                raise TraceError(
                    f"{src}: line {lines[i]}, {col}: {text[:40]!r}; expected a timestamp "
                    "'YYYY-MM-DD HH:MM:SS' or ISO 8601 'YYYY-MM-DDTHH:MM:SS' without timezone "
                    "(the first data row has one)"
                )
        raise TraceError(f"{src}: {col}: mixed timestamps; expected one format")  # pragma: no cover
    return times


def _grid(
    t: np.ndarray, is_time: bool, lines: np.ndarray, name: str, src: str, width: int
) -> tuple[np.ndarray, float | None]:
    """Check strict increase and infer the step; returns (grid position of each row, step)."""
    col = _col(name, 0)
    diffs = np.diff(t)
    if is_time:
        diffs = diffs.astype(np.int64)  # in the parsed datetime unit
    bad = np.flatnonzero(diffs <= 0)

    def shown(i: int) -> str:
        value = t[i]
        return repr(str(value).replace("T", " ") if is_time else str(int(value)))

    if bad.size:
        i = int(bad[0]) + 1
        what = "duplicate of" if diffs[i - 1] == 0 else "goes back from"
        raise TraceError(
            f"{src}: line {lines[i]}, {col}: {shown(i)} {what} line {lines[i - 1]} "
            f"({shown(i - 1)}); expected strictly increasing time"
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
                "expected 1 per row (0, 1, 2, ...; write timestamps for another step)"
            )
    k = diffs / step
    off = np.flatnonzero(np.abs(k - np.round(k)) > 1e-9 * np.maximum(k, 1.0))
    if off.size:
        i = int(off[0]) + 1
        raise TraceError(
            f"{src}: line {lines[i]}, {col}: {shown(i)} is {k[i - 1]:.6g} steps of "
            f"{step_text} after line {lines[i - 1]}; expected a whole number of steps "
            "(the step is the median difference)"
        )
    span = float(k.sum()) + 1.0  # ticks from the first row to the last, in float: no overflow
    rows = t.shape[0]
    if span * width > MAX_CELLS or (span - rows) > MAX_MISSING_SHARE * span:
        worst = int(np.argmax(k))
        raise TraceError(
            f"{src}: {col}: the rows span {span:,.0f} ticks of {step_text} but there are only "
            f"{rows:,} rows: {span - rows:,.0f} ticks ({100 * (span - rows) / span:.1f} %) "
            f"are missing (largest gap: {k[worst] - 1:,.0f} ticks after line {lines[worst]}); "
            + (
                f"at most {100 * MAX_MISSING_SHARE:.0f} % may be filled"
                if span * width <= MAX_CELLS
                else f"filling them would take more than {MAX_CELLS:,} values"
            )
        )
    positions = np.concatenate([[0], np.cumsum(np.round(k).astype(np.int64))])
    return positions, step_seconds


def _fill(
    values: np.ndarray, positions: np.ndarray, series: tuple[str, ...], src: str
) -> tuple[np.ndarray, tuple[int, ...]]:
    """Values on the full grid, each series' gaps (missing rows and samples) interpolated;
    and per series the number of ticks filled."""
    ticks = int(positions[-1]) + 1
    full = values
    if ticks != values.shape[0]:
        full = np.full((ticks, values.shape[1]), np.nan)
        full[positions] = values
    missing = np.isnan(full)
    counts = missing.sum(axis=0)
    grid = np.arange(ticks, dtype=np.float64)
    for j in np.flatnonzero(counts):
        ok = ~missing[:, j]
        if ok.any():
            full[:, j] = np.interp(grid, grid[ok], full[ok, j])
        else:
            full[:, j] = 0.0  # no sample at all: unusable, refused if it is ever picked
    cells = [int(c) for c in counts]
    rows = ticks - values.shape[0]
    partly = [j for j, c in enumerate(cells) if c > rows]
    if rows:
        logger.warning(
            "%s: filled %d missing tick(s) (whole rows) of every series by linear interpolation",
            src, rows,
        )  # fmt: skip
    if partly:
        worst = max(partly, key=lambda j: cells[j])
        logger.warning(
            "%s: filled %d missing sample(s) (empty cells) in %d of %d series by linear "
            "interpolation (most in %r: %d of %d ticks filled, %.1f %%)",
            src, sum(cells[j] - rows for j in partly), len(partly), len(series), series[worst],
            cells[worst], ticks, 100 * cells[worst] / ticks,
        )  # fmt: skip
    return full, tuple(cells)


def load_trace(path: str | os.PathLike[str]) -> Trace:
    """Load and validate a trace file (see the module docstring for the format and gap policy)."""
    p = Path(path)
    src = str(path)
    time_name, series, _, rows = _read(p, src)
    if rows.count < MIN_TICKS:
        raise TraceError(
            f"{src}: {rows.count} data row(s) after the header; expected at least {MIN_TICKS}"
        )
    t = np.concatenate(rows.times)
    lines = np.concatenate(rows.lines)
    values = np.concatenate(rows.values) if len(rows.values) > 1 else rows.values[0]
    is_time = t.dtype.kind == "M"
    positions, step_seconds = _grid(t, is_time, lines, time_name, src, len(series))
    filled_rows = int(positions[-1]) + 1 - rows.count
    values, missing = _fill(values, positions, series, src)
    trace = Trace(
        columns=series,
        values=values,
        step_seconds=step_seconds,
        start=rows.first_time,
        filled_gaps=filled_rows,
        source=src,
        missing=missing,
    )
    logger.debug(
        "loaded %s: %d ticks x %d series, step %s, %d rows filled",
        src, trace.num_ticks, len(series), step_seconds, filled_rows,
    )  # fmt: skip
    return trace
