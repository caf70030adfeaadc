"""``reactive``: scale the recent peak (no forecast).

P_t = ceil(k · max_{τ ∈ (t − W, t]} d_τ) with W = ``window`` steps; k is the smallest value in
[0, ``k_max``] whose back-test on the calibration days (the profile's ``view.calib_days``, the
same for every tuned method; else the last ``tune_days`` of history), on the track's simulator,
reaches target + margin (``view.tune_margin``, else ``margin``): a bisection with ``probes``
evaluations, the same search as the cost-ratio tuners (on k itself, not its log); recalibrated
at every ``fit``. The info of every fit: ``k``, ``tune_hit``, ``tune_bound``.

Version 2 (pooling/quick@2): the profile's calibration days and margin and a bisection
(version 1 took the smallest k of an 81-point grid on the last 7 days reaching the bare target,
whose 0.25 steps overshot while the other tuners' bisections undershot).

Reference: the reactive (recent-peak) baseline of the pooling track (tracks-phase2.md §5.7),
after the threshold autoscalers compared in Ravikumar et al., PVLDB 17(7), 2024.
"""

import numpy as np

from coreset_bench import hookimpl
from coreset_bench.kinds import Param, ProvisioningMethod

from ._pooling import TUNE_SPECS, backtest_hit, backtest_requests, bisect_smallest, calibration, days_concat, steps_per_day, tune_info


def rolling_max(d: np.ndarray, W: int) -> np.ndarray:
    """out[t] = max(d[t-W+1 .. t]) (shorter at the start)."""
    d = np.asarray(d, dtype=np.float64)
    pad = np.concatenate([np.zeros(W - 1), d])
    return np.lib.stride_tricks.sliding_window_view(pad, W).max(axis=1)


class ReactivePool(ProvisioningMethod):
    name = "reactive"
    version = "2"
    summary = "Pool = k × the recent peak; k calibrated on the history to the hit-rate target."
    citation = "Reactive baseline of the pooling track (tracks-phase2.md §5.7)."
    params = {"window": 30, "k_max": 20.0, "tune_days": 2, "margin": 0.001, "probes": 12}
    param_specs = {
        "window": Param(int, min=1, help="steps of the recent peak"),
        "k_max": Param(float, min=0, min_open=True, help="largest multiplier k tried"),
        **TUNE_SPECS,
    }

    def fit(self, view):
        p = self.params
        spd = steps_per_day(view)
        hist = np.asarray(view.history)
        days, aim = calibration(view, int(p["tune_days"]), float(p["margin"]))
        self._k = 1.0
        if not days:
            view.info["k"] = self._k
            return
        # the decision at t uses the peak up to t - 1 (the history excludes d_t)
        peak = rolling_max(hist, int(p["window"]))
        prev = days_concat(np.concatenate([[0.0], peak[:-1]]), days, spd)
        demand = days_concat(hist, days, spd)

        def score(k: float) -> float:
            tg = np.ceil(k * prev - 1e-9)
            return float(backtest_hit(demand, np.minimum(tg, view.max_pool), lead=view.lead, decision_every=view.decision_every)[0])

        tuned = bisect_smallest(score, aim, lo=0.0, hi=float(p["k_max"]), probes=int(p["probes"]), log=False)
        self._k = tuned.value
        view.info["k"] = round(self._k, 6)
        tune_info(view, tuned, None, score(self._k), backtest_requests(demand, view.lead))

    def plan(self, view):
        h = np.asarray(view.history)[-int(self.params["window"]) :]
        peak = float(h.max()) if len(h) else 0.0
        return np.full(view.horizon, float(np.ceil(self._k * peak - 1e-9)))


@hookimpl
def register_methods(register):
    register(ReactivePool())
