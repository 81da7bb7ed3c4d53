"""The training pipeline end to end: config -> training -> checkpoint -> resume -> export.

Short runs on a 120-tick variant of the default scenario: they check behaviour (files,
determinism, parity of the export), never learning quality.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from shift_rl.config import ConfigError, load_train_config
from shift_rl.env import ResourceShiftEnv
from shift_rl.outputs import OutputError
from shift_rl.runtime import PolicyFileError, load_policy
from shift_rl.train import (
    RUNS_DIR,
    algo_class,
    check_alignment,
    check_run_folder,
    run_folder,
    train,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def short_scenario(tmp_path: Path) -> Path:
    path = tmp_path / "short.yaml"
    default = ROOT / "configs" / "scenarios" / "default.yaml"
    path.write_text(f"extends: {default}\nname: short\nepisode_ticks: 120\n")
    return path


def _cfg(scenario: Path, total: int, run: str, algo: str = "maskable_ppo", vec_env: str = "dummy"):
    return load_train_config(
        None,
        [
            f"run_name={run}", f"scenario={scenario}", f"algo={algo}", "n_envs=2",
            f"vec_env={vec_env}",
            "ppo.n_steps=120", "ppo.batch_size=120", "ppo.n_epochs=2", "network.net_arch=[32]",
            f"total_timesteps={total}", "checkpoint_every=480", "randomization.variants=2",
            "evaluation.episodes=2", "evaluation.every_timesteps=240",
            "evaluation.episodes_during=1", "evaluation.baselines=[potential, static]",
        ],
    )  # fmt: skip


def _params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.policy.state_dict().items()}


@pytest.mark.parametrize("vec_env", ["dummy", "batched"])
@pytest.mark.parametrize("algo", ["maskable_ppo", "ppo"])
def test_resume_continues_exactly(short_scenario, tmp_path, monkeypatch, algo, vec_env) -> None:
    import shift_rl.train as tr

    monkeypatch.setattr(tr, "RUNS_DIR", tmp_path / "runs")
    full = train(_cfg(short_scenario, 960, "full", algo, vec_env), out=tmp_path / "full",
                 progress=False, evaluate_at_end=False)  # fmt: skip
    half = train(_cfg(short_scenario, 480, "half", algo, vec_env), out=tmp_path / "half",
                 progress=False, evaluate_at_end=False)  # fmt: skip
    ckpt = half.run_dir / "checkpoints" / "step_000000480"
    assert (ckpt / "model.zip").is_file() and (ckpt / "rng.npz").is_file()
    with pytest.raises(OutputError, match="already holds a run"):  # a fresh run: refused
        check_run_folder(half.run_dir)
    resumed = train(_cfg(short_scenario, 960, "half", algo, vec_env), resume=ckpt,
                    progress=False, evaluate_at_end=False)  # fmt: skip
    # the resumed run continues in its checkpoint's run folder and says what this call did
    assert resumed.run_dir == half.run_dir
    assert (resumed.trained, resumed.timesteps, resumed.resumed_from) == (480, 960, 480)
    assert (half.run_dir / "command.txt").read_text().count("\ngit ") == 2
    assert sorted(p.name for p in (half.run_dir / "tb").iterdir()) == ["ppo_1"]
    cls = algo_class(_cfg(short_scenario, 960, "x", algo))
    a = _params(cls.load(full.run_dir / "checkpoints" / "step_000000960" / "model.zip"))
    b = _params(cls.load(resumed.run_dir / "checkpoints" / "step_000000960" / "model.zip"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # the uninterrupted run also checkpointed at 480; the halves differ from the start
    assert not all(torch.equal(a[k], v) for k, v in _params(cls.load(ckpt / "model.zip")).items())


def test_pipeline_exports_an_evaluated_policy_with_parity(short_scenario, tmp_path, monkeypatch):
    import shift_rl.train as tr

    monkeypatch.setattr(tr, "RUNS_DIR", tmp_path / "runs")
    result = train(_cfg(short_scenario, 480, "smoke"), out=tmp_path / "run", progress=False)
    assert result.timesteps == result.trained == 480
    run = result.run_dir
    assert run == tmp_path / "run" and result.export_dir == run / "policy"
    assert (run / "config.yaml").is_file() and (run / "command.txt").is_file()
    assert any((run / "tb").rglob("events.out.tfevents.*"))
    assert not (tmp_path / "runs").exists()  # --out chose the run folder: nothing in runs/
    agent = result.export_dir
    card = (agent / "README.md").read_text()
    assert "| smoke |" in card and "| potential |" in card and "seed" in card
    assert (
        "smoke beats potential" in card
        or "smoke loses to potential" in card
        or ("smoke shows no significant difference from potential" in card)
    )
    report = result.report.to_dict()
    assert set(report["policies"]) == {str(agent), "potential", "static", "oracle"}
    assert report["labels"][str(agent)] == "smoke"
    # the exported numpy actor picks exactly the SB3 model's deterministic actions
    policy = load_policy(agent)
    assert (policy.mode, policy.nvec.tolist()) == ("plan", [7] * 6)
    model = algo_class(_cfg(short_scenario, 480, "x")).load(
        run / "checkpoints" / "step_000000480" / "model.zip"
    )
    env = ResourceShiftEnv(str(short_scenario))
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(300):
        mask = env.action_masks()
        sb3, _ = model.predict(obs, deterministic=True, action_masks=mask)
        np.testing.assert_array_equal(policy.act(obs, mask), sb3)
        obs, _, _, truncated, _ = env.step(env.action_space.sample() if rng.random() < 0.3 else sb3)
        if truncated:
            obs, _ = env.reset()
    # tampering with the weights is caught before anything is read
    weights = agent / "weights.npz"
    blob = bytearray(weights.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with pytest.raises(PolicyFileError, match="sha256 does not match"):
        load_policy(agent)


@pytest.fixture
def short_shift_scenario(tmp_path: Path, short_scenario: Path) -> Path:
    path = tmp_path / "short_shift.yaml"
    path.write_text(f"extends: {short_scenario}\nname: short-shift\naction: {{mode: shift}}\n")
    return path


def test_single_shift_mode_trains_and_exports_its_mode(short_shift_scenario, tmp_path) -> None:
    cfg = load_train_config(None, [
        "run_name=shift", f"scenario={short_shift_scenario}", "algo=maskable_ppo", "n_envs=2",
        "vec_env=batched", "ppo.n_steps=120", "ppo.batch_size=120", "ppo.n_epochs=1",
        "network.net_arch=[16]", "total_timesteps=240", "checkpoint_every=240",
        "randomization.variants=0", "evaluation.every_timesteps=240",
        "evaluation.episodes_during=1", "evaluation.episodes=1",
        "evaluation.baselines=[potential]",
    ])  # fmt: skip
    result = train(cfg, out=tmp_path / "run", progress=False)
    policy = load_policy(result.export_dir)
    assert (policy.mode, policy.nvec.tolist()) == ("shift", [6, 6, 3])
    assert policy.spec["action"]["layout"].startswith("(source, target")
    assert result.report is not None


def test_alignment_and_bad_overrides_fail_before_training(short_scenario) -> None:
    from shift_rl.config import load_scenario

    cfg = _cfg(short_scenario, 500, "x")
    with pytest.raises(ConfigError, match=r"total_timesteps: 500 must be a multiple of"):
        check_alignment(cfg, load_scenario(str(short_scenario)))
    with pytest.raises(ConfigError, match=r"ppo\.learnig_rate: unknown key"):
        load_train_config(None, ["ppo.learnig_rate=0.1"])
    with pytest.raises(ConfigError, match="n_envs: must be an integer >= 1"):
        load_train_config(None, ["n_envs=two"])


def test_cli_rejects_bad_config_fast() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train.py"), "--set", "algo=dqn"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 2
    assert "algo: must be 'ppo' or 'maskable_ppo' (got 'dqn')" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("name", [".", "..", "a/b", "../up", ".hidden", "''"])
def test_run_name_is_a_plain_folder_name(name: str) -> None:
    with pytest.raises(ConfigError, match="run_name: must be a plain folder name"):
        load_train_config(None, [f"run_name={name}"])
    assert load_train_config(None, ["run_name=ppo-v1.2_b"]).run_name == "ppo-v1.2_b"


def test_a_run_with_families_left_out_gets_its_own_default_folder(tmp_path) -> None:
    """The README trains configs/train/generalist.yaml, then the same with --leave-out: the
    second must not collide with the first run's folder."""
    cfg = load_train_config(ROOT / "configs" / "train" / "generalist.yaml")
    assert run_folder(cfg) == RUNS_DIR / "ppo-generalist"
    left = cfg.model_copy(update={"leave_out": ["worldcup98", "google_2011_jobs"]})
    assert run_folder(left) == RUNS_DIR / "ppo-generalist-without-google_2011_jobs-worldcup98"
    assert run_folder(left, out=tmp_path / "x") == tmp_path / "x"


