"""Baselines: the oracle bound is exact (against the max-plus DP it replaced) and never beaten;
HPA and Potential by hand."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shift_rl.agents import POLICIES, make_policy, oracle_goal, resolve_policy
from shift_rl.agents.autoscalers import HPAPolicy
from shift_rl.agents.oracle import WAIT_TOL, _best_one_kind, best_goal
from shift_rl.agents.potential import PotentialPolicy
from shift_rl.config import load_scenario
from shift_rl.env import ResourceShiftEnv
from shift_rl.evaluate import run_episode
from shift_rl.observation import ObservedState
from shift_rl.scenario import ScenarioParams
from shift_rl.sim.queueing import attainment, attainment_curve, tick_metrics


def _state(params: ScenarioParams, **kw: object) -> ObservedState:
    m, r = params.num_modules, params.num_resources
    base = {
        "alloc": params.initial_alloc.copy(),
        "incoming": np.zeros((m, r), dtype=np.int64),
        "demand_servers": np.ones(m),
        "forecast_servers": np.ones(m),
        "reported_servers": np.ones(m),
        "utilization": np.full(m, 0.7),
        "latency_ratio": np.full(m, 0.2),
        "error_rate": np.zeros(m),
        "attainment": np.ones(m),
        "forecast_spread": np.zeros(m),
        "confidence": np.ones(m),
        "reputation": np.ones(m),
        "locked": np.zeros(m, dtype=bool),
        "pending": np.zeros(m, dtype=bool),
        "missing": np.zeros(m, dtype=bool),
        "hour": 12.0,
        "free": np.zeros(r, dtype=np.int64),
    }
    base.update(kw)
    return ObservedState(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("load", [(0.2, 2.5), (1e-4, 0.05)], ids=["loaded", "light"])
@pytest.mark.parametrize("seed", range(6))
def test_oracle_dp_matches_brute_force(seed: int, load: tuple[float, float]) -> None:
    """Exact on loaded planes and on lightly loaded ones, where every module saturates at a
    unit or two (the bound used to be -inf there)."""
    rng = np.random.default_rng(seed)
    m, cap = 3, int(rng.integers(3, 9))
    mu = rng.uniform(5, 50, m)
    slo = rng.uniform(2, 10, m) / mu
    lam = rng.uniform(*load, m) * mu * 60 * cap / m
    value = rng.uniform(0.5, 3, m)
    value /= value.sum()
    ups = np.ones((m, 1))
    brute = max(
        sum(value[j] * tick_metrics(lam[j], float(u[j]), mu[j], slo[j], 60.0)[3] for j in range(m))
        for u in itertools.product(range(cap + 1), repeat=m)
        if sum(u) <= cap
    )
    got = best_goal(lam, np.ones(m), np.array([cap]), value, mu, slo, ups, 60.0)
    assert got == pytest.approx(brute, abs=1e-12)


def _max_plus_dp(curves: list[np.ndarray], cap: int) -> float:
    """Reference: ``max sum_m c_m[u_m]`` subject to ``sum u_m <= cap`` by the max-plus DP over
    modules (what the oracle bound computed before, O(M cap^2))."""
    best = np.zeros(cap + 1)  # at most u units
    for c in curves:
        best = np.array(
            [max(best[u - a] + c[a] for a in range(min(u, len(c) - 1) + 1)) for u in range(cap + 1)]
        )
    return float(best[cap])


def _flat(curves: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    start = np.cumsum([0] + [len(c) for c in curves]).astype(np.int64)
    return np.concatenate(curves).astype(np.float64), start


# integers make ties (equal slopes, flat stretches) common; any shape, even decreasing
curve_values = st.one_of(st.integers(0, 4).map(float), st.floats(0.0, 1.0))
curve_lists = st.lists(st.lists(curve_values, min_size=1, max_size=9), min_size=1, max_size=5)


@settings(max_examples=400)
@given(curve_lists, st.integers(0, 25))
def test_oracle_kernel_is_exact_for_any_curves(curves: list[list[float]], cap: int) -> None:
    """Relaxation plus exact step = the max-plus DP, whatever the curves (non-concave, tied,
    non-monotone): the exact step runs whenever the greedy fill ends inside a segment."""
    cs = [np.array(c) for c in curves]
    assert _best_one_kind(*_flat(cs), cap) == pytest.approx(_max_plus_dp(cs, cap), abs=1e-12)


@settings(max_examples=200)
@given(st.lists(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=9), min_size=1, max_size=6),
       st.integers(0, 40))  # fmt: skip
def test_oracle_kernel_on_concave_curves_is_the_greedy_by_marginal_gain(
    steps: list[list[float]], cap: int
) -> None:
    """Concave curves: the relaxation is exact, so the bound is what taking the best marginal
    gain unit by unit gives (an independent reference)."""
    gains = [np.sort(np.array(d))[::-1] for d in steps]  # decreasing gains: concave
    cs = [np.concatenate([[0.0], np.cumsum(d)]) for d in gains]
    greedy = float(np.sort(np.concatenate(gains))[::-1][:cap].sum())
    got = _best_one_kind(*_flat(cs), cap)
    assert got == pytest.approx(greedy, abs=1e-12)
    assert got == pytest.approx(_max_plus_dp(cs, cap), abs=1e-12)


@st.composite
def ticks(draw: st.DrawFn) -> tuple:
    m, kinds = draw(st.integers(1, 4)), draw(st.integers(1, 2))

    def floats(n: int, lo: float, hi: float) -> np.ndarray:
        return np.array(draw(st.lists(st.floats(lo, hi), min_size=n, max_size=n)))

    mu = floats(m, 2.0, 60.0)
    slo = floats(m, 1.0, 8.0) / mu
    ups = np.array(draw(st.lists(st.integers(1, 3), min_size=m * kinds, max_size=m * kinds)))
    cap = np.array(draw(st.lists(st.integers(0, 14), min_size=kinds, max_size=kinds)))
    load = 10.0 ** floats(m, -4.0, 0.6)  # servers' worth of demand per unit: light to overload
    lam = load * mu * 60.0 * (cap.max() + 1) / m
    lam[floats(m, 0.0, 1.0) < 0.1] = 0.0  # some modules without demand
    value = floats(m, 0.2, 3.0)
    return (lam, floats(m, 0.5, 1.0), cap, value / value.sum(), mu, slo,
            ups.reshape(m, kinds).astype(np.float64), 60.0)  # fmt: skip


@settings(max_examples=150)
@given(ticks())
def test_oracle_bound_equals_the_max_plus_dp(tick: tuple) -> None:
    """On random ticks (1-4 modules, 1-2 kinds, fractional servers, light load to overload),
    the bound is never below the DP over the full curves and above it by at most WAIT_TOL
    (where the curves were cut off as saturated)."""
    lam, slow, cap, value, mu, slo, ups, tick_s = tick
    ref = min(
        _max_plus_dp(
            [
                value[j] * np.array([tick_metrics(lam[j], u / ups[j, r], mu[j] * slow[j], slo[j],
                                                  tick_s)[3] for u in range(cap[r] + 1)])
                for j in range(len(lam))
            ],
            int(cap[r]),
        )
        for r in range(ups.shape[1])
    )  # fmt: skip
    got = best_goal(*tick)
    assert ref - 1e-12 <= got <= ref + WAIT_TOL + 1e-12


@pytest.mark.parametrize("lam", [0.0, 50.0, 3_000.0, 40_000.0, 2e6])
@pytest.mark.parametrize("ups", [1.0, 2.5])
def test_attainment_curve_cut_off_where_it_saturates(lam: float, ups: float) -> None:
    """The truncated sweep is the full one bit for bit up to its last entry, which bounds every
    later entry from above by at most WAIT_TOL."""
    full, cut = np.empty(400), np.empty(400)
    assert attainment_curve(lam, 20.0, 0.2, 60.0, ups, full) == 400
    n = attainment_curve(lam, 20.0, 0.2, 60.0, ups, cut, WAIT_TOL)
    np.testing.assert_array_equal(cut[: n - 1], full[: n - 1])
    if n < 400:
        assert (cut[n - 1] >= full[n - 1 :] - 1e-15).all()
        assert cut[n - 1] - full[n - 1] <= WAIT_TOL
    else:
        assert cut[n - 1] == full[n - 1]


@pytest.mark.parametrize("scenario", ["default", "faults", "multi_resource"])
def test_oracle_is_never_beaten_tick_by_tick(scenario: str) -> None:
    cfg = load_scenario(scenario).model_copy(update={"episode_ticks": 240})
    env = ResourceShiftEnv(cfg)
    for name in ["static", "potential", "hpa", "proportional", "mpc", "oracle-mpc"]:
        policy = make_policy(name, env.params)
        if hasattr(policy, "bind"):
            policy.bind(env)
        obs, _ = env.reset(seed=7)
        bound = oracle_goal(env.params, env.plane.sim)
        for t in range(cfg.episode_ticks):
            obs, reward, _, _, info = env.step(policy.act(obs, env.action_masks()))
            assert info["goal_attainment"] <= bound[t] + 1e-9, (name, t)
            assert reward <= bound[t] + 1e-9


def test_oracle_is_finite_and_never_beaten_on_a_lightly_loaded_plane() -> None:
    cfg = load_scenario("default")
    data = cfg.model_dump(mode="json")
    data["episode_ticks"] = 120
    data["action"] = {**data.get("action", {}), "mode": "shift"}  # zeros(3): the no-op shift
    for mod in data["modules"]:
        mod["demand"]["base"] /= 100
    env = ResourceShiftEnv(type(cfg).model_validate(data))
    env.reset(seed=0)
    bound = oracle_goal(env.params, env.plane.sim)
    assert np.isfinite(bound).all() and (bound > 0.9).all() and (bound <= 1.0).all()
    for t in range(120):
        *_, info = env.step(env.plane.core.guard.noop_action)
        assert info["goal_attainment"] <= bound[t] + 1e-9


@pytest.mark.parametrize("name", ["potential", "hpa", "vpa", "proportional", "mpc", "oracle-mpc"])
def test_heuristics_propose_feasible_shifts(name: str) -> None:
    env = ResourceShiftEnv(load_scenario("default").model_copy(update={"episode_ticks": 300}))
    policy = make_policy(name, env.params)
    if hasattr(policy, "bind"):
        policy.bind(env)
    obs, _ = env.reset(seed=3)
    invalid = moved = 0
    for _ in range(300):
        obs, _, _, _, info = env.step(policy.act(obs, env.action_masks()))
        invalid += info["invalid_action"]
        moved += info["units_moved"]
    assert invalid == 0
    if name != "vpa":
        assert moved > 0


def test_mpc_reads_only_the_observation() -> None:
    """The causal planner acts the same whatever the future holds; oracle-mpc does not."""
    env = ResourceShiftEnv(load_scenario("default"))
    mpc, oracle = make_policy("mpc", env.params), make_policy("oracle-mpc", env.params)
    oracle.bind(env)
    obs, _ = env.reset(seed=4)
    rng = np.random.default_rng(0)
    differs = 0
    for _ in range(120):
        mask = env.action_masks()
        before = mpc.act(obs, mask), oracle.act(obs, mask)
        sim = env.plane.sim
        future = sim.exo_demand.copy()
        start = env.params.history_ticks + int(sim.t[0]) + 1
        sim.exo_demand[:, start:] *= rng.uniform(0.2, 3.0, sim.exo_demand[:, start:].shape)
        after = mpc.act(obs, mask), oracle.act(obs, mask)
        sim.exo_demand[:] = future
        np.testing.assert_array_equal(before[0], after[0])
        differs += int(not np.array_equal(before[1], after[1]))
        obs, *_ = env.step(before[0])
    assert differs > 0, "scrambling the future changed nothing: the test would be weak"


def test_mpc_serves_what_it_can_of_an_overloaded_pool() -> None:
    """Demand above the pool and no module over-provisioned: hpa and potential find no donor
    and move (almost) nothing; mpc takes units from the modules it cannot serve anyway and
    completes others, and gets more of the goal than any of them."""
    data = load_scenario("default").model_dump(mode="json")
    data["episode_ticks"] = 240
    for mod in data["modules"]:
        mod["demand"]["base"] *= 2.0
    cfg = type(load_scenario("default")).model_validate(data)
    returns, moved = {}, {}
    for name in ["static", "hpa", "potential", "mpc"]:
        env = ResourceShiftEnv(cfg)
        result = run_episode(env, make_policy(name, env.params), name, 0, 5)
        returns[name], moved[name] = result.ret, result.units_moved
    assert returns["mpc"] > max(returns["hpa"], returns["potential"], returns["static"]) + 5.0, (
        returns, moved,
    )  # fmt: skip


def _mpc_requests(scenario: str, demand: dict[int, float], rest: float) -> np.ndarray:
    """mpc's requests on a decoded state where every module needs ``rest`` of the servers it
    holds but those in ``demand`` (module -> servers needed, as forecast)."""
    params = ScenarioParams.from_config(load_scenario(scenario))
    policy = make_policy("mpc", params)
    need = policy.servers(params.initial_alloc) * rest
    for m, v in demand.items():
        need[m] = v
    return policy.requests(_state(params, demand_servers=need, forecast_servers=need))


def test_mpc_asks_for_every_kind_a_module_needs_together() -> None:
    """multi_resource module 2 is bound by CPU and memory alike (8 units / 1, 12 / 1.5): one
    kind alone adds no server, so the planner must ask for both at once (the guard executes
    one kind a tick, the rest after the stabilization period); idle module 0 gives both."""
    req = _mpc_requests("multi_resource", {0: 0.5, 2: 12.0}, rest=1.0)
    assert (req[2] > 0).all() and (req[0] < 0).all(), req


def test_mpc_finds_the_idle_donor_among_many_modules() -> None:
    """256 modules, each at 70 % of what it holds, but one idle batch module (1 of its 2
    units free) and one overloaded api module: on a plane this big the planner scores only
    ``candidates`` sources, and those must be the over-provisioned ones, not the largest
    (busy) holders, or it finds no gain and moves nothing."""
    req = _mpc_requests("scale_256", {100: 0.05, 5: 6.0}, rest=0.7)
    assert req[100, 0] < 0 and req[5, 0] > 0, (req[100], req[5], np.flatnonzero(req))


def _candidates_by_loops(give, room, budget, srcs, dsts, kinds, levels, max_units):
    """The planner's candidate shifts as plain loops (what the vectorized code must equal)."""
    out = []
    for r in kinds:
        sl = slice(None) if r < 0 else slice(r, r + 1)
        for s in srcs:
            for d in dsts:
                most = min(give[s, sl].min(), room[d, sl].min(), budget[sl].min(), max_units)
                out += [(s, d, r, v) for v in levels if s != d and v <= most]
    return np.array(out, dtype=np.int64).reshape(-1, 4)


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 40), st.sampled_from(["default", "multi_resource"]), st.integers(0, 2**31))
def test_mpc_candidates_equal_the_plain_loops(m: int, scenario: str, seed: int) -> None:
    """Every feasible (src, dst, kind, units) shift in the order the plan scans them (its
    ties go to the first): the vectorized enumeration against the loops it replaced."""
    params = ScenarioParams.from_config(load_scenario(scenario))
    mpc = make_policy("mpc", params, candidates=int(np.random.default_rng(seed).integers(1, 12)))
    rng = np.random.default_rng(seed)
    r = params.num_resources
    give, room = rng.integers(0, 6, (m, r)).astype(float), rng.integers(0, 6, (m, r)).astype(float)
    budget = rng.integers(0, 8, r).astype(float)
    state = ObservedState.__new__(ObservedState)
    object.__setattr__(state, "forecast_servers", rng.random(m) * 5)
    object.__setattr__(state, "alloc", rng.integers(0, 5, (m, r)).astype(float))
    object.__setattr__(state, "incoming", np.zeros((m, r)))
    mpc.servers = lambda units: units.min(axis=1)  # type: ignore[method-assign]
    got = mpc._candidates(give, room, state, budget)
    k = min(mpc.candidates, m)
    gap = state.forecast_servers - state.alloc.min(axis=1)
    surplus = np.where(give.max(axis=1) >= 1, -gap, -np.inf)
    srcs = np.argsort(-surplus, kind="stable")[:k] if m > 2 * k else np.arange(m)
    want_gap = np.where(room.max(axis=1) >= 1, gap, -np.inf)
    dsts = np.argsort(-want_gap, kind="stable")[:k] if m > 2 * k else np.arange(m)
    kinds = list(range(r)) + ([-1] if r > 1 else [])
    want = _candidates_by_loops(give, room, budget, srcs, dsts, kinds, mpc.levels, mpc.max_units)
    np.testing.assert_array_equal(got, want)


