"""Known-answer tests of the pool simulator and the traces (tracks-phase2.md §5.9, 1-4, 7, 8)."""

import math
import time

import numpy as np
import pytest

from coreset_bench.tracks.pooling.sim import (
    TraceError,
    forward_sums,
    load_azure_functions,
    load_counts_csv,
    resolve_trace,
    simulate,
    static_frontier,
    synth_rate,
    synth_sessions,
)


def test_zero_demand_static_pool_idles_after_lead_and_hit_rate_is_nan():
    T, L, P = 100, 3, 4
    r = simulate(np.zeros(T, int), P, lead=L)
    assert r.idle_hours == pytest.approx(P * (T - L) * 60 / 3600)
    assert math.isnan(r.hit_rate)
    assert int(r.pool_creations[0]) == P


def test_constant_demand_no_pool_misses_everything():
    T, L = 50, 2
    r = simulate(np.ones(T, int), 0, lead=L)
    assert r.hit_rate == 0.0 and int(r.misses[0]) == T
    assert r.miss_wait_min == pytest.approx(T * L * 60 / 60)


@pytest.mark.parametrize("P", [3, 4, 7])
def test_constant_demand_pool_of_lead_plus_one_hits_all_after_lead(P):
    T, L = 40, 2
    r = simulate(np.ones(T, int), P, lead=L)
    assert int(r.misses[0]) == L and int(r.hits[0]) == T - L


def test_hand_worked_ten_step_trace():
    # L = 2, P = 1, one request a minute. t0: empty, miss, create (ready at t2). t1: miss (one in
    # flight, no new). t2: it arrives, hit, create the next (ready at t4). t3: miss. ... hits at
    # t2, t4, t6, t8; never any idle cluster.
    r = simulate(np.ones(10, int), 1, lead=2, record=True)
    assert int(r.hits[0]) == 4 and int(r.misses[0]) == 6
    assert r.ready.tolist() == [[0] * 10]
    assert int(r.pool_creations[0]) == 5  # at t0, t2, t4, t6, t8
    # L = 2, P = 3: three created at t0 arrive at t2; each hit is replaced at once.
    r = simulate(np.ones(10, int), 3, lead=2, record=True)
    assert r.ready.tolist() == [[0, 0, 2, 1, 1, 1, 1, 1, 1, 1]]
    assert int(r.hits[0]) == 8 and int(r.misses[0]) == 2 and int(r.idle_steps[0]) == 9


def test_surplus_is_trimmed_and_in_flight_never_cancelled():
    tg = np.array([5, 5, 5, 5, 2, 2, 2, 8, 8, 8, 8, 8])
    r = simulate(np.zeros(12, int), tg, lead=3, record=True)
    # 5 created at t0 arrive at t3; trimmed to 2 at t4; at t7 6 more start, arriving at t10
    assert r.ready[0].tolist() == [0, 0, 0, 5, 2, 2, 2, 2, 2, 2, 8, 8]
    assert int(r.pool_creations[0]) == 11


def test_ttl_deletes_idle_clusters_oldest_first():
    r = simulate(np.zeros(12, int), 2, lead=1, ttl=3, record=True)
    # ready from t1; idle longer than 3 steps at t5: deleted, replaced (arrive at t6)
    assert int(r.ttl_deleted[0]) >= 2
    assert r.ready[0, 5] == 0 and r.ready[0, 6] == 2
    r2 = simulate(np.zeros(12, int), 2, lead=1, record=True)
    assert int(r2.ttl_deleted[0]) == 0 and r2.ready[0, 5] == 2


