"""``input-curvature``: input-loss curvature as a memorization proxy (Garg, Ravikumar & Roy,
"Memorization Through the Lens of Curvature of Loss Function Around Samples", ICML 2024,
arXiv 2307.05831; links to memorization and privacy in Ravikumar et al., ICML 2024,
arXiv 2402.18726).

White box (the memorization track's proxy role). For each training checkpoint t of the target
model and each query (x, y), with n Rademacher vectors r_i in normalized-input units:

* ``estimator="hutchinson"`` (default): Curv_t(x) = (1/n) sum_i r_i^T H_x r_i, a Hutchinson
  estimate of tr(H_x), H_x = d^2 l(f_t(x), y) / dx^2, by double backprop (Hessian-vector
  products of the input gradient);
* ``estimator="regr"``: the reference code's score (``score_imagenet_checkpoint.py``, labelled
  "the actual curv score" there): Curv_t(x) = (1/n) sum_i || d/dx [l(x + h r_i) - l(x)] ||_2,
  a finite-difference estimate of h ||H r_i||.

The default follows the papers' *definition* (the trace); the papers' plots come from their
*code*'s ``regr`` score. The memorization boards report both as labelled rows
(``input-curvature (estimator=hutchinson)`` and ``input-curvature (estimator=regr)``, run with
``--param estimator=regr``); ``h`` applies to ``regr`` only, in normalized-input units (h times
the per-channel std in pixels), as the reference's normalized inputs.

The score is the mean of Curv_t over the checkpoints the track saved (the reference averages
epochs 0, 4, ..., 196 of a 200-epoch run). The loss is summed over the batch, so every sample's
value is its own (the reference uses mean reduction, which scales each value by 1/B; absolute
values differ from the paper's by that factor). Higher = more memorized.
"""

from __future__ import annotations

import numpy as np
import torch

from coreset_bench import hookimpl
from coreset_bench.kinds import Param, PrivacyMethod
from coreset_bench.plugins.privacy import _mia


class InputCurvature(PrivacyMethod):
    name = "input-curvature"
    version = "1"
    role = "proxy"
    tracks = ("memorization",)
    params = {"estimator": "hutchinson", "n_iter": 10, "h": 1e-3, "checkpoints": "all", "batch_size": 256}
    param_specs = {
        "estimator": Param(str, choices=("hutchinson", "regr"), help="Hutchinson trace estimate or the regularizer's finite difference"),
        "n_iter": Param(int, min=1, help="random probes per sample"),
        "h": Param(float, min=0, min_open=True, help="finite-difference step"),
        "checkpoints": Param(str, choices=("all", "final"), help="average over the checkpoints or the final model only"),
        "batch_size": Param(int, min=1, help="samples per batch (memory only)"),
    }
    summary = "Input-loss curvature (Hutchinson trace by double backprop) averaged over training checkpoints."
    citation = "Garg, Ravikumar, Roy. Memorization Through the Lens of Curvature of Loss Function Around Samples. ICML 2024 (arXiv 2307.05831)."

    def score(self, view) -> np.ndarray:
        models = list(view.target_checkpoints or [])
        if self.params["checkpoints"] == "final" or not models:
            models = [view.target_model]
        elif self.params["checkpoints"] != "all":
            raise ValueError(f"unknown checkpoints {self.params['checkpoints']!r}; use all or final")
        if models[0] is None:
            raise ValueError("input-curvature needs white-box models (target_model / target_checkpoints); the view has none")
        est = str(self.params["estimator"])
        if est not in ("hutchinson", "regr"):
            raise ValueError(f"unknown estimator {est!r}; use hutchinson or regr")
        bs, n_iter = int(self.params["batch_size"]), int(self.params["n_iter"])
        total = np.zeros(len(view.y))
        for m in models:
            gen = torch.Generator().manual_seed(int(view.seed))
            parts = []
            for i in range(0, len(view.x), bs):
                xb, yb = view.x[i : i + bs], view.y[i : i + bs]
                if est == "hutchinson":
                    c = _mia.hutchinson_trace(m, xb, yb, n_iter=n_iter, generator=gen, std=view.input_std)
                else:
                    c = _mia.regr_curvature(m, xb, yb, h=float(self.params["h"]), n_iter=n_iter, generator=gen, std=view.input_std)
                parts.append(c.double().cpu())
            total += torch.cat(parts).numpy()
        return total / len(models)


@hookimpl
def register_methods(register):
    register(InputCurvature())
