"""Shared math of the membership-inference and memorization plugins (not a plugin itself).

* per-sample statistics of a black box's logits: cross-entropy, LiRA's logit-scaled confidence,
  Song's modified entropy;
* collecting a statistic over the target and shadow models and the input views of a
  ``PrivacyView`` (shadow arrays are (S, A, N): models x views x queries);
* per-example in/out Gaussian fitting over the shadows (``fit_in_out``) and Gaussian
  log-densities;
* the curvature estimators: ``curv_zo`` (Curvature Clues' black-box four-point estimator,
  ``get_curvature_for_batch_zo_v2``), ``hutchinson_zo`` (its symmetric second-difference ablation),
  ``hutchinson_trace`` (tr of the input-loss Hessian by double backprop) and ``regr_curvature``
  (Garg et al.'s gradient-difference norm).

All perturbation steps ``h`` are in the units of the models' *normalized* input, as in the
reference code (CIFAR: h = 1e-3 after normalizing with the dataset mean/std): the models of
coreset-bench take [0, 1] inputs and normalize internally, so a step h in normalized units is a
step ``h * std_c`` on channel c of the [0, 1] input (``input_std`` of the view; None = 1).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

LOG_2PI = math.log(2.0 * math.pi)


# ---- per-sample statistics of logits -----------------------------------------------------------


def ce_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy (reduction none)."""
    return F.cross_entropy(logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits, y, reduction="none")


def logit_confidence(logits: torch.Tensor, y: torch.Tensor, mode: str = "true_class") -> torch.Tensor:
    """LiRA's logit scaling phi = log(p / (1 - p)), computed stably from the logits.

    ``mode="true_class"`` (Carlini et al.): p = softmax(z)_y, so
    phi = z_y - logsumexp_{j != y} z_j. ``mode="max"``: p = max softmax probability (the quirk
    of the Curvature Clues notebooks' "Carlini" baseline).
    """
    z = logits.double()
    if mode == "max":
        y = z.argmax(1)
    elif mode != "true_class":
        raise ValueError(f"unknown confidence mode {mode!r}; use true_class or max")
    zy = z.gather(1, y[:, None]).squeeze(1)
    others = z.scatter(1, y[:, None], float("-inf"))
    return (zy - torch.logsumexp(others, dim=1)).float()


def modified_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Song & Mittal's Mentr = -(1 - p_y) log p_y - sum_{j != y} p_j log(1 - p_j)."""
    logp = F.log_softmax(logits.double(), dim=1)
    p = logp.exp()
    log1mp = torch.log1p(-p.clamp(max=1 - 1e-16))
    py = p.gather(1, y[:, None]).squeeze(1)
    logpy = logp.gather(1, y[:, None]).squeeze(1)
    other = (p * log1mp).scatter(1, y[:, None], 0.0).sum(1)
    return (-(1 - py) * logpy - other).float()


STATISTICS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "loss": ce_loss,
    "confidence": logit_confidence,
    "confidence_max": lambda z, y: logit_confidence(z, y, "max"),
    "mentr": modified_entropy,
}


# ---- collecting over models and views ------------------------------------------------------------

#: per black box (weakly held: it goes when the box goes), computed statistics by key. The track
#: hands the same shadow boxes, queries and seed to the views of every target of a cell, so the
#: shadows' statistics are computed once per cell, as the reference precomputes them once.
_CACHE: weakref.WeakKeyDictionary[Any, dict[Any, np.ndarray]] = weakref.WeakKeyDictionary()


