"""Workload suites: named sets of scenarios to train on and to report on, in validated YAML.

A suite (``configs/suites/*.yaml``) lists *members*. Each member has a ``name``, a scenario
``class`` (the leaderboard's rows: ``default``, ``faults``, ``multi_resource``, ``large``,
``scale_256``, ``synthetic``, one per real trace family, ...), a ``family`` (what
leave-one-family-out removes; a trace member's family is its file's name without
``.csv[.gz]``, any other member's its class) and the ``splits`` it is for (``train``,
``eval`` or both). A member is built in one of three ways:

* ``scenario``: a scenario file (relative to the suite file) or a shipped scenario name,
  optionally randomized (``randomize``: the training randomization of
  :class:`~shift_rl.config.RandomizationConfig`: demand levels, peak hours, daily swings,
  fault rates; ``variants: 0`` keeps the scenario as it is);
* ``generator``: ``variants`` scenarios drawn with broad randomization (module count, service
  archetypes declared as ``module_groups`` for :mod:`shift_rl.archetypes`, demand shapes:
  daily cycles, trends, bursts, regime changes, scheduled events, correlated noise; pool
  tightness; faults; one or two resource kinds);
* ``trace``: ``variants`` scenarios replaying a real trace: series sampled onto modules
  (``columns`` to draw from, ``modules`` how many), each module's series read at its own time
  ``offset``, scaled so the peaks add up to ``peak_share_sum`` of the pool, with a **time
  split**: the ``train`` split replays only ticks of ``split.train``, the ``eval`` split only
  ticks of ``split.eval`` (fractions ``[from, to)`` of the trace, set as
  ``demand.trace.window``: history, episode and look-ahead all stay inside, and the series are
  scaled to their peak inside the window, so nothing of the other part shapes an episode).
  ``split.train`` must end where or before ``split.eval`` starts.

Every drawn variant comes from ``numpy.random.default_rng([suite seed, member seed,
crc32(member name), split, variant])``: the same file gives the same scenarios, always, and
the eval split's variants are never the train split's. Episodes follow :mod:`shift_rl.seeds`:
a suite's train split is played with training seeds (``TRAIN_SEED_BASE`` on), its eval split
with report seeds (``seed + i``, what ``scripts/benchmark.py`` does).

A trace member whose file is missing is *skipped* with a note (:attr:`Expansion.skipped`), so
a suite that references ``../shared/traces/`` still runs without it; ``synthetic.yaml`` needs
no trace at all. Relative paths are taken relative to the suite file's folder, as a
scenario's ``demand.trace.path`` is relative to the scenario file.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, ValidationError, field_validator, model_validator

from shift_rl.config import (
    MAX_TICKS,
    PROJECT_ROOT,
    ConfigError,
    Name,
    RandomizationConfig,
    ScenarioConfig,
    Share,
    _format_errors,
    _Model,
    load_scenario,
    path_kind,
    read_yaml_file,
    scenario_from_dict,
)

logger = logging.getLogger(__name__)

SUITE_DIR = PROJECT_ROOT / "configs" / "suites"
SPLITS = ("train", "eval")
LOOK_AHEAD = 33
"""Ticks of demand an episode keeps past its end (1 + FORECAST_HORIZON_MAX)."""
MAX_VARIANTS = 1000

Split = Literal["train", "eval"]
Ticks = Annotated[int, Field(ge=1, le=MAX_TICKS)]


def _range(lo: float, hi: float, what: str, integer: bool = False) -> Any:
    kind = int if integer else float
    item = Annotated[kind, Field(ge=lo, le=hi)]
    return Annotated[list[item], Field(min_length=2, max_length=2, description=what)]


ModuleRange = _range(2, 4096, "[low, high] modules, drawn uniformly", integer=True)
FloatRange = _range(0.0, 1000.0, "[low, high], drawn uniformly")
GroupRange = _range(1, 64, "[low, high] module groups (archetypes) per variant", True)
NeedRange = _range(1.0, 100.0, "[low, high] mean cpu units a module needs")
TightRange = _range(0.3, 5.0, "[low, high] pool / total mean need")
AmplitudeRange = _range(0.0, 1.0, "[low, high] daily swing")
PeakJitterRange = _range(0.0, 12.0, "[low, high] spread of peak hours in a group")
TrendRange = _range(-0.5, 2.0, "[low, high] relative growth per day")
EventRange = _range(0, 8, "[low, high] scheduled daily events per group", True)
NoiseRange = _range(0.0, 1.0, "[low, high] log-noise std")
CorrelationRange = _range(0.0, 1.0, "[low, high] shared share of the noise")
OffsetRange = _range(0, MAX_TICKS, "[low, high] ticks each module's series is read late", True)
PeakSumRange = _range(0.05, 100.0, "[low, high] sum of the modules' peak shares")
PoolRange = _range(1.0, 100.0, "[low, high] pool units per module")


# Service archetypes: the eight of configs/scenarios/large.yaml and scale_256.yaml, with the
# units of memory one server needs beside one unit of cpu (used when a variant has two kinds).
ARCHETYPES: dict[str, dict[str, float]] = {
    "api": {"service_rate": 50, "slo_seconds": 0.1, "value": 2.0, "mem": 1.0},
    "web": {"service_rate": 20, "slo_seconds": 0.25, "value": 1.5, "mem": 2.0},
    "pay": {"service_rate": 10, "slo_seconds": 0.5, "value": 3.0, "mem": 1.5},
    "batch": {"service_rate": 5, "slo_seconds": 2.0, "value": 0.5, "mem": 2.0},
    "search": {"service_rate": 15, "slo_seconds": 0.3, "value": 1.0, "mem": 2.0},
    "cache": {"service_rate": 100, "slo_seconds": 0.05, "value": 2.0, "mem": 4.0},
    "auth": {"service_rate": 30, "slo_seconds": 0.2, "value": 1.0, "mem": 1.0},
    "report": {"service_rate": 8, "slo_seconds": 1.0, "value": 0.8, "mem": 3.0},
}
"""Service archetypes a generated or trace member draws its modules from (by name)."""
ArchetypeName = Literal["api", "web", "pay", "batch", "search", "cache", "auth", "report"]


class _Ranged(_Model):
    @model_validator(mode="after")
    def _ordered(self) -> Any:
        for name in type(self).model_fields:
            v = getattr(self, name)
            if isinstance(v, list) and len(v) == 2 and all(isinstance(x, int | float) for x in v):
                if v[0] > v[1]:
                    raise ValueError(f"{name}: low {v[0]:g} above high {v[1]:g}")
        return self


class GeneratorFaults(_Ranged):
    share: Share = Field(0.3, description="share of the variants that have faults")
    slowdown_per_day: FloatRange = Field([0.5, 3.0], description="slow-downs per module per day")
    unit_failure_per_day: FloatRange = Field([1.0, 8.0], description="failures per kind per day")
    telemetry_gap_per_day: FloatRange = Field([0.5, 4.0], description="gaps per module per day")


class GeneratorConfig(_Ranged):
    """Broad randomization of synthetic scenarios (each range drawn uniformly per variant)."""

    variants: Annotated[int, Field(ge=1, le=MAX_VARIANTS)] = Field(
        4, description="scenarios drawn per split"
    )
    modules: ModuleRange = Field([4, 16])
    archetypes: list[ArchetypeName] | None = Field(
        None, min_length=1, description="archetypes to draw from (default: all eight)"
    )
    groups: GroupRange = Field([2, 6])
    kinds: list[list[Literal["cpu", "mem"]]] = Field(
        [["cpu"], ["cpu", "mem"]],
        min_length=1,
        description="resource-kind sets to draw from, e.g. [[cpu], [cpu, mem]]",
    )
    need_units: NeedRange = Field([2.0, 5.0])
    tightness: TightRange = Field([0.95, 1.3])
    diurnal_amplitude: AmplitudeRange = Field([0.2, 0.8])
    peak_jitter_hours: PeakJitterRange = Field([2.0, 12.0])
    trend_per_day: TrendRange = Field([-0.1, 0.2])
    bursts_per_day: FloatRange = Field([0.0, 3.0])
    regimes_per_day: FloatRange = Field([0.0, 1.0])
    events: EventRange = Field([0, 2])
    noise: NoiseRange = Field([0.03, 0.12])
    correlation: CorrelationRange = Field([0.0, 0.6])
    faults: GeneratorFaults = GeneratorFaults()

    @field_validator("kinds")
    @classmethod
    def _cpu_first(cls, v: list[list[str]]) -> list[list[str]]:
        for ks in v:
            if not ks or ks[0] != "cpu" or len(set(ks)) != len(ks):
                raise ValueError(f"each set must start with 'cpu' and not repeat a kind (got {ks})")
        return v


class TimeSplit(_Model):
    train: list[Share] = Field(
        [0.0, 0.7], min_length=2, max_length=2, description="[from, to) fractions trained on"
    )
    eval: list[Share] = Field(
        [0.7, 1.0], min_length=2, max_length=2, description="[from, to) fractions reported on"
    )

    @model_validator(mode="after")
    def _disjoint(self) -> TimeSplit:
        for name in ("train", "eval"):
            lo, hi = getattr(self, name)
            if not lo < hi:
                raise ValueError(f"{name}: from {lo:g} must be below to {hi:g}")
        if self.train[1] > self.eval[0]:
            raise ValueError(
                f"train {self.train} overlaps eval {self.eval}: the train part must end where "
                "or before the eval part starts (train on the early part, report on the late)"
            )
        return self


class TraceMemberConfig(_Ranged):
    """Scenarios replaying one real trace, with a time split."""

    path: str = Field(min_length=1, max_length=4096, description="CSV(.gz), relative to the suite")
    step_seconds: Annotated[float, Field(gt=0.0, le=1e7)] | None = Field(
        None, description="seconds per row of a tick-index trace"
    )
    columns: list[Annotated[str, Field(max_length=1000)] | Annotated[int, Field(ge=0)]] | None = (
        Field(None, max_length=100_000, description="series to draw from (default: all usable)")
    )
    variants: Annotated[int, Field(ge=1, le=MAX_VARIANTS)] = Field(
        2, description="scenarios drawn per split"
    )
    modules: ModuleRange = Field([4, 8])
    offsets: OffsetRange = Field([0, 0])
    peak_share_sum: PeakSumRange = Field([1.5, 2.5])
    units_per_module: PoolRange = Field([4.0, 8.0])
    archetypes: list[ArchetypeName] | None = Field(None, min_length=1)
    split: TimeSplit = TimeSplit()


class MemberConfig(_Model):
    name: Name
    class_: Name = Field(alias="class", description="scenario class: a row of the leaderboard")
    family: Name | None = Field(None, description="default: the trace file's stem, else class")
    splits: list[Split] = Field(min_length=1, max_length=2, description="train, eval or both")
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0
    episode_ticks: Ticks | None = Field(None, description="override of the scenarios' episodes")
    scenario: str | None = Field(None, min_length=1, max_length=4096)
    randomize: RandomizationConfig | None = None
    generator: GeneratorConfig | None = None
    trace: TraceMemberConfig | None = None

    @model_validator(mode="after")
    def _one_source(self) -> MemberConfig:
        given = [k for k in ("scenario", "generator", "trace") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of scenario, generator, trace (got {given or 'none'})"
            )
        if self.randomize is not None and self.scenario is None:
            raise ValueError("randomize: only with scenario (generator and trace draw their own)")
        if len(set(self.splits)) != len(self.splits):
            raise ValueError(f"splits: {self.splits} repeats a split")
        return self

    @property
    def family_name(self) -> str:
        if self.family is not None:
            return self.family
        if self.trace is not None:
            return _stem(self.trace.path)
        return self.class_


class SuiteConfig(_Model):
    """A workload suite (see the module docstring)."""

    name: Name
    description: str = Field("", max_length=10_000)
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0
    episode_ticks: Ticks | None = Field(None, description="default for every member")
    members: list[MemberConfig] = Field(min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _unique(self) -> SuiteConfig:
        seen: dict[str, int] = {}
        for i, m in enumerate(self.members):
            if m.name in seen:
                raise ValueError(
                    f"members.{i}.name: duplicate member name {m.name!r} (members.{seen[m.name]})"
                )
            seen[m.name] = i
        return self

    @property
    def families(self) -> list[str]:
        return list(dict.fromkeys(m.family_name for m in self.members))

    @property
    def classes(self) -> list[str]:
        return list(dict.fromkeys(m.class_ for m in self.members))

    def without_families(self, families: Iterable[str]) -> SuiteConfig:
        """This suite with every member of ``families`` removed (leave-one-family-out)."""
        drop = self._known(families)
        kept = [m for m in self.members if m.family_name not in drop]
        if not kept:
            raise ConfigError(f"suite {self.name!r}: leaving out {sorted(drop)} leaves no member")
        return self.model_copy(update={"members": kept, "name": left_out_name(self.name, drop)})

    def only_families(self, families: Iterable[str]) -> SuiteConfig:
        """This suite's members of ``families`` only (what a left-out family is reported on)."""
        keep = self._known(families)
        kept = [m for m in self.members if m.family_name in keep]
        return self.model_copy(update={"members": kept, "name": f"{self.name}-only-" +
                                       "-".join(sorted(keep))})  # fmt: skip

    def _known(self, families: Iterable[str]) -> set[str]:
        wanted = set(families)
        unknown = sorted(wanted - set(self.families))
        if unknown:
            raise ConfigError(
                f"suite {self.name!r}: unknown family {', '.join(map(repr, unknown))}; its "
                f"families are {', '.join(self.families)}"
            )
        return wanted


