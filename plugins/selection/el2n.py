"""EL2N: Error L2-Norm (``el2n``).

Mansheej Paul, Surya Ganguli, Gintare Karolina Dziugaite. "Deep Learning on a Data Diet: Finding
Important Examples Early in Training". NeurIPS 2021. arXiv:2107.07075. Variant as in CCS
(haizhongzheng/Coverage-centric-coreset-selection, ``generate_importance_score.py``, ``EL2N``).

Formula::

    EL2N(x) = mean_{t in S} || softmax(f_theta_t(x)) - onehot(y) ||_2

Kept: the **highest** EL2N over the whole pool (not class-balanced, as in CCS); ties by index.

Which checkpoints. The score needs the full probability vector, but the per-epoch signals hold
only ``prob_true`` and ``prob_other_max``. It is therefore computed from the signal ``logits``,
recorded at the harness's embedding checkpoints (``checkpoint_epochs``): ``S`` is every
checkpoint taken within the first ``epochs`` epochs (default 10, CCS's ``max_epoch``); when no
checkpoint lies that early, the earliest checkpoint alone is used (``info["checkpoints"]`` says
which). With logits recorded every epoch this is CCS's score up to a factor (CCS sums, we average,
which does not change the ranking). The original averages over 10 independent proxy runs at one
early epoch; the benchmark has one proxy run.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from coreset_bench import hookimpl
from coreset_bench.kinds import Param, Selection, SelectionMethod, SelectionView
from coreset_bench.plugins.selection._lastlayer import softmax
from coreset_bench.plugins.selection._ranking import top_global

__all__ = ["EL2N", "early_checkpoints", "checkpoint_logits"]


def early_checkpoints(checkpoint_epochs: np.ndarray, epochs: int) -> np.ndarray:
    """Rows of the checkpoints taken at epoch <= ``epochs``; the earliest one if there is none."""
    ep = np.asarray(checkpoint_epochs).astype(np.int64).reshape(-1)
    if ep.size == 0:
        raise ValueError("no checkpoints recorded (signal 'checkpoint_epochs' is empty)")
    rows = np.flatnonzero(ep <= int(epochs))
    if rows.size == 0:
        rows = np.array([int(np.argmin(ep))])
    return rows[np.argsort(ep[rows], kind="stable")]


def checkpoint_logits(view: SelectionView) -> np.ndarray:
    """The signal ``logits`` (K, N, C), with a shape check (not copied)."""
    logits = np.asarray(view.signals["logits"])
    if logits.ndim != 3 or logits.shape[1] != view.n:
        raise ValueError(f"signal 'logits' must have shape (K, {view.n}, C), got {logits.shape}")
    return logits


def el2n_scores(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Mean over checkpoints of ``||softmax - onehot||_2``; ``logits`` (K, N, C)."""
    y = np.asarray(labels).astype(np.int64)
    total = np.zeros(len(y))
    for z in logits:  # one checkpoint at a time keeps peak memory at one (N, C) array
        p = softmax(z, axis=-1)
        p[np.arange(len(y)), y] -= 1.0
        total += np.sqrt((p * p).sum(-1))
    return total / len(logits)


class EL2N(SelectionMethod):
    name = "el2n"
    version = "1.0"
    summary = "Keep the samples with the highest early-training error L2 norm ||p - y|| (EL2N)."
    citation = (
        "Paul, Ganguli, Dziugaite. Deep Learning on a Data Diet: Finding Important Examples Early in "
        "Training. NeurIPS 2021. arXiv:2107.07075."
    )
    params = {"epochs": 10}
    param_specs = {"epochs": Param(int, min=1, help="use the checkpoints of the first epochs")}
    signals = frozenset({"logits", "checkpoint_epochs"})

    def select(self, view: SelectionView) -> Selection:
        ep = np.asarray(view.signals["checkpoint_epochs"])
        rows = early_checkpoints(ep, self.params["epochs"])
        score = el2n_scores(checkpoint_logits(view)[rows], view.labels)
        idx = top_global(score, view.budget, descending=True)
        return Selection(indices=idx, scores=score, info={"kept": "highest EL2N", "checkpoints": ep[rows].tolist()})


@hookimpl
def register_methods(register: Any) -> None:
    register(EL2N())
