"""Fuzz: scenario YAML, training config YAML, trace CSV and policy folders, mutated.

Every case must end in success or in the project's own error (``ConfigError``,
``TraceError``, ``PolicyFileError``, ``EvaluationError``) whose message names the file; never
another exception, a hang or a memory blow-up. Each case runs in a forked child with its
address space capped (``CHILD_MEMORY`` above the parent's) and a wall-clock limit
(``CHILD_SECONDS``), so a regression shows up as a failed case, not as a stuck or swapping
machine. A case that loads is also used: a scenario builds an env, resets it, steps it and
computes a tick of the oracle bound (all finite); a training config is checked as
``train`` checks it before training; a trace is picked, resampled and replayed; a policy is
resolved for the default scenario and acts inside the action space.

Sizes: ``SHIFT_RL_FUZZ_EXAMPLES`` (default 25 per input kind, deterministic) sets the number
of generated cases per kind; any value turns on random seeds for a deeper, different probe,
e.g. ``SHIFT_RL_FUZZ_EXAMPLES=500 pytest tests/test_fuzz_inputs.py``. The fixed corpus
(``CORPUS_*``) always runs: the shapes of input the issue's probe found, and their relatives.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import os
import pickle
import resource
import select
import shutil
import signal
import tempfile
import time
import traceback
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# Imported here, once: a forked case then starts with them loaded (torch and SB3 take seconds).
import shift_rl.agents
import shift_rl.env
import shift_rl.traces
import shift_rl.train
from shift_rl.config import TRAIN_DIR

ROOT = Path(__file__).resolve().parents[1]
TRACE = ROOT / "configs" / "traces" / "azure_functions_2019_top6.csv.gz"
SHIPPED_POLICY = ROOT / "agents" / "ppo-default"
EXAMPLES = int(os.environ.get("SHIFT_RL_FUZZ_EXAMPLES", "25"))
CHILD_SECONDS = 120.0
"""Wall-clock limit of one case: far above what a case takes (well under a second on an idle
machine), so a busy machine never fails it; a hang always does."""
CHILD_MEMORY = 3 * 2**30
"""Address space a case may add to the parent's (a valid scenario may take 512 MiB)."""
PROJECT_ERRORS = (
    "shift_rl.config.ConfigError",
    "shift_rl.train.UntrustedCheckpoint",
    "shift_rl.traces.TraceError",
    "shift_rl.policyfile.PolicyFileError",
    "shift_rl.evaluate.EvaluationError",
)
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize="SHIFT_RL_FUZZ_EXAMPLES" not in os.environ,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ---------------------------------------------------------------------------------------------
# Running one case, bounded
# ---------------------------------------------------------------------------------------------


def _vm_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def run_bounded(fn: Callable[..., Any], *args: Any) -> tuple[str, str, str, float]:
    """Run ``fn(*args)`` in a forked child under the memory and time limits.

    Returns ``(outcome, error type, message, seconds)``: outcome ``ok``, ``error`` (an
    exception, its qualified type and message), ``timeout`` or ``crash`` (killed by a signal).
    """
    r, w = os.pipe()
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        os.close(r)
        try:
            limit = _vm_bytes() + CHILD_MEMORY
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            try:
                fn(*args)
                out = ("ok", "", "")
            except BaseException as exc:
                kind = f"{type(exc).__module__}.{type(exc).__qualname__}"
                text = str(exc)
                if kind not in PROJECT_ERRORS:
                    text += "\n" + "".join(traceback.format_exception(exc))[-4000:]
                out = ("error", kind, text[:8000])
            os.write(w, pickle.dumps(out))
        finally:
            os._exit(0)
    os.close(w)
    chunks: list[bytes] = []
    deadline = started + CHILD_SECONDS
    try:
        while True:
            left = deadline - time.perf_counter()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return "timeout", "", f"no result after {CHILD_SECONDS:g} s", CHILD_SECONDS
            data = os.read(r, 1 << 16)
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(r)
    _, status = os.waitpid(pid, 0)
    seconds = time.perf_counter() - started
    if not chunks:
        return "crash", "", f"child ended with status {status}", seconds
    outcome, kind, message = pickle.loads(b"".join(chunks))
    return outcome, kind, message, seconds


