"""Durable controller records: a write-ahead journal of shifts and an audit log, as JSON lines.

The journal is JSON lines, each fsynced before the controller acts on it. A shift is written
as ``intent`` (with the source's allocation expected afterwards) before the backend is asked
to move, and as ``applied`` (or ``aborted``) after. A controller killed between the two finds,
on restart, an intent without its outcome and asks the backend: if the source holds the
expected units the move happened (``applied``), otherwise it did not (``aborted``). No shift
is lost or applied twice.

What a file may look like after a crash, and what is done about it:

- a record is committed when its line, newline included, is on disk: the controller acts on
  a record only after ``append`` returned. A crash mid-write leaves a *torn tail*: a last
  line without its newline, or a last line that does not parse (bytes of a lost block). The
  reader ignores it; opening the file for append (:class:`JsonLines`, :class:`Journal`)
  *repairs* it: the torn bytes are copied to ``<name>.torn-<offset>`` beside the file (nothing
  is lost) and the file is truncated to its last complete record, so new records never land
  after garbage;
- anything else that does not parse or validate (a bad line followed by good ones, invalid
  UTF-8, a record without its fields, sequence numbers that go back) is *damage*: reading
  raises :class:`StateFileError` naming the file and the line, and the controller refuses to
  start until an operator has looked;
- every line is read in bounded memory: a line longer than ``max_line_bytes`` (64 KiB by
  default; records are a few hundred bytes) is damage, never loaded.

:class:`Journal` also keeps the journal's invariants, on read and on append: ``seq`` strictly
increases over the file, intent ``id`` strictly increases (ids are never reused, whatever
happened to ``state.npz``), every outcome answers an open intent of the same shift, once.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from shift_rl.controller.statefile import (  # read_state / write_state: their old home was here
    StateFileError,
    fsync_dir,
    read_state,
    write_state,
)

logger = logging.getLogger(__name__)

MAX_LINE_BYTES = 1 << 16
"""Longest line a journal or audit log may hold (records are a few hundred bytes)."""

TAIL_RECORDS = 4096
"""Records a :class:`Journal` keeps in memory for :meth:`Journal.records_after`."""

_CHUNK = 1 << 16


class _Bad(Exception):
    """A record that breaks a rule; turned into a StateFileError naming file and line."""


# -- reading lines --------------------------------------------------------------------------


def _iter_lines(f: Any, max_line: int) -> Iterator[tuple[int, int, bytes | None, bool]]:
    """``(line number, offset, content without newline or None when too long, terminated)``."""
    offset = lineno = 0
    while True:
        chunk = f.readline(max_line + 1)
        if not chunk:
            return
        lineno += 1
        start = offset
        offset += len(chunk)
        if chunk.endswith(b"\n"):
            yield lineno, start, chunk[:-1], True
            continue
        if len(chunk) <= max_line:  # end of file without a newline
            yield lineno, start, chunk, False
            return
        terminated = False  # too long: skip to its end without holding it
        while more := f.readline(_CHUNK):
            offset += len(more)
            if more.endswith(b"\n"):
                terminated = True
                break
        yield lineno, start, None, terminated
        if not terminated:
            return


def _decode(data: bytes | None, max_line: int) -> tuple[Any, str | None]:
    """``(value, None)`` for a line that parses as JSON, else ``(None, why it does not)``."""
    if data is None:
        return None, f"line longer than {max_line} bytes"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        return None, f"not UTF-8 (byte 0x{data[err.start]:02x} at column {err.start + 1})"
    try:
        return json.loads(text), None
    except RecursionError:
        return None, "not JSON (nested too deeply)"
    except ValueError as err:  # JSONDecodeError, or an integer of too many digits
        return None, f"not JSON ({err})"


def _read(
    path: Path, check: Callable[[dict[str, Any]], None] | None, max_line: int
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Validated ``(line number, record)`` of a JSON-lines file; returns the torn-tail offset.

    The last line may be torn (no newline, or does not parse): it is not yielded and its
    offset is the generator's return value (``None`` when the file ends cleanly).
    """
    with open(path, "rb") as f:
        pending: tuple[int, int, str] | None = None  # an unparsable line: fatal unless last
        for lineno, offset, data, terminated in _iter_lines(f, max_line):
            if pending is not None:
                raise StateFileError(
                    path, f"line {pending[0]}",
                    f"{pending[2]}; lines follow it, so this is damage, not a torn last "
                    "write: look at the file (and the backend) before starting again",
                )  # fmt: skip
            if not terminated:
                return offset  # a crash mid-write: never committed
            value, problem = _decode(data, max_line)
            if problem is not None:
                pending = (lineno, offset, problem)
                continue
            if not isinstance(value, dict):
                raise StateFileError(
                    path, f"line {lineno}", f"expected a JSON object, got {type(value).__name__}"
                )
            if check is not None:
                try:
                    check(value)
                except _Bad as err:
                    raise StateFileError(path, f"line {lineno}", str(err)) from None
            yield lineno, value
    return pending[1] if pending is not None else None