def test_batched_equals_single_and_plan_fn_equals_targets():
    rng = np.random.default_rng(0)
    d = rng.poisson(2.0, 600)
    tg = rng.integers(0, 12, (4, 600))
    both = simulate(d, tg, lead=4)
    for k in range(4):
        one = simulate(d, tg[k], lead=4)
        assert int(one.hits[0]) == int(both.hits[k]) and int(one.idle_steps[0]) == int(both.idle_steps[k])
    # the scalar path (one pool, no TTL) and the vector path (a TTL that never fires) agree
    vec = simulate(d, tg[1], lead=4, ttl=700, record=True)
    one = simulate(d, tg[1], lead=4, record=True)
    assert (int(vec.hits[0]), int(vec.idle_steps[0]), int(vec.pool_creations[0])) == (int(one.hits[0]), int(one.idle_steps[0]), int(one.pool_creations[0]))
    assert np.array_equal(vec.ready, one.ready) and np.array_equal(vec.targets, one.targets)
    held = tg[0].copy()
    held = held[(np.arange(600) // 5) * 5]
    a = simulate(d, held, lead=4)
    b = simulate(d, plan_fn=lambda t, ready, inflight: np.full(9, tg[0, t]), lead=4, decision_every=5)
    assert int(a.hits[0]) == int(b.hits[0]) and int(a.idle_steps[0]) == int(b.idle_steps[0]) and int(a.pool_creations[0]) == int(b.pool_creations[0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_oracle_with_every_step_decisions_hits_everything(seed):
    L = 3
    d = np.random.default_rng(seed).poisson(3.0, 800)
    # P_t = requests in (t, t + L]: everything arriving before a replacement could land
    oracle = forward_sums(d, L, offset=1).astype(int)
    oracle = np.maximum(oracle, forward_sums(d, L + 1).astype(int))
    r = simulate(d, oracle, lead=L)
    served = d[L:].sum()
    assert int(r.hits[0]) == served  # all but the first L steps (no creation has landed yet)
    d2 = d.copy()
    d2[:L] = 0
    assert simulate(d2, oracle, lead=L).hit_rate == 1.0


def test_static_frontier_is_monotone_and_exact_at_integer_pools():
    d = synth_sessions("bursty", days=2, seed=3).demand
    fr = static_frontier(d, lead=5)
    assert (np.diff(fr.hit) >= 0).all() and (np.diff(fr.idle_hours) >= 0).all()
    for p in [0, 3, fr.p_star // 2, fr.p_star]:
        r = simulate(d, p, lead=5)
        assert fr.idle_at(float(fr.hit[p])) == pytest.approx(float(fr.idle_hours[p])) or fr.hit[p] == fr.hit[max(p - 1, 0)]
        assert fr.idle_hours[p] == pytest.approx(r.idle_hours)
    # first pool serving all a pool can serve
    assert fr.hit[-1] == pytest.approx((d.sum() - d[:5].sum()) / d.sum())
    mid = 0.5 * (fr.hit[2] + fr.hit[3])
    assert fr.idle_hours[2] <= fr.idle_at(mid) <= fr.idle_hours[3]


def test_simulator_is_fast_for_seven_days_of_minutes():
    d = synth_sessions("diurnal", days=7, seed=0).demand
    t0 = time.perf_counter()
    simulate(d, plan_fn=lambda t, r, f: np.full(10, 20), lead=5, decision_every=5)
    assert time.perf_counter() - t0 < 1.0


# ---- traces -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["diurnal", "scheduled", "bursty", "hourly", "overdispersed"])
def test_synthetic_traces_are_seeded_and_daily_counts_within_4_sigma(kind):
    a = synth_sessions(kind, seed=5)
    b = synth_sessions(kind, seed=5)
    assert np.array_equal(a.demand, b.demand) and len(a.demand) == 14 * 1440
    assert not np.array_equal(a.demand, synth_sessions(kind, seed=6).demand)
    rng = np.random.default_rng(5)
    rate = synth_rate(kind, 14, rng)
    assert np.array_equal(rng.poisson(rate), a.demand)  # counts are Poisson draws of the (realized) intensity
    lam = rate.reshape(14, 1440).sum(1)
    got = a.demand.reshape(14, 1440).sum(1)
    assert (np.abs(got - lam) <= 4 * np.sqrt(lam)).all()
    peak = rate.reshape(14, 1440)[:5].max(1)  # weekdays
    top = {"bursty": 8 * 2.5 + 3, "hourly": 8 + 12, "overdispersed": 1e9}.get(kind, 8 + 3)
    assert (peak >= 5).all() and (peak <= top).all()


def test_the_published_trace_kinds_are_unchanged():
    """quick@1's entries are published: diurnal, scheduled and bursty draw exactly what they drew
    before the new kinds (sha256 of the counts at seed 123)."""
    import hashlib

    want = {"diurnal": "ad8678564a6067da", "scheduled": "e682e2a553b40990", "bursty": "53269c34b4b13d32"}
    got = {k: hashlib.sha256(synth_sessions(k, seed=123).demand.tobytes()).hexdigest()[:16] for k in want}
    assert got == want


def test_hourly_adds_twelve_requests_a_minute_in_the_first_two_minutes_of_working_hours():
    from coreset_bench.tracks.pooling.sim import HOURLY_EXTRA, HOURLY_MINUTES

    rng = np.random.default_rng(0)
    base, hourly = synth_rate("diurnal", 14, np.random.default_rng(0)), synth_rate("hourly", 14, rng)
    extra = (hourly - base).reshape(14, 24, 60)
    assert HOURLY_EXTRA == 12.0 and HOURLY_MINUTES == 2
    assert np.allclose(extra[:5, 9:19, :2], 12.0) and np.allclose(extra[5:7], 0) and np.allclose(extra[:, :, 2:], 0)
    assert np.allclose(extra[:5, :9], 0) and np.allclose(extra[:5, 19:], 0)  # waves at 09:00 .. 18:00 only
    d = synth_sessions("hourly", seed=3).demand.reshape(14, 24, 60)
    assert d[:5, 9:19, :2].mean() > 10 + d[:5, 9:19, 2:].mean()


def test_overdispersed_counts_vary_more_than_poisson_and_by_day():
    """Gamma(2)-Poisson counts: the variance over a flat stretch is about λ + λ²/2, well above the
    Poisson λ of the diurnal kind; day totals vary by the day-level lognormal (sd ~ 0.2)."""
    def dispersion(kind):
        d = synth_sessions(kind, days=14, seed=11).demand.reshape(14, 1440)[:5, 12 * 60 : 14 * 60].astype(float)  # weekday midday
        return (d.var(axis=1) / d.mean(axis=1)).mean()

    assert dispersion("diurnal") < 1.3 and dispersion("overdispersed") > 1.8
    rate = synth_rate("overdispersed", 14, np.random.default_rng(2))
    days = rate.reshape(14, 1440).sum(1)
    weekdays = days[[0, 1, 2, 3, 4, 7, 8, 9, 10, 11]]
    assert 0.08 < np.std(np.log(weekdays)) < 0.45


def test_calibration_days_are_the_last_days_of_the_served_type():
    """Day 0 is a Monday; a fit at the start of day D serves day D."""
    from coreset_bench.tracks.pooling.sim import calibration_days

    spd = 1440
    assert calibration_days(14 * spd, spd, n=2) == (10, 11)  # Monday: the last Thursday and Friday
    assert calibration_days(15 * spd, spd, n=2) == (11, 14)  # Tuesday: Friday and Monday
    assert calibration_days(19 * spd, spd, n=2) == (12, 13)  # Saturday: the last weekend
    assert calibration_days(20 * spd, spd, n=2) == (13, 19)  # Sunday: last Sunday and yesterday
    assert calibration_days(19 * spd, spd, n=2, same_type=False) == (17, 18)
    assert calibration_days(5 * spd, spd, n=2) == (3, 4)  # Saturday with no weekend yet: the last days of any type
    assert calibration_days(14 * spd + 600, spd, n=2) == (10, 11)  # mid-day: the partial day is left out
    assert calibration_days(10, spd, n=2) == ()


def test_synthetic_generator_is_guarded_against_contestants():
    from coreset_bench.data import LeakageError, contestant_guard

    with contestant_guard("peeker"), pytest.raises(LeakageError, match="peeker"):
        synth_sessions("diurnal")
    with contestant_guard("peeker"), pytest.raises(LeakageError, match="peeker"):
        synth_rate("bursty", 2, np.random.default_rng(0))


def _azure_file(path, rows):
    header = ["HashOwner", "HashApp", "HashFunction", "Trigger"] + [str(i) for i in range(1, 1441)]
    with open(path, "w") as f:
        f.write(",".join(header) + "\n")
        for owner, app, fn, trig, hits in rows:
            counts = [0] * 1440
            for m, c in hits.items():
                counts[m] = c
            f.write(",".join([owner, app, fn, trig] + [str(c) for c in counts]) + "\n")


def test_azure_loader_counts_activations_after_idle_gaps(tmp_path):
    # day 1: app a: minutes 0,1,2 (one activation at 0), 20 (gap 17 -> activation), 25 (gap 4: no)
    #        app b: two functions summed; minutes 5 and 5 -> one activation at 5; minute 1439 (yes)
    # day 2: app a: minute 3 (gap 1439-20... from minute 25 of day 1: long -> activation)
    #        app b: minute 2 (gap from 1439 of day 1 is 2 minutes: no activation); minute 30 (yes)
    #        apps c, d, e: timer-only app c at minute 7 of both days
    _azure_file(tmp_path / "invocations_per_function_md.anon.d01.csv", [
        ("o", "a", "f1", "http", {0: 3, 1: 1, 2: 2, 20: 1, 25: 4}),
        ("o", "b", "f2", "http", {5: 1, 1439: 2}),
        ("o", "b", "f3", "queue", {5: 7}),
        ("o", "c", "f4", "timer", {7: 1}),
        ("o", "d", "f5", "http", {}),
    ])
    _azure_file(tmp_path / "invocations_per_function_md.anon.d02.csv", [
        ("o", "a", "f1", "http", {3: 1}),
        ("o", "b", "f2", "http", {2: 1, 30: 1}),
        ("o", "c", "f4", "timer", {7: 1}),
        ("o", "e", "f6", "http", {100: 1, 105: 1}),
    ])
    tr = load_azure_functions(tmp_path)
    expect = np.zeros(2880, int)
    for m in [0, 20, 5, 1439, 7, 1440 + 3, 1440 + 30, 1440 + 7, 1440 + 100]:
        expect[m] += 1
    assert np.array_equal(tr.demand, expect)
    http = load_azure_functions(tmp_path, trigger="timer")
    assert http.demand.sum() == 2 and http.demand[7] == 1
    apps = load_azure_functions(tmp_path, aggregate="active_apps")
    assert apps.demand[5] == 1 and apps.demand[0] == 1 and apps.demand.sum() == 8 + 6  # active app-minutes: day 1 a 5, b 2, c 1; day 2 a 1, b 2, c 1, e 2
    assert resolve_trace(f"azure-functions:{tmp_path}").demand.sum() == expect.sum()


def test_azure_loader_wrong_header_is_one_line_naming_the_columns(tmp_path):
    f = tmp_path / "invocations_per_function_md.anon.d01.csv"
    f.write_text("owner,app,function,trigger,1,2\n")
    with pytest.raises(TraceError) as exc:
        load_azure_functions(tmp_path)
    msg = str(exc.value)
    assert "\n" not in msg and "HashOwner,HashApp,HashFunction,Trigger,1,...,1440" in msg


def test_counts_csv_loader(tmp_path):
    f = tmp_path / "c.csv"
    f.write_text("timestamp,count\n2026-03-02T00:00:00,3\n2026-03-02T00:01:00,0\n2026-03-02T00:02:00,5\n")
    tr = load_counts_csv(f)
    assert tr.demand.tolist() == [3, 0, 5] and tr.step_seconds == 60 and tr.start.startswith("2026-03-02T00:00")
    assert resolve_trace(f"counts-csv:{f}").demand.tolist() == [3, 0, 5]


@pytest.mark.parametrize("text, needle", [
    ("time,requests\n2026-03-02T00:00:00,3\n", "header must be timestamp,count"),
    ("timestamp,count\n2026-03-02T00:01:00,3\n2026-03-02T00:00:00,1\n", "not after the previous one; timestamp,count rows must be strictly increasing"),
    ("timestamp,count\n2026-03-02T00:00:00,3\n2026-03-02T00:01:00,-1\n", "negative"),
    ("timestamp,count\n2026-03-02T00:00:00,3\n2026-03-02T00:01:00,1\n2026-03-02T00:03:00,1\n", "evenly spaced"),
])
def test_counts_csv_bad_input_is_one_line(tmp_path, text, needle):
    f = tmp_path / "c.csv"
    f.write_text(text)
    with pytest.raises(TraceError) as exc:
        load_counts_csv(f)
    assert needle in str(exc.value) and "\n" not in str(exc.value) and "timestamp,count" in str(exc.value)


def test_unknown_trace_reference_names_the_forms():
    with pytest.raises(TraceError, match="synth-sessions"):
        resolve_trace("nope:x")
    with pytest.raises(TraceError, match="diurnal"):
        resolve_trace("synth-sessions:weird")
