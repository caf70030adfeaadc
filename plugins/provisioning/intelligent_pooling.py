"""``intelligent-pooling``: hybrid SSA + neural quantile forecast, sample-average newsvendor LP,
and daily auto-tuning of the cost ratio to the hit-rate target.

A reconstruction of Intelligent Pooling (Zhu et al., PVLDB 17(7), 2024; arXiv 2411.11326 and
its patent), whose formulas are unpublished: every detail below is a parameter.

1. SSA on the last ``fit_days`` of ``bucket``-step demand sums (window ``window_days``, rank by
   the ``energy`` rule capped at ``max_rank``): the seasonal baseline Ŵ(t) of lead-window demand
   W(t) = requests in (t, t + lead + decision_every − 1] (in-sample reconstruction for the
   training rows, the recurrent forecast when planning); with ``day_types`` the series is
   divided by its weekday/weekend level first and the forecast multiplied back. Refit at every fit.
2. An MLP (``hidden`` × 2, ReLU) maps [the last ``lags`` bucket counts, Ŵ(t), sin/cos of the
   minute of day, day-of-week one-hot] (counts divided by the mean of W) to the ``quantiles`` of
   W(t) (non-decreasing by construction: first quantile + cumulative softplus), trained with the
   pinball loss, Adam ``lr``, ``epochs`` full-batch epochs, seeded by the cell, on rows every
   ``stride`` steps of the last ``fit_days`` (10: every other decision, half the training time).
3. Sample-average approximation: ``scenarios`` draws from the predicted piecewise-linear quantile
   function (common random numbers from ``view.rng``); the pool is the newsvendor LP's P
   (``scipy.optimize.linprog``, HiGHS) minimising mean(c_idle (P − D)+ + ρ c_idle (D − P)+),
   which equals the critical-fractile quantile ρ / (1 + ρ) of the scenarios.
   ``solver="fractile"`` takes that quantile directly (same P, faster).
4. Auto-tuning, at every fit: a second model trained on the history before the last
   ``tune_days`` predicts those days' quantiles once (out of sample); each probe of a bisection
   on log ρ ∈ [1, 1e4] (``probes``) maps them to pools through the critical fractile and replays
   the track's simulator; the smallest ρ whose back-test hit rate reaches target + ``margin`` is
   kept.
"""

import numpy as np

from coreset_bench import hookimpl
from coreset_bench.kinds import ProvisioningMethod
from coreset_bench.pooling import calendar

from ._pooling import (
    untuned_ratio,
    autotune,
    backtest_hit,
    critical_fractile,
    fractile_pool,
    newsvendor_lp,
    sample_quantile_function,
    ssa_rates,
    steps_per_day,
    window_demand,
    window_from_rates,
)


