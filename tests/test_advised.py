"""An advised modular policy: a heuristic's plan as a token feature and a prior on the logits
(``network.advisor``; :mod:`shift_rl.modular`, :mod:`shift_rl.suite_training`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from stable_baselines3 import PPO

from shift_rl.agents import check_policy_fits, make_policy
from shift_rl.config import ConfigError, load_scenario
from shift_rl.env import ResourceShiftEnv
from shift_rl.modular import ADVICE, decode_advice, featurize, forward, presence
from shift_rl.modular_torch import modular_policy
from shift_rl.pretrain import advisor_maker
from shift_rl.runtime import PolicyFileError, load_policy, spec_digest
from shift_rl.scenario import ScenarioParams
from shift_rl.suite_training import make_suite_env, suite_selection

from .test_suite_training import M_MAX, SUITE, TICKS
from .test_suite_training import _cfg as _plain_cfg


@pytest.fixture(scope="module")
def suite_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("suite") / "tiny-advised.yaml"
    path.write_text(yaml.safe_dump(SUITE))
    return path


def _cfg(suite_file: Path, **extra):
    """The tiny suite's training config (tests/test_suite_training.py) advised by hpa."""
    network = {"kind": "modular", "encoder": [16, 16], "actor": [16], "critic": [8],
               "advisor": "hpa"}  # fmt: skip
    return _plain_cfg(suite_file, **{"network": network, "total_timesteps": TICKS * 6 * 4,
                                     **extra})  # fmt: skip


def _model(cfg, shake: bool) -> tuple[PPO, object]:
    env = make_suite_env(cfg, suite_selection(cfg), 0, advisor_maker(cfg))
    policy, kwargs = modular_policy(cfg, env)
    model = PPO(policy, env, n_steps=TICKS, batch_size=96, policy_kwargs=kwargs, device="cpu",
                seed=0)  # fmt: skip
    if shake:  # random weights everywhere, the gain too (the init's logits are ~0)
        gen = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for p in model.policy.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return model, env


def _export(cfg, model: PPO, out: Path) -> Path:
    from shift_rl.train import export_trained

    return export_trained(model, cfg, load_scenario("default"), out)


def test_the_observation_carries_the_advisors_plan(suite_file: Path) -> None:
    cfg = _cfg(suite_file)
    env = make_suite_env(cfg, suite_selection(cfg), 0, advisor_maker(cfg))
    names = env.observation_names
    cols = [names.index(f"m{i}.{ADVICE}.cpu") for i in range(M_MAX)]
    make = lambda sc: make_policy("hpa", ScenarioParams.from_config(sc))  # noqa: E731
    obs = env.reset()
    rng = np.random.default_rng(0)
    moved = 0
    for _ in range(TICKS - 2):  # within the first episode: both heuristics saw the same ticks
        want = env.teacher_actions(make)  # a second hpa per row, on the same observations
        np.testing.assert_array_equal(decode_advice(obs[:, cols], 3), want)
        np.testing.assert_array_equal(env.advice_actions(), want)  # a warm start's targets
        moved += int((want != 3).sum())
        obs, *_ = env.step(rng.integers(0, 7, (env.num_envs, M_MAX)))
    assert moved > 0  # hpa moved something: the check is not all "no change"
    assert np.all(obs[:, cols] >= -1) and np.all(obs[:, cols] <= 1)


