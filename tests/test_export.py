"""Exported policies: exact parity with SB3, ONNX agreement, and files that cannot run code."""

from __future__ import annotations

import hashlib
import itertools
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


def scenario_in(name: str, mode: str):
    """Scenario ``name`` with ``action.mode`` set (plan is every scenario's default)."""
    from shift_rl.config import load_scenario, scenario_from_dict

    data = load_scenario(name).model_dump(mode="json")
    data["action"]["mode"] = mode
    return scenario_from_dict(data, f"{name} in {mode} mode")


def _train_and_export(out: Path, scenario, steps: int = 128, net=(64, 64)) -> object:
    """A briefly trained MaskablePPO model on ``scenario``, exported to ``out``."""
    from sb3_contrib import MaskablePPO

    from shift_rl.config import load_train_config

    env = ResourceShiftEnv(scenario)
    model = MaskablePPO("MlpPolicy", env, n_steps=64, batch_size=64, n_epochs=1, seed=0,
                        policy_kwargs={"net_arch": list(net)}, device="cpu")  # fmt: skip
    model.learn(steps)
    cfg = load_train_config(
        None, ["run_name=export-test", "algo=maskable_ppo", f"network.net_arch={list(net)}"]
    )
    export_trained(model, cfg, scenario, out)
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, object]:
    """A (briefly trained) MaskablePPO model on the default scenario (plan mode) and its
    export."""
    from shift_rl.config import load_scenario

    out = tmp_path_factory.mktemp("policy") / "p"
    return out, _train_and_export(out, load_scenario("default"))


@pytest.fixture(scope="module")
def exported_other(tmp_path_factory) -> dict[str, tuple[Path, object]]:
    """Exports of multi_resource (plan mode, 5 modules x 2 kinds) and of default in
    single-shift mode."""
    from shift_rl.config import load_scenario

    out = {}
    for key, scenario in (("multi_resource", load_scenario("multi_resource")),
                          ("shift", scenario_in("default", "shift"))):  # fmt: skip
        folder = tmp_path_factory.mktemp(key) / "p"
        out[key] = folder, _train_and_export(folder, scenario, net=(32,))
    return out


def _cases(exported, exported_other) -> dict[str, tuple[Path, object, object]]:
    from shift_rl.config import load_scenario

    return {
        "default": (*exported, load_scenario("default")),
        "multi_resource": (*exported_other["multi_resource"], load_scenario("multi_resource")),
        "shift": (*exported_other["shift"], scenario_in("default", "shift")),
    }


def _parity(folder: Path, model, scenario, steps: int, seed: int = 0) -> None:
    policy = load_policy(folder)
    sb3 = SB3Policy(model)
    env = ResourceShiftEnv(scenario)
    assert policy.nvec.tolist() == env.action_space.nvec.tolist()
    env.action_space.seed(seed)  # the random half of the play is reproducible
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(1)
    ties = 0
    for step in range(steps):
        mask = env.action_masks()
        expected = sb3.act(obs, mask)
        got = policy.act(obs, mask)
        ties += _only_float_ties(policy, obs, mask, got, expected, 1e-6, step)
        assert got.dtype == np.int64
        action = expected if rng.random() < 0.5 else env.action_space.sample()
        obs, _, _, truncated, _ = env.step(action)
        if truncated:
            obs, _ = env.reset()
    assert ties <= steps * len(policy.nvec) // 10_000, ties  # at most 1 decision in 10,000


