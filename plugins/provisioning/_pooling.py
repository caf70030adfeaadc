"""Helpers shared by the provisioning methods: SSA, the newsvendor LP, the critical fractile,
quantile-function sampling, the cost-ratio auto-tuner, calibration and back-testing on the
track's own simulator (``coreset_bench.tracks.pooling.sim``).

Decisions use the *decision-window demand* M(t) (``decision_demand``): the simulator tops the
pool up to its target at every step s, and a cluster ordered at s is ready for the requests of
step s + lead, so at step s the pool must hold the requests of the lead window (s, s + lead]
(the oracle's window); a decision made at t is held for the steps t .. t + decision_every − 1,
so the statistic it must cover is the largest of their lead-window demands,
M(t) = max_{0 <= j < decision_every} W_L(t + j), W_L(s) = requests in (s, s + lead]. (Version 1
of the methods summed the requests of (t, t + lead + decision_every − 1], which overshoots M(t)
by about (decision_every − 1) / lead of it, so their tuners sat at the lowest quantile level.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from coreset_bench.kinds import Param
from coreset_bench.tracks.pooling.sim import forward_sums, hold, simulate

#: declared ranges of the SSA forecast's parameters (ssa-pooling, intelligent-pooling)
SSA_SPECS = {
    "fit_days": Param(int, min=1, help="days of history the SSA is fitted on"),
    "bucket": Param(int, min=1, help="steps summed into one SSA bucket"),
    "window_days": Param(float, min=0, min_open=True, help="SSA embedding window in days"),
    "energy": Param(float, min=0, max=1, min_open=True, help="share of the squared singular values the kept rank holds"),
    "max_rank": Param(int, min=1, help="largest SSA rank"),
    "ahead_days": Param(float, min=0, min_open=True, help="days forecast at each fit"),
    "day_types": Param(bool, help="separate weekday and weekend profiles"),
}
#: declared ranges of the calibration of the pooling methods that tune themselves; ``tune_days``
#: and ``margin`` are used only where the profile declares no calibration (``view.calib_days``,
#: ``view.tune_margin`` None: the conformance kit, profiles before pooling/quick@2)
TUNE_SPECS = {
    "tune_days": Param(int, min=1, help="days of back-test that tune the method when the profile declares no calibration days"),
    "margin": Param(float, min=0, max=1, max_open=True, help="tuned hit rate = target + margin, when the profile declares no margin"),
    "probes": Param(int, min=1, help="bisection probes of the tuner's search"),
}


def decision_demand(demand: np.ndarray, lead: int, decision_every: int) -> np.ndarray:
    """``M[t]`` = max over j < decision_every of the requests in (t + j, t + j + lead] (zero
    past the end): what a pool held from t to t + decision_every − 1 must cover."""
    W = forward_sums(demand, int(lead), offset=1)
    de = int(decision_every)
    if de <= 1:
        return W
    pad = np.concatenate([W, np.zeros(de - 1)])
    return np.lib.stride_tricks.sliding_window_view(pad, de).max(axis=1)


def decision_from_rates(rates: np.ndarray, lead: int, decision_every: int) -> np.ndarray:
    """The decision-window statistic of per-step expected rates (the SSA baseline of M(t)):
    ``decision_demand`` applied to the rates."""
    return decision_demand(rates, lead, decision_every)


# ---- SSA --------------------------------------------------------------------------------------


@dataclass
class SSA:
    """A fitted singular spectrum analysis: the rank-r reconstruction and its linear recurrence."""

    recon: np.ndarray
    lrf: np.ndarray  # (window - 1,) coefficients: y[n] = lrf @ y[n - window + 1 : n]
    rank: int

    def forecast(self, h: int) -> np.ndarray:
        """The next ``h`` values by the recurrent forecast of the reconstruction."""
        L1 = len(self.lrf)
        buf = list(self.recon[-L1:])
        out = np.empty(h)
        for i in range(h):
            v = float(np.dot(self.lrf, buf[-L1:]))
            out[i] = v
            buf.append(v)
        return out


def ssa_fit(series: np.ndarray, window: int, energy: float = 0.9, max_rank: int = 20, rank: int | None = None) -> SSA:
    """Hankel embedding (``window`` rows) -> SVD (via the lag-covariance eigenvectors) -> the smallest rank holding ``energy`` of the
    squared singular values (capped at ``max_rank``; ``rank`` fixes it) -> diagonal averaging,
    and the linear recurrent formula R = sum_i pi_i U_i[:-1] / (1 - nu^2), nu^2 = sum_i pi_i^2
    (Golyandina, Nekrutkin, Zhigljavsky, "Analysis of Time Series Structure: SSA and Related
    Techniques", 2001, §2.1)."""
    y = np.asarray(series, dtype=np.float64)
    N = len(y)
    L = int(min(window, N // 2))
    if L < 2:
        raise ValueError(f"SSA needs at least 4 points, got {N}")
    K = N - L + 1
    X = np.lib.stride_tricks.sliding_window_view(y, L).T  # (L, K) Hankel
    # eigen-decomposition of the (L, L) lag-covariance X X^T: its eigenvectors are the left
    # singular vectors, its eigenvalues the squared singular values (far cheaper than an SVD of X)
    lam, U = np.linalg.eigh(X @ X.T)
    lam, U = np.maximum(lam[::-1], 0.0), U[:, ::-1]
    if rank is None:
        e = np.cumsum(lam) / max(float(lam.sum()), 1e-300)
        rank = int(min(np.searchsorted(e, energy) + 1, max_rank, len(lam)))
    r = int(rank)
    Ur = U[:, :r]
    Xr = Ur @ (Ur.T @ X)
    # diagonal averaging: recon[n] = mean of Xr[i, j] with i + j = n
    recon = np.zeros(N)
    counts = np.zeros(N)
    for i in range(L):
        recon[i : i + K] += Xr[i]
        counts[i : i + K] += 1
    recon /= counts
    pi = U[-1, :r]
    nu2 = float((pi**2).sum())
    if nu2 >= 1 - 1e-9:
        lrf = np.zeros(L - 1)
        lrf[-1] = 1.0  # degenerate: persistence
    else:
        lrf = (U[:-1, :r] @ pi) / (1 - nu2)
    return SSA(recon, lrf, r)


# ---- the newsvendor ---------------------------------------------------------------------------


def critical_fractile(c_idle: float, c_miss: float) -> float:
    return float(c_miss) / (float(c_miss) + float(c_idle))


def newsvendor_cost(P: float, scenarios: np.ndarray, c_idle: float, c_miss: float) -> float:
    s = np.asarray(scenarios, dtype=np.float64)
    return float(np.mean(c_idle * np.maximum(P - s, 0) + c_miss * np.maximum(s - P, 0)))


def fractile_pool(scenarios: np.ndarray, c_idle: float, c_miss: float) -> float:
    """The empirical critical-fractile quantile: the smallest scenario value whose empirical CDF
    reaches c_miss / (c_miss + c_idle) (a minimiser of the sample-average newsvendor cost)."""
    s = np.sort(np.asarray(scenarios, dtype=np.float64))
    k = int(np.ceil(critical_fractile(c_idle, c_miss) * len(s) - 1e-12)) - 1
    return float(s[min(max(k, 0), len(s) - 1)])


def newsvendor_lp(scenarios: np.ndarray, c_idle: float, c_miss: float, p_max: float, *, ramp: float | None = None, prev: float | None = None) -> tuple[float | np.ndarray, float]:
    """Sample-average newsvendor as an LP on ``scipy.optimize.linprog`` (HiGHS).

    ``scenarios`` (S,) for one pool size P, or (S, B) for B consecutive horizon buckets P_1..P_B:
    min (1/S) sum_s sum_b [c_idle o_sb + c_miss u_sb]  s.t.  o_sb >= P_b - D_sb,
    u_sb >= D_sb - P_b, o, u >= 0, 0 <= P_b <= p_max, and with a ramp limit ``ramp`` = delta
    (tracks-phase2.md §5.7; methods §6.2: |P_t - P_{t-1}| <= delta "across the horizon, which need
    the LP"): |P_b - P_{b-1}| <= delta, and |P_1 - prev| <= delta when ``prev`` (the pool size in
    force) is given. Returns (P, objective): P a float for (S,) scenarios, a (B,) array otherwise.
    Without a ramp the optimum is the critical-fractile quantile of each bucket (``fractile_pool``);
    for one bucket with a ramp it is that quantile clipped to [prev - delta, prev + delta]
    (``ramped_fractile``): the objective is convex and piecewise linear in P."""
    from scipy.optimize import linprog
    from scipy.sparse import coo_matrix, hstack, vstack, identity

    d = np.asarray(scenarios, dtype=np.float64)
    one = d.ndim == 1
    D = d[:, None] if one else d
    if D.ndim != 2 or D.shape[0] == 0:
        raise ValueError(f"scenarios must be (S,) or (S, B) with S >= 1, got shape {d.shape}")
    S, B = D.shape
    n = S * B  # o and u are (S, B) blocks, flattened scenario-major
    c = np.concatenate([np.zeros(B), np.full(n, c_idle / S), np.full(n, c_miss / S)])
    # map each (s, b) row to its P_b column
    rows = np.arange(n)
    Pcol = coo_matrix((np.ones(n), (rows, np.tile(np.arange(B), S))), shape=(n, B))
    I = identity(n, format="coo")
    Z = coo_matrix((n, n))
    # P_b - o_sb <= D_sb ;  -P_b - u_sb <= -D_sb
    blocks = [hstack([Pcol, -I, Z]), hstack([-Pcol, Z, -I])]
    b = [D.reshape(-1), -D.reshape(-1)]
    if ramp is not None:
        delta = float(ramp)
        if not np.isfinite(delta) or delta < 0:
            raise ValueError(f"ramp must be a finite delta >= 0 (clusters per bucket), got {ramp!r}")
        if B > 1:
            diff = coo_matrix((np.concatenate([np.ones(B - 1), -np.ones(B - 1)]), (np.concatenate([np.arange(B - 1)] * 2), np.concatenate([np.arange(1, B), np.arange(B - 1)]))), shape=(B - 1, B))
            zeros = coo_matrix((B - 1, 2 * n))
            blocks += [hstack([diff, zeros]), hstack([-diff, zeros])]  # P_b - P_{b-1} <= delta and the reverse
            b += [np.full(B - 1, delta), np.full(B - 1, delta)]
        if prev is not None:
            first = coo_matrix(([1.0], ([0], [0])), shape=(1, B + 2 * n))
            blocks += [first, -first]
            b += [np.array([float(prev) + delta]), np.array([delta - float(prev)])]
    A = vstack(blocks).tocsr()
    bounds = [(0.0, float(p_max))] * B + [(0.0, None)] * (2 * n)
    res = linprog(c, A_ub=A, b_ub=np.concatenate(b), bounds=bounds, method="highs")
    if res.status != 0:
        raise RuntimeError(f"newsvendor LP failed: {res.message}")
    P = res.x[:B]
    return (float(P[0]) if one else P.copy()), float(res.fun)


def ramped_fractile(scenarios: np.ndarray, c_idle: float, c_miss: float, p_max: float, *, ramp: float | None = None, prev: float | None = None) -> float:
    """The one-bucket newsvendor optimum in closed form: the critical-fractile quantile
    (``fractile_pool``, the smallest minimiser) clipped to [0, p_max] and, with a ramp, to
    [prev - ramp, prev + ramp] (the cost is convex in P, so the constrained minimiser is the
    clipped unconstrained one). Equals ``newsvendor_lp`` in objective; a test checks it."""
    P = min(max(fractile_pool(scenarios, c_idle, c_miss), 0.0), float(p_max))
    if ramp is not None and prev is not None:
        lo, hi = max(float(prev) - float(ramp), 0.0), min(float(prev) + float(ramp), float(p_max))
        P = min(max(P, lo), max(hi, lo))
    return float(P)


def sample_quantile_function(taus: np.ndarray, qs: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Draws at uniforms ``u`` from the piecewise-linear quantile function through (taus, qs)
    (flat beyond the outermost quantiles; ``qs`` made non-decreasing first)."""
    q = np.maximum.accumulate(np.asarray(qs, dtype=np.float64))
    return np.interp(u, taus, q)


# ---- auto-tuning and back-tests ---------------------------------------------------------------


def untuned_ratio(target: float) -> float:
    """The cost ratio whose critical fractile is the target itself (used when no tuning is possible)."""
    t = min(max(float(target), 0.5), 0.9999)
    return t / (1 - t)


#: a tuner's search that ended at an end of its range (``Tuned.bound``)
FLOOR, CEILING = "floor", "ceiling"


@dataclass
class Tuned:
    """What a tuner found: ``value`` and ``bound``, "" inside the range, ``FLOOR`` when even the
    lowest value met the aim (the range could not go lower), ``CEILING`` when even the highest
    missed it (the value returned falls short of the aim)."""

    value: float
    bound: str = ""


def bisect_smallest(score_fn: Callable[[float], float], aim: float, *, lo: float, hi: float, probes: int = 12, log: bool = True) -> Tuned:
    """The smallest x in [lo, hi] whose ``score_fn(x)`` (non-decreasing in x) reaches ``aim``:
    ``probes`` evaluations, the first two at the ends, the rest halving the bracket (on log x
    when ``log``); ``Tuned(lo, FLOOR)`` when lo already reaches it, ``Tuned(hi, CEILING)`` when
    even hi does not."""
    to = (lambda x: float(np.log(x))) if log else float
    back = (lambda y: float(np.exp(y))) if log else float
    a, b = to(lo), to(hi)
    if score_fn(float(lo)) >= aim:
        return Tuned(float(lo), FLOOR)
    if score_fn(float(hi)) < aim:
        return Tuned(float(hi), CEILING)
    for _ in range(max(int(probes) - 2, 0)):
        m = 0.5 * (a + b)
        if score_fn(back(m)) >= aim:
            b = m
        else:
            a = m
    return Tuned(back(b), "")


#: the range of the auto-tuned cost ratio rho = c_miss / c_idle (quantile level rho / (1 + rho)
#: from 0.5 to 0.9999)
RHO_RANGE = (1.0, 1e4)


def autotune(score_fn: Callable[[float], float], target: float, *, lo: float = RHO_RANGE[0], hi: float = RHO_RANGE[1], probes: int = 12) -> float:
    """The smallest cost ratio rho = c_miss / c_idle in [lo, hi] whose ``score_fn(rho)`` (a
    back-tested hit rate, non-decreasing in rho) reaches ``target``: bisection on log rho with
    ``probes`` evaluations; ``hi`` when even it falls short (``tune_ratio`` also says whether the
    search ended at a bound)."""
    return bisect_smallest(score_fn, target, lo=lo, hi=hi, probes=probes).value


def tune_ratio(score_fn: Callable[[float], float], aim: float, *, probes: int = 12) -> Tuned:
    """``autotune`` over ``RHO_RANGE``, with the bound it ended at (if any)."""
    return bisect_smallest(score_fn, aim, lo=RHO_RANGE[0], hi=RHO_RANGE[1], probes=probes)


def backtest_hit(demand: np.ndarray, decision_targets: np.ndarray, *, lead: int, decision_every: int) -> np.ndarray:
    """Hit rate(s) of per-step targets (K, T) or (T,) held between decisions, on ``demand`` (T,),
    not counting the first ``lead`` steps (no creation can have landed yet)."""
    tg = hold(np.asarray(decision_targets), decision_every)
    res = simulate(demand, tg, lead=lead)
    served = float(np.asarray(demand)[lead:].sum())
    hits = np.asarray(res.hits, dtype=np.float64)
    return np.where(served > 0, hits / max(served, 1.0), 1.0)


def daily_view(history: np.ndarray, steps_per_day: int) -> np.ndarray:
    """The whole days of ``history`` as (days, steps_per_day) (a partial first day dropped)."""
    h = np.asarray(history)
    n = len(h) // steps_per_day
    return h[len(h) - n * steps_per_day :].reshape(n, steps_per_day) if n else h[:0].reshape(0, steps_per_day)


def steps_per_day(view) -> int:
    return int(round(86400 / float(view.step_seconds)))


def bucket_sums(demand: np.ndarray, bucket: int) -> np.ndarray:
    """Requests per ``bucket`` steps, buckets aligned to step 0 (a partial last bucket dropped)."""
    d = np.asarray(demand, dtype=np.float64)
    nb = len(d) // bucket
    return d[: nb * bucket].reshape(nb, bucket).sum(axis=1)


def ssa_rates(history: np.ndarray, *, spd: int, bucket: int, fit_days: int, window_days: float, energy: float, max_rank: int, ahead: int, start: str = "", step_seconds: float = 60.0, day_types: bool = True) -> tuple[np.ndarray, np.ndarray, int]:
    """SSA on the last ``fit_days`` of ``bucket``-step sums of ``history``; returns (per-step
    in-sample reconstruction of the fitted span, per-step forecast of the next ``ahead`` steps
    from ``len(history)``, the step index where the fitted span starts). Rates are bucket values
    spread evenly over their steps, clipped at 0.

    ``day_types``: the series is first divided by its day type's level (mean bucket on weekdays
    vs weekends over the span, relative to the overall mean) and the forecast multiplied back by
    the level of the day it falls on; a one-day SSA window cannot otherwise carry the weekly
    cycle (Monday would be forecast from Sunday)."""
    from coreset_bench.tracks.pooling.sim import calendar

    b = bucket_sums(history, bucket)
    n = min(len(b), int(fit_days * spd // bucket))
    first = len(b) - n
    done = len(b) * bucket  # steps covered by whole buckets
    extra = len(history) - done
    nfc = int(np.ceil((ahead + extra) / bucket)) + 1
    factor = np.ones(n + nfc)
    if day_types and n:
        _, dows = calendar(start, first * bucket, (n + nfc) * bucket, step_seconds)
        weekend = dows[::bucket] >= 5
        span, we = b[first:], weekend[:n]
        overall = float(span.mean())
        if overall > 0 and we.any() and (~we).any():
            lv_we, lv_wd = float(span[we].mean()) / overall, float(span[~we].mean()) / overall
            if lv_we > 0 and lv_wd > 0:
                factor = np.where(weekend, lv_we, lv_wd)
    series = b[first:] / factor[:n]
    model = ssa_fit(series, int(window_days * spd // bucket), energy=energy, max_rank=max_rank)
    span_start = first * bucket
    recon = np.repeat(np.maximum(model.recon * factor[:n], 0) / bucket, bucket)
    fc = np.repeat(np.maximum(model.forecast(nfc) * factor[n:], 0) / bucket, bucket)[extra : extra + ahead]
    return recon, fc, span_start


def calibration(view, tune_days: int, margin: float) -> tuple[list[int], float]:
    """(the whole history days to back-test on, the hit rate the back-test aims at): the
    profile's ``view.calib_days`` and ``target + view.tune_margin`` when it declares them, else
    the last ``tune_days`` whole days and ``target + margin`` (the method's own defaults)."""
    spd = steps_per_day(view)
    D = len(view.history) // spd
    if view.calib_days is not None:
        days = [int(d) for d in view.calib_days if 0 <= int(d) < D]
    else:
        days = list(range(max(D - int(tune_days), 0), D))
    m = float(view.tune_margin) if view.tune_margin is not None else float(margin)
    return days, float(view.target_hit_rate) + m


def consecutive_runs(days: list[int]) -> list[list[int]]:
    """``[3, 4, 7, 12, 13]`` -> ``[[3, 4], [7], [12, 13]]`` (ascending input)."""
    out: list[list[int]] = []
    for d in days:
        if out and d == out[-1][-1] + 1:
            out[-1].append(d)
        else:
            out.append([d])
    return out


def days_concat(history: np.ndarray, days: list[int], spd: int) -> np.ndarray:
    """The demand of ``days`` (whole days of ``history``) one after another."""
    h = np.asarray(history)
    return np.concatenate([h[d * spd : (d + 1) * spd] for d in days]) if days else h[:0]


def tune_info(view, tuned: Tuned, tau: float | None, hit: float | None, requests: float | None = None) -> None:
    """Write what a tuner realized to ``view.info`` (the track keeps it per fit): ``tau`` the
    quantile level, ``tune_hit`` the back-tested hit rate at the tuned value, ``tune_se`` its
    binomial standard error sqrt(h (1 − h) / n) over the n back-tested requests (a lower bound
    of its noise: misses come in bursts), ``tune_bound`` "floor" / "ceiling" when the search
    ended at an end of its range ("" otherwise)."""
    if tau is not None:
        view.info["tau"] = round(float(tau), 6)
    if hit is not None:
        view.info["tune_hit"] = round(float(hit), 6)
        if requests:
            view.info["tune_se"] = round(float(np.sqrt(max(hit * (1 - hit), 0.0) / float(requests))), 6)
    view.info["tune_bound"] = tuned.bound


def backtest_requests(demand: np.ndarray, lead: int) -> float:
    """The requests a back-test counts (all but those of the first ``lead`` steps)."""
    return float(np.asarray(demand)[int(lead) :].sum())
