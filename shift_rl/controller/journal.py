"""Durable controller records: a write-ahead journal of shifts, an audit log, atomic state.

The journal is JSON lines, each fsynced before the controller acts on it. A shift is written
as ``intent`` (with the source's allocation expected afterwards) before the backend is asked
to move, and as ``applied`` after. A controller killed between the two finds, on restart,
an intent without its outcome and asks the backend: if the source holds the expected units
the move happened (``applied``), otherwise it did not (``aborted``). No shift is lost or
applied twice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np


class JsonLines:
    """An append-only JSON-lines file; every record is flushed and fsynced."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(path, "a", encoding="utf-8")

    def append(self, record: dict[str, Any]) -> None:
        self._f.write(json.dumps(record, sort_keys=True) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    @staticmethod
    def read(path: Path) -> list[dict[str, Any]]:
        """Every complete record (a torn last line from a crash is ignored)."""
        if not path.is_file():
            return []
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                break
        return out


def write_state(
    path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray], name: str = "state.npz"
) -> None:
    """Atomically replace ``path/name``: the arrays plus the metadata as a JSON string.

    One file, written beside and renamed over the old one, so a crash leaves either the old
    state or the new one, never a mix. Read back without pickle.
    """
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / f"{name}.tmp"
    with open(tmp, "wb") as f:
        np.savez(f, __meta__=np.array(json.dumps(meta, sort_keys=True)), **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path / name)


def read_state(
    path: Path, name: str = "state.npz"
) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """The last saved state in ``path/name``, or ``None`` when there is none."""
    file = path / name
    if not file.is_file():
        return None
    with np.load(file, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != "__meta__"}
        meta = json.loads(str(z["__meta__"]))
    return meta, arrays
