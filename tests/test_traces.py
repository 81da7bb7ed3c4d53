"""Tests for shift_rl.traces: error messages, gap filling, select/split/resample, real files."""

from __future__ import annotations

import gzip
import importlib.util
import logging
from pathlib import Path

import numpy as np
import pytest

from shift_rl.traces import Trace, TraceError, load_trace

REPO_ROOT = Path(__file__).resolve().parents[1]
SHIPPED = REPO_ROOT / "configs" / "traces" / "azure_functions_2019_top6.csv.gz"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "traces"
SHARED_FILES = sorted(SHARED.glob("*.csv.gz")) if SHARED.is_dir() else []
needs_shared = pytest.mark.skipif(
    not SHARED_FILES, reason=f"shared traces not available at {SHARED}"
)


def write(tmp_path: Path, text: str, name: str = "t.csv") -> Path:
    path = tmp_path / name
    if name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def load_error(path: Path) -> str:
    with pytest.raises(TraceError) as info:
        load_trace(path)
    message = str(info.value)
    assert str(path) in message  # every message names the file
    return message


# --- bad input: one test per case ---------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    msg = load_error(tmp_path / "nope.csv")
    assert "no such file" in msg


def test_wrong_suffix(tmp_path: Path) -> None:
    msg = load_error(write(tmp_path, "t,a\n0,1\n1,2\n", "t.txt"))
    assert ".csv or .csv.gz" in msg


def test_unreadable_gzip(tmp_path: Path) -> None:
    path = tmp_path / "t.csv.gz"
    path.write_bytes(b"minute,a\n0,1\n1,2\n")  # plain text behind a .gz name
    assert "gzip" in load_error(path)


def test_truncated_gzip(tmp_path: Path) -> None:
    path = tmp_path / "t.csv.gz"
    path.write_bytes(gzip.compress(b"minute,a\n" + b"0,1\n" * 1000)[:30])
    assert "cannot read" in load_error(path)


def test_empty_file(tmp_path: Path) -> None:
    assert "empty" in load_error(write(tmp_path, ""))


def test_empty_gzip_file(tmp_path: Path) -> None:
    assert "empty" in load_error(write(tmp_path, "", "t.csv.gz"))


def test_header_only(tmp_path: Path) -> None:
    msg = load_error(write(tmp_path, "minute,a,b\n"))
    assert "0 data row(s)" in msg and "at least 2" in msg


def test_fewer_than_two_rows(tmp_path: Path) -> None:
    msg = load_error(write(tmp_path, "minute,a\n0,5\n"))
    assert "1 data row(s)" in msg and "at least 2" in msg


def test_missing_header(tmp_path: Path) -> None:
    msg = load_error(write(tmp_path, "0,1,2\n1,3,4\n2,5,6\n"))
    assert "line 1" in msg and "expected a header row" in msg


def test_missing_header_timestamp(tmp_path: Path) -> None:
    msg = load_error(write(tmp_path, "2020-01-01 00:00:00,4\n2020-01-01 00:01:00,5\n"))
    assert "expected a header row" in msg


def test_no_series_column(tmp_path: Path) -> None:
    msg = load_error(write(tmp_path, "minute\n0\n1\n2\n"))
    assert "line 1" in msg and "at least one series column" in msg


def test_duplicate_series_name_can_only_be_picked_by_index(tmp_path: Path) -> None:
    trace = load_trace(write(tmp_path, "minute,a,a\n0,1,2\n1,3,4\n"))
    assert trace.columns == ("a", "a")
    with pytest.raises(TraceError, match=r"2 series are named 'a' \(indices \[0, 1\]\)"):
        trace.select(["a"], 1)
    np.testing.assert_array_equal(trace.select([1], 1).values[:, 0], [2, 4])


def test_ragged_row(tmp_path: Path) -> None:
    msg = load_error(write(tmp_path, "minute,a,b\n0,1,2\n1,3\n2,4,5\n"))
    assert "line 3" in msg and "2 column(s)" in msg and "expected 3" in msg


def test_non_numeric_cell(tmp_path: Path) -> None:
    msg = load_error(write(tmp_path, "minute,a,b\n0,1,2\n1,3,lots\n"))
    assert "line 3, column 3 ('b')" in msg and "'lots' is not a number" in msg


