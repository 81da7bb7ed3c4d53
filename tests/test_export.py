"""Exported policies: exact parity with SB3, ONNX agreement, and files that cannot run code."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shift_rl.controller import ShiftController, SimulatedBackend
from shift_rl.env import ResourceShiftEnv
from shift_rl.evaluate import EvaluationError, evaluate
from shift_rl.runtime import POLICY_JSON, WEIGHTS, PolicyFileError, load_policy, spec_digest
from shift_rl.train import SB3Policy, export_trained

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, object]:
    """A (briefly trained) MaskablePPO model on the default scenario and its export."""
    from sb3_contrib import MaskablePPO

    from shift_rl.config import load_scenario, load_train_config

    env = ResourceShiftEnv("default")
    model = MaskablePPO("MlpPolicy", env, n_steps=64, batch_size=64, n_epochs=1, seed=0,
                        policy_kwargs={"net_arch": [64, 64]}, device="cpu")  # fmt: skip
    model.learn(128)
    out = tmp_path_factory.mktemp("policy") / "p"
    cfg = load_train_config(
        None, ["run_name=export-test", "algo=maskable_ppo", "network.net_arch=[64, 64]"]
    )
    export_trained(model, cfg, load_scenario("default"), out)
    return out, model


def test_numpy_policy_matches_sb3_on_10000_observations(exported) -> None:
    folder, model = exported
    policy = load_policy(folder)
    sb3 = SB3Policy(model)
    env = ResourceShiftEnv("default")
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(1)
    steps = 0
    while steps < 10_000:
        mask = env.action_masks()
        expected = sb3.act(obs, mask)
        got = policy.act(obs, mask)
        assert np.array_equal(got, expected), (steps, got, expected)
        action = expected if rng.random() < 0.5 else env.action_space.sample()
        obs, _, _, truncated, _ = env.step(action)
        steps += 1
        if truncated:
            obs, _ = env.reset()


def test_onnx_logits_agree_within_1e_5(exported) -> None:
    ort = pytest.importorskip("onnxruntime")
    folder, _ = exported
    policy = load_policy(folder)
    session = ort.InferenceSession(str(folder / "policy.onnx"))
    env = ResourceShiftEnv("default")
    obs, _ = env.reset(seed=2)
    batch = [obs]
    for _ in range(499):
        obs, *_ = env.step(env.action_space.sample())
        batch.append(obs)
    x = np.array(batch, dtype=np.float32)
    onnx_logits = session.run(None, {"observation": x})[0]
    numpy_logits = np.array([policy.logits(o) for o in x])
    np.testing.assert_allclose(onnx_logits, numpy_logits, atol=1e-5)


def _copy(folder: Path, dest: Path) -> Path:
    dest.mkdir()
    for f in folder.iterdir():
        (dest / f.name).write_bytes(f.read_bytes())
    return dest


def _rehash(folder: Path) -> None:
    spec = json.loads((folder / POLICY_JSON).read_text())
    for name in spec["files"]:
        spec["files"][name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    spec["spec_sha256"] = spec_digest(spec)
    (folder / POLICY_JSON).write_text(json.dumps(spec))


class _Payload:
    marker: Path

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickle_disguised_as_npz_is_refused_without_running(exported, tmp_path) -> None:
    folder, _ = exported
    evil = _copy(folder, tmp_path / "evil")
    marker = tmp_path / "pwned"
    _Payload.marker = marker
    arr = np.empty(1, dtype=object)
    arr[0] = _Payload()
    with open(evil / WEIGHTS, "wb") as f:
        np.savez(f, head_w=arr)
    _rehash(evil)  # even with matching hashes the file may not unpickle
    with pytest.raises(PolicyFileError, match="not a plain numpy archive"):
        load_policy(evil)
    assert not marker.exists()


def test_tampered_weights_and_other_format_versions_are_refused(exported, tmp_path) -> None:
    folder, _ = exported
    bad = _copy(folder, tmp_path / "tampered")
    blob = bytearray((bad / WEIGHTS).read_bytes())
    blob[200] ^= 0x01
    (bad / WEIGHTS).write_bytes(bytes(blob))
    with pytest.raises(PolicyFileError, match="sha256 does not match"):
        load_policy(bad)
    old = _copy(folder, tmp_path / "v0")
    spec = json.loads((old / POLICY_JSON).read_text())
    spec["format_version"] = 0
    (old / POLICY_JSON).write_text(json.dumps(spec))
    with pytest.raises(PolicyFileError, match="format_version 0 is not supported"):
        load_policy(old)
    with pytest.raises(PolicyFileError, match="not a policy folder"):
        load_policy(tmp_path)


def test_a_policy_for_another_module_count_is_refused(exported) -> None:
    folder, _ = exported
    with pytest.raises(EvaluationError, match=r"expects observations of shape \(100,\)"):
        evaluate([str(folder)], "multi_resource", episodes=1)
    be = SimulatedBackend("multi_resource")
    with pytest.raises(ValueError, match="5 modules"):
        ShiftController(load_policy(folder), be, interval=0)


def test_runtime_path_needs_neither_torch_nor_sb3(exported) -> None:
    folder, _ = exported
    code = (
        "import sys, numpy as np\n"
        "from shift_rl.runtime import load_policy\n"
        "from shift_rl.controller import ShiftController, SimulatedBackend\n"
        f"p = load_policy({str(folder)!r})\n"
        "be = SimulatedBackend('default', seed=0)\n"
        "ShiftController(p, be, interval=0).run(20)\n"
        "bad = [m for m in ('torch', 'stable_baselines3', 'sb3_contrib') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=False)  # fmt: skip
    assert out.returncode == 0, out.stderr


def test_export_cli_round_trip(exported, tmp_path) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "export.py"), "--model", str(tmp_path),
         "--out", str(tmp_path / "x")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 2 and "no checkpoint there" in out.stderr