def check_case(fn: Callable[..., Any], *args: Any, names: tuple[str, ...] = ()) -> str:
    """Run a case; fail unless it succeeded or raised a project error naming one of
    ``names`` (the file, or its folder)."""
    outcome, kind, message, seconds = run_bounded(fn, *args)
    assert outcome in ("ok", "error"), f"{outcome} after {seconds:.1f} s: {message}"
    if outcome == "error":
        assert kind in PROJECT_ERRORS, f"{kind}: {message}"
        assert any(n in message for n in names), f"the message names no file {names}: {message}"
        assert len(message) < 20_000, f"a {len(message)}-character message"
    return outcome


# ---------------------------------------------------------------------------------------------
# Mutations shared by the YAML and JSON inputs
# ---------------------------------------------------------------------------------------------

WEIRD = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1, 2, 7, 2**31, 2**53 + 1, 2**63, 2**64, 10**12, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e308, -1e308, 5e-324, 1e-300, 0.0, -0.0, 0.5, 1e6, 1e15]),
    st.text(max_size=12),
    st.sampled_from(["", "random", "true", "false", "null", "1e3", "NaN", "relu", "x" * 300]),
    st.booleans(),
    st.none(),
    st.lists(st.integers(min_value=-3, max_value=40), max_size=6),
    st.lists(st.floats(allow_nan=True), max_size=3),
    st.dictionaries(st.text(max_size=6), st.integers(min_value=-3, max_value=9), max_size=3),
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node[:12]):
            out += _paths(v, (*prefix, i))
    return out


def _parent(node: Any, path: tuple) -> Any:
    for p in path[:-1]:
        node = node[p]
    return node


EDIT = st.tuples(
    st.sampled_from(["replace", "replace", "scale", "delete", "add", "dup", "empty"]),
    st.integers(min_value=0, max_value=2**16),
    WEIRD,
    st.sampled_from([-1, 0, 10**6, 10**-6, 2**40, 1.5]),
    st.sampled_from(["nope", "units", "extends", "name", "1", "spec_sha256"]),
)
EDITS = st.lists(EDIT, min_size=1, max_size=3)


def apply_edits(base: Any, edits: list[tuple]) -> Any:
    """``base`` (a JSON-like tree) with edits applied: a value (picked by index among all
    paths) replaced by a weird one or scaled, a key deleted or added, a list item duplicated,
    a container emptied. Works on any tree, so one drawn list edits either policy format."""
    data = copy.deepcopy(base)
    for op, pick, weird, factor, new_key in edits:
        paths = [p for p in _paths(data) if p]
        if not paths:
            break
        path = paths[pick % len(paths)]
        parent, key = _parent(data, path), path[-1]
        value = parent[key]
        if op == "replace":
            parent[key] = copy.deepcopy(weird)
        elif op == "scale" and isinstance(value, int | float) and not isinstance(value, bool):
            parent[key] = value * factor
        elif op == "delete":
            del parent[key]
        elif op == "add" and isinstance(value, dict):
            value[new_key] = copy.deepcopy(weird)
        elif op == "dup" and isinstance(value, list) and value:
            value.append(copy.deepcopy(value[0]))
        elif op == "empty" and isinstance(value, list | dict):
            value.clear()
    return data


def _laughs(levels: int) -> str:
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]")
    return "\n".join(lines) + "\n"


TEXT_EDITS = st.sampled_from(
    ["none"] * 16 + ["bom", "crlf", "truncate", "garbage", "bomb", "dupkey", "complex_key",
     "deep", "utf16", "latin1", "tabs", "extends_self", "extends_list", "extends_missing",
     "recursive", "bigint", "binary"]
)  # fmt: skip


