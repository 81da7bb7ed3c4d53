"""The policy file primitives both exported kinds share: strict reading of ``policy.json``,
its hash, the files it lists and their hashes, the bounds every read respects.

Free of numpy and of the rest of the package, so the MLP runtime
(:mod:`shift_rl.runtime`) and the modular network (:mod:`shift_rl.modular`) both build on it
without importing each other.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
from pathlib import Path
from typing import Any

SUPPORTED_VERSIONS = (1, 2)
POLICY_JSON = "policy.json"
WEIGHTS = "weights.npz"
ONNX = "policy.onnx"
MASKED_LOGIT = -1e8  # what sb3-contrib's masking gives forbidden actions
MAX_SPEC_BYTES = 16 * 2**20
MAX_FILE_BYTES = 512 * 2**20
MAX_WEIGHT_BYTES = 256 * 2**20
"""Most bytes the arrays of weights.npz may declare (a 3 MB archive of zeros can declare 3 GB)."""
MAX_LAYERS = 64


ADDED_FEATURES = ("pool.unit.",)
"""Prefixes of the observation's features added after policies of format 2 were released;
they come last in the observation (one per kind). A policy whose ``observation.names`` lack
them reads the observation without that tail, so an exported policy keeps running as the
observation grows (:class:`shift_rl.runtime.ExportedPolicy`)."""


class PolicyFileError(ValueError):
    """A policy folder that cannot be trusted or used; the message says what is wrong."""


def file_sha256(path: Path) -> str:
    """sha256 of a file, read in 1 MiB chunks (policy files, checkpoints)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def spec_digest(spec: dict[str, Any]) -> str:
    """sha256 of a policy spec without its ``spec_sha256`` field, as canonical JSON (sorted keys,
    no spaces, ASCII): what format 2 records in ``spec_sha256`` so an edit of ``policy.json``
    itself (an activation, an ``nvec``, a fingerprint) is caught like an edit of the weights."""
    body = {k: v for k, v in spec.items() if k != "spec_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)  # fmt: skip
    return hashlib.sha256(text.encode()).hexdigest()


class _Spec:
    """Strict reading of ``policy.json``: every field of the right type (no truthy strings,
    no bools for numbers), or a :class:`PolicyFileError` naming the file and the field."""

    def __init__(self, data: Any, meta: Path) -> None:
        self.meta = meta
        self.data = self.mapping(data, "(top level)")

    def fail(self, field: str, problem: str, got: Any = ...) -> PolicyFileError:
        shown = "" if got is ... else f" (got {_short(got)})"
        return PolicyFileError(f"{self.meta}: {field}: {problem}{shown}")

    def mapping(self, v: Any, field: str, keys: tuple[str, ...] | None = None) -> dict[str, Any]:
        if not isinstance(v, dict):
            raise self.fail(field, "must be a JSON object", v)
        if keys is not None:
            missing = [k for k in keys if k not in v]
            if missing:
                raise self.fail(field, f"missing {', '.join(map(repr, missing))}")
        return v

    def get(self, path: str, kind: str, **bounds: Any) -> Any:
        node: Any = self.data
        parts = path.split(".")
        for i, part in enumerate(parts):
            parent = ".".join(parts[:i]) or "(top level)"
            node = self.mapping(node, parent)
            if part not in node:
                raise self.fail(path, "required field is missing")
            node = node[part]
        return self.check(node, path, kind, **bounds)

    def check(self, v: Any, field: str, kind: str, lo: float | None = None,
              hi: float | None = None, choices: tuple[Any, ...] = ()) -> Any:  # fmt: skip
        if kind == "int":
            if isinstance(v, bool) or not isinstance(v, int):
                raise self.fail(field, "must be an integer", v)
        elif kind == "number":
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise self.fail(field, "must be a finite number", v)
        elif kind == "bool":
            if not isinstance(v, bool):
                raise self.fail(field, "must be true or false", v)
        elif kind == "str":
            if not isinstance(v, str) or not v:
                raise self.fail(field, "must be a non-empty string", v)
        if choices and v not in choices:
            raise self.fail(field, f"must be one of {list(choices)}", v)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise self.fail(field, f"must be between {lo} and {hi}", v)
        return v

    def items(self, path: str, kind: str, lo_len: int = 0, hi_len: int = 10**6,
              **bounds: Any) -> list[Any]:  # fmt: skip
        v = self.get(path, "any")
        if not isinstance(v, list) or not lo_len <= len(v) <= hi_len:
            raise self.fail(path, f"must be a list of {lo_len} to {hi_len} items", v)
        return [self.check(x, f"{path}.{i}", kind, **bounds) for i, x in enumerate(v)]


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


def _read_spec(meta: Path) -> dict[str, Any]:
    try:
        info = meta.stat()
        if not stat.S_ISREG(info.st_mode):
            raise PolicyFileError(f"{meta}: not a regular file")
        if info.st_size > MAX_SPEC_BYTES:
            raise PolicyFileError(
                f"{meta}: {info.st_size:,} bytes; a policy description is at most "
                f"{MAX_SPEC_BYTES:,}"
            )
        text = meta.read_bytes()[: MAX_SPEC_BYTES + 1].decode("utf-8")
    except OSError as err:
        raise PolicyFileError(f"{meta}: cannot be read ({err})") from None
    except UnicodeDecodeError as err:
        raise PolicyFileError(f"{meta}: not UTF-8 text ({err})") from None

    def no_constant(name: str) -> None:
        raise ValueError(f"{name} is not valid JSON (numbers must be finite)")

    try:
        return json.loads(text, parse_constant=no_constant)
    except RecursionError:
        raise PolicyFileError(f"{meta}: not valid JSON (nested too deeply)") from None
    except ValueError as err:  # JSONDecodeError, NaN / Infinity, an integer too long
        raise PolicyFileError(f"{meta}: not valid JSON ({err})") from None


def listed_files(sp: _Spec) -> dict[str, str]:
    """The spec's ``files``: plain file names in the folder (weights.npz among them), each
    with a sha256."""
    files = sp.mapping(sp.data["files"], "files")
    if WEIGHTS not in files:
        raise sp.fail("files", f"must list {WEIGHTS} with its sha256")
    for name, digest in files.items():
        if Path(name).name != name or name in ("", ".", "..", POLICY_JSON):
            raise sp.fail(f"files.{name}", "must be a plain file name in the policy folder")
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise sp.fail(f"files.{name}", "must be a sha256 (64 lowercase hex digits)", digest)
    return files


def _check_files(folder: Path, files: dict[str, str]) -> None:
    for name, digest in files.items():
        file = folder / name
        try:
            info = file.stat()
        except (OSError, ValueError):
            raise PolicyFileError(
                f"{folder}: file {name!r} listed in {POLICY_JSON} is missing"
            ) from None
        if not stat.S_ISREG(info.st_mode):
            raise PolicyFileError(f"{file}: listed in {POLICY_JSON} but not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise PolicyFileError(
                f"{file}: {info.st_size:,} bytes, above the {MAX_FILE_BYTES:,} a policy file "
                "may have"
            )
        if file_sha256(file) != digest:
            raise PolicyFileError(
                f"{file}: sha256 does not match {POLICY_JSON} (the file was changed or "
                "corrupted); refusing to load it"
            )


def _zip_entries(path: Path) -> int:
    """Entries of a zip archive from its end record, read before ``zipfile`` builds an object
    per entry (an archive of millions of tiny entries must not get that far)."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - (1 << 16) - 22))
        tail = f.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        raise PolicyFileError(f"{path}: not a plain numpy archive (no zip end record)")
    return int.from_bytes(tail[at + 10 : at + 12], "little")
