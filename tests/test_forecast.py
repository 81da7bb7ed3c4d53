"""Forecasters: reference agreement (statsmodels, direct ridge), the protocol's guarantees
(finite, non-negative, reset, batching, missing data), spreads, and the accuracy report."""

from __future__ import annotations

import json
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shift_rl.forecast import (
    FORECASTERS,
    ARForecaster,
    EMAForecaster,
    EnsembleForecaster,
    HoltForecaster,
    HoltWintersForecaster,
    LastValueForecaster,
    SeasonalNaiveForecaster,
    make_forecaster,
    season_ticks_for,
)
from shift_rl.forecast.ar import time_features
from shift_rl.forecast.base import SPREAD_FACTOR
from shift_rl.traces import load_trace

from .conftest import ROOT

DATA = Path(__file__).resolve().parent / "data"
GOOGLE_SLICE = DATA / "google_2011_jobs_cpu_3days.csv.gz"  # 864 x 4, 5 min per row
GOOGLE_SEASON = 288  # one day of 5-minute rows
NAMES = ["last", "seasonal_naive", "ema", "holt", "holt_winters", "ar", "ensemble"]

# Small settings so a few dozen ticks exercise every code path (seasons, fits, rebases).
SMALL: dict[str, dict] = {
    "last": {},
    "seasonal_naive": {"season_ticks": 5},
    "ema": {"alpha": 0.4},
    "holt": {"alpha": 0.5, "beta": 0.3, "phi": 0.95},
    "holt_winters": {"season_ticks": 5, "smooth": 1, "gamma": 0.4},
    "ar": {
        "season_ticks": 5,
        "lags": 2,
        "harmonics": 1,
        "window": 12,
        "refit_every": 3,
        "min_rows": 6,
    },
    "ensemble": {"season_ticks": 5},
}


def small(name: str, num_envs: int, num_modules: int):
    return make_forecaster(name, num_envs, num_modules, **SMALL[name])


def google_series() -> np.ndarray:
    return np.array(load_trace(GOOGLE_SLICE).values)


def outputs(f, horizons=(1, 2, 3, 4, 5, 7)) -> np.ndarray:
    return np.stack([np.stack(f.predict(h)) for h in horizons])


# --- registry and factory ------------------------------------------------------------------


def test_registry_has_the_issue_names() -> None:
    assert list(FORECASTERS) == NAMES
    assert FORECASTERS["last"] is LastValueForecaster
    assert FORECASTERS["ema"] is EMAForecaster


def test_make_forecaster_errors_and_season_from_tick_seconds() -> None:
    with pytest.raises(ValueError, match="unknown forecaster"):
        make_forecaster("prophet", 1, 1)
    with pytest.raises(ValueError, match="bad parameters"):
        make_forecaster("ema", 1, 1, beta=0.3)
    with pytest.raises(ValueError, match="alpha"):
        make_forecaster("ema", 1, 1, alpha=0.0)
    assert make_forecaster("holt_winters", 1, 1, tick_seconds=60).season_ticks == 1440
    assert make_forecaster("ar", 1, 1, tick_seconds=300).season_ticks == 288
    assert make_forecaster("ar", 1, 1, tick_seconds=300, season_ticks=7).season_ticks == 7
    assert make_forecaster("ensemble", 1, 1, tick_seconds=30).members[1].season_ticks == 2880
    make_forecaster("ema", 1, 1, tick_seconds=60)  # non-seasonal: tick_seconds is ignored
    assert season_ticks_for(86_400 * 10) == 2
    with pytest.raises(ValueError):
        season_ticks_for(0)


# --- reference agreement -------------------------------------------------------------------


