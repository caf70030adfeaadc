"""``verifix``: post-training correction by projecting every layer's weights onto the activation
space of a small verified set (Verifix, Kodge et al., arXiv 2403.08618; the released
``activation_projection_based_unlearning``, mode ``sap``, projection type ``Mr``).

For every ``Conv2d`` and ``Linear`` layer l (residual down-sampling convolutions and the
classifier included), with the verified set R forwarded once through the noisy model M (eval
mode):

    A_l   = the layer's inputs, as columns (conv: ``F.unfold`` patches, C_in k^2 rows), at most
            ``max_cols`` random columns
    A_l   = U S V^T,      lambda_i = s_i^2 / sum_j s_j^2                      (all directions kept)
    s_i   = alpha lambda_i / ((alpha - 1) lambda_i + 1)                         (scaled importance)
    P_l   = U diag(s) U^T
    W_l  <- W_l P_l       (W_l reshaped to C_out x C_in k^2; biases and batch norm unchanged)

Directions the verified activations span strongly keep their weights (s ~ 1); weak or absent
directions, where the memorized noisy labels live, are suppressed (s ~ alpha lambda_i -> 0).
U and s^2 are computed in float64 from the Gram matrix A A^T (its eigendecomposition gives the
SVD's left singular vectors and squared singular values without storing A) or, where a layer gets
no more columns than input dimensions, from the thin SVD of A itself (exact and much cheaper for
wide layers on a small verified set; the directions it leaves out have zero energy, so s = 0).

alpha comes from a grid (default: the reference's CIFAR grid 1e4..1e6 extended down to 1e2 for
small networks, whose layers have few input directions). The unmodified model is a candidate,
so the correction never lowers the selection score. Selection (the reference's pitfall, section
3.7: its released code picks alpha on the *clean part* of a held-out split, an oracle):

* ``selection = "auto"`` (default): ``validation`` where the track hands over a held-out split
  (``NoiseView.x_val``: low-curvature verified sets, which were trained on), else ``cv``;
* ``selection = "cv"``: k-fold cross-validation on the verified set. For each fold the
  projections are built from the other folds and the accuracy is measured on the fold; the
  final model uses the projections of the whole verified set at the chosen alpha;
* ``selection = "verified"``: projections from the whole verified set, accuracy on the same set;
* ``selection = "validation"``: projections from the whole verified set, accuracy on the held-out
  split with its noisy labels (the benchmark's stand-in for the reference's oracle clean part).

A candidate replaces the unmodified model only when its accuracy is strictly higher; among equal
accuracies the larger alpha (the gentler projection) wins.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from coreset_bench import hookimpl
from coreset_bench.kinds import NoiseCorrectionMethod, Param

DEFAULT_ALPHAS = "1e2,3e2,1e3,3e3,1e4,3e4,1e5,3e5,1e6"


def projectable_layers(model: nn.Module, project_classifier: bool = True) -> list[tuple[str, nn.Module]]:
    """(name, module) of every Conv2d (ungrouped) and Linear layer, in registration order; the
    classifier (``model.head`` when present, else the last Linear) only with ``project_classifier``."""
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1)]
    if not project_classifier and layers:
        head = getattr(model, "head", None)
        if isinstance(head, nn.Linear):
            layers = [(n, m) for n, m in layers if m is not head]
        else:
            last = [i for i, (_n, m) in enumerate(layers) if isinstance(m, nn.Linear)]
            if last:
                layers.pop(last[-1])
    return layers


def _columns(module: nn.Module, inp: torch.Tensor) -> torch.Tensor:
    """(B, f_in, L) layer-input columns of each sample: conv patches, or the linear input."""
    if isinstance(module, nn.Conv2d):
        return F.unfold(inp, module.kernel_size, dilation=module.dilation, padding=module.padding, stride=module.stride)
    return inp.reshape(inp.shape[0], -1, inp.shape[-1]).transpose(1, 2) if inp.dim() > 2 else inp.unsqueeze(2)


class LayerStats:
    """Second moments of one layer's input columns, per group of samples.

    Where a layer gets no more columns than it has input dimensions (wide linear layers on a small
    verified set), the columns themselves are kept and the basis comes from their thin SVD, which
    is exact and far cheaper than the f x f eigendecomposition; otherwise the f x f Gram matrices
    A A^T are accumulated (float64).
    """

    def __init__(self, f: int, n_groups: int, keep_columns: bool, device: Any) -> None:
        self.f = f
        self.device = device
        self.keep_columns = keep_columns
        self.cols: list[list[torch.Tensor]] = [[] for _ in range(n_groups)]
        self.grams = None if keep_columns else torch.zeros(n_groups, f, f, dtype=torch.float64, device=device)

    def add(self, group: int, a: torch.Tensor) -> None:
        a = a.double()
        if self.keep_columns:
            self.cols[group].append(a)
        else:
            self.grams[group] += a @ a.T

    def gram(self, groups: Iterable[int]) -> torch.Tensor:
        groups = list(groups)
        if not self.keep_columns:
            return self.grams[groups].sum(0)
        a = self._columns(groups)
        return a @ a.T

    def _columns(self, groups: list[int]) -> torch.Tensor:
        parts = [c for g in groups for c in self.cols[g]]
        return torch.cat(parts, 1) if parts else torch.zeros(self.f, 0, dtype=torch.float64, device=self.device)

    def basis(self, groups: Iterable[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(U, lambda) of the groups' columns together: left singular vectors (only those with
        non-zero energy where the columns are kept: the others get s = 0 anyway) and the
        normalized energies sigma_i^2 / sum_j sigma_j^2."""
        groups = list(groups)
        if not self.keep_columns:
            return eig_basis(self.grams[groups].sum(0))
        a = self._columns(groups)
        u, sv, _vh = torch.linalg.svd(a, full_matrices=False)
        ev = sv**2
        total = ev.sum()
        return u, (ev / total if float(total) > 0 else torch.zeros_like(ev))


