"""Policies driving real CPU-capped worker processes (CgroupBackend), next to the simulator.

    python benchmarks/bench_cgroup.py                       # static, potential, ppo-cgroup
    python benchmarks/bench_cgroup.py --policies static,potential --seeds 80 --ticks 45 \
        --json /tmp/cgroup.json
    python benchmarks/bench_cgroup.py --calibrate 0.5,0.8,0.95,1.1,1.3 --ticks 10

Every policy replays the same episodes (``--seeds``: the scenario's trace windows, drawn as
``SimulatedBackend(scenario, seed)`` draws them; the arrival instants come from the seed too)
on the real backend, one run after the other, then on the simulator for the same seeds and
ticks. Reports per policy: requests served within the SLO (count and share), dropped
requests, mean goal attainment per tick (value-weighted, as the controller measures it), units
moved, wall time; and the simulator's prediction of the same figures. Needs root (cgroups).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from shift_rl.agents import POLICIES, Policy, make_policy, tuned_params
from shift_rl.config import ScenarioConfig, load_scenario
from shift_rl.controller import ShiftController, SimulatedBackend
from shift_rl.controller.cgroup import CgroupBackend, cgroup_support, detect_cgroup
from shift_rl.machine import cpu_model
from shift_rl.runtime import load_policy
from shift_rl.scenario import ScenarioParams
from shift_rl.sim.queueing import tick_metrics

ROOT = Path(__file__).resolve().parents[1]


def make(name: str, params: ScenarioParams) -> Policy:
    """A built-in policy by name or an exported policy folder."""
    if name in POLICIES:
        return make_policy(name, params)
    policy = load_policy(name)
    if policy.spec["scenario"]["fingerprint"] != params.fingerprint():
        logging.warning("%s was trained for another scenario fingerprint", name)
    return policy


def label(name: str) -> str:
    return Path(name).name if name not in POLICIES else name


def run_real(name: str, scenario: str, seed: int, ticks: int) -> dict[str, Any]:
    started = time.perf_counter()
    with CgroupBackend(scenario, seed=seed) as be:
        ctl = ShiftController(make(name, be.params), be, interval=0)
        records = ctl.run(ticks)
        out = be.summary()
        out["throttled_periods"] = [s.get("nr_throttled", 0) for s in be.throttling()]
    out["held_ticks"] = sum(1 for r in records if r.held)
    out["rollbacks"] = sum(len(r.rollbacks) for r in records)
    out["controller_goal_attainment"] = float(np.mean([r.goal_attainment for r in records]))
    out["wall_seconds"] = time.perf_counter() - started
    return out


def run_sim(name: str, scenario: str, seed: int, ticks: int) -> dict[str, Any]:
    """The simulator's prediction: requests within the SLO = true attainment x demand."""
    be = SimulatedBackend(scenario, seed=seed)
    ctl = ShiftController(make(name, be.params), be, interval=0)
    ok = total = 0.0
    goals, moved = [], 0
    for _ in range(ticks):
        rec = ctl.tick()
        demand = be.telemetry().demand[0]
        ok += float((be.sim.true_attainment[0] * demand).sum())
        total += float(demand.sum())
        goals.append(be.true_goal_attainment())
        moved += rec.units + sum(rb[3] for rb in rec.rollbacks)
    return {
        "requests": total,
        "within_slo": ok,
        "share_within_slo": ok / max(total, 1.0),
        "goal_attainment": float(np.mean(goals)),
        "units_moved": moved,
    }


def calibrate(scenario: str, levels: list[float], ticks: int, units: int = 4) -> list[dict]:
    """Flat load at each utilization level on every module (``units`` each, no shifting).

    Measured share of the resolved requests within the SLO, share dropped, mean latency and
    CPU utilization, next to the queueing model's figures for the same load (what the
    simulator of the scenario predicts).
    """
    base = load_scenario(scenario).model_dump(mode="json")
    rows = []
    for rho in levels:
        cfg = json.loads(json.dumps(base))
        cfg["demand"] = {"correlation": 0.0, "start_hour": 0.0}
        for mod in cfg["modules"]:
            mod["units"] = units
            per_tick = rho * units * mod["service_rate"] * cfg["tick_seconds"]
            mod["demand"] = {"base": per_tick, "diurnal": {"amplitude": 0.0}, "noise": 0.0}
        scen = ScenarioConfig.model_validate(cfg)
        with CgroupBackend(scen, seed=0) as be:
            for _ in range(ticks):
                be.advance()
            p = be.params
            for j, mod in enumerate(p.config.modules):
                tot = {f: sum(r["modules"][j][f] for r in be.records[1:]) for f in
                       ("arrived", "ok", "late", "dropped", "latency_sum", "busy")}  # fmt: skip
                done = tot["ok"] + tot["late"]
                resolved = max(done + tot["dropped"], 1)
                lam = tot["arrived"] / ticks
                _, lat, err, att = tick_metrics(
                    lam, float(units), float(p.service_rate[j]), float(p.slo_seconds[j]),
                    p.tick_seconds,
                )  # fmt: skip
                rows.append({
                    "module": mod.name, "rho": rho, "requests": int(tot["arrived"]),
                    "within_slo": tot["ok"] / resolved,
                    "dropped": tot["dropped"] / resolved,
                    "latency_wall_ms": 1e3 * tot["latency_sum"] / max(done, 1),
                    "utilization": tot["busy"] / (units * be.unit_cpu * ticks * be.tick_wall),
                    "model_within_slo": att, "model_dropped": err,
                    "model_latency_wall_ms": 1e3 * lat / be.scale,
                })  # fmt: skip
                print(
                    f"rho {rho:.2f} {mod.name:>9}: within SLO {rows[-1]['within_slo']:.3f} "
                    f"(model {att:.3f}), dropped {rows[-1]['dropped']:.3f} (model {err:.3f}), "
                    f"latency {rows[-1]['latency_wall_ms']:.0f} ms "
                    f"(model {rows[-1]['model_latency_wall_ms']:.0f} ms), "
                    f"utilization {rows[-1]['utilization']:.2f}",
                    flush=True,
                )
    return rows


