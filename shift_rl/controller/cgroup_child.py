"""The child processes of :class:`~shift_rl.controller.cgroup.CgroupBackend`: workers and the
load generator. Standard library only.

The backend starts each child with :func:`child_argv`: ``python -S`` loads this one file by
path, not the ``shift_rl`` package (whose imports take about a second and 100 MB) nor
site-packages, so a child starts in a few tens of milliseconds and stays small. Keep it that
way: no import outside the standard library (``tests/test_cgroup_modules.py`` checks).

- **worker**: one process per module, a single-threaded server. It takes requests from a pipe
  in arrival order and serves each with a fixed amount of CPU work (chained SHA-256,
  calibrated in the worker at start so that one request costs the ``cost`` CPU-seconds the
  backend asks for: ``unit_cpu * units_per_server / (service_rate * scale)``, so that one
  server's worth of units serves exactly the scenario's ``service_rate``). A request that has
  waited longer than ``timeout`` when it reaches the head of the queue is dropped unserved.
  The worker keeps per-interval buckets by timestamp (arrivals by their scheduled arrival
  time, completions and drops by when they happen), so a late stats request does not blur
  intervals; it measures its busy time with the thread's CPU clock;
- **load generator**: one process that sends each scheduled request to its module's pipe at
  its arrival instant: tick ``k`` carries ``counts[k][m]`` requests for module ``m`` at
  uniformly random instants of the interval (a Poisson process given the count; the instants
  come from ``seed``, so every policy replays the same arrivals). It exits at the end of the
  schedule; its pipes' end of file tells the workers.

Protocol. A child is started as ``<role> <json config>`` (:func:`main`); it then reads
commands as JSON lines on stdin and writes replies as JSON lines on stdout. End of stdin means
the parent is gone: the child exits (so children never outlive a killed backend). SIGINT is
ignored: the parent decides when children end.

- worker config: ``fd`` (read end of its request pipe), ``cost`` (CPU-seconds per request),
  ``slo`` and ``timeout`` (wall seconds). Once calibrated it replies ``{"ready": true,
  "iterations": n, "cost": s}`` (``s``: CPU-seconds one request of ``n`` iterations just
  took). Commands: ``{"cmd": "start", "t0": t, "tick": d}`` starts the interval clock
  (interval ``k`` is ``[t + k d, t + (k + 1) d)`` on the monotonic clock; requests wait until
  then); ``{"cmd": "stats", "k": k}`` replies ``{"k": k, "backlog": waiting requests,
  <FIELDS>: totals}`` over the buckets up to interval ``k`` and forgets them; ``{"cmd":
  "quit"}`` exits;
- load-generator config: ``fds`` (write ends, one per module), ``t0``, ``tick``, ``counts``
  (requests per tick and module), ``seed``. It takes no command: any line or the end of stdin
  stops it;
- requests on a worker's pipe: :data:`REQUEST`, the scheduled arrival time (monotonic clock)
  as one little-endian double. A full pipe (a worker far behind) drops the request in the
  load generator, which logs it to stderr.
"""

from __future__ import annotations

import collections
import hashlib
import json
import math
import os
import random
import select
import signal
import struct
import sys
import time

REQUEST = struct.Struct("<d")
"""One request on a worker's pipe: its scheduled arrival time."""

FIELDS = ("arrived", "ok", "late", "dropped", "latency_sum", "busy")
"""Bucket fields kept by a worker per interval, in the order of its buckets."""

_BOOT = (
    "import importlib.util as u, sys; "
    "s = u.spec_from_file_location('shift_rl.controller.cgroup_child', sys.argv[1]); "
    "m = u.module_from_spec(s); s.loader.exec_module(m); m.main(sys.argv[2:])"
)


def child_argv(role: str, cfg: dict) -> list[str]:
    """The command line of a child: this file alone under ``python -S``, then :func:`main`."""
    return [sys.executable, "-S", "-c", _BOOT, os.path.realpath(__file__), role, json.dumps(cfg)]


def work(iterations: int) -> bytes:
    """The CPU cost of one request: chained SHA-256 (pure CPU, no memory traffic, no I/O)."""
    h = b"shift_rl"
    for _ in range(iterations):
        h = hashlib.sha256(h).digest()
    return h


def calibrate(cost_seconds: float) -> int:
    """Iterations of :func:`work` that cost ``cost_seconds`` of CPU in this process.

    Measured with the thread's CPU clock, so neither CPU contention nor a cgroup cap distorts
    it; the best of three runs of >= 20 ms each (the least disturbed by cache misses).
    """
    n = 64
    while True:
        c0 = time.thread_time()
        work(n)
        if time.thread_time() - c0 >= 0.02 or n >= 1 << 24:
            break
        n *= 2
    best = math.inf
    for _ in range(3):
        c0 = time.thread_time()
        work(n)
        best = min(best, (time.thread_time() - c0) / n)
    return max(1, round(cost_seconds / max(best, 1e-9)))


