"""The controller's ``state.npz`` and the state dir's lock, read and held without trust.

- :func:`write_state` replaces ``state.npz`` atomically (a temp file of its own, fsync,
  rename, fsync of the directory); :func:`read_state` reads it back without pickle and
  without trusting it: the file and each array are size-checked from their headers before
  anything is allocated (:data:`MAX_STATE_BYTES`), object arrays are refused, and with
  ``expect`` dtypes, shapes and values that must be finite are compared with what the
  controller expects;
- :class:`DirLock` is the exclusive ``flock`` on ``<dir>/lock`` that keeps a second
  controller off a state dir.

Every problem with a state file raises :class:`StateFileError` naming the file, the place
in it (line, array, meta field) and what was expected. :mod:`shift_rl.controller.statedir`
puts these and the journal together.
"""

from __future__ import annotations

import errno
import fcntl
import fnmatch
import json
import math
import os
import stat
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


class StateFileError(ValueError):
    """A controller state file (journal, audit log, ``state.npz``) that cannot be used.

    ``path`` is the file, ``where`` the place in it (``line 17``, ``array 'rep.score'``,
    ``__meta__ field 'seq'``; may be ``None``) and ``problem`` what is wrong and what was
    expected. ``str(err)`` is ``"<path>: <where>: <problem>"``.
    """

    def __init__(self, path: str | os.PathLike[str], where: str | None, problem: str) -> None:
        self.path, self.where, self.problem = Path(path), where, problem
        super().__init__(f"{path}: {where}: {problem}" if where else f"{path}: {problem}")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.path, self.where, self.problem)


def fsync_dir(path: Path) -> None:
    """fsync a directory: a rename or a new file in it is durable after this."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


STATE_FILE = "state.npz"
LOCK_FILE = "lock"

MAX_STATE_BYTES = 256 << 20
"""Largest ``state.npz`` (file, and its arrays once read) that is loaded at all."""
MAX_ARRAYS = 4096
MAX_META_CHARS = 1 << 20
META = "__meta__"

STATE_META_FIELDS: dict[str, str] = {"tick": "count", "seq": "count", "fingerprint": "str"}
"""Fields ``__meta__`` must hold: ``count`` is an integer >= 0, ``str`` a string."""

CONTROLLER_FINITE = (
    # the control-plane core's state (ControlCore.state())
    "core.obs", "core.forecast_mean", "core.forecast_spread",
    "reputation.attainment", "reputation.accuracy", "reputation.score",
    # the controller's state before the core (prefixes rep., obs)
    "obs", "rep.attainment", "rep.accuracy", "rep.score", "rep.servers_per_request",
)  # fmt: skip
"""Arrays of the controller's state that must be finite (NaN elsewhere means 'none yet')."""
CONTROLLER_BOUNDS: dict[str, tuple[float, float]] = {
    f"{prefix}.{name}": (0.0, 1.0)
    for prefix in ("reputation", "rep") for name in ("attainment", "accuracy", "score")
}  # fmt: skip
"""Arrays of the controller's state whose values lie in a range (reputation: [0, 1])."""


class StateDirBusyError(StateFileError):
    """The state dir is locked by another process (a second controller)."""

    def __init__(self, directory: str | os.PathLike[str], pid: int | None) -> None:
        self.directory, self.pid = Path(directory), pid
        lock = self.directory / LOCK_FILE
        who = f"pid {pid}" if pid is not None else "another process (pid unknown)"
        super().__init__(lock, None, "locked")
        self.args = (f"state dir {self.directory} is in use by {who} (lock file {lock})",)

    def __str__(self) -> str:
        return str(self.args[0])

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.directory, self.pid)


# -- the lock -------------------------------------------------------------------------------


