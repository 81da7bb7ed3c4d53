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
from shift_rl.runtime import PolicyFileError, load_policy
from shift_rl.train import algo_class, check_alignment, train

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
    resumed = train(_cfg(short_scenario, 960, "half", algo, vec_env), out=tmp_path / "resumed",
                    resume=ckpt, progress=False, evaluate_at_end=False)  # fmt: skip
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
    result = train(_cfg(short_scenario, 480, "smoke"), out=tmp_path / "agent", progress=False)
    assert result.timesteps == 480
    run = result.run_dir
    assert (run / "config.yaml").is_file() and (run / "command.txt").is_file()
    assert any((run / "tb").rglob("events.out.tfevents.*"))
    card = (tmp_path / "agent" / "README.md").read_text()
    assert "| smoke |" in card and "| potential |" in card and "seed" in card
    report = result.report.to_dict()
    assert set(report["policies"]) == {str(tmp_path / "agent"), "potential", "static", "oracle"}
    # the exported numpy actor picks exactly the SB3 model's deterministic actions
    policy = load_policy(tmp_path / "agent")
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
    weights = tmp_path / "agent" / "weights.npz"
    blob = bytearray(weights.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with pytest.raises(PolicyFileError, match="sha256 does not match"):
        load_policy(tmp_path / "agent")


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
