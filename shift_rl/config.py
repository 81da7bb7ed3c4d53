"""Validated scenario configuration, loaded from YAML.

A scenario describes one control plane: the resource pool, the modules that share it, their
demand, the safety rails, the reward and the faults. Every field has a unit and an allowed
range; bad input fails on load with one :class:`ConfigError` naming the field, the value and
what is allowed, before anything runs.

Units used throughout: one *tick* is one control interval (``tick_seconds``, default 60 s);
demand is in requests per tick; ``service_rate`` is requests per second served by one
*server*; a server needs ``units_per_server[r]`` units of each resource kind ``r``.
"""

from __future__ import annotations

import copy
import difflib
import errno
import itertools
import os
import re
import stat
import types
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from shift_rl.archetypes import expand_scenario

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SCENARIO_DIR = PROJECT_ROOT / "configs" / "scenarios"

# Upper bounds: every size the simulator allocates or loops over is bounded here, so a typo
# (``units: 2**64``, ``episode_ticks: 1e12``, ``cost_per_unit: 1e308``) is a ConfigError on
# load, never an overflow, a hang or a memory blow-up later (README "Scenario format").
MAX_UNITS = 10_000
"""Units of one kind in a pool (and so in any allocation, floor or shift). The oracle bound
allocates a curve of up to this many entries per tick and kind, and its exact step's DP is at
most this wide."""
MAX_SERVERS = 100_000
"""Servers one module could run with the whole pool (the queue model is O(servers))."""
MAX_TICKS = 1_000_000
"""Ticks of an episode, of the forecaster's history and of any duration."""
MAX_PER_DAY = 10_000.0
"""Events (bursts, regime shifts, faults) per day."""
MAX_EPISODE_BYTES = 512 * 2**20
"""Memory of one env's episode: exogenous arrays and forecaster state."""
MAX_NAME = 200
"""Characters of a name (scenario, resource kind, module)."""

Share = Annotated[float, Field(ge=0.0, le=1.0)]
PosFloat = Annotated[float, Field(gt=0.0)]
NonNegFloat = Annotated[float, Field(ge=0.0)]
PosInt = Annotated[int, Field(ge=1)]
NonNegInt = Annotated[int, Field(ge=0)]
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME)]
Units = Annotated[int, Field(ge=0, le=MAX_UNITS)]
PosUnits = Annotated[int, Field(ge=1, le=MAX_UNITS)]
Ticks = Annotated[int, Field(ge=1, le=MAX_TICKS)]
NonNegTicks = Annotated[int, Field(ge=0, le=MAX_TICKS)]
PerDay = Annotated[float, Field(ge=0.0, le=MAX_PER_DAY)]
Magnitude = Annotated[float, Field(ge=0.0, le=1000.0)]
"""A relative size (extra demand of a burst or an event)."""
LogStd = Annotated[float, Field(ge=0.0, le=5.0)]
"""A standard deviation on the log scale (5 is a factor of e**5 ~ 150 per std)."""
Cost = Annotated[float, Field(ge=0.0, le=1000.0)]


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the field and what is allowed."""


class _Model(BaseModel):
    """Strict base: unknown keys, wrong types and inf / nan are errors, never coerced."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class ResourceConfig(_Model):
    """One resource kind of the pool."""

    name: Name = Field(description="resource kind, e.g. cpu or mem")
    units: PosUnits = Field(description="allocatable units of this kind in the pool")


class DiurnalConfig(_Model):
    amplitude: Share = Field(0.5, description="relative swing of the daily cycle")
    peak_hour: Annotated[float, Field(ge=0.0, lt=24.0)] = Field(
        14.0, description="hour of day (0-24) of the daily peak"
    )


class BurstConfig(_Model):
    rate_per_day: PerDay = Field(0.0, description="expected bursts per day (Poisson)")
    magnitude: Magnitude = Field(1.0, description="extra demand at a burst's start, relative")
    duration_ticks: Ticks = Field(10, description="e-folding decay time of a burst, ticks")


class RegimeConfig(_Model):
    rate_per_day: PerDay = Field(0.0, description="expected level shifts per day")
    magnitude: LogStd = Field(0.3, description="std of the log-level jump at a shift")


class EventConfig(_Model):
    """A scheduled daily event (batch window, morning log-in wave, flash sale)."""

    hour: Annotated[float, Field(ge=0.0, lt=24.0)] = Field(description="start, hour of day")
    magnitude: Magnitude = Field(description="extra demand while it runs, relative")
    duration_ticks: Ticks = Field(description="ticks it lasts, ramps included")
    ramp_ticks: NonNegTicks = Field(5, description="ticks to ramp up (and down again)")


class DemandShape(_Model):
    """Synthetic demand of one module, in requests per tick."""

    base: Annotated[float, Field(gt=0.0, le=1e12)] = Field(
        description="mean demand, requests per tick"
    )
    diurnal: DiurnalConfig = DiurnalConfig()
    weekly_amplitude: Share = Field(0.0, description="relative swing of the weekly cycle")
    noise: LogStd = Field(0.05, description="std of the log-scale AR(1) noise")
    noise_autocorr: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.8
    bursts: BurstConfig = BurstConfig()
    trend_per_day: Annotated[float, Field(gt=-1.0, le=10.0)] = Field(
        0.0, description="relative growth of the level per day"
    )
    regime: RegimeConfig = RegimeConfig()
    events: list[EventConfig] = Field([], max_length=100, description="scheduled events, every day")


ServerUnits = Annotated[float, Field(ge=0.01, le=1e4)]


class ModuleConfig(_Model):
    """One module (service) drawing units from the pool."""

    name: Name
    service_rate: Annotated[float, Field(gt=0.0, le=1e9)] = Field(
        description="requests per second served by one server"
    )
    slo_seconds: Annotated[float, Field(gt=0.0, le=1e6)] = Field(
        description="latency objective of one request, seconds"
    )
    value: Annotated[float, Field(gt=0.0, le=1e6)] = Field(
        1.0, description="weight of this module's goal attainment (normalized to sum 1)"
    )
    units: Units | dict[str, Units] = Field(
        description="initial allocation: an int for every kind, or a mapping kind -> units"
    )
    floor: Units | dict[str, Units] = Field(
        1, description="units below which no shift may take this module"
    )
    units_per_server: ServerUnits | dict[str, ServerUnits] = Field(
        1.0, description="units of each kind one server needs"
    )
    demand: DemandShape | None = Field(None, description="synthetic demand (or use a trace)")
    report_noise: LogStd = Field(0.1, description="std of the log-error of reported need")
    overconfidence: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(
        0.0, description="share of its true report error that the module's confidence hides"
    )

    @model_validator(mode="after")
    def _slo_reachable(self) -> ModuleConfig:
        product = self.slo_seconds * self.service_rate
        if product <= 1.0:
            raise ValueError(
                f"slo_seconds * service_rate = {self.slo_seconds:g} * {self.service_rate:g} = "
                f"{product:.3g}, must be > 1 (the SLO must be longer than one mean service "
                f"time, 1 / service_rate = {1.0 / self.service_rate:.3g} s; module {self.name!r})"
            )
        return self


