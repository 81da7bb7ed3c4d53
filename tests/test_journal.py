"""Durable controller files: the journal's torn tails and damage, monotonic ids, the state
dir's lock, untrusted state.npz, and fuzzing of both files (issue 14)."""

from __future__ import annotations

import gc
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shift_rl.controller import journal as journal_mod
from shift_rl.controller.journal import Journal, JsonLines, StateFileError
from shift_rl.controller.statedir import (
    ArraySpec,
    DirLock,
    StateDir,
    StateDirBusyError,
    read_state,
    state_specs,
    write_state,
)

ROOT = Path(__file__).resolve().parents[1]
M, R = 6, 1


def _intent(seq: int, src: int = 0, dst: int = 1, units: int = 2) -> dict:
    return {
        "seq": seq, "id": seq, "event": "intent", "reason": "shift", "tick": seq, "src": src,
        "dst": dst, "kind": 0, "units": units, "expected_src_after": 3, "baseline": 0.9,
    }  # fmt: skip


def _outcome(intent: dict, seq: int, event: str = "applied", **extra) -> dict:
    return {**intent, "seq": seq, "event": event, **extra}


def _records(n_shifts: int, start: int = 1) -> list[dict]:
    """``n_shifts`` intent + outcome pairs, seq from ``start``."""
    out, seq = [], start
    for i in range(n_shifts):
        e = _intent(seq, src=i % M, dst=(i + 1) % M)
        out += [e, _outcome(e, seq + 1, "applied" if i % 3 else "aborted")]
        seq += 2
    return out


def _write_lines(path: Path, records: list[dict], tail: bytes = b"") -> None:
    path.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in records) + tail)


# -- torn tails and damage (defect 2) -------------------------------------------------------


def test_torn_tail_is_repaired_and_later_records_are_read(tmp_path) -> None:
    path = tmp_path / "journal.jsonl"
    first = _records(50)  # 100 records
    torn = json.dumps(_intent(101)).encode()[:37]  # killed mid-write
    _write_lines(path, first, torn)
    size = path.stat().st_size

    j = Journal(path, num_modules=M, num_kinds=R)
    assert j.repaired is not None and j.repaired.read_bytes() == torn  # nothing is lost
    assert j.repaired.name == f"journal.jsonl.torn-{size - len(torn)}"
    assert j.last_seq == 100 and j.records_after(0) == first
    later = _records(5, start=101)
    for r in later:
        j.append(r)
    j.close()
    assert Journal.read(path) == first + later  # all 110 records, the later outcomes too
    assert JsonLines.read(path) == first + later


@pytest.mark.parametrize(
    "tail", [b"\x00" * 300, b"\x00" * 40 + b"\n", b'{"seq": 9\n', b"\xff\xfe garbage\n"]
)
def test_an_unparsable_last_line_is_a_torn_tail(tmp_path, tail) -> None:
    path = tmp_path / "journal.jsonl"
    first = _records(3)
    _write_lines(path, first, tail)
    assert JsonLines.read(path) == first  # the reader ignores it
    assert Journal.scan(path).torn == path.stat().st_size - len(tail)
    with Journal(path) as j:
        assert j.repaired.read_bytes() == tail
        j.append(_intent(7))
    assert Journal.read(path) == [*first, _intent(7)]


def test_the_audit_log_repairs_its_tail_too(tmp_path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b'{"tick": 0}\n{"tick": 1}\n{"tic')
    with JsonLines(path) as audit:
        audit.append({"tick": 2})
    assert [r["tick"] for r in JsonLines.read(path)] == [0, 1, 2]
    assert (tmp_path / "audit.jsonl.torn-24").read_bytes() == b'{"tic'


@pytest.mark.parametrize(
    ("garbage", "problem"),
    [
        (b"not json at all", "not JSON"),
        (b'{"seq": 3, "id": \xff\xff}', "not UTF-8"),
        (b"", "not JSON"),
        (b"[1, 2]", "expected a JSON object"),
    ],
)
def test_garbage_in_the_middle_names_the_line(tmp_path, garbage, problem) -> None:
    path = tmp_path / "journal.jsonl"
    recs = _records(4)
    _write_lines(path, recs[:3])
    with open(path, "ab") as f:
        f.write(garbage + b"\n" + b"".join(json.dumps(r).encode() + b"\n" for r in recs[3:]))
    for read in (JsonLines.read, Journal.read, Journal):
        with pytest.raises(StateFileError, match=problem) as err:
            read(path)
        assert err.value.path == path and err.value.where == "line 4"
        assert str(path) in str(err.value) and "line 4" in str(err.value)
    # the controller's way in refuses to start, and does not hold the lock afterwards
    with pytest.raises(StateFileError, match="line 4"):
        StateDir(tmp_path)
    DirLock(tmp_path).release()


