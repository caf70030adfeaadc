"""``curvature-mia``: curvature-based membership inference ("Curvature Clues", Ravikumar, Soufleri,
Hashemi & Roy, NeurIPS 2024), exactly as ``precompute_scores/precompute_cifar10_scores.py`` and
``conditonal_mia_aug_cifar10.ipynb`` of DeepakTatachar/Curvature-Clues compute it.

**Score per model, view and query** (``get_curvature_for_batch_zo_v2``, black box, no gradient):
for k = 1..n_iter draw independent Rademacher r_v, r_u, set v = h (r_v + 1e-7),
u = h (r_u + 1e-7) in normalized-input units (h = 1e-3) and

    H_k = [l(x+v+u) - l(x-v+u) - l(x+v-u) + l(x-v-u)] / (4 h),    curv = (1/n_iter) sum_k |H_k|

with l the per-sample cross-entropy; s = log(curv + 1e-22). 1 + 4 n_iter forwards per query,
model and view; views are the identity and the horizontal flip where the dataset allows flips.
The Rademacher draws come from a generator seeded with the view's seed, restarted for every
model and view (common random numbers; the reference seeds only globally).

**Test statistic** over the shadows that did ("in") / did not ("out") hold the query, per view a:
mu_in, var_in, mu_out, var_out (nan-mean / nan-var, ddof 0).

* ``stat="nll"`` (the paper's best, "Curv ZO NLL"):
  sum_a NLL(s_a; mu_out,a, v_a) - sum_a NLL(s_a; mu_in,a, v_a) with
  NLL(s; mu, v) = (s - mu)^2 / (2 v^2) + 1/2 log v^2 + 1/2 log 2 pi.
  ``variance_mode="paper_code"``: v_a = var_in,a + 1e-32 for *both* hypotheses and the variance is
  used in the place of sigma (the code's quirks, kept to match its numbers); ``"proper"``:
  sigma^2 = var (+1e-32) with separate in/out variances, i.e. the Gaussian log-likelihood ratio.
* ``stat="lr"`` ("Curv ZO LR"): sum_a N(s_a; mu_in, .) / (sum_a N(s_a; mu_out, .) + 1e-22), with
  the variance as sigma (``paper_code``) or sigma^2 = var (``proper``).

``estimator="hutchinson_zo"`` swaps the score for the symmetric second difference
(l(x+v) - 2 l(x) + l(x-v)) / h^2 (a Hutchinson trace estimate), the ablation the reference notes
suggest. The module also registers ``zero-order-curvature``, the same black-box estimator as a
memorization proxy (mean over views and training checkpoints of curv on the target).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from coreset_bench import hookimpl
from coreset_bench.kinds import Param, PrivacyMethod
from coreset_bench.plugins.privacy import _mia

ESTIMATORS = {"zo": _mia.curv_zo, "hutchinson_zo": _mia.hutchinson_zo}

#: the declared ranges of the curvature estimator's parameters (both methods)
CURVATURE_SPECS = {
    "h": Param(float, min=0, min_open=True, help="finite-difference step in input units"),
    "n_iter": Param(int, min=1, help="random directions per sample"),
    "views": Param(str, choices=("all", "identity"), help="average over the track's input views or the identity only"),
    "estimator": Param(str, choices=tuple(ESTIMATORS), help="zero-order four-point estimate or its Hutchinson variant"),
    "batch_size": Param(int, min=1, help="samples per batch (memory only)"),
}


def curvature_scores(view: Any, box: Any, params: dict[str, Any], views: list[Any]) -> np.ndarray:
    """(A, N) raw curvature of every query under each input view, for one black box."""
    est = ESTIMATORS.get(str(params["estimator"]))
    if est is None:
        raise ValueError(f"unknown estimator {params['estimator']!r}; use {', '.join(ESTIMATORS)}")
    bs = int(params["batch_size"])
    rows = []
    for a, t in enumerate(views):
        gen = torch.Generator().manual_seed(int(view.seed) * 1000 + a)
        parts = []
        for i in range(0, len(view.x), bs):
            xb, yb = t(view.x[i : i + bs]), view.y[i : i + bs]
            curv, _ = est(box, xb, yb, h=float(params["h"]), n_iter=int(params["n_iter"]), generator=gen, std=view.input_std)
            parts.append(curv.double().cpu())
        rows.append(torch.cat(parts).numpy())
    return np.stack(rows)


def cached_curvature(view: Any, box: Any, params: dict[str, Any], views: list[Any], key: Any) -> np.ndarray:
    """``curvature_scores`` of a shadow box, memoized across the targets of a cell."""
    return _mia.cached(box, view, key, lambda: curvature_scores(view, box, params, views))


def _views(view: Any, which: str) -> list[Any]:
    if which == "all":
        return list(view.views)
    if which == "identity":
        return list(view.views)[:1]
    raise ValueError(f"unknown views {which!r}; use all or identity")


class CurvatureMIA(PrivacyMethod):
    name = "curvature-mia"
    version = "1"
    role = "attack"
    tracks = ("privacy",)
    params = {
        "stat": "nll",
        "variance_mode": "paper_code",
        "h": 1e-3,
        "n_iter": 10,
        "views": "all",
        "estimator": "zo",
        "batch_size": 256,
    }
    param_specs = {
        "stat": Param(str, choices=("nll", "lr"), help="membership statistic: negative log-likelihood or likelihood ratio"),
        "variance_mode": Param(str, choices=("paper_code", "proper"), help="the authors' code's variance or the textbook one"),
        **CURVATURE_SPECS,
    }
    summary = "Curvature Clues: per-example Gaussian test on the log of the zero-order input-loss curvature (shadow models)."
    citation = "Ravikumar, Soufleri, Hashemi, Roy. Curvature Clues: Decoding Deep Learning Privacy with Input Loss Curvature. NeurIPS 2024 (arXiv 2407.02747)."

    def score(self, view) -> np.ndarray:
        stat, mode = str(self.params["stat"]), str(self.params["variance_mode"])
        if stat not in ("nll", "lr"):
            raise ValueError(f"unknown stat {stat!r}; use nll or lr")
        if mode not in ("paper_code", "proper"):
            raise ValueError(f"unknown variance_mode {mode!r}; use paper_code or proper")
        views = _views(view, str(self.params["views"]))
        target = np.log(curvature_scores(view, view.target, self.params, views) + 1e-22)
        key = ("curvature", tuple(sorted((k, v) for k, v in self.params.items() if k not in ("stat", "variance_mode"))))
        shadows = np.stack([np.log(cached_curvature(view, s, self.params, views, key) + 1e-22) for s in view.shadows])
        fit = _mia.fit_in_out(shadows, view.shadow_in)
        return _mia.finite(test_statistic(target, fit, stat, mode))


def test_statistic(s: np.ndarray, fit: dict[str, np.ndarray], stat: str, mode: str) -> np.ndarray:
    """The notebooks' statistic for target scores ``s`` (A, N) given the in/out fit (A, N)."""
    mu_in, mu_out = fit["mean_in"], fit["mean_out"]
    var_in, var_out = fit["var_in"] + 1e-32, fit["var_out"] + 1e-32
    if stat == "nll":
        if mode == "paper_code":
            return (_mia.gaussian_nll_paper(s, mu_out, var_in) - _mia.gaussian_nll_paper(s, mu_in, var_in)).sum(0)
        return (_mia.gaussian_logpdf(s, mu_in, np.sqrt(var_in)) - _mia.gaussian_logpdf(s, mu_out, np.sqrt(var_out))).sum(0)
    sig_in, sig_out = (var_in, var_out) if mode == "paper_code" else (np.sqrt(var_in), np.sqrt(var_out))
    with np.errstate(over="ignore", under="ignore"):
        num = np.exp(_mia.gaussian_logpdf(s, mu_in, sig_in)).sum(0)
        den = np.exp(_mia.gaussian_logpdf(s, mu_out, sig_out)).sum(0)
    return num / (den + 1e-22)