def _only_float_ties(policy, obs, mask, got, want, tol: float, where: object) -> int:
    """Dimensions where two computations of the same actor pick differently; each must be a
    tie at float precision (both choices allowed, their logits within ``tol``), else fail.
    A briefly trained actor has logits within ~1e-2 of each other, so float32 rounding
    (torch's normalisation, ONNX's kernels) can reorder two of them."""
    if np.array_equal(got, want):
        return 0
    lg = policy.logits(obs)
    starts = np.concatenate([[0], np.cumsum(policy.nvec)[:-1]])
    m = np.ones_like(lg, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    for i in np.nonzero(got != want)[0]:
        a, b = starts[i] + got[i], starts[i] + want[i]
        gap = abs(float(lg[a]) - float(lg[b]))
        assert m[a] and m[b] and gap < tol, (where, int(i), got, want, gap)
    return int((got != want).sum())


def test_numpy_policy_matches_sb3_on_10000_observations(exported) -> None:
    from shift_rl.config import load_scenario

    folder, model = exported
    policy = load_policy(folder)
    assert policy.mode == "plan" and policy.nvec.tolist() == [7] * 6  # 6 modules, K = 3
    assert policy.spec["action"]["mode"] == policy.spec["guard"]["mode"] == "plan"
    _parity(folder, model, load_scenario("default"), 10_000)


@pytest.mark.parametrize("case", ["multi_resource", "shift"])
def test_numpy_policy_matches_sb3_in_other_layouts(exported, exported_other, case) -> None:
    folder, model, scenario = _cases(exported, exported_other)[case]
    policy = load_policy(folder)
    want = ("plan", [7] * 10) if case == "multi_resource" else ("shift", [6, 6, 3])
    assert (policy.mode, policy.nvec.tolist()) == want
    _parity(folder, model, scenario, 3_000)


def _onnx_act(logits: np.ndarray, mask: np.ndarray, nvec: list[int]) -> np.ndarray:
    """What a serving stack does with the ONNX logits: mask as MaskablePPO, argmax per
    dimension (written independently of the runtime's act)."""
    masked = np.where(mask, logits, np.float32(-1e8))
    bounds = np.cumsum([0, *nvec])
    return np.array([masked[a:b].argmax() for a, b in itertools.pairwise(bounds)])


@pytest.mark.parametrize("case", ["default", "multi_resource", "shift"])
def test_onnx_agrees_with_the_numpy_runtime(exported, exported_other, case) -> None:
    """Logits within 1e-5, and exactly the same masked actions, on 500 observations of
    masked and random play."""
    ort = pytest.importorskip("onnxruntime")
    folder, _, scenario = _cases(exported, exported_other)[case]
    policy = load_policy(folder)
    session = ort.InferenceSession(str(folder / "policy.onnx"))
    env = ResourceShiftEnv(scenario)
    env.action_space.seed(2)
    obs, _ = env.reset(seed=2)
    batch, masks = [obs], [env.action_masks()]
    for _ in range(499):
        obs, *_ = env.step(env.action_space.sample())
        batch.append(obs)
        masks.append(env.action_masks())
    x = np.array(batch, dtype=np.float32)
    onnx_logits = session.run(None, {"observation": x})[0]
    numpy_logits = np.array([policy.logits(o) for o in x])
    np.testing.assert_allclose(onnx_logits, numpy_logits, atol=1e-5)
    nvec = policy.nvec.tolist()
    assert not np.array(masks).all()  # the masks close choices: masking is exercised
    ties = 0
    for i, (o, m) in enumerate(zip(x, masks, strict=True)):
        for mask in (m, None):
            want = policy.act(o, mask)
            got = _onnx_act(onnx_logits[i], np.ones_like(m) if mask is None else m, nvec)
            ties += _only_float_ties(policy, o, mask, got, want, 1e-5, i)
    assert ties <= 1000 * len(nvec) // 10_000, ties  # at most 1 decision in 10,000


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


def _edited(src: Path, dest: Path, edit, rehash: bool = True) -> Path:
    """A copy of an export with its policy.json edited (and its spec hash recomputed, as an
    editor who knows the format would: the fields' own checks must then refuse it)."""
    _copy(src, dest)
    spec = json.loads((dest / POLICY_JSON).read_text())
    edit(spec)
    if rehash and "spec_sha256" in spec:
        spec["spec_sha256"] = spec_digest(spec)
    (dest / POLICY_JSON).write_text(json.dumps(spec))
    return dest


def _drop_mode(spec: dict) -> None:
    spec["action"].pop("mode")
    spec["guard"].pop("mode")


def _format_1(spec: dict) -> None:
    _drop_mode(spec)
    spec.pop("spec_sha256")
    spec["format_version"] = 1


def test_the_action_mode_is_recorded_and_checked(exported, exported_other, tmp_path) -> None:
    plan, _ = exported
    shift, _ = exported_other["shift"]
    assert load_policy(shift).spec["action"]["mode"] == "shift"
    # format 2 written before plans, and format 1, have no action.mode: single-shift
    assert load_policy(_edited(shift, tmp_path / "v2-old", _drop_mode)).mode == "shift"
    assert load_policy(_edited(shift, tmp_path / "v1", _format_1)).mode == "shift"
    refused = {
        "no mode": (plan, _drop_mode,
                    "action.nvec: must be 3 entries (source, target, level) in single-shift"),
        "v1 plan": (plan, _format_1, "action.nvec: must be 3 entries"),
        "v1 mode": (shift, lambda s: (_format_1(s), s["action"].__setitem__("mode", "shift")),
                    "action.mode: format 1 has no action mode"),
        "mode": (plan, lambda s: s["action"].__setitem__("mode", "plans"),
                 "action.mode: must be one of ['plan', 'shift']"),
        "shift nvec": (plan, lambda s: (s["action"].__setitem__("mode", "shift"),
                                        s["guard"].__setitem__("mode", "shift")),
                       "action.nvec: must be 3 entries"),
        "plan nvec": (shift, lambda s: (s["action"].__setitem__("mode", "plan"),
                                        s["guard"].__setitem__("mode", "plan")),
                      "must be one entry per module and kind in plan mode: 6 x 1 = 6 entries, "
                      "not 3"),
        "count": (plan, lambda s: s["action"].__setitem__("nvec", [7] * 5), "not 5"),
        "levels": (plan, lambda s: s["action"].__setitem__("nvec", [9] * 6),
                   "its entries must all be 2K + 1 = 7 (K = 3 amount levels) in plan mode"),
        "guard": (plan, lambda s: s["guard"].__setitem__("mode", "shift"),
                  "guard.mode: contradicts action.mode 'plan'"),
        "shift levels": (shift, lambda s: s["action"].__setitem__("nvec", [6, 6, 4]),
                         "its last entry must be kinds x levels = 1 x 3"),
    }  # fmt: skip
    for i, (key, (src, edit, needle)) in enumerate(refused.items()):
        with pytest.raises(PolicyFileError) as info:
            load_policy(_edited(src, tmp_path / f"bad{i}", edit))
        assert needle in str(info.value), (key, str(info.value))


def test_a_policy_for_another_action_mode_is_refused(exported, exported_other, tmp_path):
    from shift_rl.agents import resolve_policy

    plan, shift = exported[0], exported_other["shift"][0]
    plan_params = ResourceShiftEnv("default").params
    shift_params = ResourceShiftEnv(scenario_in("default", "shift")).params
    assert resolve_policy(str(plan), plan_params).mode == "plan"
    assert resolve_policy(str(shift), shift_params).mode == "shift"
    v1 = _edited(shift, tmp_path / "v1", _format_1)  # as the releases before plans
    for folder in (shift, v1):
        with pytest.raises(PolicyFileError) as info:
            resolve_policy(str(folder), plan_params)
        assert (
            "acts in single-shift mode (MultiDiscrete of 3 entries) but scenario 'default' "
            "is in plan mode (action.mode: plan, MultiDiscrete of 6 entries)"
        ) in str(info.value)
    with pytest.raises(PolicyFileError, match=r"acts in plan mode .* single-shift mode"):
        resolve_policy(str(plan), shift_params)
    with pytest.raises(EvaluationError, match=r"acts in single-shift mode"):
        evaluate([str(shift)], "default", episodes=1)


def test_a_policy_for_another_module_count_is_refused(exported) -> None:
    folder, _ = exported
    with pytest.raises(EvaluationError, match=r"expects observations of shape \(101,\)"):
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


def _run_folder(model, root: Path) -> Path:
    """A run folder as training leaves it: a checkpoint and the run's export with its card."""
    from shift_rl.config import load_scenario, load_train_config
    from shift_rl.train import save_checkpoint

    cfg = load_train_config(None, ["run_name=export-test", "algo=maskable_ppo"])
    save_checkpoint(model, root / "checkpoints", cfg)
    export_trained(model, cfg, load_scenario("default"), root / "policy")
    (root / "policy" / "README.md").write_text("# export-test\n\nthe run's model card\n")
    return root


def _tree(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_export_never_deletes_files_it_did_not_write(exported, tmp_path) -> None:
    from shift_rl.config import load_scenario, load_train_config
    from shift_rl.outputs import OutputError

    _, model = exported
    cfg, scenario = load_train_config(None, ["run_name=x"]), load_scenario("default")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.txt").write_text("three years")
    (mine / "notes.md").write_text("ideas")
    with pytest.raises(OutputError, match="holds files shift_rl did not write"):
        export_trained(model, cfg, scenario, mine)
    assert sorted(p.name for p in mine.iterdir()) == ["notes.md", "thesis.txt"]
    run = _run_folder(model, tmp_path / "run")
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "export.py"), "--model", str(run),
         "--out", str(mine)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 2 and "refusing to write there" in out.stderr, out.stderr
    assert (mine / "thesis.txt").read_text() == "three years"
    assert (mine / "notes.md").read_text() == "ideas"
    # onto an earlier export: its files are replaced, a file the user added stays
    again = tmp_path / "again"
    export_trained(model, cfg, scenario, again)
    (again / "notes.md").write_text("about this policy")
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "export.py"), "--model", str(run),
         "--out", str(again)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "with the run's model card" in out.stdout
    assert (again / "notes.md").read_text() == "about this policy"
    assert "the run's model card" in (again / "README.md").read_text()
    load_policy(again)


