"""Bad input never crashes, hangs or blows up memory: it ends in the project's own error,
naming the file and the field (issue 14). One test per defect the probe found; the fuzz
test over the same inputs is ``tests/test_fuzz_inputs.py``."""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import logging
import os
import shutil
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from shift_rl import traces
from shift_rl.agents import resolve_policy
from shift_rl.config import (
    SCENARIO_DIR,
    TRAIN_DIR,
    ConfigError,
    load_scenario,
    load_train_config,
    scenario_from_dict,
)
from shift_rl.env import ResourceShiftEnv
from shift_rl.evaluate import evaluate
from shift_rl.runtime import PolicyFileError, load_policy, spec_digest
from shift_rl.traces import TraceError, load_trace

from .test_config import _set
from .test_traces import write as _csv

TRACE = SCENARIO_DIR.parent / "traces" / "azure_functions_2019_top6.csv.gz"


def _default() -> dict[str, Any]:
    return yaml.safe_load((SCENARIO_DIR / "default.yaml").read_text())


def _problem(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        scenario_from_dict(data)
    return str(info.value)


# --- 13: schema holes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value", "needle"),
    [
        ("reward.cost_per_unit", 1e308, "reward.cost_per_unit: must be a number >= 0 and <= 1000"),
        ("reward.cost_per_rollback", 1e300, "reward.cost_per_rollback"),
        ("modules.0.value", 1e308, "modules.0.value: must be a number > 0 and <= 1000000"),
        ("modules.0.demand.base", 1e308, "modules.0.demand.base"),
        ("modules.0.service_rate", 1e300, "modules.0.service_rate"),
        ("episode_ticks", 10**12, "episode_ticks: must be an integer >= 1 and <= 1000000"),
        ("resources.0.units", 2**64, "resources.0.units: must be an integer >= 1 and <= 10000"),
        ("modules.0.units", 2**64, "modules.0.units: must be an integer >= 0 and <= 10000"),
        ("modules.0.units_per_server", 1e-300, "modules.0.units_per_server"),
        ("forecast.params", {"alpha": 5.0}, "forecast.params: ema: alpha must be in (0, 1]"),
        ("forecast.params", {"nope": 1}, "forecast.params: forecaster 'ema': bad parameters"),
        ("forecast.params", {"horizons": 10**6}, "forecast.params.horizons: 1000000 is out"),
        ("forecast.history_ticks", 10**9, "forecast.history_ticks"),
        ("tick_seconds", 1e-9, "tick_seconds: must be a number >= 1"),
        ("warmup_ticks", 100, "warmup_ticks: must be an integer >= 0 and <= 24"),
        ("modules.0.name", "x" * 10_000, "modules.0.name"),
    ],
)
def test_values_that_overflowed_later_are_refused_on_load(path: str, value: Any, needle: str):
    """These loaded, then ended in reward -inf, an oracle of NaN, MemoryError, OverflowError
    or a forecaster's ValueError traceback; now each is one ConfigError naming its field."""
    assert needle in _problem(_set(_default(), path, value))


def test_forecaster_params_are_checked_with_the_scenario_tick() -> None:
    data = _set(_default(), "forecast", {"model": "holt_winters", "params": {"smooth": 10_000}})
    assert "forecast.params: holt_winters: smooth=10000 spans more than one season" in _problem(
        data
    )
    data = _set(_default(), "forecast", {"model": "ar", "params": {"lags": 10**6}})
    assert "forecast.params.lags: 1000000 is out of range; allowed |value| <= 64" in _problem(data)


def test_an_episode_too_big_for_memory_is_refused_naming_the_size() -> None:
    data = _default()
    data["modules"] = [copy.deepcopy(data["modules"][0]) | {"name": f"m{i}"} for i in range(2000)]
    for m in data["modules"]:
        m.update(units=0, floor=0)
        m["demand"].pop("bursts", None)
    data["resources"][0]["units"] = 10_000
    data["episode_ticks"] = 20_000
    msg = _problem(data)
    assert "episode_ticks: one env's episode would need" in msg and "MiB" in msg


def test_event_rates_that_would_take_hours_to_draw_are_refused() -> None:
    data = _set(_default(), "episode_ticks", 1_000_000)
    data["faults"] = {"slowdown": {"rate_per_day": 5000.0}}
    assert "random events" in _problem(data)


def test_runaway_demand_is_an_error_naming_the_module() -> None:
    data = _set(_default(), "episode_ticks", 200_000)
    for m in data["modules"]:
        m["demand"].pop("bursts", None)
        m["demand"].pop("events", None)
    data["modules"][2]["demand"]["regime"] = {"rate_per_day": 500.0, "magnitude": 5.0}
    env = ResourceShiftEnv(scenario_from_dict(data))
    with pytest.raises(ConfigError, match=r"modules\.2\.demand: the demand drawn for module"):
        env.reset(seed=0)