def edit_text(draw: st.DrawFn, text: str, name: str) -> bytes:
    """Text-level damage of a YAML document (the parsed-tree mutations cannot make these)."""
    edit = draw(TEXT_EDITS)
    if edit == "bom":
        return b"\xef\xbb\xbf" + text.encode()
    if edit == "crlf":
        return text.replace("\n", "\r\n").encode()
    if edit == "truncate":
        return text[: draw(st.integers(min_value=0, max_value=len(text)))].encode()
    if edit == "garbage":
        at = draw(st.integers(min_value=0, max_value=len(text)))
        junk = draw(st.binary(min_size=1, max_size=16))
        return text[:at].encode() + junk + text[at:].encode()
    if edit == "bomb":
        return (text + _laughs(draw(st.integers(min_value=3, max_value=10)))).encode()
    if edit == "dupkey":
        return (text + text.splitlines()[0] + "\n").encode()
    if edit == "complex_key":
        return (text + "? [a, b]\n: 1\n").encode()
    if edit == "deep":
        depth = draw(st.integers(min_value=50, max_value=5000))
        return (text + "deep: " + "[" * depth + "]" * depth + "\n").encode()
    if edit == "utf16":
        return text.encode("utf-16")
    if edit == "latin1":
        return ("# caf\xe9\n" + text).encode("latin-1", errors="replace")
    if edit == "tabs":
        return text.replace("  ", "\t").encode()
    if edit == "extends_self":
        return (f"extends: {name}\n" + text).encode()
    if edit == "extends_list":
        return (f"extends: [{name}]\n" + text).encode()
    if edit == "extends_missing":
        return ("extends: nowhere/base.yaml\n" + text).encode()
    if edit == "recursive":
        return (text + "loop: &x [1, *x]\n").encode()
    if edit == "bigint":
        return (
            text + "big: " + "9" * draw(st.integers(min_value=20, max_value=6000)) + "\n"
        ).encode()
    if edit == "binary":
        return (text + "blob: !!binary aGVsbG8=\nwhen: 2001-01-01\nset: !!set {a, b}\n").encode()
    return text.encode()


# ---------------------------------------------------------------------------------------------
# Scenario YAML
# ---------------------------------------------------------------------------------------------


def _scenario_bases() -> list[dict[str, Any]]:
    """The shipped scenarios with every field written out (``extends`` resolved, the trace
    path absolute), so an edit can hit any field, defaults included."""
    from shift_rl.config import load_scenario

    out = []
    for name in ("default", "multi_resource", "faults", "trace", "cgroup"):
        out.append(load_scenario(name).model_dump(mode="json"))
    return out


SCENARIOS = _scenario_bases()


def use_scenario(path: Path) -> None:
    """Load a scenario file and use it: env, reset, steps, one tick of the oracle bound."""
    from shift_rl.agents.oracle import best_goal
    from shift_rl.config import load_scenario
    from shift_rl.env import ResourceShiftEnv

    load_scenario(path)
    env = ResourceShiftEnv(path)  # from the path: errors of a later draw name the file too
    obs, _ = env.reset(seed=0)
    assert np.isfinite(obs).all() and env.observation_space.contains(obs)
    for _ in range(3):
        obs, reward, _, truncated, _ = env.step(env.action_space.sample())
        assert np.isfinite(obs).all() and np.isfinite(reward), reward
        if truncated:
            break
    p, sim = env.params, env.plane.sim
    i = p.history_ticks + 1
    lam, slow = sim.exo_demand[0, i], sim.exo_slow[0, i]
    bound = best_goal(lam, slow, p.pool_units, p.value, p.service_rate, p.slo_seconds,
                      p.units_per_server, p.tick_seconds)  # fmt: skip
    assert np.isfinite(bound) and 0.0 <= bound <= 1.0 + 1e-9, bound


@st.composite
def scenario_files(draw: st.DrawFn) -> bytes:
    base = draw(st.sampled_from(SCENARIOS))
    data = apply_edits(base, draw(EDITS))
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    return edit_text(draw, text, "s.yaml")


def _write(data: bytes, name: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="fuzz-"))
    path = folder / name
    path.write_bytes(data)
    return path


