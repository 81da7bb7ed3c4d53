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

import itertools
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SCENARIO_DIR = PROJECT_ROOT / "configs" / "scenarios"

Share = Annotated[float, Field(ge=0.0, le=1.0)]
PosFloat = Annotated[float, Field(gt=0.0)]
NonNegFloat = Annotated[float, Field(ge=0.0)]
PosInt = Annotated[int, Field(ge=1)]
NonNegInt = Annotated[int, Field(ge=0)]


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the field and what is allowed."""


class _Model(BaseModel):
    """Strict base: unknown keys and wrong types are errors, never silently coerced."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ResourceConfig(_Model):
    """One resource kind of the pool."""

    name: str = Field(min_length=1, description="resource kind, e.g. cpu or mem")
    units: PosInt = Field(description="allocatable units of this kind in the pool")


class DiurnalConfig(_Model):
    amplitude: Share = Field(0.5, description="relative swing of the daily cycle")
    peak_hour: Annotated[float, Field(ge=0.0, lt=24.0)] = Field(
        14.0, description="hour of day (0-24) of the daily peak"
    )


class BurstConfig(_Model):
    rate_per_day: NonNegFloat = Field(0.0, description="expected bursts per day (Poisson)")
    magnitude: NonNegFloat = Field(1.0, description="extra demand at a burst's start, relative")
    duration_ticks: PosInt = Field(10, description="e-folding decay time of a burst, ticks")


class RegimeConfig(_Model):
    rate_per_day: NonNegFloat = Field(0.0, description="expected level shifts per day")
    magnitude: NonNegFloat = Field(0.3, description="std of the log-level jump at a shift")


class DemandShape(_Model):
    """Synthetic demand of one module, in requests per tick."""

    base: PosFloat = Field(description="mean demand, requests per tick")
    diurnal: DiurnalConfig = DiurnalConfig()
    weekly_amplitude: Share = Field(0.0, description="relative swing of the weekly cycle")
    noise: NonNegFloat = Field(0.05, description="std of the log-scale AR(1) noise")
    noise_autocorr: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.8
    bursts: BurstConfig = BurstConfig()
    trend_per_day: Annotated[float, Field(gt=-1.0, le=10.0)] = Field(
        0.0, description="relative growth of the level per day"
    )
    regime: RegimeConfig = RegimeConfig()


class ModuleConfig(_Model):
    """One module (service) drawing units from the pool."""

    name: str = Field(min_length=1)
    service_rate: PosFloat = Field(description="requests per second served by one server")
    slo_seconds: PosFloat = Field(description="latency objective of one request, seconds")
    value: PosFloat = Field(1.0, description="weight of this module's goal attainment")
    units: NonNegInt | dict[str, NonNegInt] = Field(
        description="initial allocation: an int for every kind, or a mapping kind -> units"
    )
    floor: NonNegInt | dict[str, NonNegInt] = Field(
        1, description="units below which no shift may take this module"
    )
    units_per_server: PosFloat | dict[str, PosFloat] = Field(
        1.0, description="units of each kind one server needs"
    )
    demand: DemandShape | None = Field(None, description="synthetic demand (or use a trace)")
    report_noise: NonNegFloat = Field(0.1, description="std of the log-error of reported need")
    overconfidence: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(
        0.0, description="share of its true report error that the module's confidence hides"
    )

    @model_validator(mode="after")
    def _slo_reachable(self) -> ModuleConfig:
        if self.slo_seconds * self.service_rate <= 1.0:
            raise ValueError(
                f"slo_seconds * service_rate = {self.slo_seconds * self.service_rate:.3g} must "
                "exceed 1 (the SLO must be longer than one mean service time)"
            )
        return self


class TraceConfig(_Model):
    """Replay of a real trace: column i of the file drives module i (or the named columns)."""

    path: str = Field(description="CSV or CSV.gz, relative to the scenario file")
    columns: list[str | NonNegInt] | None = Field(None, description="series to use, in order")
    peak_share: Annotated[float, Field(gt=0.0, le=1.0)] = Field(
        0.25, description="each series is scaled so its peak needs this share of the pool"
    )
    step_seconds: PosFloat | None = Field(
        None, description="seconds per row of a tick-index trace (timestamps carry their own)"
    )
    start_tick: NonNegInt | Literal["random"] = Field(
        "random", description="first replayed row of an episode, or random per episode"
    )


class DemandConfig(_Model):
    correlation: Share = Field(0.0, description="share of the noise common to all modules")
    start_hour: Annotated[float, Field(ge=0.0, lt=24.0)] | Literal["random"] = Field(
        "random", description="time of day of an episode's first tick"
    )
    trace: TraceConfig | None = None


