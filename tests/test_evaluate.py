"""The evaluation harness: paired, reproducible, honest about what it cannot evaluate."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scripts.evaluate import main as evaluate_cli
from shift_rl.config import load_scenario
from shift_rl.evaluate import EvaluationError, evaluate

SHORT = load_scenario("default").model_copy(update={"episode_ticks": 120})


def test_same_seed_gives_identical_json_and_other_seed_differs() -> None:
    a = evaluate(["potential", "hpa"], SHORT, episodes=3, seed=5).to_dict()
    b = evaluate(["potential", "hpa"], SHORT, episodes=3, seed=5, workers=2).to_dict()
    c = evaluate(["potential", "hpa"], SHORT, episodes=3, seed=6).to_dict()
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert a["policies"]["potential"]["return"] != c["policies"]["potential"]["return"]


def test_static_and_oracle_always_run_and_gap_closed_is_their_ratio() -> None:
    rep = evaluate(["potential"], SHORT, episodes=4, seed=0)
    assert set(rep.results) == {"potential", "static", "oracle"}
    ret = rep.per_episode("potential", "return")
    static = rep.per_episode("static", "return")
    oracle = rep.per_episode("oracle", "return")
    np.testing.assert_allclose(
        rep.per_episode("potential", "gap_closed"), (ret - static) / (oracle - static)
    )
    assert (oracle >= ret).all() and (oracle >= static).all()
    d = rep.to_dict()
    assert d["policies"]["static"]["gap_closed"]["mean"] == pytest.approx(0.0)
    assert d["policies"]["oracle"]["gap_closed"]["mean"] == pytest.approx(1.0)
    lo, hi = d["policies"]["potential"]["return"]["ci95"]
    assert lo <= d["policies"]["potential"]["return"]["mean"] <= hi
    diff = d["differences"]["static"]["return"]["mean"]  # the first policy minus the other
    assert diff == pytest.approx(ret.mean() - static.mean())


def test_gap_closed_is_undefined_not_zero_when_static_is_already_optimal() -> None:
    """On a lightly loaded plane static serves everything: oracle - static is ~0, so gap
    closed has nothing to measure. It says so (None with the reason), never a silent 0."""
    data = SHORT.model_dump(mode="json")
    for mod in data["modules"]:
        mod["demand"]["base"] /= 100
    rep = evaluate(["potential"], type(SHORT).model_validate(data), episodes=2, seed=0)
    oracle, static = rep.per_episode("oracle", "return"), rep.per_episode("static", "return")
    assert np.isfinite(oracle).all() and (oracle >= static - 1e-9).all()
    assert np.isnan(rep.per_episode("potential", "gap_closed")).all()
    d = rep.to_dict()
    for name in ("potential", "static", "oracle"):
        gap = d["policies"][name]["gap_closed"]
        assert gap["mean"] is None and "no improvement to close" in gap["undefined"]
    assert "undefined" in d["differences"]["static"]["gap_closed"]
    assert "Gap closed is undefined" in rep.markdown()
    json.dumps(d, allow_nan=False)  # strict JSON: no NaN leaks into the summary


def test_episodes_are_paired_across_policies() -> None:
    rep = evaluate(["static", "potential"], SHORT, episodes=3, seed=11)
    seeds = {name: [r.seed for r in rs] for name, rs in rep.results.items()}
    assert seeds["static"] == seeds["potential"] == seeds["oracle"] == [11, 12, 13]


def test_markdown_table_lists_every_policy() -> None:
    text = evaluate(["hpa"], SHORT, episodes=2, seed=0).markdown()
    for name in ("hpa", "static", "oracle", "gap closed", "Paired difference"):
        assert name in text


def test_bad_inputs_fail_clearly(tmp_path) -> None:
    with pytest.raises(EvaluationError, match="unknown policy 'nope'"):
        evaluate(["nope"], SHORT, episodes=1)
    with pytest.raises(EvaluationError, match="episodes must be an integer >= 1"):
        evaluate(["static"], SHORT, episodes=0)
    empty = tmp_path / "not_a_policy"
    empty.mkdir()
    with pytest.raises(EvaluationError, match="not_a_policy"):
        evaluate([str(empty)], SHORT, episodes=1)


def test_cli_writes_json_and_reports_errors(tmp_path, capsys) -> None:
    out = tmp_path / "out.json"
    code = evaluate_cli(
        ["--policies", "potential,oracle", "--scenario", "default", "--episodes", "2",
         "--seed", "0", "--json", str(out)]
    )  # fmt: skip
    assert code == 0
    data = json.loads(out.read_text())
    assert set(data["policies"]) == {"potential", "static", "oracle"}
    assert "| potential |" in capsys.readouterr().out
    assert evaluate_cli(["--policies", "potentail", "--episodes", "1"]) == 2
    assert "unknown policy 'potentail'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        evaluate_cli(["--policies", "static", "--episodes", "-3"])
    assert "expected an integer >= 1" in capsys.readouterr().err


def test_trace_replaces_the_demand(tmp_path) -> None:
    csv = tmp_path / "t.csv"
    rows = ["tick," + ",".join(f"s{j}" for j in range(6))]
    rows += [
        f"{i}," + ",".join(str(100 + (i * (j + 1)) % 37) for j in range(6)) for i in range(400)
    ]
    csv.write_text("\n".join(rows) + "\n")
    base = evaluate(["static"], SHORT, episodes=1, seed=0)
    replay = evaluate(["static"], SHORT, episodes=1, seed=0, trace=csv)
    assert replay.trace == str(csv)
    assert base.per_episode("static", "return") != replay.per_episode("static", "return")


def _synthetic(first: list[float], other: list[float], rollbacks: list[int] | None = None):
    """A report of policies 'mine' and 'theirs' (plus static and oracle) with given returns."""
    from shift_rl.evaluate import EpisodeResult, EvaluationReport

    n = len(first)
    rb = rollbacks or [0] * n

    def rows(name: str, rets: list[float], rbs: list[int]) -> list[EpisodeResult]:
        return [EpisodeResult(name, i, i, r, 0.9, 3, 10, b, 5) for i, (r, b) in
                enumerate(zip(rets, rbs, strict=True))]  # fmt: skip

    results = {
        "mine": rows("mine", first, rb),
        "theirs": rows("theirs", other, [0] * n),
        "static": rows("static", [0.0] * n, [0] * n),
        "oracle": rows("oracle", [100.0] * n, [0] * n),
    }
    return EvaluationReport("toy", "f", n, 0, None, ["mine", "theirs"], ["m0"], ["cpu"],
                            results, episode_ticks=720)  # fmt: skip


def test_verdicts_say_who_wins_in_plain_words() -> None:
    better = _synthetic([52.0, 54.0, 53.0, 55.0], [50.0, 51.0, 50.5, 51.5])
    (v,) = better.verdicts()
    assert v.outcome == "beats" and v.mean == pytest.approx(2.75)
    assert v.line() == "mine beats theirs by +2.8 return [+1.7, +3.8] (95 % CI, 4 paired episodes)"
    worse = _synthetic([50.0, 51.0, 50.5, 51.5], [52.0, 54.0, 53.0, 55.0])
    assert worse.verdicts()[0].outcome == "loses to"
    assert worse.verdict_lines()[0].startswith("mine loses to theirs by -2.8 return")
    tie = _synthetic([50.0, 52.0, 50.0, 52.0], [51.0, 51.0, 51.0, 51.0])
    assert tie.verdicts()[0].outcome == "no significant difference from"
    assert "mine shows no significant difference from theirs" in tie.verdict_lines()[0]
    assert "mine closes 54 % [52, 55] of the gap" in better.verdict_lines()[-1]
    d = better.to_dict()
    assert d["verdicts"][0]["outcome"] == "beats" and d["differences"]["theirs"]["return"][
        "mean"
    ] == pytest.approx(2.75)  # first minus other: positive when the first policy did better


def test_intervals_of_counts_never_go_below_zero() -> None:
    rep = _synthetic([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], rollbacks=[0, 0, 0, 3])
    s = rep.to_dict()["policies"]["mine"]["rollbacks"]
    assert s["mean"] == pytest.approx(0.75) and s["ci95"][0] == 0.0 and s["ci95"][1] > 0.75
    assert "| 0.8 [0.0, 3.1] |" in rep.markdown()
    real = evaluate(["potential", "hpa"], SHORT, episodes=3, seed=0).to_dict()["policies"]
    for name, metrics in real.items():
        for m in ("slo_violation_ticks", "units_moved", "rollbacks", "invalid_actions"):
            assert metrics[m]["ci95"][0] >= 0.0, (name, m)
        assert (
            0.0
            <= metrics["goal_attainment"]["ci95"][0]
            <= metrics["goal_attainment"]["ci95"][1]
            <= 1.0
        )


def test_cli_prints_what_the_columns_mean_and_a_verdict(capsys) -> None:
    code = evaluate_cli(["--policies", "potential,hpa", "--scenario", "default",
                         "--episodes", "2"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "- invalid: ticks per episode whose plan asked for units" in out
    assert "intervals of counts are clipped at 0" in out
    assert any(line.startswith("potential ") and " hpa" in line and "2 paired episodes" in line
               for line in out.splitlines())  # fmt: skip


def test_cli_checks_json_and_plots_before_running(tmp_path, monkeypatch, capsys) -> None:
    import scripts.evaluate as cli

    calls = []
    monkeypatch.setattr(cli, "evaluate", lambda *a, **k: calls.append(1))
    folder = tmp_path / "out"
    folder.mkdir()
    assert evaluate_cli(["--policies", "static", "--json", str(folder)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert not (tmp_path / "out.tmp").exists()
    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": 1}')
    assert evaluate_cli(["--policies", "static", "--json", str(notes)]) == 2
    assert "refusing to overwrite it" in capsys.readouterr().err
    assert notes.read_text() == '{"mine": 1}'
    (folder / "thesis.txt").write_text("x")
    assert evaluate_cli(["--policies", "static", "--plots", str(folder)]) == 2
    assert "thesis.txt" in capsys.readouterr().err
    assert calls == []  # nothing ran


def test_cli_replaces_its_own_json_and_figures_only(tmp_path, capsys) -> None:
    out, plots = tmp_path / "out.json", tmp_path / "plots"
    args = ["--policies", "potential", "--scenario", "default", "--episodes", "2",
            "--json", str(out), "--plots", str(plots)]  # fmt: skip
    assert evaluate_cli(args) == 0
    (plots / "caption.txt").write_text("mine")
    assert evaluate_cli(args) == 0  # the second run replaces its own outputs
    assert (plots / "caption.txt").read_text() == "mine"
    names = sorted(p.name for p in plots.iterdir() if not p.name.startswith("."))
    assert names == ["allocation_potential.png", "allocation_static.png", "caption.txt",
                     "leaderboard.png", "metrics.png", "reward_per_tick.png"]  # fmt: skip
    assert json.loads(out.read_text())["episodes"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "plots"]


def test_figures_name_scenario_and_episodes_and_keep_counts_above_zero() -> None:
    from matplotlib.collections import LineCollection

    from shift_rl import plots

    rep = evaluate(["potential", "hpa"], SHORT, episodes=3, seed=0, record=True)
    where = "scenario 'default', 3 paired episodes (seeds 0..2)"
    figs = {
        "metrics": plots.metrics_figure(rep),
        "leaderboard": plots.leaderboard_figure(rep),
        "reward": plots.reward_figure(rep),
        "allocation": plots.allocation_figure(rep, "potential"),
    }
    for name, fig in figs.items():
        title = fig.get_suptitle()
        assert "scenario 'default'" in title, name
        if name != "allocation":
            assert where in title, (name, title)
        for ax in fig.axes:
            if ax.get_visible() and ax.has_data():
                assert ax.get_xlabel() or name == "allocation", (name, ax.get_title())
    assert "episode 0 (seed 0)" in figs["allocation"].get_suptitle()
    for ax in figs["metrics"].axes[3:]:  # the count panels: no whisker below 0
        assert "per episode" in ax.get_xlabel()
        for coll in ax.collections:
            if isinstance(coll, LineCollection):
                for seg in coll.get_segments():
                    assert seg[:, 0].min() >= 0.0, ax.get_xlabel()
    labels = [t.get_text() for ax in figs["reward"].axes for t in ax.get_legend().get_texts()]
    assert "oracle upper bound" in labels
    assert set(plots.figures(rep)) == {"metrics.png", "leaderboard.png", "reward_per_tick.png",
                                       "allocation_potential.png", "allocation_hpa.png",
                                       "allocation_static.png"}  # fmt: skip


def test_gap_closed_is_the_ratio_of_mean_improvements_not_the_mean_of_ratios() -> None:
    """An episode where static is near the oracle makes per-episode ratios explode; the
    summary's ratio of means does not, and its bootstrap interval is reproducible."""
    from shift_rl.evaluate import EpisodeResult, EvaluationReport, ratio_of_means

    static, oracle = [0.0, 0.0, 0.0, 99.0], [100.0, 100.0, 100.0, 100.0]
    mine = [80.0, 90.0, 85.0, 90.0]  # the last episode: -9 against a headroom of 1
    results = {
        name: [EpisodeResult(name, i, i, r, 0.9, 0, 0, 0, 0) for i, r in enumerate(rets)]
        for name, rets in (("mine", mine), ("static", static), ("oracle", oracle))
    }
    rep = EvaluationReport("toy", "f", 4, 0, None, ["mine"], ["m0"], ["cpu"], results,
                           episode_ticks=720)  # fmt: skip
    per_episode = rep.per_episode("mine", "gap_closed")
    assert per_episode.mean() == pytest.approx((0.8 + 0.9 + 0.85 - 9.0) / 4)  # -1.6: noise
    gap = rep.to_dict()["policies"]["mine"]["gap_closed"]
    assert gap["mean"] == pytest.approx((80 + 90 + 85 - 9) / (100 + 100 + 100 + 1))
    assert gap["ci95"][0] <= gap["mean"] <= gap["ci95"][1]
    again = ratio_of_means(np.array(mine) - static, np.array(oracle) - static, 720)
    assert again == gap
    diff = rep.to_dict()["differences"]["static"]["gap_closed"]
    assert diff["mean"] == pytest.approx(gap["mean"])  # mine minus static, over the same span