def test_unknown_policy_names_the_choices() -> None:
    params = ScenarioParams.from_config(load_scenario("default"))
    with pytest.raises(ValueError, match=r"unknown policy 'potentail'.*potential"):
        make_policy("potentail", params)
    with pytest.raises(ValueError, match=r"potential: bad parameter.*allowed"):
        make_policy("potential", params, not_a_knob=1.0)
    assert set(POLICIES) == {"potential", "hpa", "vpa", "static", "proportional", "mpc",
                             "oracle-mpc"}  # fmt: skip


# -- HPA on hand-computed cases ------------------------------------------------------------
@pytest.fixture
def params() -> ScenarioParams:
    return ScenarioParams.from_config(load_scenario("default"))


def test_hpa_desired_replicas_by_hand(params: ScenarioParams) -> None:
    hpa = HPAPolicy(params, target_utilization=0.7, tolerance=0.1, downscale_window_s=300)
    alloc = np.array([[4], [4], [10], [8], [2], [6]])
    util = np.array([0.9, 0.75, 0.35, 0.7, 0.98, 0.7])
    desired = hpa.recommend(_state(params, alloc=alloc, utilization=util))
    # 4 * 0.9 / 0.7 = 5.14 -> 6; 0.75 / 0.7 = 1.07 within tolerance -> 4;
    # 10 * 0.5 -> 5; at target -> 8; 2 * 1.4 = 2.8 -> 3; at target -> 6
    np.testing.assert_array_equal(desired, [6, 4, 5, 8, 3, 6])


