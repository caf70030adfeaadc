"""``intelligent-pooling``: hybrid SSA + neural quantile forecast, sample-average newsvendor LP,
and daily auto-tuning of the cost ratio to the hit-rate target.

A reconstruction of Intelligent Pooling (Ravikumar et al., PVLDB 17(7), 2024; arXiv 2411.11326 and
its patent), whose formulas are unpublished: every detail below is a parameter.

1. SSA on the last ``fit_days`` of ``bucket``-step demand sums (window ``window_days``, rank by
   the ``energy`` rule capped at ``max_rank``): the seasonal baseline M̂(t) of the
   decision-window demand M(t) = max_{j < decision_every} (requests in (t + j, t + j + lead]),
   what a pool held from t to t + decision_every − 1 must cover (``_pooling.decision_demand``;
   in-sample reconstruction for the training rows, the recurrent forecast when planning); with
   ``day_types`` the series is divided by its weekday/weekend level first and the forecast
   multiplied back. Refit at every fit.
2. An MLP (``hidden`` × 2, ReLU) maps [the last ``lags`` bucket counts, M̂(t), sin/cos of the
   minute of day, day-of-week one-hot] (counts divided by the mean of M) to the ``quantiles`` of
   M(t) (non-decreasing by construction: first quantile + cumulative softplus), trained with the
   pinball loss, Adam ``lr``, ``epochs`` full-batch epochs, seeded by the cell, on rows every
   ``stride`` steps of the last ``fit_days`` (0, the default: every ``decision_every`` steps,
   in phase with the decisions, so the rows are the steps the model is asked about).
3. Sample-average approximation: ``scenarios`` draws from the predicted piecewise-linear quantile
   function (common random numbers from ``view.rng``); the pool is the optimum of the newsvendor
   LP minimising mean(c_idle (P − D)+ + ρ c_idle (D − P)+) over 0 <= P <= max_pool, with an
   optional ramp limit |P − P_prev| <= ``ramp`` against the previous decision's pool.
   ``solver``: ``"highs"`` solves that LP on ``scipy.optimize.linprog`` (HiGHS); ``"fractile"``
   takes its closed-form optimum, the critical-fractile quantile ρ / (1 + ρ) of the scenarios
   clipped to the ramp window (``ramped_fractile``: the same objective, a test checks it; where
   the optimum is an interval, when ρ / (1 + ρ) · ``scenarios`` is an integer, the smallest end);
   ``"auto"`` (default) is ``"fractile"``: one LP per decision costs ~7 ms of the cell's CPU
   2,016 times for the same answer.
4. Auto-tuning, at every fit, on the calibration days (the profile's ``view.calib_days``, the
   same for every tuned method; else the last ``tune_days``): each run of consecutive
   calibration days is predicted out of sample by a model trained on the history before it
   (days with fewer than 2 days of history before them are skipped); each probe of a bisection
   on log ρ ∈ [1, 1e4] (``probes``) maps the predicted quantiles to pools through the critical
   fractile and replays the track's simulator on those days; the smallest ρ whose back-test hit
   rate reaches target + margin (``view.tune_margin``, else ``margin``) is kept. Models are
   memoised by their training history (each is seeded by its length and normalised by its own
   history's mean M): a back-test model that is an earlier fit's model is trained once.

The realized ρ of every fit, its quantile level, its back-tested hit rate and whether the
search ended at an end of its range are written to ``view.info`` (``rho``, ``tau``,
``tune_hit``, ``tune_bound``); the pooling track stores them per cell.

Version 3 (pooling/quick@2): the decision-window demand M(t) instead of the requests of
(t, t + lead + decision_every − 1] (which overshot what the simulator serves, so ρ sat at its
floor 1 in 8 of 36 quick@1 fits and the upper quantiles were never used); the profile's
calibration days and margin; out-of-sample back-test models per run of calibration days;
training rows at every decision step (``stride`` 0; version 2's stride 10 trained on every other
decision step, all at minutes :00, :10, ..., never on a window that starts at :55 and holds the
next hour's first minutes, so it could not learn demand that comes on the hour).
Version 2 (pooling/quick@1 re-run): models memoised and seeded by their history length and
normalised by their own history (version 1 normalised the back-test model with the mean of a
history that included the back-test days), ``solver="auto"``, the ``ramp`` parameter.
"""

import numpy as np

from coreset_bench import hookimpl
from coreset_bench.kinds import Param, ProvisioningMethod
from coreset_bench.tracks.pooling.sim import calendar

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
    newsvendor_lp,
    ramped_fractile,
    sample_quantile_function,
    ssa_rates,
    steps_per_day,
    tune_info,
    backtest_requests,
    tune_ratio,
    untuned_ratio,
)

