"""``seasonal-pooling``: seasonal empirical quantiles of lead-window demand (ablation of the
hybrid forecaster, claim P3 of the pooling track).

For step t of day D, the demand sample is the lead-window demand W (requests in
(t, t + lead + decision_every − 1]) at the same minute of day ± ``neighbourhood`` steps on the
previous ``days`` days of the same type (weekday / weekend). The pool is that sample's empirical
quantile at the critical fractile ρ / (1 + ρ), with the cost ratio ρ = c_miss / c_idle auto-tuned
at every fit: bisection on log ρ ∈ [1, 1e4] (``probes``), back-testing each day of the last
``tune_days`` from the days before it on the track's simulator, picking the smallest ρ whose
hit rate reaches target + ``margin``.

Reference: the seasonal-naive ablation of Intelligent Pooling, Zhu et al., PVLDB 17(7), 2024
(arXiv 2411.11326), as specified in tracks-phase2.md §5.7.
"""

import numpy as np

from coreset_bench import hookimpl
from coreset_bench.kinds import Param, ProvisioningMethod
from coreset_bench.pooling import calendar

from ._pooling import TUNE_SPECS, untuned_ratio, autotune, backtest_hit, critical_fractile, steps_per_day, window_demand


class SeasonalPooling(ProvisioningMethod):
    name = "seasonal-pooling"
    version = "1"
    summary = "Empirical quantile of lead-window demand at the same time on past same-type days, cost ratio auto-tuned."
    citation = "Seasonal-naive ablation of Zhu et al., Intelligent Pooling, PVLDB 17(7), 2024."
    params = {"days": 7, "neighbourhood": 15, "tune_days": 2, "margin": 0.001, "probes": 12}
    param_specs = {
        "days": Param(int, min=1, help="same-type past days the window table is built from"),
        "neighbourhood": Param(int, min=0, help="steps either side pooled into each minute's table"),
        "tune_days": Param(int, min=0, help="days of back-test that tune the cost ratio (0: untuned)"),
        "margin": TUNE_SPECS["margin"],
        "probes": TUNE_SPECS["probes"],
    }

    def _table(self, W_days, weekend, day: int) -> np.ndarray | None:
        """Sorted samples (steps_per_day, n) for day index ``day`` from the observed days before it."""
        last = min(day, len(W_days)) - 1
        same = [j for j in range(last, -1, -1) if weekend[j] == weekend[day]][: int(self.params["days"])]
        if not same:
            same = list(range(last, max(last - int(self.params["days"]), -1), -1))
        if not same:
            return None
        nb = int(self.params["neighbourhood"])
        rows = W_days[same]  # (n_days, spd)
        pad = np.pad(rows, ((0, 0), (nb, nb)), mode="edge")
        win = np.lib.stride_tricks.sliding_window_view(pad, 2 * nb + 1, axis=1)  # (n_days, spd, 2nb+1)
        samples = win.transpose(1, 0, 2).reshape(rows.shape[1], -1)
        return np.sort(samples, axis=1)

    @staticmethod
    def _pick(table: np.ndarray, q: float) -> np.ndarray:
        n = table.shape[1]
        k = min(max(int(np.ceil(q * n - 1e-12)) - 1, 0), n - 1)
        return table[:, k]

    def fit(self, view):
        spd = steps_per_day(view)
        hist = np.asarray(view.history)
        D = len(hist) // spd  # whole days of history (the track fits at day boundaries)
        self._spd = spd
        W = window_demand(hist, view.lead, view.decision_every)
        W_days = W[: D * spd].reshape(D, spd) if D else np.zeros((0, spd))
        _, dows = calendar(view.start, 0, (D + 2) * spd, view.step_seconds)
        weekend = (dows[::spd] >= 5)
        self._rho = untuned_ratio(view.target_hit_rate)  # kept when the history is too short to tune
        tune = [j for j in range(max(D - int(self.params["tune_days"]), 1), D)]
        tables = [(j, self._table(W_days, weekend, j)) for j in tune]
        tables = [(j, t) for j, t in tables if t is not None]
        if tables:
            demand = np.concatenate([hist[j * spd : (j + 1) * spd] for j, _ in tables])

            def score(rho: float) -> float:
                q = critical_fractile(1.0, rho)
                tg = np.concatenate([self._pick(t, q) for _, t in tables])
                return float(backtest_hit(demand, np.minimum(tg, view.max_pool), lead=view.lead, decision_every=view.decision_every)[0])

            self._rho = autotune(score, view.target_hit_rate + float(self.params["margin"]), probes=int(self.params["probes"]))
        self._day0 = D
        self._tables = {D + i: self._table(W_days, weekend, D + i) for i in range(2)} if D else {}
        view.info["rho"] = self._rho

    def plan(self, view):
        day, minute = divmod(int(view.t), self._spd)
        table = self._tables.get(day)
        if table is None:
            recent = np.asarray(view.history)[-60:]
            return np.full(view.horizon, float(recent.sum()) if len(recent) else 0.0)
        return np.full(view.horizon, float(self._pick(table, critical_fractile(1.0, self._rho))[minute]))


@hookimpl
def register_methods(register):
    register(SeasonalPooling())
