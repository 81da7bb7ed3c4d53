"""The cgroup backend's modules: the standard-library-only child, its protocol, its calibration.

Nothing here needs cgroups (the backend itself is tested in ``test_backends.py``): the children
run as plain processes, the calibration loop on a fake CPU clock.
"""

from __future__ import annotations

import ast
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

import shift_rl.controller
from shift_rl.controller import cgroup, cgroup_child, cgroups
from shift_rl.controller.cgroup import _Child, _wait_replies

CHILD = Path(cgroup_child.__file__)
posix_only = pytest.mark.skipif(os.name != "posix", reason="children need POSIX pipes")


def _imported_names(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):  # every import, also inside functions
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"relative import of {node.module!r}"
            names.append(node.module or "")
    return names


def test_the_child_module_imports_only_the_standard_library() -> None:
    names = _imported_names(ast.parse(CHILD.read_text(), str(CHILD)))
    assert "hashlib" in names and "json" in names  # the walk sees its imports
    outside = [n for n in names if n.split(".")[0] not in sys.stdlib_module_names]
    assert not outside, f"{CHILD.name} imports {outside}: children are standard library only"


@posix_only
def test_a_worker_started_as_the_backend_starts_it_loads_only_the_standard_library() -> None:
    r, w = os.pipe()
    argv = cgroup_child.child_argv("worker", {"fd": r, "cost": 1e-4, "slo": 1.0, "timeout": 1.0})
    argv[1:1] = ["-X", "importtime"]  # the interpreter lists every module it imports on stderr
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, pass_fds=(r,))  # fmt: skip
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())  # calibrated: the worker module ran
        _, err = proc.communicate(timeout=30)  # end of stdin: the worker exits by itself
    finally:
        os.close(r)
        os.close(w)
    assert ready["ready"] and ready["iterations"] >= 1 and proc.returncode == 0
    loaded = [line.rsplit("|", 1)[1].strip() for line in err.decode().splitlines()
              if line.startswith("import time:") and "imported package" not in line]  # fmt: skip
    assert "hashlib" in loaded and "select" in loaded
    outside = [n for n in loaded if n.split(".")[0] not in sys.stdlib_module_names]
    assert not outside, f"the worker loaded {outside}"


@posix_only
def test_a_worker_serves_sheds_reports_and_forgets_its_buckets() -> None:
    r, w = os.pipe()
    slo = 5.0
    child = _Child("worker", {"fd": r, "cost": 1e-3, "slo": slo, "timeout": slo}, (r,))
    os.close(r)
    try:
        ready, _ = _wait_replies([child], lambda msg: "ready" in msg, time.monotonic() + 30)
        assert ready[0]["iterations"] >= 1 and ready[0]["cost"] > 0
        t0 = time.monotonic()
        tick = 600.0  # everything below falls in interval 0, however slow the machine
        assert child.send({"cmd": "start", "t0": t0, "tick": tick})
        arrivals = [t0 + 0.001 * i for i in range(5)] + [t0 - 2 * slo]  # the last one waited
        os.write(w, b"".join(cgroup_child.REQUEST.pack(t) for t in arrivals))
        totals = dict.fromkeys(cgroup_child.FIELDS, 0.0)
        deadline = time.monotonic() + 20
        while totals["ok"] + totals["late"] + totals["dropped"] < len(arrivals):
            assert time.monotonic() < deadline, totals
            time.sleep(0.05)
            child.send({"cmd": "stats", "k": 0})
            rep, _ = _wait_replies([child], lambda msg: msg.get("k") == 0, deadline)
            assert 0 in rep, "no stats reply"
            for f in cgroup_child.FIELDS:  # each reply reports and forgets what it counted
                totals[f] += rep[0][f]
        assert totals["arrived"] == len(arrivals)
        assert totals["dropped"] == 1, "a request older than the timeout is shed unserved"
        assert totals["ok"] + totals["late"] == 5 and totals["busy"] > 0
        assert totals["latency_sum"] >= 0
        child.send({"cmd": "stats", "k": 0})
        rep, _ = _wait_replies([child], lambda msg: msg.get("k") == 0, time.monotonic() + 10)
        assert rep[0]["backlog"] == 0 and rep[0]["arrived"] == 0, "buckets were forgotten"
        assert child.send({"cmd": "quit"})
        assert child.proc.wait(10) == 0
    finally:
        os.close(w)
        child.stop()