class TraceConfig(_Model):
    """Replay of a real trace: column i of the file drives module i (or the named columns)."""

    path: str = Field(
        min_length=1, max_length=4096, description="CSV or CSV.gz, relative to the scenario file"
    )
    columns: list[Annotated[str, Field(max_length=1000)] | NonNegInt] | None = Field(
        None, max_length=100_000, description="series to use, in order (names or indices)"
    )
    peak_share: Annotated[float, Field(gt=0.0, le=1.0)] = Field(
        0.25, description="each series is scaled so its peak needs this share of the pool"
    )
    step_seconds: Annotated[float, Field(gt=0.0, le=1e7)] | None = Field(
        None, description="seconds per row of a tick-index trace (timestamps carry their own)"
    )
    start_tick: Annotated[int, Field(ge=0, le=10**9)] | Literal["random"] = Field(
        "random",
        description="first replayed tick of an episode (below the trace's length), or random",
    )
    offsets: list[Annotated[int, Field(ge=0, le=MAX_TICKS)]] | None = Field(
        None,
        max_length=100_000,
        description="per module, ticks by which its series is read later than the episode's "
        "start (one per module); with offsets a column may drive several modules",
    )
    window: list[Share] | None = Field(
        None,
        min_length=2,
        max_length=2,
        description="[from, to): the part of the trace, as fractions of its ticks, that an "
        "episode's history, episode and look-ahead all stay inside (a time split: train on "
        "[0, 0.7], report on [0.7, 1]); each series is then scaled to its peak inside the "
        "window. Without it the whole trace is used, wrapping around",
    )

    @field_validator("window")
    @classmethod
    def _ordered(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and not v[0] < v[1]:
            raise ValueError(f"from {v[0]:g} must be below to {v[1]:g}, e.g. [0.0, 0.7]")
        return v


class DemandConfig(_Model):
    correlation: Share = Field(0.0, description="share of the noise common to all modules")
    start_hour: Annotated[float, Field(ge=0.0, lt=24.0)] | Literal["random"] = Field(
        "random", description="time of day of an episode's first tick"
    )
    trace: TraceConfig | None = None


class SafetyConfig(_Model):
    """The rails every shift passes through (see :mod:`shift_rl.safety`)."""

    max_units_per_shift: PosUnits = Field(8, description="units one shift may move")
    max_units_per_tick: PosUnits = Field(8, description="units all shifts of one tick may move")
    max_module_share: Annotated[float, Field(gt=0.0, le=1.0)] = Field(
        0.6, description="share of a kind's pool one module may hold (incl. incoming)"
    )
    stabilization_ticks: Ticks = Field(
        5, description="ticks both modules of a shift stay locked; the shift is judged after"
    )
    rollback_threshold: Share = Field(
        0.05, description="drop of the pair's value-weighted goal attainment that rolls back"
    )


class ActionConfig(_Model):
    mode: Literal["plan", "shift"] = Field(
        "plan",
        description="plan: every module asks for a change each tick, matched into shifts; "
        "shift: one (source, target, level) shift per tick",
    )
    amount_levels: list[PosUnits] = Field(
        [1, 2, 4, 8],
        min_length=1,
        max_length=64,
        description="units a module may ask for or offer (plan), or a shift may move",
    )

    @field_validator("amount_levels")
    @classmethod
    def _increasing(cls, v: list[int]) -> list[int]:
        if any(b <= a for a, b in itertools.pairwise(v)):
            raise ValueError("must be strictly increasing, e.g. [1, 2, 4, 8]")
        return v


class RewardConfig(_Model):
    cost_per_unit: Cost = Field(0.002, description="reward lost per unit moved")
    cost_per_rollback: Cost = Field(0.02, description="reward lost per rollback")


class SlowdownConfig(_Model):
    rate_per_day: PerDay = Field(0.0, description="slow-downs per module per day")
    factor: Annotated[float, Field(gt=0.0, lt=1.0)] = Field(
        0.5, description="service rate multiplier while slowed"
    )
    duration_ticks: Ticks = 30


class UnitFailureConfig(_Model):
    rate_per_day: PerDay = Field(0.0, description="failure events per resource kind per day")
    units: PosUnits = Field(2, description="units lost per failure")
    duration_ticks: Ticks = Field(20, description="ticks until the units come back")


class TelemetryGapConfig(_Model):
    rate_per_day: PerDay = Field(0.0, description="gaps per module per day")
    duration_ticks: Ticks = 5


class FaultConfig(_Model):
    slowdown: SlowdownConfig = SlowdownConfig()
    unit_failure: UnitFailureConfig = UnitFailureConfig()
    telemetry_gap: TelemetryGapConfig = TelemetryGapConfig()


class ForecastConfig(_Model):
    model: str = Field("ema", description="forecaster name (see shift_rl.forecast.FORECASTERS)")
    params: dict[Annotated[str, Field(max_length=64)], float | int] = Field(
        {}, max_length=16, description="keyword arguments of the model"
    )
    history_ticks: Annotated[int, Field(ge=0, le=100_000)] = Field(
        60, description="ticks of demand seen before an episode (the forecaster replays them)"
    )

    @field_validator("model")
    @classmethod
    def _known(cls, v: str) -> str:
        from shift_rl.forecast import FORECASTERS

        if v not in FORECASTERS:
            allowed = ", ".join(repr(k) for k in sorted(FORECASTERS))
            raise ValueError(f"unknown forecaster; allowed: {allowed}")
        return v


class ReputationConfig(_Model):
    alpha: Annotated[float, Field(gt=0.0, le=1.0)] = Field(0.05, description="EMA weight per tick")
    attainment_weight: Share = Field(
        0.7, description="weight of delivered attainment vs report accuracy"
    )


class ScenarioConfig(_Model):
    """A complete scenario; see README 'Scenario format' for every field."""

    name: Name
    description: str = Field("", max_length=10_000)
    tick_seconds: Annotated[float, Field(ge=1.0, le=86_400.0)] = Field(
        60.0, description="length of one control interval, seconds"
    )
    episode_ticks: Ticks = Field(720, description="ticks per episode (time limit)")
    warmup_ticks: Annotated[int, Field(ge=0, le=24)] = Field(
        2,
        description="ticks before shifted units serve (planners look warm-up + horizon ahead, "
        "inside the 32 ticks of demand kept past an episode's end)",
    )
    target_utilization: Annotated[float, Field(gt=0.0, lt=1.0)] = Field(
        0.7, description="utilization at which a module's reported need is computed"
    )
    resources: list[ResourceConfig] = Field(min_length=1, max_length=64)
    modules: list[ModuleConfig] = Field(min_length=2, max_length=100_000)
    demand: DemandConfig = DemandConfig()
    safety: SafetyConfig = SafetyConfig()
    action: ActionConfig = ActionConfig()
    reward: RewardConfig = RewardConfig()
    faults: FaultConfig = FaultConfig()
    forecast: ForecastConfig = ForecastConfig()
    reputation: ReputationConfig = ReputationConfig()

    @property
    def resource_names(self) -> list[str]:
        return [r.name for r in self.resources]

    def per_kind(self, module: ModuleConfig, field: str) -> list[float]:
        """A module's int-or-mapping field expanded to one value per resource kind."""
        v = getattr(module, field)
        if isinstance(v, dict):
            return [v[name] for name in self.resource_names]
        return [v] * len(self.resources)

    @model_validator(mode="after")
    def _consistent(self) -> ScenarioConfig:
        problems = self._cross_field_problems()
        if problems:
            # One line per problem, each starting with its own field path (see _format_errors).
            raise ValueError("\n".join(problems))
        return self

    def _cross_field_problems(self) -> list[str]:
        """Every inconsistency between fields, one ``path: message`` line each."""
        names = self.resource_names
        problems = [
            *_duplicates("resources", names),
            *_duplicates("modules", [m.name for m in self.modules]),
        ]
        for i, m in enumerate(self.modules):
            for field in ("units", "floor", "units_per_server"):
                v = getattr(m, field)
                if isinstance(v, dict) and set(v) != set(names):
                    wrong = [f"unknown kind {k!r}" for k in v if k not in names]
                    wrong += [f"missing kind {k!r}" for k in names if k not in v]
                    problems.append(
                        f"modules.{i}.{field}: {', '.join(wrong)}; the keys must be exactly "
                        f"the resource kinds {names} (module {m.name!r})"
                    )
            if m.demand is None and self.demand.trace is None:
                problems.append(
                    f"modules.{i}.demand: required unless demand.trace replays a trace "
                    f"(module {m.name!r} has neither)"
                )
        tc = self.demand.trace
        if tc is not None and tc.offsets is not None and len(tc.offsets) != len(self.modules):
            problems.append(
                f"demand.trace.offsets: {len(tc.offsets)} given, expected one per module "
                f"({len(self.modules)})"
            )
        if problems:  # the checks below need unique, complete per-kind mappings
            return problems

        def where(i: int, field: str, kind: str) -> str:
            v = getattr(self.modules[i], field)
            return f"modules.{i}.{field}.{kind}" if isinstance(v, dict) else f"modules.{i}.{field}"

        share = self.safety.max_module_share
        for r, res in enumerate(self.resources):
            kind, pool = res.name, res.units
            units = [self.per_kind(m, "units")[r] for m in self.modules]
            floors = [self.per_kind(m, "floor")[r] for m in self.modules]
            single_floor_problem = False
            for i, (m, u, f) in enumerate(zip(self.modules, units, floors, strict=True)):
                if f > pool:  # (a floor that is itself invalid is not also compared to units)
                    single_floor_problem = True
                    problems.append(
                        f"{where(i, 'floor', kind)}: floor {f} is above the {kind} pool size "
                        f"{pool} (resources.{r}.units; module {m.name!r})"
                    )
                elif f > share * pool:
                    single_floor_problem = True
                    problems.append(
                        f"{where(i, 'floor', kind)}: floor {f} is above safety.max_module_share "
                        f"x {kind} pool = {share:g} x {pool} = {share * pool:g} units "
                        f"(module {m.name!r})"
                    )
                elif u < f:
                    problems.append(
                        f"{where(i, 'units', kind)}: initial {kind} units {u} are below the "
                        f"module's floor {f} (module {m.name!r})"
                    )
            if sum(floors) > pool and not single_floor_problem:
                problems.append(
                    f"modules.*.floor: the {kind} floors add up to {sum(floors)}, above the "
                    f"pool size {pool} (resources.{r}.units)"
                )
            if sum(units) > pool:
                problems.append(
                    f"modules.*.units: the initial {kind} allocations add up to {sum(units)}, "
                    f"above the pool size {pool} (resources.{r}.units)"
                )
            if self.safety.max_units_per_shift > pool:
                problems.append(
                    f"safety.max_units_per_shift: {self.safety.max_units_per_shift} is above "
                    f"the {kind} pool size {pool} (resources.{r}.units)"
                )
        top = max(self.action.amount_levels)
        if top > self.safety.max_units_per_shift:
            problems.append(
                f"action.amount_levels: level {top} is above safety.max_units_per_shift = "
                f"{self.safety.max_units_per_shift} (levels are units one shift moves)"
            )
        for i, m in enumerate(self.modules):
            ups = self.per_kind(m, "units_per_server")
            servers = min(res.units / u for res, u in zip(self.resources, ups, strict=True))
            if servers > MAX_SERVERS:
                problems.append(
                    f"modules.{i}.units_per_server: with the whole pool the module would run "
                    f"{servers:.6g} servers (pool units / units_per_server), above the "
                    f"{MAX_SERVERS} the queue model allows (module {m.name!r})"
                )
        problems += self._work_problems()
        forecast_problems, per_module = _forecast_check(self.forecast, self.tick_seconds)
        problems += forecast_problems
        if not forecast_problems:
            m, r = len(self.modules), len(self.resources)
            ticks = self.forecast.history_ticks + self.episode_ticks + 33
            need = ticks * (25 * m + 16 * r) + m * per_module
            if need > MAX_EPISODE_BYTES:
                problems.append(
                    f"episode_ticks: one env's episode would need {need / 2**20:,.0f} MiB "
                    f"({ticks} ticks of history, episode and look-ahead x {m} modules, plus "
                    f"{per_module * m / 2**20:,.1f} MiB of {self.forecast.model!r} forecaster "
                    f"state), above the {MAX_EPISODE_BYTES // 2**20} MiB allowed: shorten "
                    "episode_ticks or forecast.history_ticks, or use fewer modules"
                )
        return problems

    def _work_problems(self) -> list[str]:
        """Bound the time an episode's draw takes: random events are placed one by one, and
        each burst decays over the rest of the episode (O(bursts x ticks))."""
        ticks = self.forecast.history_ticks + self.episode_ticks + 33
        days = ticks * self.tick_seconds / 86_400.0
        f = self.faults
        events = days * (
            len(self.modules) * (f.slowdown.rate_per_day + f.telemetry_gap.rate_per_day)
            + len(self.resources) * f.unit_failure.rate_per_day
        )
        bursts = 0.0
        for m in self.modules:
            if m.demand is not None:
                events += days * (m.demand.bursts.rate_per_day + m.demand.regime.rate_per_day)
                bursts += days * m.demand.bursts.rate_per_day
        out = []
        if events > MAX_EVENTS:
            out.append(
                f"faults: an episode of {ticks} ticks would draw ~{events:,.0f} random events "
                "(bursts, regime shifts, slow-downs, telemetry gaps, unit failures at their "
                f"rates per day), above the {MAX_EVENTS:,} allowed: lower the rates or "
                "shorten episode_ticks"
            )
        if bursts * ticks > MAX_BURST_WORK:
            out.append(
                f"modules.*.demand.bursts.rate_per_day: ~{bursts:,.0f} bursts decaying over "
                f"{ticks} ticks each per episode (~{bursts * ticks:.2g} terms) is above the "
                f"{MAX_BURST_WORK:.0g} allowed: lower the burst rates or shorten episode_ticks"
            )
        return out


MAX_EVENTS = 1_000_000
"""Most random events one episode's draw places (they are placed one by one)."""
MAX_BURST_WORK = 1e9
"""Most burst-tick terms one episode's draw sums (each burst decays over the episode)."""

FORECAST_INT_LIMITS = {"horizons": 32, "lags": 64, "harmonics": 16, "select": 1}
"""Integer forecaster parameters whose state grows faster than linearly (or that are flags);
every other integer parameter (``season_ticks``, ``window``, ...) is at most ``MAX_TICKS``."""


def _forecast_check(fc: ForecastConfig, tick_seconds: float) -> tuple[list[str], int]:
    """Problems with ``forecast.params`` (the model's own checks, run on a 1 x 1 instance once
    every size is bounded) and the bytes of its state per module."""
    from shift_rl.forecast import make_forecaster

    problems = []
    for key, v in fc.params.items():
        top = FORECAST_INT_LIMITS.get(key, MAX_TICKS)
        if isinstance(v, int) and not -top <= v <= top:
            problems.append(f"forecast.params.{key}: {v} is out of range; allowed |value| <= {top}")
    if problems:
        return problems, 0
    try:
        model = make_forecaster(fc.model, 1, 1, tick_seconds=tick_seconds, **fc.params)
    except (ValueError, TypeError, OverflowError) as err:
        return [f"forecast.params: {err} (model {fc.model!r}, params {dict(fc.params)})"], 0
    return [], _state_bytes(model)


def _state_bytes(obj: Any, depth: int = 0) -> int:
    """Bytes of the numpy arrays an object holds (members of an ensemble included)."""
    import numpy as np

    total = 0
    for v in vars(obj).values() if hasattr(obj, "__dict__") else ():
        items = v if isinstance(v, list | tuple) else [v]
        for item in items:
            if isinstance(item, np.ndarray):
                total += item.nbytes
            elif depth < 2 and hasattr(item, "__dict__") and hasattr(item, "predict"):
                total += _state_bytes(item, depth + 1)
    return total


def _duplicates(path: str, names: list[str]) -> list[str]:
    """One problem line per name that occurs more than once in ``names``."""
    out = []
    for name, count in Counter(names).items():
        if count > 1:
            at = [f"{path}.{i}" for i, n in enumerate(names) if n == name]
            out.append(f"{path}: duplicate name {name!r} ({', '.join(at)}); names must be unique")
    return out


# ---------------------------------------------------------------------------------------------
# Error messages: one line per real problem, naming the field path, the value and what is
# allowed (read off the model's annotations, so the message always matches the schema).
# ---------------------------------------------------------------------------------------------

_UNION_TYPES = (Union, types.UnionType)
MAX_ERRORS_READ = 1000
MAX_ERRORS_SHOWN = 50
_Node = tuple[Any, list[Any]]  # (annotation, constraint metadata)


def _unwrap(ann: Any, meta: list[Any] | None = None) -> _Node:
    """Strip ``Annotated`` (collecting its constraints) and ``| None`` from an annotation."""
    meta = list(meta or [])
    while True:
        origin = get_origin(ann)
        if origin is Annotated:
            ann, *extra = get_args(ann)
            for m in extra:
                meta.extend(m.metadata if isinstance(m, FieldInfo) else [m])
        elif origin in _UNION_TYPES and type(None) in get_args(ann):
            rest = [a for a in get_args(ann) if a is not type(None)]
            ann = rest[0] if len(rest) == 1 else Union[tuple(rest)]  # noqa: UP007
        else:
            return ann, meta


def _is_model(ann: Any) -> bool:
    return isinstance(ann, type) and issubclass(ann, BaseModel)


def _branch(ann: Any, tag: str) -> Any | None:
    """The member of a union that pydantic labels ``tag`` in an error location."""
    kind = tag.removeprefix("constrained-").split("[", 1)[0]
    for arg in get_args(ann):
        base, _ = _unwrap(arg)
        origin = get_origin(base)
        label = {Literal: "literal", dict: "dict", list: "list"}.get(origin) or getattr(
            base, "__name__", ""
        )
        if label == kind:
            return arg
    return None


def _walk(
    loc: tuple[Any, ...], root: type[BaseModel] | None = None
) -> tuple[list[Any], _Node | None, int | None]:
    """Follow an error location through the scenario schema.

    Returns the location without pydantic's union-member labels, the annotation at its end
    (``None`` when it cannot be followed, e.g. below an unknown key) and the position in the
    returned location where the first union was entered (``None`` if no union was crossed).
    """
    shown: list[Any] = []
    node: _Node | None = (root or ScenarioConfig, [])
    union_at: int | None = None
    for part in loc:
        if node is None:
            shown.append(part)
            continue
        ann = _unwrap(*node)[0]
        origin = get_origin(ann)
        if origin in _UNION_TYPES:
            union_at = len(shown) if union_at is None else union_at
            member = _branch(ann, str(part))
            node = None if member is None else (member, [])
            continue  # the label is pydantic's, not the user's
        shown.append(part)
        if _is_model(ann) and part in ann.model_fields:
            field = ann.model_fields[part]
            node = (field.annotation, list(field.metadata))
        elif origin is list and isinstance(part, int):
            node = (get_args(ann)[0], [])
        elif origin is dict:
            node = (get_args(ann)[1], [])
        else:
            node = None
    return shown, node, union_at


def _bounds(meta: list[Any]) -> str:
    ops = {
        annotated_types.Ge: (">=", "ge"),
        annotated_types.Gt: (">", "gt"),
        annotated_types.Le: ("<=", "le"),
        annotated_types.Lt: ("<", "lt"),
    }
    out = []
    for m in meta:
        if type(m) in ops:
            op, attr = ops[type(m)]
            v = getattr(m, attr)
            whole = float(v).is_integer() and abs(v) < 1e15
            out.append(f"{op} {int(v)}" if whole else f"{op} {v:g}")
    return " and ".join(out)


def _min_len(meta: list[Any]) -> int:
    return max((m.min_length for m in meta if isinstance(m, annotated_types.MinLen)), default=0)


def _describe(ann: Any, meta: list[Any] | None = None) -> str:
    """What a field allows, in words: 'a number > 0 and <= 1', "an integer >= 0 or 'random'"."""
    ann, meta = _unwrap(ann, meta)
    origin = get_origin(ann)
    if origin in _UNION_TYPES:
        parts = list(dict.fromkeys(_describe(a) for a in get_args(ann)))
        if "a number" in parts and "an integer" in parts:
            parts.remove("an integer")
        return " or ".join(parts)
    if origin is Literal:
        return " or ".join(repr(v) for v in get_args(ann))
    if _is_model(ann) or origin is dict or ann is dict:
        return "a mapping"
    if origin is list or ann is list:
        n = _min_len(meta)
        item = _describe(get_args(ann)[0]) if get_args(ann) else "anything"
        size = f" of at least {n} item{'s' if n != 1 else ''}" if n else ""
        return f"a list{size}, each {item}"
    if ann is bool:
        return "true or false"
    if ann is str:
        return "a non-empty string" if _min_len(meta) else "a string"
    noun = {int: "an integer", float: "a number"}.get(ann, getattr(ann, "__name__", str(ann)))
    bounds = _bounds(meta)
    return f"{noun} {bounds}" if bounds else noun


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _path(parts: list[Any]) -> str:
    return ".".join(str(p) for p in parts)


def _one_error(e: dict[str, Any], root: type[BaseModel] | None = None) -> list[str]:
    """The message lines of one pydantic error (a model-level error may carry several)."""
    shown, node, _ = _walk(tuple(e["loc"]), root)
    path = _path(shown)
    given = e.get("input")
    kind = e["type"]
    if kind == "extra_forbidden":
        parent = _walk(tuple(e["loc"][:-1]), root)[1]
        model = _unwrap(*parent)[0] if parent else None
        if not _is_model(model):
            return [f"{path}: unknown key"]
        allowed = list(model.model_fields)
        close = difflib.get_close_matches(str(shown[-1]), allowed, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return [f"{path}: unknown key; {hint}allowed keys: {', '.join(allowed)}"]
    if kind == "missing":
        what = f" ({_describe(*node)})" if node else ""
        return [f"{path}: required field is missing{what}"]
    if kind in ("value_error", "assertion_error"):
        msg = e["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if not shown:  # a scenario-wide check: every line names its own field
            return msg.splitlines()
        got = "" if isinstance(given, dict) or repr(given) in msg else f" (got {_show(given)})"
        return [f"{path}: {msg}{got}"]
    if node is not None or kind == "model_type":
        allowed = _describe(*node) if node else "a mapping"
        note = ""
        if isinstance(given, bool) and kind != "bool_type":
            note = ", a boolean"
        elif isinstance(given, float) and kind == "int_type":
            note = ", a float"
        return [f"{path or '(top level)'}: must be {allowed} (got {_show(given)}{note})"]
    msg = e["msg"].replace("Input should be", "must be")
    got = "" if isinstance(given, dict) else f" (got {_show(given)})"
    return [f"{path or '(top level)'}: {msg}{got}"]


def _error_lines(errors: list[dict[str, Any]], root: type[BaseModel] | None = None) -> list[str]:
    """One line per real problem.

    When a value fails a union (``units: int | dict``) pydantic reports one error per member;
    those collapse to one line saying what the union allows, unless the value matched a
    member's container type (a mapping for ``dict``), whose errors inside are then the
    problem.
    """
    lines: list[str] = []
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    order: list[tuple[Any, ...] | dict[str, Any]] = []
    for e in errors:
        shown, _, union_at = _walk(tuple(e["loc"]), root)
        if union_at is None or e["type"] == "extra_forbidden":
            order.append(e)
            continue
        key = tuple(shown[:union_at])
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(e)
    for item in order:
        if isinstance(item, dict):
            lines += _one_error(item, root)
            continue
        members = groups[item]
        inner = [e for e in members if len(_walk(tuple(e["loc"]), root)[0]) > len(item)]
        if inner:
            lines += [line for e in inner for line in _one_error(e, root)]
            continue
        # Every member rejected the value outright: say what the union as a whole allows.
        e = members[0]
        union_loc = _union_loc(tuple(e["loc"]), len(item), root)
        node = _walk(union_loc, root)[1]
        allowed = _describe(*node) if node else " or ".join(m["msg"] for m in members)
        lines.append(f"{_path(list(item))}: must be {allowed} (got {_show(e['input'])})")
    return list(dict.fromkeys(lines))


def _union_loc(
    loc: tuple[Any, ...], shown_len: int, root: type[BaseModel] | None = None
) -> tuple[Any, ...]:
    """The prefix of a raw error location that leads to the union (before its member label)."""
    for k in range(len(loc) + 1):
        if len(_walk(loc[:k], root)[0]) == shown_len and _walk(loc[: k + 1], root)[2] is not None:
            return loc[:k]
    return loc


def _format_errors(
    err: ValidationError | list[str],
    source: str,
    root: type[BaseModel] | None = None,
    what: str = "scenario",
) -> str:
    if isinstance(err, ValidationError):
        errors = err.errors()
        lines = _error_lines(errors[:MAX_ERRORS_READ], root)
        more = len(errors) > MAX_ERRORS_READ
    else:
        lines, more = list(err), False
    if len(lines) == 1 and not more:
        return f"invalid {what} {source}: {lines[0]}"
    count = f"{len(lines)}{'+' if more else ''} problems"
    if len(lines) > MAX_ERRORS_SHOWN or more:
        count += f", the first {min(len(lines), MAX_ERRORS_SHOWN)} shown"
    return f"invalid {what} {source} ({count}):\n" + "\n".join(
        f"  - {line}" for line in lines[:MAX_ERRORS_SHOWN]
    )


def _resolve_trace(data: dict[str, Any], base: Path) -> None:
    """Make a replayed trace's path absolute (relative to the YAML file's directory)."""
    trace = (data.get("demand") or {}).get("trace") if isinstance(data, dict) else None
    if isinstance(trace, dict) and isinstance(trace.get("path"), str):
        path = Path(os.path.expanduser(trace["path"]))
        if not path.is_absolute():
            path = (base / path).resolve()
        trace["path"] = str(path)


def _trace_problem(data: dict[str, Any], written: Any) -> str | None:
    """A line naming a replayed trace file that does not exist (``None`` if fine or absent)."""
    demand = data.get("demand")
    trace = demand.get("trace") if isinstance(demand, dict) else None
    path = trace.get("path") if isinstance(trace, dict) else None
    kind = path_kind(path) if isinstance(path, str) else "file"
    if kind == "file":
        return None
    shown = _short_path(written)
    if written != path:
        shown += f" (resolved to {_short_path(path)})"
    problem = {
        "dir": "is a directory",
        "other": "is not a regular file",
        "invalid": "is not a valid file name",
    }.get(kind, "does not exist")
    return (
        f"demand.trace.path: file {shown} {problem}; expected a CSV or CSV.gz trace "
        "(a relative path is taken relative to the scenario file's directory)"
    )


def scenario_from_dict(
    data: Any, source: str = "<dict>", base: Path | None = None
) -> ScenarioConfig:
    """Validate a mapping as a scenario; raise :class:`ConfigError` with every problem named.

    ``base`` is the directory relative trace paths are resolved against (the YAML file's
    directory when called from :func:`load_scenario`); without it they are taken as given.
    """
    if not isinstance(data, dict):
        got = "an empty document" if data is None else f"a {type(data).__name__}"
        raise ConfigError(
            f"invalid scenario {source}: the top level must be a mapping of scenario fields "
            f"(name, resources, modules, ...), got {got}"
        )
    data, problems = expand_scenario(dict(data), ModuleConfig, _error_lines)  # archetypes.py
    if problems:
        raise ConfigError(_format_errors(problems, source))
    demand = data.get("demand")
    trace = demand.get("trace") if isinstance(demand, dict) else None
    written = trace.get("path") if isinstance(trace, dict) else None
    if base is not None and isinstance(trace, dict):
        data["demand"] = {**demand, "trace": dict(trace)}
        _resolve_trace(data, base)
    missing_trace = _trace_problem(data, written)
    try:
        cfg = ScenarioConfig.model_validate(data)
    except ValidationError as err:
        lines = _error_lines(err.errors())
        lines += [missing_trace] if missing_trace else []
        raise ConfigError(_format_errors(lines, source)) from None
    if missing_trace:
        raise ConfigError(_format_errors([missing_trace], source))
    return cfg


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that rejects a key given twice in one mapping (YAML keeps the last)."""


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        if not isinstance(key_node, yaml.ScalarNode):  # `? [a, b]`: no field is named so
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found a {key_node.id} as a key; keys must be plain names",
                key_node.start_mark,
            )
        key = loader.construct_object(key_node)
        try:
            first = seen.get(key)
            seen.setdefault(key, key_node.start_mark.line)
        except TypeError:  # an unhashable scalar (a !!binary key is bytes: hashable)
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                "found an unhashable key",
                key_node.start_mark,
            ) from None
        if first is not None:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r} (first given on line {first + 1})",
                key_node.start_mark,
            )
    loader.flatten_mapping(node)
    return dict(loader.construct_pairs(node))


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
)


MAX_YAML_BYTES = 1 << 20
"""Largest scenario or training config file read (a config is a small text file)."""
MAX_YAML_VALUES = 200_000
"""Most values (mappings, lists and scalars) a YAML document may expand to, aliases counted
each time they are used: ``&a [*b, *b, ...]`` chains ("billion laughs") are refused here,
before anything walks the expansion."""
MAX_EXTENDS = 16
"""Longest chain of ``extends:``."""


def read_yaml_file(path: Path, what: str = "scenario") -> Any:
    """The YAML document in ``path``, read safely: a regular file of at most
    ``MAX_YAML_BYTES``, UTF-8, one document of at most ``MAX_YAML_VALUES`` values, no
    recursive aliases, keys that are plain scalars; anything else is a :class:`ConfigError`
    naming the file."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(
                f"{what} file {str(path)!r} is not a regular file (a directory, device or "
                "pipe); expected a YAML file"
            )
        with open(path, "rb") as f:
            raw = f.read(MAX_YAML_BYTES + 1)
    except (OSError, ValueError) as err:
        raise ConfigError(f"{what} file {_short_path(path)} cannot be read: {err}") from None
    if len(raw) > MAX_YAML_BYTES:
        raise ConfigError(
            f"{what} file {str(path)!r} is larger than {MAX_YAML_BYTES // 1024} KiB; expected "
            f"a small YAML {what}"
        )
    return parse_yaml(raw, str(path), what)


def parse_yaml(raw: bytes | str, source: str, what: str = "scenario") -> Any:
    """One YAML document from bytes or text, with the checks of :func:`read_yaml_file`."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise ConfigError(
                f"invalid {what} {source}: not UTF-8 text (byte {err.start}: {err.reason}); "
                "expected a UTF-8 YAML file"
            ) from None
    if len(raw) > MAX_YAML_BYTES:
        raise ConfigError(f"invalid {what} {source}: longer than {MAX_YAML_BYTES} characters")
    loader = None
    try:
        loader = _UniqueKeyLoader(raw)  # its reader refuses control characters right away
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, source, what)
        return loader.construct_document(node)
    except ConfigError:
        raise
    except yaml.YAMLError as err:
        raise ConfigError(f"invalid {what} {source}: not valid YAML:\n{err}") from None
    except RecursionError:
        raise ConfigError(
            f"invalid {what} {source}: nested too deeply to read; expected a few levels of "
            "mappings and lists"
        ) from None
    except ValueError as err:  # e.g. an integer of more than 4300 digits
        raise ConfigError(f"invalid {what} {source}: a value cannot be read ({err})") from None
    finally:
        if loader is not None:
            loader.dispose()


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _check_expansion(root: yaml.Node, source: str, what: str) -> None:
    """Refuse a document whose expansion (aliases counted per use) exceeds MAX_YAML_VALUES
    or that refers to itself; sizes are memoized per node, so this is linear in the file."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            open_nodes.discard(key)
            size = 1 + sum(sizes[id(c)] for c in _children(node))
            if size > MAX_YAML_VALUES:
                line = node.start_mark.line + 1
                raise ConfigError(
                    f"invalid {what} {source}: the document expands to more than "
                    f"{MAX_YAML_VALUES:,} values (at line {line}; aliases count each time "
                    "they are used); expected a scenario-sized file"
                )
            sizes[key] = size
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            raise ConfigError(
                f"invalid {what} {source}: line {node.start_mark.line + 1}: an alias refers "
                "to a value that contains it (a recursive structure)"
            )
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in sizes)


def path_kind(path: str | os.PathLike) -> str:
    """What a path names, never raising: ``file``, ``dir``, ``other`` (a device, pipe or
    socket), ``missing``, or ``invalid`` (a name the system refuses: a NUL byte, too long)."""
    try:
        mode = os.stat(path).st_mode
    except ValueError:
        return "invalid"
    except OSError as err:
        return "invalid" if err.errno == errno.ENAMETOOLONG else "missing"
    if stat.S_ISREG(mode):
        return "file"
    return "dir" if stat.S_ISDIR(mode) else "other"


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, ValueError, RuntimeError):
        return path


