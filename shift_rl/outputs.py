"""Where commands write: only into folders they created or that hold their own earlier output.

A command that writes a folder (a training run, a policy export, evaluation figures, a
controller's state) first *claims* it with :func:`claim_dir`:

* a path that does not exist is created (with its missing parents) and gets a marker file,
  ``.shift_rl-output.json``, naming the kind of output, the command and the files written;
* an existing folder is accepted only if it is empty, holds a marker of the same kind, or is
  recognized as an older output of that kind (``legacy``: e.g. a policy folder written before
  markers existed, recognized by its ``policy.json``);
* anything else (a file, a folder with other files, a marker of another kind) is refused with
  one :class:`OutputError` naming the folder and what is in it. Nothing is deleted, moved or
  overwritten that the command did not write.

Every file is written atomically (:func:`atomic_write_bytes`: a temporary file in the same
folder, flushed to disk, then ``os.replace``), so a reader sees the old file or the new one,
never half of one. :meth:`OutputDir.replace_files` replaces a set of files (an export, a set
of figures): it writes the new files, then removes only the files the previous output of the
same kind listed in its marker and the new one no longer writes. A user's own files in the
folder are left alone.

A single output file (``--json OUT``) is checked with :func:`check_file` before any work and
written with :func:`write_file`: an existing file is replaced only if ``recognize`` says it is
this command's own earlier output.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

MARKER = ".shift_rl-output.json"
MARKER_VERSION = 1

Legacy = Callable[[Path], "list[str] | None"]
"""Recognizes an older output of a kind without a marker: the names of its files, or None."""


class OutputError(ValueError):
    """An output path a command refuses to write to; the message names it and says why."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: a temporary file beside it, then ``os.replace``.

    The temporary file lies in the same folder (``.<name>.<random>.tmp``), so the replace is a
    rename on one file system; it is removed again if anything fails.
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)  # mkstemp makes it private; outputs are meant to be read
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def _command() -> str:
    return " ".join(["python", *sys.argv]) if sys.argv and sys.argv[0] else "python"


def _read_marker(folder: Path) -> dict[str, Any] | None:
    path = folder / MARKER
    if not path.is_file():
        return None
    try:
        marker = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {"kind": "<unreadable marker>", "files": []}
    return marker if isinstance(marker, dict) else {"kind": "<unreadable marker>", "files": []}


def _describe_contents(folder: Path) -> str:
    names = sorted(p.name for p in folder.iterdir())
    shown = ", ".join(repr(n) for n in names[:4])
    more = f" and {len(names) - 4} more" if len(names) > 4 else ""
    return f"{shown}{more}"


def _inspect(path: Path, kind: str, legacy: Legacy | None) -> list[str] | None:
    """The files of an acceptable earlier output (``[]`` if new or empty); raise if refused.

    ``None`` means the folder does not exist yet.
    """
    if not path.exists():
        if path.is_symlink():
            raise OutputError(f"output folder {str(path)!r} is a broken symbolic link")
        parent = path.parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir():
            raise OutputError(f"cannot create output folder {str(path)!r}: {parent} is a file")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise OutputError(f"cannot create output folder {str(path)!r}: {parent} is read-only")
        return None
    if not path.is_dir():
        raise OutputError(
            f"output folder {str(path)!r} is a file, not a folder; choose a new folder name"
        )
    marker = _read_marker(path)
    if marker is not None:
        if marker.get("kind") != kind:
            raise OutputError(
                f"output folder {str(path)!r} holds a shift_rl {marker.get('kind')} (see its "
                f"{MARKER}), not a {kind}; choose another folder"
            )
        files = marker.get("files", [])
        return [f for f in files if isinstance(f, str)]
    if not any(path.iterdir()):
        return []
    if legacy is not None:
        files = legacy(path)
        if files is not None:
            return files
    raise OutputError(
        f"output folder {str(path)!r} already exists and holds files shift_rl did not write "
        f"as a {kind} ({_describe_contents(path)}); refusing to write there. Choose a new or "
        "empty folder"
    )


def check_dir(path: str | os.PathLike, kind: str, legacy: Legacy | None = None) -> None:
    """Raise :class:`OutputError` if :func:`claim_dir` would refuse ``path``; change nothing."""
    _inspect(Path(path), kind, legacy)