def test_a_torn_record_followed_by_records_is_damage_not_a_tail(tmp_path) -> None:
    # what the old controller left: new records appended after the torn bytes
    path = tmp_path / "journal.jsonl"
    recs = _records(3)
    path.write_bytes(
        json.dumps(recs[0]).encode() + b"\n" + json.dumps(recs[1]).encode()[:20]
        + b"".join(json.dumps(r).encode() + b"\n" for r in recs[2:])
    )  # fmt: skip
    with pytest.raises(StateFileError, match=r"line 2.*not a torn last write"):
        Journal(path)
    assert path.read_bytes().count(b"\n") == 5, "damage is never truncated away"


def test_a_line_too_long_is_refused_without_reading_it(tmp_path) -> None:
    path = tmp_path / "journal.jsonl"
    _write_lines(path, _records(1))
    with open(path, "ab") as f:
        f.write(b'{"x": "' + b"a" * (8 << 20) + b'"}\n')
        f.write(json.dumps(_intent(3)).encode() + b"\n")
    tracemalloc.start()
    try:
        with pytest.raises(StateFileError, match="line 3: line longer than 65536 bytes"):
            Journal.read(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 << 20, f"reading used {peak} bytes"
    # the same line as a torn tail (no newline) is moved aside
    path.write_bytes(json.dumps(_intent(1)).encode() + b"\n" + b"x" * (1 << 20))
    with Journal(path) as j:
        assert j.last_seq == 1 and j.repaired.stat().st_size == 1 << 20


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        ({k: v for k, v in _intent(1).items() if k != "units"}, "field 'units' missing"),
        ({**_intent(1), "seq": True}, "field 'seq': expected an integer"),
        ({**_intent(1), "src": "0"}, "field 'src': expected an integer"),
        ({**_intent(1), "dst": 0}, "'src' and 'dst'"),
        ({**_intent(1), "dst": M}, f"field 'dst': expected an integer < {M}"),
        ({**_intent(1), "units": 0}, "at least 1 unit"),
        ({**_intent(1), "event": "done"}, "field 'event'"),
        ({**_intent(1), "baseline": "high"}, "field 'baseline'"),
        ({**_intent(1), "reason": None}, "field 'reason'"),
    ],
)
def test_records_are_validated_by_field(tmp_path, record, problem) -> None:
    path = tmp_path / "journal.jsonl"
    _write_lines(path, [_intent(1, src=2, dst=3), record, _intent(9)])
    record_ok = {**_intent(2), "baseline": float("nan")}  # a rollback's baseline is NaN
    with pytest.raises(StateFileError, match=f"line 2: .*{problem}"):
        Journal.read(path, num_modules=M, num_kinds=R)
    with Journal(tmp_path / "new.jsonl", num_modules=M, num_kinds=R) as j:
        j.append(record_ok)
        with pytest.raises(StateFileError, match=problem):
            j.append(record)
    assert len(Journal.read(tmp_path / "new.jsonl")) == 1, "a refused record is not written"


def test_journal_invariants_catch_reused_ids_and_double_outcomes(tmp_path) -> None:
    e1, e2 = _intent(1), _intent(3)
    cases = {
        "seq 2 does not follow seq 2": [e1, _outcome(e1, 2), {**e2, "seq": 2}],
        "intent id 1 is not above the last intent id 1": [e1, _outcome(e1, 2), {**e1, "seq": 3}],
        "not an open intent": [e1, _outcome(e1, 2), _outcome(e1, 3)],  # resolved twice
        "describes the shift": [e1, {**_outcome(e1, 2), "dst": 4}],
    }
    for problem, recs in cases.items():
        _write_lines(tmp_path / "j.jsonl", recs)
        with pytest.raises(StateFileError, match=f"line {len(recs)}: .*{problem}"):
            Journal.read(tmp_path / "j.jsonl")
    with Journal(tmp_path / "k.jsonl") as j:
        j.append(e1)
        j.append(_outcome(e1, 2))
        for bad in (_intent(2), _outcome(e1, 3), {**_intent(3), "id": 1}):
            with pytest.raises(StateFileError):
                j.append(bad)
        assert j.last_seq == 2 and j.last_id == 1 and j.open_intents == []
        j.append(_intent(3))
        assert [e["id"] for e in j.open_intents] == [3]
    assert Journal.read(tmp_path / "k.jsonl") == [e1, _outcome(e1, 2), _intent(3)]


