"""Scenarios at scale: modules declared from archetypes, expanded before validation.

A scenario may list, beside (or instead of) ``modules:``, a ``module_groups:`` list; each group
declares ``count`` modules from one ``archetype`` (a module mapping, as an entry of
``modules:`` without its name), named by a pattern and with seeded jitter of their demand
level, daily peak hour and value::

    module_groups:
    - name: "web-{i:03d}"          # i = 0 .. count-1; names must stay unique
      count: 128
      seed: 1                      # same file -> same modules, always
      archetype: {service_rate: 50, slo_seconds: 0.1, units: 3, demand: {base: 5400}}
      jitter: {demand_base: 0.2, peak_hour: 12, value: 0.0}

and a resource may give its pool as ``units_per_module`` (pool = round(x * modules), the
modules counted after expansion) instead of ``units``.

:func:`expand_scenario` turns such a mapping into a plain one (``modules`` = the explicit
modules, then each group's in order; ``module_groups`` removed; ``units`` computed), so the
scenario schema and everything downstream are unchanged. Jitter, per module ``i`` of a group,
from ``numpy.random.default_rng(seed)`` drawing a (count, 3) block of U(-1, 1) values ``u``
(always all three columns, so turning one jitter on never changes the others' draws):

- ``demand.base`` x (1 + ``demand_base`` x u0): uniform, ``demand_base`` in [0, 1);
- ``demand.diurnal.peak_hour`` + ``peak_hour`` x u1 hours, wrapped to [0, 24);
  ``peak_hour`` in [0, 12] (12 spreads the peaks over the whole day);
- ``value`` x (1 + ``value`` x u2): uniform, in [0, 1).
"""

from __future__ import annotations

import math
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

MAX_MODULES = 4096
"""Most modules a scenario may declare (explicit and expanded together)."""
MAX_UNITS_PER_MODULE = 1024.0
"""Largest ``resources[].units_per_module``."""