def _short_path(path: str | os.PathLike) -> str:
    text = repr(str(path))
    return text if len(text) <= 300 else text[:297] + "..."


def _known_scenarios() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))


def load_scenario(scenario: str | os.PathLike | ScenarioConfig) -> ScenarioConfig:
    """Load a scenario from a config object, a YAML path, or a name in ``configs/scenarios``."""
    if isinstance(scenario, ScenarioConfig):
        return scenario
    if not isinstance(scenario, str | os.PathLike):
        raise ConfigError(
            f"scenario must be a YAML path, a scenario name or a ScenarioConfig, "
            f"got {type(scenario).__name__}"
        )
    path = Path(scenario)
    kind = path_kind(path) if str(scenario) else "missing"
    if kind != "file" and len(path.parts) == 1:  # a bare name: look in configs/scenarios
        for candidate in (SCENARIO_DIR / f"{path.name}.yaml", SCENARIO_DIR / path.name):
            if path_kind(candidate) == "file":
                path, kind = candidate, "file"
                break
    if kind != "file":
        known = ", ".join(_known_scenarios())
        if len(path.parts) > 1 or path.suffix in (".yaml", ".yml") or kind != "missing":
            problem = {
                "dir": "is a directory",
                "other": "is not a regular file",
                "invalid": "is not a valid file name",
            }.get(kind, "does not exist")
            raise ConfigError(
                f"scenario file {_short_path(scenario)} {problem} (resolved to "
                f"{_short_path(_resolved(path))}); expected a YAML file or one of the shipped "
                f"scenario names: {known}"
            )
        raise ConfigError(
            f"unknown scenario {str(scenario)!r}; expected a YAML path or one of the shipped "
            f"scenario names: {known} (in {SCENARIO_DIR})"
        )
    return scenario_from_dict(_read_yaml(path), source=str(path), base=path.parent)


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> Any:
    """A scenario file's mapping, with ``extends: other.yaml`` merged underneath it.

    ``extends`` names a scenario file relative to this one; this file's keys override the
    base's, mappings merge key by key, lists and values are replaced whole.
    """
    data = read_yaml_file(path, "scenario")  # a SafeLoader subclass, sizes bounded
    if not isinstance(data, dict) or "extends" not in data:
        return data
    data = dict(data)
    parent = data.pop("extends")
    if not isinstance(parent, str) or not parent.strip():
        raise ConfigError(
            f"invalid scenario {path}: extends: must be a YAML path relative to "
            f"{str(path.parent)!r} (got {_show(parent)})"
        )
    base_path = _resolved(path.parent / os.path.expanduser(parent))
    if path_kind(base_path) != "file":
        raise ConfigError(
            f"invalid scenario {path}: extends: {parent!r} is not a scenario file "
            f"(resolved to {str(base_path)!r}; expected a YAML path relative to "
            f"{str(path.parent)!r})"
        )
    if base_path in seen or base_path == path.resolve():
        raise ConfigError(f"invalid scenario {path}: extends: {parent!r} extends itself")
    if len(seen) >= MAX_EXTENDS:
        raise ConfigError(f"invalid scenario {path}: extends: more than {MAX_EXTENDS} files deep")
    base = _read_yaml(base_path, (*seen, path.resolve()))
    if not isinstance(base, dict):
        got = "an empty document" if base is None else f"a {type(base).__name__}"
        raise ConfigError(
            f"invalid scenario {path}: extends: {parent!r} ({base_path}) holds {got}; a base "
            "scenario must be a mapping of scenario fields"
        )
    # The base's own relative trace path is relative to the base's folder, not to this one's.
    base = dict(base)
    demand = base.get("demand")
    if isinstance(demand, dict) and isinstance(demand.get("trace"), dict):
        base["demand"] = {**demand, "trace": dict(demand["trace"])}
        _resolve_trace(base, base_path.parent)
    return _merge(base, data)


