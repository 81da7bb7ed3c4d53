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
