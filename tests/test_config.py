"""Scenario validation: bad input fails with one ConfigError naming field, value and allowed."""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from shift_rl.config import (
    SCENARIO_DIR,
    ConfigError,
    ScenarioConfig,
    load_scenario,
    scenario_from_dict,
)
from shift_rl.forecast import FORECASTERS

SHIPPED = sorted(SCENARIO_DIR.glob("*.yaml"))
TRACE = SCENARIO_DIR.parent / "traces" / "azure_functions_2019_top6.csv.gz"


def _raw(name: str) -> dict[str, Any]:
    return yaml.safe_load((SCENARIO_DIR / f"{name}.yaml").read_text())


def _base() -> dict[str, Any]:
    """A small valid scenario: two modules, one cpu pool of 20 units."""
    return {
        "name": "t",
        "resources": [{"name": "cpu", "units": 20}],
        "modules": [
            {
                "name": "a",
                "service_rate": 10.0,
                "slo_seconds": 0.5,
                "units": 8,
                "floor": 2,
                "demand": {"base": 1000.0},
            },
            {
                "name": "b",
                "service_rate": 20.0,
                "slo_seconds": 0.25,
                "units": 8,
                "floor": 2,
                "demand": {"base": 2000.0},
            },
        ],
        "safety": {"max_units_per_shift": 4, "max_units_per_tick": 4, "max_module_share": 0.6},
        "action": {"amount_levels": [1, 2, 4]},
    }


def _multi() -> dict[str, Any]:
    """The base scenario with two resource kinds and per-kind mappings."""
    data = _base()
    data["resources"] = [{"name": "cpu", "units": 20}, {"name": "mem", "units": 40}]
    for m in data["modules"]:
        m["units"] = {"cpu": 8, "mem": 16}
        m["floor"] = {"cpu": 2, "mem": 4}
    return data