def model_box(model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """A query-only view of ``model``: eval-mode logits without gradients, the box the privacy
    track hands attacks (used for a bank's checkpoints or extra models)."""

    @torch.no_grad()
    def box(x: torch.Tensor) -> torch.Tensor:
        model.eval()
        return model(x)

    return box


def cached(box: Any, view: Any, key: Any, fn: Callable[[], np.ndarray]) -> np.ndarray:
    """``fn()`` memoized per (box, queries, labels, seed, number of views, ``key``)."""
    full = (id(view.x), view.x.data_ptr() if hasattr(view.x, "data_ptr") else 0, tuple(view.x.shape), id(view.y), int(view.seed), len(view.views), key)
    try:
        store = _CACHE.setdefault(box, {})
    except TypeError:  # not weak-referenceable: no caching
        return fn()
    if full not in store:
        store[full] = fn()
    return store[full]



def batched(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    """``fn(x_batch, y_batch)`` over ``x`` in batches, concatenated to a float64 numpy vector."""
    out = [fn(x[i : i + batch_size], y[i : i + batch_size]).detach().double().cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros(0)


def logit_statistic(view: Any, box: Callable[[torch.Tensor], torch.Tensor], stat: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], n_views: int | None = None) -> np.ndarray:
    """(A, N): ``stat(box(view_a(x)), y)`` for the first ``n_views`` input views (all: None)."""
    views = list(view.views)[: n_views or len(view.views)]
    return np.stack([batched(lambda xb, yb, t=t: stat(box(t(xb)), yb), view.x, view.y) for t in views])


def collect(view: Any, stat: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], n_views: int | None = None, key: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """The statistic for the target (A, N) and every shadow (S, A, N). With a ``key`` naming
    the statistic, shadow values are memoized per shadow box (see ``cached``)."""
    target = logit_statistic(view, view.target, stat, n_views)
    if key is None:
        shadows = [logit_statistic(view, s, stat, n_views) for s in view.shadows]
    else:
        shadows = [cached(s, view, ("logit_statistic", key, n_views), lambda s=s: logit_statistic(view, s, stat, n_views)) for s in view.shadows]
    a, n = target.shape
    return target, (np.stack(shadows) if shadows else np.zeros((0, a, n)))


# ---- in/out Gaussian fitting ---------------------------------------------------------------------


def fit_in_out(shadow_scores: np.ndarray, shadow_in: np.ndarray, *, center: str = "mean", ddof: int = 0) -> dict[str, np.ndarray]:
    """Per-example, per-view statistics over the shadows that held (``in``) / did not hold
    (``out``) each query: ``mean_in``, ``var_in``, ``mean_out``, ``var_out`` and the counts,
    each of shape (A, N) (counts (N,)). NaN-aware like the reference's ``nanmean``/``nanvar``;
    ``center="median"`` uses medians for the means (Carlini et al.'s ``plot.py``).

    Where a query has no "in" (or no "out") shadow the statistic falls back to the pooled value
    over all queries of that view, so the result is always finite.
    """
    s = np.asarray(shadow_scores, dtype=np.float64)  # (S, A, N)
    m = np.asarray(shadow_in, dtype=bool)[:, None, :]  # (S, 1, N)
    out: dict[str, np.ndarray] = {"n_in": m[:, 0].sum(0), "n_out": (~m[:, 0]).sum(0)}
    for name, mask in (("in", m), ("out", ~m)):
        vals = np.where(np.broadcast_to(mask, s.shape), s, np.nan)
        with np.errstate(invalid="ignore"), _quiet():
            mu = np.nanmedian(vals, axis=0) if center == "median" else np.nanmean(vals, axis=0)
            var = np.nanvar(vals, axis=0, ddof=ddof)
            pooled_mu = np.nanmean(vals, axis=(0, 2))[:, None] if np.isfinite(vals).any() else np.zeros((s.shape[1], 1))
            pooled_var = np.nanvar(vals, axis=(0, 2))[:, None] if np.isfinite(vals).any() else np.ones((s.shape[1], 1))
        pooled_mu = np.nan_to_num(pooled_mu, nan=0.0)
        pooled_var = np.nan_to_num(pooled_var, nan=1.0)
        out[f"mean_{name}"] = np.where(np.isfinite(mu), mu, pooled_mu)
        out[f"var_{name}"] = np.where(np.isfinite(var), var, pooled_var)
    return out


class _quiet:
    """Silence numpy's 'mean of empty slice' warnings inside the fitting."""

    def __enter__(self) -> None:
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc: object) -> None:
        self._w.__exit__(*exc)


def gaussian_logpdf(x: np.ndarray, mean: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """log N(x; mean, sigma^2) (sigma is a standard deviation)."""
    sigma = np.asarray(sigma, dtype=np.float64)
    return -0.5 * ((x - mean) / sigma) ** 2 - np.log(sigma) - 0.5 * LOG_2PI


def gaussian_nll_paper(x: np.ndarray, mean: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The Curvature Clues notebooks' NLL(s; mu, v) = (s - mu)^2 / (2 v^2) + 1/2 log v^2 +
    1/2 log 2 pi, where ``v`` is a *variance* used in the place of sigma (their quirk)."""
    return (x - mean) ** 2 / (2.0 * v**2) + 0.5 * np.log(v**2) + 0.5 * LOG_2PI


def finite(a: np.ndarray, fill: float = 0.0) -> np.ndarray:
    """Replace NaN by ``fill`` and +-inf by the largest finite float64 (keeps the order)."""
    return np.nan_to_num(np.asarray(a, dtype=np.float64), nan=fill, posinf=np.finfo(np.float64).max, neginf=-np.finfo(np.float64).max)


# ---- curvature estimators ------------------------------------------------------------------------


def _std_tensor(std: Sequence[float] | None, x: torch.Tensor) -> torch.Tensor | float:
    if std is None:
        return 1.0
    t = torch.tensor(list(std), dtype=x.dtype, device=x.device)
    return t.view(1, -1, *([1] * (x.dim() - 2))) if x.dim() > 2 else t.view(1, -1)


def rademacher(shape: Sequence[int], generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """{-1, +1} entries drawn on the CPU from ``generator`` (reproducible on any device)."""
    r = torch.randint(0, 2, tuple(shape), generator=generator, device="cpu", dtype=torch.int8)
    return (2 * r - 1).to(device=like.device, dtype=like.dtype)


@torch.no_grad()
def curv_zo(box: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor, *, h: float = 1e-3, n_iter: int = 10, generator: torch.Generator, std: Sequence[float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Curvature Clues' zero-order estimator (``get_curvature_for_batch_zo_v2``), per sample.

    For k = 1..n_iter, with independent Rademacher r_v, r_u and v = h (r_v + 1e-7),
    u = h (r_u + 1e-7) (in normalized-input units):

        H_k = [l(x+v+u) - l(x-v+u) - l(x+v-u) + l(x-v-u)] / (4 h),     curv = mean_k |H_k|

    (approximately h |r_v^T H r_u|, a Frobenius-norm-like magnitude, not a trace; the division
    is by 4h as in the code). Returns (curv, loss at x). Draw order: r_v then r_u per iteration,
    each for the whole batch.
    """
    s = _std_tensor(std, x)
    loss0 = ce_loss(box(x), y)
    acc = torch.zeros(len(x), dtype=torch.float64, device=x.device)
    for _ in range(n_iter):
        v = h * (rademacher(x.shape, generator, x) + 1e-7) * s
        u = h * (rademacher(x.shape, generator, x) + 1e-7) * s
        xs = torch.cat([x + v + u, x - v + u, x + v - u, x - v - u])
        lo = ce_loss(box(xs), y.repeat(4)).double().view(4, len(x))
        hk = (lo[0] - lo[1] - lo[2] + lo[3]) / (4.0 * h)
        acc += hk.abs()
    return acc / n_iter, loss0


@torch.no_grad()
def hutchinson_zo(box: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor, *, h: float = 1e-3, n_iter: int = 10, generator: torch.Generator, std: Sequence[float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric second difference (l(x+v) - 2 l(x) + l(x-v)) / h^2 with v = h r, r Rademacher:
    approximately r^T H r, whose mean over draws is a Hutchinson estimate of tr(H) (normalized
    units). The ablation suggested in the reference notes. Returns (|mean|, loss at x)."""
    s = _std_tensor(std, x)
    loss0 = ce_loss(box(x), y).double()
    acc = torch.zeros(len(x), dtype=torch.float64, device=x.device)
    for _ in range(n_iter):
        v = h * rademacher(x.shape, generator, x) * s
        lo = ce_loss(box(torch.cat([x + v, x - v])), y.repeat(2)).double().view(2, len(x))
        acc += (lo[0] - 2 * loss0 + lo[1]) / h**2
    return (acc / n_iter).abs(), loss0.float()


def hutchinson_trace(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, n_iter: int = 10, generator: torch.Generator, std: Sequence[float] | None = None) -> torch.Tensor:
    """Hutchinson estimate of tr(d^2 l / dx^2) per sample by double backprop, in normalized-input
    units: mean_k r_k^T (S H S) r_k with r_k Rademacher and S = diag(std). The loss is summed
    over the batch (reduction "sum"), so each sample's Hessian is its own (no 1/B factor)."""
    s = _std_tensor(std, x)
    x = x.detach().clone().requires_grad_(True)
    was = model.training
    model.eval()
    with torch.enable_grad():
        loss = F.cross_entropy(model(x), y, reduction="sum")
        (g,) = torch.autograd.grad(loss, x, create_graph=True)
        acc = torch.zeros(len(x), dtype=torch.float64, device=x.device)
        for k in range(n_iter):
            r = rademacher(x.shape, generator, x) * s
            (hv,) = torch.autograd.grad((g * r).sum(), x, retain_graph=k < n_iter - 1)
            acc += (hv * r).flatten(1).sum(1).double()
    model.train(was)
    return (acc / n_iter).detach()


def regr_curvature(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, h: float = 1e-3, n_iter: int = 10, generator: torch.Generator, std: Sequence[float] | None = None) -> torch.Tensor:
    """Garg, Ravikumar & Roy's score (``score_imagenet_checkpoint.py``, "regr"):
    mean_i || d/dx [ l(x + h v_i) - l(x) ] ||_2 with v_i Rademacher (+1e-7), reduction "sum"
    (the reference's mean reduction scales every value by 1/B; see the plugin docs)."""
    s = _std_tensor(std, x)
    was = model.training
    model.eval()
    acc = torch.zeros(len(x), dtype=torch.float64, device=x.device)
    for _ in range(n_iter):
        v = h * (rademacher(x.shape, generator, x) + 1e-7) * s
        xr = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            diff = F.cross_entropy(model(xr + v), y, reduction="sum") - F.cross_entropy(model(xr), y, reduction="sum")
            (g,) = torch.autograd.grad(diff, xr)
        # the gradient is w.r.t. the [0, 1] input; in normalized units it is multiplied by std
        acc += (g * s).flatten(1).norm(dim=1).double()
    model.train(was)
    return acc / n_iter
