"""``ssa-pooling``: SSA forecast plus back-tested residual quantiles (ablation of the hybrid
forecaster: its SSA part alone, claim P3 of the pooling track).

At every fit (daily in the track): SSA (``ssa_fit``: Hankel embedding with a ``window_days``
window of ``bucket``-step sums, rank by the ``energy`` rule capped at ``max_rank``, linear
recurrent forecast; with ``day_types`` on the series divided by its weekday/weekend level) on
the last ``fit_days`` of history. The residuals are those of a back-test:
the same SSA fitted on the history before the last ``tune_days`` forecasts those days, and
r = W − Ŵ at each decision step, with W the lead-window demand (requests in
(t, t + lead + decision_every − 1]) and Ŵ its forecast. The pool is Ŵ(t) + the residual quantile
at the critical fractile ρ / (1 + ρ); ρ = c_miss / c_idle is auto-tuned on the back-test
(bisection on log ρ ∈ [1, 1e4], smallest ρ reaching target + ``margin``).

Reference: singular spectrum analysis, Golyandina, Nekrutkin, Zhigljavsky (2001); the SSA part
of Intelligent Pooling, Zhu et al., PVLDB 17(7), 2024 (arXiv 2411.11326).
"""

import numpy as np

from coreset_bench import hookimpl
from coreset_bench.kinds import Param, ProvisioningMethod

from ._pooling import SSA_SPECS, TUNE_SPECS, untuned_ratio, autotune, backtest_hit, critical_fractile, ssa_rates, steps_per_day, window_demand, window_from_rates


def empirical_quantile(x: np.ndarray, q: float) -> float:
    s = np.sort(np.asarray(x, dtype=np.float64))
    if not len(s):
        return 0.0
    return float(s[min(max(int(np.ceil(q * len(s) - 1e-12)) - 1, 0), len(s) - 1)])


class SSAPooling(ProvisioningMethod):
    name = "ssa-pooling"
    version = "1"
    summary = "SSA forecast of demand plus back-tested residual quantiles; cost ratio auto-tuned to the target."
    citation = "Golyandina, Nekrutkin, Zhigljavsky. Analysis of Time Series Structure: SSA and Related Techniques, 2001; Zhu et al., Intelligent Pooling, PVLDB 17(7), 2024 (SSA ablation)."
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
        tune = int(p["tune_days"]) * spd
        self._rho, self._resid = untuned_ratio(view.target_hit_rate), np.zeros(1)  # kept when the history is too short to tune
        if len(hist) >= tune + 2 * spd:
            _, fc, _ = self._rates(hist[:-tune], spd, tune + w, view.start, view.step_seconds)
            W_hat = window_from_rates(fc, L, de)[:tune]
            W = window_demand(hist, L, de)[-tune:]
            at = np.arange(0, tune - w, de)  # decision steps with a complete window
            self._resid = (W - W_hat)[at]
            demand = hist[-tune:]

            def score(rho: float) -> float:
                tg = np.maximum(np.ceil(W_hat + empirical_quantile(self._resid, critical_fractile(1.0, rho)) - 1e-9), 0)
                return float(backtest_hit(demand, np.minimum(tg, view.max_pool), lead=L, decision_every=de)[0])

            self._rho = autotune(score, view.target_hit_rate + float(p["margin"]), probes=int(p["probes"]))
        self._t0 = int(view.t)
        ahead = int(float(p["ahead_days"]) * spd)
        if len(hist) >= spd:
            _, fc, _ = self._rates(hist, spd, ahead + w, view.start, view.step_seconds)
        else:
            fc = np.full(ahead + w, float(hist.mean()) if len(hist) else 0.0)
        self._W_hat = window_from_rates(fc, L, de)[:ahead]
        self._offset = empirical_quantile(self._resid, critical_fractile(1.0, self._rho))
        view.info["rho"] = self._rho

    def plan(self, view):
        i = int(view.t) - self._t0
        if i >= len(self._W_hat):
            self.fit(view)
            i = 0
        return np.full(view.horizon, max(float(np.ceil(self._W_hat[i] + self._offset - 1e-9)), 0.0))


@hookimpl
def register_methods(register):
    register(SSAPooling())