def _set(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """``data`` with the dotted ``path`` (list indices as numbers) set to ``value``."""
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node: Any = data
    for p in parents:
        node = node[p]
    node[last] = value
    return data


def _error(data: Any, **kwargs: Any) -> str:
    """The message of the ConfigError ``scenario_from_dict(data)`` raises."""
    with pytest.raises(ConfigError) as info:
        scenario_from_dict(data, **kwargs)
    assert not isinstance(info.value, ValidationError)
    assert info.value.__cause__ is None  # not a chained raw pydantic error
    return str(info.value)


def _one_problem(msg: str) -> str:
    """The single problem line of a one-problem message (after 'invalid scenario <src>: ')."""
    assert "\n" not in msg, msg
    assert msg.startswith("invalid scenario <dict>: "), msg
    return msg.removeprefix("invalid scenario <dict>: ")


def _check(mutate: Callable[[dict[str, Any]], Any], *fragments: str) -> str:
    data = _base()
    mutate(data)
    line = _one_problem(_error(data))
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    return line


# --- the base fixtures are valid ---------------------------------------------------------------


def test_base_fixtures_are_valid() -> None:
    assert scenario_from_dict(_base()).name == "t"
    assert scenario_from_dict(_multi()).resource_names == ["cpu", "mem"]


# --- unknown keys ------------------------------------------------------------------------------


def test_unknown_top_level_key() -> None:
    line = _check(lambda d: _set(d, "tick_secs", 60), "tick_secs: unknown key")
    assert "did you mean 'tick_seconds'?" in line
    assert "allowed keys: name, description, tick_seconds" in line


def test_unknown_nested_key() -> None:
    line = _check(
        lambda d: _set(d, "safety.max_units_per_shfit", 4),
        "safety.max_units_per_shfit: unknown key",
        "did you mean 'max_units_per_shift'?",
    )
    assert "max_module_share" in line and "stabilization_ticks" in line  # the allowed keys


def test_unknown_key_in_module() -> None:
    _check(lambda d: _set(d, "modules.1.servicerate", 5), "modules.1.servicerate: unknown key")


# --- wrong types -------------------------------------------------------------------------------


def test_string_for_int() -> None:
    _check(
        lambda d: _set(d, "episode_ticks", "720"),
        "episode_ticks: must be an integer >= 1",
        "(got '720')",
    )


def test_list_for_mapping() -> None:
    _check(lambda d: _set(d, "safety", [1, 2]), "safety: must be a mapping", "(got [1, 2])")


def test_mapping_for_list() -> None:
    _check(
        lambda d: _set(d, "modules", {"a": 1}),
        "modules: must be a list of at least 2 items",
        "(got a mapping)",
    )


def test_float_for_int_is_rejected_strictly() -> None:
    _check(
        lambda d: _set(d, "episode_ticks", 720.0),
        "episode_ticks: must be an integer >= 1",
        "(got 720.0, a float)",
    )


def test_bool_for_int_is_rejected() -> None:
    _check(lambda d: _set(d, "warmup_ticks", True), "warmup_ticks:", "(got True, a boolean)")


def test_string_for_float() -> None:
    _check(
        lambda d: _set(d, "modules.0.service_rate", "fast"),
        "modules.0.service_rate: must be a number > 0",
        "(got 'fast')",
    )


def test_null_for_section() -> None:
    _check(lambda d: _set(d, "safety", None), "safety: must be a mapping", "(got None)")


def test_infinite_number_is_rejected() -> None:
    _check(lambda d: _set(d, "tick_seconds", float("inf")), "tick_seconds:", "(got inf)")


def test_missing_required_field() -> None:
    _check(
        lambda d: d["modules"][0].pop("units"),
        "modules.0.units: required field is missing",
        "an integer >= 0 and <= 10000 or a mapping",
    )


# --- union fields (int | mapping, number | 'random'): one line per problem ----------------------


def test_union_wrong_type_is_one_line() -> None:
    _check(
        lambda d: _set(d, "modules.0.units", "ten"),
        "modules.0.units: must be an integer >= 0 and <= 10000 or a mapping (got 'ten')",
    )


def test_union_mapping_value_names_the_kind() -> None:
    data = _multi()
    data["modules"][0]["units"]["mem"] = -3
    line = _one_problem(_error(data))
    assert line == "modules.0.units.mem: must be an integer >= 0 and <= 10000 (got -3)"


def test_union_with_literal_lists_both_choices() -> None:
    _check(
        lambda d: _set(d, "demand", {"start_hour": 25}),
        "demand.start_hour: must be a number >= 0 and < 24 or 'random' (got 25)",
    )


def test_no_pydantic_internals_in_messages() -> None:
    data = _base()
    _set(data, "modules.0.units", -1)
    _set(data, "modules.1.units_per_server", 0)
    _set(data, "demand", {"start_hour": "noon"})
    msg = _error(data)
    for internal in ("constrained-", "literal[", "dict[", "Input should", "Value error"):
        assert internal not in msg, msg


# --- negative / zero sizes ---------------------------------------------------------------------


def test_negative_units() -> None:
    _check(
        lambda d: _set(d, "modules.0.units", -1),
        "modules.0.units: must be an integer >= 0 and <= 10000 or a mapping (got -1)",
    )


def test_negative_pool_size() -> None:
    _check(
        lambda d: _set(d, "resources.0.units", -5),
        "resources.0.units: must be an integer >= 1 and <= 10000 (got -5)",
    )


def test_zero_pool_units() -> None:
    _check(
        lambda d: _set(d, "resources.0.units", 0),
        "resources.0.units: must be an integer >= 1 and <= 10000 (got 0)",
    )


def test_no_resources() -> None:
    _check(lambda d: _set(d, "resources", []), "resources: must be a list of at least 1 item")


def test_single_module() -> None:
    _check(lambda d: d["modules"].pop(), "modules: must be a list of at least 2 items")


# --- floors and initial allocation -------------------------------------------------------------


def test_floor_above_pool_size() -> None:
    _check(
        lambda d: _set(d, "modules.0.floor", 25),
        "modules.0.floor: floor 25 is above the cpu pool size 20",
        "'a'",
    )


def test_floor_above_max_module_share() -> None:
    _check(
        lambda d: _set(d, "modules.0.floor", 13),
        "modules.0.floor: floor 13 is above safety.max_module_share",
        "0.6 x 20 = 12",
    )


def test_floors_sum_above_pool() -> None:
    # Floors above the pool imply allocations above it too (units >= floor): both are named.
    data = _base()
    data["resources"][0]["units"] = 16
    data["modules"].append({**data["modules"][0], "name": "c"})
    for m in data["modules"]:
        m["floor"] = m["units"] = 6
    msg = _error(data)
    assert msg.startswith("invalid scenario <dict> (2 problems):")
    assert "modules.*.floor: the cpu floors add up to 18, above the pool size 16" in msg
    assert "modules.*.units: the initial cpu allocations add up to 18" in msg


def test_initial_units_below_floor() -> None:
    _check(
        lambda d: _set(d, "modules.1.units", 1),
        "modules.1.units: initial cpu units 1 are below the module's floor 2",
        "'b'",
    )


def test_initial_units_below_floor_names_the_kind() -> None:
    data = _multi()
    data["modules"][0]["units"]["mem"] = 3
    line = _one_problem(_error(data))
    assert line.startswith(
        "modules.0.units.mem: initial mem units 3 are below the module's floor 4"
    )


def test_initial_allocation_above_pool() -> None:
    _check(
        lambda d: _set(d, "modules.0.units", 13),
        "modules.*.units: the initial cpu allocations add up to 21, above the pool size 20",
    )


# --- safety and action ---------------------------------------------------------------------------


def test_stabilization_window_zero() -> None:
    _check(
        lambda d: _set(d, "safety.stabilization_ticks", 0),
        "safety.stabilization_ticks: must be an integer >= 1 and <= 1000000 (got 0)",
    )


@pytest.mark.parametrize("share", [0, 0.0, 1.5])
def test_max_module_share_out_of_range(share: float) -> None:
    _check(
        lambda d: _set(d, "safety.max_module_share", share),
        f"safety.max_module_share: must be a number > 0 and <= 1 (got {share!r})",
    )


def test_rollback_threshold_above_one() -> None:
    _check(
        lambda d: _set(d, "safety.rollback_threshold", 1.5),
        "safety.rollback_threshold: must be a number >= 0 and <= 1 (got 1.5)",
    )


def test_max_units_per_shift_above_pool() -> None:
    data = _set(_base(), "safety.max_units_per_shift", 30)
    _set(data, "action.amount_levels", [1])
    assert _one_problem(_error(data)).startswith(
        "safety.max_units_per_shift: 30 is above the cpu pool size 20"
    )


def test_amount_levels_not_increasing() -> None:
    _check(
        lambda d: _set(d, "action.amount_levels", [1, 4, 2]),
        "action.amount_levels: must be strictly increasing",
        "(got [1, 4, 2])",
    )


def test_amount_levels_above_max_units_per_shift() -> None:
    _check(
        lambda d: _set(d, "action.amount_levels", [1, 2, 8]),
        "action.amount_levels: level 8 is above safety.max_units_per_shift = 4",
    )


def test_amount_level_zero() -> None:
    _check(
        lambda d: _set(d, "action.amount_levels", [0, 1]),
        "action.amount_levels.0: must be an integer >= 1 and <= 10000 (got 0)",
    )


# --- demand and traces -------------------------------------------------------------------------


def test_trace_file_missing_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv.gz"
    data = _set(_base(), "demand", {"trace": {"path": str(missing)}})
    line = _one_problem(_error(data))
    assert line.startswith(f"demand.trace.path: file {str(missing)!r} does not exist")
    assert "CSV" in line


def test_trace_file_missing_relative_shows_resolved_path(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(
        yaml.safe_dump(_set(_base(), "demand", {"trace": {"path": "x.csv"}}))
    )
    with pytest.raises(ConfigError) as info:
        load_scenario(tmp_path / "s.yaml")
    msg = str(info.value)
    assert "demand.trace.path: file 'x.csv' (resolved to" in msg
    assert repr(str(tmp_path / "x.csv")) in msg


def test_module_without_demand_and_no_trace() -> None:
    _check(
        lambda d: d["modules"][1].pop("demand"),
        "modules.1.demand: required unless demand.trace replays a trace",
        "'b'",
    )


def test_module_without_demand_is_fine_with_a_trace() -> None:
    data = _base()
    for m in data["modules"]:
        del m["demand"]
    data["demand"] = {"trace": {"path": str(TRACE)}}
    assert scenario_from_dict(data).demand.trace is not None


def test_trace_start_tick_negative() -> None:
    _check(
        lambda d: _set(d, "demand", {"trace": {"path": str(TRACE), "start_tick": -3}}),
        "demand.trace.start_tick: must be an integer >= 0 and <= 1000000000 or 'random' (got -3)",
    )


# --- names and per-kind mappings ---------------------------------------------------------------


def test_duplicate_module_names() -> None:
    _check(
        lambda d: _set(d, "modules.1.name", "a"),
        "modules: duplicate name 'a' (modules.0, modules.1); names must be unique",
    )


def test_duplicate_resource_names() -> None:
    data = _multi()
    data["resources"][1]["name"] = "cpu"
    for m in data["modules"]:
        m["units"], m["floor"] = 8, 2
    msg = _error(data)
    assert "resources: duplicate name 'cpu' (resources.0, resources.1); names must be unique" in msg


def test_units_mapping_with_unknown_kind() -> None:
    line = _check(
        lambda d: _set(d, "modules.0.units", {"gpu": 3}),
        "modules.0.units: unknown kind 'gpu', missing kind 'cpu'",
    )
    assert "resource kinds ['cpu']" in line


def test_units_mapping_missing_a_kind() -> None:
    data = _multi()
    data["modules"][1]["floor"] = {"cpu": 2}
    line = _one_problem(_error(data))
    assert line.startswith("modules.1.floor: missing kind 'mem'")


# --- module physics and forecaster -------------------------------------------------------------


def test_slo_times_service_rate_not_above_one() -> None:
    line = _check(
        lambda d: _set(d, "modules.0.slo_seconds", 0.1),
        "modules.0: slo_seconds * service_rate = 0.1 * 10 = 1, must be > 1",
        "'a'",
    )
    assert "1 / service_rate = 0.1 s" in line


def test_unknown_forecaster_lists_the_allowed_ones() -> None:
    line = _check(
        lambda d: _set(d, "forecast", {"model": "arima"}),
        "forecast.model: unknown forecaster",
        "(got 'arima')",
    )
    for name in FORECASTERS:
        assert repr(name) in line
    assert line.count("'arima'") == 1  # the value is named once, not twice


def test_forecaster_param_of_wrong_type() -> None:
    _check(
        lambda d: _set(d, "forecast", {"model": "ema", "params": {"alpha": "x"}}),
        "forecast.params.alpha: must be a number (got 'x')",
    )


# --- multi-problem input -----------------------------------------------------------------------


def test_multi_error_input_lists_every_problem_in_one_message() -> None:
    data = _base()
    _set(data, "tick_secs", 60)
    _set(data, "safety.max_module_share", 2)
    _set(data, "modules.0.units", -1)
    _set(data, "modules.1.slo_seconds", "slow")
    msg = _error(data)
    head, *lines = msg.splitlines()
    assert head == "invalid scenario <dict> (4 problems):"
    assert len(lines) == 4 and all(line.startswith("  - ") for line in lines)
    body = "\n".join(lines)
    for fragment in (
        "tick_secs: unknown key",
        "safety.max_module_share: must be a number > 0 and <= 1 (got 2)",
        "modules.0.units: must be an integer >= 0 and <= 10000 or a mapping (got -1)",
        "modules.1.slo_seconds: must be a number > 0 and <= 1000000 (got 'slow')",
    ):
        assert fragment in body


def test_multi_error_cross_field_problems_are_all_listed() -> None:
    data = _base()
    _set(data, "modules.1.name", "a")
    _set(data, "modules.0.units", {"gpu": 1})
    data["modules"][1].pop("demand")
    msg = _error(data)
    assert "(3 problems)" in msg
    assert "duplicate name 'a'" in msg
    assert "modules.0.units: unknown kind 'gpu'" in msg
    assert "modules.1.demand: required" in msg


def test_field_errors_and_missing_trace_in_one_message(tmp_path: Path) -> None:
    data = _set(_base(), "demand", {"trace": {"path": str(tmp_path / "gone.csv")}})
    _set(data, "episode_ticks", 0)
    msg = _error(data)
    assert "(2 problems)" in msg
    assert "episode_ticks: must be an integer >= 1 and <= 1000000 (got 0)" in msg
    assert "demand.trace.path: file" in msg


# --- top-level input and YAML ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "got"), [([1, 2], "got a list"), (None, "got an empty document"), ("x", "got a str")]
)
def test_not_a_mapping(data: Any, got: str) -> None:
    msg = _error(data)
    assert msg.startswith("invalid scenario <dict>: the top level must be a mapping")
    assert got in msg


def test_yaml_that_is_a_list(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- name: x\n- name: y\n")
    with pytest.raises(ConfigError, match="the top level must be a mapping") as info:
        load_scenario(path)
    assert str(path) in str(info.value) and "got a list" in str(info.value)


def test_invalid_yaml_syntax(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nresources: [\n  {name: cpu, units: 4\n")
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    msg = str(info.value)
    assert msg.startswith(f"invalid scenario {path}: not valid YAML")
    assert "line" in msg  # pyyaml's position of the problem


def test_duplicate_yaml_key(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text(yaml.safe_dump(_base(), sort_keys=False) + "safety: {max_units_per_shift: 8}\n")
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    assert "found duplicate key 'safety'" in str(info.value)


def test_yaml_merge_keys_still_work(tmp_path: Path) -> None:
    """The duplicate-key check leaves YAML merge keys (``<<: *anchor``) alone."""
    path = tmp_path / "merge.yaml"
    path.write_text(
        "name: t\n"
        "resources: [{name: cpu, units: 20}]\n"
        "modules:\n"
        "  - &a {name: a, service_rate: 10.0, slo_seconds: 0.5, units: 8, floor: 2,\n"
        "        demand: {base: 1000.0}}\n"
        "  - {<<: *a, name: b}\n"
        "safety: {max_units_per_shift: 4}\n"
        "action: {amount_levels: [1, 2, 4]}\n"
    )
    cfg = load_scenario(path)
    assert [m.name for m in cfg.modules] == ["a", "b"]


def test_unknown_scenario_name_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        load_scenario("no_such_scenario")
    msg = str(info.value)
    assert "unknown scenario 'no_such_scenario'" in msg
    for path in SHIPPED:
        assert path.stem in msg


def test_path_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "scenario.yaml"
    with pytest.raises(ConfigError) as info:
        load_scenario(missing)
    msg = str(info.value)
    assert f"scenario file {str(missing)!r} does not exist" in msg
    assert "default" in msg  # points at the shipped names too


def test_directory_is_not_a_scenario(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_scenario(tmp_path)


def test_wrong_argument_type() -> None:
    with pytest.raises(ConfigError, match="got int"):
        load_scenario(3)  # type: ignore[arg-type]


def test_file_message_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_set(_base(), "episode_ticks", -1)))
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    assert str(info.value) == (
        f"invalid scenario {path}: episode_ticks: must be an integer >= 1 and <= 1000000 (got -1)"
    )


# --- what loads --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_scenario_loads(path: Path) -> None:
    cfg = load_scenario(path)
    assert isinstance(cfg, ScenarioConfig)
    assert cfg.name == path.stem


def test_load_by_path_name_and_object_agree() -> None:
    by_path = load_scenario(SCENARIO_DIR / "default.yaml")
    by_str_path = load_scenario(str(SCENARIO_DIR / "default.yaml"))
    by_name = load_scenario("default")
    assert by_path == by_name == by_str_path
    assert load_scenario(by_name) is by_name


def test_relative_trace_path_is_resolved_against_the_yaml_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scen_dir = tmp_path / "scenarios"
    (tmp_path / "traces").mkdir()
    scen_dir.mkdir()
    shutil.copy(TRACE, tmp_path / "traces" / "t.csv.gz")
    data = _raw("trace")
    data["demand"]["trace"]["path"] = "../traces/t.csv.gz"
    (scen_dir / "mine.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.chdir(tmp_path / "traces")  # the working directory must not matter
    cfg = load_scenario(scen_dir / "mine.yaml")
    assert cfg.demand.trace is not None
    assert Path(cfg.demand.trace.path) == (tmp_path / "traces" / "t.csv.gz").resolve()
    assert Path(cfg.demand.trace.path).is_absolute()


def test_shipped_trace_scenario_resolves_its_trace() -> None:
    cfg = load_scenario("trace")
    assert cfg.demand.trace is not None
    assert Path(cfg.demand.trace.path) == TRACE.resolve()


def test_scenario_from_dict_does_not_mutate_its_input() -> None:
    data = _raw("trace")
    before = copy.deepcopy(data)
    scenario_from_dict(data, base=SCENARIO_DIR)
    assert data == before
