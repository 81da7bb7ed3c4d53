"""Baselines tuned on a suite's train members: the record, leave-out, the benchmark's pick."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from shift_rl.benchmark import baseline_parameters, benchmark
from shift_rl.seeds import TRAIN_SEED_BASE
from tests.conftest import ROOT

pytest.importorskip("optuna")

SLICE = ROOT / "configs" / "traces" / "azure_functions_2019_top6.csv.gz"


def _suite(tmp_path: Path) -> Path:
    data = {
        "name": "tiny",
        "members": [
            {"name": "default-train", "class": "default", "splits": ["train"],
             "scenario": "default", "episode_ticks": 12},
            {"name": "default", "class": "default", "splits": ["eval"], "scenario": "default",
             "episode_ticks": 12},
            {"name": "gen", "class": "generated", "splits": ["train", "eval"],
             "episode_ticks": 8, "generator": {"variants": 2, "modules": [2, 4]}},
            {"name": "slice", "class": "azure", "splits": ["train", "eval"], "episode_ticks": 10,
             "trace": {"path": str(SLICE), "variants": 1, "modules": [3, 3]}},
        ],
    }  # fmt: skip
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_tuning_on_a_suite_records_the_suite_members_and_seeds(tmp_path, capsys):
    from scripts.tune_baseline import main

    suite = _suite(tmp_path)
    out = tmp_path / "tuned"
    argv = ["--policy", "proportional", "--suite", str(suite), "--trials", "2",
            "--episodes", "2", "--out-dir", str(out)]  # fmt: skip
    assert main(argv) == 0
    shown = json.loads(capsys.readouterr().out)
    record = json.loads((out / "proportional" / "params.json").read_text())
    assert set(record["params"]) == {"hysteresis"}
    assert shown["params"] == record["params"]
    search = record["search"]
    assert search["suite"]["name"] == "tiny" and search["suite"]["split"] == "train"
    assert search["suite"]["left_out"] == [] and len(search["suite"]["sha256"]) == 64
    assert [m["member"] for m in search["members"]] == ["default-train", "gen", "slice"]
    assert [len(m["scenarios"]) for m in search["members"]] == [1, 2, 1]
    assert search["members"][2]["family"] == "azure_functions_2019_top6"
    assert search["seeds"] == [TRAIN_SEED_BASE, TRAIN_SEED_BASE + 1]
    assert search["episodes_per_scenario"] == 2 and search["trials"] == 2
    # the objective: the mean over members of their mean return per tick
    per_member = record["members_default_objective"]
    assert set(per_member) == {"default-train", "gen", "slice"}
    assert record["default_objective"] == pytest.approx(sum(per_member.values()) / 3)
    assert record["objective"] >= record["default_objective"]
    assert all(-10 < v < 10 for v in per_member.values()), "per tick, not per episode"
    rows = (out / "proportional" / "trials.csv").read_text().splitlines()
    assert rows[0] == "trial,value,hysteresis" and len(rows) == 3


def test_per_tick_objective_fans_out_bit_for_bit(tmp_path):
    from shift_rl.distributed import FanOut
    from shift_rl.suite import expand_suite
    from shift_rl.tuning import member_scores

    expansion = expand_suite(_suite(tmp_path), "train")
    seeds = [TRAIN_SEED_BASE, TRAIN_SEED_BASE + 1]
    serial = member_scores("hpa", {"tolerance": 0.05}, expansion, seeds)
    with FanOut(2) as pool:
        assert member_scores("hpa", {"tolerance": 0.05}, expansion, seeds, pool) == serial


def test_leave_out_removes_the_family_from_tuning(tmp_path):
    from shift_rl.tuning import suite_out_dir, tune_suite

    suite = _suite(tmp_path)
    record = tune_suite("hpa", suite, trials=1, episodes=1, out_dir=tmp_path / "t",
                        leave_out=["azure_functions_2019_top6"])  # fmt: skip
    search = record["search"]
    assert [m["member"] for m in search["members"]] == ["default-train", "gen"]
    assert set(record["members_objective"]) == {"default-train", "gen"}
    assert search["suite"]["left_out"] == ["azure_functions_2019_top6"]
    assert search["suite"]["name"] == "tiny-without-azure_functions_2019_top6"
    assert suite_out_dir(search["suite"]["name"]).parts[-3:] == (
        "agents", "suites", "tiny-without-azure_functions_2019_top6"
    )  # fmt: skip


def _write_params(folder: Path, name: str, params: dict, suite: str | None) -> None:
    (folder / name).mkdir(parents=True)
    search = {"trials": 2, "seeds": [TRAIN_SEED_BASE]}
    if suite is not None:
        search |= {"suite": {"name": suite, "left_out": []}, "members": [{"member": "gen"}]}
    else:
        search |= {"scenarios": ["default"]}
    (folder / name / "params.json").write_text(json.dumps({"params": params, "search": search}))


def test_benchmark_plays_the_suite_tuned_parameters_and_says_so(tmp_path, monkeypatch):
    import shift_rl.benchmark as bench

    suite = _suite(tmp_path)
    agents = tmp_path / "agents"
    _write_params(agents / "suites" / "tiny", "hpa", {"target_utilization": 0.5}, "tiny")
    _write_params(agents, "hpa", {"target_utilization": 0.85}, None)
    _write_params(agents, "potential", {"headroom": 0.2}, None)
    monkeypatch.setattr(bench, "SUITE_TUNED_DIR", agents / "suites")
    monkeypatch.setattr(bench, "TUNED_DIR", agents)
    chosen = baseline_parameters("tiny", ["potential", "hpa", "proportional", "static"])
    assert set(chosen) == {"potential", "hpa", "proportional"}
    assert chosen["hpa"]["params"] == {"target_utilization": 0.5} and chosen["hpa"]["suite_tuned"]
    assert "suite `tiny`" in chosen["hpa"]["tuned_on"]
    assert chosen["potential"]["params"] == {"headroom": 0.2}  # no suite tuning: agents/
    assert not chosen["potential"]["suite_tuned"]
    assert chosen["proportional"]["file"] is None
    assert "untuned" in chosen["proportional"]["tuned_on"]
    # a leave-out run prefers the parameters tuned without the family
    _write_params(agents / "suites" / "tiny-without-gen", "hpa", {"tolerance": 0.0}, "tiny")
    assert baseline_parameters("tiny", ["hpa"], families=["gen"])["hpa"]["params"] == {
        "tolerance": 0.0
    }
    record = json.loads((agents / "suites" / "tiny" / "hpa" / "params.json").read_text())
    record["search"]["suite"]["sha256"] = "0" * 64
    (agents / "suites" / "tiny" / "hpa" / "params.json").write_text(json.dumps(record))
    stale = baseline_parameters("tiny", ["hpa"], suite_sha256="1" * 64)["hpa"]["tuned_on"]
    assert "the suite file has changed since" in stale
    assert baseline_parameters("tiny", ["hpa"], "default")["hpa"]["params"] == {
        "target_utilization": 0.85
    }

    board = benchmark(suite, ["static"], episodes=1, baselines=["hpa"])
    d = board.to_dict()
    assert d["parameters"]["hpa"]["params"] == {"target_utilization": 0.5}
    assert "## Baseline parameters" in board.markdown()
    assert "`hpa`: tuned on the train split of suite `tiny`" in board.markdown()
    # what was played: the suite-tuned parameters, not agents/hpa/
    played = bench._play(board_scenario(suite), "hpa", {"target_utilization": 0.5}, [0], 0)
    hpa = board.reports[0][2].per_episode("hpa", "return")
    assert played[0].ret == pytest.approx(float(hpa[0]))
    other = bench._play(board_scenario(suite), "hpa", {"target_utilization": 0.85}, [0], 0)
    assert other[0].ret != played[0].ret


def board_scenario(suite: Path):
    from shift_rl.suite import expand_suite

    return expand_suite(suite, "eval").scenarios[0].scenario