def left_out_name(name: str, families: Iterable[str]) -> str:
    """``name``, or ``<name>-without-<families>`` (sorted, ``-``-joined) when some are left
    out: the suite, its tuned baselines' folder and a training run with them left out."""
    fams = sorted(set(families))
    return f"{name}-without-{'-'.join(fams)}" if fams else name


@dataclass(frozen=True)
class Suite:
    """A validated suite and the folder its relative paths are taken from."""

    config: SuiteConfig
    base: Path
    source: str

    @property
    def name(self) -> str:
        return self.config.name

    def without_families(self, families: Iterable[str]) -> Suite:
        return Suite(self.config.without_families(families), self.base, self.source)

    def only_families(self, families: Iterable[str]) -> Suite:
        return Suite(self.config.only_families(families), self.base, self.source)


@dataclass(frozen=True)
class SuiteScenario:
    """One scenario of an expanded suite."""

    member: str
    class_: str
    family: str
    split: str
    variant: int
    scenario: ScenarioConfig

    @property
    def key(self) -> str:
        """``member/variant``: unique inside one split of a suite."""
        return f"{self.member}/{self.variant}"


@dataclass
class Expansion:
    """A suite's scenarios of one split, and the members skipped (with the reason)."""

    suite: str
    split: str
    scenarios: list[SuiteScenario]
    skipped: list[str] = field(default_factory=list)

    @property
    def classes(self) -> list[str]:
        return list(dict.fromkeys(s.class_ for s in self.scenarios))


