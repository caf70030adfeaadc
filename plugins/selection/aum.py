"""AUM: Area Under the Margin (``aum``), probability version as used by CCS.

Geoff Pleiss, Tianyi Zhang, Ethan R. Elenberg, Kilian Q. Weinberger. "Identifying Mislabeled Data
using the Area Under the Margin Ranking". NeurIPS 2020. arXiv:2001.10528. Variant of CCS
(Zheng, Liu, Lai, Prakash, "Coverage-centric Coreset Selection for High Pruning Rates", ICLR 2023,
arXiv:2210.15809; haizhongzheng/Coverage-centric-coreset-selection, key ``accumulated_margin``).

Formula. From the per-epoch signals ``prob_true`` and ``prob_other_max`` (E, N)::

    AUM(x) = sum_{e=1}^{E} ( p_e(y | x) - max_{k != y} p_e(k | x) )

CCS sums softmax probability margins over every logged epoch; Pleiss et al. average *logit*
margins (over training-time forward passes). The probability version is used here (the logits are
not recorded per epoch) and summed, as in CCS; the ranking is the same as for the mean.

Kept: the **lowest** AUM (hardest, possibly mislabeled) over the whole pool, as CCS's standalone
AUM baseline (``--data-score-descending 0``). Ties by index.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from coreset_bench import hookimpl
from coreset_bench.kinds import Selection, SelectionMethod, SelectionView
from coreset_bench.plugins.selection._ranking import top_global

__all__ = ["AUM", "aum_scores"]


def aum_scores(view: SelectionView) -> np.ndarray:
    """Summed probability margin over epochs, (N,) float64 (needs ``prob_true``, ``prob_other_max``)."""
    pt = np.asarray(view.signals["prob_true"], dtype=np.float64)
    po = np.asarray(view.signals["prob_other_max"], dtype=np.float64)
    if pt.shape != po.shape or pt.ndim != 2 or pt.shape[1] != view.n:
        raise ValueError(
            f"signals 'prob_true' and 'prob_other_max' must both have shape (E, {view.n}); got {pt.shape} and {po.shape}"
        )
    return (pt - po).sum(axis=0)


class AUM(SelectionMethod):
    name = "aum"
    version = "1.0"
    summary = "Keep the samples with the lowest area under the (probability) margin over proxy training."
    citation = (
        "Pleiss, Zhang, Elenberg, Weinberger. Identifying Mislabeled Data using the Area Under the "
        "Margin Ranking. NeurIPS 2020. arXiv:2001.10528."
    )
    params: dict[str, Any] = {}
    signals = frozenset({"prob_true", "prob_other_max"})

    def select(self, view: SelectionView) -> Selection:
        score = aum_scores(view)
        idx = top_global(score, view.budget, descending=False)
        return Selection(indices=idx, scores=score, info={"kept": "lowest AUM"})


@hookimpl
def register_methods(register: Any) -> None:
    register(AUM())