def test_hpa_scale_down_waits_for_the_window_and_scale_up_is_limited(params) -> None:
    hpa = HPAPolicy(params, target_utilization=0.7, tolerance=0.1, downscale_window_s=180)
    alloc = np.array([[10], [4], [7], [7], [2], [7]])
    high = _state(params, alloc=alloc, utilization=np.array([0.7, 0.7, 0.7, 0.7, 0.7, 0.7]))
    low = _state(params, alloc=alloc, utilization=np.array([0.35, 0.7, 0.7, 0.7, 0.7, 0.7]))
    hpa.recommend(high)
    assert hpa.recommend(low)[0] == 10  # the 10 of the last 3 ticks (180 s) still wins
    hpa.recommend(low)
    assert hpa.recommend(low)[0] == 5  # window passed: 10 * 0.35 / 0.7
    tiny = HPAPolicy(params, target_utilization=0.1)
    up = tiny.recommend(_state(params, alloc=alloc, utilization=np.full(6, 0.98)))
    # ceil(2 * 9.8) = 20 is capped at max(2 * 2, 2 + 4) = 6 for the 2-server module
    assert up[4] == 6


def test_hpa_realises_scale_up_as_shift_from_scale_down(params: ScenarioParams) -> None:
    hpa = HPAPolicy(params, downscale_window_s=60)
    alloc = np.array([[10], [8], [6], [8], [8], [8]])
    util = np.array([0.7, 0.7, 0.98, 0.35, 0.7, 0.7])  # checkout hot, batch-etl cold
    action = hpa.decide(_state(params, alloc=alloc, utilization=util))
    # checkout wants ceil(6 * 1.4) = 9 (+3), batch-etl 4 (-4): 3 units -> level 2 (2 units)
    assert action.tolist() == [3, 2, 1]