def test_start_tick_beyond_the_trace_is_an_error_not_a_wrap() -> None:
    cfg = load_scenario("trace")
    data = cfg.model_dump(mode="json")
    data["demand"]["trace"]["start_tick"] = 5000  # the slice has 1440 ticks
    env = ResourceShiftEnv(scenario_from_dict(data))
    with pytest.raises(ConfigError, match=r"demand.trace.start_tick: 5000 is beyond the trace"):
        env.reset(seed=0)
    data["demand"]["trace"]["start_tick"] = 1439
    ResourceShiftEnv(scenario_from_dict(data)).reset(seed=0)


# --- 10: resource bombs in YAML ----------------------------------------------------------------


def _laughs(levels: int, width: int = 9) -> str:
    """A 'billion laughs' document: ``width ** levels`` strings out of a few hundred bytes."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    """A 3 KB scenario of aliases used to hang the error formatter."""
    path = tmp_path / "bomb.yaml"
    path.write_text("name: bomb\n" + _laughs(12))
    started = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    assert time.perf_counter() - started < 5.0
    msg = str(info.value)
    assert str(path) in msg and "expands to more than 200,000 values" in msg


def test_a_training_config_alias_bomb_is_refused(tmp_path: Path) -> None:
    """A 786-byte training config used to exhaust memory (its deep copy expanded the aliases)."""
    path = tmp_path / "bomb.yaml"
    path.write_text(_laughs(9) + "run_name: x\n")
    assert path.stat().st_size < 1000
    with pytest.raises(ConfigError, match="expands to more than"):
        load_train_config(path)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("? [a, b]\n: 1\n", "found a sequence as a key"),
        ("? {a: 1}\n: 1\n", "found a mapping as a key"),
        ("a: &x [*x]\n", "an alias refers to a value that contains it"),
        ("a: &x [1, {b: *x}]\n", "an alias refers to a value that contains it"),
        ("[" * 3000 + "]" * 3000, "nested too deeply"),
        ("name: x\n---\nname: y\n", "expected a single document"),
        ("name: " + "9" * 5000 + "\n", "a value cannot be read"),
        ("name: x\nfoo: !!python/object:os.system [ls]\n", "could not determine a constructor"),
    ],
)
def test_malformed_yaml_is_one_config_error(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    for load in (load_scenario, load_train_config):
        with pytest.raises(ConfigError) as info:
            load(path)
        assert needle in str(info.value) and str(path) in str(info.value)


def test_encodings_bom_crlf_and_non_files(tmp_path: Path) -> None:
    text = (SCENARIO_DIR / "default.yaml").read_text()
    bom = tmp_path / "bom.yaml"
    bom.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    assert load_scenario(bom) == load_scenario("default")  # BOM and CRLF are fine
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(text.replace("description: 6", "description: \xe9 6").encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_scenario(latin)
    big = tmp_path / "big.yaml"
    big.write_text(text + "#" * (2 << 20))
    with pytest.raises(ConfigError, match="is larger than 1024 KiB"):
        load_scenario(big)
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="is not a regular file"):
        load_scenario(fifo)  # never blocks reading a pipe
    with pytest.raises(ConfigError, match="is not a regular file"):
        load_train_config(fifo)
    (tmp_path / "dir.yaml").mkdir()
    with pytest.raises(ConfigError, match="is a directory"):
        load_scenario(tmp_path / "dir.yaml")


def test_yaml_dates_sets_and_bytes_are_type_errors_not_tracebacks(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("seed: 2001-01-01\nrun_name: !!binary aGVsbG8=\nppo: !!set {a, b}\n")
    with pytest.raises(ConfigError) as info:
        load_train_config(path)
    msg = str(info.value)
    assert "seed: must be an integer" in msg and "run_name" in msg and "ppo" in msg


def test_thousands_of_errors_are_reported_briefly() -> None:
    data = _default()
    data["modules"] = [{"name": i} for i in range(20_000)]
    started = time.perf_counter()
    msg = _problem(data)
    assert time.perf_counter() - started < 10.0
    assert "the first 50 shown" in msg and len(msg.splitlines()) <= 52


# --- 12: extends --------------------------------------------------------------------------------


def test_extends_resolves_the_base_trace_against_the_base_folder(tmp_path: Path) -> None:
    """The base's relative trace path used to be read against the child's folder, silently
    replaying whatever file sat there."""
    (tmp_path / "base" / "traces").mkdir(parents=True)
    (tmp_path / "child" / "traces").mkdir(parents=True)
    shutil.copy(TRACE, tmp_path / "base" / "traces" / "t.csv.gz")
    decoy = tmp_path / "child" / "traces" / "t.csv.gz"
    decoy.write_bytes(b"not the base's trace")
    base = yaml.safe_load((SCENARIO_DIR / "trace.yaml").read_text())
    base["demand"]["trace"]["path"] = "traces/t.csv.gz"
    (tmp_path / "base" / "base.yaml").write_text(yaml.safe_dump(base))
    child = tmp_path / "child" / "child.yaml"
    child.write_text("extends: ../base/base.yaml\nname: child\n")
    cfg = load_scenario(child)
    assert Path(cfg.demand.trace.path) == (tmp_path / "base" / "traces" / "t.csv.gz").resolve()
    # a child that names its own trace gets it relative to its own folder
    child.write_text(
        "extends: ../base/base.yaml\nname: child\ndemand: {trace: {path: traces/t.csv.gz}}\n"
    )
    assert Path(load_scenario(child).demand.trace.path) == decoy.resolve()


@pytest.mark.parametrize(
    ("base", "needle"),
    [
        ("- name: x\n- name: y\n", "holds a list; a base scenario must be a mapping"),
        ("", "holds an empty document"),
        ("'just text'", "holds a str"),
    ],
)
def test_extends_of_a_base_that_is_not_a_mapping_fails(tmp_path: Path, base: str, needle: str):
    """A base that was a YAML list used to be dropped silently."""
    (tmp_path / "base.yaml").write_text(base)
    child = tmp_path / "child.yaml"
    child.write_text(yaml.safe_dump({**_default(), "extends": "base.yaml"}))
    with pytest.raises(ConfigError) as info:
        load_scenario(child)
    assert needle in str(info.value) and str(child) in str(info.value)


def test_extends_chains_and_bad_values(tmp_path: Path) -> None:
    for i in range(20):
        (tmp_path / f"s{i}.yaml").write_text(f"extends: s{i + 1}.yaml\n")
    (tmp_path / "s20.yaml").write_text(yaml.safe_dump(_default()))
    with pytest.raises(ConfigError, match="more than 16 files deep"):
        load_scenario(tmp_path / "s0.yaml")
    assert load_scenario(tmp_path / "s10.yaml").name == "default"
    bad = tmp_path / "bad.yaml"
    for value in ("[a, b]", "''", "3"):
        bad.write_text(f"extends: {value}\n")
        with pytest.raises(ConfigError, match="extends"):
            load_scenario(bad)


# --- 15: training config checked before training -----------------------------------------------


def test_unknown_baseline_fails_before_training(tmp_path: Path, capsys) -> None:
    """`evaluation.baselines=[nosuch]` used to fail only at the final evaluation."""
    from scripts.train import main as train_cli
    from shift_rl.train import check_inputs

    cfg = load_train_config(None, ["evaluation.baselines=[nosuch]"])
    with pytest.raises(ConfigError, match=r"evaluation.baselines: unknown policy 'nosuch'"):
        check_inputs(cfg, load_scenario(cfg.scenario))
    started = time.perf_counter()
    argv = ["--set", "evaluation.baselines=[potential, nosuch]", "--out", str(tmp_path / "run")]
    assert train_cli([*argv, "--no-progress"]) == 2
    assert time.perf_counter() - started < 60
    assert "evaluation.baselines: unknown policy 'nosuch'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    check_inputs(load_train_config(None, ["evaluation.baselines=[oracle, vpa]"]),
                 load_scenario("default"))  # fmt: skip


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("n_envs=100000", "n_envs: must be an integer >= 1 and <= 1024"),
        ("network.net_arch=[8192, 8192, 8192]", "weights between its hidden layers"),
        ("ppo.n_steps=5000000", "ppo.n_steps: a rollout of n_steps x n_envs"),
        ("seed=-1", "seed: must be an integer >= 0"),
        ("seed=4294967296", "seed: must be an integer >= 0 and <= 4294967295"),
        ("total_timesteps=1e30", "total_timesteps"),
    ],
)
def test_training_sizes_are_bounded(override: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_train_config(TRAIN_DIR / "ppo_default.yaml", [override])
    assert needle in str(info.value)


def test_observations_stay_finite_at_the_bounds() -> None:
    """The largest values the schema allows still give finite rewards and observations."""
    data = _set(_default(), "reward", {"cost_per_unit": 1000.0, "cost_per_rollback": 1000.0})
    data["episode_ticks"] = 30
    for m in data["modules"]:
        m["value"] = 1e6
        m["demand"]["base"] = 1e12
    env = ResourceShiftEnv(scenario_from_dict(data))
    obs, _ = env.reset(seed=0)
    for _ in range(30):
        obs, reward, *_ = env.step(env.action_space.sample())
        assert np.isfinite(reward) and np.isfinite(obs).all()


# --- 14: real traces as they come ---------------------------------------------------------------


def test_series_named_by_numbers_load(tmp_path: Path) -> None:
    """VM ids as series names used to be read as 'line 1 looks like data'."""
    trace = load_trace(_csv(tmp_path, "step,1633748,223811\n0,1,2\n1,3,4\n2,5,6\n"))
    assert trace.columns == ("1633748", "223811")
    assert trace.select(["223811"], 1).values[:, 0].tolist() == [2, 4, 6]
    with pytest.raises(TraceError, match="a series is named '223811': quote the name"):
        trace.select([223811], 1)
    with pytest.raises(TraceError, match="looks like data"):
        load_trace(_csv(tmp_path, "0,1633748,223811\n1,3,4\n2,5,6\n"))


def test_a_time_column_mixing_timestamps_and_ticks_says_so(tmp_path: Path) -> None:
    """It used to say 'goes back' (numpy read the integer as a year)."""
    text = "time,a\n2020-01-01 00:00:00,1\n2020-01-01 00:01:00,2\n5,3\n"
    with pytest.raises(TraceError) as info:
        load_trace(_csv(tmp_path, text))
    msg = str(info.value)
    assert "line 4, column 1 ('time'): '5' is an integer tick index" in msg
    assert "one kind of time" in msg and "goes back" not in msg
    with pytest.raises(TraceError, match="is a timestamp, but the first data row's '0'"):
        load_trace(_csv(tmp_path, "tick,a\n0,1\n1,2\n2020-01-01 00:00:00,3\n"))


def test_a_vm_trace_with_a_few_empty_cells_loads_and_reports_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """30 days of 10-minute samples, 0.2 % of the cells empty (in used and unused series): it
    used to be refused as 'missing value (empty cell)'; now the gaps are interpolated and
    counted, and only a series missing most of its samples is refused, when it is used."""
    rng = np.random.default_rng(0)
    ticks, names = 30 * 144, ["1633748", "223811", "90210", "77"]
    values = rng.uniform(1, 100, (ticks, len(names))).round(1)
    text = values.astype(str).tolist()
    holes = rng.random((ticks, 3)) < 0.002
    for i, j in zip(*np.nonzero(holes), strict=True):
        text[i][j] = ""
    for i in range(ticks):
        if i % 3:
            text[i][3] = ""  # series "77" misses two samples in three
    body = "\n".join(f"{i},{','.join(row)}" for i, row in enumerate(text))
    path = _csv(tmp_path, "tick," + ",".join(names) + "\n" + body + "\n", "vm.csv.gz")
    with caplog.at_level(logging.WARNING, logger="shift_rl.traces"):
        trace = load_trace(path)
    assert "missing sample(s)" in caplog.text
    assert trace.missing[:3] == tuple(int(c) for c in holes.sum(axis=0))
    assert np.isfinite(trace.values).all()
    used = trace.select(["90210", "1633748"], 2)
    assert used.missing == (trace.missing[2], trace.missing[0])
    with pytest.raises(TraceError) as info:
        trace.select(["77"], 1)
    assert f"{trace.missing[3]:,} of its {ticks:,} ticks are missing (66.7 %)" in str(info.value)
    # through a scenario: a trace with holes replays, the holes counted in the report
    data = load_scenario("trace").model_dump(mode="json")
    data["demand"]["trace"] = {"path": str(path), "columns": ["90210", "1633748", "223811"]}
    data["modules"] = data["modules"][:3]
    data["modules"][0]["units"] = 24
    rep = evaluate(["static"], scenario_from_dict(data), episodes=1, seed=0)
    quality = rep.to_dict()["trace_quality"]
    assert quality["columns"] == ["90210", "1633748", "223811"]
    assert quality["filled_ticks"] == [trace.missing[2], trace.missing[0], trace.missing[1]]


def test_a_trace_whose_time_jumps_far_is_refused_before_allocating(tmp_path: Path) -> None:
    """A 118-byte trace (ticks 0-4, then 1e9) used to ask for 7.45 GiB."""
    path = _csv(tmp_path, "tick,a,b\n0,1,2\n1,1,2\n2,1,2\n3,1,2\n4,1,2\n1000000000,1,2\n")
    assert path.stat().st_size < 120
    started = time.perf_counter()
    with pytest.raises(TraceError) as info:
        load_trace(path)
    assert time.perf_counter() - started < 2.0
    assert "are missing (largest gap: 999,999,995 ticks after line 6)" in str(info.value)


def test_a_gzip_bomb_stops_at_the_size_limit(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(traces, "MAX_TRACE_BYTES", 1 << 20)
    path = tmp_path / "bomb.csv.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"tick,a\n")
        f.write(b"\n" * (8 << 20))  # blank lines: no cell ever counts against the value limit
    assert path.stat().st_size < 50_000
    with pytest.raises(TraceError, match="more than 1 MiB of text"):
        load_trace(path)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("tick,a\n0,1\n1,2\n" + "9" * 5000 + ",3\n", "characters); expected an integer tick"),
        ("tick,a\n0,1\n1,2\n99999999999999999999,3\n", "out of range"),
        ("time,a\n2020-01-01 00:00,1\n" + "2" * 100_000 + ",3\n", "expected a timestamp"),
        ("tick,a\n0,1\n1," + "1" * 400 + "\n", "is not finite"),
        ("tick,a\n0,1\n1,2\x00\n", "'2\\x00' is not a number"),
        ("tick,a\n0,1\n1,0x10\n", "'0x10' is not a number"),
        (
            "tick," + ",".join(f"s{i}" for i in range(100_001)) + "\n0," + "1," * 100_000 + "1\n",
            "at most 100,000 are allowed",
        ),
    ],
)
def test_odd_cells_end_in_a_trace_error(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(TraceError) as info:
        load_trace(_csv(tmp_path, text))
    assert needle in str(info.value) and "t.csv" in str(info.value)


def test_trace_encodings_and_non_files(tmp_path: Path) -> None:
    path = tmp_path / "crlf.csv"
    path.write_bytes(b"\xef\xbb\xbftick,a\r\n0,1\r\n1,2\r\n")
    assert load_trace(path).values[:, 0].tolist() == [1, 2]
    path.write_bytes("tick,a\n0,1\n1,2\n".encode("utf-16"))
    with pytest.raises(TraceError, match="not UTF-8"):
        load_trace(path)
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(TraceError, match="is not a regular file"):
        load_trace(tmp_path / "dir.csv")
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    with pytest.raises(TraceError, match="is not a regular file"):
        load_trace(fifo)


# --- 9 and 10: policy folders -------------------------------------------------------------------

SHIPPED_POLICY = SCENARIO_DIR.parents[1] / "agents" / "ppo-default"


@pytest.fixture(scope="module")
def v2_policy(tmp_path_factory) -> Path:
    """A format-2 export of an (untrained) PPO actor for the default scenario."""
    from stable_baselines3 import PPO

    from shift_rl.train import export_trained

    env = ResourceShiftEnv("default")
    model = PPO("MlpPolicy", env, policy_kwargs={"net_arch": [16]}, seed=0, device="cpu")
    cfg = load_train_config(None, ["run_name=v2", "algo=ppo", "network.net_arch=[16]"])
    out = tmp_path_factory.mktemp("v2") / "p"
    export_trained(model, cfg, load_scenario("default"), out)
    return out


@pytest.fixture(scope="module")
def v1_policy(tmp_path_factory) -> Path:
    """A format-1 folder, as exported before format 2 (always single-shift): a single-shift
    format-2 export without its spec hash and action mode."""
    from stable_baselines3 import PPO

    from shift_rl.train import export_trained

    scenario = _single_shift_default()
    model = PPO("MlpPolicy", ResourceShiftEnv(scenario), policy_kwargs={"net_arch": [16]},
                seed=0, device="cpu")  # fmt: skip
    cfg = load_train_config(None, ["run_name=v1", "algo=ppo", "network.net_arch=[16]"])
    out = tmp_path_factory.mktemp("v1") / "p"
    export_trained(model, cfg, scenario, out)
    spec = json.loads((out / "policy.json").read_text())
    del spec["spec_sha256"]
    del spec["action"]["mode"]
    spec["format_version"] = 1
    (out / "policy.json").write_text(json.dumps(spec, indent=2))
    return out


def _single_shift_default():
    return scenario_from_dict(_set(_default(), "action.mode", "shift"))


def _edited(src: Path, dest: Path, edit, rehash: bool = False) -> Path:
    shutil.copytree(src, dest)
    spec = json.loads((dest / "policy.json").read_text())
    edit(spec)
    if rehash and "spec_sha256" in spec:  # an editor who also recomputes the spec hash
        spec["spec_sha256"] = spec_digest(spec)
    (dest / "policy.json").write_text(json.dumps(spec, indent=2))
    return dest


EDITS = {
    "nvec": lambda s: s["action"].__setitem__("nvec", [5, 7, 3]),
    "activation": lambda s: s["network"].__setitem__("activation", "relu"),
    "fingerprint": lambda s: s["scenario"].__setitem__("fingerprint", "0123456789abcdef"),
    "uses_masks": lambda s: s["action"].__setitem__("uses_masks", "false"),
}


def test_the_export_is_format_2_with_a_hash_over_policy_json(v2_policy: Path) -> None:
    spec = json.loads((v2_policy / "policy.json").read_text())
    assert spec["format_version"] == 2 and spec["spec_sha256"] == spec_digest(spec)
    assert spec["action"]["mode"] == "plan"
    assert load_policy(v2_policy).nvec.tolist() == [7] * 6


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_an_edited_format_2_policy_json_is_refused(v2_policy: Path, tmp_path: Path, edit: str):
    """nvec [5, 7, 3], tanh -> relu, another fingerprint and uses_masks "false" all used to
    load silently; policy.json is now covered by its own hash."""
    folder = _edited(v2_policy, tmp_path / "p", EDITS[edit])
    with pytest.raises(PolicyFileError, match="spec_sha256 does not match"):
        load_policy(folder)


def test_format_2_fields_are_checked_even_with_a_recomputed_hash(v2_policy: Path, tmp_path):
    bad = _edited(v2_policy, tmp_path / "a", EDITS["uses_masks"], rehash=True)
    with pytest.raises(PolicyFileError, match=r"action.uses_masks: must be true or false"):
        load_policy(bad)
    bad = _edited(v2_policy, tmp_path / "b", EDITS["nvec"], rehash=True)
    with pytest.raises(PolicyFileError, match=r"action.nvec: ") as info:
        load_policy(bad)
    assert "plan" in str(info.value) and "[5, 7, 3]" in str(info.value)


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_an_edited_format_1_policy_is_refused_or_flagged(
    v1_policy: Path, tmp_path: Path, edit: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Format 1 has no spec hash: its fields are checked for type and against each other and
    the scenario, and every load warns that an edit that stays consistent goes unnoticed."""
    folder = _edited(v1_policy, tmp_path / "p", EDITS[edit])
    params = ResourceShiftEnv(_single_shift_default()).params
    if edit == "fingerprint":
        with caplog.at_level(logging.WARNING):
            resolve_policy(str(folder), params)
        assert "format 1 has no hash over policy.json" in caplog.text
        assert "trained for scenario fingerprint 0123456789abcdef" in caplog.text
        return
    needle = {
        "nvec": "action.nvec: must start with the module count 6 twice",
        "activation": "network.activation: contradicts training.config.network.activation",
        "uses_masks": "action.uses_masks: must be true or false (got 'false')",
    }[edit]
    with pytest.raises(PolicyFileError) as info:
        load_policy(folder)
    assert needle in str(info.value) and str(folder) in str(info.value)


