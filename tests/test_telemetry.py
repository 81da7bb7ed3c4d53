"""Telemetry validated at the controller's boundary (issue 14, defects 5 and 6)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shift_rl.agents import make_policy
from shift_rl.controller import ShiftController, SimulatedBackend
from shift_rl.controller.validated import ValidatedBackend
from shift_rl.telemetry import (
    METRICS,
    Telemetry,
    TelemetryError,
    validate_history,
    validate_telemetry,
)

NAMES = [name for name, *_ in METRICS]


def _tel(b: int, m: int, r: int, **metrics: np.ndarray) -> Telemetry:
    full = {name: np.full((b, m), 0.5) for name in NAMES}
    full.update(metrics)
    return Telemetry(
        tick=np.zeros(b, dtype=np.int64), hour=np.full(b, 3.0), missing=np.zeros((b, m), bool),
        alloc=np.ones((b, m, r), np.int64), incoming=np.zeros((b, m, r), np.int64),
        capacity=np.full((b, r), m, np.int64), free=np.zeros((b, r), np.int64), **full,
    )  # fmt: skip


def _same(a: Telemetry, b: Telemetry) -> None:
    for f in dataclasses.fields(Telemetry):
        x, y = getattr(a, f.name), getattr(b, f.name)
        np.testing.assert_array_equal(x, y, err_msg=f.name)
        assert np.asarray(x).dtype == np.asarray(y).dtype, f.name


@pytest.mark.parametrize("scenario", ["default", "faults", "multi_resource"])
def test_simulator_telemetry_passes_unchanged(scenario) -> None:
    """The validator is the identity on valid telemetry: env / controller parity holds."""
    be = SimulatedBackend(scenario, seed=3)
    p = be.params
    rng = np.random.default_rng(0)
    gaps = 0
    for _ in range(300):
        tel = be.telemetry()
        out, report = validate_telemetry(tel, p.num_modules, p.num_resources)
        _same(out, tel)
        assert report.count == 0 and report.reasons == {}
        gaps += int(tel.missing.sum())
        s, d = rng.choice(p.num_modules, 2, replace=False)
        be.move(int(s), int(d), int(rng.integers(p.num_resources)), int(rng.integers(1, 4)))
        be.advance()
    assert scenario != "faults" or gaps > 0, "the faults scenario has telemetry gaps"
    rows, n = validate_history(be.history(), p.num_modules)
    assert n == 0 and rows.shape == (p.history_ticks, p.num_modules)


_value = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-0.5, 1.5),
    st.sampled_from([0.0, 1.0, -0.0, 1e-300, 1.0000001, -1e-12]),
)


@st.composite
def _telemetry(draw):
    b, m, r = draw(st.integers(1, 2)), draw(st.integers(2, 5)), draw(st.integers(1, 2))
    values = st.lists(_value, min_size=b * m, max_size=b * m)
    metrics = {n: np.array(draw(values)).reshape(b, m) for n in NAMES}
    tel = _tel(b, m, r, **metrics)
    tel.missing = np.array(draw(st.lists(st.booleans(), min_size=b * m, max_size=b * m)))
    tel.missing = tel.missing.reshape(b, m)
    return tel, b, m, r


@settings(max_examples=300)
@given(_telemetry())
def test_after_validation_every_live_metric_is_finite_and_in_range(case) -> None:
    tel, b, m, r = case
    before = {f.name: np.array(getattr(tel, f.name), copy=True) for f in dataclasses.fields(tel)}
    out, report = validate_telemetry(tel, m, r, num_envs=b)
    for name, arr in before.items():  # pure: the input is untouched
        np.testing.assert_array_equal(getattr(tel, name), arr)
    live = ~out.missing
    assert (out.missing == (tel.missing | report.marked)).all()
    assert not (report.marked & tel.missing).any()
    expected_bad = 0
    for name, low, high, inf_ok in METRICS:
        a, raw = out.__dict__[name], before[name]
        ok_in = np.isfinite(raw) | (inf_ok & (raw == np.inf))
        ok_in &= ~(raw < low) & ~(raw > high)
        expected_bad += int((~ok_in & ~tel.missing).sum())
        v = a[live]
        assert (np.isfinite(v) | (inf_ok & (v == np.inf))).all(), name
        assert ((v >= low) & (v <= high)).all(), name
        # already missing: unusable values are NaN, usable ones kept
        gone = tel.missing
        assert np.isnan(a[gone & ~ok_in]).all()
        np.testing.assert_array_equal(a[gone & ok_in], raw[gone & ok_in])
        # live modules keep their numbers; modules marked by validation are all NaN
        np.testing.assert_array_equal(v, raw[live])
        assert np.isnan(a[report.marked]).all()
    assert sum(report.reasons.values()) == expected_bad
    assert report.count == int(report.marked.sum())


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("demand", np.zeros((1, 3)), r"'demand' has shape \(1, 3\), expected \(1, 4\)"),
        ("attainment", np.zeros(4), r"'attainment' has shape \(4,\)"),
        ("latency", np.array([["a"] * 4]), "expected numbers"),
        ("utilization", None, "has shape"),
        ("alloc", np.full((1, 4, 2), -1, np.int64), "'alloc': expected non-negative integers"),
        ("alloc", np.full((1, 4, 2), 1.5), "non-negative integers"),
        ("free", np.full((1, 2), np.nan), "non-negative integers"),
        ("incoming", np.zeros((1, 4, 2), bool), "got booleans"),
        ("capacity", np.zeros((1, 3), np.int64), "has shape"),
        ("hour", np.array([np.inf]), r"hours in \[0, 24\]"),
        ("tick", np.array([-1]), "'tick'"),
        ("missing", np.full((1, 4), 2), "expected booleans"),
    ],
)
def test_unusable_telemetry_is_refused_with_one_clear_error(field, value, problem) -> None:
    tel = _tel(1, 4, 2)
    setattr(tel, field, value)
    with pytest.raises(TelemetryError, match=problem):
        validate_telemetry(tel, 4, 2)
    with pytest.raises(TelemetryError, match="must be a Telemetry"):
        validate_telemetry({"demand": 1}, 4, 2)  # type: ignore[arg-type]


def test_integral_float_units_are_accepted_as_integers() -> None:
    tel = _tel(1, 3, 1)
    tel.alloc = np.full((1, 3, 1), 4.0)
    out, _ = validate_telemetry(tel, 3, 1)
    assert out.alloc.dtype == np.int64 and (out.alloc == 4).all()


@settings(max_examples=200)
@given(
    field=st.sampled_from([f.name for f in dataclasses.fields(Telemetry)]),
    shape=st.lists(st.integers(0, 5), max_size=3).map(tuple),
    dtype=st.sampled_from([np.float64, np.int64, np.bool_, np.float32, object]),
)
def test_any_wrong_field_is_a_telemetry_error_never_another_exception(field, shape,
                                                                      dtype) -> None:  # fmt: skip
    tel = _tel(1, 4, 2)
    setattr(tel, field, np.zeros(shape, dtype=dtype))
    try:
        out, _ = validate_telemetry(tel, 4, 2)
    except TelemetryError:
        return
    assert np.isfinite(out.alloc).all()


def test_history_values_that_are_unusable_become_missing() -> None:
    rows, n = validate_history([[1.0, -2.0], [np.inf, np.nan]], 2)
    assert n == 2 and np.isnan(rows[0, 1]) and np.isnan(rows[1]).all() and rows[0, 0] == 1.0
    assert validate_history(np.zeros((0, 2)), 2)[0].shape == (0, 2)
    with pytest.raises(TelemetryError, match="expected"):
        validate_history(np.zeros((5, 3)), 2)


# -- the loop, with the validated backend ---------------------------------------------------


class Noisy(SimulatedBackend):
    """A backend that reports one NaN attainment without the flag, and a negative demand."""

    def telemetry(self):
        tel = dataclasses.replace(super().telemetry())  # the simulator's is live: not ours
        t = int(self.sim.t[0])
        if t == 10:
            tel.attainment = tel.attainment.copy()
            tel.attainment[0, 2] = np.nan
        if t == 20:
            tel.demand = tel.demand.copy()
            tel.demand[0, 1] = -5.0
        return tel


def _reputation(ctl: ShiftController) -> np.ndarray:
    return getattr(ctl, "core", ctl).reputation.score  # the controller's, or its core's


def test_one_bad_metric_no_longer_poisons_reputation() -> None:
    be = ValidatedBackend(Noisy("default", seed=4))
    ctl = ShiftController(make_policy("potential", be.params), be, interval=0)
    records = ctl.run(120)
    assert np.isfinite(_reputation(ctl)).all() and np.isfinite(ctl.obs).all()
    # counted once per interval: the controller reads a tick's telemetry after the advance
    # and again before deciding, and the second read is the first one served again
    assert be.rejected == {"attainment not finite": 1, "demand negative": 1}
    assert all(r.source == "policy" for r in records)
    assert any(r.shifts for r in records)


class Misshapen(SimulatedBackend):
    def telemetry(self):
        tel = super().telemetry()
        if 10 <= int(self.sim.t[0]) < 13:
            return dataclasses.replace(tel, demand=tel.demand[:, :3])
        return tel


def test_telemetry_of_the_wrong_shape_holds_instead_of_crashing() -> None:
    be = ValidatedBackend(Misshapen("default", seed=2))
    records = ShiftController(make_policy("potential", be.params), be, interval=0).run(60)
    assert len(records) == 60
    held = [r.held for r in records if r.held and "backend error" in r.held]
    assert held and all("telemetry field 'demand' has shape (1, 3)" in h for h in held)
    assert be.rejected["tick refused"] >= 1
    assert any(r.shifts for r in records[-20:]), "shifting resumes"