@dataclass
class OutputDir:
    """A claimed output folder: atomic writes, a marker listing the files written there."""

    path: Path
    kind: str
    files: list[str]
    command: str

    def _save_marker(self) -> None:
        marker = {
            "tool": "shift_rl",
            "version": MARKER_VERSION,
            "kind": self.kind,
            "command": self.command,
            "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "files": sorted(set(self.files)),
        }
        atomic_write_text(self.path / MARKER, json.dumps(marker, indent=2) + "\n")

    def _target(self, name: str) -> Path:
        rel = Path(name)
        if rel.is_absolute() or ".." in rel.parts or name in ("", ".", MARKER):
            raise ValueError(f"{name!r} is not a file name inside the output folder")
        return self.path / rel

    def write_bytes(self, name: str, data: bytes) -> Path:
        """Write ``name`` (relative to the folder) atomically and list it in the marker."""
        target = self._target(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, data)
        if name not in self.files:
            self.files.append(name)
            self._save_marker()
        return target

    def write_text(self, name: str, text: str) -> Path:
        return self.write_bytes(name, text.encode("utf-8"))

    def replace_files(self, files: dict[str, bytes]) -> list[Path]:
        """Replace this kind's earlier files with ``files`` (written in the given order).

        Each file is replaced atomically; files of the earlier output that the new one does
        not write are removed afterwards; nothing else in the folder is touched.
        """
        old = [f for f in self.files if f not in files]
        written = [self.write_bytes(name, blob) for name, blob in files.items()]
        for name in old:
            target = self._target(name)
            if target.is_file() and not target.is_symlink():
                target.unlink()
        self.files = list(files)
        self._save_marker()
        return written


def claim_dir(
    path: str | os.PathLike,
    kind: str,
    legacy: Legacy | None = None,
    command: str | None = None,
) -> OutputDir:
    """Create ``path`` or accept it as an earlier output of ``kind``; see the module doc."""
    folder = Path(path)
    files = _inspect(folder, kind, legacy)
    if files is None:
        folder.mkdir(parents=True)
        files = []
    out = OutputDir(folder, kind, list(files), command or _command())
    out._save_marker()
    return out


# -- single files ---------------------------------------------------------------------------
def check_file(path: str | os.PathLike, recognize: Callable[[Path], bool], what: str) -> None:
    """Raise :class:`OutputError` unless ``path`` can be (re)written as ``what``.

    It may not exist yet (its missing parent folders are created on writing), or be a file
    that ``recognize`` accepts as this command's own earlier output.
    """
    target = Path(path)
    if target.is_dir():
        raise OutputError(
            f"{str(target)!r} is a folder; expected the name of a {what} file to write, "
            f"e.g. {str(target / 'out.json')!r}"
        )
    if target.exists() or target.is_symlink():
        if not target.is_file() or not recognize(target):
            raise OutputError(
                f"{str(target)!r} already exists and is not a {what} written by shift_rl; "
                "refusing to overwrite it. Choose another file name"
            )
        return
    parent = target.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"cannot write {str(target)!r}: {parent} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {str(target)!r}: {parent} is read-only")


def write_file(
    path: str | os.PathLike, data: bytes | str, recognize: Callable[[Path], bool], what: str
) -> Path:
    """Check ``path`` as :func:`check_file` does, then write it atomically."""
    check_file(path, recognize, what)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    blob = data.encode("utf-8") if isinstance(data, str) else data
    return atomic_write_bytes(target, blob)


def json_with_keys(keys: Iterable[str]) -> Callable[[Path], bool]:
    """A recognizer: a JSON object holding every one of ``keys``."""
    wanted = set(keys)

    def recognize(path: Path) -> bool:
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return False
        return isinstance(data, dict) and wanted <= set(data)

    return recognize


def shown(path: str | os.PathLike) -> str:
    """``path`` as a user would type it: relative to the working directory when inside it."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def inside(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """Whether ``path`` is ``folder`` or lies under it (symbolic links resolved)."""
    p, f = Path(path).resolve(), Path(folder).resolve()
    return p == f or f in p.parents


__all__ = [
    "MARKER",
    "OutputDir",
    "OutputError",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_dir",
    "check_file",
    "claim_dir",
    "inside",
    "json_with_keys",
    "shown",
    "write_file",
]