def test_hpa_waits_when_no_module_can_give(params: ScenarioParams) -> None:
    hpa = HPAPolicy(params)
    alloc = np.array([[10], [8], [6], [8], [8], [8]])
    util = np.array([0.7, 0.7, 0.98, 0.7, 0.7, 0.7])
    assert hpa.decide(_state(params, alloc=alloc, utilization=util)).tolist() == [0, 0, 0]


# -- Potential on hand-computed cases -------------------------------------------------------
def test_potential_scores_follow_the_formula(params: ScenarioParams) -> None:
    pol = PotentialPolicy(params, probe_units=2, headroom=0.1, incoming_penalty=0.0)
    forecast = np.array([12.0, 6.0, 3.0, 1.0, 5.0, 6.0])
    rep = np.array([1.0, 0.9, 0.8, 1.0, 0.5, 1.0])
    st = _state(params, forecast_servers=forecast, reputation=rep, utilization=np.zeros(6))
    potential, optimal, servers = pol.scores(st)
    lam = forecast / params.servers_per_request
    s = params.initial_alloc[:, 0].astype(float)
    mu, slo = params.service_rate, params.slo_seconds
    gain = params.value * (
        attainment(lam, s + 2, mu, slo, 60.0) - attainment(lam, s, mu, slo, 60.0)
    )
    cost = params.config.reward.cost_per_unit * 2 * (1 + params.warmup_ticks) + 1e-6
    np.testing.assert_allclose(potential, rep * forecast * gain / cost, rtol=1e-9)
    np.testing.assert_allclose(optimal, forecast * 1.1)
    np.testing.assert_array_equal(servers, s)