@FUZZ
@given(blob=scenario_files())
def test_fuzz_scenario_yaml(blob: bytes) -> None:
    path = _write(blob, "s.yaml")
    try:
        check_case(use_scenario, path, names=(str(path), "s.yaml", str(TRACE)))
    finally:
        shutil.rmtree(path.parent, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Training config YAML
# ---------------------------------------------------------------------------------------------

TRAIN_BASE = yaml.safe_load((TRAIN_DIR / "ppo_default.yaml").read_text())


def use_train_config(path: Path) -> None:
    """Load a training config and check it as ``train`` does before it trains."""
    from shift_rl.config import load_scenario, load_train_config
    from shift_rl.train import check_alignment, check_inputs

    cfg = load_train_config(path)
    scenario = load_scenario(cfg.scenario)
    check_alignment(cfg, scenario)
    check_inputs(cfg, scenario)


@st.composite
def train_files(draw: st.DrawFn) -> bytes:
    data = apply_edits(TRAIN_BASE, draw(EDITS))
    return edit_text(draw, yaml.safe_dump(data, sort_keys=False), "t.yaml")


@FUZZ
@given(blob=train_files())
def test_fuzz_training_config_yaml(blob: bytes) -> None:
    path = _write(blob, "t.yaml")
    try:
        # a check that needs the scenario (after the file loaded) names the run and scenario
        check_case(use_train_config, path, names=(str(path), "training config for run"))
    finally:
        shutil.rmtree(path.parent, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Trace CSV
# ---------------------------------------------------------------------------------------------

CELLS = st.sampled_from(
    ["", " ", "nan", "NA", "null", "inf", "-inf", "-1", "-0", "1e400", "abc", "0x1", " 5 ",
     "1_000", "9" * 60, "\x00", "1,5", '"7"', "1e-320", "3.5"]
)  # fmt: skip
TIMES = st.sampled_from(
    ["", "-5", "1000000000", "99999999999999999999", "2020-01-01 00:00:00", "2020-13-01",
     "yesterday", "7", "2020-01-01T00:00:00Z", "1e3", "9" * 200, "0"]
)  # fmt: skip


@st.composite
def trace_files(draw: st.DrawFn) -> tuple[str, bytes]:
    rows = draw(st.integers(min_value=0, max_value=120))
    cols = draw(st.integers(min_value=1, max_value=5))
    timestamps = draw(st.booleans())
    names = draw(
        st.lists(
            st.one_of(st.sampled_from(["a", "b", "c", "1633748", "223811", "", "a", " x "]),
                      st.text(min_size=1, max_size=8).filter(str.strip)),
            min_size=cols, max_size=cols,
        )
    )  # fmt: skip
    start = np.datetime64("2020-01-01T00:00:00")
    table = [["time" if timestamps else "tick", *names]]
    for i in range(rows):
        t = str(start + np.timedelta64(60 * i, "s")).replace("T", " ") if timestamps else str(i)
        table.append(
            [
                t,
                *(
                    str(int(v))
                    for v in draw(
                        st.lists(
                            st.integers(min_value=0, max_value=10**6), min_size=cols, max_size=cols
                        )
                    )
                ),
            ]
        )
    for _ in range(draw(st.integers(min_value=0, max_value=5))):
        op = draw(st.sampled_from(["cell", "cell", "time", "drop", "dup", "swap", "ragged",
                                   "header", "jump"]))  # fmt: skip
        if len(table) < 2 and op != "header":
            continue
        i = draw(st.integers(min_value=1, max_value=max(1, len(table) - 1)))
        if op == "cell" and len(table[i]) > 1:
            table[i][draw(st.integers(min_value=1, max_value=len(table[i]) - 1))] = draw(CELLS)
        elif op == "time":
            table[i][0] = draw(TIMES)
        elif op == "drop":
            del table[i]
        elif op == "dup":
            table.insert(i, list(table[i]))
        elif op == "swap" and i + 1 < len(table):
            table[i], table[i + 1] = table[i + 1], table[i]
        elif op == "ragged":
            table[i] = table[i][:-1] if draw(st.booleans()) else [*table[i], "1"]
        elif op == "header":
            table[0][draw(st.integers(min_value=0, max_value=len(table[0]) - 1))] = draw(
                st.sampled_from(["", "0", "2020-01-01", "a", "dup"])
            )
        elif op == "jump":
            table[i][0] = str(10**9) if not timestamps else "2090-01-01 00:00:00"
    eol = draw(st.sampled_from(["\n", "\r\n", "\n\n"]))
    text = eol.join(",".join(row) for row in table) + eol
    enc = draw(st.sampled_from(["utf-8"] * 7 + ["utf-8-sig", "utf-16", "latin-1"]))
    try:
        raw = text.encode(enc)
    except UnicodeEncodeError:
        raw = text.encode("utf-8")
    name = draw(st.sampled_from(["t.csv"] * 4 + ["t.csv.gz"] * 4 + ["t.txt", "T.CSV"]))
    if name.endswith(".gz"):
        raw = gzip.compress(raw)
        if draw(st.integers(min_value=0, max_value=9)) == 0:
            raw = raw[: len(raw) // 2]  # truncated
    elif draw(st.integers(min_value=0, max_value=9)) == 0:
        raw = gzip.compress(raw)  # gzip behind a .csv name
    return name, raw


def use_trace(path: Path) -> None:
    """Load a trace, pick, resample and replay it in a two-module scenario."""
    from shift_rl.config import scenario_from_dict
    from shift_rl.env import ResourceShiftEnv
    from shift_rl.traces import load_trace

    trace = load_trace(path)
    assert np.isfinite(trace.values).all() and (trace.values >= 0).all()
    picked = trace.select(None, min(2, len(trace.columns)))
    assert np.isfinite(picked.resample(120.0 if trace.step_seconds else 60.0).values).all()
    if len(trace.columns) < 2:
        return
    data = {
        "name": "fuzz", "episode_ticks": 30, "resources": [{"name": "cpu", "units": 16}],
        "modules": [{"name": f"m{i}", "service_rate": 10.0, "slo_seconds": 0.5, "units": 4}
                    for i in range(2)],
        "demand": {"trace": {"path": str(path), "step_seconds": 60.0}},
        "forecast": {"history_ticks": 5},
    }  # fmt: skip
    env = ResourceShiftEnv(scenario_from_dict(data))
    obs, _ = env.reset(seed=0)
    for _ in range(3):
        obs, reward, *_ = env.step(env.action_space.sample())
        assert np.isfinite(obs).all() and np.isfinite(reward)


@FUZZ
@given(case=trace_files())
def test_fuzz_trace_csv(case: tuple[str, bytes]) -> None:
    name, raw = case
    path = _write(raw, name)
    try:
        check_case(use_trace, path, names=(str(path),))
    finally:
        shutil.rmtree(path.parent, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Policy folders
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def policy_bases(tmp_path_factory) -> list[Path]:
    """The shipped format-1 release and a format-2 export of a small untrained actor."""
    from stable_baselines3 import PPO

    from shift_rl.config import load_scenario, load_train_config
    from shift_rl.env import ResourceShiftEnv
    from shift_rl.train import export_trained

    model = PPO("MlpPolicy", ResourceShiftEnv("default"), policy_kwargs={"net_arch": [8]},
                seed=0, device="cpu")  # fmt: skip
    cfg = load_train_config(None, ["run_name=fuzz", "algo=ppo", "network.net_arch=[8]"])
    v2 = tmp_path_factory.mktemp("v2") / "p"
    export_trained(model, cfg, load_scenario("default"), v2)
    return [SHIPPED_POLICY, v2]


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for k, v in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, v, allow_pickle=True)
            zf.writestr(f"{k}.npy", member.getvalue())
    return buf.getvalue()


def _huge_member() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            header, {"descr": "<f4", "fortran_order": False, "shape": (40_000, 40_000)}
        )
        zf.writestr("hidden0_w.npy", header.getvalue() + bytes(4096))
    return buf.getvalue()


FILE_EDITS = st.sampled_from(
    ["none", "none", "flip", "truncate", "random_npz", "object_npz", "nan_npz", "huge_npz",
     "empty", "rm_weights", "rm_onnx", "dir_weights", "devzero", "loop", "json_garbage",
     "json_deep", "json_nan", "json_truncate"]
)  # fmt: skip


def _rehash(folder: Path) -> None:
    from shift_rl.runtime import spec_digest

    try:
        spec = json.loads((folder / "policy.json").read_text())
        for name in list(spec.get("files", {})):
            if (folder / name).is_file():
                digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()
                spec["files"][name] = digest
        if "spec_sha256" in spec:
            spec["spec_sha256"] = spec_digest(spec)
        (folder / "policy.json").write_text(json.dumps(spec))
    except (ValueError, TypeError, AttributeError, OSError, RecursionError):
        pass  # a spec too broken to rehash stays as it is


POLICY_CASES = st.tuples(
    st.integers(min_value=0, max_value=1),  # the shipped format-1 release or a format-2 export
    st.one_of(st.just([]), EDITS),  # edits of policy.json's tree
    FILE_EDITS,
    st.booleans(),  # recompute the hashes after the edits (a careful forger)
    st.integers(min_value=0, max_value=2**16),
)


def build_policy(base: Path, dest: Path, edits: list, edit: str, rehash: bool, at: int) -> None:
    shutil.copytree(base, dest)
    if edits:
        spec = apply_edits(json.loads((base / "policy.json").read_text()), edits)
        (dest / "policy.json").write_text(json.dumps(spec))
    weights = dest / "weights.npz"
    blob = weights.read_bytes()
    if edit == "flip":
        blob = bytearray(blob)
        blob[at % len(blob)] ^= 0xFF
        weights.write_bytes(bytes(blob))
    elif edit == "truncate":
        weights.write_bytes(blob[: at % len(blob)])
    elif edit == "random_npz":
        rng = np.random.default_rng(at)
        shapes = [(int(rng.integers(0, 5)),), (int(rng.integers(0, 5)), int(rng.integers(0, 5)))]
        names = ["hidden0_w", "hidden0_b", "hidden1_w", "hidden1_b", "head_w", "head_b", "x"]
        weights.write_bytes(
            _npz(
                {
                    str(n): rng.random(shapes[i % 2]).astype(
                        rng.choice(["f4", "f8", "i8", "?", "c8"])
                    )
                    for i, n in enumerate(names[: at % 8])
                }
            )
        )
    elif edit == "object_npz":
        weights.write_bytes(_npz({"head_w": np.array([{"a": 1}], dtype=object)}))
    elif edit == "nan_npz":
        with np.load(base / "weights.npz") as z:
            arrays = {k: z[k] for k in z.files}
        arrays["head_w"] = arrays["head_w"] * np.nan
        weights.write_bytes(_npz(arrays))
    elif edit == "huge_npz":
        weights.write_bytes(_huge_member())
    elif edit == "empty":
        weights.write_bytes(b"")
    elif edit == "rm_weights":
        weights.unlink()
    elif edit == "rm_onnx":
        (dest / "policy.onnx").unlink()
    elif edit == "dir_weights":
        weights.unlink()
        weights.mkdir()
    elif edit == "devzero":
        weights.unlink()
        weights.symlink_to("/dev/zero")
    elif edit == "loop":
        (dest / "policy.onnx").unlink()
        (dest / "policy.onnx").symlink_to(dest / "policy.onnx")
    elif edit == "json_garbage":
        (dest / "policy.json").write_bytes(bytes(range(256)))
    elif edit == "json_deep":
        (dest / "policy.json").write_text("[" * 50_000 + "]" * 50_000)
    elif edit == "json_nan":
        (dest / "policy.json").write_text(
            (dest / "policy.json").read_text().replace('"rollback_threshold": 0.05',
                                                       '"rollback_threshold": NaN'))  # fmt: skip
    elif edit == "json_truncate":
        text = (dest / "policy.json").read_bytes()
        (dest / "policy.json").write_bytes(text[: at % max(len(text), 1)])
    if rehash:
        _rehash(dest)


def use_policy(folder: Path) -> None:
    """Resolve a policy folder for the default scenario and act with it."""
    from shift_rl.agents import resolve_policy
    from shift_rl.env import ResourceShiftEnv

    env = ResourceShiftEnv("default")
    policy = resolve_policy(str(folder), env.params)
    obs, _ = env.reset(seed=0)
    for _ in range(3):
        action = policy.act(obs, env.action_masks())
        assert env.action_space.contains(np.asarray(action)), action
        obs, *_ = env.step(action)


@FUZZ
@given(case=POLICY_CASES)
def test_fuzz_policy_folders(policy_bases: list[Path], case) -> None:
    which, edits, edit, rehash, at = case
    folder = Path(tempfile.mkdtemp(prefix="fuzz-")) / "p"
    try:
        build_policy(policy_bases[which], folder, edits, edit, rehash, at)
        check_case(use_policy, folder, names=(str(folder),))
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# The fixed corpus: the probe's shapes of input and their relatives
# ---------------------------------------------------------------------------------------------


def _default_yaml(**changes: Any) -> bytes:
    data = copy.deepcopy(SCENARIOS[0])
    for key, value in changes.items():
        node = data
        *parents, last = key.split("__")
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        node[int(last) if last.isdigit() else last] = value
    return yaml.safe_dump(data).encode()


CORPUS_SCENARIOS = {
    "cost_1e308": _default_yaml(reward__cost_per_unit=1e308),
    "value_1e308": _default_yaml(modules__0__value=1e308),
    "ema_alpha_5": _default_yaml(forecast__params={"alpha": 5.0}),
    "huge_episode": _default_yaml(episode_ticks=10**12),
    "units_2_64": _default_yaml(resources__0__units=2**64),
    "complex_key": _default_yaml() + b"? [a, b]\n: 1\n",
    "alias_bomb": b"name: bomb\n" + _laughs(12).encode(),
    "light_plane": _default_yaml(**{f"modules__{i}__demand__base": 50.0 for i in range(6)}),
    "huge_values": _default_yaml(modules__0__demand__base=1e12, modules__1__value=1e6),
    "long_regime": _default_yaml(episode_ticks=200_000,
                                 modules__2__demand__regime={"rate_per_day": 500.0,
                                                             "magnitude": 5.0}),
    "many_events": _default_yaml(episode_ticks=1_000_000,
                                 faults={"telemetry_gap": {"rate_per_day": 9000.0}}),
    "ar_big": _default_yaml(forecast={"model": "ar", "params": {"lags": 64, "harmonics": 16,
                                                                "refit_every": 1}}),
    "start_tick_past": yaml.safe_dump({**SCENARIOS[3], "demand": {"trace": {
        "path": str(TRACE), "start_tick": 10**6}}}).encode(),
    "list": b"- a\n- b\n",
    "empty": b"",
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CORPUS_SCENARIOS))
def test_corpus_scenarios(name: str) -> None:
    path = _write(CORPUS_SCENARIOS[name], "s.yaml")
    try:
        check_case(use_scenario, path, names=(str(path), str(TRACE)))
    finally:
        shutil.rmtree(path.parent, ignore_errors=True)


CORPUS_TRACES = {
    "tick_jump": ("t.csv", b"tick,a,b\n0,1,2\n1,1,2\n2,1,2\n3,1,2\n4,1,2\n1000000000,1,2\n"),
    "numeric_names": ("t.csv", b"step,1633748,223811\n0,1,2\n1,3,4\n2,5,6\n"),
    "mixed_time": ("t.csv", b"time,a,b\n2020-01-01 00:00:00,1,2\n2020-01-01 00:01:00,1,2\n5,1,2\n"),
    "empty_cells": ("t.csv", b"tick,a,b\n0,1,\n1,,2\n2,3,4\n3,,\n"),
    "all_missing": ("t.csv", b"tick,a,b\n0,,1\n1,,2\n2,,3\n"),
    "gzip_bomb": ("t.csv.gz", None),  # written by _gzip_bomb: 300 MiB of text in ~300 kB
    "bom_crlf": ("t.csv", b"\xef\xbb\xbftick,a,b\r\n0,1,2\r\n1,3,4\r\n"),
    "dup_columns": ("t.csv", b"tick,a,a\n0,1,2\n1,3,4\n"),
}


def _gzip_bomb() -> Path:
    """64 MiB of text in ~70 kB (the read limit is lowered to 16 MiB for it: the test is that
    reading stops at the limit, in bounded time, not how long 256 MiB of blank lines take)."""
    path = _write(b"", "t.csv.gz")
    block = b"\n" * (1 << 20)
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(b"tick,a\n" + b"0,1\n" * 10)
        for _ in range(64):
            f.write(block)
    return path


@pytest.mark.parametrize("name", sorted(CORPUS_TRACES))
def test_corpus_traces(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shift_rl.traces, "MAX_TRACE_BYTES", 16 * 2**20)  # the forks inherit it
    file_name, raw = CORPUS_TRACES[name]
    path = _write(raw, file_name) if raw is not None else _gzip_bomb()
    try:
        check_case(use_trace, path, names=(str(path),))
    finally:
        shutil.rmtree(path.parent, ignore_errors=True)
