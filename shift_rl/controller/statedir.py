"""A controller's state directory: held by one process, its files read without trust.

``<dir>/`` holds ``lock`` (an ``flock`` held while a controller runs), ``journal.jsonl`` (the
write-ahead journal, :class:`~shift_rl.controller.journal.Journal`), ``audit.jsonl`` (one
record per tick) and ``state.npz`` (the control plane's arrays and a JSON ``__meta__``),
plus the ``HOLD`` kill-switch file. :class:`StateDir` opens all of it in one call:

.. code-block:: python

    store = StateDir(state_dir, num_modules=M, num_kinds=R)   # lock, repair, validate
    saved = store.read_state(expect)                          # None on a fresh dir
    seq = store.last_seq(saved[0] if saved else None)         # ids continue from here
    store.journal.append(record); store.audit.append(tick_record)
    store.write_state(meta, arrays)
    store.close()                                             # or `with StateDir(...)`

Every problem with a file raises :class:`StateFileError` naming the file, the place in it
(line, array, meta field) and what was expected. The pieces live in
:mod:`~shift_rl.controller.journal` (journal, audit log) and
:mod:`~shift_rl.controller.statefile` (``state.npz``, the lock); their names are importable
from here too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from shift_rl.controller.journal import MAX_LINE_BYTES, Journal, JsonLines
from shift_rl.controller.statefile import (
    CONTROLLER_BOUNDS,
    CONTROLLER_FINITE,
    LOCK_FILE,
    MAX_STATE_BYTES,
    STATE_FILE,
    STATE_META_FIELDS,
    ArraySpec,
    DirLock,
    StateDirBusyError,
    StateFileError,
    read_state,
    remove_stale_temps,
    state_specs,
    write_state,
)

JOURNAL_FILE = "journal.jsonl"
AUDIT_FILE = "audit.jsonl"


# -- the directory --------------------------------------------------------------------------


class StateDir:
    """A controller's state dir, held exclusively while open.

    Opening: creates the dir, takes the lock (:class:`DirLock`; a second controller gets
    :class:`StateDirBusyError` at once), removes temp files of dead ``write_state`` calls,
    opens the journal (:class:`Journal`: torn tail repaired, every record validated) and the
    audit log (:class:`JsonLines`: torn tail repaired). On any failure the lock is released.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        num_modules: int | None = None,
        num_kinds: int | None = None,
        max_line_bytes: int = MAX_LINE_BYTES,
    ) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.lock = DirLock(self.path)
        self.journal: Journal | None = None
        self.audit: JsonLines | None = None
        try:
            remove_stale_temps(self.path)
            self.journal = Journal(
                self.path / JOURNAL_FILE, num_modules=num_modules, num_kinds=num_kinds,
                max_line_bytes=max_line_bytes,
            )  # fmt: skip
            self.audit = JsonLines(self.path / AUDIT_FILE, max_line_bytes=max_line_bytes)
        except BaseException:
            self.close()
            raise

    @property
    def repaired(self) -> list[Path]:
        """Side files a torn tail was moved to when opening (normally none)."""
        return [f.repaired for f in (self.journal, self.audit) if f is not None and f.repaired]

    def read_state(
        self, expect: Mapping[str, np.ndarray | ArraySpec] | None = None, **kw: Any
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
        """:func:`read_state` of this dir."""
        return read_state(self.path, expect, **kw)

    def write_state(self, meta: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        """:func:`write_state` into this dir (refused once closed)."""
        if not self.lock.held:
            raise ValueError(f"{self.path}: state dir closed")
        write_state(self.path, meta, arrays)

    def last_seq(self, meta: Mapping[str, Any] | None = None) -> int:
        """The highest sequence number used: over the journal and the saved state's ``seq``.

        The next record is ``last_seq + 1`` (and an intent's id too): a deleted
        ``state.npz`` (or journal) never makes ids start again.
        """
        journal = self.journal.last_seq if self.journal is not None else 0
        return max(journal, int(meta.get("seq", 0)) if meta else 0)

    def close(self) -> None:
        for f in (self.journal, self.audit):
            if f is not None:
                f.close()
        self.lock.release()

    def __enter__(self) -> StateDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = [
    "AUDIT_FILE", "CONTROLLER_BOUNDS", "CONTROLLER_FINITE", "JOURNAL_FILE", "LOCK_FILE",
    "MAX_STATE_BYTES", "STATE_FILE", "STATE_META_FIELDS", "ArraySpec", "DirLock", "StateDir",
    "StateDirBusyError", "StateFileError", "read_state", "remove_stale_temps", "state_specs",
    "write_state",
]  # fmt: skip
