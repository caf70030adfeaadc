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
    from coreset_bench.pooling import simulate

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
