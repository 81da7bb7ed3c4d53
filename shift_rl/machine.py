"""What machine a figure was measured on: every benchmark and model card says so."""

from __future__ import annotations

import os
import platform


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux; the architecture elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def describe() -> str:
    """``<cpu>, <n> cores, python <version>``."""
    return f"{cpu_model()}, {os.cpu_count()} cores, python {platform.python_version()}"