@torch.no_grad()
def layer_stats(
    model: nn.Module,
    x: torch.Tensor,
    layers: Sequence[tuple[str, nn.Module]],
    *,
    groups: np.ndarray | None = None,
    n_groups: int = 1,
    max_cols: int = 50000,
    generator: torch.Generator | None = None,
    batch_size: int = 256,
    force_gram: bool = False,
) -> dict[str, LayerStats]:
    """Per layer, the input-column statistics of the samples of each group (``groups[i]`` in
    [0, n_groups)), from one eval-mode forward pass of ``x``.

    Columns are kept with probability min(1, max_cols / total columns of the layer), so about
    ``max_cols`` random columns enter each layer's matrix (the reference's subsampling).
    """
    if groups is None:
        groups = np.zeros(len(x), dtype=np.int64)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    stats: dict[str, LayerStats] = {}
    keep_p: dict[str, float] = {}
    names = {id(m): n for n, m in layers}
    state: dict[str, Any] = {"groups": None}

    def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
        name = names[id(module)]
        cols = _columns(module, args[0].detach()).float()  # (B, f, L)
        _b, f, length = cols.shape
        if name not in stats:
            total = len(x) * length
            keep_p[name] = min(1.0, max_cols / max(1, total))
            stats[name] = LayerStats(f, n_groups, keep_columns=not force_gram and min(total, max_cols) <= f, device=cols.device)
        g = state["groups"]
        for k in range(n_groups):
            sel = g == k
            if not bool(sel.any()):
                continue
            a = cols[sel.to(cols.device)].transpose(0, 1).reshape(f, -1)  # (f, n_k * L)
            if keep_p[name] < 1.0:
                mask = torch.rand(a.shape[1], generator=gen) < keep_p[name]
                a = a[:, mask.to(a.device)]
            stats[name].add(k, a)

    was = model.training
    model.eval()
    handles = [m.register_forward_pre_hook(hook) for _n, m in layers]
    try:
        g_all = torch.as_tensor(np.asarray(groups, dtype=np.int64))
        for i in range(0, len(x), batch_size):
            state["groups"] = g_all[i : i + batch_size]
            model(x[i : i + batch_size])
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    return stats