ErrorLines = Callable[[list[Any], type[BaseModel]], list[str]]
RelJitter = Annotated[float, Field(ge=0.0, lt=1.0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class JitterConfig(_Strict):
    """Seeded per-module variation of a group (see the module docstring for the draws)."""

    demand_base: RelJitter = Field(0.0, description="relative half-width of demand.base")
    peak_hour: Annotated[float, Field(ge=0.0, le=12.0)] = Field(
        0.0, description="half-width of the daily peak hour, hours"
    )
    value: RelJitter = Field(0.0, description="relative half-width of value")


class ModuleGroupConfig(_Strict):
    """``count`` modules made from one archetype."""

    name: str = Field(min_length=1, description="name pattern with {i}, e.g. 'web-{i:03d}'")
    count: Annotated[int, Field(ge=1, le=MAX_MODULES)]
    seed: Annotated[int, Field(ge=0)] = Field(0, description="seed of the jitter draws")
    archetype: dict[str, Any] = Field(description="a module mapping without its name")
    jitter: JitterConfig = JitterConfig()


@dataclass(frozen=True)
class _Ctx:
    module_model: type[BaseModel]
    error_lines: ErrorLines

    def lines(self, err: ValidationError, root: type[BaseModel], prefix: str) -> list[str]:
        """Validation errors as ``prefix.field: message`` lines (the scenario's wording)."""
        return _lines(self.error_lines, err, root, prefix)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _lines(error_lines: ErrorLines, err: ValidationError, root: type[BaseModel], prefix: str):
    whole = [e for e in err.errors() if not e["loc"]]
    rest = [e for e in err.errors() if e["loc"]]
    out = [f"{prefix}.{line}" for line in error_lines(rest, root)] if rest else []
    for e in whole:
        msg = e["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        out.append(f"{prefix}: {msg}")
    return out


def _pattern_problem(pattern: str, count: int) -> str | None:
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(pattern) if f is not None]
    except ValueError as err:
        return f"not a valid name pattern ({err})"
    if any(f != "i" for f in fields):
        return f"the only placeholder allowed is {{i}} (got fields {fields})"
    if count > 1 and "i" not in fields:
        return f"must contain {{i}} (e.g. 'web-{{i}}') to give {count} modules unique names"
    try:
        pattern.format(i=0)
    except (ValueError, TypeError) as err:
        return f"{{i}} format cannot show an integer ({err})"
    return None


def _expand_group(
    ctx: _Ctx, k: int, group: ModuleGroupConfig
) -> tuple[list[dict[str, Any]], list[str]]:
    """The group's module mappings, or the problems that stop it."""
    where = f"module_groups.{k}"
    problems = []
    bad = _pattern_problem(group.name, group.count)
    if bad:
        problems.append(f"{where}.name: {bad} (got {group.name!r})")
    arche = dict(group.archetype)
    if "name" in arche:
        problems.append(f"{where}.archetype.name: not allowed; the group's name pattern names them")
        arche.pop("name")
    try:
        ctx.module_model.model_validate({"name": "archetype", **arche})
    except ValidationError as err:
        problems += ctx.lines(err, ctx.module_model, f"{where}.archetype")
    j = group.jitter
    if (j.demand_base or j.peak_hour) and not isinstance(arche.get("demand"), dict):
        problems.append(
            f"{where}.jitter: demand_base and peak_hour jitter need archetype.demand "
            "(a synthetic demand shape)"
        )
    if problems:
        return [], problems
    u = np.random.default_rng(group.seed).uniform(-1.0, 1.0, size=(group.count, 3))
    out = []
    for i in range(group.count):
        m: dict[str, Any] = {"name": group.name.format(i=i), **arche}
        if isinstance(arche.get("demand"), dict):
            demand = dict(arche["demand"])
            if j.demand_base:
                demand["base"] = float(demand["base"]) * (1.0 + j.demand_base * u[i, 0])
            if j.peak_hour:
                diurnal = dict(demand.get("diurnal") or {})
                peak = (float(diurnal.get("peak_hour", 14.0)) + j.peak_hour * u[i, 1]) % 24.0
                diurnal["peak_hour"] = peak if peak < 24.0 else 0.0  # -1e-17 % 24 == 24.0
                demand["diurnal"] = diurnal
            m["demand"] = demand
        if j.value:
            m["value"] = float(arche.get("value", 1.0)) * (1.0 + j.value * u[i, 2])
        out.append(m)
    return out, []


def _expand_groups(ctx: _Ctx, raw: Any, explicit: list[Any]) -> tuple[list[Any], list[str]]:
    if not isinstance(raw, list):
        return [], [f"module_groups: must be a list of groups (got {type(raw).__name__})"]

    groups: list[tuple[int, ModuleGroupConfig]] = []
    problems: list[str] = []
    for k, g in enumerate(raw):
        try:
            groups.append((k, ModuleGroupConfig.model_validate(g)))
        except ValidationError as err:
            problems += ctx.lines(err, ModuleGroupConfig, f"module_groups.{k}")
    total = len(explicit) + sum(g.count for _, g in groups)
    if total > MAX_MODULES:
        counts = ", ".join(f"module_groups.{k}.count = {g.count}" for k, g in groups)
        problems.append(
            f"module_groups: {total} modules in all ({len(explicit)} in modules, {counts}); "
            f"at most {MAX_MODULES} allowed"
        )
    if total > MAX_MODULES:
        return [], problems
    modules = list(explicit)
    owner = {m["name"]: "modules" for m in explicit if isinstance(m, dict) and "name" in m}
    for k, g in groups:
        made, bad = _expand_group(ctx, k, g)
        problems += bad
        for m in made:
            if m["name"] in owner:
                problems.append(
                    f"module_groups.{k}.name: pattern {g.name!r} gives {_show(m['name'])}, "
                    f"already a name in {owner[m['name']]}; names must be unique"
                )
                break
            owner[m["name"]] = f"module_groups.{k}"
        modules += made
    return modules, problems


def _pool_units(resources: Any, n_modules: int) -> tuple[Any, list[str]]:
    """``resources`` with every ``units_per_module`` turned into ``units``."""
    if not isinstance(resources, list):
        return resources, []
    out, problems = [], []
    for r, res in enumerate(resources):
        if not isinstance(res, dict) or "units_per_module" not in res:
            out.append(res)
            continue
        res = dict(res)
        per = res.pop("units_per_module")
        where = f"resources.{r}.units_per_module"
        if "units" in res:
            problems.append(f"{where}: give units or units_per_module, not both")
        elif isinstance(per, bool) or not isinstance(per, int | float):
            problems.append(f"{where}: must be a number > 0 and <= {MAX_UNITS_PER_MODULE:g}")
        elif not (math.isfinite(per) and 0.0 < per <= MAX_UNITS_PER_MODULE):
            problems.append(
                f"{where}: must be a number > 0 and <= {MAX_UNITS_PER_MODULE:g} (got {per!r})"
            )
        else:
            res["units"] = max(1, math.floor(per * n_modules + 0.5))
        out.append(res)
    return out, problems


def expand_scenario(
    data: dict[str, Any], module_model: type[BaseModel], error_lines: ErrorLines
) -> tuple[dict[str, Any], list[str]]:
    """A scenario mapping with ``module_groups`` expanded into ``modules`` and
    ``units_per_module`` into ``units`` (a mapping using neither is returned as it is), and
    the problems found, one line each naming its field.

    ``module_model`` validates each archetype (the scenario's module schema) and
    ``error_lines(errors, root)`` words pydantic errors; both come from :mod:`shift_rl.config`,
    which calls this before it validates (passed in, so this module does not import it).
    """
    ctx = _Ctx(module_model, error_lines)
    resources = data.get("resources")
    listed = resources if isinstance(resources, list) else []
    uses_pool = any(isinstance(r, dict) and "units_per_module" in r for r in listed)
    if "module_groups" not in data and not uses_pool:
        return data, []
    data = dict(data)
    problems: list[str] = []
    if "module_groups" in data:
        raw = data.pop("module_groups")
        explicit = data.get("modules", [])
        if not isinstance(explicit, list):
            return data, []  # the schema reports modules itself
        modules, problems = _expand_groups(ctx, raw, explicit)
        if problems:
            return data, problems
        data["modules"] = modules
    n = len(data["modules"]) if isinstance(data.get("modules"), list) else 0
    data["resources"], bad = _pool_units(data.get("resources"), n)
    return data, problems + bad