# -- loading ---------------------------------------------------------------------------------
def _stem(path: str) -> str:
    name = Path(path).name
    for suffix in (".gz", ".csv"):
        name = name.removesuffix(suffix)
    return name


def _known_suites() -> list[str]:
    return sorted(p.stem for p in SUITE_DIR.glob("*.yaml"))


def load_suite(suite: str | os.PathLike | Suite) -> Suite:
    """A suite from a YAML path or a name in ``configs/suites``; bad input is one
    :class:`~shift_rl.config.ConfigError` naming the file, the field and what is allowed."""
    if isinstance(suite, Suite):
        return suite
    path = Path(suite)
    if path_kind(path) != "file" and len(path.parts) == 1:
        candidate = SUITE_DIR / f"{path.name.removesuffix('.yaml')}.yaml"
        if path_kind(candidate) == "file":
            path = candidate
    if path_kind(path) != "file":
        raise ConfigError(
            f"suite file {str(suite)!r} does not exist; expected a YAML file or one of the "
            f"shipped suites: {', '.join(_known_suites())} (in {SUITE_DIR})"
        )
    data = read_yaml_file(path, "suite")
    return suite_from_dict(data, source=str(path), base=path.parent)


def suite_from_dict(data: Any, source: str = "<dict>", base: Path | None = None) -> Suite:
    if not isinstance(data, dict):
        got = "an empty document" if data is None else f"a {type(data).__name__}"
        raise ConfigError(
            f"invalid suite {source}: the top level must be a mapping (name, members, ...), "
            f"got {got}"
        )
    try:
        cfg = SuiteConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source, SuiteConfig, "suite")) from None
    return Suite(cfg, (base or Path.cwd()).resolve(), source)


