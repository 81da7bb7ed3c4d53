"""The controller survives SIGKILL at random moments against its backends.

``scripts/controller.py`` runs in active mode on a state dir, driven by the test-only
``random-plans`` policy (``python -m tests.plan_policies``): plans of several shifts per tick,
each shift its own journal intent, and rollbacks. The test kills it with SIGKILL at random
moments (after it has run at least one more interval, then a random delay) and starts it
again, 25 times per backend, then lets it finish the episode. (The cgroup scenario gets six
modules and one-tick windows here: with three, a plan holds one shift at most.) After every restart:

- the controller's allocation equals the backend's: the journal's applied moves, replayed
  from the initial allocation, give every module's units (serving + warming up) as the
  backend's saved state holds them (an intent in flight at the kill may count either way
  until the restart resolves it; after the last run none is open);
- units are conserved in the backend;
- no intent id is used twice, no intent is resolved twice (the journal reader refuses both);
- the episode's clock continues: the backend's tick and the audit log's ticks never go back.
"""

from __future__ import annotations

import gzip
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from shift_rl.config import load_scenario
from shift_rl.controller.cgroups import cgroup_support
from shift_rl.controller.journal import Journal, JsonLines
from shift_rl.controller.statefile import read_state
from shift_rl.scenario import ScenarioParams

from .conftest import ROOT

KILLS = 25


def _scenario(tmp: Path, base: str, ticks: int) -> Path:
    data = load_scenario(base).model_dump(mode="json")  # trace paths come out absolute
    data.update(name=f"{base}-crash", episode_ticks=ticks)
    if len(data["modules"]) < 6:  # room for several shifts in one plan
        # six modules of two units (the trace's six columns), windows of one tick and a
        # tick's budget for two shifts of the largest level: with three or four modules and
        # three-tick windows a whole episode held one or two plans of several shifts, too
        # few for the test to count on whatever the real backend's timing makes of the
        # random plans (about 16 in 150 ticks so)
        trace = data["demand"]["trace"]
        with gzip.open(trace["path"], "rt") as f:
            columns = f.readline().strip().split(",")[1:]
        for col in [c for c in columns if c not in trace["columns"]][: 6 - len(data["modules"])]:
            data["modules"].append({**data["modules"][1], "name": f"extra-{col}"})
            trace["columns"].append(col)
        pool = data["resources"][0]["units"]
        for m in data["modules"]:
            m["units"], m["floor"] = pool // len(data["modules"]), 1
        data["warmup_ticks"] = 0
        safety = data["safety"]
        safety["stabilization_ticks"] = 1
        safety["max_units_per_tick"] = max(safety["max_units_per_tick"],
                                           2 * safety["max_units_per_shift"])  # fmt: skip
    path = tmp / f"{base}-crash.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _start(scenario: Path, state: Path, backend: str, extra: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "tests.plan_policies", "--policy", "random-plans",
           "--backend", backend,
           "--scenario", str(scenario), "--mode", "active", "--ticks", "100000",
           "--state-dir", str(state), "--seed", "3", *extra]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)