#: days of history a back-test model needs before the calibration days it predicts
MIN_TRAIN_DAYS = 2


class IntelligentPooling(ProvisioningMethod):
    name = "intelligent-pooling"
    version = "3"
    summary = "SSA + MLP quantile forecast of session demand, newsvendor LP (HiGHS), cost ratio auto-tuned daily to the hit-rate target."
    citation = "Ravikumar et al. Intelligent Pooling: Proactive Resource Provisioning in Large-scale Cloud Service. PVLDB 17(7), 2024. arXiv:2411.11326."
    params = {
        "fit_days": 7, "bucket": 5, "window_days": 1.0, "energy": 0.9, "max_rank": 20,
        "lags": 12, "hidden": 32, "quantiles": [0.5, 0.8, 0.9, 0.95, 0.99, 0.995, 0.999],
        "epochs": 300, "lr": 1e-3, "stride": 0,
        "scenarios": 200, "solver": "auto", "ramp": None, "tune_days": 2, "margin": 0.001, "probes": 12, "ahead_days": 2, "day_types": True,
    }
    param_specs = {
        **SSA_SPECS,
        **TUNE_SPECS,
        "lags": Param(int, min=1, help="lagged buckets fed to the quantile MLP"),
        "hidden": Param(int, min=1, help="hidden units of the quantile MLP"),
        "epochs": Param(int, min=1, help="training epochs of the quantile MLP"),
        "lr": Param(float, min=0, min_open=True, help="Adam learning rate of the quantile MLP"),
        "stride": Param(int, min=0, help="steps between training rows (0: every decision step)"),
        "scenarios": Param(int, min=1, help="demand scenarios sampled for the newsvendor LP"),
        "solver": Param(str, choices=("auto", "fractile", "highs"), help="auto: closed form without a ramp limit, HiGHS with one"),
        "ramp": Param(float, min=0, nullable=True, help="largest pool change per horizon bucket (none: unlimited)"),
    }

    # ---- features ------------------------------------------------------------------------
    def _features(self, hist, times, W_hat, start, step_seconds, scale):
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
        s = float(scale)
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

    def _predict(self, net, X, scale):
        import torch

        with torch.no_grad():
            return self._monotone(net(torch.from_numpy(X))).numpy().astype(np.float64) * float(scale)

    def _rates(self, history, spd, ahead, start="", step_seconds=60.0):
        p = self.params
        return ssa_rates(history, spd=spd, bucket=int(p["bucket"]), fit_days=int(p["fit_days"]), window_days=float(p["window_days"]), energy=float(p["energy"]), max_rank=int(p["max_rank"]), ahead=ahead,
                         start=start, step_seconds=step_seconds, day_types=bool(p["day_types"]))

    def _model(self, hist, spd, L, de, seed, start, step_seconds, ahead):
        """(net, scale, forecast M̂ for the next ``ahead`` steps) trained on ``hist``; seeded by
        ``len(hist)``, memoised by the history's content and the settings (a longer forecast of
        a memoised model refits only the SSA, which is deterministic)."""
        import hashlib

        h = np.ascontiguousarray(hist, dtype=np.int64)
        key = (len(h), hashlib.sha1(h.tobytes()).hexdigest(), int(L), int(de), int(seed), str(start), float(step_seconds))
        p = self.params
        w = L + de
        hit = self._models.get(key)
        if hit is not None:
            net, scale, fc = hit
            if len(fc) < ahead + w:
                _, fc, _ = self._rates(hist, spd, ahead + w, start, step_seconds)
                self._models[key] = (net, scale, fc)
            return net, scale, decision_from_rates(fc, L, de)[:ahead]
        scale = float(decision_demand(hist[-int(p["fit_days"]) * spd :], L, de).mean()) + 1.0
        recon, fc, span0 = self._rates(hist, spd, ahead + w, start, step_seconds)
        M_hat_in = decision_from_rates(np.concatenate([np.zeros(span0), recon, fc[:w]]), L, de)[: len(hist)]
        M = decision_demand(hist, L, de)
        lo = max(span0, int(p["bucket"]) * int(p["lags"]))
        stride = int(p["stride"]) or int(de)
        lo += (-lo) % int(de) if not int(p["stride"]) else 0  # in phase with the decisions (steps multiple of de)
        times = np.arange(lo, len(hist) - w, stride)
        X = self._features(hist, times, M_hat_in[times], start, step_seconds, scale)
        net = self._train(X, M[times] / scale, (int(seed) * 1_000_003 + len(h)) % 2**31)
        if len(self._models) >= 8:  # the oldest are never asked again (fits move forward in time)
            self._models.pop(next(iter(self._models)))
        self._models[key] = (net, scale, fc)
        return net, scale, decision_from_rates(fc, L, de)[:ahead]

    def _backtest(self, view, hist, spd, days):
        """(per-step quantiles (n, len(quantiles)) at the decision steps of ``days``, the days'
        demand): each run of consecutive days predicted by a model trained before it."""
        L, de = view.lead, view.decision_every
        Qs = []
        for run in consecutive_runs(days):
            past = hist[: run[0] * spd]
            stop = (run[-1] + 1) * spd
            net, scale, M_hat = self._model(past, spd, L, de, view.seed, view.start, view.step_seconds, stop - len(past))
            at = np.concatenate([d * spd + np.arange(0, spd, de) for d in run])
            X = self._features(hist, at, M_hat[at - len(past)], view.start, view.step_seconds, scale)
            Qs.append(np.maximum.accumulate(self._predict(net, X, scale), axis=1))
        return np.concatenate(Qs), days_concat(hist, days, spd)

    def fit(self, view):
        p = self.params
        spd = steps_per_day(view)
        hist = np.asarray(view.history)
        L, de = view.lead, view.decision_every
        self._window = L
        self._taus = np.asarray(p["quantiles"], dtype=np.float64)
        if getattr(self, "_models", None) is None:
            self._models = {}
        ahead = int(float(p["ahead_days"]) * spd)
        days, aim = calibration(view, int(p["tune_days"]), float(p["margin"]))
        days = [d for d in days if d >= MIN_TRAIN_DAYS]
        self._rho = untuned_ratio(view.target_hit_rate)  # kept when the history is too short to tune
        tuned, tune_hit, n_req = Tuned(self._rho, ""), None, None
        if days:
            Q, demand = self._backtest(view, hist, spd, days)
            per_day = -(-spd // de)

            def score(rho: float) -> float:
                tau = critical_fractile(1.0, rho)
                P = np.ceil(np.maximum([np.interp(tau, self._taus, q) for q in Q], 0) - 1e-9)
                tg = np.repeat(P.reshape(len(days), per_day), de, axis=1)[:, :spd].reshape(-1)
                return float(backtest_hit(demand, np.minimum(tg, view.max_pool), lead=L, decision_every=1)[0])

            tuned = tune_ratio(score, aim, probes=int(p["probes"]))
            self._rho = tuned.value
            tune_hit = score(self._rho)
            n_req = backtest_requests(demand, view.lead)
        self._t0 = int(view.t)
        self._net, self._scale, self._M_hat = self._model(hist, spd, L, de, view.seed, view.start, view.step_seconds, ahead)
        self._prev = None
        view.info["rho"] = round(float(self._rho), 4)
        tune_info(view, tuned, critical_fractile(1.0, self._rho), tune_hit, n_req)

    def plan(self, view):
        i = int(view.t) - self._t0
        if i >= len(self._M_hat):
            self.fit(view)
            i = 0
        hist = np.asarray(view.history)
        q = self._predict(self._net, self._features(hist, np.array([int(view.t)]), self._M_hat[i : i + 1], view.start, view.step_seconds, self._scale), self._scale)[0]
        q = np.maximum(q, 0)
        u = (view.rng if view.rng is not None else np.random.default_rng(view.seed)).random(int(self.params["scenarios"]))
        scen = sample_quantile_function(self._taus, q, u)
        ramp = self.params["ramp"]
        ramp = None if ramp is None else float(ramp)
        solver = self.params["solver"]
        if solver not in ("auto", "fractile", "highs"):
            raise ValueError(f"intelligent-pooling: solver must be 'auto', 'fractile' or 'highs', got {solver!r}")
        if solver == "highs":
            P, _ = newsvendor_lp(scen, 1.0, self._rho, float(view.max_pool), ramp=ramp, prev=self._prev)
        else:
            P = ramped_fractile(scen, 1.0, self._rho, float(view.max_pool), ramp=ramp, prev=self._prev)
        P = float(np.ceil(P - 1e-9))
        if ramp is not None and self._prev is not None:  # the rounding must not break the ramp
            P = min(P, float(np.floor(self._prev + ramp + 1e-9)))
        self._prev = P
        return np.full(view.horizon, P)


@hookimpl
def register_methods(register):
    register(IntelligentPooling())
