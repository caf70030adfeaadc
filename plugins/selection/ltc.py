"""LTC: Loss Trajectory Correlation (``ltc``), reconstructed from the paper.

Manish Nagaraj, Deepak Ravikumar, Efstathia Soufleri, Kaushik Roy. "Finding the Muses:
Identifying Coresets through Loss Trajectories". arXiv:2503.09721, 2025. No official code was
found; this is a reconstruction from the abstract and figure caption, implemented as the raw-loss
variant of CLD (``coreset_bench.plugins.selection.cld``), whose helpers it reuses.

Formula. With the per-epoch eval losses ``l(z) = [l(theta_1, z), ..., l(theta_T, z)]`` (signals
``loss`` and ``val_loss``; raw losses, not differences):

* pairwise LTC of a pool sample and a validation sample: ``rho(l(z), l(v))`` (Pearson);
* ``reference="pairwise_mean"`` (default): ``LTC(z) = mean_{v in V_ref} rho(l(z), l(v))``.
  Because Pearson is the mean product of z-scores, this equals
  ``mean_t(zscore(l(z)) * mean_v zscore(l(v)))`` and is computed without the N x Nv matrix;
* ``reference="class_mean"``: ``LTC(z) = rho(l(z), mean_{v in V_ref} l(v))`` (CLD without
  differencing).

``V_ref`` is the validation samples of z's own class (``val_scope="class"``, default) or the whole
validation split (``val_scope="all"``). z-scores are population (ddof 0); a constant trajectory
gets std 1, so its correlation is 0.

Kept: per class, the ``k_c`` samples of **highest** LTC (``view.class_budgets()``), ties by index.

Choices (the paper's details are not known):

* default ``pairwise_mean``, since the paper defines LTC for (train, query) pairs;
* same-class validation and per-class top-k as in CLD;
* ``epochs_used`` / ``checkpoint_stride`` select checkpoints exactly as in CLD; at least two
  checkpoints must remain. A class without validation samples falls back to the whole split.
* Raw losses decrease for almost every sample, so raw correlations crowd near +1; CLD's
  differencing is the authors' later fix. LTC is kept as its own, labelled, method.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from coreset_bench import hookimpl
from coreset_bench.kinds import Param, SelectionView
from coreset_bench.plugins.selection._ranking import checkpoint_rows
from coreset_bench.plugins.selection.cld import CLD, _losses, class_mean_rows, pearson_to_class_reference, zscore

__all__ = ["LTC"]

_REFERENCES = ("pairwise_mean", "class_mean")
_SCOPES = ("class", "all")


class LTC(CLD):
    name = "ltc"
    version = "1.0"
    summary = (
        "Loss trajectory correlation (raw losses) with same-class validation trajectories; top-k per "
        "class (reconstructed from the paper)."
    )
    citation = (
        "Nagaraj, Ravikumar, Soufleri, Roy. Finding the Muses: Identifying Coresets through Loss "
        "Trajectories. arXiv:2503.09721, 2025."
    )
    params = {"reference": "pairwise_mean", "val_scope": "class", "epochs_used": 1.0, "checkpoint_stride": 1}
    param_specs = {"reference": Param(str, choices=("pairwise_mean", "class_mean")), "val_scope": Param(str, choices=("class", "all")), "epochs_used": Param(float, min=0, max=1, min_open=True, help="fraction of the proxy epochs used"), "checkpoint_stride": Param(int, min=1, help="keep every s-th epoch")}
    signals = frozenset({"loss", "val_loss"})

    def scores(self, view: SelectionView) -> tuple[np.ndarray, dict[str, Any]]:
        reference = self.params["reference"]
        scope = self.params["val_scope"]
        if reference not in _REFERENCES:
            raise ValueError(f"ltc: reference must be one of {_REFERENCES}, got {reference!r}")
        if scope not in _SCOPES:
            raise ValueError(f"ltc: val_scope must be one of {_SCOPES}, got {scope!r}")
        loss, val = _losses(view)
        rows = checkpoint_rows(loss.shape[0], self.params["epochs_used"], self.params["checkpoint_stride"])
        if len(rows) < 2:
            raise ValueError(f"ltc needs at least 2 loss checkpoints; the parameters leave {len(rows)} of {loss.shape[0]}")
        train, valid = loss[rows], val[rows]
        if scope == "class":
            val_labels, labels, num_classes = view.val_labels, view.labels, view.num_classes
        else:
            val_labels, labels, num_classes = np.zeros(valid.shape[1], np.int64), np.zeros(view.n, np.int64), 1
        if reference == "class_mean":
            ref, missing = class_mean_rows(valid, val_labels, num_classes)
            r = pearson_to_class_reference(train, labels, ref, standardize_reference=True)
        else:
            ref, missing = class_mean_rows(zscore(valid, axis=0), val_labels, num_classes)
            r = pearson_to_class_reference(train, labels, ref, standardize_reference=False)
        info = {"checkpoints": (rows + 1).tolist(), "classes_without_val": missing.tolist() if scope == "class" else []}
        return r, info


@hookimpl
def register_methods(register: Any) -> None:
    register(LTC())