def test_the_shipped_releases_load_without_warnings(caplog: pytest.LogCaptureFixture) -> None:
    for name, scenario in (("ppo-default", "default"), ("ppo-cgroup", "cgroup")):
        with caplog.at_level(logging.WARNING):
            policy = resolve_policy(
                str(SHIPPED_POLICY.parent / name), ResourceShiftEnv(scenario).params
            )
        assert policy.spec["format_version"] == 2 and policy.mode == "plan"
    assert caplog.text == ""


def test_renamed_modules_warn_and_reordered_ones_are_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = _default()
    data["modules"][1]["name"] = "lookup"
    with caplog.at_level(logging.WARNING):
        resolve_policy(str(SHIPPED_POLICY), ResourceShiftEnv(scenario_from_dict(data)).params)
    assert "'search'" in caplog.text and "'lookup'" in caplog.text
    assert "at the same positions" in caplog.text
    data = _default()
    data["modules"][0], data["modules"][1] = data["modules"][1], data["modules"][0]
    with pytest.raises(PolicyFileError, match="it would act on the wrong ones"):
        resolve_policy(str(SHIPPED_POLICY), ResourceShiftEnv(scenario_from_dict(data)).params)


def test_a_policy_for_other_amount_levels_is_refused() -> None:
    data = _set(_default(), "action.amount_levels", [1, 4])
    with pytest.raises(PolicyFileError, match=r"acts in MultiDiscrete\(\[7, 7, 7, 7, 7, 7\]\) but"):
        resolve_policy(str(SHIPPED_POLICY), ResourceShiftEnv(scenario_from_dict(data)).params)