@pytest.mark.parametrize("phi", [1.0, 0.95])
def test_holt_winters_matches_statsmodels(phi: float) -> None:
    """One-step forecasts equal statsmodels' with the same fixed parameters and initial state.

    Series: three days of four Google 2011 jobs' CPU (5-minute rows, season 288). Our model
    initializes from day 1 (level = mean, trend = 0, season = deviations from the mean); that
    state is handed to statsmodels as ``initialization_method="known"`` and both run days 2-3.
    Tolerance 1e-9 relative to the series' size: the recursions are the same, only the order of
    floating-point operations differs (statsmodels precomputes alpha*y, gamma*y), so the
    observed differences are ~1e-14; nothing is clipped (the forecasts stay positive).
    """
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    y = google_series()
    S = GOOGLE_SEASON
    a, b, g = 0.3, 0.05, 0.2
    f = HoltWintersForecaster(
        1, y.shape[1], alpha=a, beta=b, gamma=g, phi=phi, season_ticks=S, smooth=0
    )
    ours = []
    for t in range(len(y)):
        f.update(y[t][None])
        if t == S - 1:
            assert f.ready.all()
            init = (f.level[0].copy(), f.trend[0].copy(), f.seas[0].copy())
        if t >= S - 1:
            ours.append(f.predict(1)[0][0])
    ours_a = np.array(ours)  # ours_a[i] forecasts y[S + i]
    tail = [f.predict(h)[0][0] for h in (1, 2, 3)]
    for j in range(y.shape[1]):
        model = ExponentialSmoothing(
            y[S:, j],
            trend="add",
            damped_trend=phi < 1.0,
            seasonal="add",
            seasonal_periods=S,
            initialization_method="known",
            initial_level=init[0][j],
            initial_trend=init[1][j],
            initial_seasonal=init[2][j],
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kw = {"damping_trend": phi} if phi < 1.0 else {}
            res = model.fit(
                smoothing_level=a, smoothing_trend=b, smoothing_seasonal=g, optimized=False, **kw
            )
        fitted = np.asarray(res.fittedvalues)
        assert fitted.min() > 0
        tol = 1e-9 * np.abs(y[:, j]).max()
        np.testing.assert_allclose(ours_a[: len(fitted), j], fitted, rtol=0, atol=tol)
        ahead = np.asarray(res.forecast(3))
        np.testing.assert_allclose([tail[h][j] for h in range(3)], ahead, rtol=0, atol=tol)


def direct_ridge(y: np.ndarray, end: int, p: int, K: int, W: int, lam: float, S: int):
    """Scaled ridge solve on targets end-W+1..end, straight from the docstring's formulas."""
    tf = time_features(S, K)
    rows, target = [], []
    for j in range(max(end - W + 1, 0), end + 1):
        lags = y[j - p : j][::-1] if j >= p else np.full(p, np.nan)
        if np.isnan(y[j]) or np.isnan(lags).any():
            continue
        rows.append(np.concatenate([[1.0], lags, tf[j % S]]))
        target.append(y[j] - lags[0])
    X = np.array(rows)
    s = X[:, 1].mean()  # mean level (first lag)
    X[:, 1 : 1 + p] /= s
    z = np.array(target) / s
    penalty = np.eye(X.shape[1])
    penalty[0, 0] = 0.0
    return np.linalg.solve(X.T @ X + lam * len(z) * penalty, X.T @ z), s, len(z)


@pytest.mark.parametrize("end", [239, 299, 479])
def test_ar_coefficients_match_direct_ridge(end: int) -> None:
    """After a refit, ``coef`` equals ``numpy.linalg.solve`` of the ridge normal equations.

    The window slides (add/subtract) and is rebased every ``window`` ticks; missing values drop
    rows. Ticks 239 and 479 fall just before a rebase, 299 right after one, so both the
    running sums and the exact recomputation are checked. Tolerance 1e-9: float64 sums of
    at most 120 rows, solved by Cholesky vs LU.
    """
    y = google_series()
    y[100, 1] = np.nan
    y[200:204, 2] = np.nan
    y[430, 0] = np.nan
    p, K, W, E, lam = 4, 2, 120, 60, 1e-2
    f = ARForecaster(
        1, y.shape[1], lags=p, harmonics=K, window=W, refit_every=E, ridge=lam,
        season_ticks=GOOGLE_SEASON,
    )  # fmt: skip
    for t in range(end + 1):
        f.update(y[t][None])
    assert (end + 1) % E == 0  # a refit happened at the last update
    for j in range(y.shape[1]):
        beta, s, n = direct_ridge(y[:, j], end, p, K, W, lam, GOOGLE_SEASON)
        assert f.n[0, j] == n
        assert f.scale[0, j] == pytest.approx(s, rel=1e-12)
        np.testing.assert_allclose(f.coef[0, j], beta, rtol=1e-9, atol=1e-9)
        # The one-step forecast is that regression applied to the latest lags.
        lags = y[end - p + 1 : end + 1, j][::-1]
        x = np.concatenate([[1.0], lags / s, time_features(GOOGLE_SEASON, K)[(end + 1) % 288]])
        if not np.isnan(lags).any():
            expect = max(lags[0] + s * float(x @ beta), 0.0)
            assert f.predict(1)[0][0, j] == pytest.approx(expect, rel=1e-9)


def test_ar_falls_back_to_last_value_before_first_fit() -> None:
    f = ARForecaster(1, 1, lags=2, harmonics=1, window=50, season_ticks=10)
    assert f.min_rows == 3 * 5
    for t in range(f.min_rows + 1):  # lags 2 -> the first row with all lags is tick 2
        f.update(np.array([[float(t % 4)]]))
        assert f.fitted[0, 0] == (t - 1 >= f.min_rows)
        if not f.fitted[0, 0]:
            assert f.predict(2)[0][0, 0] == float(t % 4)


# --- the protocol's guarantees -------------------------------------------------------------

demand_values = st.one_of(
    st.just(0.0),
    st.just(math.nan),
    st.floats(0.0, 50.0),
    st.floats(1e5, 1e9),  # spikes
    st.just(math.inf),
    st.floats(-5.0, 0.0),  # read as 0
)


@st.composite
def demand_series(draw, num_envs: int = 2, num_modules: int = 3):
    ticks = draw(st.integers(1, 40))
    flat = draw(
        st.lists(demand_values, min_size=ticks * num_envs * num_modules,
                 max_size=ticks * num_envs * num_modules)
    )  # fmt: skip
    d = np.array(flat).reshape(ticks, num_envs, num_modules)
    gaps = draw(st.lists(st.integers(0, ticks - 1), max_size=5))
    for t in gaps:  # whole-row gaps: that env does not tick
        d[t, t % num_envs] = np.nan
    return d


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=40)
@given(data=demand_series())
def test_forecasts_finite_and_non_negative(name: str, data: np.ndarray) -> None:
    f = small(name, 2, 3)
    for row in data:
        f.update(row)
        for h in (1, 2, 3, 4, 6, 11):
            mean, spread = f.predict(h)
            assert mean.shape == spread.shape == (2, 3)
            assert np.isfinite(mean).all() and (mean >= 0).all()
            assert np.isfinite(spread).all() and (spread >= 0).all()