def test_an_untrained_advised_policy_acts_as_its_advisor(suite_file: Path, tmp_path: Path) -> None:
    """SB3's init gives logits of ~0.01 and the gain is 6: the exported policy plays its
    advisor's plans exactly, on 6 modules and on 64 (levels 1, 2, 4, 8: the advisor's 8 units
    are the policy's 4)."""
    cfg = _cfg(suite_file)
    model, _ = _model(cfg, shake=False)
    policy = load_policy(_export(cfg, model, tmp_path / "p"))
    assert policy.spec["advisor"]["name"] == "hpa"
    for name in ("default", "large"):
        env = ResourceShiftEnv(load_scenario(name))
        check_policy_fits(policy, "p", env.params)
        twin = make_policy("hpa", env.params, **policy.spec["advisor"]["params"])
        obs, _ = env.reset(seed=0)
        policy.reset()
        twin.reset()
        moved = 0
        for _ in range(60):
            mask = env.action_masks()
            want = policy.advice_levels[twin.act(obs, mask)]
            if policy.level_map is not None:
                want = policy.level_map[want]
            got = policy.act(obs, mask)
            np.testing.assert_array_equal(got, want)
            moved += int((got != env.action_space.nvec[0] // 2).sum())
            obs, *_ = env.step(got)
        assert moved > 0, name


def test_numpy_torch_and_onnx_agree_with_advice(suite_file: Path, tmp_path: Path) -> None:
    cfg = _cfg(suite_file)
    model, env = _model(cfg, shake=True)
    ext = model.policy.mlp_extractor
    obs = env.reset()
    for _ in range(5):
        obs, *_ = env.step(np.random.default_rng(0).integers(0, 7, (env.num_envs, M_MAX)))
    tokens, globals_ = featurize(obs, ext.layout)
    present = presence(obs, ext.layout)
    z_np, v_np = forward(tokens, globals_, model.policy._weights(), present=present)
    with torch.no_grad():
        z_t, v_t = ext.net(torch.from_numpy(tokens), torch.from_numpy(globals_),
                           torch.from_numpy(present))  # fmt: skip
    np.testing.assert_allclose(z_np, z_t.numpy(), atol=1e-4)
    np.testing.assert_allclose(v_np, v_t.numpy(), atol=1e-4)
    # the gain matters: without it the argmax differs somewhere
    plain = forward(tokens, globals_, model.policy._weights(), present=present)[0]
    plain = (
        plain
        - ext.net.advice_gain.item()
        * (decode_advice(tokens[..., -1], 3)[..., None] == np.arange(7))
        * present[..., None]
    )
    assert (plain.argmax(-1) != z_np.argmax(-1)).any()

    folder = _export(cfg, model, tmp_path / "p")
    policy = load_policy(folder)
    real = ResourceShiftEnv(load_scenario("default"))
    check_policy_fits(policy, "p", real.params)
    x, _ = real.reset(seed=0)
    x, *_ = real.step(real.action_space.sample())
    mask = real.action_masks()
    policy.reset()
    logits = policy.logits(x, mask)  # one advisor call: reset again for the same advice below
    ort = pytest.importorskip("onnxruntime")
    if not (folder / "policy.onnx").is_file():
        pytest.skip("onnx / onnxscript not installed: no ONNX graph exported")
    policy.reset()
    tokens, globals_ = featurize(x[None], policy.layout_for(x.size), False, policy.advice(x, mask))
    assert tokens.shape[-1] == len(policy.spec["features"]["token"])
    session = ort.InferenceSession(str(folder / "policy.onnx"))
    (onnx_logits,) = session.run(None, {"tokens": tokens, "globals": globals_})
    np.testing.assert_allclose(onnx_logits.reshape(-1, 7), logits, atol=1e-4)


def test_bad_advisors_are_refused(suite_file: Path, tmp_path: Path) -> None:
    cfg = _cfg(suite_file)
    model, _ = _model(cfg, shake=False)
    src = _export(cfg, model, tmp_path / "p")

    def edited(name: str, change) -> Path:
        out = tmp_path / name
        shutil.copytree(src, out)
        spec = json.loads((out / "policy.json").read_text())
        change(spec)
        spec["spec_sha256"] = spec_digest(spec)
        (out / "policy.json").write_text(json.dumps(spec))
        return out

    with pytest.raises(PolicyFileError, match=r"advisor\.name"):  # it reads the truth
        load_policy(edited("oracle", lambda s: s["advisor"].update(name="oracle-mpc")))
    with pytest.raises(PolicyFileError, match=r"features\.token"):  # advice without advisor
        load_policy(edited("none", lambda s: s.pop("advisor")))
    bad = load_policy(edited("params", lambda s: s["advisor"]["params"].update(nope=1)))
    env = ResourceShiftEnv(load_scenario("default"))
    with pytest.raises(PolicyFileError, match="advisor 'hpa' with parameters"):
        check_policy_fits(bad, "p", env.params)
    unbound = load_policy(src)
    with pytest.raises(PolicyFileError, match="bind it to a scenario"):
        unbound.act(env.reset(seed=0)[0])


def test_advisor_config_needs_a_suite(suite_file: Path) -> None:
    with pytest.raises(ConfigError, match=r"network\.advisor"):
        _cfg(suite_file, suite=None)
    with pytest.raises(ConfigError, match=r"network\.advisor"):
        _cfg(suite_file, network={"kind": "modular", "advisor": "oracle-mpc"})


def test_tiny_advised_training_learns_the_gain(suite_file: Path, tmp_path: Path) -> None:
    from shift_rl.train import train

    cfg = _cfg(suite_file)
    res = train(cfg, out=tmp_path / "run", progress=False, evaluate_at_end=False)
    policy = load_policy(res.export_dir)
    assert float(policy.net.advice_gain[0]) != pytest.approx(6.0, abs=1e-7)  # a parameter
    for name in ("default", "large"):
        env = ResourceShiftEnv(load_scenario(name))
        check_policy_fits(policy, str(res.export_dir), env.params)
        obs, _ = env.reset(seed=0)
        policy.reset()
        for _ in range(3):
            obs, *_ = env.step(policy.act(obs, env.action_masks()))


def test_the_config_offers_the_advisors_the_runtime_loads() -> None:
    """``network.advisor``'s choices and :data:`shift_rl.modular.ADVISORS` are one list."""
    import typing

    from shift_rl.config import NetworkConfig
    from shift_rl.modular import ADVISORS

    annotation = NetworkConfig.model_fields["advisor"].annotation
    (choices,) = [a for a in typing.get_args(annotation) if a is not type(None)]
    assert set(typing.get_args(choices)) == set(ADVISORS)