def _merge(base: Any, over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base) if isinstance(base, dict) else {}
    for key, value in over.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merge(out[key], value) if both else value
    return out


def with_trace(
    cfg: ScenarioConfig, path: str | os.PathLike, peak_share: float | None = None
) -> ScenarioConfig:
    """``cfg`` with its demand replaced by the series of a trace file, mapped in column order.

    The scenario's own trace scaling and start settings are kept when it already replays one;
    the file's series are taken in column order (its own column choice and step are dropped).
    """
    data = cfg.model_dump(mode="json")
    trace = dict(data["demand"].get("trace") or {})
    trace["path"] = str(Path(path).expanduser().resolve())
    trace.pop("columns", None)
    trace.pop("step_seconds", None)
    if peak_share is not None:
        trace["peak_share"] = peak_share
    data["demand"]["trace"] = trace
    return scenario_from_dict(data, source=f"{cfg.name!r} with trace {str(path)!r}")


# -- training configuration -----------------------------------------------------------------
TRAIN_DIR = PROJECT_ROOT / "configs" / "train"


MAX_STEPS = 10**12
"""Most env steps a run or an interval counts."""
MAX_ROLLOUT = 10_000_000
"""Most samples (n_steps x n_envs) in one rollout buffer."""
MAX_NETWORK_WEIGHTS = 50_000_000
"""Most weights between the hidden layers of one network (the input layer comes on top)."""
SEED_HIGH = 2**32 - 1
"""Run and evaluation seeds go to numpy's legacy seeding (SB3), which takes 0 .. 2**32 - 1."""
Steps = Annotated[int, Field(ge=1, le=MAX_STEPS)]