def test_potential_moves_from_idle_low_potential_to_busy_high_potential(params) -> None:
    pol = PotentialPolicy(params, min_gap=1.5, aggressiveness=1.0)
    # api-gateway (0) needs 14 servers but holds 10; batch-etl (3) needs 1, holds 8
    forecast = np.array([14.0, 6.0, 5.0, 1.0, 6.0, 5.0])
    st = _state(params, forecast_servers=forecast, utilization=np.zeros(6))
    potential, _, _ = pol.scores(st)
    assert potential[0] == potential.max() and potential[3] == potential.min()
    src, dst, level = pol.decide(st)
    assert (src, dst) == (3, 0)
    # surplus 8 - 1.1 = 6.9, deficit 15.4 - 10 = 5.4 -> capped by max 4 units: level 2 (4)
    assert params.amount_levels[level] == 4


def test_potential_respects_locks_and_missing_telemetry(params: ScenarioParams) -> None:
    pol = PotentialPolicy(params)
    forecast = np.array([14.0, 6.0, 5.0, 1.0, 6.0, 5.0])
    locked = np.array([False, False, False, True, False, False])
    missing = np.array([False, False, False, False, False, True])
    st = _state(params, forecast_servers=forecast, locked=locked, missing=missing)
    src, dst, _ = pol.decide(st)
    assert src not in (3, 5) and dst != 3