def _audit_len(state: Path) -> int:
    try:
        with open(state / "audit.jsonl", "rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0


def _holdings_from_journal(records: list[dict], initial: np.ndarray) -> np.ndarray:
    held = initial.copy()
    for r in records:
        if r["event"] == "applied":
            held[r["src"], r["kind"]] -= r["units"]
            held[r["dst"], r["kind"]] += r["units"]
    return held


def _check(state: Path, params: ScenarioParams, backend: str, last: dict) -> dict:
    records = Journal.read(state / "journal.jsonl", num_modules=params.num_modules,
                           num_kinds=params.num_resources)  # fmt: skip
    intents = [r for r in records if r["event"] == "intent"]
    ids = [r["id"] for r in intents]
    assert len(ids) == len(set(ids)), "an intent id was used twice"
    outcomes = [r["id"] for r in records if r["event"] != "intent"]
    assert len(outcomes) == len(set(outcomes)), "an intent was resolved twice"
    open_ = [r for r in intents if r["id"] not in set(outcomes)]
    assert len(open_) <= 1, f"{len(open_)} intents in flight at once"

    if backend == "sim":
        saved = read_state(state / "backend", meta_fields={"fingerprint": "str"})
        assert saved is not None
        arrays = saved[1]
        alloc, transit = arrays["sim.alloc"][0], arrays["sim.transit"][0]
        held = alloc + transit.sum(axis=0)  # serving + warming up, per module and kind
        pool = alloc.sum(axis=0) + transit.sum(axis=(0, 1)) + arrays["sim.free"][0]
        pool = pool + arrays["sim.failed"][0].sum(axis=(0, 1))
        tick = int(arrays["sim.t"][0])
        np.testing.assert_array_equal(pool, params.pool_units, err_msg="units not conserved")
    else:
        saved = read_state(state / "backend", meta_fields={"t": "count"})
        assert saved is not None
        meta, arrays = saved
        held = (arrays["alloc"] + arrays["transit"].sum(axis=0))[:, None]
        free = int(params.pool_units[0]) - int(held.sum())
        assert free >= 0 and (held >= 0).all(), "units not conserved"
        tick = meta["t"]
    from_journal = _holdings_from_journal(records, params.initial_alloc)
    candidates = [from_journal]
    for r in open_:  # the move in flight at the kill: the restart decides which it was
        alt = from_journal.copy()
        alt[r["src"], r["kind"]] -= r["units"]
        alt[r["dst"], r["kind"]] += r["units"]
        candidates.append(alt)
    assert any(np.array_equal(held, c) for c in candidates), (
        f"backend holds {held.ravel().tolist()}, the journal says "
        f"{from_journal.ravel().tolist()} (open intents {open_})"
    )
    audit = JsonLines.read(state / "audit.jsonl")
    ticks = [a["tick"] for a in audit]
    assert ticks == sorted(ticks), "the audit log's clock went back"
    assert tick >= last.get("tick", 0), "the backend's clock went back"
    plans: dict[int, int] = {}
    for r in intents:
        if r["reason"] == "shift":
            plans[r["tick"]] = plans.get(r["tick"], 0) + 1
    return {"tick": tick, "applied": sum(r["event"] == "applied" for r in records),
            "open": len(open_), "multi": sum(n >= 2 for n in plans.values())}  # fmt: skip


def crash_loop(tmp_path: Path, backend: str, base: str, ticks: int, extra: list[str]) -> None:
    scenario = _scenario(tmp_path, base, ticks)
    params = ScenarioParams.from_config(load_scenario(scenario))
    state = tmp_path / "state"
    rng = random.Random(20261201)
    last: dict = {}
    kills = 0
    while kills < KILLS:
        proc = _start(scenario, state, backend, extra)
        # a random moment: after 1 to 4 more intervals, somewhere inside the next one (the
        # count, not a time, bounds how far each run gets, whatever the machine's speed)
        target = _audit_len(state) + rng.randint(1, 4)
        deadline = time.monotonic() + 120
        while _audit_len(state) < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)
        assert proc.poll() is None, f"controller exited early: {proc.stderr.read().decode()}"
        time.sleep(rng.uniform(0.0, 0.004 if backend == "sim" else 0.2))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
        last = _check(state, params, backend, last)
    proc = _start(scenario, state, backend, extra)  # let it finish the episode
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode()
    final = _check(state, params, backend, last)
    assert final["open"] == 0
    assert final["tick"] == ticks, "the episode did not run to its end"
    assert final["applied"] > 0, "no shift was applied: the test would be weak"
    assert final["multi"] > 0, "no plan of several shifts: the test would be weak"


def test_sigkill_25_times_simulated_backend(tmp_path: Path) -> None:
    crash_loop(tmp_path, "sim", "default", ticks=300, extra=["--interval", "0"])


@pytest.mark.skipif(cgroup_support() is not None, reason=f"cgroups: {cgroup_support()}")
def test_sigkill_25_times_cgroup_backend(tmp_path: Path) -> None:
    crash_loop(tmp_path, "cgroup", "cgroup", ticks=150,
               extra=["--interval", "0", "--tick-wall-seconds", "0.2"])  # fmt: skip