class PPOConfig(_Model):
    """PPO hyperparameters (stable-baselines3 names and meanings)."""

    learning_rate: Annotated[float, Field(gt=0.0, le=1.0)] = Field(
        3e-4, description="Adam step size"
    )
    n_steps: Annotated[int, Field(ge=1, le=MAX_ROLLOUT)] = Field(
        720, description="steps per env per rollout"
    )
    batch_size: Annotated[int, Field(ge=1, le=MAX_ROLLOUT)] = Field(
        720, description="minibatch size, samples"
    )
    n_epochs: Annotated[int, Field(ge=1, le=1000)] = Field(
        10, description="passes over each rollout"
    )
    gamma: Annotated[float, Field(gt=0.0, le=1.0)] = Field(0.99, description="discount per tick")
    gae_lambda: Share = Field(0.95, description="GAE lambda")
    clip_range: Annotated[float, Field(gt=0.0, lt=1.0)] = Field(0.2, description="PPO clip")
    ent_coef: Annotated[float, Field(ge=0.0, le=1000.0)] = Field(
        0.01, description="entropy bonus weight"
    )
    vf_coef: Annotated[float, Field(ge=0.0, le=1000.0)] = Field(
        0.5, description="value loss weight"
    )
    max_grad_norm: Annotated[float, Field(gt=0.0, le=1e6)] = Field(
        0.5, description="gradient clipping norm"
    )


