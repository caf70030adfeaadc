"""``reactive``: scale the recent peak (no forecast).

P_t = ceil(k · max_{τ ∈ (t − W, t]} d_τ) with W = ``window`` steps; k is the smallest value on a
grid (``k_grid`` points in [0, ``k_max``]) whose back-test on the last ``calib_days`` of history,
on the track's simulator, reaches the hit-rate target; recalibrated at every ``fit``.

Reference: the reactive (recent-peak) baseline of the pooling track (tracks-phase2.md §5.7),
after the threshold autoscalers compared in Zhu et al., PVLDB 17(7), 2024.
"""

import numpy as np

from coreset_bench import hookimpl
from coreset_bench.kinds import Param, ProvisioningMethod

from ._pooling import backtest_hit, daily_view, steps_per_day


def rolling_max(d: np.ndarray, W: int) -> np.ndarray:
    """out[t] = max(d[t-W+1 .. t]) (shorter at the start)."""
    d = np.asarray(d, dtype=np.float64)
    pad = np.concatenate([np.zeros(W - 1), d])
    return np.lib.stride_tricks.sliding_window_view(pad, W).max(axis=1)


class ReactivePool(ProvisioningMethod):
    name = "reactive"
    version = "1"
    summary = "Pool = k × the recent peak; k calibrated on the history to the hit-rate target."
    citation = "Reactive baseline of the pooling track (tracks-phase2.md §5.7)."
    params = {"window": 30, "calib_days": 7, "k_max": 20.0, "k_grid": 81}
    param_specs = {
        "window": Param(int, min=1, help="steps of the recent peak"),
        "calib_days": Param(int, min=1, help="days of history k is calibrated on"),
        "k_max": Param(float, min=0, min_open=True, help="largest multiplier k tried"),
        "k_grid": Param(int, min=2, help="multipliers tried in [0, k_max]"),
    }

    def fit(self, view):
        p = self.params
        spd = steps_per_day(view)
        days = daily_view(view.history, spd)[-int(p["calib_days"]) :]
        if not len(days):
            self._k = 1.0
            return
        d = days.reshape(-1)
        W = int(p["window"])
        base = rolling_max(np.concatenate([np.asarray(view.history)[-(len(d) + W) : -len(d)] if len(view.history) > len(d) else np.zeros(0), d]), W)[-len(d):]
        ks = np.linspace(0.0, float(p["k_max"]), int(p["k_grid"]))
        # decision at t uses the peak up to t - 1 (history excludes d_t)
        prev = np.concatenate([[0.0], base[:-1]])
        tg = np.ceil(ks[:, None] * prev[None, :] - 1e-9)
        hits = backtest_hit(d, np.minimum(tg, view.max_pool), lead=view.lead, decision_every=view.decision_every)
        ok = np.flatnonzero(hits >= view.target_hit_rate)
        self._k = float(ks[ok[0]] if len(ok) else ks[-1])
        view.info["k"] = self._k

    def plan(self, view):
        h = np.asarray(view.history)[-int(self.params["window"]) :]
        peak = float(h.max()) if len(h) else 0.0
        return np.full(view.horizon, float(np.ceil(self._k * peak - 1e-9)))


@hookimpl
def register_methods(register):
    register(ReactivePool())
