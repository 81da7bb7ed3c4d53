"""The fan-out helper without Ray: serial and process pools give the same ordered results.

The Ray side (local Ray with 2 CPUs) is in ``test_ray.py``, marked ``ray``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from scripts.evaluate import main as evaluate_cli
from shift_rl.config import load_scenario
from shift_rl.distributed import (
    LOCAL_RAY,
    DistributedError,
    FanOut,
    code_fingerprint,
    fan_out,
    local_ray_env,
    noop,
)
from shift_rl.tuning import score, tune

SHORT = load_scenario("default").model_copy(update={"episode_ticks": 120})
DEFAULT = Path(__file__).resolve().parents[1] / "configs" / "scenarios" / "default.yaml"


def _square_or_fail(x: int, fail_at: int) -> int:
    if x == fail_at:
        raise KeyError(f"item {x}")
    return x * x


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_map_keeps_order_and_values(workers) -> None:
    items = list(range(11))
    with FanOut(workers) as pool:
        assert pool.mode == ("serial" if workers == 1 else "processes")
        assert pool.width == workers
        got = pool.map(_square_or_fail, items, [-1] * len(items))
        assert pool.map(noop, []) == []
    assert got == [x * x for x in items]
    assert fan_out(noop, [(i,) for i in items], workers=workers) == items


@pytest.mark.parametrize("workers", [1, 2])
def test_a_task_error_is_raised_as_itself(workers) -> None:
    with FanOut(workers) as pool, pytest.raises(KeyError, match="item 3"):
        pool.map(_square_or_fail, range(5), [3] * 5)


def test_bad_workers_and_unentered_pool_fail_clearly() -> None:
    with pytest.raises(ValueError, match="workers must be >= 1"):
        FanOut(0)
    with pytest.raises(RuntimeError, match="context entered"):
        FanOut(2).map(noop, [1])


def test_without_ray_the_message_says_how_to_install_it(monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(DistributedError, match=r'pip install "shift_rl\[ray\]"'):
        FanOut(ray_address=LOCAL_RAY).__enter__()
    code = evaluate_cli(["--policies", "static", "--episodes", "1", "--ray"])
    assert code == 2
    assert 'pip install "shift_rl[ray]"' in capsys.readouterr().err


def test_local_ray_workers_import_this_checkout() -> None:
    import shift_rl

    root = str(Path(shift_rl.__file__).resolve().parents[1])
    assert local_ray_env()["env_vars"]["PYTHONPATH"].split(":")[0] == root
    assert len(code_fingerprint()) == 64 and code_fingerprint() == code_fingerprint()


def test_tuning_scores_and_picks_the_same_with_processes(tmp_path) -> None:
    seeds = [1_000_000, 1_000_001, 1_000_002]
    serial = score("hpa", {"tolerance": 0.05}, [SHORT, SHORT], seeds)
    with FanOut(2) as pool:
        assert score("hpa", {"tolerance": 0.05}, [SHORT, SHORT], seeds, pool) == serial
    short = tmp_path / "short.yaml"
    short.write_text(f"extends: {DEFAULT}\nname: short\nepisode_ticks: 120\n")
    a = tune("hpa", [str(short)], trials=3, episodes=2, out_dir=tmp_path / "a")
    b = tune("hpa", [str(short)], trials=3, episodes=2, out_dir=tmp_path / "b", workers=2)
    assert (a["params"], a["objective"], a["default_objective"]) == (
        b["params"],
        b["objective"],
        b["default_objective"],
    )
    trials = (tmp_path / "a" / "hpa" / "trials.csv").read_text()
    assert trials == (tmp_path / "b" / "hpa" / "trials.csv").read_text()