def layer_grams(model: nn.Module, x: torch.Tensor, layers: Sequence[tuple[str, nn.Module]], **kw: Any) -> dict[str, torch.Tensor]:
    """Per layer, (n_groups, f_in, f_in) float64 Gram matrices A A^T of the layer-input columns
    of each group of samples (see ``layer_stats`` for the arguments)."""
    stats = layer_stats(model, x, layers, force_gram=True, **kw)
    return {n: st.grams for n, st in stats.items()}


def eig_basis(gram: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(U, lambda): eigenvectors of a Gram matrix and the normalized energies sigma_i^2 / sum."""
    evals, evecs = torch.linalg.eigh(gram)
    evals = evals.clamp_min(0)
    total = evals.sum()
    lam = evals / total if float(total) > 0 else torch.zeros_like(evals)
    return evecs, lam


def importance(lam: torch.Tensor, alpha: float) -> torch.Tensor:
    """Scaled importance s = alpha lambda / ((alpha - 1) lambda + 1), in [0, 1]."""
    return alpha * lam / ((alpha - 1.0) * lam + 1.0)


def projection(gram: torch.Tensor, alpha: float) -> torch.Tensor:
    """P = U diag(s) U^T of one layer (float64)."""
    u, lam = eig_basis(gram)
    return (u * importance(lam, alpha)) @ u.T


class Projector:
    """Sets W_l = W_l^orig P_l(alpha) for a fixed set of bases (name -> (U, lambda)), in place;
    W^orig U is computed once, so each alpha costs one product per layer."""

    def __init__(self, bases: dict[str, tuple[torch.Tensor, torch.Tensor]], originals: dict[str, torch.Tensor]) -> None:
        self.parts = {}
        for name, (u, lam) in bases.items():
            w0 = originals[name]
            self.parts[name] = (w0.reshape(w0.shape[0], -1).double() @ u, u, lam, w0.shape, w0.dtype)

    @torch.no_grad()
    def apply(self, model: nn.Module, alpha: float) -> None:
        modules = dict(model.named_modules())
        for name, (wu, u, lam, shape, dtype) in self.parts.items():
            new = (wu * importance(lam, alpha)) @ u.T
            modules[name].weight.copy_(new.reshape(shape).to(dtype))


def project_model(model: nn.Module, x: torch.Tensor, alpha: float, *, project_classifier: bool = True, max_cols: int = 50000, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with every layer projected onto the activation space of ``x`` at ``alpha``."""
    out = copy.deepcopy(model)
    layers = projectable_layers(out, project_classifier)
    stats = layer_stats(out, x, layers, max_cols=max_cols, generator=torch.Generator().manual_seed(seed))
    bases = {n: st.basis([0]) for n, st in stats.items()}
    originals = {n: m.weight.detach().clone() for n, m in layers if n in bases}
    Projector(bases, originals).apply(out, alpha)
    return out


def _folds(y: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Fold of each sample, stratified by label (each class dealt round-robin in random order)."""
    out = np.zeros(len(y), dtype=np.int64)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        out[idx] = (np.arange(len(idx)) + int(rng.integers(k))) % k
    return out


@torch.no_grad()
def _correct_count(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> int:
    model.eval()
    n = 0
    for i in range(0, len(x), batch_size):
        n += int((model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum())
    return n


def parse_alphas(text: str | Iterable[float]) -> list[float]:
    vals = [float(a) for a in (text.split(",") if isinstance(text, str) else text) if str(a).strip()]
    if not vals or any(not np.isfinite(a) or a <= 0 for a in vals):
        raise ValueError(f"alphas must be positive numbers, got {text!r}")
    return sorted(set(vals))


class Verifix(NoiseCorrectionMethod):
    name = "verifix"
    version = "1"
    summary = "Project each layer's weights onto the verified set's activation space (SVD, soft singular-value scaling); alpha chosen on the verified set (or a held-out split)."
    citation = "Kodge, Ravikumar, Saha, Roy., Verifix: Post-Training Correction to Improve Label Noise Robustness with Verified Samples, arXiv 2403.08618 (2024)"
    params = {
        "alphas": DEFAULT_ALPHAS,
        "selection": "auto",
        "folds": 4,
        "max_cols": 50000,
        "project_classifier": True,
    }
    param_specs = {
        "alphas": Param(str, help="comma-separated positive alphas of the soft singular-value scaling to choose from"),
        "selection": Param(str, choices=("auto", "cv", "verified", "validation"), help="how alpha is chosen (auto: validation when the track gives a held-out split, else cv)"),
        "folds": Param(int, min=2, help="folds of selection=cv"),
        "max_cols": Param(int, min=1, help="activation columns kept per layer for the SVD (memory)"),
        "project_classifier": Param(bool, help="also project the last (classifier) layer"),
    }

    def correct(self, view):
        p = self.params
        alphas = parse_alphas(p["alphas"])
        selection = str(p["selection"])
        if selection not in ("auto", "cv", "verified", "validation"):
            raise ValueError(f"verifix: selection must be auto, cv, verified or validation, got {selection!r}")
        has_val = view.x_val is not None and len(view.x_val) > 0
        if selection == "auto":
            selection = "validation" if has_val else "cv"
        if selection == "validation" and not has_val:
            raise ValueError("verifix: selection=validation needs a held-out split (NoiseView.x_val); this track gives none")
        model = copy.deepcopy(view.model).eval()
        x, y = view.x_verified, view.y_verified
        y_np = y.detach().cpu().numpy()
        layers = projectable_layers(model, bool(p["project_classifier"]))
        k = max(2, min(int(p["folds"]), int(np.bincount(y_np).max()))) if selection == "cv" else 1
        folds = _folds(y_np, k, np.random.default_rng(view.seed)) if k > 1 else np.zeros(len(y_np), dtype=np.int64)
        stats = layer_stats(model, x, layers, groups=folds, n_groups=k, max_cols=int(p["max_cols"]), generator=torch.Generator().manual_seed(view.seed))
        originals = {n: m.weight.detach().clone() for n, m in layers if n in stats}
        full = Projector({n: st.basis(range(k)) for n, st in stats.items()}, originals)
        x_sel, y_sel = (view.x_val, view.y_val_noisy) if selection == "validation" else (x, y)
        base_correct = _correct_count(model, x_sel, y_sel)
        scores: dict[float, int] = {}
        if k > 1:
            fold_t = torch.as_tensor(folds, device=x.device)
            per_fold = [Projector({n: st.basis([g for g in range(k) if g != f]) for n, st in stats.items()}, originals) for f in range(k)]
            for a in alphas:
                total = 0
                for f in range(k):
                    per_fold[f].apply(model, a)
                    sel = fold_t == f
                    total += _correct_count(model, x[sel], y[sel])
                scores[a] = total
        else:
            for a in alphas:
                full.apply(model, a)
                scores[a] = _correct_count(model, x_sel, y_sel)
        best_alpha, best = None, base_correct
        for a in sorted(alphas, reverse=True):  # larger alpha first: ties keep the gentler projection
            if scores[a] > best:
                best_alpha, best = a, scores[a]
        if best_alpha is None:
            out = copy.deepcopy(view.model)
        else:
            full.apply(model, best_alpha)
            out = model
        n = max(len(y_sel), 1)
        view.info.update(
            {
                "alpha": best_alpha,
                "selection": selection,
                "folds": k,
                "selection_acc_unmodified": base_correct / n,
                "selection_acc": {f"{a:g}": c / n for a, c in scores.items()},
                "layers_projected": len(originals),
            }
        )
        return out


@hookimpl
def register_methods(register):
    register(Verifix())
