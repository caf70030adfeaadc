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
