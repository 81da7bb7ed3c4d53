"""The runtime controller: parity with the env, crash safety, faults, modes, plans."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from shift_rl.agents import make_policy
from shift_rl.config import load_scenario
from shift_rl.controller import Crash, ShiftController, SimulatedBackend
from shift_rl.controller.backend import BackendError
from shift_rl.controller.journal import JsonLines
from shift_rl.env import ResourceShiftEnv
from shift_rl.evaluate import run_episode

from .plan_policies import FixedPlan, RandomPlans


def _units(be: SimulatedBackend) -> np.ndarray:
    sim = be.sim
    return (
        sim.alloc.sum(axis=1) + sim.transit.sum(axis=(1, 2)) + sim.failed.sum(axis=(1, 2))
        + sim.free
    )[0]  # fmt: skip


def _make(policy: str, params):
    return RandomPlans(params) if policy == "random-plans" else make_policy(policy, params)


@pytest.mark.parametrize(
    ("policy", "seed"),
    [("potential", 11), ("hpa", 11), ("proportional", 11), ("random-plans", 11),
     ("random-plans", 2)],  # seed 2: a rollback judged after the last interval
)  # fmt: skip
def test_controller_reproduces_the_env_episode(policy: str, seed: int) -> None:
    env = ResourceShiftEnv("default")
    expected = run_episode(env, _make(policy, env.params), policy, 0, seed)
    be = SimulatedBackend("default", seed=seed)
    ctl = ShiftController(_make(policy, be.params), be, interval=0)
    records = ctl.run(env.params.episode_ticks)
    assert all(r.source == "policy" for r in records)
    assert sum(r.reward for r in records) == pytest.approx(expected.ret, abs=1e-9)
    assert (
        sum(r.units for r in records) + sum(rb[3] for r in records for rb in r.rollbacks)
        == expected.units_moved
    )
    if policy == "random-plans":  # plans of several shifts, and rollbacks, were reproduced
        assert max(len(r.shifts) for r in records) >= 2
        assert sum(len(r.rollbacks) for r in records) > 0
    if seed == 2:
        assert records[-1].rollbacks, "the rollback after the last interval was executed"


STAGES = ["intent", "moved", "applied", "registered", "state_saved"]


@pytest.mark.parametrize("policy", ["potential", "random-plans"])
@pytest.mark.parametrize("stage", STAGES)
def test_killed_at_any_journal_step_loses_nothing_and_repeats_nothing(
    tmp_path, stage, policy
) -> None:
    be = SimulatedBackend("default", seed=3)
    pool = _units(be).copy()
    policy = _make(policy, be.params)
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


class Recording(SimulatedBackend):
    """Records, per move, the tick and what the source holds after it."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.moves: list[tuple[int, int, int, int]] = []  # tick, src, kind, src units after

    def move(self, src, dst, kind, units):
        moved = super().move(src, dst, kind, units)
        self.moves.append((self.tick, src, kind, int(self.sim.alloc[0, src, kind])))
        return moved


def _by_tick(entries: list[dict], reason: str = "shift") -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    for e in entries:
        if e["reason"] == reason:
            out.setdefault(e["tick"], []).append(e)
    return out


