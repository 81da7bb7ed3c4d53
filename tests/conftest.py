"""Shared test settings: hypothesis profiles, paths, and turns for tests that must run alone.

The suite runs on two pytest-xdist workers (``addopts`` in ``pyproject.toml``). A test marked
``serial`` (and every ``ray`` test, which starts a local cluster on all the cores) runs while no
other test runs: each test holds a shared lock for its whole run (set-up to tear-down), a
``serial`` one an exclusive lock, taken behind a gate so that the other worker's next tests
cannot starve it. Without xdist (``-n 0``) no lock is taken.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((ROOT / "configs" / "scenarios").glob("*.yaml"))
SHARED_TRACES = ROOT.parent / "shared" / "traces"

settings.register_profile(
    "default",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "ci",
    parent=settings.get_profile("default"),
    derandomize=True,
    print_blob=True,
)
settings.load_profile(
    "ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "default")
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("ray") is not None:
            item.add_marker(pytest.mark.serial)


@contextlib.contextmanager
def _turn(item: pytest.Item) -> Iterator[None]:
    """Hold the shared lock for an ordinary test, the exclusive one for a ``serial`` test."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        yield
        return
    # the workers' temporary folders share this parent, and pytest removes it in time
    root = item.config._tmp_path_factory.getbasetemp().parent
    serial = item.get_closest_marker("serial") is not None
    with open(root / "serial.gate", "a") as gate, open(root / "serial.lock", "a") as lock:
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX if serial else fcntl.LOCK_SH)
        finally:
            if not serial:  # a serial test keeps the gate shut until it is done
                fcntl.flock(gate, fcntl.LOCK_UN)
        yield  # closing the files releases both locks


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> object:
    with _turn(item):
        return (yield)
