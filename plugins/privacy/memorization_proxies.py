"""Two simple memorization proxies (role "proxy", memorization track), both averaged over the
target's training checkpoints (the final model alone with ``checkpoints="final"``):

* ``loss-proxy``: mean_t l(f_t(x), y), the cross-entropy of the query (examples a model
  memorizes are learned late and keep a higher loss along training; cf. Carlini, Erlingsson &
  Papernot, "Distribution Density, Tails, and Outliers in Machine Learning", 2019);
* ``el2n-proxy``: mean_t || softmax(f_t(x)) - onehot(y) ||_2, the EL2N score of Paul, Ganguli &
  Dziugaite ("Deep Learning on a Data Diet", NeurIPS 2021), here over the checkpoints of one
  run instead of an ensemble at one early epoch.

Higher = more memorized.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from coreset_bench import hookimpl
from coreset_bench.kinds import Param, PrivacyMethod
from coreset_bench.plugins.privacy import _mia


def _el2n(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    p = logits.double().softmax(1)
    return (p - F.one_hot(y, p.shape[1]).double()).norm(dim=1)


class _CheckpointProxy(PrivacyMethod):
    role = "proxy"
    tracks = ("memorization",)
    params = {"checkpoints": "all"}
    param_specs = {"checkpoints": Param(str, choices=("all", "final"), help="average over the checkpoints or the final model only")}
    stat = staticmethod(_mia.ce_loss)

    def score(self, view) -> np.ndarray:
        which = self.params["checkpoints"]
        if which not in ("all", "final"):
            raise ValueError(f"unknown checkpoints {which!r}; use all or final")
        models = list(view.target_checkpoints or []) if which == "all" else []
        boxes = [_mia.model_box(m) for m in models] or [view.target]
        return np.mean([_mia.logit_statistic(view, b, type(self).stat, n_views=1)[0] for b in boxes], axis=0)


class LossProxy(_CheckpointProxy):
    name = "loss-proxy"
    version = "1"
    summary = "Cross-entropy of the query averaged over the target's training checkpoints."
    citation = "Carlini, Erlingsson, Papernot. Distribution Density, Tails, and Outliers in Machine Learning: Metrics and Applications. arXiv 1910.13427."


class EL2NProxy(_CheckpointProxy):
    name = "el2n-proxy"
    version = "1"
    summary = "EL2N (L2 norm of softmax minus one-hot) averaged over the target's training checkpoints."
    citation = "Paul, Ganguli, Dziugaite. Deep Learning on a Data Diet: Finding Important Examples Early in Training. NeurIPS 2021."
    stat = staticmethod(_el2n)


@hookimpl
def register_methods(register):
    register(LossProxy())
    register(EL2NProxy())