@pytest.mark.parametrize("cell", ["", " ", "nan", "NaN", "NA", "n/a", "null", "None"])
def test_a_missing_sample_is_interpolated_and_counted(tmp_path: Path, cell: str) -> None:
    trace = load_trace(write(tmp_path, f"minute,a,b\n0,1,2\n1,{cell},4\n2,5,6\n"))
    np.testing.assert_array_equal(trace.values, [[1, 2], [3, 4], [5, 6]])
    assert trace.missing == (1, 0) and trace.filled_gaps == 0


def test_missing_samples_at_the_ends_hold_the_nearest(tmp_path: Path) -> None:
    trace = load_trace(write(tmp_path, "minute,a,b\n0,,2\n1,3,4\n2,5,\n3,7,\n"))
    np.testing.assert_array_equal(trace.values, [[3, 2], [3, 4], [5, 4], [7, 4]])
    assert trace.missing == (1, 2)


@pytest.mark.parametrize("cell", ["inf", "-inf", "Infinity"])
def test_infinite_cell(tmp_path: Path, cell: str) -> None:
    msg = load_error(write(tmp_path, f"minute,a,b\n0,1,2\n1,3,4\n2,5,{cell}\n"))
    assert "line 4, column 3 ('b')" in msg and "is not finite" in msg


def test_negative_value(tmp_path: Path) -> None:
    msg = load_error(write(tmp_path, "minute,a,b\n0,1,2\n1,-3,4\n"))
    assert "line 3, column 2 ('a')" in msg and "negative value -3" in msg


def test_negative_zero_is_zero(tmp_path: Path) -> None:
    trace = load_trace(write(tmp_path, "minute,a\n0,-0\n1,2\n"))
    assert not np.signbit(trace.values).any()


def test_duplicate_timestamp(tmp_path: Path) -> None:
    text = "time,a\n2020-01-01 00:00:00,1\n2020-01-01 00:01:00,2\n2020-01-01 00:01:00,3\n"
    msg = load_error(write(tmp_path, text))
    assert "line 4, column 1 ('time')" in msg and "duplicate of line 3" in msg
    assert "strictly increasing" in msg


def test_time_goes_back(tmp_path: Path) -> None:
    text = "time,a\n2020-01-01T00:02:00,1\n2020-01-01T00:03:00,2\n2020-01-01T00:01:00,3\n"
    msg = load_error(write(tmp_path, text))
    assert "line 4" in msg and "goes back from line 3" in msg and "strictly increasing" in msg


def test_tick_index_not_increasing(tmp_path: Path) -> None:
    msg = load_error(write(tmp_path, "minute,a\n0,1\n1,2\n1,3\n2,4\n"))
    assert "line 4, column 1 ('minute')" in msg and "duplicate of line 3" in msg


def test_all_zero_series_is_refused_only_when_used(tmp_path: Path) -> None:
    trace = load_trace(write(tmp_path, "minute,a,idle\n0,1,0\n1,2,0\n2,3,0\n"))
    assert trace.select(["a"], 1).columns == ("a",)
    with pytest.raises(TraceError) as info:
        trace.select(None, 2)
    assert "series 1 ('idle', column 3)" in str(info.value) and "all zero" in str(info.value)


def test_gap_not_whole_steps(tmp_path: Path) -> None:
    text = (
        "time,a\n2020-01-01 00:00:00,1\n2020-01-01 00:01:00,2\n2020-01-01 00:02:00,3\n"
        "2020-01-01 00:03:30,4\n2020-01-01 00:04:30,5\n"
    )
    msg = load_error(write(tmp_path, text))
    assert "line 5, column 1 ('time')" in msg and "1.5 steps of 60s" in msg
    assert "whole number of steps" in msg


def test_bad_timestamp(tmp_path: Path) -> None:
    text = "time,a\n2020-01-01 00:00:00,1\n2020-01-01 00:01:00,2\nyesterday,3\n"
    msg = load_error(write(tmp_path, text))
    assert "line 4, column 1 ('time')" in msg and "'yesterday'" in msg and "timestamp" in msg


def test_timezone_rejected(tmp_path: Path) -> None:
    text = "time,a\n2020-01-01T00:00:00Z,1\n2020-01-01T00:01:00Z,2\n"
    msg = load_error(write(tmp_path, text))
    assert "line 2" in msg and "without timezone" in msg