def machine() -> str:
    cpu = cpu_model()
    version, mount = detect_cgroup()
    return (
        f"{cpu}, {os.cpu_count()} cores, Linux {platform.release()}, cgroup {version} "
        f"({mount}), python {platform.python_version()}"
    )


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "| policy | requests | within SLO (real) | share (real) | dropped | goal attainment "
        "(real) | units moved | share (sim) | goal attainment (sim) | units moved (sim) | "
        "wall s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, runs in results["policies"].items():
        real = [r["real"] for r in runs]
        sim = [r["sim"] for r in runs]
        req = sum(r["requests"] for r in real)
        ok = sum(r["within_slo"] for r in real)
        resolved = sum(r["resolved"] for r in real)
        lines.append(
            f"| {name} | {req} | {ok} | {ok / max(resolved, 1):.3f} | "
            f"{sum(r['dropped'] for r in real)} | "
            f"{np.mean([r['goal_attainment'] for r in real]):.3f} | "
            f"{sum(r['units_moved'] for r in real)} | "
            f"{sum(s['within_slo'] for s in sim) / max(sum(s['requests'] for s in sim), 1):.3f} | "
            f"{np.mean([s['goal_attainment'] for s in sim]):.3f} | "
            f"{sum(s['units_moved'] for s in sim)} | "
            f"{sum(r['wall_seconds'] for r in real):.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--policies", default="static,potential,agents/ppo-cgroup")
    ap.add_argument("--scenario", default="cgroup")
    ap.add_argument("--seeds", default="80,0,1", help="comma-separated episode seeds")
    ap.add_argument("--ticks", type=int, default=45, help="controlled ticks per run")
    ap.add_argument("--json", type=Path, help="write all figures here")
    ap.add_argument(
        "--calibrate", default="", help="instead: flat load at these utilizations, e.g. 0.5,0.9"
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    reason = cgroup_support()
    if reason is not None:
        print(f"error: {reason}", file=sys.stderr)
        return 2
    if args.calibrate:
        levels = [float(x) for x in args.calibrate.split(",")]
        rows = calibrate(args.scenario, levels, args.ticks)
        if args.json:
            args.json.write_text(json.dumps({"machine": machine(), "calibration": rows}, indent=2))
        return 0
    names = [n.strip() for n in args.policies.split(",") if n.strip()]
    names = [n if n in POLICIES else str((ROOT / n) if not Path(n).exists() else n) for n in names]
    seeds = [int(s) for s in args.seeds.split(",")]
    results: dict[str, Any] = {
        "command": " ".join(["python", *sys.argv]),
        "machine": machine(),
        "scenario": args.scenario,
        "seeds": seeds,
        "ticks": args.ticks,
        "load_average_before": os.getloadavg(),
        "potential_params": tuned_params("potential"),
        "policies": {label(n): [] for n in names},
    }
    started = time.perf_counter()
    for seed in seeds:
        for name in names:
            real = run_real(name, args.scenario, seed, args.ticks)
            sim = run_sim(name, args.scenario, seed, args.ticks)
            results["policies"][label(name)].append({"seed": seed, "real": real, "sim": sim})
            print(
                f"seed {seed} {label(name):>12}: real within SLO {real['within_slo']} of "
                f"{real['resolved']} resolved ({real['share_within_slo']:.3f}), goal "
                f"{real['goal_attainment']:.3f}, moved {real['units_moved']}, "
                f"{real['wall_seconds']:.0f} s | sim share {sim['share_within_slo']:.3f}, "
                f"goal {sim['goal_attainment']:.3f}, moved {sim['units_moved']}",
                flush=True,
            )
    results["wall_seconds"] = time.perf_counter() - started
    results["load_average_after"] = os.getloadavg()
    print()
    print(markdown(results))
    print(f"\n{results['machine']}; total wall time {results['wall_seconds'] / 60:.1f} min")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
