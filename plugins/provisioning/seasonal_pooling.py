"""``seasonal-pooling``: seasonal empirical quantiles of decision-window demand (ablation of the
hybrid forecaster, claim P3 of the pooling track).

For step t of day D, the demand sample is the decision-window demand M (max_{j < decision_every}
of the requests in (t + j, t + j + lead], ``_pooling.decision_demand``) at the same minute of
day ± ``neighbourhood`` steps on the previous ``days`` days of the same type (weekday /
weekend). The pool is that sample's empirical quantile at the critical fractile ρ / (1 + ρ),
with the cost ratio ρ = c_miss / c_idle auto-tuned at every fit: bisection on log ρ ∈ [1, 1e4]
(``probes``), back-testing each calibration day (the profile's ``view.calib_days``, the same
for every tuned method; else the last ``tune_days``) from the days before it on the track's
simulator, picking the smallest ρ whose hit rate reaches target + margin
(``view.tune_margin``, else ``margin``). The info of every fit: ``rho``, ``tau``, ``tune_hit``,
``tune_bound``.

Version 2 (pooling/quick@2): the decision-window demand M(t) instead of the requests of
(t, t + lead + decision_every − 1]; the profile's calibration days and margin.

Reference: the seasonal-naive ablation of Intelligent Pooling, Ravikumar et al., PVLDB 17(7), 2024
(arXiv 2411.11326), as specified in tracks-phase2.md §5.7.
"""

import numpy as np

from coreset_bench import hookimpl
from coreset_bench.kinds import Param, ProvisioningMethod
from coreset_bench.tracks.pooling.sim import calendar

from ._pooling import TUNE_SPECS, Tuned, backtest_hit, backtest_requests, calibration, critical_fractile, decision_demand, steps_per_day, tune_info, tune_ratio, untuned_ratio


class SeasonalPooling(ProvisioningMethod):
    name = "seasonal-pooling"
    version = "2"
    summary = "Empirical quantile of lead-window demand at the same time on past same-type days, cost ratio auto-tuned."
    citation = "Seasonal-naive ablation of Ravikumar et al., Intelligent Pooling, PVLDB 17(7), 2024."
    params = {"days": 7, "neighbourhood": 15, "tune_days": 2, "margin": 0.001, "probes": 12}
    param_specs = {
        "days": Param(int, min=1, help="same-type past days the window table is built from"),
        "neighbourhood": Param(int, min=0, help="steps either side pooled into each minute's table"),
        "tune_days": Param(int, min=0, help="days of back-test that tune the cost ratio when the profile declares no calibration days (0: untuned)"),
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
        W = decision_demand(hist, view.lead, view.decision_every)
        W_days = W[: D * spd].reshape(D, spd) if D else np.zeros((0, spd))
        _, dows = calendar(view.start, 0, (D + 2) * spd, view.step_seconds)
        weekend = (dows[::spd] >= 5)
        self._rho = untuned_ratio(view.target_hit_rate)  # kept when the history is too short to tune
        days, aim = calibration(view, int(self.params["tune_days"]), float(self.params["margin"]))
        tables = [(j, self._table(W_days, weekend, j)) for j in days if j >= 1]
        tables = [(j, t) for j, t in tables if t is not None]
        tuned, tune_hit, n_req = Tuned(self._rho, ""), None, None
        if tables:
            demand = np.concatenate([hist[j * spd : (j + 1) * spd] for j, _ in tables])

            def score(rho: float) -> float:
                q = critical_fractile(1.0, rho)
                tg = np.concatenate([self._pick(t, q) for _, t in tables])
                return float(backtest_hit(demand, np.minimum(tg, view.max_pool), lead=view.lead, decision_every=view.decision_every)[0])

            tuned = tune_ratio(score, aim, probes=int(self.params["probes"]))
            self._rho = tuned.value
            tune_hit = score(self._rho)
            n_req = backtest_requests(demand, view.lead)
        self._day0 = D
        self._tables = {D + i: self._table(W_days, weekend, D + i) for i in range(2)} if D else {}
        view.info["rho"] = round(float(self._rho), 4)
        tune_info(view, tuned, critical_fractile(1.0, self._rho), tune_hit, n_req)

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
