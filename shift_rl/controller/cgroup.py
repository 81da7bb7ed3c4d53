"""CgroupBackend: the controller drives real processes whose CPU is capped by Linux cgroups.

This module is the backend and its process supervision (starting, feeding, restarting and
stopping the children, collecting their replies into telemetry). The children themselves are
in :mod:`shift_rl.controller.cgroup_child` (standard library only, the line protocol), the
cgroup hierarchy in :mod:`shift_rl.controller.cgroups`; the names users import from here
(:class:`CgroupBackend`, :func:`cgroup_support`, :func:`detect_cgroup`, ...) keep working.

One backend is one small control plane on this machine:

- **accelerated clock**: one tick (the scenario's ``tick_seconds``, e.g. 60 s) lasts
  ``tick_wall_seconds`` of wall time (default 1 s). Every time in the scenario is compressed by
  the same factor ``scale = tick_seconds / tick_wall_seconds``: a request that one unit serves
  at ``service_rate`` per scenario second is served at ``service_rate * scale`` per wall
  second, the SLO lasts ``slo_seconds / scale`` wall seconds, and telemetry reports latencies
  back in scenario seconds. Requests per tick, utilizations and goal attainment do not change,
  so the simulator of the same scenario models the accelerated system;
- **workers**: one process per module, a single-threaded FIFO server whose requests each cost
  ``unit_cpu * units_per_server / (service_rate * scale)`` CPU-seconds (calibrated in the
  worker at start): one server's worth of units then serves exactly the scenario's
  ``service_rate``;
- **load generator**: one process that replays the episode's demand schedule (the scenario's
  trace or synthetic demand, drawn from ``seed`` exactly as :class:`SimulatedBackend` draws it):
  tick ``k`` carries ``round(demand[k])`` requests at uniformly random instants (a Poisson
  process given the count; the instants come from ``seed``, so every policy replays the same
  arrivals);
- **cgroups**: a parent group with a raised CPU weight (so a busy machine cannot starve the
  workers below their caps: the caps, not the neighbours, are what the policy controls) and one
  leaf per worker whose CPU is capped to ``units * unit_cpu`` of one CPU. One *unit* is
  ``unit_cpu`` of a CPU, e.g. 0.1 = 2 ms per 20 ms period.

Time: interval ``k`` is ``[t0 + k D, t0 + (k + 1) D)`` on the monotonic clock (``D`` =
``tick_wall_seconds``). The constructor runs interval 0 and measures it (telemetry tick 0, the
state before control starts, as the simulator's tick 0); :meth:`advance` lets the next interval
run to its end and measures it. Intervals are fixed on the wall clock: a late controller loses
time, never shifts the load. Use ``ShiftController(..., interval=0)``: ``advance`` waits.

Shifts mirror the simulator (``shift_rl.sim.dynamics``): ``move`` takes the units from the
source's cap at once and puts them in transit; they raise the target's cap at the start of the
``warmup_ticks + 1``-th interval after, so ``warmup_ticks`` intervals of their capacity are lost.
Moving more units than the source holds moves what it holds (clipped, as the simulator does).

Telemetry, measured per module from the real requests (workers keep per-interval buckets by
timestamp, so a late stats reply does not blur intervals):

- ``demand``: requests that arrived in the interval (by their scheduled arrival time);
- ``attainment``: share of the requests *resolved* in the interval (completed or dropped) that
  completed within the SLO, response time measured from the scheduled arrival to completion
  (so queueing, throttling and any delivery lag all count); 1 when nothing arrived or waited;
- ``error_rate``: share of the resolved requests dropped: a request that has waited longer than
  ``request_timeout`` when it reaches the head of the queue is dropped unserved. The default,
  the SLO itself, is deadline-aware load shedding (a request that cannot meet its SLO any more
  is not worth CPU), which keeps an overloaded worker serving what its capacity allows within
  the SLO and dropping the rest, as the model's ``RHO_MAX`` shedding does; a longer timeout
  gives a plain FIFO server that collapses under overload (nearly every request late);
- ``latency``: mean response time of the completed requests, in scenario seconds;
- ``utilization``: CPU-seconds spent serving requests (per-thread CPU time measured by the
  worker) over the CPU-seconds the cap allowed in the interval, clipped to [0, 1];
- ``reported_need`` (the module's own estimate, no look-ahead): servers the demand of the
  interval needs at the target utilization, at the *measured* CPU cost per request:
  ``demand * servers_per_request * measured_cost / nominal_cost`` (a slower machine shows);
- ``confidence``: the module's declared confidence, ``exp(-claimed_noise)`` as in the simulator;
- ``missing``: True (metrics NaN) when a worker's stats did not arrive in time or it died (it
  is restarted, at most ``MAX_RESTARTS`` times).

Sim versus real: the simulator's module is an M/M/c queue per tick in steady state; a worker
is one FIFO server of speed ``units`` with a fixed CPU cost per request, throttled in
``period_us`` slices, whose backlog carries over between intervals. Both agree on capacity
(measured utilization follows offered load; the worker's own overhead outside the calibrated
work costs a few per cent of its cap) and on when a module falls behind. Near saturation the
model is pessimistic: exponential service times on ``c`` slow servers queue far more than a
fixed cost on one fast server, so at 95 % load it predicts about two thirds of the requests
within the SLO where the worker keeps nearly all (``benchmarks/cgroup_results.md``).

Cleanup: :meth:`close` (also on ``with`` exit and, through ``atexit``, at interpreter exit)
stops the children and removes the cgroups, errors or not. Children also exit by themselves
when the parent dies (their stdin reaches EOF), and empty groups that a killed parent left
behind are removed by the next backend that starts.

Linux only; needs write access to a cgroup hierarchy with the cpu controller (root, or a
delegated v2 subtree): :func:`cgroup_support` says why not.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import select
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium.utils import seeding

from shift_rl.config import ScenarioConfig, load_scenario
from shift_rl.controller.backend import BackendError, BackendStateError
from shift_rl.controller.cgroup_child import FIELDS, LineReader, child_argv
from shift_rl.controller.cgroups import (
    GROUP_PREFIX,
    MIN_QUOTA_US,
    CgroupTree,
    CgroupUnavailableError,
    cgroup_support,
    detect_cgroup,
    remove_stale_groups,
)
from shift_rl.controller.statefile import STATE_FILE, StateFileError, read_state, write_state
from shift_rl.scenario import ScenarioParams
from shift_rl.sim.exogenous import draw_exogenous
from shift_rl.telemetry import Telemetry

__all__ = [
    "GROUP_PREFIX",
    "MAX_RESTARTS",
    "MIN_QUOTA_US",
    "CgroupBackend",
    "CgroupTree",
    "CgroupUnavailableError",
    "cgroup_support",
    "detect_cgroup",
    "remove_stale_groups",
]

logger = logging.getLogger(__name__)

MAX_RESTARTS = 3
_PIPE_BYTES = 1 << 20  # pipe buffer asked for (fits ~130k waiting requests)


class _Child:
    """A child process with a JSON-lines control channel on its stdin / stdout."""

    def __init__(self, role: str, cfg: dict, pass_fds: tuple[int, ...]) -> None:
        self.role = role
        self.proc = subprocess.Popen(
            child_argv(role, cfg),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=pass_fds,
            start_new_session=True,  # no terminal signals: the backend ends its children
        )  # fmt: skip
        assert self.proc.stdout is not None
        self.fd = self.proc.stdout.fileno()
        os.set_blocking(self.fd, False)
        self.reader = LineReader(self.fd)
        self.inbox: list[dict] = []

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, msg: dict) -> bool:
        """Write a command; False when the child is gone."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps(msg) + "\n").encode())
            self.proc.stdin.flush()
            return True
        except (BrokenPipeError, OSError):
            return False

    def poll_lines(self) -> bool:
        """Move available replies to ``inbox``; False at end of file (the child is gone)."""
        msgs = self.reader.read()
        if msgs is None:
            return False
        self.inbox += msgs
        return True

    def stop(self, timeout: float = 2.0) -> None:
        """Ask the child to quit (close its stdin), then terminate / kill if it lingers."""
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                try:
                    self.proc.wait(1.0)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5.0)
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError, ValueError):
                if stream is not None:
                    stream.close()