Widths = list[Annotated[int, Field(ge=1, le=8192)]]


class NetworkConfig(_Model):
    """The policy network: an MLP over the flat observation (``kind: mlp``, SB3's
    ``MlpPolicy``) or one network shared across modules (``kind: modular``,
    :mod:`shift_rl.modular`: any module count, plan actions only)."""

    kind: Literal["mlp", "modular"] = Field(
        "mlp", description="mlp: net_arch over the flat observation; modular: shared per module"
    )
    net_arch: list[Annotated[int, Field(ge=1, le=8192)]] = Field(
        [128, 128], min_length=1, max_length=16, description="hidden layer sizes (mlp)"
    )
    activation: Literal["tanh", "relu"] = "tanh"
    encoder: Widths = Field(
        [64, 64], min_length=1, max_length=16, description="per-module encoder widths (modular)"
    )
    actor: Widths = Field(
        [64], min_length=0, max_length=16, description="per-module actor head widths (modular)"
    )
    critic: Widths = Field(
        [64], min_length=0, max_length=16, description="critic widths on the pooled context"
    )
    time_features: bool = Field(
        False, description="modular: let the network see time.sin / time.cos (module docstring)"
    )
    advisor: Literal["mpc", "hpa", "potential", "proportional", "vpa", "static"] | None = Field(
        None, description="modular + suite: a heuristic (suite-tuned) whose plan every token "
        "reads and whose level gets advice_gain on the logits: a residual policy on it",
    )  # fmt: skip
    advice_gain: Annotated[float, Field(gt=0.0, le=50.0)] = Field(
        6.0, description="initial logit gain of the advised level (learned; 6: ~98 % per entry)"
    )

    @model_validator(mode="after")
    def _fields_of_kind(self) -> NetworkConfig:
        # the other kind's fields keep their defaults and are ignored (a dumped config, which
        # holds every field, must load again)
        for name in ("encoder", "actor", "critic"):
            widths = getattr(self, name)
            weights = sum(a * b for a, b in itertools.pairwise(widths))
            if weights > MAX_NETWORK_WEIGHTS:
                raise ValueError(f"{name}: {widths} has {weights:,} weights, above the "
                                 f"{MAX_NETWORK_WEIGHTS:,} allowed")  # fmt: skip
        return self

    @field_validator("net_arch")
    @classmethod
    def _not_huge(cls, v: list[int]) -> list[int]:
        weights = sum(a * b for a, b in itertools.pairwise(v))
        if weights > MAX_NETWORK_WEIGHTS:
            raise ValueError(
                f"{v} has {weights:,} weights between its hidden layers, above the "
                f"{MAX_NETWORK_WEIGHTS:,} allowed"
            )
        return v