def random_demand(rng: np.random.Generator, ticks: int, envs: int, modules: int) -> np.ndarray:
    base = rng.uniform(5, 100, size=(1, envs, modules))
    t = np.arange(ticks)[:, None, None]
    d = rng.poisson(base * (1.3 + np.sin(2 * np.pi * t / 5))).astype(np.float64)
    d[rng.random(d.shape) < 0.1] = np.nan
    d[rng.random(d.shape) < 0.05] = 0.0
    d[ticks // 3, 0] = np.nan  # env 0 skips a tick
    return d


@pytest.mark.parametrize("name", NAMES)
def test_batch_equals_separate_forecasters(name: str) -> None:
    rng = np.random.default_rng(1)
    data = random_demand(rng, 60, 3, 4)
    batch = small(name, 3, 4)
    singles = [small(name, 1, 4) for _ in range(3)]
    for row in data:
        batch.update(row)
        for b, f in enumerate(singles):
            f.update(row[b : b + 1])
        got = outputs(batch)
        for b, f in enumerate(singles):
            np.testing.assert_allclose(got[:, :, b : b + 1], outputs(f), rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_reset_clears_only_those_rows(name: str) -> None:
    rng = np.random.default_rng(2)
    data = random_demand(rng, 70, 3, 2)
    a, ref = small(name, 3, 2), small(name, 3, 2)
    for row in data[:40]:
        a.update(row)
        ref.update(row)
    a.reset(np.array([1]))
    fresh = small(name, 1, 2)
    mean, spread = a.predict(3)
    assert (mean[1] == 0).all() and (spread[1] == 0).all()
    for row in data[40:]:
        a.update(row)
        ref.update(row)
        fresh.update(row[1:2])
        got, want = outputs(a), outputs(ref)
        np.testing.assert_array_equal(got[:, :, [0, 2]], want[:, :, [0, 2]])
        np.testing.assert_allclose(got[:, :, 1:2], outputs(fresh), rtol=1e-12, atol=0)
    a.reset()
    assert (outputs(a) == 0).all()


@pytest.mark.parametrize("name", NAMES)
def test_all_nan_row_is_no_tick_and_active_overrides(name: str) -> None:
    rng = np.random.default_rng(3)
    data = random_demand(rng, 30, 2, 3)
    f, g = small(name, 2, 3), small(name, 2, 3)
    for row in data:
        f.update(row)
        g.update(row)
        g.update(np.full((2, 3), np.nan))  # the plane's "not this env" pattern
        np.testing.assert_array_equal(outputs(f), outputs(g))
    tick = f.tick.copy()
    f.update(np.full((2, 3), np.nan), active=np.array([True, False]))
    assert list(f.tick) == [tick[0] + 1, tick[1]]


def test_missing_value_keeps_level_models() -> None:
    f = EMAForecaster(1, 2, alpha=0.5)
    f.update(np.array([[10.0, 4.0]]))
    f.update(np.array([[20.0, np.nan]]))
    mean, _ = f.predict(1)
    assert mean.tolist() == [[15.0, 4.0]]
    h = HoltForecaster(1, 1, alpha=0.5, beta=0.5, phi=1.0)
    for v in (0.0, 2.0, 4.0, 6.0):
        h.update(np.array([[v]]))
    before = [h.predict(k)[0][0, 0] for k in (2, 3)]
    h.update(np.array([[np.nan]]))  # a single module's all-NaN row: no tick at all
    assert h.predict(2)[0][0, 0] == before[0]
    # Missing telemetry on a tick that happened: the state is propagated one tick, so the old
    # 2-step forecast is now the 1-step one.
    h.update(np.array([[np.nan]]), active=np.array([True]))
    assert h.predict(1)[0][0, 0] == pytest.approx(before[0])
    assert h.predict(2)[0][0, 0] == pytest.approx(before[1])


def test_predict_validates_and_starts_at_zero() -> None:
    for name in NAMES:
        f = small(name, 2, 2)
        mean, spread = f.predict(3)
        assert (mean == 0).all() and (spread == 0).all()
        with pytest.raises(ValueError):
            f.predict(0)
        with pytest.raises(ValueError, match="shape"):
            f.update(np.zeros((3, 2)))


# --- what each model computes ----------------------------------------------------------------


def test_spread_tracks_each_horizon_error() -> None:
    """On a ramp of slope 2 the naive h-step error is exactly 2h; spread = 1.96*1.25*2h."""
    f = LastValueForecaster(1, 1, horizons=4)
    for t in range(30):
        f.update(np.array([[2.0 * t]]))
    for h in (1, 2, 3, 4):
        mean, spread = f.predict(h)
        assert mean[0, 0] == 58.0
        assert spread[0, 0] == pytest.approx(SPREAD_FACTOR * 2 * h)
    # Past the tracked horizons: the largest tracked error grown like sqrt(h / H).
    assert f.predict(16)[1][0, 0] == pytest.approx(SPREAD_FACTOR * 8 * 2.0)


def test_seasonal_naive_repeats_the_season() -> None:
    S = 7
    pattern = np.arange(1.0, S + 1) ** 2
    f = SeasonalNaiveForecaster(1, 1, season_ticks=S)
    f.update(np.array([[3.0]]))  # before a season is seen: the last value
    assert f.predict(2)[0][0, 0] == 3.0
    f.reset()
    for t in range(2 * S + 3):
        f.update(np.array([[pattern[t % S]]]))
    t = 2 * S + 2
    for h in (1, 2, 3, 4, 5, 8, 20):
        assert f.predict(h)[0][0, 0] == pattern[(t + h) % S]


def test_holt_follows_a_line_and_holt_winters_a_season() -> None:
    h = HoltForecaster(1, 1, alpha=0.8, beta=0.5, phi=1.0)
    for t in range(200):
        h.update(np.array([[5.0 + 3.0 * t]]))
    assert h.predict(1)[0][0, 0] == pytest.approx(5.0 + 3.0 * 200, rel=1e-6)
    assert h.predict(10)[0][0, 0] == pytest.approx(5.0 + 3.0 * 209, rel=1e-6)
    S = 12
    season = 10 * np.sin(2 * np.pi * np.arange(S) / S)
    hw = HoltWintersForecaster(1, 1, season_ticks=S, smooth=0, phi=1.0)
    for t in range(20 * S):
        hw.update(np.array([[50.0 + 0.1 * t + season[t % S]]]))
    t = 20 * S - 1
    for k in (1, 3, 4, 7):
        want = 50.0 + 0.1 * (t + k) + season[(t + k) % S]
        assert hw.predict(k)[0][0, 0] == pytest.approx(want, abs=0.05)


def test_ensemble_prefers_the_member_that_fits() -> None:
    S = 6
    pattern = np.array([5.0, 40.0, 10.0, 80.0, 20.0, 60.0])
    weighted = EnsembleForecaster(1, 1, season_ticks=S)
    picker = EnsembleForecaster(1, 1, season_ticks=S, select=1)
    for t in range(12 * S):
        for f in (weighted, picker):
            f.update(np.array([[pattern[t % S]]]))
    t = 12 * S - 1
    for h in (1, 2, 3):
        want = pattern[(t + h) % S]
        assert picker.predict(h)[0][0, 0] == want  # seasonal naive is exact
        assert weighted.predict(h)[0][0, 0] == pytest.approx(want, rel=1e-3)
    with pytest.raises(ValueError, match="members"):
        EnsembleForecaster(1, 1, members=("ensemble",))


def test_plane_runs_every_forecaster() -> None:
    from shift_rl.config import load_scenario
    from shift_rl.env import ResourceShiftEnv

    cfg = load_scenario(ROOT / "configs" / "scenarios" / "default.yaml")
    for name in NAMES:
        fc = cfg.forecast.model_copy(update={"model": name, "params": {}})
        env = ResourceShiftEnv(cfg.model_copy(update={"forecast": fc}))
        obs, _ = env.reset(seed=0)
        env.action_space.seed(0)
        for _ in range(5):
            obs, *_ = env.step(env.action_space.sample())
            assert env.observation_space.contains(obs)


# --- the report ---------------------------------------------------------------------------


def test_forecast_report_json(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import forecast_report
    finally:
        sys.path.pop(0)
    out = tmp_path / "fc.json"
    code = forecast_report.main(
        ["--traces", str(ROOT / "configs" / "traces"), "--horizon", "2", "--series", "3",
         "--json", str(out)]
    )  # fmt: skip
    res = json.loads(out.read_text())
    assert list(res) == ["azure_functions_2019_top6.csv.gz"]
    by_model = res["azure_functions_2019_top6.csv.gz"]
    assert list(by_model) == NAMES
    for per_h in by_model.values():
        assert list(per_h) == ["1", "2"]
        for m in per_h.values():
            assert set(m) == {"mape", "smape", "mase"} and all(np.isfinite(list(m.values())))
    best = min(by_model, key=lambda k: by_model[k]["1"]["mase"])
    assert code == (0 if by_model[best]["1"]["mase"] < by_model["seasonal_naive"]["1"]["mase"]
                    and min(v["2"]["mase"] for v in by_model.values())
                    < by_model["seasonal_naive"]["2"]["mase"] else 1)  # fmt: skip


def test_forecast_report_explains_its_options_and_the_seasonal_tie(tmp_path, capsys) -> None:
    from scripts import forecast_report

    with pytest.raises(SystemExit):
        forecast_report.main(["--help"])
    helptext = " ".join(capsys.readouterr().out.split())
    assert "--traces TRACES folder of trace files" in helptext
    assert "share of each trace's rows (oldest first) that warms the models up" in helptext
    code = forecast_report.main(["--traces", str(ROOT / "configs" / "traces"), "--series", "1",
                                 "--models", "last,seasonal_naive,ema"])  # fmt: skip
    out = capsys.readouterr().out
    assert code in (0, 1)
    assert "seasonal_naive falls back to the last value and its row equals `last`" in out
    assert forecast_report.seasonal_note(2880, 2016, 1440, 3) is None
    assert "equals `last` on the first" in forecast_report.seasonal_note(2000, 1000, 1440, 3)
    notes = tmp_path / "notes.json"
    notes.write_text("[1]")
    with pytest.raises(SystemExit):  # refused before any work, the file untouched
        forecast_report.main(["--traces", str(ROOT / "configs" / "traces"), "--json", str(notes)])
    assert "refusing to overwrite it" in capsys.readouterr().err
    assert notes.read_text() == "[1]"
