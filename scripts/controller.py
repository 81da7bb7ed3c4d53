"""Run the shift loop: a policy driving a backend, with the env's safety rails.

    python scripts/controller.py --policy agents/ppo-default --backend sim --mode active \
        --ticks 720 --interval 0 --state-dir /tmp/ctl

--policy is an exported policy folder or a built-in name (potential, hpa, ...); its action is a
plan (the scenario's action.mode), which the guard matches into shifts, each journaled and
moved in turn. --mode shadow computes and logs the plan it would shift (next to potential's)
and moves nothing.
While the file <state-dir>/HOLD exists nothing moves (the kill switch). One line per tick (a
live line that rewrites itself on a terminal; a plain line each tick when stdout is a file or a
pipe), then a summary. --state-dir must be new, empty or a controller's earlier state folder.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path

from shift_rl.agents import policy_scenario, resolve_policy
from shift_rl.cli import positive_int, seconds
from shift_rl.config import ConfigError
from shift_rl.controller import BACKENDS, ShiftController, SimulatedBackend, TickRecord
from shift_rl.outputs import OutputError, claim_dir
from shift_rl.runtime import PolicyFileError

STATE_KIND = "controller state"
STATE_FILES = {"state.npz", "journal.jsonl", "audit.jsonl", "HOLD", "lock", "backend"}


def previous_state(folder: Path) -> list[str] | None:
    """A controller state folder from before output markers: only the controller's files
    (and the operator's HOLD file) in it."""
    names = {p.name for p in folder.iterdir() if not p.name.startswith(".")}
    return sorted(names - {"HOLD"}) if names and names <= STATE_FILES else None


SHOWN = 3
"""Shifts a tick's line names; the rest are counted."""


def _shifts(shifts: list[list[int]] | None, names: list[str], kinds: list[str]) -> str:
    """A plan's shifts in words: count and units, then the first few ``units kind src->dst``."""
    if not shifts:
        return "nothing"
    units = sum(s[3] for s in shifts)
    plural = ("s" if len(shifts) > 1 else "", "s" if units != 1 else "")
    words = [
        f"{u}{f' {kinds[k]}' if len(kinds) > 1 else ''} {names[s]}->{names[d]}"
        for s, d, k, u in shifts[:SHOWN]
    ]
    more = f", +{len(shifts) - SHOWN} more" if len(shifts) > SHOWN else ""
    return f"{len(shifts)} shift{plural[0]} ({units} unit{plural[1]}): {', '.join(words)}{more}"


def tick_line(rec: TickRecord, names: list[str], kinds: list[str]) -> str:
    """One tick in words: goal attainment, the plan's shifts (or what would shift), rollbacks,
    modules left out for missing telemetry, hold."""
    goal = f"{rec.goal_attainment:.3f}" if rec.goal_attainment is not None else "  -  "
    held = f" HOLD({rec.held})" if rec.held else ""
    out = f" excluded {len(rec.excluded)} (no telemetry)" if rec.excluded else ""
    if rec.mode == "shadow":
        mine = _shifts(rec.shifts if rec.status == "shadow" else None, names, kinds)
        theirs = _shifts(rec.shadow_potential_shifts, names, kinds)
        return (
            f"tick {rec.tick:5d}  goal {goal}  would shift {mine:<32} potential proposes "
            f"{theirs:<32} rollbacks {len(rec.rollbacks)}{out}{held}"
        )
    return (
        f"tick {rec.tick:5d}  goal {goal}  shifts {_shifts(rec.shifts, names, kinds):<36} "
        f"{rec.status:<8} rollbacks {len(rec.rollbacks)}{out}{held}"
    )


def summary_rows(records: list[TickRecord], mode: str, wall: float) -> list[tuple[str, object]]:
    goals = [r.goal_attainment for r in records if r.goal_attainment is not None]
    rows: list[tuple[str, object]] = [
        ("ticks", len(records)),
        ("mode", mode),
        ("mean goal attainment", f"{sum(goals) / max(len(goals), 1):.4f}"),
        ("return (sum of rewards)", f"{sum(r.reward or 0.0 for r in records):.2f}"),
    ]
    if mode == "shadow":
        would = [r for r in records if r.shifts and r.status == "shadow"]
        theirs = [r.shadow_potential_shifts or [] for r in records]
        rows += [
            ("shifts proposed (would have moved)", sum(len(r.shifts) for r in would)),
            ("ticks with shifts proposed", len(would)),
            ("units that would have moved", sum(r.units for r in would)),
            ("potential proposed shifts", sum(len(t) for t in theirs)),
            ("units potential would have moved", sum(s[3] for t in theirs for s in t)),
            ("units moved", "0 (shadow)"),
        ]
    else:
        done = [r for r in records if r.shifts and r.status != "shadow"]
        rows += [
            ("shifts", sum(len(r.shifts) for r in done)),
            ("ticks with shifts", len(done)),
            ("most shifts in a tick", max((len(r.shifts) for r in done), default=0)),
            ("units moved", sum(r.units for r in done)),
        ]
    rows += [
        ("rollbacks", sum(len(r.rollbacks) for r in records)),
        ("held ticks", sum(1 for r in records if r.held)),
        ("ticks with modules excluded (no telemetry)", sum(1 for r in records if r.excluded)),
        ("policy fallbacks", sum(1 for r in records if r.source != "policy")),
        ("wall time", f"{wall:.1f} s"),
    ]
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--policy", required=True, help="policy folder or built-in name")
    ap.add_argument("--backend", choices=BACKENDS, default="sim")
    ap.add_argument("--scenario", default=None, help="scenario (default: the policy's own)")
    ap.add_argument("--mode", choices=("active", "shadow"), default="active")
    ap.add_argument(
        "--ticks", type=positive_int, default=720, help="intervals to run (default 720)"
    )
    ap.add_argument("--interval", type=seconds, default=0.0, help="seconds per interval (>= 0)")
    ap.add_argument(
        "--state-dir",
        type=Path,
        help="journal, audit log, state, HOLD file; the backend's own state in "
        "<state-dir>/backend (a restarted controller continues the episode)",
    )
    ap.add_argument("--seed", type=int, default=0, help="simulated backend's episode seed")
    ap.add_argument(
        "--tick-wall-seconds",
        type=seconds,
        default=1.0,
        help="cgroup backend: wall seconds one tick lasts (default 1)",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")

    try:
        if args.state_dir is not None:  # before anything writes into it
            claim_dir(args.state_dir, STATE_KIND, legacy=previous_state)
        scenario = args.scenario or policy_scenario(args.policy)
        backend_dir = args.state_dir / "backend" if args.state_dir is not None else None
        if args.backend == "sim":
            backend = SimulatedBackend(scenario, seed=args.seed, state_dir=backend_dir)
        else:
            from shift_rl.controller import CgroupBackend

            backend = CgroupBackend(scenario, seed=args.seed, state_dir=backend_dir,
                                    tick_wall_seconds=args.tick_wall_seconds)  # fmt: skip
        policy = resolve_policy(args.policy, backend.params)
        ctl = ShiftController(
            policy, backend, interval=args.interval, mode=args.mode, state_dir=args.state_dir
        )
    except (ConfigError, PolicyFileError, OutputError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    signal.signal(signal.SIGUSR1, lambda *_: ctl.hold(not ctl._manual_hold))
    names = [m.name for m in backend.params.config.modules]
    kinds = [r.name for r in backend.params.config.resources]
    live = sys.stdout.isatty()

    def status(rec: TickRecord) -> None:
        line = tick_line(rec, names, kinds)
        if live:  # one line that rewrites itself
            print(f"\r{line}   ", end="", flush=True)
        else:  # a log: one line per tick
            print(line, flush=True)

    started = time.perf_counter()
    try:
        records = ctl.run(args.ticks, on_tick=status)
    finally:
        ctl.close()
        if hasattr(backend, "close"):
            backend.close()  # real backends stop their workers and remove their cgroups
    if live:
        print()
    wall = time.perf_counter() - started
    print("| metric | value |\n|---|---:|")
    for key, value in summary_rows(records, args.mode, wall):
        print(f"| {key} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