# -- expansion -------------------------------------------------------------------------------
def _rng(suite: SuiteConfig, member: MemberConfig, split: str, variant: int) -> np.random.Generator:
    key = [suite.seed, member.seed, zlib.crc32(member.name.encode()), SPLITS.index(split), variant]
    return np.random.default_rng(key)


def _u(rng: np.random.Generator, pair: Sequence[float]) -> float:
    return float(rng.uniform(pair[0], pair[1])) if pair[1] > pair[0] else float(pair[0])


def _i(rng: np.random.Generator, pair: Sequence[int]) -> int:
    return int(rng.integers(pair[0], pair[1] + 1))


def _resolve(base: Path, path: str) -> Path:
    p = Path(os.path.expanduser(path))
    return p if p.is_absolute() else (base / p).resolve()


def _rails(m: int, pools: list[int]) -> dict[str, Any]:
    """Safety rails and action levels that fit a plane of ``m`` modules and these pools."""
    per_shift = max(1, min(8 if m > 32 else 4, min(pools)))
    share = 0.6 if m <= 4 else 0.5 if m <= 8 else 0.25
    return {
        "safety": {
            "max_units_per_shift": per_shift,
            "max_units_per_tick": min(max(per_shift, math.ceil(m / 8)), 10_000),
            "max_module_share": share,
            "stabilization_ticks": 5,
            "rollback_threshold": 0.05,
        },
        "action": {"amount_levels": [lv for lv in (1, 2, 4, 8) if lv <= per_shift]},
    }


