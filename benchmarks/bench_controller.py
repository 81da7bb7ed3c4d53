"""Controller decision cost per tick (backend I/O excluded) and the runtime import time.

    python benchmarks/bench_controller.py [--policy agents/ppo-default] [--ticks 2000]

The backend here replays recorded telemetry and accepts moves without doing anything, so the
figure is the controller's own work: telemetry handling, guard judgement and mask, forecast and
reputation updates, the observation, the policy's decision and the clip. No state directory
(no journal fsyncs). The import time is that of the runtime path (controller + exported policy
loader, no torch), minus a bare interpreter start, median of 5.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

from shift_rl.agents import make_policy
from shift_rl.controller import ShiftController, SimulatedBackend


class ReplayBackend:
    """Serves telemetry recorded from a simulated episode; moves are accepted and ignored."""

    def __init__(self, scenario: str, ticks: int) -> None:
        sim = SimulatedBackend(scenario, seed=0)
        self.params = sim.params
        self._history = sim.history()
        self.frames = []
        for _ in range(min(ticks, sim.params.episode_ticks - 1)):
            self.frames.append(copy.deepcopy(sim.telemetry()))
            sim.advance()
        self.i = 0

    def telemetry(self):
        return self.frames[self.i % len(self.frames)]

    def move(self, src: int, dst: int, kind: int, units: int) -> int:
        return units

    def advance(self) -> None:
        self.i += 1

    @property
    def tick(self) -> int:
        return self.i

    def history(self) -> np.ndarray:
        return self._history


def _import_seconds(code: str) -> float:
    runs = []
    for _ in range(5):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def _load(folder: str):
    from shift_rl.runtime import load_policy

    return load_policy(folder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--policy", default="agents/ppo-default", help="policy folder or name")
    ap.add_argument("--scenario", default="default")
    ap.add_argument("--ticks", type=int, default=2000)
    ap.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall (default) or this thread's CPU time (steadier on a shared machine)",
    )
    ap.add_argument("--skip-import", action="store_true", help="do not time the runtime import")
    args = ap.parse_args()
    clock = time.perf_counter if args.clock == "wall" else time.thread_time
    backend = ReplayBackend(args.scenario, 700)
    policies = {
        "exported PPO": _load(args.policy) if os.path.isdir(args.policy) else None,
        "potential": make_policy("potential", backend.params),
        "static": make_policy("static", backend.params),
    }
    print(f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} cores")
    print(f"scenario {args.scenario} ({backend.params.num_modules} modules), {args.ticks} ticks\n")
    print("| policy | us / tick (median of 5 runs) |\n|---|---:|")
    for name, policy in policies.items():
        if policy is None:
            continue
        ctl = ShiftController(policy, backend, interval=0)
        ctl.run(200)  # warm-up: compilation, caches
        runs = []
        for _ in range(5):
            t = clock()
            for _ in range(args.ticks):
                ctl.tick()
            runs.append((clock() - t) / args.ticks * 1e6)
        print(f"| {name} | {statistics.median(runs):.0f} |")
    if args.skip_import:
        return
    bare = _import_seconds("pass")
    runtime = _import_seconds(
        "import shift_rl.controller, shift_rl.runtime, sys; assert 'torch' not in sys.modules"
    )
    print(f"\nimport of the runtime path (no torch): {runtime - bare:.2f} s "
          f"(interpreter start {bare:.2f} s excluded)")  # fmt: skip


if __name__ == "__main__":
    main()