@posix_only
def test_the_load_generator_sends_the_seeded_arrivals_of_each_tick() -> None:
    pipes = [os.pipe() for _ in range(2)]
    counts, seed, tick = [[2, 1], [0, 3]], 7, 0.05
    t0 = time.monotonic() + 0.05
    cfg = {"fds": [w for _, w in pipes], "t0": t0, "tick": tick, "counts": counts, "seed": seed}
    child = _Child("loadgen", cfg, tuple(w for _, w in pipes))
    for _, w in pipes:
        os.close(w)
    try:
        assert child.proc.wait(30) == 0, "it exits at the end of its schedule"
        sent = []
        for r, _ in pipes:
            data = b""
            while chunk := os.read(r, 1 << 16):  # to end of file: the load generator is gone
                data += chunk
            sent.append([t for (t,) in cgroup_child.REQUEST.iter_unpack(data)])
    finally:
        for r, _ in pipes:
            os.close(r)
        child.stop()
    rng = random.Random(seed)  # the same draws, in the same order, as the load generator's
    expected: list[list[float]] = [[], []]
    for k, row in enumerate(counts):
        for t, m in sorted((t0 + (k + rng.random()) * tick, m)
                           for m, n in enumerate(row) for _ in range(n)):  # fmt: skip
            expected[m].append(t)
    assert sent == expected


class FakeCPU:
    """A thread CPU clock that :func:`cgroup_child.work` advances by a known cost."""

    def __init__(self, per_iteration: float, extra: dict[int, float] | None = None) -> None:
        self.per_iteration, self.extra = per_iteration, extra or {}
        self.now, self.runs = 0.0, []

    def thread_time(self) -> float:
        return self.now

    def work(self, iterations: int) -> bytes:
        """Costs ``iterations * per_iteration``, plus ``extra[i]`` in run ``i`` (a disturbance)."""
        self.now += iterations * self.per_iteration + self.extra.get(len(self.runs), 0.0)
        self.runs.append(iterations)
        return b""


def _calibrate_on(cpu: FakeCPU, cost: float, monkeypatch: pytest.MonkeyPatch) -> int:
    with monkeypatch.context() as mp:
        mp.setattr(cgroup_child.time, "thread_time", cpu.thread_time)
        mp.setattr(cgroup_child, "work", cpu.work)
        return cgroup_child.calibrate(cost)


def test_calibration_doubles_to_20_ms_then_keeps_the_best_of_three_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cpu = FakeCPU(1e-6)  # 1 us per iteration: 20 ms take 20,000 iterations
    assert _calibrate_on(cpu, 0.002, monkeypatch) == 2000
    doubling = [64 << i for i in range(10)]  # 64 .. 32768, the first run of >= 20 ms
    assert cpu.runs == [*doubling, 32768, 32768, 32768]
    # a disturbed run (load only adds CPU time) does not count while one of the three is clean
    cpu = FakeCPU(1e-6, extra={10: 0.05, 12: 0.02})
    assert _calibrate_on(cpu, 0.002, monkeypatch) == 2000
    # calibrating on a slower CPU gives proportionally fewer iterations, never fewer than one
    assert _calibrate_on(FakeCPU(4e-6), 0.002, monkeypatch) == 500
    assert _calibrate_on(FakeCPU(1.0), 0.002, monkeypatch) == 1
    cpu = FakeCPU(1e-9)  # 2**24 iterations take less than 20 ms: the doubling stops there
    assert _calibrate_on(cpu, 1e-3, monkeypatch) == 1_000_000
    assert max(cpu.runs) == 1 << 24


def test_the_names_users_import_keep_working() -> None:
    assert shift_rl.controller.CgroupBackend is cgroup.CgroupBackend
    for name in ("GROUP_PREFIX", "MIN_QUOTA_US", "CgroupTree", "CgroupUnavailableError",
                 "cgroup_support", "detect_cgroup", "remove_stale_groups"):  # fmt: skip
        assert getattr(cgroup, name) is getattr(cgroups, name), name
    assert set(cgroup.__all__) <= set(dir(cgroup))
