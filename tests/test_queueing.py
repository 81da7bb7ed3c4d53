"""The M/M/c performance model against textbook values and its monotonicity."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shift_rl.sim.queueing import RHO_MAX, erlang_c, tick_metrics


def _erlang_c_textbook(c: int, a: float) -> float:
    top = a**c / math.factorial(c) * c / (c - a)
    return top / (sum(a**k / math.factorial(k) for k in range(c)) + top)


@pytest.mark.parametrize(("c", "a"), [(1, 0.5), (2, 1.0), (5, 3.5), (10, 8.0), (20, 15.0)])
def test_erlang_c_matches_closed_form(c: int, a: float) -> None:
    assert erlang_c(float(c), a) == pytest.approx(_erlang_c_textbook(c, a), rel=1e-10)


def test_mm1_response_time_is_exponential() -> None:
    # M/M/1: R ~ Exp(mu - lam), so P(R <= t) = 1 - exp(-(mu - lam) t)
    mu, lam_per_s, slo, tick = 10.0, 6.0, 0.3, 60.0
    rho, lat, err, att = tick_metrics(lam_per_s * tick, 1.0, mu, slo, tick)
    assert rho == pytest.approx(0.6)
    assert lat == pytest.approx(1.0 / (mu - lam_per_s))
    assert err == 0.0
    assert att == pytest.approx(1.0 - math.exp(-(mu - lam_per_s) * slo))


def test_overload_sheds_load() -> None:
    mu, tick = 10.0, 60.0
    lam = 3 * 2 * mu * tick  # three times the capacity of 2 servers
    rho, _, err, att = tick_metrics(lam, 2.0, mu, 0.5, tick)
    assert rho == pytest.approx(RHO_MAX)
    assert err == pytest.approx(1 - RHO_MAX / 3)
    assert att < RHO_MAX / 3


def test_no_servers_serves_nothing_and_no_demand_is_perfect() -> None:
    assert tick_metrics(100.0, 0.0, 10.0, 0.5, 60.0) == (1.0, math.inf, 1.0, 0.0)
    assert tick_metrics(0.0, 3.0, 10.0, 0.5, 60.0)[3] == 1.0


@given(
    lam=st.floats(1.0, 1e5),
    mu=st.floats(0.5, 200.0),
    slo_x=st.floats(1.5, 20.0),
    c=st.floats(0.5, 60.0),
)
def test_attainment_bounded_and_increasing_in_servers(lam, mu, slo_x, c) -> None:
    slo = slo_x / mu
    atts = [tick_metrics(lam, c + d, mu, slo, 60.0)[3] for d in np.linspace(0.0, 5.0, 11)]
    assert all(0.0 <= x <= 1.0 for x in atts)
    assert all(b >= a - 1e-12 for a, b in itertools.pairwise(atts))
