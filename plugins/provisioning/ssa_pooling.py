"""``ssa-pooling``: SSA forecast plus back-tested residual quantiles (ablation of the hybrid
forecaster: its SSA part alone, claim P3 of the pooling track).

At every fit: SSA (``ssa_fit``: Hankel embedding with a ``window_days`` window of
``bucket``-step sums, rank by the ``energy`` rule capped at ``max_rank``, linear recurrent
forecast; with ``day_types`` on the series divided by its weekday/weekend level) on the last
``fit_days`` of history. The residuals are those of a back-test on the calibration days (the
profile's ``view.calib_days``, the same for every tuned method; else the last ``tune_days``):
each run of consecutive calibration days is forecast by the same SSA fitted on the history
before it (days with fewer than 2 days of history before them are skipped), and
r = M − M̂ at each decision step, with M the decision-window demand
(max_{j < decision_every} requests in (t + j, t + j + lead], ``_pooling.decision_demand``) and
M̂ its forecast. The pool is M̂(t) + the residual quantile at the critical fractile
ρ / (1 + ρ); ρ = c_miss / c_idle is auto-tuned on the back-test (bisection on log ρ ∈ [1, 1e4],
smallest ρ reaching target + margin, ``view.tune_margin`` else ``margin``). The info of every
fit: ``rho``, ``tau``, ``tune_hit``, ``tune_bound``.

Version 2 (pooling/quick@2): the decision-window demand M(t) instead of the requests of
(t, t + lead + decision_every − 1]; the profile's calibration days and margin.

Reference: singular spectrum analysis, Golyandina, Nekrutkin, Zhigljavsky (2001); the SSA part
of Intelligent Pooling, Ravikumar et al., PVLDB 17(7), 2024 (arXiv 2411.11326).
"""

import numpy as np

from coreset_bench import hookimpl
from coreset_bench.kinds import Param, ProvisioningMethod

from ._pooling import (
    SSA_SPECS,
    TUNE_SPECS,
    Tuned,
    backtest_hit,
    calibration,
    consecutive_runs,
    critical_fractile,
    days_concat,
    decision_demand,
    decision_from_rates,
    ssa_rates,
    steps_per_day,
    tune_info,
    backtest_requests,
    tune_ratio,
    untuned_ratio,
)

#: days of history the back-test SSA needs before the calibration days it forecasts
MIN_TRAIN_DAYS = 2


def empirical_quantile(x: np.ndarray, q: float) -> float:
    s = np.sort(np.asarray(x, dtype=np.float64))
    if not len(s):
        return 0.0
    return float(s[min(max(int(np.ceil(q * len(s) - 1e-12)) - 1, 0), len(s) - 1)])


class SSAPooling(ProvisioningMethod):
    name = "ssa-pooling"
    version = "2"
    summary = "SSA forecast of demand plus back-tested residual quantiles; cost ratio auto-tuned to the target."
    citation = "Golyandina, Nekrutkin, Zhigljavsky. Analysis of Time Series Structure: SSA and Related Techniques, 2001; Ravikumar et al., Intelligent Pooling, PVLDB 17(7), 2024 (SSA ablation)."
    params = {"fit_days": 7, "bucket": 5, "window_days": 1.0, "energy": 0.9, "max_rank": 20, "tune_days": 2, "margin": 0.001, "probes": 12, "ahead_days": 2, "day_types": True}
    param_specs = {**SSA_SPECS, **TUNE_SPECS}

    def _rates(self, history, spd, ahead, start="", step_seconds=60.0):
        p = self.params
        return ssa_rates(history, spd=spd, bucket=int(p["bucket"]), fit_days=int(p["fit_days"]), window_days=float(p["window_days"]), energy=float(p["energy"]), max_rank=int(p["max_rank"]), ahead=ahead,
                         start=start, step_seconds=step_seconds, day_types=bool(p["day_types"]))

    def fit(self, view):
        p = self.params
        spd = steps_per_day(view)
        hist = np.asarray(view.history)
        L, de = view.lead, view.decision_every
        w = L + de
        days, aim = calibration(view, int(p["tune_days"]), float(p["margin"]))
        days = [d for d in days if d >= MIN_TRAIN_DAYS]
        self._rho, self._resid = untuned_ratio(view.target_hit_rate), np.zeros(1)  # kept when the history is too short to tune
        tuned, tune_hit, n_req = Tuned(self._rho, ""), None, None
        if days:
            M = decision_demand(hist, L, de)
            hats, resids = [], []
            for run in consecutive_runs(days):
                past = run[0] * spd
                n = (run[-1] + 1) * spd - past
                _, fc, _ = self._rates(hist[:past], spd, n + w, view.start, view.step_seconds)
                M_hat = decision_from_rates(fc, L, de)[:n]
                hats.append(M_hat)
                at = past + np.arange(0, n, de)
                at = at[at + w - 1 <= len(hist)]  # decision steps whose window the history holds
                resids.append(M[at] - M_hat[at - past])
            M_hat_days = np.concatenate(hats)
            self._resid = np.concatenate(resids)
            demand = days_concat(hist, days, spd)

            def score(rho: float) -> float:
                tg = np.maximum(np.ceil(M_hat_days + empirical_quantile(self._resid, critical_fractile(1.0, rho)) - 1e-9), 0)
                return float(backtest_hit(demand, np.minimum(tg, view.max_pool), lead=L, decision_every=de)[0])

            tuned = tune_ratio(score, aim, probes=int(p["probes"]))
            self._rho = tuned.value
            tune_hit = score(self._rho)
            n_req = backtest_requests(demand, view.lead)
        self._t0 = int(view.t)
        ahead = int(float(p["ahead_days"]) * spd)
        if len(hist) >= spd:
            _, fc, _ = self._rates(hist, spd, ahead + w, view.start, view.step_seconds)
        else:
            fc = np.full(ahead + w, float(hist.mean()) if len(hist) else 0.0)
        self._M_hat = decision_from_rates(fc, L, de)[:ahead]
        self._offset = empirical_quantile(self._resid, critical_fractile(1.0, self._rho))
        view.info["rho"] = round(float(self._rho), 4)
        tune_info(view, tuned, critical_fractile(1.0, self._rho), tune_hit, n_req)

    def plan(self, view):
        i = int(view.t) - self._t0
        if i >= len(self._M_hat):
            self.fit(view)
            i = 0
        return np.full(view.horizon, max(float(np.ceil(self._M_hat[i] + self._offset - 1e-9)), 0.0))


@hookimpl
def register_methods(register):
    register(SSAPooling())
