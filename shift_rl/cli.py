"""Argument types the scripts share: each refuses a bad value with one argparse message."""

from __future__ import annotations

import argparse
import math


def int_at_least(low: int):
    """An ``argparse`` type: an integer >= ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected an integer >= {low}, got {text!r}"
            ) from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


positive_int = int_at_least(1)
"""An integer >= 1 (counts: episodes, ticks, workers)."""
nonnegative_int = int_at_least(0)
"""An integer >= 0 (seeds)."""


def seconds(text: str) -> float:
    """A finite number of seconds >= 0 (not inf, nan or negative)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0.0):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds >= 0, got {text!r}")
    return value
