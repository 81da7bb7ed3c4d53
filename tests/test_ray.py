"""Ray: evaluation, tuning and the fan-out give the serial results; a 2-trial smoke sweep.

Marked ``ray`` (``pytest -m ray``) and skipped when Ray is not installed
(``pip install "shift_rl[ray]"``). One local Ray with 2 CPUs is started per module; the code
under test reuses it, as it would reuse any Ray the caller started.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from scripts.evaluate import main as evaluate_cli  # noqa: E402
from shift_rl.config import ConfigError  # noqa: E402
from shift_rl.distributed import LOCAL_RAY, FanOut, check_nodes, noop, start_ray  # noqa: E402
from shift_rl.sweep import SWEEPS_DIR, run_sweep  # noqa: E402
from shift_rl.tuning import tune  # noqa: E402

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    _, started = start_ray(LOCAL_RAY, workers=2)
    assert ray.cluster_resources().get("CPU") == 2
    yield
    if started:
        ray.shutdown()


def _fails_on_two(x: int) -> int:
    if x == 2:
        raise ValueError("two is not allowed")
    return x


def test_ray_map_keeps_order_and_raises_the_task_error() -> None:
    with FanOut(ray_address=LOCAL_RAY) as pool:
        assert pool.mode == "ray" and pool.width == 2
        assert pool.map(noop, range(25)) == list(range(25))
        with pytest.raises(ValueError, match="two is not allowed"):
            pool.map(_fails_on_two, range(4))
    assert ray.is_initialized()  # the fixture's Ray is left running
    (identity,) = check_nodes(ray)  # the worker imports this checkout
    assert identity["package"] == str(ROOT / "shift_rl")


def test_evaluation_json_is_identical_serial_processes_and_ray(tmp_path) -> None:
    policies = "potential,hpa,oracle," + str(ROOT / "agents" / "ppo-default")
    base = ["--policies", policies, "--scenario", "default", "--episodes", "3", "--seed", "4"]
    runs = {"serial": [], "workers": ["--workers", "2"], "ray": ["--ray"]}
    texts = {}
    for name, extra in runs.items():
        out = tmp_path / f"{name}.json"
        assert evaluate_cli([*base, *extra, "--json", str(out)]) == 0
        texts[name] = out.read_bytes()
    assert texts["serial"] == texts["workers"] == texts["ray"]
    assert json.loads(texts["ray"])["policies"]["potential"]["return"]["n"] == 3


def test_tuning_picks_the_same_parameters_on_ray(tmp_path) -> None:
    short = tmp_path / "short.yaml"
    default = ROOT / "configs" / "scenarios" / "default.yaml"
    short.write_text(f"extends: {default}\nname: short\nepisode_ticks: 120\n")
    a = tune("hpa", [str(short)], trials=3, episodes=2, out_dir=tmp_path / "serial")
    b = tune("hpa", [str(short)], trials=3, episodes=2, out_dir=tmp_path / "ray",
             ray_address=LOCAL_RAY)  # fmt: skip
    assert (a["params"], a["objective"]) == (b["params"], b["objective"])
    csv = [(tmp_path / d / "hpa" / "trials.csv").read_text() for d in ("serial", "ray")]
    assert csv[0] == csv[1]


def test_smoke_sweep_runs_two_trials_writes_their_folders_and_resumes(tmp_path) -> None:
    out = tmp_path / "smoke"
    res = run_sweep(SWEEPS_DIR / "smoke.yaml", out=out)
    assert res["trials"] == 2
    trials = [t for c in res["configurations"] for t in c["trials"]]
    assert {t["status"] for t in trials} <= {"complete", "stopped"}
    assert any(t["status"] == "complete" for t in trials)
    for t in trials:
        folder = out / t["folder"]
        assert (folder / "run" / "config.yaml").is_file()
        assert (folder / "run" / "tb").is_dir()
        assert t["validations"] >= 1 and t["final"] is not None
        if t["status"] == "complete":
            assert (folder / "run" / "policy" / "policy.json").is_file()
            assert t["timesteps"] == 2880 and t["validations"] == 2
    best = res["best"]
    assert best is not None and best["seeds"] == [0]
    assert "ppo.learning_rate" in best["values"] and "gap_closed" in best
    md = (out / "results.md").read_text()
    assert "**Best: configuration" in md
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(res))
    assert not (ROOT / "agents" / "smoke-c000-s0").exists()
    # every trial finished: resuming reruns nothing and gives the same table
    assert run_sweep(SWEEPS_DIR / "smoke.yaml", out=out, resume=True) == res
    with pytest.raises(ConfigError, match="already holds a sweep"):
        run_sweep(SWEEPS_DIR / "smoke.yaml", out=out)


class _FakeRay:
    """Stands for a cluster with one node whose worker reports ``identity``."""

    def __init__(self, identity: dict) -> None:
        self.identity = identity

    def nodes(self) -> list[dict]:
        return [{"Alive": True, "NodeID": "ab" * 28, "NodeManagerAddress": "10.0.0.7"}]

    def remote(self, **_):
        identity = self.identity

        class Remote:
            def __init__(self, fn) -> None:
                pass

            def options(self, **_):
                return self

            def remote(self):
                return identity

        return Remote

    def get(self, refs):
        return refs


def test_a_node_running_other_code_is_named() -> None:
    from shift_rl.distributed import DistributedError, worker_identity

    mine = worker_identity()
    assert check_nodes(_FakeRay(mine)) == [mine]
    other = {**mine, "fingerprint": "0" * 64, "package": "/opt/old/shift_rl"}
    with pytest.raises(DistributedError, match=r"10\.0\.0\.7 runs shift_rl .* /opt/old/") as err:
        check_nodes(_FakeRay(other))
    assert "they differ in fingerprint." in str(err.value)
    with pytest.raises(DistributedError, match="differ in numpy"):
        check_nodes(_FakeRay({**mine, "numpy": "1.0.0"}))