def test_records_after_serves_a_restart_and_rescans_beyond_its_window(tmp_path, monkeypatch):
    monkeypatch.setattr(journal_mod, "TAIL_RECORDS", 8)
    path = tmp_path / "journal.jsonl"
    recs = _records(20)  # seq 1..40
    _write_lines(path, recs)
    with Journal(path) as j:
        assert len(j.state.tail) == 8
        assert j.records_after(36) == recs[36:]
        assert j.records_after(3) == recs[3:]  # from the file again
        assert j.records_after(40) == []


def test_a_failed_write_leaves_no_half_record(tmp_path, monkeypatch) -> None:
    path = tmp_path / "journal.jsonl"
    j = Journal(path)
    j.append(_intent(1))
    real = os.write
    calls = {"n": 0}

    def half_then_fail(fd, data):
        calls["n"] += 1
        if calls["n"] == 1:
            return real(fd, bytes(data[:10]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_fail)
    with pytest.raises(OSError, match="No space"):
        j.append(_outcome(_intent(1), 2))
    monkeypatch.setattr(os, "write", real)
    j.append(_outcome(_intent(1), 2))
    j.close()
    assert Journal.read(path) == [_intent(1), _outcome(_intent(1), 2)]


def test_the_controllers_own_journal_validates(tmp_path) -> None:
    from shift_rl.agents import make_policy
    from shift_rl.controller import ShiftController, SimulatedBackend

    be = SimulatedBackend("default", seed=3)
    p = be.params
    ctl = ShiftController(make_policy("potential", p), be, interval=0, state_dir=tmp_path)
    ctl.run(300)
    ctl.close()
    scan = Journal.scan(tmp_path / "journal.jsonl", num_modules=p.num_modules,
                        num_kinds=p.num_resources)  # fmt: skip
    assert scan.records >= 10 and scan.open == {} and scan.torn is None


# -- monotonic ids (defect 3) ---------------------------------------------------------------


def test_ids_continue_after_state_npz_is_deleted(tmp_path) -> None:
    with StateDir(tmp_path, num_modules=M, num_kinds=R) as store:
        for r in _records(13):
            store.journal.append(r)
        store.write_state({"tick": 9, "seq": 26, "fingerprint": "x"}, {"a": np.zeros(2)})
    (tmp_path / "state.npz").unlink()
    with StateDir(tmp_path, num_modules=M, num_kinds=R) as store:
        assert store.read_state() is None  # a fresh start...
        seq = store.last_seq(None)
        assert seq == 26  # ...that does not start the ids again
        store.journal.append(_intent(seq + 1))
        with pytest.raises(StateFileError, match="never reused"):
            store.journal.append({**_intent(seq + 2), "id": 1})
    # the journal lost and the state kept: the state's seq still counts
    (tmp_path / "journal.jsonl").unlink()
    with StateDir(tmp_path) as store:
        assert store.last_seq({"seq": 40}) == 40


# -- the lock (defect 4) --------------------------------------------------------------------


def test_a_second_controller_on_one_state_dir_fails_at_once(tmp_path) -> None:
    first = StateDir(tmp_path)
    t0 = time.monotonic()
    with pytest.raises(StateDirBusyError) as err:
        StateDir(tmp_path)
    assert time.monotonic() - t0 < 5
    assert str(err.value) == (
        f"state dir {tmp_path} is in use by pid {os.getpid()} (lock file {tmp_path}/lock)"
    )
    assert isinstance(err.value, StateFileError) and isinstance(err.value, ValueError)
    first.close()
    with pytest.raises(ValueError, match="closed"):
        first.write_state({"tick": 0, "seq": 0, "fingerprint": ""}, {})
    StateDir(tmp_path).close()  # free again


def test_a_state_dir_dropped_without_close_frees_the_lock(tmp_path) -> None:
    store = StateDir(tmp_path)
    del store  # e.g. a controller whose start failed after opening its state dir
    gc.collect()
    StateDir(tmp_path).close()


def test_the_lock_dies_with_its_holder(tmp_path) -> None:
    code = (
        "import sys, time\n"
        "from shift_rl.controller.statedir import DirLock\n"
        "lock = DirLock(sys.argv[1])\n"
        "print('locked', flush=True)\n"
        "time.sleep(300)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], env=env,
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(StateDirBusyError, match=f"in use by pid {child.pid} "):
            StateDir(tmp_path)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
        child.stdout.close()
    with StateDir(tmp_path) as store:  # no stale lock after SIGKILL
        assert store.lock.held


def test_write_state_uses_its_own_temp_file_and_cleans_up(tmp_path, monkeypatch) -> None:
    meta = {"tick": 1, "seq": 2, "fingerprint": "f"}
    write_state(tmp_path, meta, {"a": np.arange(3.0)})
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            for i in range(20):
                write_state(tmp_path, {**meta, "tick": i}, {"a": np.full(1000, float(k))})
        except BaseException as err:  # pragma: no cover - the failure being tested
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert read_state(tmp_path)[1]["a"].shape == (1000,)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        write_state(tmp_path, meta, {"a": np.zeros(1)})
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.npz"], "no temp left behind"
    assert read_state(tmp_path)[1]["a"].shape == (1000,), "the old state is intact"
    (tmp_path / "state.npz.123abc.tmp").write_bytes(b"half")  # a writer killed mid-write
    (tmp_path / "state.npz.tmp").write_bytes(b"old name")
    StateDir(tmp_path).close()
    assert not list(tmp_path.glob("*.tmp"))
    with pytest.raises(ValueError, match="cannot be stored"):
        write_state(tmp_path, meta, {"o": np.array([{}], dtype=object)})


# -- state.npz read without trust (defects 5 and 17) ----------------------------------------

META = {"tick": 12, "seq": 30, "fingerprint": "abc"}


def _arrays() -> dict[str, np.ndarray]:
    return {
        "guard.lock_until": np.arange(M, dtype=np.int64)[None],
        "guard.baseline": np.full((1, M), np.nan),
        "rep.score": np.full((1, M), 0.9),
        "rep.prev_need": np.full((1, M), np.nan),
        "fc.level": np.linspace(0, 5, M)[None],
        "obs": np.zeros(20, dtype=np.float32),
    }


def _expect() -> dict[str, ArraySpec]:
    return state_specs(_arrays())


def _npz(members: dict[str, np.ndarray], meta: object = META, **kw) -> bytes:
    buf = io.BytesIO()
    extra = {} if meta is None else {"__meta__": np.array(json.dumps(meta))}
    np.savez(buf, **extra, **members, **kw)
    return buf.getvalue()


def _state_error(tmp_path: Path, data: bytes, **kw) -> StateFileError:
    (tmp_path / "state.npz").write_bytes(data)
    with pytest.raises(StateFileError) as err:
        read_state(tmp_path, kw.pop("expect", _expect()), **kw)
    assert str(tmp_path / "state.npz") in str(err.value)
    return err.value


def test_a_good_state_round_trips(tmp_path) -> None:
    write_state(tmp_path, META, _arrays())
    meta, arrays = read_state(tmp_path, _expect())
    assert meta == META and arrays.keys() == _arrays().keys()
    for k, v in _arrays().items():
        np.testing.assert_array_equal(arrays[k], v)
        assert arrays[k].dtype == v.dtype and arrays[k].flags.writeable
    assert read_state(tmp_path / "nowhere") is None


def test_corrupt_state_files_name_the_file_and_the_array(tmp_path) -> None:
    good = _npz(_arrays())
    rng = np.random.default_rng(0)
    cases = [
        (rng.bytes(4000), None, "not a state archive"),
        (good[: len(good) // 2], None, "not a state archive"),
        (good[:-30], None, "not a state archive"),
        (_npz({**_arrays(), "rep.score": np.array([object()])}), "array 'rep.score'",
         "Python objects"),
        (_npz(_arrays(), meta=None), "array '__meta__'", "missing"),
        (_npz(_arrays(), meta=[1, 2]), "array '__meta__'", "JSON object"),
        (_npz(_arrays(), meta={**META, "seq": "7"}), "__meta__ field 'seq'", "integer >= 0"),
        (_npz(_arrays(), meta={"tick": 1, "fingerprint": "a"}), "__meta__ field 'seq'",
         "missing"),
        (_npz({k: v for k, v in _arrays().items() if k != "rep.score"}), "array 'rep.score'",
         "missing"),
        (_npz({**_arrays(), "rep.extra": np.zeros(1)}), "array 'rep.extra'", "not part of"),
        (_npz({**_arrays(), "rep.score": np.full((1, M), 0.9, np.float32)}),
         "array 'rep.score'", "expected float64 of shape"),
        (_npz({**_arrays(), "fc.level": np.zeros((1, M + 1))}), "array 'fc.level'",
         r"shape \(1, 7\)"),
        (_npz({**_arrays(), "rep.score": np.full((1, M), np.nan)}), "array 'rep.score'",
         "6 of 6 values are not finite"),
        (_npz({**_arrays(), "rep.score": np.full((1, M), 1.5)}), "array 'rep.score'",
         r"in \[0, 1\]"),
        (_npz({**_arrays(), "obs": np.full(20, np.inf, np.float32)}), "array 'obs'",
         "not finite"),
    ]  # fmt: skip
    for data, where, problem in cases:
        err = _state_error(tmp_path, data)
        assert err.where == where, (err, where)
        assert re.search(problem, err.problem), (err, problem)
    (tmp_path / "state.npz").unlink()
    (tmp_path / "state.npz").mkdir()
    with pytest.raises(StateFileError, match=r"state\.npz: is not a regular file"):
        read_state(tmp_path)


def test_state_sizes_are_checked_before_anything_is_allocated(tmp_path) -> None:
    # an .npy header declaring a terabyte, with 8 bytes of data
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (1 << 37,)}
    )
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w") as zf:
        zf.writestr("__meta__.npy", _member(np.array(json.dumps(META))))
        zf.writestr("rep.score.npy", header.getvalue() + b"\0" * 8)
    tracemalloc.start()
    try:
        err = _state_error(tmp_path, raw.getvalue())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert err.where == "array 'rep.score'" and "more than" in err.problem
    assert peak < 4 << 20
    # the zip's directory declaring a member larger than a state may be
    data = bytearray(_npz(_arrays()))
    entry = data.index(b"PK\x01\x02")  # central directory entry of the first member
    data[entry + 24 : entry + 28] = (1 << 31).to_bytes(4, "little")  # its unpacked size
    err = _state_error(tmp_path, bytes(data))
    assert err.where == "array '__meta__'" and "unpacked, more than" in err.problem
    # a whole file too large is not opened
    err = _state_error(tmp_path, _npz({"big": np.zeros(5000)}), max_bytes=10_000)
    assert err.where is None and "bytes, more than" in err.problem
    # data shorter than its header says
    short = io.BytesIO()
    with zipfile.ZipFile(short, "w") as zf:
        zf.writestr("__meta__.npy", _member(np.array(json.dumps(META))))
        zf.writestr("rep.score.npy", _member(np.zeros((1, M)))[:-8])
    err = _state_error(tmp_path, short.getvalue())
    assert err.where == "array 'rep.score'" and "truncated" in err.problem


def _member(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a, allow_pickle=False)
    return buf.getvalue()


# -- fuzz -----------------------------------------------------------------------------------

GOOD_STATE = _npz(_arrays())
GOOD_JOURNAL = b"".join(json.dumps(r).encode() + b"\n" for r in _records(6))


def _mutate(data: bytes, draw_ops: list[tuple[str, int, bytes]]) -> bytes:
    out = bytearray(data)
    for op, pos, chunk in draw_ops:
        pos = pos % (len(out) + 1)
        if op == "flip" and out:
            out[pos % len(out)] ^= chunk[0] if chunk else 0xFF
        elif op == "insert":
            out[pos:pos] = chunk
        elif op == "delete":
            del out[pos : pos + len(chunk) + 1]
        elif op == "truncate":
            del out[pos:]
    return bytes(out)


_ops = st.lists(
    st.tuples(st.sampled_from(["flip", "insert", "delete", "truncate"]),
              st.integers(0, 1 << 16), st.binary(min_size=1, max_size=12)),
    max_size=6,
)  # fmt: skip


def _bounded(fn) -> object:
    """Run ``fn``; it must end in success or StateFileError, fast and in bounded memory."""
    tracemalloc.start()
    t0 = time.monotonic()
    try:
        try:
            result = fn()
        except StateFileError as err:
            result = err
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.monotonic() - t0 < 20, "took too long"
    assert peak < 32 << 20, f"used {peak} bytes"
    return result


def _rezip(data: bytes, member: int, ops: list) -> bytes:
    """The good state with one member's .npy bytes mutated, zipped again (CRCs correct)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for i, info in enumerate(src.infolist()):
            raw = src.read(info)
            dst.writestr(info.filename, _mutate(raw, ops) if i == member % 7 else raw)
    return out.getvalue()


@settings(max_examples=200)
@given(
    base=st.sampled_from(["good", "random", "member"]),
    ops=_ops,
    random=st.binary(max_size=3000),
    member=st.integers(0, 6),
)
def test_fuzz_state_files_end_in_success_or_a_state_file_error(tmp_path_factory, base, ops,
                                                              random, member) -> None:  # fmt: skip
    tmp = tmp_path_factory.mktemp("state")
    if base == "member":  # past the zip's CRCs: the .npy headers and data themselves
        data = _rezip(GOOD_STATE, member, ops)
    else:
        data = _mutate(GOOD_STATE if base == "good" else random, ops)
    (tmp / "state.npz").write_bytes(data)
    for expect in (_expect(), None):
        result = _bounded(lambda e=expect: read_state(tmp, e))
        if isinstance(result, StateFileError):
            assert str(tmp / "state.npz") in str(result)
            assert result.where is None or result.where.startswith(("array ", "__meta__"))
        else:
            meta, arrays = result
            assert isinstance(meta, dict) and all(isinstance(a, np.ndarray) for a in
                                                  arrays.values())  # fmt: skip


_line = st.one_of(
    st.sampled_from([json.dumps(r).encode() for r in _records(6)]),
    st.binary(max_size=80),
    st.sampled_from([b"", b"{}", b"[]", b"null", b"\xff", b"\x00" * 20, b'{"seq": 1e999}',
                     b"[" * 5000 + b"]" * 5000, b"1" * 5000]),
)  # fmt: skip


@settings(max_examples=150)
@given(
    kind=st.sampled_from(["lines", "mutated"]),
    lines=st.lists(_line, max_size=12),
    newline=st.booleans(),
    ops=_ops,
)
def test_fuzz_journals_end_in_success_or_a_state_file_error(tmp_path_factory, kind, lines,
                                                           newline, ops) -> None:  # fmt: skip
    tmp = tmp_path_factory.mktemp("journal")
    path = tmp / "journal.jsonl"
    if kind == "lines":
        data = b"\n".join(lines) + (b"\n" if newline and lines else b"")
    else:
        data = _mutate(GOOD_JOURNAL, ops)
    path.write_bytes(data)
    read = _bounded(lambda: Journal.read(path, num_modules=M, num_kinds=R))

    def open_and_append():
        with Journal(path, num_modules=M, num_kinds=R) as j:
            seq = j.last_seq + 1
            j.append({**_intent(seq), "id": max(seq, j.last_id + 1)})
            return j.last_seq

    opened = _bounded(open_and_append)
    assert isinstance(read, StateFileError) == isinstance(opened, StateFileError)
    if isinstance(read, StateFileError):
        assert str(path) in str(read) and read.where.startswith("line ")
        assert path.read_bytes() == data, "damage is left for the operator"
    else:
        after = Journal.read(path)
        assert after[:-1] == read and after[-1]["seq"] == opened  # nothing lost, appended
        content = path.read_bytes()
        appended = json.dumps(after[-1], sort_keys=True).encode() + b"\n"
        assert content.endswith(appended)
        torn = list(tmp.glob("journal.jsonl.torn-*"))
        assert len(torn) <= 1
        kept = content[: -len(appended)] + (torn[0].read_bytes() if torn else b"")
        assert kept == data, "a repair moves the torn bytes aside, it loses none"


def test_default_rules_cover_the_core_state_names() -> None:
    specs = state_specs({
        "core.obs": np.zeros((1, 4), np.float32), "reputation.score": np.ones((1, 2)),
        "reputation.prev_need": np.ones((1, 2)), "forecaster.level": np.ones((1, 2)),
    })  # fmt: skip
    assert specs["core.obs"].finite and specs["reputation.score"].finite
    assert (specs["reputation.score"].low, specs["reputation.score"].high) == (0.0, 1.0)
    assert not specs["reputation.prev_need"].finite and not specs["forecaster.level"].finite
