"""The runtime controller: parity with the env, crash safety, faults, modes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shift_rl.agents import make_policy
from shift_rl.controller import Crash, ShiftController, SimulatedBackend
from shift_rl.controller.backend import BackendError
from shift_rl.controller.journal import JsonLines
from shift_rl.env import ResourceShiftEnv
from shift_rl.evaluate import run_episode


def _units(be: SimulatedBackend) -> np.ndarray:
    sim = be.sim
    return (
        sim.alloc.sum(axis=1) + sim.transit.sum(axis=(1, 2)) + sim.failed.sum(axis=(1, 2))
        + sim.free
    )[0]  # fmt: skip


@pytest.mark.parametrize("policy", ["potential", "hpa", "proportional"])
def test_controller_reproduces_the_env_episode(policy: str) -> None:
    env = ResourceShiftEnv("default")
    expected = run_episode(env, make_policy(policy, env.params), policy, 0, 11)
    be = SimulatedBackend("default", seed=11)
    ctl = ShiftController(make_policy(policy, be.params), be, interval=0)
    records = ctl.run(env.params.episode_ticks)
    assert sum(r.reward for r in records) == pytest.approx(expected.ret, abs=1e-9)
    assert (
        sum(r.shift[3] for r in records if r.shift)
        + sum(rb[3] for r in records for rb in r.rollbacks)
        == expected.units_moved
    )


STAGES = ["intent", "moved", "applied", "registered", "state_saved"]


@pytest.mark.parametrize("stage", STAGES)
def test_killed_at_any_journal_step_loses_nothing_and_repeats_nothing(tmp_path, stage) -> None:
    be = SimulatedBackend("default", seed=3)
    pool = _units(be).copy()
    policy = make_policy("potential", be.params)
    seen = {"n": 0, "crashes": 0}

    def hook(at: str) -> None:
        if at == stage:
            seen["n"] += 1
            if seen["n"] in (2, 4, 7):  # kill it three times, at different moments
                seen["crashes"] += 1
                raise Crash(at)

    def start() -> ShiftController:
        while True:
            try:
                return ShiftController(policy, be, interval=0, state_dir=tmp_path, hook=hook)
            except Crash:
                continue

    ctl = start()
    while ctl.tick_no < 400:
        try:
            ctl.tick()
        except Crash:
            ctl.close()
            ctl = start()
        np.testing.assert_array_equal(_units(be), pool)
    assert seen["crashes"] == 3
    entries = JsonLines.read(tmp_path / "journal.jsonl")
    outcomes = [e for e in entries if e["event"] in ("applied", "aborted")]
    ids = [e["id"] for e in outcomes]
    assert len(ids) == len(set(ids)), "a shift was resolved twice"
    intents = {e["id"] for e in entries if e["event"] == "intent"}
    assert intents == set(ids), "every intent is resolved"
    # the backend moved exactly the applied shifts: replay them from the initial allocation
    applied = [e for e in outcomes if e["event"] == "applied"]
    assert applied, "the run made shifts"
    # a kill between intent and outcome is resolved on restart from the backend's allocation
    recovered = {e["event"] for e in outcomes if e.get("recovered")}
    expected = {"intent": {"aborted"}, "moved": {"applied"}}.get(stage, set())
    assert recovered == expected


def test_backend_failing_mid_move_is_resolved_and_backs_off(tmp_path) -> None:
    class Flaky(SimulatedBackend):
        fail_moves = 2

        def move(self, src, dst, kind, units):
            if self.fail_moves > 0:
                self.fail_moves -= 1
                if self.fail_moves == 0:  # the move happened, then the call failed
                    super().move(src, dst, kind, units)
                raise BackendError("timeout")
            return super().move(src, dst, kind, units)

    be = Flaky("default", seed=1)
    pool = _units(be).copy()
    ctl = ShiftController(make_policy("potential", be.params), be, interval=0, state_dir=tmp_path)
    records = ctl.run(200)
    np.testing.assert_array_equal(_units(be), pool)
    entries = JsonLines.read(tmp_path / "journal.jsonl")
    events = [e["event"] for e in entries]
    assert "aborted" in events and "applied" in events
    assert any(r.held == "backend back-off" for r in records)


def test_telemetry_failure_holds_and_the_loop_goes_on() -> None:
    class Blind(SimulatedBackend):
        def telemetry(self):
            if 20 <= int(self.sim.t[0]) < 25:
                raise BackendError("metrics endpoint down")
            return super().telemetry()

    be = Blind("default", seed=2)
    records = ShiftController(make_policy("potential", be.params), be, interval=0).run(60)
    assert len(records) == 60
    assert any(r.held and "backend error" in r.held for r in records)


@pytest.mark.parametrize("bad", ["nan", "out_of_range", "raises", "wrong_shape"])
def test_a_broken_policy_falls_back_to_potential(bad: str) -> None:
    class Broken:
        name = "broken"

        def reset(self) -> None:
            pass

        def act(self, obs, mask=None):
            if bad == "raises":
                raise RuntimeError("boom")
            return {
                "nan": np.array([np.nan, 1, 0]),
                "out_of_range": np.array([0, 99, 0]),
                "wrong_shape": np.array([1, 2]),
            }[bad]

    be = SimulatedBackend("default", seed=4)
    records = ShiftController(Broken(), be, interval=0).run(100)
    assert all(r.source.startswith("fallback") for r in records if r.held is None)
    assert any(r.shift for r in records), "the fallback still shifts"


def test_missing_telemetry_holds_shifts_of_that_module(tmp_path) -> None:
    class Gappy(SimulatedBackend):
        def telemetry(self):
            tel = super().telemetry()
            tel.missing = tel.missing.copy()
            tel.missing[0, 0] = True
            for name in ("demand", "utilization", "attainment", "latency", "error_rate"):
                arr = getattr(tel, name).copy()
                arr[0, 0] = np.nan
                setattr(tel, name, arr)
            return tel

    class AlwaysModule0:
        name = "m0"

        def reset(self) -> None:
            pass

        def act(self, obs, mask=None):
            return np.array([3, 0, 1])

    be = Gappy("default", seed=4)
    records = ShiftController(AlwaysModule0(), be, interval=0).run(30)
    assert all(r.shift is None for r in records)
    assert any(r.held == "missing telemetry" for r in records)


def test_shadow_mode_moves_nothing_and_logs_potential(tmp_path) -> None:
    be = SimulatedBackend("default", seed=5)
    before = be.sim.alloc.copy()
    ctl = ShiftController(make_policy("hpa", be.params), be, interval=0, mode="shadow",
                          state_dir=tmp_path)  # fmt: skip
    records = ctl.run(120)
    ctl.close()
    np.testing.assert_array_equal(be.sim.alloc, before)
    assert any(r.status == "shadow" for r in records)
    audit = JsonLines.read(tmp_path / "audit.jsonl")
    assert len(audit) == 120 and all(a["shadow_potential"] is not None for a in audit)


def test_kill_switch_file_stops_all_shifting(tmp_path) -> None:
    be = SimulatedBackend("default", seed=6)
    ctl = ShiftController(make_policy("potential", be.params), be, interval=0, state_dir=tmp_path)
    (tmp_path / "HOLD").touch()
    held = ctl.run(80)
    assert all(r.shift is None and r.held == "kill switch" for r in held)
    assert all(r.goal_attainment is not None for r in held), "telemetry keeps flowing"
    (tmp_path / "HOLD").unlink()
    assert any(r.shift for r in ctl.run(80))


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0
        self.slept: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += max(seconds, 0.0)


def test_injected_clock_paces_the_loop_without_sleeping() -> None:
    be = SimulatedBackend("default", seed=7)
    clock = FakeClock()
    ShiftController(make_policy("static", be.params), be, interval=60.0, clock=clock).run(5)
    assert len(clock.slept) == 5 and all(55.0 < s <= 60.0 for s in clock.slept)
    assert clock.t == pytest.approx(5 * 60.0, abs=5.0)


def test_state_of_another_scenario_is_refused(tmp_path) -> None:
    be = SimulatedBackend("default", seed=8)
    ShiftController(make_policy("static", be.params), be, interval=0, state_dir=tmp_path).close()
    other = SimulatedBackend("faults", seed=8)
    with pytest.raises(ValueError, match="another scenario"):
        ShiftController(make_policy("static", other.params), other, interval=0,
                        state_dir=tmp_path)  # fmt: skip


def test_cli_log_has_one_line_per_tick_and_shows_what_shadow_would_do(tmp_path) -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, str(root / "scripts" / "controller.py"), "--policy", "hpa",
         "--mode", "shadow", "--ticks", "30", "--state-dir", str(tmp_path / "ctl")],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "\r" not in out.stdout  # stdout is a pipe: plain lines, no live line
    ticks = [ln for ln in out.stdout.splitlines() if ln.startswith("tick ")]
    assert len(ticks) == 30 and all("potential proposes" in ln for ln in ticks)
    assert any("would shift" in ln and "would shift nothing" not in ln for ln in ticks)
    assert "| units moved | 0 (shadow) |" in out.stdout
    would = [ln for ln in out.stdout.splitlines() if "units that would have moved" in ln]
    assert would and int(would[0].split("|")[2]) > 0
    assert "| shifts | " not in out.stdout
    # a folder holding someone else's files is refused as the state dir
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.md").write_text("x")
    bad = subprocess.run(
        [sys.executable, str(root / "scripts" / "controller.py"), "--policy", "hpa",
         "--ticks", "2", "--state-dir", str(mine)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert bad.returncode == 2 and "notes.md" in bad.stderr
    assert sorted(p.name for p in mine.iterdir()) == ["notes.md"]