def test_a_plan_journals_one_intent_and_outcome_per_shift_in_plan_order(tmp_path) -> None:
    be = Recording("default", seed=5)
    ctl = ShiftController(RandomPlans(be.params), be, interval=0, state_dir=tmp_path)
    records = ctl.run(200)
    ctl.close()
    entries = JsonLines.read(tmp_path / "journal.jsonl")
    ticks = _by_tick(entries)
    plans = {r.tick: r.shifts for r in records if r.shifts}
    assert sum(len(p) >= 2 for p in plans.values()) >= 3, "plans of several shifts were made"
    assert set(ticks) == set(plans)
    for tick, shifts in plans.items():
        events = ticks[tick]
        # intent, applied, intent, applied, ...: each shift written ahead of its move
        assert [e["event"] for e in events] == ["intent", "applied"] * len(shifts)
        intents, applied = events[0::2], events[1::2]
        assert [[e["src"], e["dst"], e["kind"], e["units"]] for e in applied] == shifts
        assert [a["id"] for a in applied] == [i["id"] for i in intents]
        assert all(i["id"] < j["id"] for i, j in itertools.pairwise(intents))
        modules = [m for e in intents for m in (e["src"], e["dst"])]
        assert len(modules) == len(set(modules)), "a module in two shifts of one plan"
    # every intent expects what its own source holds after its own move, nothing more
    intents = [e for e in entries if e["event"] == "intent"]
    assert len(intents) == len(be.moves)
    for e, (tick, src, kind, after) in zip(intents, be.moves, strict=True):
        assert (e["tick"], e["src"], e["kind"]) == (tick, src, kind)
        assert e["expected_src_after"] == after
    # the audit log carries the plans
    audit = JsonLines.read(tmp_path / "audit.jsonl")
    assert {a["tick"]: a["shifts"] for a in audit if a["shifts"]} == plans


def _crash_between_shifts(tmp_path: Path, stage: str) -> None:
    """Kill the controller at ``stage`` of the second shift of the first plan of several
    shifts; start it again; check the first shift applied and the second resolved."""
    be = SimulatedBackend("default", seed=5)
    pool = _units(be).copy()
    policy = RandomPlans(be.params)
    box: dict = {"crashed": None}

    def hook(at: str) -> None:
        ctl = box.get("ctl")
        if at != stage or box["crashed"] is not None or ctl is None:
            return
        tail = list(ctl.journal.state.tail)
        last, before = tail[-1], tail[-2] if len(tail) > 1 else None
        if (
            last["event"] == "intent" and last["reason"] == "shift" and before is not None
            and before["event"] == "applied" and before["reason"] == "shift"
            and before["tick"] == last["tick"]
        ):  # fmt: skip
            box["crashed"] = (before, last)
            raise Crash(at)

    box["ctl"] = ctl = ShiftController(policy, be, interval=0, state_dir=tmp_path, hook=hook)
    with pytest.raises(Crash):
        while ctl.tick_no < 400:
            ctl.tick()
    ctl.close()
    first, second = box["crashed"]
    np.testing.assert_array_equal(_units(be), pool)
    box["ctl"] = ctl = ShiftController(policy, be, interval=0, state_dir=tmp_path, hook=hook)
    entries = JsonLines.read(tmp_path / "journal.jsonl")
    outcome = {e["id"]: e for e in entries if e["event"] != "intent"}
    assert outcome[first["id"]]["event"] == "applied" and "recovered" not in outcome[first["id"]]
    resolved = outcome[second["id"]]
    assert resolved["recovered"] is True
    assert resolved["event"] == ("aborted" if stage == "intent" else "applied")
    held = be.sim.alloc[0, second["src"], second["kind"]]
    assert (held == second["expected_src_after"]) == (resolved["event"] == "applied")
    # both applied shifts are registered again: locked, judged against their own baselines
    guard, tick = ctl.core.guard, first["tick"]
    for e in (first, second) if resolved["event"] == "applied" else (first,):
        for m in (e["src"], e["dst"]):
            assert guard.lock_until[0, m] > tick
            assert guard.baseline[0, m] == pytest.approx(e["baseline"])
    if resolved["event"] == "aborted":
        assert guard.lock_until[0, second["src"]] <= tick or guard.partner[0, second["src"]] < 0
    # the journal replayed from the start gives what the backend holds
    held_now = be.params.initial_alloc.copy()
    for e in entries:
        if e["event"] == "applied":
            held_now[e["src"], e["kind"]] -= e["units"]
            held_now[e["dst"], e["kind"]] += e["units"]
    sim = be.sim
    np.testing.assert_array_equal(held_now, sim.alloc[0] + sim.transit[0].sum(axis=0))
    # and the loop goes on, conserving units, every intent resolved
    ctl.run(100)
    ctl.close()
    np.testing.assert_array_equal(_units(be), pool)
    entries = JsonLines.read(tmp_path / "journal.jsonl")
    intents = {e["id"] for e in entries if e["event"] == "intent"}
    assert intents == {e["id"] for e in entries if e["event"] != "intent"}