Scale = Annotated[float, Field(gt=0.0, le=100.0)]


class RandomizationConfig(_Model):
    """Train on a family of variants of the scenario, so the policy generalizes.

    Every variant keeps the modules, pool and rails (the spaces stay the same) and draws
    its demand levels, daily peak hours and swings, and fault rates from these ranges.
    """

    variants: Annotated[int, Field(ge=0, le=1000)] = Field(
        0, description="number of variants; 0 trains on the scenario"
    )
    demand_scale: list[Scale] = Field([0.85, 1.15], min_length=2, max_length=2)
    peak_shift_hours: Annotated[float, Field(ge=0.0, le=24.0)] = Field(
        1.5, description="max shift of each daily peak, h"
    )
    amplitude_scale: list[Scale] = Field([0.8, 1.2], min_length=2, max_length=2)
    fault_rate_scale: list[Annotated[float, Field(ge=0.0, le=100.0)]] = Field(
        [0.0, 1.5], min_length=2, max_length=2
    )


class TrainEvalConfig(_Model):
    episodes: Annotated[int, Field(ge=1, le=100_000)] = Field(
        30, description="held-out episodes of the final evaluation"
    )
    seed: Annotated[int, Field(ge=0, le=SEED_HIGH)] = Field(
        0, description="first seed of the final evaluation"
    )
    baselines: list[Annotated[str, Field(min_length=1, max_length=4096)]] = Field(
        ["potential", "hpa", "static"],
        max_length=32,
        description="compared with: built-in policy names or exported policy folders (checked, "
        "with the scenario, before training: shift_rl.train.check_inputs)",
    )
    every_timesteps: Steps = Field(57_600, description="steps between periodic evaluations")
    episodes_during: Annotated[int, Field(ge=1, le=10_000)] = Field(
        4, description="validation episodes per periodic evaluation"
    )


