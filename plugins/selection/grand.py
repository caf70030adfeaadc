"""GraNd: Gradient Normed score (``grand``), last-layer version.

Mansheej Paul, Surya Ganguli, Gintare Karolina Dziugaite. "Deep Learning on a Data Diet: Finding
Important Examples Early in Training". NeurIPS 2021. arXiv:2107.07075. Last-layer variant as in
DeepCore (PatrickZH/DeepCore, ``grand.py``; Guo, Zhao, Bai, "DeepCore: A Comprehensive Library for
Coreset Selection in Deep Learning", DEXA 2022, arXiv:2204.08499).

Formula::

    GraNd(x) = mean_{t in S} || g_t(x) ||_2,   g_t(x) = [p_t - y, (p_t - y) (x) e_t(x)]

the gradient of the cross-entropy with respect to the classifier head (bias and weight) at
checkpoint ``t``, computed from the signals ``logits`` and ``embeddings`` without building the
gradient matrix: ``||g|| = ||p - y|| sqrt(1 + ||e||^2)`` (``coreset_bench.plugins.selection._lastlayer``).

Kept: the **highest** scores; over the whole pool by default (the paper ranks globally), per class
with ``view.class_budgets()`` when ``class_balanced=True`` (DeepCore's default ``--balance``).
Ties by index.

How this departs from the original. The paper takes the expectation of the *full-parameter*
gradient norm over 10 independent proxy initializations, at (or shortly after) initialization;
DeepCore uses the last-layer gradient averaged over 10 proxy runs of ``selection_epochs`` epochs.
The benchmark has one proxy run, so the expectation over runs becomes an average over its early
checkpoints: ``S`` is every checkpoint taken within the first ``epochs`` epochs (default 10), or
the earliest checkpoint when none is that early. Only the head's gradient is used.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from coreset_bench import hookimpl
from coreset_bench.kinds import Param, Selection, SelectionMethod, SelectionView
from coreset_bench.plugins.selection._lastlayer import last_layer_grad_norms
from coreset_bench.plugins.selection._ranking import top_global, topk_per_class
from coreset_bench.plugins.selection.el2n import checkpoint_logits, early_checkpoints

__all__ = ["GraNd"]


class GraNd(SelectionMethod):
    name = "grand"
    version = "1.0"
    summary = "Keep the samples with the largest last-layer gradient norm early in proxy training (GraNd)."
    citation = (
        "Paul, Ganguli, Dziugaite. Deep Learning on a Data Diet: Finding Important Examples Early in "
        "Training. NeurIPS 2021. arXiv:2107.07075."
    )
    params = {"epochs": 10, "class_balanced": False}
    param_specs = {"epochs": Param(int, min=1, help="use the checkpoints of the first epochs"), "class_balanced": Param(bool, help="pick per class in proportion to class sizes")}
    signals = frozenset({"logits", "embeddings", "checkpoint_epochs"})

    def select(self, view: SelectionView) -> Selection:
        ep = np.asarray(view.signals["checkpoint_epochs"])
        rows = early_checkpoints(ep, self.params["epochs"])
        logits = checkpoint_logits(view)
        emb = np.asarray(view.signals["embeddings"])
        if emb.ndim != 3 or emb.shape[:2] != logits.shape[:2]:
            raise ValueError(f"signal 'embeddings' must have shape {logits.shape[:2] + ('D',)}, got {emb.shape}")
        labels = view.labels
        score = np.mean([last_layer_grad_norms(emb[k], logits[k], labels) for k in rows], axis=0)
        if self.params["class_balanced"]:
            idx = topk_per_class(score, labels, view.class_budgets(), descending=True)
        else:
            idx = top_global(score, view.budget, descending=True)
        return Selection(indices=idx, scores=score, info={"kept": "highest GraNd", "checkpoints": ep[rows].tolist()})


@hookimpl
def register_methods(register: Any) -> None:
    register(GraNd())