def test_tuned_parameters_are_used_by_name(params, tmp_path, monkeypatch) -> None:
    import json

    import shift_rl.agents as agents

    (tmp_path / "hpa").mkdir()
    (tmp_path / "hpa" / "params.json").write_text(
        json.dumps({"params": {"target_utilization": 0.55}})
    )
    monkeypatch.setattr(agents, "TUNED_DIR", tmp_path)
    assert make_policy("hpa", params).p.target_utilization == 0.55
    assert make_policy("hpa", params, target_utilization=0.8).p.target_utilization == 0.8
    assert math.isclose(make_policy("potential", params).p.headroom, 0.1)  # untuned here
    (tmp_path / "hpa" / "params.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="expected a JSON object with a 'params' mapping"):
        make_policy("hpa", params)


def test_heuristics_shift_the_kind_that_binds() -> None:
    """A module bound by CPU with memory to spare gets CPU, and gives memory, not CPU."""
    params = ScenarioParams.from_config(load_scenario("multi_resource"))
    # api-gateway (0): 9 cpu / 12 mem at 1 + 1 per server: cpu binds, wants 14 servers
    # analytics (3): 6 cpu / 20 mem at 1 + 2 per server: needs 2 servers, holds spare of both
    alloc = np.array([[9, 12], [4, 36], [8, 12], [6, 20], [7, 16]])
    forecast = np.array([14.0, 8.0, 6.0, 2.0, 6.0])
    st = _state(params, alloc=alloc, forecast_servers=forecast, utilization=np.zeros(5))
    src, dst, level = PotentialPolicy(params, min_gap=1.5).decide(st)
    k = len(params.amount_levels)
    assert (src, dst) == (3, 0)
    assert level // k == 0, "CPU (kind 0) binds the target, so CPU moves"
    surplus, deficit = PotentialPolicy(params).kind_gaps(forecast, st)
    assert deficit[0, 0] == pytest.approx(14 * 1 - 9) and deficit[0, 1] == pytest.approx(2)
    assert surplus[3, 1] == 20 - 2 * 2 and surplus[3, 0] == 6 - 2


@pytest.mark.parametrize("name", ["potential", "hpa"])
def test_tuned_baselines_beat_static_on_every_kind_of_pool(name: str) -> None:
    from shift_rl.evaluate import evaluate

    for scenario in ("default", "multi_resource"):
        rep = evaluate([name], scenario, episodes=4, seed=0)
        diff = rep.per_episode(name, "return") - rep.per_episode("static", "return")
        assert diff.mean() > 0, (scenario, diff)


class _EveryPair(PotentialPolicy):
    """Potential planning with the seed's loop over every pair (the reference): each shift
    the free qualifying pair of largest gap (ties: lowest ``(dst, src)``) that fits."""

    def plan_pairs(self, state, limit=None):  # type: ignore[override]
        self.feedback(state)
        potential, optimal, _ = self.scores(state)
        ctx = self._pair_context(potential, optimal, state)
        budget = np.full(self.params.num_resources, self.params.config.safety.max_units_per_tick)
        gap_factor = self.p.min_gap * (1.0 + self.caution)
        used: set[int] = set()
        pairs: list[tuple] = []
        while limit is None or len(pairs) < limit:
            best, best_key = None, None
            for dst in ctx[1].tolist():
                for src in ctx[0].tolist():
                    if src == dst or src in used or dst in used:
                        continue
                    gap = potential[dst] - potential[src]
                    if gap <= 0 or potential[dst] <= gap_factor * potential[src]:
                        continue
                    key = (-gap, dst, src)
                    if best_key is not None and key >= best_key:
                        continue
                    found = self._pair_shift(src, dst, gap, potential, ctx, budget)
                    if found is not None:
                        best, best_key = (src, dst, *found), key
            if best is None:
                break
            pairs.append(best)
            budget[best[2]] -= best[3]
            used |= {best[0], best[1]}
        for src, dst, _, _ in pairs:
            self._proposed.append((src, dst, self._pair_attainment(state, src, dst)))
        return pairs


@pytest.mark.parametrize("mode", ["plan", "shift"])
@pytest.mark.parametrize("scenario", ["default", "multi_resource", "large", "faults", "scale_256"])
def test_potential_best_gap_search_plans_as_every_pair_loop(scenario: str, mode: str) -> None:
    """The heap search makes the seed loop's plan (plan mode) and first pair (single-shift),
    over episodes where locks, the budget and the feedback loop all come into play."""
    cfg = load_scenario(scenario)
    cfg = cfg.model_copy(update={"action": cfg.action.model_copy(update={"mode": mode})})
    env = ResourceShiftEnv(cfg)
    fast = resolve_policy("potential", env.params)
    slow = _EveryPair(env.params, **vars(fast.p))
    ticks = 40 if scenario == "scale_256" else 200
    for seed in (0, 1):
        obs, _ = env.reset(seed=seed)
        fast.reset()
        slow.reset()
        shifts = 0
        for _ in range(ticks):
            mask = env.action_masks()
            a = fast.act(obs, mask)
            assert np.array_equal(a, slow.act(obs, mask))
            obs, *_, info = env.step(a)
            shifts += info["num_shifts"]
        assert shifts > 0
        assert fast.caution == slow.caution


# -- plans ------------------------------------------------------------------------------------
def test_plan_action_rounds_to_levels_and_obeys_the_mask() -> None:
    from shift_rl.agents.base import plan_action

    levels = np.array([1, 2, 4])
    req = np.array([[0.4], [0.6], [3.0], [-5.0], [9.0], [-1.2]])
    # 0.4 -> nothing; 0.6 -> 1; 3 -> 2; -5 -> -4; 9 -> 4; -1.2 -> -1 (levels: -4 -2 -1 0 1 2 4)
    assert plan_action(req, levels).tolist() == [3, 4, 5, 0, 6, 2]
    mask = np.ones((6, 7), dtype=bool)
    mask[2, 5] = False  # module 2 may not ask for 2 units: 1 instead
    mask[3, :3] = False  # module 3 may not give: no change
    assert plan_action(req, levels, mask.reshape(-1)).tolist() == [3, 4, 4, 3, 6, 2]


def test_hpa_plans_every_module_of_the_tick(params: ScenarioParams) -> None:
    """Two hot modules and two cold ones: one plan of two shifts, not one shift."""
    hpa = HPAPolicy(params, downscale_window_s=60)
    alloc = np.array([[10], [6], [6], [8], [8], [8]])
    util = np.array([0.98, 0.7, 0.98, 0.35, 0.35, 0.7])
    req = hpa.requests(_state(params, alloc=alloc, utilization=util))
    assert (req[[0, 2], 0] > 0).all() and (req[[3, 4], 0] < 0).all()
    assert (req[[1, 5], 0] == 0).all()
    assert req.shape == (6, 1)


def test_heuristics_plan_several_shifts_a_tick_on_a_big_plane() -> None:
    env = ResourceShiftEnv(load_scenario("scale_256").model_copy(update={"episode_ticks": 60}))
    for name in ("potential", "hpa"):
        policy = make_policy(name, env.params)
        obs, _ = env.reset(seed=1)
        most = 0
        for _ in range(60):
            obs, _, _, _, info = env.step(policy.act(obs, env.action_masks()))
            most = max(most, info["num_shifts"])
            assert info["units_moved"] <= env.params.config.safety.max_units_per_tick
        assert most >= 3, (name, most)


def test_potential_feedback_loop_grows_caution_after_a_shift_that_hurt(params) -> None:
    pol = PotentialPolicy(params, min_gap=1.5, feedback_rate=0.5, feedback_decay=0.1)
    forecast = np.array([14.0, 6.0, 5.0, 1.0, 6.0, 5.0])
    st = _state(params, forecast_servers=forecast, utilization=np.zeros(6))
    (src, dst, _, _), *_ = pol.plan_pairs(st)
    window = pol.rails.stabilization_ticks
    pending = np.zeros(6, dtype=bool)
    pending[[src, dst]] = True
    att = np.ones(6)
    quiet = dict(forecast_servers=np.ones(6), utilization=np.zeros(6), pending=pending)
    for _ in range(window - 1):  # executed: both pending on the next ticks; not yet judged
        pol.feedback(_state(params, attainment=att, **quiet))
    assert pol.caution == 0.0
    att = att.copy()
    att[[src, dst]] = 0.5  # the pair's attainment fell by 0.5 > the rollback threshold
    pol.feedback(_state(params, attainment=att, **quiet))
    # the full rate (the guard rolls this one back): the mean over judgements moves by
    # feedback_decay towards it, the source's own caution takes all of it
    assert pol.caution == pytest.approx(0.1 * 0.5)
    assert pol.source_caution[src] == pytest.approx(0.5) and pol.source_caution[dst] == 0
    pol.feedback(_state(params, **quiet))
    assert pol.caution == pytest.approx(0.05)  # the mean waits for the next judgement
    assert pol.source_caution[src] == pytest.approx(0.45)  # a source's fades per tick
    # more caution: a bigger gap needed, and the source keeps more (higher optimal usage)
    _, optimal, _ = pol.scores(st)
    assert optimal[src] > forecast[src] * (1 + pol.p.headroom)
