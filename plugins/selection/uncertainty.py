"""Uncertainty sampling (``uncertainty-entropy``, ``uncertainty-margin``,
``uncertainty-least-confidence``).

Cody Coleman, Christopher Yeh, Stephen Mussmann, Baharan Mirzasoleiman, Peter Bailis, Percy Liang,
Jure Leskovec, Matei Zaharia. "Selection via Proxy: Efficient Data Selection for Deep Learning".
ICLR 2020. arXiv:1906.11829. Implementation as in DeepCore (PatrickZH/DeepCore,
``uncertainty.py``; Guo, Zhao, Bai, DEXA 2022, arXiv:2204.08499).

Scores, from the proxy's logits ``z`` at the final checkpoint (signal ``logits``, the row of the
largest ``checkpoint_epochs``), ``p = softmax(z)``; higher uncertainty ``u`` is kept:

* entropy: ``u = -sum_k p_k log p_k`` (DeepCore scores ``sum_k p_k log p_k`` and keeps the lowest);
* margin: ``u = -(p_top1 - p_top2)`` (keep the smallest margin);
* least confidence: ``u = -max_k z_k``, the **raw logit** as in DeepCore (keep the lowest maximum);
  ``use_softmax=True`` uses ``1 - max_k p_k`` instead, Coleman et al.'s definition.

Kept: the most uncertain samples, per class with ``view.class_budgets()`` when
``class_balanced=True`` (default, DeepCore's ``--balance``), else over the whole pool. Ties by
index.

DeepCore quirk not copied: DeepCore's non-balanced path sorts the scores *descending* and so keeps
the most *certain* samples; here both modes keep the most uncertain.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from coreset_bench import hookimpl
from coreset_bench.kinds import Param, Selection, SelectionMethod, SelectionView
from coreset_bench.plugins.selection._lastlayer import softmax
from coreset_bench.plugins.selection._ranking import top_global, topk_per_class
from coreset_bench.plugins.selection.el2n import checkpoint_logits

__all__ = ["UncertaintyEntropy", "UncertaintyMargin", "UncertaintyLeastConfidence", "uncertainty_scores"]

_CITATION = (
    "Coleman, Yeh, Mussmann, Mirzasoleiman, Bailis, Liang, Leskovec, Zaharia. Selection via Proxy: "
    "Efficient Data Selection for Deep Learning. ICLR 2020. arXiv:1906.11829."
)


def uncertainty_scores(logits: np.ndarray, measure: str, *, use_softmax: bool = False) -> np.ndarray:
    """Uncertainty of each row of ``logits`` (N, C); higher = more uncertain."""
    z = np.asarray(logits, dtype=np.float64)
    if measure == "least-confidence":
        return 1.0 - softmax(z, axis=1).max(axis=1) if use_softmax else -z.max(axis=1)
    p = softmax(z, axis=1)
    if measure == "entropy":
        logp = z - z.max(axis=1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
        return -(p * logp).sum(axis=1)
    if measure == "margin":
        if p.shape[1] < 2:
            raise ValueError("margin needs at least two classes")
        top2 = np.partition(p, p.shape[1] - 2, axis=1)[:, -2:]
        return -(top2[:, 1] - top2[:, 0])
    raise ValueError(f"unknown uncertainty measure {measure!r}")


class _Uncertainty(SelectionMethod):
    version = "1.0"
    citation = _CITATION
    params: dict[str, Any] = {"class_balanced": True}
    param_specs = {"class_balanced": Param(bool, help="pick per class in proportion to class sizes")}
    signals = frozenset({"logits", "checkpoint_epochs"})
    measure: str = ""

    def select(self, view: SelectionView) -> Selection:
        ep = np.asarray(view.signals["checkpoint_epochs"]).reshape(-1)
        last = int(np.argmax(ep)) if ep.size else -1
        z = checkpoint_logits(view)[last]
        u = uncertainty_scores(z, self.measure, use_softmax=bool(self.params.get("use_softmax", False)))
        if self.params["class_balanced"]:
            idx = topk_per_class(u, view.labels, view.class_budgets(), descending=True)
        else:
            idx = top_global(u, view.budget, descending=True)
        info = {"kept": "most uncertain", "measure": self.measure, "checkpoint_epoch": int(ep[last]) if ep.size else None}
        return Selection(indices=idx, scores=u, info=info)


class UncertaintyEntropy(_Uncertainty):
    name = "uncertainty-entropy"
    summary = "Keep the samples whose final proxy prediction has the highest entropy."
    measure = "entropy"


class UncertaintyMargin(_Uncertainty):
    name = "uncertainty-margin"
    summary = "Keep the samples with the smallest gap between the two top proxy probabilities."
    measure = "margin"


class UncertaintyLeastConfidence(_Uncertainty):
    name = "uncertainty-least-confidence"
    summary = "Keep the samples with the lowest maximum proxy logit (least confidence, as DeepCore)."
    params: dict[str, Any] = {"class_balanced": True, "use_softmax": False}
    param_specs = {"class_balanced": Param(bool, help="pick per class in proportion to class sizes"), "use_softmax": Param(bool)}
    measure = "least-confidence"


@hookimpl
def register_methods(register: Any) -> None:
    register(UncertaintyEntropy())
    register(UncertaintyMargin())
    register(UncertaintyLeastConfidence())