def test_releases_in_agents_change_only_with_release(exported, tmp_path, monkeypatch) -> None:
    import shift_rl.export as ex
    from scripts.export import main as export_cli

    _, model = exported
    before = _tree(ROOT / "agents")
    run = _run_folder(model, tmp_path / "run")
    for args, message in (
        (["--out", str(ROOT / "agents" / "ppo-default")], "pass --release|--release"),
        (
            ["--out", str(ROOT / "agents" / "potential"), "--release"],
            "did not write|not a policy export",
        ),  # tuned parameters, marked or not
        (["--out", str(ROOT / "agents"), "--release"], "releases folder itself"),
    ):
        out = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "export.py"), "--model", str(run), *args],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert out.returncode == 2, out.stderr
        assert any(m in out.stderr for m in message.split("|")), out.stderr
    assert _tree(ROOT / "agents") == before
    # a release onto an earlier release (recognized by its policy.json, no marker yet)
    agents = tmp_path / "agents"
    monkeypatch.setattr(ex, "RELEASES_DIR", agents)
    agents.mkdir()
    old = _copy(exported[0], agents / "rel")
    (old / "README.md").write_text("# the old card\n")
    (old / "CHANGELOG.md").write_text("kept\n")
    assert export_cli(["--model", str(run), "--out", str(old)]) == 2  # no --release
    assert export_cli(["--model", str(run), "--out", str(old), "--release"]) == 0
    assert (old / "CHANGELOG.md").read_text() == "kept\n"
    assert "the run's model card" in (old / "README.md").read_text()
    load_policy(old)