def _find_back(f: Any, end: int) -> int:
    """Offset of the last ``\\n`` before ``end``, or -1; reads backwards in chunks."""
    pos = end
    while pos > 0:
        start = max(0, pos - _CHUNK)
        f.seek(start)
        i = f.read(pos - start).rfind(b"\n")
        if i >= 0:
            return start + i
        pos = start
    return -1


def torn_tail(path: Path, max_line: int = MAX_LINE_BYTES) -> int | None:
    """Offset where a torn last line starts, or ``None`` (the file ends with a good line).

    Reads only the end of the file: the last line is torn when it has no newline, or is
    longer than ``max_line``, or does not parse (same rule as the readers).
    """
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return None
        f.seek(size - 1)
        if f.read(1) != b"\n":
            return _find_back(f, size - 1) + 1
        start = _find_back(f, size - 1) + 1
        if size - 1 - start > max_line:
            return start
        f.seek(start)
        _, problem = _decode(f.read(size - 1 - start), max_line)
        return start if problem is not None else None


def repair_tail(path: Path, max_line: int = MAX_LINE_BYTES) -> Path | None:
    """Move a torn last line of ``path`` aside; returns the side file (``None``: nothing torn).

    The torn bytes go to ``<name>.torn-<offset>`` (``.1``, ``.2`` ... when that exists), made
    durable before ``path`` is truncated to its last complete record. Only one process may
    do this at a time: the controller holds the state dir's lock.
    """
    if not path.is_file():
        return None
    offset = torn_tail(path, max_line)
    if offset is None:
        return None
    side = path.with_name(f"{path.name}.torn-{offset}")
    n = 0
    while side.exists():
        n += 1
        side = path.with_name(f"{path.name}.torn-{offset}.{n}")
    with open(path, "rb") as src, open(side, "xb") as dst:
        src.seek(offset)
        while chunk := src.read(1 << 20):
            dst.write(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    fsync_dir(path.parent)
    with open(path, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        f.truncate(offset)
        f.flush()
        os.fsync(f.fileno())
    logger.warning(
        "%s: torn last line (%d bytes at offset %d, a crash mid-write) moved to %s",
        path, size - offset, offset, side,
    )  # fmt: skip
    return side


# -- appending ------------------------------------------------------------------------------


class JsonLines:
    """An append-only JSON-lines file; every record is written whole, flushed and fsynced.

    Opening repairs a torn tail (:func:`repair_tail`; the side file is in ``self.repaired``),
    so appends always start on a fresh line. A failed write is cut off again, so the file
    never keeps half a record; if even that fails, the file refuses further appends.
    """

    def __init__(self, path: str | os.PathLike[str], *, max_line_bytes: int = MAX_LINE_BYTES):
        self.path = Path(path)
        self.max_line_bytes = max_line_bytes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.repaired = repair_tail(self.path, max_line_bytes)
        self._fd: int | None = os.open(
            self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644
        )
        self._broken: str | None = None

    def _encode(self, record: dict[str, Any]) -> bytes:
        data = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
        if len(data) - 1 > self.max_line_bytes:
            raise ValueError(
                f"{self.path}: a record of {len(data) - 1} bytes is longer than the "
                f"{self.max_line_bytes} bytes a line may hold"
            )
        return data

    def _write(self, data: bytes) -> None:
        if self._fd is None:
            raise ValueError(f"{self.path}: closed")
        if self._broken is not None:
            raise OSError(f"{self.path}: {self._broken}")
        fd = self._fd
        before = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError as err:
            try:  # never leave half a record for the next append to follow
                os.ftruncate(fd, before)
                os.fsync(fd)
            except OSError:
                self._broken = (
                    f"a write failed ({err}) and the partial record at offset {before} could "
                    "not be removed; restart the controller to repair the file"
                )
            raise

    def append(self, record: dict[str, Any]) -> None:
        """Write one record durably (it is on disk when this returns)."""
        self._write(self._encode(record))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            self.close()

    def __enter__(self) -> JsonLines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def stream(
        path: str | os.PathLike[str], *, max_line_bytes: int = MAX_LINE_BYTES
    ) -> Iterator[dict[str, Any]]:
        """Every committed record, streamed (a torn last line is skipped, damage raises)."""
        path = Path(path)
        if not path.is_file():
            return
        for _, record in _read(path, None, max_line_bytes):
            yield record

    @staticmethod
    def read(
        path: str | os.PathLike[str], *, max_line_bytes: int = MAX_LINE_BYTES
    ) -> list[dict[str, Any]]:
        """Every committed record (a torn last line from a crash is ignored).

        Raises :class:`StateFileError` naming the file and line for anything else that does
        not parse: garbage in the middle is never skipped.
        """
        return list(JsonLines.stream(path, max_line_bytes=max_line_bytes))


# -- the journal ----------------------------------------------------------------------------

INTENT = "intent"
OUTCOMES = ("applied", "aborted")
EVENTS = (INTENT, *OUTCOMES)
# fields every journal record carries (outcomes copy their intent's), with their minimum
_COUNTS = {"seq": 1, "id": 1, "tick": 0, "src": 0, "dst": 0, "kind": 0, "units": 0}


def _int(record: dict[str, Any], key: str, low: int | None = None, high: int | None = None) -> int:
    if key not in record:
        raise _Bad(f"field {key!r} missing")
    value = record[key]
    if type(value) is not int:
        raise _Bad(f"field {key!r}: expected an integer, got {value!r}")
    if low is not None and value < low:
        raise _Bad(f"field {key!r}: expected an integer >= {low}, got {value}")
    if high is not None and value >= high:
        raise _Bad(f"field {key!r}: expected an integer < {high}, got {value}")
    return value


def check_record(
    record: dict[str, Any], num_modules: int | None = None, num_kinds: int | None = None
) -> None:
    """Check one journal record's fields (raises ``_Bad`` with the field and expectation).

    Every record: ``seq``, ``id`` (>= 1), ``event`` (intent / applied / aborted), ``reason``
    (a string), ``tick`` (>= 0), ``src`` != ``dst`` (modules), ``kind``, ``units`` (>= 1 for an
    intent), ``expected_src_after`` (an integer), ``baseline`` (a finite number, or NaN /
    null); ``recovered`` if present is a bool. Other fields are allowed.
    """
    event = record.get("event")
    if event not in EVENTS:
        raise _Bad(f"field 'event': expected one of {', '.join(EVENTS)}, got {event!r}")
    for key, low in _COUNTS.items():
        high = num_modules if key in ("src", "dst") else num_kinds if key == "kind" else None
        _int(record, key, low, high)
    if event == INTENT and record["units"] < 1:
        raise _Bad(f"field 'units': an intent moves at least 1 unit, got {record['units']}")
    if record["src"] == record["dst"]:
        raise _Bad(f"fields 'src' and 'dst': a shift between two modules, got {record['src']} "
                   "twice")  # fmt: skip
    _int(record, "expected_src_after")
    if not isinstance(record.get("reason"), str):
        raise _Bad(f"field 'reason': expected a string, got {record.get('reason')!r}")
    if "baseline" not in record:
        raise _Bad("field 'baseline' missing")
    b = record["baseline"]
    if b is not None and (type(b) not in (int, float) or math.isinf(b)):
        raise _Bad(f"field 'baseline': expected a finite number or NaN, got {b!r}")
    if type(record.get("recovered", False)) is not bool:
        raise _Bad(f"field 'recovered': expected true or false, got {record['recovered']!r}")


def _shift(record: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(record[k] for k in ("reason", "src", "dst", "kind"))


class JournalScan:
    """What the journal says so far; :meth:`admit` checks a record against it and adds it.

    ``last_seq`` / ``last_id``: the highest sequence number and intent id (0 when empty);
    ``records``: records seen; ``open``: intents without an outcome (id -> record, in order);
    ``tail``: the last :data:`TAIL_RECORDS` records; ``torn``: where a torn last line starts.
    """

    def __init__(self, num_modules: int | None = None, num_kinds: int | None = None) -> None:
        self.num_modules, self.num_kinds = num_modules, num_kinds
        self.last_seq = self.last_id = self.records = 0
        self.open: dict[int, dict[str, Any]] = {}
        self.tail: deque[dict[str, Any]] = deque(maxlen=TAIL_RECORDS)
        self.dropped_seq = 0  # seq of the last record pushed out of ``tail``
        self.torn: int | None = None  # offset of a torn last line (Journal.scan)

    def check(self, record: dict[str, Any]) -> None:
        check_record(record, self.num_modules, self.num_kinds)
        seq, rid, event = record["seq"], record["id"], record["event"]
        if seq <= self.last_seq:
            raise _Bad(
                f"seq {seq} does not follow seq {self.last_seq}: sequence numbers must increase "
                "(two controllers on one state dir, or ids reused after state.npz was lost?)"
            )
        if event == INTENT:
            if rid <= self.last_id:
                raise _Bad(f"intent id {rid} is not above the last intent id {self.last_id}: "
                           "intent ids are never reused")  # fmt: skip
            return
        intent = self.open.get(rid)
        if intent is None:
            raise _Bad(f"{event!r} for id {rid}, which is not an open intent (never written, "
                       "or resolved before)")  # fmt: skip
        if _shift(intent) != _shift(record):
            raise _Bad(f"{event!r} for id {rid} describes the shift {_shift(record)}, its intent "
                       f"{_shift(intent)}")  # fmt: skip

    def add(self, record: dict[str, Any]) -> None:
        """Record an already checked record."""
        self.last_seq = record["seq"]
        self.records += 1
        if record["event"] == INTENT:
            self.last_id = record["id"]
            self.open[record["id"]] = record
        else:
            del self.open[record["id"]]
        if len(self.tail) == self.tail.maxlen:
            self.dropped_seq = self.tail[0]["seq"]
        self.tail.append(record)

    def admit(self, record: dict[str, Any]) -> None:
        self.check(record)
        self.add(record)


class Journal(JsonLines):
    """The controller's write-ahead journal: a :class:`JsonLines` that knows its records.

    Opening reads the whole file (streamed, bounded per line), validating every record and
    the journal's invariants: damage raises :class:`StateFileError` naming the file and line,
    and leaves the file as it is; then a torn tail is repaired. ``num_modules`` and
    ``num_kinds`` bound ``src``, ``dst`` and ``kind`` when given. :meth:`append` checks a
    record by the same rules *before* writing it, so a reused id or a second outcome never
    reaches the disk.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        num_modules: int | None = None,
        num_kinds: int | None = None,
        max_line_bytes: int = MAX_LINE_BYTES,
    ) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # read first: a damaged journal is refused untouched, only a sound one is repaired
        self.state = Journal.scan(
            path, num_modules=num_modules, num_kinds=num_kinds, max_line_bytes=max_line_bytes
        )
        repaired = repair_tail(path, max_line_bytes)
        super().__init__(path, max_line_bytes=max_line_bytes)  # nothing left to repair
        self.repaired = repaired

    @property
    def last_seq(self) -> int:
        """The highest ``seq`` in the journal (0 when empty): the next record needs more."""
        return self.state.last_seq

    @property
    def last_id(self) -> int:
        """The highest intent ``id`` in the journal (0 when empty): never to be reused."""
        return self.state.last_id

    @property
    def open_intents(self) -> list[dict[str, Any]]:
        """Intents without an outcome anywhere in the journal, oldest first (copies)."""
        return [dict(r) for r in self.state.open.values()]

    def records_after(self, seq: int) -> list[dict[str, Any]]:
        """Every record with ``seq`` above ``seq``, in order (copies).

        Served from memory when it is among the last :data:`TAIL_RECORDS` records (the case
        after a restart: the state is saved every tick), else by reading the file again.
        """
        if seq >= self.state.dropped_seq:
            return [dict(r) for r in self.state.tail if r["seq"] > seq]
        return [dict(r) for r in Journal.stream(self.path, max_line_bytes=self.max_line_bytes)
                if r["seq"] > seq]  # fmt: skip

    def append(self, record: dict[str, Any]) -> None:
        """Check ``record`` against the journal (fields, increasing ``seq`` and intent ids, an
        outcome answers an open intent), then write it durably; raises ``StateFileError``
        (nothing written) when it breaks a rule."""
        try:
            self.state.check(record)
        except _Bad as err:
            raise StateFileError(self.path, f"record to append (seq {record.get('seq')!r})",
                                 str(err)) from None  # fmt: skip
        data = self._encode(record)
        self._write(data)
        self.state.add(json.loads(data))  # what a reader will see

    @staticmethod
    def scan(
        path: str | os.PathLike[str],
        *,
        num_modules: int | None = None,
        num_kinds: int | None = None,
        max_line_bytes: int = MAX_LINE_BYTES,
    ) -> JournalScan:
        """Read and validate a journal without opening it for append (a torn tail is skipped).

        ``scan.torn`` is the torn tail's offset (``None`` when the file ends cleanly).
        """
        path = Path(path)
        state = JournalScan(num_modules, num_kinds)
        if not path.is_file():
            return state
        reader = _read(path, state.check, max_line_bytes)
        while True:
            try:
                _, record = next(reader)
            except StopIteration as stop:
                state.torn = stop.value
                return state
            state.add(record)

    @staticmethod
    def stream(  # type: ignore[override]
        path: str | os.PathLike[str],
        *,
        num_modules: int | None = None,
        num_kinds: int | None = None,
        max_line_bytes: int = MAX_LINE_BYTES,
    ) -> Iterator[dict[str, Any]]:
        """Every committed record, validated and streamed (a torn last line is skipped)."""
        path = Path(path)
        if not path.is_file():
            return
        state = JournalScan(num_modules, num_kinds)
        for _, record in _read(path, state.check, max_line_bytes):
            state.add(record)
            yield record

    @staticmethod
    def read(  # type: ignore[override]
        path: str | os.PathLike[str],
        *,
        num_modules: int | None = None,
        num_kinds: int | None = None,
        max_line_bytes: int = MAX_LINE_BYTES,
    ) -> list[dict[str, Any]]:
        """Every committed record, validated (see :meth:`stream`)."""
        return list(Journal.stream(path, num_modules=num_modules, num_kinds=num_kinds,
                                 max_line_bytes=max_line_bytes))  # fmt: skip


__all__ = [
    "EVENTS", "INTENT", "MAX_LINE_BYTES", "OUTCOMES", "TAIL_RECORDS", "Journal", "JournalScan",
    "JsonLines", "StateFileError", "check_record", "read_state", "repair_tail", "torn_tail",
    "write_state",
]  # fmt: skip
