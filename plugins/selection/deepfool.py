"""DeepFool margin: keep the samples closest to the proxy's decision boundary.

Formula. For input ``x`` (in [0, 1]) with proxy prediction ``k0 = argmax f(x)``, DeepFool
iterates, with ``f_k`` the logits at the current point ``x_i = x + (1 + overshoot) r``::

    w_k = grad f_k(x_i) - grad f_k0(x_i),   g_k = f_k(x_i) - f_k0(x_i)        (k != k0)
    l   = argmin_k |g_k| / ||w_k||_2
    r  += (|g_l| / ||w_l|| + 1e-4) w_l / ||w_l||

until ``argmax f(x_i) != k0`` or ``max_iter`` steps. ``score(x) = ||(1 + overshoot) r||_2^2``,
the squared L2 norm of the minimal perturbation found (the ranking is that of the norm). A
sample that has not crossed the boundary after ``max_iter`` steps keeps the norm accumulated so
far (DeepCore).

What is kept: per class (``class_balanced=True``, as DeepCore's ``main.py`` passes), the
``budget_c`` samples with the *smallest* score, i.e. closest to the decision boundary.

Citation: Melanie Ducoffe and Frederic Precioso, "Adversarial Active Learning for Deep Networks:
a Margin Based Approach", arXiv:1802.09841, 2018; DeepFool itself: Seyed-Mohsen
Moosavi-Dezfooli, Alhussein Fawzi and Pascal Frossard, "DeepFool: a simple and accurate method
to fool deep neural networks", CVPR 2016; DeepCore ``deepcore/methods/deepfool.py``.

Choices where the spec leaves a detail open:

- **Model.** The final proxy model of the shared proxy run (``proxy_model`` signal), in eval
  mode, on the raw [0, 1] inputs ``view.x``; no clipping to [0, 1] during the iterations (as
  both reference codes).
- **Step.** The DeepFool paper's step with the ``1e-4`` margin and ``overshoot`` (default 0.02);
  DeepCore uses neither (``overshoot=0`` comes close).
- **Batching.** ``batch_size`` samples at once; the Jacobian is built with one backward pass per
  class over the still-active samples of the batch, so memory is ``C * batch_size * input size``.
- A sample whose gradients give no finite step (e.g. a constant model) stops with its current
  perturbation. ``Selection.scores`` holds every pool sample's score.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from coreset_bench import hookimpl
from coreset_bench.kinds import Param, Selection, SelectionMethod, SelectionView

from ._greedy import device_of, rank_groups


def deepfool_scores(model: Any, x: torch.Tensor, *, max_iter: int = 50, overshoot: float = 0.02, batch_size: int = 128) -> np.ndarray:
    """Squared L2 norm of the DeepFool perturbation of every row of ``x`` under ``model``."""
    n = int(x.shape[0])
    out = np.zeros(n, dtype=np.float64)
    scale = 1.0 + float(overshoot)
    for start in range(0, n, batch_size):
        xb = x[start : start + batch_size].detach().to(torch.float32)
        b = xb.shape[0]
        with torch.no_grad():
            k0 = model(xb).argmax(1)
        r_tot = torch.zeros_like(xb)
        active = torch.arange(b, device=xb.device)
        for _ in range(max_iter):
            xa = (xb[active] + scale * r_tot[active]).requires_grad_(True)
            with torch.enable_grad():
                logits = model(xa)
                still = logits.argmax(1) == k0[active]
                if not bool(still.any()):
                    break
                c = logits.shape[1]
                grads = torch.stack(
                    [torch.autograd.grad(logits[:, k].sum(), xa, retain_graph=k + 1 < c)[0].flatten(1) for k in range(c)],
                    dim=1,
                )  # (a, C, F)
            keep = still.nonzero()[:, 0]
            active = active[keep]
            f = logits.detach()[keep]
            g = grads[keep]
            orig = k0[active]
            rows = torch.arange(len(active), device=xb.device)
            w = g - g[rows, orig][:, None, :]
            fd = (f - f[rows, orig][:, None]).abs()
            wn = w.norm(dim=2)
            dist = fd / wn
            dist[rows, orig] = float("inf")
            dist = torch.nan_to_num(dist, nan=float("inf"))
            best = dist.argmin(1)
            d_best = dist[rows, best]
            ok = torch.isfinite(d_best)
            step = (d_best + 1e-4)[:, None] * w[rows, best] / wn[rows, best][:, None]
            step = torch.where(ok[:, None], step, torch.zeros_like(step))
            r_tot[active] += step.reshape((-1, *xb.shape[1:]))
            active = active[ok]
            if active.numel() == 0:
                break
        out[start : start + b] = (scale * r_tot).flatten(1).double().pow(2).sum(1).cpu().numpy()
    return out


class DeepFool(SelectionMethod):
    name = "deepfool"
    version = "0.1"
    summary = "DeepFool margin on the proxy model: keep the samples with the smallest adversarial perturbation."
    citation = "Ducoffe & Precioso, Adversarial Active Learning for Deep Networks: a Margin Based Approach, arXiv 2018"
    params = {"class_balanced": True, "max_iter": 50, "overshoot": 0.02, "batch_size": 128}
    param_specs = {"class_balanced": Param(bool, help="pick per class in proportion to class sizes"), "max_iter": Param(int, min=1), "overshoot": Param(float, min=0), "batch_size": Param(int, min=1)}
    signals = frozenset({"proxy_model"})

    def scores(self, view: SelectionView) -> np.ndarray:
        model = view.signals["proxy_model"]()
        model.eval()
        dev = device_of(view)
        x = torch.as_tensor(view.x, dtype=torch.float32).to(dev)
        return deepfool_scores(
            model,
            x,
            max_iter=int(self.params["max_iter"]),
            overshoot=float(self.params["overshoot"]),
            batch_size=max(1, int(self.params["batch_size"])),
        )

    def select(self, view: SelectionView) -> Selection:
        s = self.scores(view)
        indices = rank_groups(view, s, bool(self.params["class_balanced"]), "low")
        return Selection(indices=indices, scores=s)


@hookimpl
def register_methods(register):
    register(DeepFool())