def _npz_member(name: str, header: dict[str, Any], payload: bytes = b"") -> tuple[str, bytes]:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return name, buf.getvalue() + payload


def _with_weights(tmp_path: Path, members: list[tuple[str, bytes]]) -> Path:
    folder = tmp_path / "p"
    shutil.copytree(SHIPPED_POLICY, folder)
    with zipfile.ZipFile(folder / "weights.npz", "w", zipfile.ZIP_DEFLATED) as zf:
        for name, blob in members:
            zf.writestr(name, blob)
    spec = json.loads((folder / "policy.json").read_text())
    spec["files"]["weights.npz"] = hashlib.sha256((folder / "weights.npz").read_bytes()).hexdigest()
    spec["spec_sha256"] = spec_digest(spec)  # a crafted folder whose hashes all agree
    (folder / "policy.json").write_text(json.dumps(spec))
    return folder


def test_a_weights_archive_that_would_inflate_to_gigabytes_is_refused(tmp_path: Path) -> None:
    """A 3 MB weights.npz used to expand to 3 GiB; the declared sizes are checked first."""
    huge = _npz_member(
        "hidden0_w.npy", {"descr": "<f4", "fortran_order": False, "shape": (30_000, 30_000)}
    )
    folder = _with_weights(tmp_path, [huge])
    started = time.perf_counter()
    with pytest.raises(PolicyFileError, match="declare more than 268,435,456 bytes"):
        load_policy(folder)
    assert time.perf_counter() - started < 2.0