@pytest.mark.parametrize("stage", ["intent", "moved"])
def test_a_crash_between_two_shifts_of_a_plan_recovers_each_shift(tmp_path, stage) -> None:
    _crash_between_shifts(tmp_path, stage)


def test_a_move_failing_mid_plan_stops_the_plan_and_backs_off(tmp_path) -> None:
    class FailSecond(SimulatedBackend):
        """The second move of the first tick with two fails, before moving."""

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.calls: list[int] = []

        def move(self, src, dst, kind, units):
            self.calls.append(self.tick)
            if self.calls.count(self.tick) == 2 and not getattr(self, "failed", False):
                self.failed = self.tick
                raise BackendError("timeout")
            return super().move(src, dst, kind, units)

    be = FailSecond("default", seed=5)
    pool = _units(be).copy()
    ctl = ShiftController(RandomPlans(be.params), be, interval=0, state_dir=tmp_path)
    records = ctl.run(120)
    ctl.close()
    np.testing.assert_array_equal(_units(be), pool)
    failed = next(r for r in records if r.status == "failed")
    assert failed.tick == be.failed and len(failed.shifts) == 1, "the first shift stays done"
    entries = [e for e in JsonLines.read(tmp_path / "journal.jsonl") if e["tick"] == be.failed]
    shifts = [e for e in entries if e["reason"] == "shift"]
    assert [e["event"] for e in shifts] == ["intent", "applied", "intent", "aborted"], (
        "the rest of the plan is not executed"
    )
    after = [r for r in records if r.tick > failed.tick]
    assert after[0].held == "backend back-off" and any(r.shifts for r in after)


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