def test_run_folders_never_take_releases_or_foreign_files(tmp_path) -> None:
    with pytest.raises(OutputError, match="holds the shipped releases"):
        check_run_folder(ROOT / "agents" / "my-policy")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.txt").write_text("x")
    with pytest.raises(OutputError, match=r"thesis\.txt"):
        check_run_folder(mine)
    check_run_folder(tmp_path / "new")  # new: fine, and nothing is created by the check
    assert not (tmp_path / "new").exists()


def test_progress_shows_elapsed_and_time_left() -> None:
    import io
    from types import SimpleNamespace

    from shift_rl.train import TrainingProgress

    log = io.StringIO()
    cb = TrainingProgress(1000, stream=log, tty=False)
    cb.model = SimpleNamespace(num_timesteps=0)
    cb._on_training_start()
    for _ in range(100):
        cb.model.num_timesteps += 10
        cb._on_step()
    cb._on_training_end()
    lines = log.getvalue().splitlines()
    assert len(lines) == 10 and "\r" not in log.getvalue()  # one line per tenth, no \r
    assert lines[0].startswith("trained 100/1,000 steps (10 %)") and "left" in lines[0]
    tty = io.StringIO()
    cb = TrainingProgress(1000, stream=tty, tty=True)
    cb.model = SimpleNamespace(num_timesteps=0)
    cb._on_training_start()
    cb.model.num_timesteps = 500
    cb._on_step()
    cb.bar.refresh()
    assert "elapsed" in tty.getvalue() and "left" in tty.getvalue()
    cb._on_training_end()


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_cli_says_what_it_trains_and_found_and_writes_only_its_run_folder(
    short_scenario, tmp_path
) -> None:
    import yaml

    cfg = _cfg(short_scenario, 480, "cli-run", algo="ppo", vec_env="batched")
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    agents = _tree(ROOT / "agents")
    runs = sorted((ROOT / "runs").glob("*")) if (ROOT / "runs").is_dir() else []
    run = tmp_path / "my-run"
    cmd = [sys.executable, str(ROOT / "scripts" / "train.py"), "--config", str(config)]
    out = subprocess.run([*cmd, "--out", str(run)], capture_output=True, text=True,
                         timeout=600, check=False)  # fmt: skip
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for needed in (
        "Training ppo on scenario 'short'", "run name     cli-run", f"run folder   {run}/",
        "timesteps    480 env steps = 2 envs x 2 episodes", "seed         0",
        "evaluation   2 paired held-out episodes, seeds 0..1, against potential, static",
        "| cli-run |", "- invalid: ticks per episode whose plan asked for units",
        "trained 480 steps in", f"policy in {run / 'policy'}/",
        "--out agents/cli-run --release",
    ):  # fmt: skip
        assert needed in text, (needed, text)
    verdicts = [ln for ln in text.splitlines() if ln.startswith("cli-run ") and "static" in ln]
    assert verdicts and "(95 % CI, 2 paired episodes)" in verdicts[0], text
    assert (run / "policy" / "policy.json").is_file() and (run / "checkpoints").is_dir()
    # a second fresh run into the same folder is refused, and resuming reports this call
    again = subprocess.run([*cmd, "--out", str(run)], capture_output=True, text=True,
                           timeout=600, check=False)  # fmt: skip
    assert again.returncode == 2 and "already holds a run" in again.stderr
    ckpt = run / "checkpoints" / "step_000000480"
    more = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train.py"), "--resume", str(ckpt),
         "--set", "total_timesteps=960", "--no-progress"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert more.returncode == 0, more.stderr
    assert "trained 480 steps in this call (resumed at 480; the run now has 960)" in more.stdout
    assert (run / "checkpoints" / "step_000000960").is_dir()
    assert _tree(ROOT / "agents") == agents  # the releases are untouched
    now = sorted((ROOT / "runs").glob("*")) if (ROOT / "runs").is_dir() else []
    assert now == runs  # and nothing went to runs/
