"""Sweep files: validated before anything runs, drawn reproducibly (no Ray needed here).

Running a sweep on Ray Tune is tested in ``test_ray.py`` (marked ``ray``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from scripts.sweep import main as sweep_cli
from shift_rl.config import ConfigError
from shift_rl.sweep import SWEEPS_DIR, load_sweep

SMOKE = SWEEPS_DIR / "smoke.yaml"


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(body)
    return path


def test_shipped_sweeps_load_and_every_seed_shares_its_configuration() -> None:
    for path in sorted(SWEEPS_DIR.glob("*.yaml")):
        spec, trials = load_sweep(path)
        assert len(trials) == len(spec.seeds) * len({t.config_id for t in trials})
    spec, trials = load_sweep("ppo_lr_entropy")
    assert len(trials) == 12 and [t.seed for t in trials[:3]] == [0, 1, 2]
    assert trials[0].values == trials[1].values == trials[2].values
    assert trials[0].values != trials[3].values
    assert load_sweep("ppo_lr_entropy")[1] == trials  # drawn from sampler_seed, not by Tune
    assert trials[4].train_config["seed"] == 1
    assert trials[4].train_config["ppo"]["learning_rate"] == trials[4].values["ppo.learning_rate"]
    _, smoke = load_sweep(SMOKE)
    assert [t.folder for t in smoke] == ["config000_seed0", "config001_seed0"]


def test_grid_dimensions_are_crossed_with_the_samples(tmp_path) -> None:
    path = _write(tmp_path, SMOKE.read_text().replace(
        "  ppo.learning_rate: {grid: [3.0e-4, 1.0e-3]}",
        "  ppo.learning_rate: {grid: [3.0e-4, 1.0e-3]}\n  ppo.ent_coef: {uniform: [0.0, 0.1]}",
    ).replace("seeds: [0]", "seeds: [0, 1]\nsamples: 3"))  # fmt: skip
    _, trials = load_sweep(path)
    assert len(trials) == 3 * 2 * 2
    ent = [t.values["ppo.ent_coef"] for t in trials]
    assert len(set(ent)) == 3 and ent[0] == ent[3]  # both rates share a drawn entropy bonus


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("metric: gap_closed", "metric: gap", "metric: must be 'gap_closed' or"),
        ("mode: max", "mode: max\nwokers: 2", "wokers: unknown key"),
        ("{grid: [3.0e-4, 1.0e-3]}", "{grid: [3.0e-4], choice: [1]}", "give exactly one of"),
        ("{grid: [3.0e-4, 1.0e-3]}", "{uniform: [0.1, 0.01]}", "low 0.1 must be below high"),
        ("ppo.learning_rate:", "ppo.learing_rate:", "did you mean 'ppo.learning_rate'"),
        ("ppo.learning_rate: {grid: [3.0e-4, 1.0e-3]}", "seed: {grid: [1, 2]}", "sets 'seed'"),
        ("{grid: [3.0e-4, 1.0e-3]}", "{grid: [-1.0]}", "ppo.learning_rate: must be a number > 0"),
        ("seeds: [0]", "seeds: [0, 0]", "repeats a seed"),
        ("seeds: [0]", "seeds: [0]\nsamples: 2", "no random dimension"),
        ("n_envs=2", "n_envs=3", "must be a multiple of n_steps x n_envs"),
        ("evaluation.every_timesteps=1440", "evaluation.every_timesteps=1000", "multiple of"),
    ],
)
def test_bad_sweeps_fail_with_one_error_naming_file_and_field(tmp_path, old, new, message):
    text = SMOKE.read_text()
    assert old in text
    path = _write(tmp_path, text.replace(old, new))
    with pytest.raises(ConfigError, match="sweep") as err:
        load_sweep(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_cli_dry_run_lists_trials_and_needs_no_ray(capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    assert sweep_cli([str(SMOKE), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "2 trials" in out and "config001_seed0: ppo.learning_rate=0.001" in out
    assert sweep_cli([str(SMOKE), "--out", "/nonexistent/x"]) == 2
    assert 'pip install "shift_rl[ray]"' in capsys.readouterr().err
    assert sweep_cli(["no_such_sweep"]) == 2
    assert "shipped sweeps" in capsys.readouterr().err


def test_a_resumed_run_reports_each_validation_once(tmp_path) -> None:
    """What a resumed sweep trial relies on: validations continue on the step grid."""
    from shift_rl.config import load_train_config
    from shift_rl.train import train

    short = tmp_path / "short.yaml"
    default = Path(__file__).resolve().parents[1] / "configs" / "scenarios" / "default.yaml"
    short.write_text(f"extends: {default}\nname: short\nepisode_ticks: 120\n")
    cfg = load_train_config(None, [
        "run_name=r", f"scenario={short}", "algo=ppo", "n_envs=2", "ppo.n_steps=120",
        "ppo.batch_size=120", "ppo.n_epochs=1", "network.net_arch=[16]", "total_timesteps=960",
        "checkpoint_every=480", "evaluation.every_timesteps=240", "evaluation.episodes_during=1",
    ])  # fmt: skip
    seen: list[int] = []
    run = dict(out=tmp_path / "run", progress=False, evaluate_at_end=False)
    half = train(cfg.model_copy(update={"total_timesteps": 480}), **run,
                 on_validation=lambda t, m: seen.append(t))  # fmt: skip
    ckpt = half.run_dir / "checkpoints" / "step_000000480"
    train(cfg, resume=ckpt, **run, on_validation=lambda t, m: seen.append(t))
    assert seen == [240, 480, 720, 960]