def _wait_replies(
    children: list[_Child], want: Any, deadline: float
) -> tuple[dict[int, dict], set[int]]:
    """Wait until every child has a reply matching ``want`` (or the deadline passes).

    Returns (reply per child index, indices whose child is gone). Non-matching replies (e.g.
    a stale stats reply that missed an earlier deadline) are discarded.
    """
    got: dict[int, dict] = {}
    gone: set[int] = set()
    while True:
        for i, child in enumerate(children):
            if i in got or i in gone:
                continue
            while child.inbox:
                msg = child.inbox.pop(0)
                if want(msg):
                    got[i] = msg
                    break
        waiting = {c.fd: i for i, c in enumerate(children) if i not in got and i not in gone}
        left = deadline - time.monotonic()
        if not waiting or left <= 0:
            return got, gone
        ready, _, _ = select.select(list(waiting), [], [], left)
        for fd in ready:
            i = waiting[fd]
            if not children[i].poll_lines():
                gone.add(i)


class CgroupBackend:
    """Worker processes under cgroup CPU caps, fed by a replayed trace (see module docstring).

    ``scenario`` and ``seed`` pick the demand exactly as ``SimulatedBackend(scenario, seed)``
    does; the other settings shape the real system:

    - ``tick_wall_seconds``: wall time of one tick (the clock runs ``tick_seconds /
      tick_wall_seconds`` times faster than the scenario's; every rate follows);
    - ``unit_cpu``: share of one CPU that one unit is; ``period_us``: the cap's period (short
      periods throttle in small slices, so latency is smoother);
    - ``request_timeout``: scenario seconds after which a waiting request is dropped
      (default the module's SLO: deadline-aware shedding);
    - ``weight_factor``: CPU weight of our group relative to a default process or group;
    - ``stats_timeout``: seconds to wait for a worker's interval stats before marking the
      module's telemetry missing.
    """

    def __init__(
        self,
        scenario: str | ScenarioConfig = "cgroup",
        seed: int = 0,
        *,
        tick_wall_seconds: float = 1.0,
        unit_cpu: float = 0.1,
        period_us: int = 20_000,
        request_timeout: float | None = None,
        weight_factor: float = 16.0,
        stats_timeout: float = 2.0,
        start_delay: float = 0.3,
        state_dir: str | os.PathLike | None = None,
    ) -> None:
        self.params = p = ScenarioParams.from_config(load_scenario(scenario))
        if p.num_resources != 1:
            raise ValueError(
                f"CgroupBackend caps one resource kind (cpu); scenario {p.config.name!r} has "
                f"{p.num_resources}: {p.config.resource_names}"
            )
        if not 0.0 < unit_cpu <= 1.0:
            raise ValueError(f"unit_cpu must be in (0, 1] of a CPU, got {unit_cpu}")
        if not MIN_QUOTA_US <= period_us <= 1_000_000:
            raise ValueError(f"period_us must be in [{MIN_QUOTA_US}, 1000000], got {period_us}")
        cpus = int(p.pool_units[0]) * unit_cpu
        if cpus > (os.cpu_count() or 1):
            raise ValueError(
                f"the pool of {int(p.pool_units[0])} units x {unit_cpu:g} CPU = {cpus:g} CPUs is "
                f"more than this machine's {os.cpu_count()} CPUs: lower unit_cpu"
            )
        self.tick_wall = float(tick_wall_seconds)
        if not 0.05 <= self.tick_wall <= 3600:
            raise ValueError(f"tick_wall_seconds must be in [0.05, 3600], got {self.tick_wall}")
        self.scale = p.tick_seconds / self.tick_wall  # scenario seconds per wall second
        self.unit_cpu, self.period_us = float(unit_cpu), int(period_us)
        self.stats_timeout = float(stats_timeout)
        self.weight_factor = float(weight_factor)
        m = p.num_modules
        # wall CPU-seconds per request so that one server (units_per_server units) serves
        # service_rate requests per scenario second
        self.cost = unit_cpu * p.units_per_server[:, 0] / (p.service_rate * self.scale)
        self.request_timeout = (  # scenario seconds
            np.full(m, float(request_timeout))
            if request_timeout is not None
            else p.slo_seconds.copy()
        )
        for j, c in enumerate(self.cost):
            if c < 2e-4 or c > self.tick_wall / 5:
                logger.warning(
                    "module %s: %.2g CPU-s per request is outside [0.2 ms, tick / 5]: per-request "
                    "overhead or interval granularity will distort its measurements",
                    p.config.modules[j].name, c,
                )  # fmt: skip

        # the episode's demand, drawn as the simulator draws it
        rng, _ = seeding.np_random(seed)
        self.episode_seed = int(rng.integers(2**63 - 1))
        exo = draw_exogenous(p, self.episode_seed)
        h = p.history_ticks
        self.start_hour = exo.start_hour
        self.schedule = np.rint(exo.demand[h : h + p.episode_ticks + 1]).astype(np.int64)
        self._history = np.rint(exo.demand[:h]).astype(np.float64)
        self.confidence = np.exp(-p.claimed_noise)

        # state: allocation, transit pipeline (slot 0 arrives next), telemetry
        self.alloc = p.initial_alloc[:, 0].astype(np.int64).copy()
        self.transit = np.zeros((p.warmup_ticks + 1, m), dtype=np.int64)
        self.t = 0
        self.units_moved = 0
        self.moves = 0
        self.records: list[dict[str, Any]] = []
        names = ("demand", "utilization", "latency", "error_rate", "attainment", "reported_need")
        self._metrics = {k: np.full(m, np.nan) for k in names}
        self._missing = np.ones(m, dtype=bool)
        self._cost_seen = self.cost.copy()
        self._quota_log: list[list[tuple[float, float]]] = [[] for _ in range(m)]
        self.restarts = 0
        self.workers: list[_Child] = []
        self.loadgen: _Child | None = None
        self._pipes: list[tuple[int, int]] = []
        self.tree: CgroupTree | None = None
        self._closed = False
        self._owner = os.getpid()
        self.seed = int(seed)
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.resumed = self._load() if self.state_dir is not None else False

        import atexit

        atexit.register(self.close)
        try:
            self._start(seed, start_delay)
        except BaseException:
            self.close()
            raise

    # -- start --------------------------------------------------------------------------------
    def _start(self, seed: int, start_delay: float) -> None:
        import fcntl

        p = self.params
        version, mount = detect_cgroup()
        leaves = [f"m{j}" for j in range(p.num_modules)] + ["loadgen"]
        self.tree = CgroupTree(version, mount, leaves, self.weight_factor)
        logger.info("cgroup %s tree at %s", version, self.tree.root)
        for _ in range(p.num_modules):
            r, w = os.pipe()
            with contextlib.suppress(OSError, AttributeError):
                fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
            self._pipes.append((r, w))
        for j in range(p.num_modules):
            self._set_cap(j, time.monotonic())
            self.workers.append(self._spawn_worker(j))
        ready, _ = _wait_replies(self.workers, lambda msg: "ready" in msg, time.monotonic() + 30)
        if len(ready) < p.num_modules:
            raise BackendError(f"workers {sorted(set(range(p.num_modules)) - set(ready))} did "
                               "not start (calibration) within 30 s")  # fmt: skip
        self.calibration = [ready[j] for j in range(p.num_modules)]
        # interval t starts after the delay; a resumed episode's earlier intervals lie before
        self.t0 = time.monotonic() + start_delay - self.t * self.tick_wall
        for w in self.workers:
            w.send({"cmd": "start", "t0": self.t0, "tick": self.tick_wall})
        cfg = {
            "fds": [w for _, w in self._pipes], "t0": self.t0, "tick": self.tick_wall,
            "counts": self.schedule.tolist(), "seed": int(seed), "first": self.t,
        }  # fmt: skip
        self.loadgen = _Child("loadgen", cfg, tuple(w for _, w in self._pipes))
        self.tree.add("loadgen", self.loadgen.pid)
        for _, w in self._pipes:  # only the load generator writes; EOF reaches workers at its end
            os.close(w)
        self._pipes = [(r, -1) for r, _ in self._pipes]
        self._measure(self.t)
        self._save()

    def _spawn_worker(self, j: int) -> _Child:
        p = self.params
        cfg = {
            "fd": self._pipes[j][0], "cost": float(self.cost[j]),
            "slo": float(p.slo_seconds[j] / self.scale),
            "timeout": float(self.request_timeout[j] / self.scale),
        }  # fmt: skip
        child = _Child("worker", cfg, (self._pipes[j][0],))
        assert self.tree is not None
        self.tree.add(f"m{j}", child.pid)
        return child

    # -- caps ---------------------------------------------------------------------------------
    def _set_cap(self, j: int, now: float) -> None:
        assert self.tree is not None
        units = int(self.alloc[j])
        if units == 0:
            logger.warning("module %d has 0 units: it keeps the kernel's minimum quota", j)
        cpus = units * self.unit_cpu
        self.tree.set_cap(f"m{j}", cpus, self.period_us)
        self._quota_log[j].append((now, cpus))

    def _cap_seconds(self, j: int, start: float, end: float) -> float:
        """CPU-seconds module ``j``'s cap allowed in ``[start, end)``."""
        log = self._quota_log[j]
        total = 0.0
        for i, (t, cpus) in enumerate(log):
            nxt = log[i + 1][0] if i + 1 < len(log) else math.inf
            lo, hi = max(t, start), min(nxt, end)
            if hi > lo:
                total += cpus * (hi - lo)
        keep = [i for i, (t, _) in enumerate(log) if t <= start]  # drop what ended before start
        if len(keep) > 1:
            del log[: keep[-1]]
        return total

    # -- measurement --------------------------------------------------------------------------
    def _measure(self, k: int) -> None:
        """Wait for the end of interval ``k``, then collect and publish its telemetry."""
        p = self.params
        end = self.t0 + (k + 1) * self.tick_wall
        late = time.monotonic() - end
        if late > 0.5 * self.tick_wall:
            logger.warning("interval %d measured %.2f s late: the controller is too slow", k, late)
        time.sleep(max(0.0, end - time.monotonic()))
        if self.loadgen is not None and self.loadgen.proc.poll() not in (None, 0):
            raise BackendError(
                f"the load generator exited with code {self.loadgen.proc.returncode}"
            )
        for w in self.workers:
            w.send({"cmd": "stats", "k": k})
        replies, gone = _wait_replies(
            self.workers, lambda msg: msg.get("k") == k, time.monotonic() + self.stats_timeout
        )
        start = self.t0 + k * self.tick_wall
        met = {key: np.full(p.num_modules, np.nan) for key in self._metrics}
        missing = np.ones(p.num_modules, dtype=bool)
        rows = []
        for j in range(p.num_modules):
            rep = replies.get(j)
            if rep is None:
                dead = j in gone or self.workers[j].proc.poll() is not None
                logger.warning("interval %d: no stats from worker %d (%s)", k, j,
                               "exited" if dead else "timeout")  # fmt: skip
                if dead:
                    self._restart(j)
                rows.append(None)
                continue
            missing[j] = False
            arrived, ok, late_n, dropped = (rep[f] for f in FIELDS[:4])
            completed, resolved = ok + late_n, ok + late_n + dropped
            cap = self._cap_seconds(j, start, end)
            met["demand"][j] = arrived
            met["attainment"][j] = (
                ok / resolved
                if resolved
                else (1.0 if arrived == 0 and rep["backlog"] == 0 else 0.0)
            )
            met["error_rate"][j] = dropped / resolved if resolved else 0.0
            if completed:
                met["latency"][j] = rep["latency_sum"] / completed * self.scale
                self._cost_seen[j] = 0.7 * self._cost_seen[j] + 0.3 * rep["busy"] / completed
            elif dropped or arrived:
                met["latency"][j] = float(self.request_timeout[j])
            else:
                met["latency"][j] = 1.0 / float(p.service_rate[j])
            met["utilization"][j] = min(1.0, rep["busy"] / cap) if cap > 0 else 1.0
            met["reported_need"][j] = (
                arrived * p.servers_per_request[j] * self._cost_seen[j] / self.cost[j]
            )
            rows.append({key: rep[key] for key in ("arrived", "ok", "late", "dropped",
                                                   "latency_sum", "busy", "backlog")})  # fmt: skip
        self._metrics, self._missing = met, missing
        self.records.append({
            "tick": k, "alloc": self.alloc.tolist(), "incoming": self.transit.sum(axis=0).tolist(),
            "modules": rows, "attainment": met["attainment"].tolist(),
        })  # fmt: skip

    def _restart(self, j: int) -> None:
        if self.restarts >= MAX_RESTARTS:
            raise BackendError(f"worker {j} died and {MAX_RESTARTS} restarts are used up")
        self.restarts += 1
        old = self.workers[j]
        old.stop(0.5)
        child = self._spawn_worker(j)
        self.workers[j] = child
        ready, _ = _wait_replies([child], lambda msg: "ready" in msg, time.monotonic() + 10)
        if not ready:
            raise BackendError(f"worker {j} could not be restarted")
        child.send({"cmd": "start", "t0": self.t0, "tick": self.tick_wall})
        logger.warning("worker %d restarted (exit code %s)", j, old.proc.returncode)

    # -- ResourceBackend ----------------------------------------------------------------------
    def telemetry(self) -> Telemetry:
        """Metrics of the last measured interval; allocations as they are now (fresh arrays)."""
        p = self.params
        incoming = self.transit.sum(axis=0)
        pool = int(p.pool_units[0])
        return Telemetry(
            tick=np.array([self.t], dtype=np.int64),
            hour=np.array([(self.start_hour + self.t * p.tick_seconds / 3600.0) % 24.0]),
            demand=self._metrics["demand"][None].copy(),
            utilization=self._metrics["utilization"][None].copy(),
            latency=self._metrics["latency"][None].copy(),
            error_rate=self._metrics["error_rate"][None].copy(),
            attainment=self._metrics["attainment"][None].copy(),
            reported_need=self._metrics["reported_need"][None].copy(),
            confidence=np.where(self._missing, np.nan, self.confidence)[None],
            missing=self._missing[None].copy(),
            alloc=self.alloc[None, :, None].copy(),
            incoming=incoming[None, :, None].astype(np.int64),
            capacity=np.array([[pool]], dtype=np.int64),
            free=np.array([[pool - int(self.alloc.sum()) - int(incoming.sum())]], dtype=np.int64),
        )

    def move(self, src: int, dst: int, kind: int, units: int) -> int:
        """Take up to ``units`` from ``src``'s cap now; they reach ``dst`` after the warm-up."""
        self._check_open()
        m = self.params.num_modules
        if not (0 <= src < m and 0 <= dst < m and kind == 0):
            raise ValueError(f"move({src}, {dst}, {kind}, {units}): modules are 0..{m - 1}, "
                             "kind must be 0 (cpu)")  # fmt: skip
        u = min(int(units), int(self.alloc[src]))
        if u <= 0 or src == dst:
            return 0
        self.alloc[src] -= u
        try:
            self._set_cap(src, time.monotonic())
        except OSError as err:
            self.alloc[src] += u
            raise BackendError(f"could not lower the cap of module {src}: {err}") from err
        self.transit[-1, dst] += u
        self.units_moved += u
        self.moves += 1
        self._save()
        logger.debug("tick %d: moved %d units %d -> %d", self.t, u, src, dst)
        return u

    def advance(self) -> None:
        """Land units whose warm-up ended, let the next interval run to its end, measure it."""
        self._check_open()
        if self.done:
            raise BackendError(f"the replayed episode is over ({self.params.episode_ticks} ticks)")
        arriving = self.transit[0].copy()
        self.transit[:-1] = self.transit[1:]
        self.transit[-1] = 0
        now = time.monotonic()
        for j in np.flatnonzero(arriving):
            self.alloc[j] += arriving[j]
            try:
                self._set_cap(int(j), now)
            except OSError as err:  # the units are counted as serving; retry at next advance
                logger.error("could not raise the cap of module %d: %s", j, err)
        self._measure(self.t + 1)
        self.t += 1
        self._save()

    # -- durable state ------------------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        return {"backend": "cgroup", "fingerprint": self.params.fingerprint(), "seed": self.seed,
                "tick_wall": self.tick_wall, "unit_cpu": self.unit_cpu}  # fmt: skip

    def _save(self) -> None:
        """The allocation, units in transit and the clock, atomically (after every change)."""
        if self.state_dir is None:
            return
        meta = {**self._meta(), "t": self.t, "units_moved": self.units_moved,
                "moves": self.moves}  # fmt: skip
        write_state(self.state_dir, meta, {"alloc": self.alloc, "transit": self.transit})

    def _load(self) -> bool:
        """Continue a saved episode: its allocation, transit and clock (the replayed episode
        pauses while no controller runs: its processes are the controller's children)."""
        assert self.state_dir is not None
        file = self.state_dir / STATE_FILE
        expect = {"alloc": self.alloc, "transit": self.transit}
        fields = {"backend": "str", "fingerprint": "str", "t": "count", "units_moved": "count",
                  "moves": "count"}  # fmt: skip
        try:
            saved = read_state(self.state_dir, expect, meta_fields=fields)
        except StateFileError as err:
            raise BackendStateError(str(err)) from None
        if saved is None:
            return False
        meta, arrays = saved
        if {k: meta.get(k) for k in self._meta()} != self._meta():
            raise BackendStateError(
                f"{file}: the saved cgroup backend ran {meta} but this one is {self._meta()}: "
                "use the state folder of this scenario, seed and clock"
            )
        alloc, transit, p = arrays["alloc"], arrays["transit"], self.params
        if (
            (alloc < 0).any() or (transit < 0).any()
            or int(alloc.sum() + transit.sum()) > int(p.pool_units[0])
            or meta["t"] > p.episode_ticks
        ):  # fmt: skip
            raise BackendStateError(
                f"{file}: allocation {alloc.tolist()} + transit {transit.sum(axis=0).tolist()} "
                f"at tick {meta['t']} breaks the pool of {int(p.pool_units[0])} units"
            )
        self.alloc[...] = alloc
        self.transit[...] = transit
        self.t, self.units_moved, self.moves = meta["t"], meta["units_moved"], meta["moves"]
        return True

    @property
    def tick(self) -> int:
        """Intervals run since the episode started (the backend's clock)."""
        return self.t

    def history(self) -> np.ndarray:
        """The schedule's demand before the episode, (history_ticks, modules)."""
        return self._history.copy()

    @property
    def done(self) -> bool:
        return self.t >= self.params.episode_ticks

    # -- results ------------------------------------------------------------------------------
    def summary(self, since_tick: int = 1) -> dict[str, Any]:
        """Totals over the measured intervals from ``since_tick`` (1: those under control)."""
        p = self.params
        totals = {f: np.zeros(p.num_modules) for f in FIELDS}
        goals = []
        for rec in self.records:
            if rec["tick"] < since_tick:
                continue
            for j, row in enumerate(rec["modules"]):
                if row is not None:
                    for f in FIELDS:
                        totals[f][j] += row[f]
            goals.append(float(np.nansum(np.array(rec["attainment"]) * p.value)))
        resolved = totals["ok"] + totals["late"] + totals["dropped"]
        completed = totals["ok"] + totals["late"]
        return {
            "ticks": len(goals),
            "requests": int(totals["arrived"].sum()),
            "resolved": int(resolved.sum()),
            "within_slo": int(totals["ok"].sum()),
            "late": int(totals["late"].sum()),
            "dropped": int(totals["dropped"].sum()),
            "share_within_slo": float(totals["ok"].sum() / max(resolved.sum(), 1)),
            "goal_attainment": float(np.mean(goals)) if goals else math.nan,
            "mean_latency_wall_ms": float(
                1e3 * totals["latency_sum"].sum() / max(completed.sum(), 1)
            ),
            "units_moved": self.units_moved,
            "moves": self.moves,
            "cpu_seconds": float(totals["busy"].sum()),
            "cost_per_request_ms": (1e3 * totals["busy"] / np.maximum(completed, 1)).tolist(),
            "per_module_within_slo": totals["ok"].astype(int).tolist(),
            "per_module_requests": totals["arrived"].astype(int).tolist(),
            "restarts": self.restarts,
        }

    def throttling(self) -> list[dict[str, int]]:
        """Each worker group's ``cpu.stat`` (periods, throttled periods, throttled time)."""
        if self.tree is None:
            return []
        return [self.tree.cpu_stat(f"m{j}") for j in range(self.params.num_modules)]

    # -- cleanup ------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise BackendError("the cgroup backend is closed")

    def close(self) -> None:
        """Stop the children and remove the cgroups (idempotent; safe after errors)."""
        if self._closed or os.getpid() != self._owner:  # a forked child must not clean up
            return
        self._closed = True
        import atexit

        atexit.unregister(self.close)
        children = [c for c in (self.loadgen, *self.workers) if c is not None]
        for c in children:  # ask all first, then wait: they exit in parallel
            with contextlib.suppress(OSError, ValueError):
                if c.proc.poll() is None and c.proc.stdin is not None:
                    c.proc.stdin.close()
        for c in children:
            try:
                c.stop()
            except Exception as err:  # keep cleaning up
                logger.error("could not stop %s %d: %s", c.role, c.pid, err)
        for r, w in self._pipes:
            for fd in (r, w):
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
        self._pipes = []
        if self.tree is not None:
            self.tree.remove()

    def __enter__(self) -> CgroupBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