class LineReader:
    """Newline-delimited JSON from a file descriptor, without blocking."""

    def __init__(self, fd: int) -> None:
        self.fd, self.buf = fd, b""

    def read(self) -> list[dict] | None:
        """Complete messages available now; None at end of file."""
        try:
            data = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return []
        if not data:
            return None
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        return [json.loads(line) for line in lines if line.strip()]


def send(msg: dict) -> None:
    """Write one reply line to stdout."""
    os.write(1, (json.dumps(msg) + "\n").encode())


def worker_main(cfg: dict) -> None:
    """Serve requests from the pipe ``cfg['fd']`` in arrival order until told to quit.

    Commands (one JSON object per line on stdin): ``start`` (the interval clock), ``stats``
    (report and forget the buckets up to interval ``k``), ``quit``. End of stdin = the parent
    is gone: exit. While requests wait it serves them; otherwise it sleeps in ``select``.
    """
    fd = int(cfg["fd"])
    os.set_blocking(fd, False)
    os.set_blocking(0, False)
    slo, timeout = float(cfg["slo"]), float(cfg["timeout"])
    iterations = calibrate(float(cfg["cost"]))
    c0 = time.thread_time()
    work(iterations)
    send({"ready": True, "iterations": iterations, "cost": time.thread_time() - c0})
    ctl = LineReader(0)
    pending: collections.deque[float] = collections.deque()
    buckets: dict[int, list[float]] = {}
    t0: float | None = None
    tick = 1.0
    partial = b""
    sources = [0, fd]

    def bucket(t: float) -> list[float]:
        k = max(0, int((t - t0) // tick)) if t0 is not None else 0
        b = buckets.get(k)
        if b is None:
            b = buckets[k] = [0.0] * len(FIELDS)
        return b

    while True:
        wait = 0.0 if pending and t0 is not None else 1.0
        ready, _, _ = select.select(sources, [], [], wait)
        if 0 in ready:
            msgs = ctl.read()
            if msgs is None:
                return
            for msg in msgs:
                cmd = msg.get("cmd")
                if cmd == "quit":
                    return
                if cmd == "start":
                    t0, tick = float(msg["t0"]), float(msg["tick"])
                elif cmd == "stats":
                    k = int(msg["k"])
                    out = [0.0] * len(FIELDS)
                    for key in [key for key in buckets if key <= k]:
                        out = [a + b for a, b in zip(out, buckets.pop(key), strict=True)]
                    send({"k": k, "backlog": len(pending), **dict(zip(FIELDS, out, strict=True))})
        if fd in ready:
            try:
                data = os.read(fd, 1 << 16)
            except BlockingIOError:
                data = None
            if data == b"":  # the load generator finished
                sources.remove(fd)
            elif data:
                partial += data
                n = len(partial) // REQUEST.size
                for (t,) in REQUEST.iter_unpack(partial[: n * REQUEST.size]):
                    pending.append(t)
                    bucket(t)[0] += 1
                partial = partial[n * REQUEST.size :]
        if pending and t0 is not None:
            arrived = pending.popleft()
            now = time.monotonic()
            if now - arrived > timeout:  # shed: it waited too long to be worth serving
                bucket(now)[3] += 1
                continue
            c0 = time.thread_time()
            work(iterations)
            busy = time.thread_time() - c0
            done = time.monotonic()
            b = bucket(done)
            b[1 if done - arrived <= slo else 2] += 1
            b[4] += done - arrived
            b[5] += busy


def loadgen_main(cfg: dict) -> None:
    """Send each scheduled request to its module's pipe at its arrival instant, then exit.

    Sleeps in ``select`` on stdin between arrivals (so it notices the parent's end at once). A
    full pipe (a worker far behind) drops the request here and logs it.
    """
    fds = [int(f) for f in cfg["fds"]]
    for f in fds:
        os.set_blocking(f, False)
    t0, tick = float(cfg["t0"]), float(cfg["tick"])
    first = int(cfg.get("first", 0))  # a resumed episode starts here (earlier ticks are past)
    rng = random.Random(int(cfg["seed"]))
    lost = [0] * len(fds)
    for k, row in enumerate(cfg["counts"]):
        events = sorted(
            (t0 + (k + rng.random()) * tick, m) for m, n in enumerate(row) for _ in range(int(n))
        )  # drawn for every tick, so tick k's instants do not depend on where a run started
        if k < first:
            continue
        for t, m in events:
            delay = t - time.monotonic()
            if delay > 0.0005:
                ready, _, _ = select.select([0], [], [], delay)
                if ready:  # a line (quit) or end of file (parent gone): stop either way
                    return
            try:
                os.write(fds[m], REQUEST.pack(t))
            except (BlockingIOError, BrokenPipeError):
                lost[m] += 1
        if any(lost):
            print(f"shift_rl loadgen: tick {k}: pipe full, lost {lost}", file=sys.stderr)
            lost = [0] * len(fds)


def main(argv: list[str]) -> None:
    """Entry point of a child process: ``<role> <json config>``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when children end
    role, cfg = argv[0], json.loads(argv[1])
    {"worker": worker_main, "loadgen": loadgen_main}[role](cfg)