class IntelligentPooling(ProvisioningMethod):
    name = "intelligent-pooling"
    version = "1"
    summary = "SSA + MLP quantile forecast of session demand, newsvendor LP (HiGHS), cost ratio auto-tuned daily to the hit-rate target."
    citation = "Zhu et al. Intelligent Pooling: Proactive Resource Provisioning in Large-scale Cloud Service. PVLDB 17(7), 2024. arXiv:2411.11326."
    params = {
        "fit_days": 7, "bucket": 5, "window_days": 1.0, "energy": 0.9, "max_rank": 20,
        "lags": 12, "hidden": 32, "quantiles": [0.5, 0.8, 0.9, 0.95, 0.99, 0.995, 0.999],
        "epochs": 300, "lr": 1e-3, "stride": 10,
        "scenarios": 200, "solver": "highs", "tune_days": 2, "margin": 0.001, "probes": 12, "ahead_days": 2, "day_types": True,
    }

    # ---- features ------------------------------------------------------------------------
    def _features(self, hist, times, W_hat, start, step_seconds):
        p = self.params
        b, lags = int(p["bucket"]), int(p["lags"])
        c = np.concatenate([[0.0], np.cumsum(np.asarray(hist, dtype=np.float64))])
        edges = times[:, None] - b * np.arange(lags, -1, -1)[None, :]  # (n, lags+1) bucket edges before t
        edges = np.clip(edges, 0, len(hist))
        lagged = np.diff(c[edges], axis=1)  # (n, lags)
        mins, dows = calendar(start, 0, 1, step_seconds)
        m = (int(mins[0]) + times * step_seconds / 60.0) % 1440
        d = (int(dows[0]) + (int(mins[0]) * 60 + times * step_seconds) // 86400).astype(np.int64) % 7
        ang = 2 * np.pi * m / 1440.0
        onehot = np.eye(7)[d]
        s = self._scale
        per_bucket = s * b / max(float(self._window), 1.0)  # expected requests per bucket
        return np.column_stack([lagged / per_bucket, W_hat / s, np.sin(ang), np.cos(ang), onehot]).astype(np.float32)

    def _train(self, X, y, seed):
        import torch
        from torch import nn

        taus = torch.tensor(self.params["quantiles"], dtype=torch.float32)
        g = torch.Generator().manual_seed(int(seed))
        h = int(self.params["hidden"])
        net = nn.Sequential(nn.Linear(X.shape[1], h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, len(taus)))
        with torch.no_grad():
            for mod in net:
                if isinstance(mod, nn.Linear):
                    bound = 1.0 / np.sqrt(mod.in_features)
                    mod.weight.copy_(torch.rand(mod.weight.shape, generator=g) * 2 * bound - bound)
                    mod.bias.zero_()
        opt = torch.optim.Adam(net.parameters(), lr=float(self.params["lr"]))
        Xt, yt = torch.from_numpy(X), torch.from_numpy(y.astype(np.float32))[:, None]
        for _ in range(int(self.params["epochs"])):
            q = self._monotone(net(Xt))
            e = yt - q
            loss = torch.maximum(taus * e, (taus - 1) * e).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return net.eval()

    @staticmethod
    def _monotone(out):
        import torch.nn.functional as F
        import torch

        return torch.cat([out[:, :1], out[:, :1] + torch.cumsum(F.softplus(out[:, 1:]), dim=1)], dim=1)

    def _predict(self, net, X):
        import torch

        with torch.no_grad():
            return self._monotone(net(torch.from_numpy(X))).numpy().astype(np.float64) * self._scale

    def _rates(self, history, spd, ahead, start="", step_seconds=60.0):
        p = self.params
        return ssa_rates(history, spd=spd, bucket=int(p["bucket"]), fit_days=int(p["fit_days"]), window_days=float(p["window_days"]), energy=float(p["energy"]), max_rank=int(p["max_rank"]), ahead=ahead,
                         start=start, step_seconds=step_seconds, day_types=bool(p["day_types"]))

    def _model(self, hist, spd, L, de, seed, start, step_seconds, ahead):
        """(net, forecast Ŵ for the next ``ahead`` steps) trained on ``hist``."""
        w = L + de
        recon, fc, span0 = self._rates(hist, spd, ahead + w, start, step_seconds)
        W_hat_in = window_from_rates(np.concatenate([np.zeros(span0), recon, fc[: w]]), L, de)[: len(hist)]
        W = window_demand(hist, L, de)
        lo = max(span0, int(self.params["bucket"]) * int(self.params["lags"]))
        times = np.arange(lo, len(hist) - w, int(self.params["stride"]))
        X = self._features(hist, times, W_hat_in[times], start, step_seconds)
        net = self._train(X, W[times] / self._scale, seed)
        return net, window_from_rates(fc, L, de)[:ahead]

    def fit(self, view):
        p = self.params
        spd = steps_per_day(view)
        hist = np.asarray(view.history)
        L, de = view.lead, view.decision_every
        self._window = L + de - 1
        self._taus = np.asarray(p["quantiles"], dtype=np.float64)
        self._scale = float(window_demand(hist[-int(p["fit_days"]) * spd :], L, de).mean()) + 1.0
        tune = int(p["tune_days"]) * spd
        self._rho = untuned_ratio(view.target_hit_rate)  # kept when the history is too short to tune
        if len(hist) >= tune + 2 * spd:
            past = hist[:-tune]
            net, W_hat = self._model(past, spd, L, de, view.seed, view.start, view.step_seconds, tune)
            at = np.arange(len(past), len(hist), de)
            Q = self._predict(net, self._features(hist, at, W_hat[at - len(past)], view.start, view.step_seconds))
            demand = hist[-tune:]

            def score(rho: float) -> float:
                tau = critical_fractile(1.0, rho)
                P = np.array([np.interp(tau, self._taus, np.maximum.accumulate(q)) for q in Q])
                tg = np.zeros(tune)
                tg[at - len(past)] = np.ceil(np.maximum(P, 0) - 1e-9)
                return float(backtest_hit(demand, np.minimum(tg, view.max_pool), lead=L, decision_every=de)[0])

            self._rho = autotune(score, view.target_hit_rate + float(p["margin"]), probes=int(p["probes"]))
        self._t0 = int(view.t)
        ahead = int(float(p["ahead_days"]) * spd)
        self._net, self._W_hat = self._model(hist, spd, L, de, view.seed + 1, view.start, view.step_seconds, ahead)
        view.info["rho"] = self._rho

    def plan(self, view):
        i = int(view.t) - self._t0
        if i >= len(self._W_hat):
            self.fit(view)
            i = 0
        hist = np.asarray(view.history)
        q = self._predict(self._net, self._features(hist, np.array([int(view.t)]), self._W_hat[i : i + 1], view.start, view.step_seconds))[0]
        q = np.maximum(q, 0)
        u = (view.rng if view.rng is not None else np.random.default_rng(view.seed)).random(int(self.params["scenarios"]))
        scen = sample_quantile_function(self._taus, q, u)
        if self.params["solver"] == "fractile":
            P = fractile_pool(scen, 1.0, self._rho)
        else:
            P, _ = newsvendor_lp(scen, 1.0, self._rho, float(view.max_pool))
        return np.full(view.horizon, float(np.ceil(P - 1e-9)))


@hookimpl
def register_methods(register):
    register(IntelligentPooling())