class ZeroOrderCurvature(PrivacyMethod):
    """Memorization proxy: the black-box estimator on the target, averaged over views and over
    the training checkpoints the track provides (final model only with ``checkpoints="final"``)."""

    name = "zero-order-curvature"
    version = "1"
    role = "proxy"
    tracks = ("memorization",)
    params = {"h": 1e-3, "n_iter": 10, "views": "all", "estimator": "zo", "checkpoints": "all", "batch_size": 256}
    param_specs = {**CURVATURE_SPECS, "checkpoints": Param(str, choices=("all", "final"), help="average over the target's checkpoints or the final model only")}
    summary = "Zero-order (four-point, black-box) input-loss curvature of the target, averaged over views and checkpoints."
    citation = CurvatureMIA.citation

    def score(self, view) -> np.ndarray:
        views = _views(view, str(self.params["views"]))
        boxes = [view.target]
        if self.params["checkpoints"] == "all" and view.target_checkpoints:
            boxes = [_mia.model_box(m) for m in view.target_checkpoints]
        elif self.params["checkpoints"] not in ("all", "final"):
            raise ValueError(f"unknown checkpoints {self.params['checkpoints']!r}; use all or final")
        return np.mean([curvature_scores(view, b, self.params, views).mean(0) for b in boxes], axis=0)


@hookimpl
def register_methods(register):
    register(CurvatureMIA())
    register(ZeroOrderCurvature())