@pytest.mark.parametrize(
    ("arrays", "needle"),
    [
        ({"head_w": np.zeros((2, 2), dtype=object)}, "never pickled objects"),
        ({"head_w": np.zeros((2, 2), dtype=np.int64)}, "never pickled objects"),
        ({"extra": np.zeros(2)}, "2-hidden-layer actor"),
        ({"head_b": np.full(15, np.nan, dtype=np.float32)}, "NaN or infinite weights"),
    ],
)
def test_odd_weight_arrays_are_refused(tmp_path: Path, arrays, needle: str) -> None:
    with np.load(SHIPPED_POLICY / "weights.npz") as z:
        base = {k: z[k] for k in z.files}
    base.update(arrays)
    members = []
    for k, v in base.items():
        buf = io.BytesIO()
        np.lib.format.write_array(buf, v, allow_pickle=True)
        members.append((f"{k}.npy", buf.getvalue()))
    with pytest.raises(PolicyFileError) as info:
        load_policy(_with_weights(tmp_path, members))
    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("{", "not valid JSON"),
        ('{"format_version": NaN}', "NaN is not valid JSON"),
        ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
        ('{"format_version": ' + "9" * 5000 + "}", "not valid JSON"),
        ('{"format_version": true}', "format_version True is not supported"),
        ('{"format_version": 1}', "required field(s) missing"),
        ("\xff\xfe", "not UTF-8"),
    ],
)
def test_a_malformed_policy_json_is_one_policy_error(tmp_path: Path, text: str, needle: str):
    folder = tmp_path / "p"
    shutil.copytree(SHIPPED_POLICY, folder)
    (folder / "policy.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(PolicyFileError) as info:
        load_policy(folder)
    assert needle in str(info.value) and "policy.json" in str(info.value)


def test_listed_files_must_be_plain_files_in_the_folder(tmp_path: Path) -> None:
    folder = _edited(
        SHIPPED_POLICY,
        tmp_path / "a",
        lambda s: s["files"].__setitem__("../x", "0" * 64),
        rehash=True,
    )
    with pytest.raises(PolicyFileError, match="must be a plain file name"):
        load_policy(folder)
    folder = tmp_path / "b"
    shutil.copytree(SHIPPED_POLICY, folder)
    (folder / "policy.onnx").unlink()
    (folder / "policy.onnx").mkdir()
    with pytest.raises(PolicyFileError, match="not a regular file"):
        load_policy(folder)


# --- 8: checkpoints are trusted only from the run's own manifest --------------------------------


class _Payload:
    marker: Path

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _crafted_checkpoint(folder: Path, marker: Path) -> Path:
    """A checkpoint folder whose model.zip runs code when SB3 loads it (a pickled payload in
    its ``data``, which SB3 unpickles), next to a valid state.json and rng.npz."""
    import base64
    import pickle

    ckpt = folder / "checkpoints" / "step_000000480"
    ckpt.mkdir(parents=True)
    _Payload.marker = marker
    blob = base64.b64encode(pickle.dumps(_Payload())).decode()
    data = {"policy_class": {":type:": "<class 'type'>", ":serialized:": blob}}
    with zipfile.ZipFile(ckpt / "model.zip", "w") as zf:
        zf.writestr("data", json.dumps(data))
    cfg = load_train_config(None, ["run_name=crafted"])
    state = {"num_timesteps": 480, "config": cfg.model_dump(mode="json")}
    (ckpt / "state.json").write_text(json.dumps(state))
    np.savez(ckpt / "rng.npz", torch=np.zeros(1))
    return ckpt


def test_export_refuses_a_checkpoint_its_run_did_not_write(tmp_path: Path, capsys) -> None:
    """A crafted model.zip used to run its code in `export.py --model`."""
    from scripts.export import main as export_cli

    marker = tmp_path / "pwned"
    ckpt = _crafted_checkpoint(tmp_path / "run", marker)
    for model in (ckpt, tmp_path / "run"):  # the checkpoint, or its run folder
        assert export_cli(["--model", str(model), "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert "is not listed in" in err and "runs code when loaded" in err
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_a_listed_checkpoint_exports_and_a_changed_one_is_refused(tmp_path: Path, capsys):
    from stable_baselines3 import PPO

    from scripts.export import main as export_cli
    from shift_rl.train import MANIFEST, load_checkpoint, save_checkpoint

    cfg = load_train_config(None, ["run_name=tiny", "algo=ppo", "network.net_arch=[8]"])
    model = PPO("MlpPolicy", ResourceShiftEnv("default"), n_steps=16, batch_size=16,
                policy_kwargs={"net_arch": [8]}, device="cpu")  # fmt: skip
    ckpt = save_checkpoint(model, tmp_path / "checkpoints", cfg)
    assert json.loads((ckpt.parent / MANIFEST).read_text())["checkpoints"][ckpt.name]
    assert export_cli(["--model", str(ckpt), "--out", str(tmp_path / "out")]) == 0
    assert load_policy(tmp_path / "out").nvec.tolist() == [7] * 6  # a plan on default
    marker = tmp_path / "pwned"
    swapped = _crafted_checkpoint(tmp_path / "other", marker) / "model.zip"
    shutil.copy(swapped, ckpt / "model.zip")  # same name, same folder: another file
    assert export_cli(["--model", str(ckpt), "--out", str(tmp_path / "out2")]) == 2
    assert "whose sha256 is not the one" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="whose sha256 is not the one"):
        load_checkpoint(cfg, ckpt)
    assert not marker.exists()


def test_resume_refuses_an_unlisted_checkpoint_and_a_contradicting_config(tmp_path: Path):
    from scripts.train import _resumed_config
    from shift_rl.train import train

    marker = tmp_path / "pwned"
    ckpt = _crafted_checkpoint(tmp_path / "run", marker)
    cfg = _resumed_config(ckpt, None, [])
    with pytest.raises(ConfigError, match="is not listed in"):
        train(cfg, out=tmp_path / "out", resume=ckpt, progress=False, evaluate_at_end=False)
    assert not marker.exists()
    # --resume used to ignore --config silently; the same config is fine, another one is not
    same = tmp_path / "same.yaml"
    same.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    assert _resumed_config(ckpt, same, []) == cfg
    with pytest.raises(ConfigError) as info:
        _resumed_config(ckpt, TRAIN_DIR / "ppo_default.yaml", ["ppo.learning_rate=1e-3"])
    msg = str(info.value)
    assert "differs from the config of checkpoint" in msg and "run_name" in msg
    assert "drop --config" in msg


# --- 15: the evaluate CLI ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--policies", ""], "names no policy"),  # used to evaluate static alone
        (["--policies", " , "], "names no policy"),
        (["--policies", "static", "--seed", "-1"], "expected an integer >= 0"),  # a traceback
        (["--policies", "static", "--seed", "x"], "expected an integer >= 0"),
        (["--policies", "static", "--episodes", "0"], "expected an integer >= 1"),
    ],
)
def test_evaluate_cli_refuses_bad_arguments_before_running(argv, needle: str, capsys) -> None:
    from scripts.evaluate import main as evaluate_cli

    with pytest.raises(SystemExit) as info:
        evaluate_cli(argv)
    assert info.value.code == 2 and needle in capsys.readouterr().err


