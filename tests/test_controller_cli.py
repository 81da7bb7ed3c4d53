"""scripts/controller.py refuses bad loop settings before anything starts (issue 14)."""

from __future__ import annotations

import pytest

from scripts.controller import main


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--interval", "inf"], "argument --interval: must be a finite number of seconds >= 0"),
        (["--interval", "nan"], "argument --interval: must be a finite number of seconds >= 0"),
        (["--interval", "-1"], "argument --interval: must be a finite number of seconds >= 0"),
        (["--interval", "soon"], "argument --interval: expected seconds, got 'soon'"),
        (["--ticks", "0"], "argument --ticks: expected an integer >= 1, got 0"),
        (["--ticks", "2.5"], "argument --ticks: expected an integer"),
    ],
)
def test_bad_interval_or_ticks_are_refused_by_the_parser(capsys, args, message) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--policy", "static", *args])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_a_good_interval_runs(capsys, tmp_path) -> None:
    code = main(["--policy", "static", "--scenario", "default", "--ticks", "2",
                 "--interval", "0.0", "--state-dir", str(tmp_path)])  # fmt: skip
    assert code == 0 and "| ticks | 2 |" in capsys.readouterr().out


def test_a_tick_line_and_the_summary_describe_plans() -> None:
    from scripts.controller import summary_rows, tick_line
    from shift_rl.controller import TickRecord

    names, kinds = ["a", "b", "c", "d", "e", "f", "g", "h"], ["cpu"]
    plan = [[0, 1, 0, 2], [2, 3, 0, 1], [4, 5, 0, 1], [6, 7, 0, 1]]
    rec = TickRecord(tick=7, mode="active", shifts=plan, status="ok", excluded=[3],
                     goal_attainment=0.9, reward=0.8)  # fmt: skip
    line = tick_line(rec, names, kinds)
    assert "4 shifts (5 units): 2 a->b, 1 c->d, 1 e->f, +1 more" in line
    assert "excluded 1 (no telemetry)" in line and line.startswith("tick     7")
    shadow = TickRecord(tick=8, mode="shadow", shifts=plan[:1], status="shadow",
                        shadow_potential_shifts=plan[1:3])  # fmt: skip
    line = tick_line(shadow, names, kinds)
    assert "would shift 1 shift (2 units): 2 a->b" in line
    assert "potential proposes 2 shifts (2 units): 1 c->d, 1 e->f" in line
    rows = dict(summary_rows([rec, TickRecord(tick=8, mode="active")], "active", 1.0))
    assert rows["shifts"] == 4 and rows["units moved"] == 5 and rows["most shifts in a tick"] == 4
    rows = dict(summary_rows([shadow], "shadow", 1.0))
    assert rows["shifts proposed (would have moved)"] == 1
    assert rows["potential proposed shifts"] == 2 and rows["units moved"] == "0 (shadow)"