def test_onnx_export_uses_the_supported_exporter_quietly(exported, tmp_path, caplog) -> None:
    import logging
    import warnings

    pytest.importorskip("onnxscript")
    from shift_rl.config import load_scenario, load_train_config

    _, model = exported
    cfg = load_train_config(None, ["run_name=quiet"])
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        export_trained(model, cfg, load_scenario("default"), tmp_path / "q")
    noisy = [w for w in caught if issubclass(w.category, (DeprecationWarning, FutureWarning))]
    assert not noisy, [str(w.message)[:120] for w in noisy]
    assert not [r for r in caplog.records if r.name.startswith("torch")]
    assert (tmp_path / "q" / "policy.onnx").is_file()


def test_an_mlp_reads_the_observation_without_added_features(tmp_path: Path) -> None:
    """An MLP runs on one layout, where ``pool.unit.*`` is constant: it is trained and
    exported without it, and bound to the full observation by column (as releases made
    before the feature was added are)."""
    from shift_rl.agents import resolve_policy
    from shift_rl.config import load_scenario, load_train_config
    from shift_rl.env import ResourceShiftEnv
    from shift_rl.observation import ADDED_FEATURES
    from shift_rl.train import build_model
    from shift_rl.training_envs import BatchedTrainingEnv

    cfg = load_train_config(None, ["run_name=columns", "ppo.n_steps=64", "ppo.batch_size=64",
                                   "ppo.n_epochs=1", "network.net_arch=[16]"])  # fmt: skip
    model = build_model(cfg, BatchedTrainingEnv([load_scenario("default")], [0, 1]), tmp_path)
    model.learn(128)
    folder = tmp_path / "policy"
    export_trained(model, cfg, load_scenario("default"), folder)
    env = ResourceShiftEnv(load_scenario("default"))
    names = load_policy(folder).spec["observation"]["names"]
    assert not [n for n in names if n.startswith(ADDED_FEATURES)]
    assert [n for n in env.observation_names if not n.startswith(ADDED_FEATURES)] == names
    policy = resolve_policy(str(folder), env.params)
    assert policy.observation_shape == env.observation_space.shape
    obs, _ = env.reset(seed=3)
    for _ in range(5):
        mask = env.action_masks()
        want, _ = model.predict(obs, deterministic=True)
        np.testing.assert_array_equal(policy.act(obs, mask), want)
        obs, *_ = env.step(want)