def test_evaluate_refuses_bad_seeds() -> None:
    from shift_rl.evaluate import EvaluationError

    for seed in (-1, 2**63, 1.5, True):
        with pytest.raises(EvaluationError, match="seed must be an integer >= 0"):
            evaluate(["static"], "default", episodes=1, seed=seed)


# --- paths the system refuses --------------------------------------------------------------------


def _check_baseline(name: str) -> None:
    from shift_rl.train import check_inputs

    cfg = load_train_config(None, [f"evaluation.baselines=[{name!r}]"])
    check_inputs(cfg, load_scenario(cfg.scenario))


@pytest.mark.parametrize("name", ["a\x00b.yaml", "x" * 5000 + ".yaml", ""])
def test_paths_the_system_refuses_are_project_errors(name: str) -> None:
    """A NUL byte or an over-long name made os.stat raise ValueError / OSError(ENAMETOOLONG)
    through pathlib's is_file(); every loader now answers with its own error."""
    params = ResourceShiftEnv("default").params
    loaders = [
        (load_scenario, ConfigError),
        (load_train_config, ConfigError),
        (lambda n: load_trace(n + ".csv"), TraceError),
        (load_policy, PolicyFileError),
        (lambda n: resolve_policy(n, params), PolicyFileError),
        (lambda n: _check_baseline(n), ConfigError),
    ]
    for load, error in loaders:
        with pytest.raises(error):
            load(name)


def test_a_batch_too_big_for_memory_is_refused_before_allocating() -> None:
    from shift_rl.vector import ResourceShiftVectorEnv

    with pytest.raises(ValueError, match=r"num_envs=1000000000 envs .* above the 16 GiB"):
        ResourceShiftVectorEnv(10**9, "default")


def test_a_randomized_variant_out_of_range_is_a_config_error() -> None:
    from shift_rl.training_envs import make_variants

    cfg = load_train_config(None, ["randomization.variants=2", "randomization.demand_scale=[1, 1]"])
    data = _set(_default(), "modules.0.demand.base", 1e11)
    rc = cfg.randomization.model_copy(update={"demand_scale": [50.0, 60.0]})
    with pytest.raises(ConfigError, match=r"variant 0 of 'default' \(randomization\.\*\)"):
        make_variants(scenario_from_dict(data), rc, 0)


def test_a_trace_path_that_is_a_directory_says_so(tmp_path: Path) -> None:
    data = load_scenario("trace").model_dump(mode="json")
    data["demand"]["trace"]["path"] = str(tmp_path)
    assert "is a directory; expected a CSV or CSV.gz trace" in _problem(data)
