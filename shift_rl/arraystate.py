"""Explicit state of the tick's parts as plain named arrays: saved, checked and restored.

The guard, the reputation, the forecasters and the control-plane core each name the arrays
that make up their state; :func:`save_arrays` copies them into a flat record and
:func:`load_arrays` checks a record (every name present, nothing extra, same shape and dtype)
before it writes a single value back in place. In place matters: compiled kernels and other
objects (an ensemble's view of its members) hold references to these arrays.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np


class StateError(ValueError):
    """A state record that does not fit the object it is loaded into; the message says why."""


def save_arrays(obj: Any, names: Iterable[str], prefix: str = "") -> dict[str, np.ndarray]:
    """Copies of ``obj``'s arrays ``names``, keyed ``prefix + name``."""
    return {prefix + name: np.array(getattr(obj, name), copy=True) for name in names}


def load_arrays(
    obj: Any, names: Iterable[str], record: Mapping[str, np.ndarray], prefix: str = "",
    owner: str = "state",
) -> None:  # fmt: skip
    """Write ``record[prefix + name]`` into ``obj.name`` in place, after checking them all."""
    names = list(names)
    checked = []
    for name in names:
        key = prefix + name
        if key not in record:
            raise StateError(f"{owner}: array {key!r} missing")
        value = np.asarray(record[key])
        current = getattr(obj, name)
        if value.shape != current.shape or value.dtype != current.dtype:
            raise StateError(
                f"{owner}: array {key!r} has shape {value.shape} and dtype {value.dtype}; "
                f"expected {current.shape} {current.dtype}"
            )
        checked.append((current, value))
    for current, value in checked:
        current[...] = value


def unexpected_keys(record: Mapping[str, Any], expected: Iterable[str]) -> list[str]:
    """Keys of ``record`` that no part claims (a record of another layout or version)."""
    return sorted(set(record) - set(expected))