class PretrainConfig(_Model):
    """A warm start before PPO: behaviour cloning of a heuristic on the suite's train members
    (:mod:`shift_rl.pretrain`). ``rollouts`` 0 turns it off."""

    teacher: Literal["potential", "hpa", "proportional", "vpa", "mpc", "oracle-mpc"] = Field(
        "potential",
        description="the policy imitated: a heuristic (suite-tuned parameters when there) or "
        "the clairvoyant oracle-mpc (a privileged teacher: it reads the true demand, the "
        "student only the observation)",
    )
    rollouts: Annotated[int, Field(ge=0, le=100)] = Field(
        0, description="rollouts of ppo.n_steps x n_envs teacher steps collected (0: off)"
    )
    rounds: Annotated[int, Field(ge=1, le=20)] = Field(
        1,
        description="collect-and-clone rounds: the first plays the teacher, each later one the "
        "student so far with the teacher labelling the states it visits (DAgger)",
    )
    epochs: Annotated[int, Field(ge=1, le=1000)] = Field(10, description="passes over them")
    batch_size: Annotated[int, Field(ge=1, le=MAX_ROLLOUT)] = 1440
    learning_rate: Annotated[float, Field(gt=0.0, le=1.0)] = Field(1e-3, description="Adam")
    vf_coef: Annotated[float, Field(ge=0.0, le=100.0)] = Field(
        0.5, description="weight of the value loss (to the teacher's discounted returns)"
    )
    change_weight: Annotated[float, Field(ge=1.0, le=1000.0)] = Field(
        1.0,
        description="weight of a plan entry's log-likelihood where the teacher changes the "
        "allocation (1: all alike; a teacher that mostly waits is cloned as one that never acts)",
    )


class TrainConfig(_Model):
    """A training run: scenario, algorithm, network, PPO settings, evaluation, checkpoints."""

    run_name: str = Field(
        "ppo-default", description="folder name of the run under runs/ (a plain name)"
    )
    scenario: str = Field(
        "default", min_length=1, max_length=4096, description="scenario name or YAML path"
    )
    algo: Literal["ppo", "maskable_ppo"] = "maskable_ppo"
    total_timesteps: Steps = 576_000
    seed: Annotated[int, Field(ge=0, le=SEED_HIGH)] = 0
    n_envs: Annotated[int, Field(ge=1, le=1024)] = 8
    vec_env: Literal["dummy", "subproc", "batched"] = Field(
        "dummy",
        description="envs one by one, in subprocesses, or as one natively batched env "
        "(same trajectories as dummy, faster)",
    )
    reward: Literal["regret", "env"] = Field(
        "regret", description="train on reward minus the oracle bound (same optimum, less noise)"
    )
    torch_threads: Annotated[int, Field(ge=1, le=256)] = 1
    checkpoint_every: Steps = Field(115_200, description="steps between checkpoints")
    ppo: PPOConfig = PPOConfig()
    network: NetworkConfig = NetworkConfig()
    randomization: RandomizationConfig = RandomizationConfig()
    evaluation: TrainEvalConfig = TrainEvalConfig()
    pretrain: PretrainConfig = PretrainConfig()
    suite: str | None = Field(
        None, min_length=1, max_length=4096,
        description="train on this suite's train members (name in configs/suites or YAML "
        "path; shift_rl/suite_training.py) instead of scenario + randomization; needs "
        "network.kind modular. scenario stays what validation and the final evaluation use",
    )  # fmt: skip
    suite_max_modules: Annotated[int, Field(ge=2, le=4096)] = Field(
        64, description="padded module slots; members with more modules are left out"
    )
    suite_kinds: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        ["cpu"], min_length=1, max_length=8,
        description="resource kinds of the padded layout: members whose kinds are these or some "
        "of them in order are trained on, the others left out",
    )  # fmt: skip
    suite_amount_levels: list[Annotated[int, Field(ge=1, le=1_000_000)]] = Field(
        [1, 2, 4], min_length=1, max_length=64,
        description="the policy's amount levels; members whose levels do not hold them are "
        "left out, members with more levels are trained on through a level map",
    )  # fmt: skip
    leave_out: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        [], max_length=64, description="suite families left out of training (leave-one-out)"
    )

    @field_validator("run_name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*", value) or len(value) > 100:
            raise ValueError(
                "must be a plain folder name: letters, digits, underscores, hyphens and dots, "
                "not starting with a dot, no path separator, at most 100 characters"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        rollout = self.ppo.n_steps * self.n_envs
        if rollout > MAX_ROLLOUT:
            raise ValueError(
                f"ppo.n_steps: a rollout of n_steps x n_envs = {self.ppo.n_steps} x "
                f"{self.n_envs} = {rollout:,} samples is above the {MAX_ROLLOUT:,} allowed"
            )
        if self.ppo.batch_size > rollout:
            raise ValueError(
                f"ppo.batch_size: {self.ppo.batch_size} exceeds a rollout of n_steps x n_envs "
                f"= {rollout} samples"
            )
        for name in ("demand_scale", "amplitude_scale", "fault_rate_scale"):
            lo, hi = getattr(self.randomization, name)
            if lo > hi:
                raise ValueError(f"randomization.{name}: low {lo} above high {hi}")
        if self.suite is not None and self.network.kind != "modular":
            raise ValueError(
                "suite: training on a suite of several module counts needs network.kind "
                "modular (an MLP reads one observation size)"
            )
        if self.leave_out and self.suite is None:
            raise ValueError("leave_out: families are left out of a suite; set suite too")
        if self.pretrain.rollouts and self.suite is None:
            raise ValueError("pretrain: the warm start runs on a suite's members; set suite too")
        if self.network.advisor is not None and (
            self.suite is None or self.network.kind != "modular"
        ):
            raise ValueError(
                "network.advisor: the advice is written into a suite's padded observations; "
                "it needs network.kind modular and suite"
            )
        levels = self.suite_amount_levels
        if sorted(set(levels)) != levels:
            raise ValueError(f"suite_amount_levels: {levels} must be increasing, no repeats")
        return self


def _parse_value(text: str) -> Any:
    """An override's value as YAML, with numbers like ``1e-4`` (a string to YAML 1.1) as floats."""
    try:
        value = parse_yaml(text, "--set value", "override")
    except ConfigError:
        return text
    if isinstance(value, str):
        for kind in (int, float):
            try:
                return kind(value)
            except ValueError:
                pass
    return value


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def load_train_config(
    path: str | os.PathLike | None = None, overrides: Sequence[str] = ()
) -> TrainConfig:
    """Load a training config (default: ``configs/train/ppo_default.yaml``) with overrides.

    Each override is ``dotted.key=value``; the value is read as YAML (``1e-4``, ``[64, 64]``,
    ``maskable_ppo``). The result is validated as a whole: one :class:`ConfigError` lists
    every problem, unknown keys and wrong types included.
    """
    source = Path(path) if path is not None else TRAIN_DIR / "ppo_default.yaml"
    if path_kind(source) in ("missing", "invalid"):
        known = sorted(p.name for p in TRAIN_DIR.glob("*.yaml"))
        raise ConfigError(
            f"training config {_short_path(source)} does not exist; expected a YAML file, e.g. "
            f"one of {known} in {TRAIN_DIR}"
        )
    data = read_yaml_file(source, "training config")
    return train_config_from_dict({} if data is None else data, overrides, str(source))


def train_config_from_dict(
    data: Any, overrides: Sequence[str] = (), source: str = "<dict>"
) -> TrainConfig:
    """Validate a training config mapping after applying ``key=value`` overrides."""
    if not isinstance(data, dict):
        raise ConfigError(f"invalid training config {source}: the top level must be a mapping")
    data = copy.deepcopy(data)  # overrides never touch the caller's (dates, sets and all)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r}: expected dotted.key=value")
        _set_dotted(data, key.strip(), _parse_value(text))
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as err:
        where = source + (f" with --set {' '.join(overrides)}" if overrides else "")
        raise ConfigError(_format_errors(err, where, TrainConfig, "training config")) from None