def generate_scenario(
    gen: GeneratorConfig, rng: np.random.Generator, name: str, episode_ticks: int | None
) -> dict[str, Any]:
    """One synthetic scenario mapping (``module_groups`` of archetypes) drawn from ``gen``."""
    m = _i(rng, gen.modules)
    names = list(gen.archetypes or ARCHETYPES)
    n_groups = max(1, min(_i(rng, gen.groups), m))
    picked = [names[int(k)] for k in rng.integers(0, len(names), size=n_groups)]
    cuts = np.sort(rng.choice(np.arange(1, m), size=n_groups - 1, replace=False))
    counts = np.diff(np.concatenate([[0], cuts, [m]])).astype(int).tolist()
    kinds = gen.kinds[int(rng.integers(len(gen.kinds)))]
    need = [_u(rng, gen.need_units) for _ in range(n_groups)]  # mean cpu units per module
    tight = _u(rng, gen.tightness)
    ups = [{"cpu": 1.0, "mem": ARCHETYPES[a]["mem"]} for a in picked]
    pools = {
        k: max(
            m, round(tight * sum(c * n * u[k] for c, n, u in zip(counts, need, ups, strict=True)))
        )
        for k in kinds
    }
    total = {k: sum(c * n * u[k] for c, n, u in zip(counts, need, ups, strict=True)) for k in kinds}
    fill = {k: min(pools[k], 10_000) / total[k] for k in kinds}
    groups = []
    for g, (arch, count) in enumerate(zip(picked, counts, strict=True)):
        a = ARCHETYPES[arch]
        base = need[g] * a["service_rate"] * 60.0 * 0.7  # requests per tick at 70 % utilization
        # the whole pool starts allocated in proportion to mean need (as in default.yaml), so
        # static is a fixed split of the pool, not one that leaves units idle
        units = {k: max(1, math.floor(need[g] * ups[g][k] * fill[k])) for k in kinds}
        events = [
            {
                "hour": round(_u(rng, [0.0, 23.9]), 2),
                "magnitude": round(_u(rng, [0.3, 2.0]), 2),
                "duration_ticks": _i(rng, [20, 90]),
            }
            for _ in range(_i(rng, gen.events))
        ]
        demand = {
            "base": round(base, 1),
            "diurnal": {
                "amplitude": round(_u(rng, gen.diurnal_amplitude), 3),
                "peak_hour": round(_u(rng, [0.0, 23.9]), 2),
            },
            "noise": round(_u(rng, gen.noise), 3),
            "trend_per_day": round(_u(rng, gen.trend_per_day), 3),
            "bursts": {
                "rate_per_day": round(_u(rng, gen.bursts_per_day), 2),
                "magnitude": round(_u(rng, [0.5, 1.5]), 2),
                "duration_ticks": _i(rng, [5, 20]),
            },
            "regime": {"rate_per_day": round(_u(rng, gen.regimes_per_day), 2), "magnitude": 0.25},
            "events": events,
        }
        archetype = {
            "service_rate": a["service_rate"],
            "slo_seconds": a["slo_seconds"],
            "value": a["value"],
            "units": units if len(kinds) > 1 else units["cpu"],
            "floor": 1,
            "units_per_server": {k: ups[g][k] for k in kinds} if len(kinds) > 1 else 1.0,
            "report_noise": round(_u(rng, [0.05, 0.3]), 3),
            "demand": demand,
        }
        jitter = {"demand_base": 0.2, "peak_hour": round(_u(rng, gen.peak_jitter_hours), 2)}
        groups.append(
            {
                "name": f"{arch}{g}-{{i:03d}}",
                "count": count,
                "seed": int(rng.integers(2**31)),
                "archetype": archetype,
                "jitter": jitter,
            }
        )
    faults: dict[str, Any] = {}
    if rng.random() < gen.faults.share:
        f = gen.faults
        faults = {
            "slowdown": {"rate_per_day": round(_u(rng, f.slowdown_per_day), 2)},
            "unit_failure": {
                "rate_per_day": round(_u(rng, f.unit_failure_per_day), 2),
                "units": max(1, min(pools.values()) // 12),
            },
            "telemetry_gap": {"rate_per_day": round(_u(rng, f.telemetry_gap_per_day), 2)},
        }
    out: dict[str, Any] = {
        "name": name,
        "description": f"generated: {m} modules in {n_groups} archetype groups, kinds {kinds}, "
        f"pool {tight:.2f} x mean need" + (", faults" if faults else ""),
        "resources": [{"name": k, "units": min(pools[k], 10_000)} for k in kinds],
        "demand": {"correlation": round(_u(rng, gen.correlation), 3), "start_hour": "random"},
        "module_groups": groups,
        **_rails(m, list(pools.values())),
        "faults": faults,
        "forecast": {"model": "ema", "params": {"alpha": 0.3}, "history_ticks": 60},
    }
    if episode_ticks is not None:
        out["episode_ticks"] = episode_ticks
    return out


@lru_cache(maxsize=16)
def _trace_info(path: str, mtime: float) -> tuple[tuple[str, ...], int, float | None, np.ndarray]:
    """Columns, ticks, step and values (rows x series) of a trace file; a series filled more
    than half the time reads as zero throughout (never drawn)."""
    from shift_rl.traces import MAX_MISSING_SHARE, load_trace

    t = load_trace(path)
    usable = np.array([m / t.loaded_ticks <= MAX_MISSING_SHARE for m in t.missing])
    return t.columns, t.num_ticks, t.step_seconds, t.values * usable


def _usable_columns(values: np.ndarray, split: TimeSplit) -> list[int]:
    """Series non-zero in at least half the ticks of the train part and of the eval part."""
    ok = np.ones(values.shape[1], dtype=bool)
    for lo, hi in (split.train, split.eval):
        part = values[math.floor(lo * len(values)) : math.floor(hi * len(values))]
        ok &= (part > 0).mean(axis=0) >= 0.5
    return [int(j) for j in np.flatnonzero(ok)]


def _trace_scenario(
    member: MemberConfig,
    where: str,
    path: Path,
    split: str,
    rng: np.random.Generator,
    name: str,
    episode_ticks: int | None,
) -> dict[str, Any]:
    tm = member.trace
    assert tm is not None
    columns, ticks, step, values = _trace_info(str(path), path.stat().st_mtime)
    step = step or tm.step_seconds or 60.0
    tick_seconds = 60.0
    usable = math.floor(ticks * step / tick_seconds)  # ticks on the simulator's grid
    frac = getattr(tm.split, split)
    lo, hi = math.floor(frac[0] * usable), math.floor(frac[1] * usable)
    episode = episode_ticks or 720
    history = 60
    need = history + episode + LOOK_AHEAD + tm.offsets[1]
    if hi - lo < need:
        raise ConfigError(
            f"{where}.trace.split.{split}: {frac} of {path.name} holds {hi - lo} ticks of "
            f"{tick_seconds:g} s ({usable} in all), fewer than an episode needs: {history} of "
            f"forecast history + {episode} episode ticks + {LOOK_AHEAD} of look-ahead + "
            f"{tm.offsets[1]} of the largest offset = {need}; set a shorter episode_ticks on "
            "the member, smaller offsets or a wider split"
        )
    if tm.columns is not None:
        index = {c: j for j, c in enumerate(columns)}
        pool = []
        for c in tm.columns:
            if isinstance(c, str) and c not in index:
                raise ConfigError(f"{where}.trace.columns: {path.name} has no column {c!r}")
            if isinstance(c, int) and not 0 <= c < len(columns):
                raise ConfigError(
                    f"{where}.trace.columns: index {c}; {path.name} has columns "
                    f"0..{len(columns) - 1}"
                )
            pool.append(index[c] if isinstance(c, str) else c)
    else:  # usable series: non-zero at least half the time in both parts of the split
        pool = _usable_columns(values, tm.split)
        if not pool:
            raise ConfigError(
                f"{where}.trace: no series of {path.name} is non-zero in half the ticks of both "
                "split.train and split.eval; list trace.columns"
            )
    m = _i(rng, tm.modules)
    if m <= len(pool):
        cols = [pool[int(j)] for j in rng.choice(len(pool), size=m, replace=False)]
    else:  # fewer series than modules: series repeat, told apart by their offsets
        cols = [pool[int(j)] for j in rng.integers(0, len(pool), size=m)]
    offsets = [_i(rng, tm.offsets) for _ in range(m)]
    names = list(tm.archetypes or ARCHETYPES)
    archs = [names[int(k)] for k in rng.integers(0, len(names), size=m)]
    units = max(m, round(_u(rng, tm.units_per_module) * m))
    peak_share = min(1.0, _u(rng, tm.peak_share_sum) / m)
    each = max(1, units // m)
    modules = [
        {
            "name": f"{a}-{k:03d}",
            "service_rate": ARCHETYPES[a]["service_rate"],
            "slo_seconds": ARCHETYPES[a]["slo_seconds"],
            "value": ARCHETYPES[a]["value"],
            "units": each,
            "floor": 1,
        }
        for k, a in enumerate(archs)
    ]
    out: dict[str, Any] = {
        "name": name,
        "description": f"{m} modules replaying {path.name} ({split} part {frac})",
        "tick_seconds": tick_seconds,
        "resources": [{"name": "cpu", "units": units}],
        "demand": {
            "trace": {
                "path": str(path),
                "columns": [columns[j] for j in cols],
                "peak_share": round(peak_share, 4),
                "start_tick": "random",
                "window": list(frac),
                **({"offsets": offsets} if any(offsets) or len(set(cols)) < m else {}),
                **({"step_seconds": tm.step_seconds} if tm.step_seconds else {}),
            }
        },
        "modules": modules,
        **_rails(m, [units]),
        "forecast": {"model": "ema", "params": {"alpha": 0.3}, "history_ticks": history},
    }
    if len(set(cols)) < m and "offsets" not in out["demand"]["trace"]:
        out["demand"]["trace"]["offsets"] = offsets
    out["episode_ticks"] = episode
    return out


def _member_scenarios(
    suite: Suite, i: int, member: MemberConfig, split: str
) -> tuple[list[SuiteScenario], str | None]:
    cfg = suite.config
    where = f"members.{i}"
    ticks = member.episode_ticks or cfg.episode_ticks
    source = f"suite {suite.source}: {where} ({member.name!r}, {split})"

    def made(v: int, scenario: ScenarioConfig) -> SuiteScenario:
        return SuiteScenario(member.name, member.class_, member.family_name, split, v, scenario)

    if member.scenario is not None:
        target: str | Path = member.scenario
        if member.scenario.endswith((".yaml", ".yml")) or "/" in member.scenario:
            target = _resolve(suite.base, member.scenario)
        try:
            base = load_scenario(target)
        except ConfigError as err:
            raise ConfigError(f"{source}: scenario: {err}") from None
        if ticks is not None:
            data = base.model_dump(mode="json")
            data["episode_ticks"] = ticks
            base = scenario_from_dict(data, f"{source} (episode_ticks {ticks})")
        if member.randomize is None or member.randomize.variants == 0:
            return [made(0, base)], None
        from shift_rl.training_envs import make_variants

        seed = int(_rng(cfg, member, split, 0).integers(2**31))
        return [made(v, s) for v, s in enumerate(make_variants(base, member.randomize, seed))], None
    if member.generator is not None:
        out = []
        for v in range(member.generator.variants):
            data = generate_scenario(
                member.generator, _rng(cfg, member, split, v), f"{member.name}-{split}{v}", ticks
            )
            out.append(made(v, scenario_from_dict(data, f"{source} variant {v}")))
        return out, None
    tm = member.trace
    assert tm is not None
    path = _resolve(suite.base, tm.path)
    if path_kind(path) != "file":
        logger.warning("suite %s: %s: trace %s not found, member skipped", suite.name, where, path)
        return [], (
            f"{where} ({member.name!r}, class {member.class_!r}): skipped, trace file "
            f"{tm.path!r} not found (relative to the suite file)"
        )
    out = []
    for v in range(tm.variants):
        data = _trace_scenario(
            member, where, path, split, _rng(cfg, member, split, v), f"{member.name}-{split}{v}",
            ticks,
        )  # fmt: skip
        out.append(made(v, scenario_from_dict(data, f"{source} variant {v}")))
    return out, None


def expand_suite(
    suite: str | os.PathLike | Suite,
    split: str,
    leave_out: Iterable[str] = (),
    only: Iterable[str] | None = None,
) -> Expansion:
    """The scenarios of ``split`` (``train`` or ``eval``): every member for it, in file order,
    without the families in ``leave_out`` (and, with ``only``, just those families); members
    whose trace is missing are skipped with a note."""
    s = load_suite(suite)
    if split not in SPLITS:
        raise ConfigError(f"split {split!r}; expected one of {', '.join(SPLITS)}")
    leave_out = list(leave_out)
    if leave_out:
        s = s.without_families(leave_out)
    if only is not None:
        s = s.only_families(only)
    out = Expansion(s.name, split, [])
    for i, member in enumerate(s.config.members):
        if split not in member.splits:
            continue
        made, note = _member_scenarios(s, i, member, split)
        out.scenarios += made
        if note:
            out.skipped.append(note)
    return out


def scenario_json(expansion: Expansion) -> list[dict[str, Any]]:
    """The expanded scenarios as JSON-ready mappings (what reproducibility tests compare)."""
    return [
        {
            "member": s.member,
            "class": s.class_,
            "family": s.family,
            "split": s.split,
            "variant": s.variant,
            "scenario": copy.deepcopy(s.scenario.model_dump(mode="json")),
        }
        for s in expansion.scenarios
    ]


__all__ = [
    "ARCHETYPES",
    "Expansion",
    "GeneratorConfig",
    "MemberConfig",
    "Suite",
    "SuiteConfig",
    "SuiteScenario",
    "TraceMemberConfig",
    "expand_suite",
    "generate_scenario",
    "load_suite",
    "scenario_json",
    "suite_from_dict",
]