@pytest.mark.parametrize(
    "bad",
    ["nan", "fraction", "out_of_range", "negative", "raises", "wrong_shape", "too_long",
     "not_numbers"],
)  # fmt: skip
def test_a_broken_policy_falls_back_to_potential(bad: str) -> None:
    class Broken:
        name = "broken"

        def reset(self) -> None:
            pass

        def act(self, obs, mask=None):
            if bad == "raises":
                raise RuntimeError("boom")
            noop = np.full(len(self.nvec), self.nvec[0] // 2)
            return {
                "nan": np.where(np.arange(noop.size) == 1, np.nan, noop),
                "fraction": noop + 0.5,
                "out_of_range": np.where(np.arange(noop.size) == 2, 99, noop),
                "negative": noop - noop.max() - 1,
                "wrong_shape": np.array([1, 2, 0]),  # a single shift, in plan mode
                "too_long": np.append(noop, 0),
                "not_numbers": np.array(["a"] * noop.size),
            }[bad]

    be = SimulatedBackend("default", seed=4)
    policy = Broken()
    policy.nvec = ShiftController(Broken(), be, interval=0).core.guard.action_nvec
    records = ShiftController(policy, be, interval=0).run(100)
    assert all(r.source.startswith("fallback") for r in records if r.held is None)
    assert any(r.shifts for r in records), "the fallback still shifts"


def test_a_valid_plan_of_floats_or_bools_is_accepted() -> None:
    be = SimulatedBackend("default", seed=4)
    plans = RandomPlans(be.params)

    class AsFloats:
        name = "floats"

        def reset(self) -> None:
            pass

        def act(self, obs, mask=None):
            return plans.act(obs, mask).astype(np.float32)

    records = ShiftController(AsFloats(), be, interval=0).run(30)
    assert all(r.source == "policy" for r in records)
    assert all(type(v) is int for r in records for v in r.proposal)
    assert any(r.shifts for r in records)


class Gappy(SimulatedBackend):
    """Module 0's telemetry is missing every tick."""

    def telemetry(self):
        tel = super().telemetry()
        tel.missing = tel.missing.copy()
        tel.missing[0, 0] = True
        for name in ("demand", "utilization", "attainment", "latency", "error_rate"):
            arr = getattr(tel, name).copy()
            arr[0, 0] = np.nan
            setattr(tel, name, arr)
        return tel


def test_missing_telemetry_excludes_the_module_and_the_rest_of_the_plan_runs(tmp_path) -> None:
    be = Gappy("default", seed=4)
    # module 0 and 2 offer 2 units, modules 1 and 3 ask for 2: without module 0, one shift
    plan = FixedPlan(be.params, {0: -2, 2: -2, 1: 2, 3: 2})
    ctl = ShiftController(plan, be, interval=0, state_dir=tmp_path)
    records = ctl.run(30)
    ctl.close()
    assert all(r.excluded == [0] for r in records if r.held is None)
    assert all(0 not in s[:2] for r in records for s in r.shifts), "module 0 stays out"
    done = [r for r in records if r.shifts]
    assert done and all(len(r.shifts) == 1 and r.shifts[0][0] == 2 for r in done)
    assert all(r.status == "clipped" for r in done), "executed in part: module 0's request"
    audit = JsonLines.read(tmp_path / "audit.jsonl")
    assert all(a["excluded"] == [0] for a in audit)
    # and random plans: module 0 never moves, the others do, several at once
    be = Gappy("default", seed=4)
    records = ShiftController(RandomPlans(be.params), be, interval=0).run(120)
    assert all(0 not in s[:2] for r in records for s in r.shifts)
    assert max(len(r.shifts) for r in records) >= 2


def test_missing_telemetry_in_single_shift_mode_leaves_the_module_out() -> None:
    cfg = load_scenario("default")
    cfg = cfg.model_copy(update={"action": cfg.action.model_copy(update={"mode": "shift"})})

    class Always:
        name = "always"

        def __init__(self, action: list[int]) -> None:
            self.action = np.array(action)

        def reset(self) -> None:
            pass

        def act(self, obs, mask=None):
            return self.action

    be = Gappy(cfg, seed=4)
    records = ShiftController(Always([3, 0, 1]), be, interval=0).run(30)
    assert all(r.source == "policy" and not r.shifts for r in records)
    assert all(r.excluded == [0] and r.status == "invalid" for r in records if r.held is None)
    be = Gappy(cfg, seed=4)
    records = ShiftController(Always([3, 1, 1]), be, interval=0).run(30)
    assert all(r.source == "policy" for r in records)
    assert any(r.shifts == [[3, 1, 0, 2]] for r in records), "other modules still shift"


def test_shadow_mode_moves_nothing_and_logs_potential(tmp_path) -> None:
    be = SimulatedBackend("default", seed=5)
    before = be.sim.alloc.copy()
    ctl = ShiftController(make_policy("hpa", be.params), be, interval=0, mode="shadow",
                          state_dir=tmp_path)  # fmt: skip
    records = ctl.run(120)
    ctl.close()
    np.testing.assert_array_equal(be.sim.alloc, before)
    assert any(r.status == "shadow" and r.shifts for r in records)
    assert all(not r.shifts for r in records if r.status != "shadow")
    audit = JsonLines.read(tmp_path / "audit.jsonl")
    assert len(audit) == 120 and all(a["shadow_potential"] is not None for a in audit)
    assert all(isinstance(a["shadow_potential_shifts"], list) for a in audit)
    assert any(a["shadow_potential_shifts"] for a in audit), "potential's plan is logged"
    assert not (tmp_path / "journal.jsonl").exists() or not JsonLines.read(
        tmp_path / "journal.jsonl"
    ), "nothing journaled: nothing moved"


def test_kill_switch_file_stops_all_shifting(tmp_path) -> None:
    be = SimulatedBackend("default", seed=6)
    ctl = ShiftController(make_policy("potential", be.params), be, interval=0, state_dir=tmp_path)
    (tmp_path / "HOLD").touch()
    held = ctl.run(80)
    assert all(not r.shifts and r.held == "kill switch" for r in held)
    assert all(r.goal_attainment is not None for r in held), "telemetry keeps flowing"
    (tmp_path / "HOLD").unlink()
    assert any(r.shifts for r in ctl.run(80))


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
