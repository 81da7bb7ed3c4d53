"""Workload suites: schema errors, time split, seeded expansion, leave-one-family-out, skips."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import yaml
from gymnasium.utils.env_checker import check_env

from shift_rl.config import ConfigError, scenario_from_dict
from shift_rl.env import ResourceShiftEnv
from shift_rl.scenario import ScenarioParams
from shift_rl.sim.exogenous import draw_exogenous, window_ticks
from shift_rl.suite import expand_suite, load_suite, scenario_json, suite_from_dict
from tests.conftest import ROOT, SHARED_TRACES

SUITES = ROOT / "configs" / "suites"


def _write(tmp_path: Path, data: dict, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _ramp_trace(path: Path, ticks: int = 2000, series: int = 3) -> Path:
    """A tick-index trace whose value at tick t is t + 1 in every series (reveals positions)."""
    rows = ["tick," + ",".join(f"s{j}" for j in range(series))]
    rows += [f"{t}," + ",".join(str(t + 1) for _ in range(series)) for t in range(ticks)]
    with gzip.open(path, "wt") as f:
        f.write("\n".join(rows) + "\n")
    return path


GEN = {"variants": 2, "modules": [2, 6]}


@pytest.mark.parametrize(
    ("member", "field", "expected"),
    [
        ({"name": "a", "class": "x", "splits": ["eval"]}, "members.0", "exactly one of"),
        (
            {
                "name": "a",
                "class": "x",
                "splits": ["eval"],
                "generator": GEN,
                "scenario": "default",
            },
            "members.0",
            "exactly one of",
        ),
        (
            {"name": "a", "class": "x", "splits": ["test"], "generator": GEN},
            "members.0.splits.0",
            "'train' or 'eval'",
        ),
        (
            {
                "name": "a",
                "class": "x",
                "splits": ["eval"],
                "generator": {**GEN, "modules": [1, 4]},
            },
            "members.0.generator.modules.0",
            ">= 2",
        ),
        (
            {
                "name": "a",
                "class": "x",
                "splits": ["eval"],
                "generator": {**GEN, "modules": [9, 4]},
            },
            "members.0.generator",
            "low 9 above high 4",
        ),
        (
            {"name": "a", "class": "x", "splits": ["eval"], "generator": {**GEN, "colour": 1}},
            "members.0.generator.colour",
            "unknown key",
        ),
        (
            {
                "name": "a",
                "class": "x",
                "splits": ["eval"],
                "trace": {"path": "t.csv", "split": {"train": [0.0, 0.8], "eval": [0.7, 1.0]}},
            },
            "members.0.trace.split",
            "overlaps",
        ),
        (
            {
                "name": "a",
                "class": "x",
                "splits": ["eval"],
                "generator": GEN,
                "randomize": {"variants": 2},
            },
            "members.0",
            "randomize: only with scenario",
        ),
    ],
)
def test_schema_errors_name_file_field_and_expectation(tmp_path, member, field, expected):
    path = _write(tmp_path, {"name": "bad", "members": [member]})
    with pytest.raises(ConfigError) as err:
        load_suite(path)
    text = str(err.value)
    assert str(path) in text and field in text and expected in text, text


def test_duplicate_member_names_and_empty_file(tmp_path):
    m = {"name": "a", "class": "x", "splits": ["eval"], "generator": GEN}
    with pytest.raises(ConfigError, match="duplicate member name 'a'"):
        suite_from_dict({"name": "d", "members": [m, m]})
    empty = tmp_path / "e.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_suite(empty)
    with pytest.raises(ConfigError, match=r"does not exist.*local"):
        load_suite(tmp_path / "nope.yaml")


def test_shipped_local_suite_needs_no_external_trace():
    for split in ("train", "eval"):
        e = expand_suite("local", split)
        assert not e.skipped
        assert {"default", "faults", "multi_resource", "large", "scale_256", "generated"} <= set(
            e.classes
        )
        for s in e.scenarios:
            tc = s.scenario.demand.trace
            assert tc is None or Path(tc.path).is_relative_to(ROOT)


def test_module_counts_suite_holds_out_2_to_1024_modules():
    assert not expand_suite("module_counts", "train").scenarios  # evaluation only
    e = expand_suite("module_counts", "eval")
    classes = {s.class_ for s in e.scenarios}
    counts = {c: {len(s.scenario.modules) for s in e.scenarios if s.class_ == c} for c in classes}
    assert counts == {f"modules_{m}": {m} for m in (2, 4, 6, 16, 64, 256, 1024)}
    for s in e.scenarios:
        if s.member.startswith("modules_"):  # generated; the shipped scenarios pass in test_env
            check_env(ResourceShiftEnv(s.scenario), skip_render_check=True)


def test_expansion_is_seeded_and_splits_draw_different_variants(tmp_path):
    data = {"name": "g", "seed": 3, "members": [
        {"name": "gen", "class": "generated", "splits": ["train", "eval"], "episode_ticks": 20,
         "generator": {"variants": 3, "modules": [2, 40]}}]}  # fmt: skip
    path = _write(tmp_path, data)
    a, b = scenario_json(expand_suite(path, "train")), scenario_json(expand_suite(path, "train"))
    assert a == b and len(a) == 3
    ev = scenario_json(expand_suite(path, "eval"))
    assert [x["scenario"]["modules"] for x in ev] != [x["scenario"]["modules"] for x in a]
    data["seed"] = 4
    other = scenario_json(expand_suite(_write(tmp_path, data, "t.yaml"), "train"))
    assert [x["scenario"]["modules"] for x in other] != [x["scenario"]["modules"] for x in a]
    for x in a:  # every generated scenario is a valid, runnable scenario
        cfg = scenario_from_dict(x["scenario"])
        draw_exogenous(ScenarioParams.from_config(cfg), 0)


def test_time_split_keeps_train_and_eval_ticks_disjoint(tmp_path):
    trace = _ramp_trace(tmp_path / "ramp.csv.gz", ticks=2000)
    data = {"name": "t", "members": [
        {"name": "ramp", "class": "ramp", "splits": ["train", "eval"], "episode_ticks": 40,
         "trace": {"path": trace.name, "variants": 2, "modules": [2, 3], "offsets": [0, 30],
                   "split": {"train": [0.0, 0.6], "eval": [0.6, 1.0]}}}]}  # fmt: skip
    path = _write(tmp_path, data)
    cut = window_ticks([0.6, 1.0], 2000)[0]
    seen = {}
    for split in ("train", "eval"):
        ticks = set()
        for s in expand_suite(path, split).scenarios:
            tc = s.scenario.demand.trace
            assert tc.window == ([0.0, 0.6] if split == "train" else [0.6, 1.0])
            params = ScenarioParams.from_config(s.scenario)
            lo, hi = window_ticks(tc.window, 2000)
            for seed in range(20):
                d = draw_exogenous(params, seed).demand
                peak_servers = tc.peak_share * np.min(
                    params.pool_units / params.units_per_server, axis=1
                )
                scale = peak_servers / params.servers_per_request / hi  # peak in window: hi
                t = np.rint(d / scale).astype(int) - 1  # the replayed tick of each cell
                assert t.min() >= lo and t.max() < hi
                ticks |= set(t.ravel().tolist())
        seen[split] = ticks
    assert max(seen["train"]) < cut <= min(seen["eval"])


def test_window_too_small_for_the_episode_is_a_clear_error(tmp_path):
    trace = _ramp_trace(tmp_path / "ramp.csv.gz", ticks=300)
    data = {"name": "t", "members": [
        {"name": "ramp", "class": "ramp", "splits": ["eval"], "episode_ticks": 200,
         "trace": {"path": trace.name, "modules": [2, 2]}}]}  # fmt: skip
    with pytest.raises(ConfigError, match=r"members\.0\.trace\.split\.eval.*fewer than an episode"):
        expand_suite(_write(tmp_path, data), "eval")


def test_leave_one_family_out_removes_the_family(tmp_path):
    trace = _ramp_trace(tmp_path / "ramp.csv.gz")
    data = {"name": "f", "members": [
        {"name": "gen", "class": "generated", "splits": ["train", "eval"], "episode_ticks": 20,
         "generator": {"variants": 1}},
        {"name": "ramp", "class": "ramp", "splits": ["train", "eval"], "episode_ticks": 20,
         "trace": {"path": trace.name, "variants": 1, "modules": [2, 2]}},
        {"name": "ramp2", "class": "ramp2", "family": "ramp", "splits": ["eval"],
         "episode_ticks": 20, "trace": {"path": trace.name, "variants": 1, "modules": [2, 2]}},
    ]}  # fmt: skip
    path = _write(tmp_path, data)
    suite = load_suite(path)
    assert suite.config.families == ["generated", "ramp"]
    train = expand_suite(path, "train", leave_out=["ramp"])
    assert {s.family for s in train.scenarios} == {"generated"}
    held = expand_suite(path, "eval", only=["ramp"])
    assert {s.member for s in held.scenarios} == {"ramp", "ramp2"}
    with pytest.raises(ConfigError, match="unknown family 'rmap'"):
        expand_suite(path, "train", leave_out=["rmap"])
    with pytest.raises(ConfigError, match="leaves no member"):
        suite.without_families(["generated", "ramp"])


def test_missing_traces_are_skipped_with_a_note(tmp_path):
    data = yaml.safe_load((SUITES / "generalist.yaml").read_text())
    for m in data["members"]:
        if "trace" in m:
            m["trace"]["path"] = "no/such/folder/" + Path(m["trace"]["path"]).name
    e = expand_suite(_write(tmp_path, data), "eval")
    traced = [m for m in data["members"] if "trace" in m and "eval" in m["splits"]]
    assert len(e.skipped) == len(traced)
    assert all("skipped, trace file" in note and "not found" in note for note in e.skipped)
    assert "default" in e.classes and not any(s.scenario.demand.trace for s in e.scenarios)


@pytest.mark.skipif(not SHARED_TRACES.is_dir(), reason=f"no traces at {SHARED_TRACES}")
def test_generalist_covers_every_shared_trace_family():
    e = expand_suite("generalist", "eval")
    assert not e.skipped
    used = {Path(s.scenario.demand.trace.path).name for s in e.scenarios if s.scenario.demand.trace}
    assert {p.name for p in SHARED_TRACES.glob("*.csv.gz")} <= used
    for s in e.scenarios:
        tc = s.scenario.demand.trace
        assert tc is None or tc.window == [0.7, 1.0]


@pytest.mark.parametrize("tightness", [[0.45, 0.9], [0.95, 1.3]])
def test_generated_pool_is_the_drawn_share_of_the_mean_need(tightness):
    """``tightness`` is pool / total mean need: below 1 the modules cannot all be served at
    once (no heuristic finds a donor), above 1 there is slack to shift."""
    s = suite_from_dict({"name": "t", "members": [{
        "name": "g", "class": "g", "splits": ["train"],
        "generator": {"variants": 6, "modules": [8, 24], "tightness": tightness,
                      "kinds": [["cpu"]]}}]})  # fmt: skip
    for sc in expand_suite(s, "train").scenarios:
        p = ScenarioParams.from_config(sc.scenario)
        base = np.array([m.demand.base for m in sc.scenario.modules])
        need = float((base * p.servers_per_request * p.units_per_server[:, 0]).sum())
        ratio = p.pool_units[0] / need
        # module bases are jittered around their group's (and floored), so it strays a little
        assert tightness[0] * 0.9 <= ratio <= tightness[1] * 1.1, (sc.scenario.name, ratio)