def test_non_integer_tick(tmp_path: Path) -> None:
    msg = load_error(write(tmp_path, "minute,a\n0,1\n1,2\n2.5,3\n"))
    assert "line 4, column 1 ('minute')" in msg and "integer tick index" in msg


def test_tick_index_with_other_step(tmp_path: Path) -> None:
    msg = load_error(write(tmp_path, "step,a\n0,1\n5,2\n10,3\n"))
    assert "advances by 5" in msg and "expected 1 per row" in msg


# --- good input ---------------------------------------------------------------------------------


def test_timestamp_trace_with_gaps_is_interpolated(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = (
        "time,a,b\n"
        "2020-01-01 00:00:00,10,1\n"
        "2020-01-01 00:01:00,20,1\n"  # then 2 minutes missing
        "2020-01-01 00:04:00,50,4\n"
        "2020-01-01 00:05:00,40,4\n"  # then 1 minute missing
        "2020-01-01 00:07:00,0,8\n"
    )
    with caplog.at_level(logging.WARNING, logger="shift_rl.traces"):
        trace = load_trace(write(tmp_path, text, "t.csv.gz"))
    assert trace.filled_gaps == 3
    assert "filled 3 missing tick(s)" in caplog.text
    assert trace.step_seconds == 60.0
    assert trace.start == "2020-01-01 00:00:00"
    assert trace.columns == ("a", "b")
    np.testing.assert_allclose(trace.values[:, 0], [10, 20, 30, 40, 50, 40, 20, 0])
    np.testing.assert_allclose(trace.values[:, 1], [1, 1, 2, 3, 4, 4, 6, 8])
    assert trace.values.dtype == np.float64 and trace.num_ticks == 8


def test_iso_t_timestamps_and_step(tmp_path: Path) -> None:
    text = "ts,a\n2020-01-01T00:00:00,1\n2020-01-01T00:00:30,2\n2020-01-01T00:01:00,3\n"
    trace = load_trace(write(tmp_path, text))
    assert trace.step_seconds == 30.0 and trace.filled_gaps == 0
    assert trace.start == "2020-01-01T00:00:00"


def test_tick_index_trace_with_gaps_is_interpolated(tmp_path: Path) -> None:
    text = "minute,a\n3,2\n4,4\n7,10\n8,1\n"
    trace = load_trace(write(tmp_path, text))
    assert trace.filled_gaps == 2
    assert trace.step_seconds is None and trace.start == "3"
    np.testing.assert_allclose(trace.values[:, 0], [2, 4, 6, 8, 10, 1])


def test_whitespace_bom_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("\ufeffminute, a ,b\n0, 1,2\n\n1,3 ,4\n\n")
    trace = load_trace(path)
    assert trace.columns == ("a", "b")
    np.testing.assert_array_equal(trace.values, [[1, 2], [3, 4]])


def test_values_are_read_only(tmp_path: Path) -> None:
    trace = load_trace(write(tmp_path, "minute,a\n0,1\n1,2\n"))
    with pytest.raises(ValueError, match="read-only"):
        trace.values[0, 0] = 5.0


# --- select / split / resample ------------------------------------------------------------------


def make_trace(values: list[list[float]], step: float | None = 60.0) -> Trace:
    return Trace(
        columns=tuple("abcd"[: len(values[0])]),
        values=np.array(values, dtype=np.float64),
        step_seconds=step,
        start="2020-01-01 00:00:00" if step is not None else "0",
        filled_gaps=0,
        source="mem.csv",
    )


def test_select_by_name_index_and_default() -> None:
    trace = make_trace([[1, 2, 3], [4, 5, 6]])
    picked = trace.select(["c", 0], 2)
    assert picked.columns == ("c", "a")
    np.testing.assert_array_equal(picked.values, [[3, 1], [6, 4]])
    assert trace.select(None, 2).columns == ("a", "b")
    assert trace.select((1, "c", "a"), 2).columns == ("b", "c")  # extra columns are dropped


@pytest.mark.parametrize(
    ("columns", "count", "needle"),
    [
        (None, 4, "only 3"),
        (["a"], 2, "1 column(s) given"),
        (["zz"], 1, "no column 'zz'"),
        ([7], 1, "expected 0..2"),
        (["a", 0], 2, "repeat a series"),
        (None, 0, "expected an integer >= 1"),
    ],
)
def test_select_errors(columns: list[str | int] | None, count: int, needle: str) -> None:
    with pytest.raises(TraceError, match=r"mem\.csv") as info:
        make_trace([[1, 2, 3], [4, 5, 6]]).select(columns, count)
    assert needle in str(info.value)


def test_split_by_time() -> None:
    trace = make_trace([[float(i)] for i in range(10)])
    train, test = trace.split(0.7)
    np.testing.assert_array_equal(train.values[:, 0], range(7))
    np.testing.assert_array_equal(test.values[:, 0], range(7, 10))
    assert train.start == "2020-01-01 00:00:00" and test.start == "2020-01-01 00:07:00"
    _, tick_test = make_trace([[1.0]] * 10, step=None).split(0.5)
    assert tick_test.start == "5"


@pytest.mark.parametrize("fraction", [0.0, 1.0, 0.05, 0.95, float("nan")])
def test_split_errors(fraction: float) -> None:
    with pytest.raises(TraceError, match="train_fraction"):
        make_trace([[1.0]] * 10).split(fraction)


def test_resample_coarsen_averages_whole_groups() -> None:
    trace = make_trace([[1, 10], [2, 20], [3, 30], [4, 40], [5, 50], [6, 60], [7, 70]])
    coarse = trace.resample(180.0)  # groups of 3; the 7th row is a partial group and is dropped
    assert coarse.step_seconds == 180.0 and coarse.start == trace.start
    np.testing.assert_allclose(coarse.values, [[2, 20], [5, 50]])


def test_resample_refine_interpolates() -> None:
    trace = make_trace([[0, 4], [6, 4], [3, 0]])
    fine = trace.resample(20.0)  # 3 sub-ticks per row; last row held for its own minute
    assert fine.step_seconds == 20.0 and fine.num_ticks == 9
    np.testing.assert_allclose(fine.values[:, 0], [0, 2, 4, 6, 5, 4, 3, 3, 3])
    np.testing.assert_allclose(fine.values[:, 1], [4, 4, 4, 4, 8 / 3, 4 / 3, 0, 0, 0])


def test_resample_same_step_and_tick_index_return_self() -> None:
    trace = make_trace([[1.0], [2.0]])
    assert trace.resample(60.0) is trace
    ticks = make_trace([[1.0], [2.0]], step=None)
    assert ticks.resample(5.0) is ticks


@pytest.mark.parametrize(
    ("tick", "needle"),
    [
        (90.0, "whole multiple"),
        (600.0, "expected at least 2"),
        (0.01, "at most 1000x"),
        (0.0, "finite number > 0"),
        (float("inf"), "finite number > 0"),
    ],
)
def test_resample_errors(tick: float, needle: str) -> None:
    with pytest.raises(TraceError, match=r"mem\.csv") as info:
        make_trace([[1.0]] * 10).resample(tick)
    assert needle in str(info.value)


# --- real traces --------------------------------------------------------------------------------


def test_shipped_slice_loads() -> None:
    trace = load_trace(SHIPPED)
    assert trace.num_ticks == 1440 and len(trace.columns) == 6
    assert trace.step_seconds is None and trace.start == "0" and trace.filled_gaps == 0
    assert trace.columns[0] == "fn_bcbea1f2"
    assert (trace.values.min(axis=0) > 0).all()
    assert SHIPPED.stat().st_size < 50_000


@needs_shared
@pytest.mark.parametrize("path", SHARED_FILES, ids=lambda p: p.name)
def test_shared_trace_loads(path: Path) -> None:
    trace = load_trace(path)
    assert trace.num_ticks >= 1440 and len(trace.columns) >= 1
    assert np.isfinite(trace.values).all() and (trace.values >= 0).all()
    if path.name.startswith("worldcup98"):
        assert trace.filled_gaps == 10
        assert trace.num_ticks == 125_300 + 10
        assert trace.step_seconds == 60.0 and trace.start == "1998-04-30 21:30:00"
    else:
        assert trace.filled_gaps == 0 and trace.step_seconds is None


@needs_shared
def test_shipped_slice_is_reproducible(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "make_trace_slice", REPO_ROOT / "scripts" / "make_trace_slice.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "slice.csv.gz"
    module.make_slice(SHARED / "azure_functions_2019.csv.gz", out, list(module.DEFAULT_COLUMNS))
    assert out.read_bytes() == SHIPPED.read_bytes()
