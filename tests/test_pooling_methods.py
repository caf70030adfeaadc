"""Known-answer and conformance tests of the provisioning methods (tracks-phase2.md §5.9, 5-6)."""

import numpy as np
import pytest

from coreset_bench import registry
from coreset_bench.kinds import ProvisioningView
from coreset_bench.plugins.provisioning._pooling import (
    autotune,
    critical_fractile,
    fractile_pool,
    newsvendor_cost,
    newsvendor_lp,
    ssa_fit,
)
from coreset_bench.testing import check_provisioning_method


@pytest.fixture(autouse=True)
def _one_blas_thread():
    """As in a cell (the track holds BLAS to the cell's threads): a 2-thread OpenBLAS beside
    other work makes SSA's eigh many times slower."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.mark.parametrize("ratio", [1.0, 3.0, 19.0, 99.0, 999.0])
def test_newsvendor_lp_equals_the_critical_fractile_quantile(ratio):
    rng = np.random.default_rng(int(ratio))
    scen = rng.gamma(3.0, 4.0, 200)
    P, obj = newsvendor_lp(scen, 1.0, ratio, 1e6)
    q = fractile_pool(scen, 1.0, ratio)
    assert obj == pytest.approx(newsvendor_cost(q, scen, 1.0, ratio), abs=1e-9)
    assert newsvendor_cost(P, scen, 1.0, ratio) == pytest.approx(obj, abs=1e-9)
    assert np.mean(scen <= q) >= critical_fractile(1.0, ratio) - 1e-12


def test_ssa_is_exact_on_trend_plus_sinusoid():
    t = np.arange(600, dtype=np.float64)
    y = 3 + 0.01 * t + np.sin(2 * np.pi * t / 48)
    m = ssa_fit(y[:480], 96, rank=4)
    assert m.rank <= 4
    assert np.abs(m.recon - y[:480]).max() < 1e-8
    assert np.abs(m.forecast(24) - y[480:504]).max() < 1e-6
    assert ssa_fit(y[:480], 96, energy=0.999999).rank <= 4  # the energy rule finds the same rank


def test_autotune_finds_the_smallest_ratio_reaching_the_target():
    score = lambda rho: 1 - 1 / (1 + rho)  # noqa: E731  (the fractile itself)
    rho = autotune(score, 0.99, probes=40)
    assert rho == pytest.approx(99.0, rel=1e-6)
    assert autotune(score, 0.5) == 1.0 and autotune(score, 0.99999) == 1e4


FAST = {"intelligent-pooling": {"epochs": 20, "tune_days": 1, "fit_days": 1, "scenarios": 50}, "ssa-pooling": {"tune_days": 1, "fit_days": 1}, "seasonal-pooling": {"tune_days": 1}}


@pytest.mark.parametrize("name", ["static", "oracle", "reactive", "seasonal-pooling", "ssa-pooling", "intelligent-pooling"])
def test_builtin_provisioning_methods_pass_the_kit(name):
    m = registry.method(name)
    m = m.with_params(**FAST.get(name, {}))
    res = check_provisioning_method(m, days=2)
    assert res.hits + res.misses > 0 and len(res.plans) == 1440 // 5


def test_only_the_oracle_is_privileged():
    priv = [n for n in ["static", "oracle", "reactive", "seasonal-pooling", "ssa-pooling", "intelligent-pooling"] if registry.method(n).privileged]
    assert priv == ["oracle"]


def test_static_is_the_smallest_pool_meeting_the_target_on_history():
    from coreset_bench.tracks.pooling.sim import simulate

    d = np.random.default_rng(0).poisson(2.0, 3000)
    m = registry.method("static").with_params()
    v = ProvisioningView(history=d, horizon=10, step_seconds=60.0, seed=0, t=3000, lead=5, decision_every=5, target_hit_rate=0.99)
    m.fit(v)
    P = int(m.plan(v)[0])
    assert simulate(d, P, lead=5).hit_rate >= 0.99 > simulate(d, P - 1, lead=5).hit_rate


def test_ssa_forecasts_monday_at_the_weekday_level_after_a_weekend():
    from coreset_bench.plugins.provisioning._pooling import ssa_rates

    spd = 1440
    tod = (np.arange(7 * spd) % spd) / spd
    shape = 0.2 + 2 * np.maximum(0, np.sin(np.pi * (tod - 0.3) / 0.5)) ** 2
    level = np.repeat([1, 1, 1, 1, 1, 0.4, 0.4], spd)  # Monday .. Sunday
    hist = 3.0 * shape * level
    kw = dict(spd=spd, bucket=5, fit_days=7, window_days=1.0, energy=0.99, max_rank=20, ahead=spd, start="2026-01-05T00:00:00")
    _, fc, _ = ssa_rates(hist, **kw)
    monday = hist[:spd].sum()
    assert abs(fc.sum() - monday) / monday < 0.1
    _, plain, _ = ssa_rates(hist, day_types=False, **kw)  # one-day window, no levels: Sunday again
    assert plain.sum() < 0.75 * monday


@pytest.mark.parametrize("ratio", [1.0, 3.0, 99.0, 999.0])
@pytest.mark.parametrize("prev", [0.0, 5.0, 12.0, 40.0])
def test_newsvendor_lp_with_a_ramp_equals_the_clipped_fractile(ratio, prev):
    from coreset_bench.plugins.provisioning._pooling import ramped_fractile

    scen = np.random.default_rng(int(ratio) + int(prev)).gamma(3.0, 4.0, 200)
    P, obj = newsvendor_lp(scen, 1.0, ratio, 1e6, ramp=3.0, prev=prev)
    q = ramped_fractile(scen, 1.0, ratio, 1e6, ramp=3.0, prev=prev)
    assert abs(P - prev) <= 3.0 + 1e-7 and abs(q - prev) <= 3.0 + 1e-12
    assert newsvendor_cost(q, scen, 1.0, ratio) == pytest.approx(obj, abs=1e-9)
    free = fractile_pool(scen, 1.0, ratio)
    assert q == (free if abs(free - prev) <= 3.0 else prev + np.sign(free - prev) * 3.0)


def test_multi_bucket_newsvendor_lp_with_a_ramp_is_the_integer_optimum():
    """B = 3 buckets, integer scenarios, prev and delta: the constraint matrix is an interval
    matrix (totally unimodular), so the LP optimum equals the best integer plan by brute force."""
    import itertools

    rng = np.random.default_rng(7)
    scen = rng.poisson([3.0, 9.0, 4.0], size=(60, 3)).astype(np.float64)
    c_idle, c_miss, prev, delta = 1.0, 9.0, 2.0, 2.0
    P, obj = newsvendor_lp(scen, c_idle, c_miss, 30.0, ramp=delta, prev=prev)
    assert P.shape == (3,) and abs(P[0] - prev) <= delta + 1e-7 and np.all(np.abs(np.diff(P)) <= delta + 1e-7)

    def cost(p):
        return sum(newsvendor_cost(p[b], scen[:, b], c_idle, c_miss) for b in range(3))

    grid = range(0, 20)
    best = min(cost(p) for p in itertools.product(grid, grid, grid) if abs(p[0] - prev) <= delta and abs(p[1] - p[0]) <= delta and abs(p[2] - p[1]) <= delta)
    assert obj == pytest.approx(best, abs=1e-9)
    free, _ = newsvendor_lp(scen, c_idle, c_miss, 30.0)  # without the ramp: each bucket's own fractile
    assert np.allclose(free, [fractile_pool(scen[:, b], c_idle, c_miss) for b in range(3)]) and obj > sum(newsvendor_cost(free[b], scen[:, b], c_idle, c_miss) for b in range(3))


def _ip(**kw):
    return registry.method("intelligent-pooling").with_params(**{**FAST["intelligent-pooling"], **kw})


def test_intelligent_pooling_ramp_bounds_every_change_of_the_pool():
    free = check_provisioning_method(_ip(), days=2)
    ramped = check_provisioning_method(_ip(ramp=1.0, solver="highs"), days=2)
    steps = np.abs(np.diff([p[0] for p in ramped.plans]))
    assert steps.max() <= 1.0 and np.abs(np.diff([p[0] for p in free.plans])).max() > 1.0


@pytest.mark.parametrize("ramp", [None, 2.0])
def test_intelligent_pooling_solvers_give_the_same_pools(ramp):
    """solver="auto" (the closed form) plans what the HiGHS LP plans: with 50 scenarios and the
    level 0.99 (untuned on one day of history), tau * S = 49.5 is not an integer, so the optimum
    is one scenario value."""
    from coreset_bench.testing import make_demand_trace, simulate_pool

    d = make_demand_trace(2)
    a = simulate_pool(_ip(ramp=ramp), d, start_step=1440)
    b = simulate_pool(_ip(ramp=ramp, solver="highs"), d, start_step=1440)
    assert len(a.plans) == 288 and all(np.array_equal(x, y) for x, y in zip(a.plans, b.plans))


def test_intelligent_pooling_trains_the_back_test_model_once(monkeypatch):
    """With fits tune_days apart, a fit's back-test model is the previous fit's model (same
    history, same seed): 3 trainings for 2 fits instead of 4, and the same plans."""
    from coreset_bench.kinds import ProvisioningView
    from coreset_bench.plugins.provisioning.intelligent_pooling import IntelligentPooling
    from coreset_bench.testing import make_demand_trace

    d = make_demand_trace(5)
    calls = []
    orig = IntelligentPooling._train
    monkeypatch.setattr(IntelligentPooling, "_train", lambda self, X, y, seed: calls.append(len(X)) or orig(self, X, y, seed))
    m = _ip(tune_days=1, fit_days=2)
    infos = []
    for day in (3, 4):
        v = ProvisioningView(history=d[: day * 1440], horizon=10, step_seconds=60.0, seed=3, t=day * 1440, lead=5, decision_every=5)
        m.fit(v)
        infos.append(v.info)
    assert len(calls) == 3
    assert all({"rho", "tau", "tune_hit"} <= set(i) for i in infos)
    # a different history of the same length is not served from the memo
    other = d.copy()
    other[100] += 1
    m.fit(ProvisioningView(history=other[: 4 * 1440], horizon=10, step_seconds=60.0, seed=3, t=4 * 1440, lead=5, decision_every=5))
    assert len(calls) == 5


# ---- the decision window (what a held pool must cover) -------------------------------------------


def test_decision_demand_is_the_largest_lead_window_over_the_held_steps():
    """Hand-worked: lead 2, decisions every 3 steps. W_L(s) = d[s+1] + d[s+2]; M(t) = max of
    W_L(t), W_L(t+1), W_L(t+2) (zero past the end)."""
    from coreset_bench.plugins.provisioning._pooling import decision_demand

    d = np.array([0, 5, 0, 0, 1, 7, 0, 2, 0, 0])
    W = [5, 0, 1, 8, 7, 2, 2, 0, 0, 0]
    assert decision_demand(d, 2, 1).tolist() == W
    assert decision_demand(d, 2, 3).tolist() == [max(W[t : t + 3]) for t in range(10)] == [5, 8, 8, 8, 7, 2, 2, 0, 0, 0]


def test_the_decision_window_is_the_oracles_window_held_for_the_decision():
    """The oracle's per-step target for step t + j is the demand of (t + j, t + j + lead]; the
    statistic every forecasting method sizes a held pool for is the largest of them."""
    from coreset_bench.plugins.provisioning._pooling import decision_demand

    d = np.random.default_rng(3).poisson(2.0, 400)
    oracle = registry.method("oracle").with_params()
    lead, de = 5, 5
    M = decision_demand(d, lead, de)
    for t in range(0, 380, de):
        v = ProvisioningView(history=d[:t], horizon=lead + de, step_seconds=60.0, seed=0, t=t, lead=lead, decision_every=de, future=d[t : t + lead + de])
        assert float(np.max(oracle.plan(v)[:de])) == M[t]


def test_seasonal_pooling_on_a_periodic_trace_plans_the_decision_window_exactly():
    """Days that repeat exactly: every same-type sample of a minute is the same M value, so any
    quantile of it is M(t) itself (not the old sum over lead + decision_every - 1 steps)."""
    from coreset_bench.plugins.provisioning._pooling import decision_demand

    day = np.random.default_rng(4).poisson(3.0, 1440)
    d = np.tile(day, 5)  # Monday .. Friday, all weekdays
    m = registry.method("seasonal-pooling").with_params(neighbourhood=0)
    v = ProvisioningView(history=d[: 4 * 1440], horizon=10, step_seconds=60.0, seed=0, t=4 * 1440, start="2026-01-05T00:00:00", lead=5, decision_every=5,
                         calib_days=(2, 3), tune_margin=0.0)
    m.fit(v)
    M = decision_demand(d, 5, 5)
    for t in range(4 * 1440, 5 * 1440 - 10, 5):
        pv = ProvisioningView(history=d[:t], horizon=10, step_seconds=60.0, seed=0, t=t, start="2026-01-05T00:00:00", lead=5, decision_every=5)
        assert m.plan(pv)[0] == M[t - 1440]  # yesterday's (identical) window


# ---- the tuners at their bounds -----------------------------------------------------------------


def test_bisect_smallest_reports_the_bound_it_ended_at():
    from coreset_bench.plugins.provisioning._pooling import CEILING, FLOOR, bisect_smallest, tune_ratio

    score = lambda x: 1 - 1 / (1 + x)  # noqa: E731
    assert bisect_smallest(score, 0.4, lo=1.0, hi=1e4) == type(bisect_smallest(score, 0.4, lo=1.0, hi=1e4))(1.0, FLOOR)
    top = tune_ratio(score, 0.99999)
    assert top.value == 1e4 and top.bound == CEILING
    mid = tune_ratio(score, 0.99, probes=40)
    assert mid.bound == "" and mid.value == pytest.approx(99.0, rel=1e-6)
    lin = bisect_smallest(lambda k: k / 10, 0.5, lo=0.0, hi=20.0, probes=40, log=False)
    assert lin.bound == "" and lin.value == pytest.approx(5.0, abs=1e-9)


def _calib_view(d, day, *, target=0.99, margin=0.002, calib=(2, 3)):
    return ProvisioningView(history=d[: day * 1440], horizon=10, step_seconds=60.0, seed=0, t=day * 1440, start="2026-01-05T00:00:00", lead=5, decision_every=5,
                            target_hit_rate=target, calib_days=calib, tune_margin=margin)


@pytest.mark.parametrize("name", ["ssa-pooling", "seasonal-pooling", "reactive"])
def test_every_tuner_reports_its_bound_and_uses_the_views_calibration(name):
    """An aim above 1 cannot be met: the search ends at its ceiling, says so, and the tuned value
    is the top of its range; an aim of 0 is met by the bottom of the range: the floor. The
    back-tested hit rate is that of the view's calibration days (the method's own tune_days is
    not used when the profile declares them)."""
    from coreset_bench.testing import make_demand_trace

    d = make_demand_trace(5)
    m = registry.method(name).with_params(tune_days=1)
    v = _calib_view(d, 4, margin=0.02)  # aim 1.01
    m.fit(v)
    top = v.info.get("rho", v.info.get("k"))
    assert v.info["tune_bound"] == "ceiling" and top == (1e4 if name != "reactive" else 20.0)
    assert 0 <= v.info["tune_hit"] <= 1.0 and v.info["tune_se"] >= 0
    low = _calib_view(d, 4, target=0.0, margin=0.0)
    m.fit(low)
    assert low.info["tune_bound"] == "floor" and low.info.get("rho", low.info.get("k")) == (1.0 if name != "reactive" else 0.0)
    # the calibration days are the view's: a back-test on days 2-3 differs from one on day 3 alone
    a, b = _calib_view(d, 4, calib=(2, 3)), _calib_view(d, 4, calib=(3,))
    registry.method(name).with_params().fit(a)
    registry.method(name).with_params().fit(b)
    assert a.info["tune_hit"] != b.info["tune_hit"] or a.info["tune_se"] != b.info["tune_se"]


def test_intelligent_pooling_reports_its_tuner_at_the_ceiling():
    from coreset_bench.testing import make_demand_trace

    d = make_demand_trace(5)
    v = _calib_view(d, 4, margin=0.02)
    _ip(fit_days=2).fit(v)
    assert v.info["tune_bound"] == "ceiling" and v.info["rho"] == 1e4 and v.info["tau"] == pytest.approx(1e4 / (1 + 1e4), abs=1e-6)
