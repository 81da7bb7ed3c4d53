"""The benchmark over a suite: end to end in seconds, deterministic JSON, skips, leave-out."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from scripts.benchmark import main
from shift_rl.benchmark import baseline_parameters, benchmark, render
from shift_rl.evaluate import EvaluationError, over_seeds_and_episodes
from tests.conftest import ROOT

SLICE = ROOT / "configs" / "traces" / "azure_functions_2019_top6.csv.gz"


def _suite(tmp_path: Path) -> Path:
    data = {
        "name": "tiny",
        "members": [
            {"name": "default", "class": "default", "splits": ["eval"], "scenario": "default",
             "episode_ticks": 12},
            {"name": "gen", "class": "generated", "splits": ["train", "eval"],
             "episode_ticks": 12, "generator": {"variants": 2, "modules": [2, 5]}},
            {"name": "slice", "class": "azure", "splits": ["train", "eval"], "episode_ticks": 12,
             "trace": {"path": str(SLICE), "variants": 1, "modules": [3, 3]}},
            {"name": "gone", "class": "missing", "splits": ["eval"],
             "trace": {"path": "no/such.csv.gz"}},
        ],
    }  # fmt: skip
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_tiny_suite_end_to_end_with_deterministic_json(tmp_path, capsys):
    suite = _suite(tmp_path)
    out = tmp_path / "board"
    argv = ["--suite", str(suite), "--policies", "potential", "--baselines", "hpa,static",
            "--episodes", "2", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "on class default" in printed and "## Skipped" in printed
    files = {p.name for p in out.iterdir()}
    assert {"leaderboard.json", "leaderboard.md", "leaderboard.png"} <= files
    first = (out / "leaderboard.json").read_bytes()
    assert main(argv) == 0  # the folder holds an earlier leaderboard: replaced
    assert (out / "leaderboard.json").read_bytes() == first
    d = json.loads(first)
    assert d["class_order"] == ["default", "generated", "azure"]
    assert d["policies"] == ["potential", "hpa", "static"]
    gen = d["classes"]["generated"]
    assert gen["episodes"] == 4 and len(gen["scenarios"]) == 2
    assert set(gen["differences"]) == {"hpa", "static"}
    assert gen["policies"]["oracle"]["gap_closed"]["mean"] in (None, 1.0)
    assert len(d["verdicts"]) == 3 * 2
    for name, mean in d["mean_gap_closed"].items():  # the mean of the classes' gap closed
        per_class = [d["classes"][c]["policies"][name]["gap_closed"]["mean"] for c in d["classes"]]
        assert mean == (None if None in per_class else pytest.approx(np.mean(per_class)))
    assert d["mean_gap_closed"]["static"] == 0.0 and "**mean of the classes**" in printed
    assert all(v["text"].startswith("potential ") for v in d["verdicts"])
    assert d["skipped"] and "no/such.csv.gz" in d["skipped"][0]


def test_leave_out_and_refusals(tmp_path, capsys):
    suite = _suite(tmp_path)
    slice_family = "azure_functions_2019_top6"  # a trace member's family: its file's stem
    board = benchmark(suite, ["static"], episodes=1, baselines=(), leave_out=[slice_family])
    assert [c for c, _, _ in board.reports] == ["default", "generated", "generated"]
    assert render(board)["leaderboard.json"] == render(board)["leaderboard.json"]
    with pytest.raises(EvaluationError, match="no eval scenario"):
        benchmark(suite, ["static"], episodes=1, only=["such"])
    with pytest.raises(EvaluationError, match="unknown policy"):
        benchmark(suite, ["nonsense"], episodes=1, baselines=())
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    argv = ["--suite", str(suite), "--policies", "static", "--out", str(other)]
    assert main(argv) == 2
    assert "refusing to write there" in capsys.readouterr().err


def test_two_exports_of_one_run_are_told_apart_by_their_paths(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    for copy in (first, second):  # both carry the release's run name
        shutil.copytree(ROOT / "agents" / "ppo-generalist", copy)
    board = benchmark(_suite(tmp_path), [str(first), str(second)], episodes=1, baselines=(),
                      only=["default"])  # fmt: skip
    assert board.labels[str(first)] == str(first) and board.labels[str(second)] == str(second)
    assert f"| {first} |".encode() in render(board)["leaderboard.md"]


def test_parameters_tuned_on_another_suite_are_named_as_such():
    tuned = ROOT / "agents" / "suites" / "generalist"
    record = json.loads((tuned / "potential" / "params.json").read_text())
    digest = record["search"]["suite"]["sha256"]
    own = baseline_parameters("generalist", ["potential"], None, None, digest)["potential"]
    assert own["suite_tuned"] and "not this leaderboard" not in own["tuned_on"]
    assert "re-tune" not in own["tuned_on"]
    moved = baseline_parameters("generalist", ["potential"], None, None, "0" * 64)["potential"]
    assert "re-tune" in moved["tuned_on"]
    other = baseline_parameters("module_counts", ["potential"], tuned, None, "0" * 64)
    line = other["potential"]["tuned_on"]
    assert "suite `generalist`" in line and "not this leaderboard's suite (`module_counts`)" in line
    assert "re-tune" not in line


def test_a_recipes_seeds_are_judged_pooled(tmp_path, capsys):
    suite = _suite(tmp_path)
    argv = ["--suite", str(suite), "--policies", "potential,proportional", "--recipe", "two",
            "--baselines", "hpa,static", "--episodes", "2", "--out",
            str(tmp_path / "b")]  # fmt: skip
    assert main(argv) == 0
    assert "## Across training seeds: `two` (2 seeds)" in capsys.readouterr().out
    d = json.loads((tmp_path / "b" / "leaderboard.json").read_text())
    a = d["across_seeds"]
    assert a["policies"] == ["potential", "proportional"]
    # the recipe's other seed is not a baseline of the first, nor of the recipe
    assert set(d["classes"]["generated"]["differences"]) == {"hpa", "static"}
    for cls in d["class_order"]:
        s = a["classes"][cls]
        assert set(s["differences"]) == {"hpa", "static"}
        seeds = [d["classes"][cls]["policies"][n]["gap_closed"]["mean"] for n in a["policies"]]
        assert list(s["per_seed_gap_closed"].values()) == seeds
        if None not in seeds:  # one span for both seeds: pooled = mean of the seeds
            assert s["gap_closed"]["mean"] == pytest.approx(np.mean(seeds))
            lo, hi = s["gap_closed"]["ci95"]
            assert lo <= s["gap_closed"]["mean"] <= hi
        ret = s["differences"]["hpa"]["return_per_tick"]
        assert ret["seeds"] == 2 and ret["n"] == d["classes"][cls]["episodes"]
    assert len(a["verdicts"]) == len(d["class_order"]) * 2
    assert all(v["text"].startswith("two (2 seeds) ") for v in a["verdicts"])
    with pytest.raises(EvaluationError, match="two or more policies"):
        benchmark(suite, ["potential"], episodes=1, baselines=(), recipe="one")


def test_seeds_and_episodes_both_widen_the_interval():
    rng = np.random.default_rng(3)
    episodes = rng.normal(0.0, 0.01, size=30)
    # two seeds of one recipe: the same episodes, each seed's level its own luck
    values = np.stack([episodes + 0.05, episodes - 0.01])
    pooled = over_seeds_and_episodes(values)
    assert pooled["mean"] == pytest.approx(values.mean())
    alone = over_seeds_and_episodes(values[:1])
    lo, hi = pooled["ci95"]
    assert hi - lo > 2 * (alone["ci95"][1] - alone["ci95"][0])  # the seeds' spread shows
    assert lo < -0.005 and hi > 0.045  # covers both seeds' levels
    gap = over_seeds_and_episodes(values + 1.0, np.full(30, 2.0))
    assert gap["mean"] == pytest.approx((values.mean() + 1.0) / 2.0)
    assert over_seeds_and_episodes(values, np.zeros(30))["mean"] is None
    assert over_seeds_and_episodes(values) == pooled  # seeded


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 5),
    st.integers(1, 12),
    st.floats(-1.0, 1.0),
    st.floats(0.0, 0.5),
    st.integers(0, 2**32 - 1),
)
def test_over_seeds_and_episodes_stays_within_the_values(seeds, n, level, scale, draw):
    values = level + scale * np.random.default_rng(draw).normal(size=(seeds, n))
    s = over_seeds_and_episodes(values)
    lo, hi = s["ci95"]
    assert values.min() - 1e-12 <= lo <= hi <= values.max() + 1e-12
    assert s["mean"] == pytest.approx(values.mean())