class DirLock:
    """An exclusive, non-blocking ``flock`` on ``<directory>/lock``, holding our pid.

    A second holder (another process, or another ``DirLock`` in this one) fails at once with
    :class:`StateDirBusyError`. The lock goes with the open file: :meth:`release`, or the
    process's death (even ``SIGKILL``) frees it, so a stale lock cannot survive its owner.
    Local file systems only (``flock`` over NFS is not reliable).
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_FILE
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = _read_pid(fd)
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StateDirBusyError(self.directory, holder) from None
            raise
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
            finally:
                os.close(self._fd)  # closing the file releases the lock
                self._fd = None

    def __enter__(self) -> DirLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:  # a holder dropped without release() (e.g. a failed start)
        if getattr(self, "_fd", None) is not None:
            self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
        return int(text) if text.isdigit() else None
    except (OSError, UnicodeDecodeError, ValueError):
        return None


# -- state.npz ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArraySpec:
    """What one array of ``state.npz`` must be: exact dtype and shape; optionally finite
    values and values within ``[low, high]`` (NaN allowed unless ``finite``)."""

    shape: tuple[int, ...]
    dtype: np.dtype
    finite: bool = False
    low: float | None = None
    high: float | None = None
    required: bool = True

    @classmethod
    def like(cls, template: np.ndarray, **kw: Any) -> ArraySpec:
        a = np.asarray(template)
        return cls(tuple(a.shape), a.dtype, **kw)

    def describe(self) -> str:
        return f"{self.dtype} of shape {self.shape}"


def state_specs(
    templates: Mapping[str, np.ndarray | ArraySpec],
    *,
    finite: Iterable[str] = CONTROLLER_FINITE,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    optional: Iterable[str] = (),
) -> dict[str, ArraySpec]:
    """Specs for :func:`read_state` from arrays shaped as the state should be (a fresh
    controller's own), with ``fnmatch`` patterns for the ones that must be finite, bounded
    (default :data:`CONTROLLER_BOUNDS`) or may be absent."""
    finite, optional = tuple(finite), tuple(optional)
    bounds = CONTROLLER_BOUNDS if bounds is None else bounds
    out = {}
    for name, t in templates.items():
        spec = t if isinstance(t, ArraySpec) else ArraySpec.like(t)
        low = high = None
        for pattern, (lo, hi) in bounds.items():
            if fnmatch.fnmatchcase(name, pattern):
                low, high = lo, hi
        out[name] = ArraySpec(
            spec.shape, spec.dtype,
            finite=spec.finite or any(fnmatch.fnmatchcase(name, p) for p in finite),
            low=spec.low if low is None else low, high=spec.high if high is None else high,
            required=spec.required and not any(fnmatch.fnmatchcase(name, p) for p in optional),
        )  # fmt: skip
    return out


def _temp_names(path: Path) -> list[Path]:
    return [*path.glob(f"{STATE_FILE}.*.tmp"), *path.glob(f"{STATE_FILE}.tmp")]


def remove_stale_temps(path: str | os.PathLike[str]) -> list[Path]:
    """Delete half-written ``state.npz`` temp files of dead writers (call with the lock held)."""
    gone = []
    for tmp in _temp_names(Path(path)):
        try:
            tmp.unlink()
            gone.append(tmp)
        except FileNotFoundError:
            pass
    return gone


def write_state(
    path: str | os.PathLike[str], meta: dict[str, Any], arrays: Mapping[str, np.ndarray]
) -> None:
    """Atomically replace ``path/state.npz``: the arrays plus the metadata as a JSON string.

    Written to a temp file of its own (unique name, removed on failure), fsynced, renamed over
    the old one and the directory fsynced: a crash leaves the old state or the new one, never
    a mix, and two writers never trip over one temp name. Object arrays are refused (the
    file is read back without pickle).
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    payload = json.dumps(meta, sort_keys=True)
    clean = {}
    for name, value in arrays.items():
        a = np.asarray(value)
        if a.dtype.hasobject or name == META or not name:
            raise ValueError(f"state array {name!r}: cannot be stored ({a.dtype})")
        clean[name] = a
    fd, tmp = tempfile.mkstemp(dir=path, prefix=f"{STATE_FILE}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **{META: np.array(payload)}, **clean)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path / STATE_FILE)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path)


def _readall(fp: Any, n: int) -> bytearray:
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = fp.readinto(view[got:])
        if not k:
            break
        got += k
    return buf[:got] if got < n else buf


def _read_member(fp: Any, file: Path, name: str, budget: int) -> np.ndarray:
    """One ``.npy`` member, its size checked from its header before any allocation."""
    where = f"array {name!r}"
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
        else:
            raise StateFileError(file, where, f".npy format version {version} not supported")
    except StateFileError:
        raise
    except Exception as err:
        raise StateFileError(file, where, f"bad .npy header ({type(err).__name__}: {err})"
                             ) from None  # fmt: skip
    if dtype.hasobject:
        raise StateFileError(file, where, "holds Python objects (would need pickle): refused")
    if dtype.kind not in "biufcUS" or dtype.fields is not None or dtype.subdtype is not None:
        raise StateFileError(file, where, f"dtype {dtype} is not a plain number or string")
    if dtype.itemsize == 0 or len(shape) > 32 or any(type(s) is not int or s < 0 for s in shape):
        raise StateFileError(file, where, f"bad header: shape {shape}, dtype {dtype}")
    count = math.prod(shape)
    nbytes = count * dtype.itemsize
    if nbytes > budget:
        raise StateFileError(
            file, where, f"{dtype} of shape {shape} would take {nbytes} bytes, more than the "
            f"{MAX_STATE_BYTES} a state may hold",
        )  # fmt: skip
    try:
        buf = _readall(fp, nbytes)
        extra = fp.read(1)
    except Exception as err:
        raise StateFileError(file, where, f"damaged ({type(err).__name__}: {err})") from None
    if len(buf) != nbytes or extra:
        raise StateFileError(
            file, where, f"header says {dtype} of shape {shape} ({nbytes} bytes), the data "
            f"{'is longer' if extra else f'has {len(buf)} bytes'}: truncated or damaged",
        )  # fmt: skip
    arr = np.frombuffer(buf, dtype=dtype, count=count)
    return arr.reshape(shape, order="F" if fortran else "C")


def _check_meta(file: Path, raw: np.ndarray, fields: Mapping[str, str]) -> dict[str, Any]:
    if raw.shape != () or raw.dtype.kind != "U":
        raise StateFileError(file, f"array {META!r}", f"expected a JSON string, got {raw.dtype} "
                             f"of shape {raw.shape}")  # fmt: skip
    text = str(raw)
    if len(text) > MAX_META_CHARS:
        raise StateFileError(file, f"array {META!r}", f"{len(text)} characters, more than "
                             f"{MAX_META_CHARS}")  # fmt: skip
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise StateFileError(file, f"array {META!r}", f"not JSON ({err})") from None
    if not isinstance(meta, dict):
        raise StateFileError(file, f"array {META!r}", f"expected a JSON object, got "
                             f"{type(meta).__name__}")  # fmt: skip
    for key, kind in fields.items():
        where = f"{META} field {key!r}"
        if key not in meta:
            raise StateFileError(file, where, "missing")
        v = meta[key]
        if kind == "count" and not (type(v) is int and v >= 0):
            raise StateFileError(file, where, f"expected an integer >= 0, got {v!r}")
        if kind == "str" and not isinstance(v, str):
            raise StateFileError(file, where, f"expected a string, got {v!r}")
    return meta


def _check_array(file: Path, name: str, a: np.ndarray, spec: ArraySpec) -> None:
    where = f"array {name!r}"
    if a.dtype != spec.dtype or a.shape != spec.shape:
        raise StateFileError(file, where, f"expected {spec.describe()}, got {a.dtype} of shape "
                             f"{a.shape} (a state of another scenario or version?)")  # fmt: skip
    if a.dtype.kind not in "fc" and spec.low is None and spec.high is None:
        return
    bad = np.zeros(a.shape, dtype=bool)
    what = []
    if spec.finite and a.dtype.kind in "fc":
        bad |= ~np.isfinite(a)
        what.append("finite")
    if spec.low is not None or spec.high is not None:
        lo = -np.inf if spec.low is None else spec.low
        hi = np.inf if spec.high is None else spec.high
        with np.errstate(invalid="ignore"):
            bad |= (a < lo) | (a > hi)
        what.append(f"in [{lo:g}, {hi:g}]")
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise StateFileError(
            file, where, f"{int(bad.sum())} of {a.size} values are not {' and '.join(what)} "
            f"(first at index {first}: {a[first]!r})",
        )  # fmt: skip


def read_state(
    path: str | os.PathLike[str],
    expect: Mapping[str, np.ndarray | ArraySpec] | None = None,
    *,
    meta_fields: Mapping[str, str] = STATE_META_FIELDS,
    max_bytes: int = MAX_STATE_BYTES,
) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """The state saved in ``path/state.npz`` as ``(meta, arrays)``, or ``None`` when there is
    none. Anything wrong raises :class:`StateFileError` naming the file and the array or field:

    - the file: not a regular file, larger than ``max_bytes``, not a zip (random bytes,
      truncated), more than :data:`MAX_ARRAYS` members, encrypted or oddly compressed;
    - each array: a bad ``.npy`` header, object dtype (pickle), a declared size beyond what is
      left of ``max_bytes`` (checked before allocating), data shorter or longer than declared,
      a failed CRC;
    - ``__meta__``: not a JSON object, or without the ``meta_fields``;
    - with ``expect`` (name -> :class:`ArraySpec` or a template array): a missing or
      unexpected array, another dtype or shape, non-finite or out-of-bounds values.
    """
    path = Path(path)
    file = path / STATE_FILE
    try:
        st = os.stat(file)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise StateFileError(file, None, f"cannot be read ({err})") from None
    if not stat.S_ISREG(st.st_mode):
        raise StateFileError(file, None, "is not a regular file")
    if st.st_size > max_bytes:
        raise StateFileError(file, None, f"{st.st_size} bytes, more than the {max_bytes} a "
                             "state may take")  # fmt: skip
    arrays: dict[str, np.ndarray] = {}
    meta_raw: np.ndarray | None = None
    with open(file, "rb") as fh:
        try:
            zf = zipfile.ZipFile(fh)
            infos = zf.infolist()
        except Exception as err:
            raise StateFileError(
                file, None, f"not a state archive (a .npz zip): {type(err).__name__}: {err} "
                "(truncated, or overwritten?)",
            ) from None  # fmt: skip
        with zf:
            if len(infos) > MAX_ARRAYS:
                raise StateFileError(file, None, f"{len(infos)} members, more than {MAX_ARRAYS}")
            budget = max_bytes
            for info in infos:
                name = info.filename[:-4] if info.filename.endswith(".npy") else None
                where = f"array {info.filename!r}"
                if name is None or not name:
                    raise StateFileError(file, where, "not an .npy member")
                if name in arrays or (name == META and meta_raw is not None):
                    raise StateFileError(file, f"array {name!r}", "appears twice")
                if info.flag_bits & 0x1:
                    raise StateFileError(file, where, "encrypted")
                if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    raise StateFileError(file, where, f"compression {info.compress_type} "
                                         "not supported")  # fmt: skip
                if info.file_size > budget:
                    raise StateFileError(file, f"array {name!r}", f"{info.file_size} bytes "
                                         f"unpacked, more than the {max_bytes} a state may "
                                         "hold")  # fmt: skip
                try:
                    fp = zf.open(info)
                except Exception as err:
                    raise StateFileError(file, f"array {name!r}", f"cannot be opened "
                                         f"({type(err).__name__}: {err})") from None  # fmt: skip
                with fp:
                    a = _read_member(fp, file, name, budget)
                budget -= a.nbytes
                if name == META:
                    meta_raw = a
                else:
                    arrays[name] = a
    if meta_raw is None:
        raise StateFileError(file, f"array {META!r}", "missing (the state's metadata)")
    meta = _check_meta(file, meta_raw, meta_fields)
    if expect is not None:
        specs = {k: v if isinstance(v, ArraySpec) else ArraySpec.like(v) for k, v in expect.items()}
        for name in sorted(specs):
            if name not in arrays and specs[name].required:
                raise StateFileError(file, f"array {name!r}", f"missing (expected "
                                     f"{specs[name].describe()})")  # fmt: skip
        for name in sorted(arrays):
            if name not in specs:
                raise StateFileError(file, f"array {name!r}", "not part of this controller's "
                                     "state (a state of another version?)")  # fmt: skip
            _check_array(file, name, arrays[name], specs[name])
    return meta, arrays
