"""CgroupBackend: real CPU-capped worker processes behind the backend protocol.

Skipped where cgroups cannot be written (not Linux, not root, no cpu controller). The
comparison runs ``static`` and ``potential`` on the same replayed trace window (seed 3 of the
``cgroup`` scenario, ~42 s of wall time each; ``SHIFT_RL_CGROUP_TICKS`` lengthens it) and
checks, from measured request latencies, that shifting serves more requests within the SLO.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from shift_rl.agents import make_policy
from shift_rl.controller import ShiftController, SimulatedBackend
from shift_rl.controller.backend import ResourceBackend
from shift_rl.controller.cgroup import CgroupBackend
from shift_rl.controller.cgroup_child import work
from shift_rl.controller.cgroups import (
    GROUP_PREFIX,
    cgroup_support,
    detect_cgroup,
    remove_stale_groups,
)
from shift_rl.runtime import load_policy

REASON = cgroup_support()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"cgroups unavailable: {REASON}")

ROOT = Path(__file__).resolve().parents[1]
LEARNED = ROOT / "agents" / "ppo-cgroup"
SEED = 3  # a trace window where the static split is wrong (benchmarks/cgroup_results.md)
TICKS = int(os.environ.get("SHIFT_RL_CGROUP_TICKS", "40"))
FAST = 0.3  # seconds per tick where only the protocol is checked, not the performance


def _our_groups() -> list[Path]:
    _, mount = detect_cgroup()
    return sorted(p for p in mount.iterdir() if p.name.startswith(f"{GROUP_PREFIX}{os.getpid()}-"))


def _assert_cleaned(be: CgroupBackend) -> None:
    assert be.tree is not None and not be.tree.root.exists(), "cgroups left behind"
    for child in [be.loadgen, *be.workers]:
        assert child is not None and child.proc.poll() is not None, f"{child.role} still runs"
    assert not _our_groups()


def _best_cpu_seconds(iterations: list[int], rounds: int = 20) -> np.ndarray:
    """Least CPU time of ``work(n)`` for each ``n``, over ``rounds`` interleaved rounds.

    Load only adds time to a run (cache misses, a busy sibling hyperthread), so the best of many
    runs measures the machine, not its neighbours; interleaving the modules round by round lets
    a burst of load slow every module alike instead of one module's whole measurement.
    """
    best = np.full(len(iterations), np.inf)
    for _ in range(rounds):
        for j, n in enumerate(iterations):
            c0 = time.thread_time()
            work(n)
            best[j] = min(best[j], time.thread_time() - c0)
    return best


def _check_protocol(be: ResourceBackend, advance: Callable[[], None]) -> None:
    """What every backend promises (shared by the simulated and the cgroup backend)."""
    p = be.params
    m, r = p.num_modules, p.num_resources
    pool = p.pool_units

    def check() -> np.ndarray:
        tel = be.telemetry()
        assert tel.tick.shape == (1,) and tel.hour.shape == (1,)
        for name in ("demand", "utilization", "latency", "error_rate", "attainment",
                     "reported_need", "confidence", "missing"):  # fmt: skip
            assert getattr(tel, name).shape == (1, m), name
        for name in ("alloc", "incoming"):
            arr = getattr(tel, name)
            assert arr.shape == (1, m, r) and arr.dtype == np.int64 and (arr >= 0).all(), name
        assert tel.capacity.shape == (1, r) and tel.free.shape == (1, r)
        np.testing.assert_array_equal(
            tel.alloc.sum(axis=1) + tel.incoming.sum(axis=1) + tel.free, pool[None]
        )
        seen = ~tel.missing[0]
        for name in ("utilization", "error_rate", "attainment"):
            v = getattr(tel, name)[0, seen]
            assert np.isfinite(v).all() and (v >= 0).all() and (v <= 1).all(), name
        lat = tel.latency[0, seen]
        assert not np.isnan(lat).any() and (lat > 0).all()  # inf: no units left (sim)
        assert (tel.demand[0, seen] >= 0).all()
        return tel.alloc[0, :, 0].copy()

    assert be.history().shape == (p.history_ticks, m)
    before = check()
    assert be.move(0, 0, 0, 1) == 0, "a move to itself moves nothing"
    assert be.move(0, 1, 0, 0) == 0
    held = int(before[0])
    assert be.move(0, 1, 0, held + 5) == held, "more than held is clipped to what is held"
    after = check()
    assert after[0] == 0 and after[1] == before[1], "units leave at once, arrive later"
    assert be.telemetry().incoming[0, 1, 0] == held
    for _ in range(p.warmup_ticks):
        advance()
        assert check()[1] == before[1], "still warming up"
    advance()
    assert check()[1] == before[1] + held, "serving after warmup_ticks + 1 intervals"
    assert be.move(1, 0, 0, held) == held
    check()
    # several moves in one interval (a plan's shifts, one call each): each takes effect at
    # once, they add up in transit, all arrive together
    for _ in range(p.warmup_ticks + 1):
        advance()
    start = check()
    assert start[0] >= 1 and start[2] >= 1
    assert be.move(0, 1, 0, 1) == 1 and be.move(2, 1, 0, 1) == 1
    now = check()
    assert now.tolist() == [start[0] - 1, start[1], start[2] - 1], "both left at once"
    assert be.telemetry().incoming[0, 1, 0] == 2
    for _ in range(p.warmup_ticks + 1):
        advance()
    assert check().tolist() == [start[0] - 1, start[1] + 2, start[2] - 1]


def test_simulated_backend_conformance() -> None:
    be = SimulatedBackend("cgroup", seed=SEED)
    _check_protocol(be, be.advance)


def test_cgroup_backend_conformance_and_cleanup() -> None:
    with CgroupBackend("cgroup", seed=SEED, tick_wall_seconds=FAST) as be:
        assert _our_groups() == [be.tree.root]
        _check_protocol(be, be.advance)
        tel = be.telemetry()
        assert not tel.missing.any() and tel.demand.sum() > 0
        assert np.allclose(tel.confidence, np.exp(-be.params.claimed_noise))
        # calibrated to the scenario: the iterations each worker chose cost its module's CPU
        # time per request on this machine. The workers calibrate at once, beside each other and
        # the load generator on a shared machine, so their choice carries that moment's load
        # (0.0037 s re-measured against 0.002 s in one CI run): bounded to a factor of 3, which
        # catches a unit or scale slip (10x, 1000x) and not the load of a busy 2-core machine
        best = _best_cpu_seconds([c["iterations"] for c in be.calibration])
        ratio = best / be.cost
        assert ((ratio > 1 / 3) & (ratio < 3)).all(), (best, be.cost)
        reported = np.array([c["cost"] for c in be.calibration])
        assert ((reported > be.cost / 10) & (reported < be.cost * 10)).all(), reported
        with pytest.raises(ValueError, match="modules are"):
            be.move(0, 7, 0, 1)
    _assert_cleaned(be)
    be.close()  # idempotent


def test_cleanup_after_an_error_inside_the_with_block() -> None:
    with (
        pytest.raises(RuntimeError, match="boom"),
        CgroupBackend("cgroup", seed=1, tick_wall_seconds=FAST) as be,
    ):
        be.advance()
        raise RuntimeError("boom")
    _assert_cleaned(be)


def test_a_dead_worker_shows_as_missing_telemetry_and_is_restarted() -> None:
    with CgroupBackend("cgroup", seed=2, tick_wall_seconds=FAST) as be:
        old = be.workers[1].pid
        os.kill(old, signal.SIGKILL)
        be.advance()
        tel = be.telemetry()
        assert tel.missing[0].tolist() == [False, True, False]
        assert np.isnan(tel.attainment[0, 1]) and be.restarts == 1
        be.advance()
        assert not be.telemetry().missing.any()
        assert be.workers[1].pid != old
        assert int((be.tree.leaves["m1"] / "cgroup.procs").read_text()) == be.workers[1].pid
    _assert_cleaned(be)


def test_stale_groups_of_dead_processes_are_removed() -> None:
    _, mount = detect_cgroup()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True, timeout=30)  # fmt: skip
    stale = mount / f"{GROUP_PREFIX}{int(dead.stdout)}-deadbeef"
    stale.mkdir()
    (stale / "m0").mkdir()
    try:
        assert stale in remove_stale_groups(mount)
        assert not stale.exists()
    finally:
        for p in (stale / "m0", stale):
            if p.exists():
                p.rmdir()


@pytest.mark.skipif(not (LEARNED / "policy.json").is_file(), reason="agents/ppo-cgroup missing")
def test_learned_policy_drives_the_real_backend() -> None:
    policy = load_policy(LEARNED)
    with CgroupBackend("cgroup", seed=SEED, tick_wall_seconds=FAST) as be:
        assert policy.spec["scenario"]["fingerprint"] == be.params.fingerprint()
        records = ShiftController(policy, be, interval=0).run(8)
    assert all(r.source == "policy" and r.held is None for r in records)
    _assert_cleaned(be)


CONTENDED = 1.25  # measured / nominal CPU per request above which the caps did not bind
ATTEMPTS = 2


def _run_pair() -> tuple[dict, dict, float]:
    """``static`` then ``potential`` on the same replay; also the worst contention measured.

    Contention is the measured CPU time per completed request over its nominal cost, the worst
    module of either run: a neighbour that shares the core's caches or its hyperthread makes
    the same work cost more CPU time, so the caps no longer decide who serves what.
    """
    results, contention = {}, 0.0
    for name in ("static", "potential"):
        with CgroupBackend("cgroup", seed=SEED) as be:
            records = ShiftController(make_policy(name, be.params), be, interval=0).run(TICKS)
            results[name] = be.summary()
            nominal_ms = 1e3 * be.cost
        _assert_cleaned(be)
        errors = [r.held for r in records if r.held and r.held.startswith("backend error")]
        assert not errors, errors
        measured = np.asarray(results[name]["cost_per_request_ms"]) / nominal_ms
        contention = max(contention, float(measured.max()))
        print(name, results[name], f"contention {measured.round(2).tolist()}")
    return results["static"], results["potential"], contention


@pytest.mark.slow
@pytest.mark.serial  # wall-clock service: another test on the other core would blur it
def test_potential_serves_more_requests_within_the_slo_than_static() -> None:
    """Shifting serves more requests within the SLO, measured where the caps bind.

    The comparison is of wall-clock service, so a busy machine can invert it (CI once measured
    each request of the ``potential`` run at 1.8x its nominal CPU cost and ``static`` at 1.2x).
    A failed comparison measured under contention above ``CONTENDED`` is run again; if every
    attempt was contended the test is skipped, naming the contention: on such a machine the
    caps do not decide the outcome, and ``benchmarks/bench_cgroup.py`` is where this is
    measured. A comparison that fails on a quiet machine fails the test.
    """
    contended = []
    for _ in range(ATTEMPTS):
        static, potential, contention = _run_pair()
        # the same replay: the same requests arrived (up to requests straddling the boundary)
        assert abs(static["requests"] - potential["requests"]) <= 0.01 * static["requests"]
        assert static["units_moved"] == 0 and potential["units_moved"] > 0
        gain = potential["within_slo"] - static["within_slo"]
        better = gain > 0.02 * static["requests"] and potential["dropped"] < static["dropped"]
        if better:
            return
        assert contention > CONTENDED, (
            f"potential did not beat static on a quiet machine (contention {contention:.2f})",
            static,
            potential,
        )
        contended.append(round(contention, 2))
    pytest.skip(f"every attempt ran on a contended machine (CPU per request x{contended})")