class SafetyConfig(_Model):
    """The rails every shift passes through (see :mod:`shift_rl.safety`)."""

    max_units_per_shift: PosInt = Field(8, description="units one shift may move")
    max_units_per_tick: PosInt = Field(8, description="units all shifts of one tick may move")
    max_module_share: Annotated[float, Field(gt=0.0, le=1.0)] = Field(
        0.6, description="share of a kind's pool one module may hold (incl. incoming)"
    )
    stabilization_ticks: PosInt = Field(
        5, description="ticks both modules of a shift stay locked; the shift is judged after"
    )
    rollback_threshold: Share = Field(
        0.05, description="drop of the pair's value-weighted goal attainment that rolls back"
    )


class ActionConfig(_Model):
    amount_levels: list[PosInt] = Field(
        [1, 2, 4, 8], min_length=1, description="units a shift may move (third action index)"
    )

    @field_validator("amount_levels")
    @classmethod
    def _increasing(cls, v: list[int]) -> list[int]:
        if any(b <= a for a, b in itertools.pairwise(v)):
            raise ValueError(f"must be strictly increasing, got {v}")
        return v


class RewardConfig(_Model):
    cost_per_unit: NonNegFloat = Field(0.002, description="reward lost per unit moved")
    cost_per_rollback: NonNegFloat = Field(0.02, description="reward lost per rollback")


class SlowdownConfig(_Model):
    rate_per_day: NonNegFloat = Field(0.0, description="slow-downs per module per day")
    factor: Annotated[float, Field(gt=0.0, lt=1.0)] = Field(
        0.5, description="service rate multiplier while slowed"
    )
    duration_ticks: PosInt = 30


class UnitFailureConfig(_Model):
    rate_per_day: NonNegFloat = Field(0.0, description="failure events per resource kind per day")
    units: PosInt = Field(2, description="units lost per failure")
    duration_ticks: PosInt = Field(20, description="ticks until the units come back")


class TelemetryGapConfig(_Model):
    rate_per_day: NonNegFloat = Field(0.0, description="gaps per module per day")
    duration_ticks: PosInt = 5


class FaultConfig(_Model):
    slowdown: SlowdownConfig = SlowdownConfig()
    unit_failure: UnitFailureConfig = UnitFailureConfig()
    telemetry_gap: TelemetryGapConfig = TelemetryGapConfig()


class ForecastConfig(_Model):
    model: str = Field("ema", description="forecaster name (see shift_rl.forecast.FORECASTERS)")
    params: dict[str, float | int] = Field({}, description="keyword arguments of the model")
    history_ticks: NonNegInt = Field(60, description="ticks of demand seen before an episode")

    @field_validator("model")
    @classmethod
    def _known(cls, v: str) -> str:
        from shift_rl.forecast import FORECASTERS

        if v not in FORECASTERS:
            raise ValueError(f"unknown forecaster {v!r}; allowed: {sorted(FORECASTERS)}")
        return v


class ReputationConfig(_Model):
    alpha: Annotated[float, Field(gt=0.0, le=1.0)] = Field(0.05, description="EMA weight per tick")
    attainment_weight: Share = Field(
        0.7, description="weight of delivered attainment vs report accuracy"
    )


class ScenarioConfig(_Model):
    """A complete scenario; see README 'Scenario format' for every field."""

    name: str = Field(min_length=1)
    description: str = ""
    tick_seconds: PosFloat = Field(60.0, description="length of one control interval, seconds")
    episode_ticks: PosInt = Field(720, description="ticks per episode (time limit)")
    warmup_ticks: NonNegInt = Field(2, description="ticks before shifted units serve")
    target_utilization: Annotated[float, Field(gt=0.0, lt=1.0)] = Field(
        0.7, description="utilization at which a module's reported need is computed"
    )
    resources: list[ResourceConfig] = Field(min_length=1)
    modules: list[ModuleConfig] = Field(min_length=2)
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
        names = self.resource_names
        if len(set(names)) != len(names):
            raise ValueError(f"resources: names must be unique, got {names}")
        mod_names = [m.name for m in self.modules]
        if len(set(mod_names)) != len(mod_names):
            raise ValueError(f"modules: names must be unique, got {mod_names}")
        for i, m in enumerate(self.modules):
            for field in ("units", "floor", "units_per_server"):
                v = getattr(m, field)
                if isinstance(v, dict) and set(v) != set(names):
                    raise ValueError(
                        f"modules.{i}.{field}: keys {sorted(v)} must be the resource kinds {names}"
                    )
            if m.demand is None and self.demand.trace is None:
                raise ValueError(
                    f"modules.{i}.demand: required unless demand.trace replays a trace"
                )
        for r, res in enumerate(self.resources):
            units = [self.per_kind(m, "units")[r] for m in self.modules]
            floors = [self.per_kind(m, "floor")[r] for m in self.modules]
            if sum(units) > res.units:
                raise ValueError(
                    f"modules.*.units: initial {res.name} allocation {sum(units)} exceeds "
                    f"the pool's {res.units} units"
                )
            if sum(floors) > res.units:
                raise ValueError(
                    f"modules.*.floor: {res.name} floors add up to {sum(floors)}, above the "
                    f"pool size {res.units}"
                )
            for i, (u, f) in enumerate(zip(units, floors, strict=True)):
                if u < f:
                    raise ValueError(
                        f"modules.{i}.units: initial {res.name} units {u} below its floor {f}"
                    )
            cap = self.safety.max_module_share * res.units
            for i, f in enumerate(floors):
                if f > cap:
                    raise ValueError(
                        f"modules.{i}.floor: {f} {res.name} units exceed "
                        f"safety.max_module_share x pool = {cap:g}"
                    )
            if self.safety.max_units_per_shift > res.units:
                raise ValueError(
                    f"safety.max_units_per_shift: {self.safety.max_units_per_shift} exceeds "
                    f"the {res.name} pool of {res.units} units"
                )
        top = max(self.action.amount_levels)
        if top > self.safety.max_units_per_shift:
            raise ValueError(
                f"action.amount_levels: level {top} exceeds safety.max_units_per_shift="
                f"{self.safety.max_units_per_shift}"
            )
        return self


def _format_errors(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        given = e.get("input")
        shown = "" if isinstance(given, dict) else f" (got {given!r})"
        if e["type"] == "extra_forbidden":
            msg, shown = "unknown key", ""
        lines.append(f"{loc}: {msg}{shown}")
    head = f"invalid scenario {source}: " if len(lines) == 1 else f"invalid scenario {source}:\n  "
    return head + "\n  ".join(lines)


def _resolve_trace(data: dict[str, Any], base: Path) -> None:
    """Make a replayed trace's path absolute (relative to the YAML file) and check it exists."""
    trace = (data.get("demand") or {}).get("trace") if isinstance(data, dict) else None
    if isinstance(trace, dict) and isinstance(trace.get("path"), str):
        path = Path(os.path.expanduser(trace["path"]))
        if not path.is_absolute():
            path = (base / path).resolve()
        trace["path"] = str(path)


def scenario_from_dict(
    data: Any, source: str = "<dict>", base: Path | None = None
) -> ScenarioConfig:
    """Validate a mapping as a scenario; raise :class:`ConfigError` with every problem named."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"invalid scenario {source}: expected a mapping, got {type(data).__name__}"
        )
    data = dict(data)
    if base is not None:
        data["demand"] = dict(data.get("demand") or {})
        if isinstance(data["demand"].get("trace"), dict):
            data["demand"]["trace"] = dict(data["demand"]["trace"])
        _resolve_trace(data, base)
    try:
        cfg = ScenarioConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None
    trace = cfg.demand.trace
    if trace is not None and not Path(trace.path).is_file():
        raise ConfigError(
            f"invalid scenario {source}: demand.trace.path: file {trace.path!r} does not exist "
            "(expected a CSV or CSV.gz trace)"
        )
    return cfg


def load_scenario(scenario: str | os.PathLike | ScenarioConfig) -> ScenarioConfig:
    """Load a scenario from a config object, a YAML path, or a name in ``configs/scenarios``."""
    if isinstance(scenario, ScenarioConfig):
        return scenario
    path = Path(scenario)
    if not path.suffix and not path.exists():
        path = SCENARIO_DIR / f"{scenario}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))
        raise ConfigError(
            f"scenario {str(scenario)!r} not found: expected a YAML path or one of {known}"
        )
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"invalid scenario {path}: not valid YAML ({err})") from None
    return scenario_from_dict(data, source=str(path), base=path.parent)


def with_trace(
    cfg: ScenarioConfig, path: str | os.PathLike, peak_share: float | None = None
) -> ScenarioConfig:
    """``cfg`` with its demand replaced by the series of a trace file, mapped in column order.

    The scenario's own trace settings (scaling, start) are kept when it already replays one.
    """
    data = cfg.model_dump(mode="json")
    trace = dict(data["demand"].get("trace") or {})
    trace["path"] = str(Path(path).expanduser().resolve())
    trace.pop("columns", None)
    trace.pop("step_seconds", None)
    if peak_share is not None:
        trace["peak_share"] = peak_share
    data["demand"]["trace"] = trace
    return scenario_from_dict(data, source=f"{cfg.name} with trace {path}")
