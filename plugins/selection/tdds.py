"""TDDS: Temporal Dual-Depth Scoring (``tdds``).

Xin Zhang, Jiawei Du, Yunsong Li, Weiying Xie, Joey Tianyi Zhou. "Spanning Training Progress:
Temporal Dual-Depth Scoring (TDDS) for Enhanced Dataset Pruning". CVPR 2024. arXiv:2311.13613.
Code: zhangxin-xd/Dataset-Pruning-TDDS (``importance_evaluation.py``).

Formula. With softmax outputs ``p_t`` at the trajectory points ``t = 0 .. T-1``:

* first depth, per-step contribution (a KL-like projected-gradient proxy)::

      c_t(x) = sum_k | p_{t+1,k} (log(p_{t+1,k} + 1e-8) - log(p_{t,k} + 1e-8)) |

* second depth, for each window ``j = 0 .. T-w`` of ``w`` trajectory points (``w - 1``
  contributions ``c_j .. c_{j+w-2}``): the L2 norm of the contributions' deviations from their
  window mean, ``v_j(x) = || c_{j..j+w-2}(x) - mean ||_2``;
* score: ``TDDS(x) = sum_j beta (1 - beta)^(T - w - j) v_j(x)`` (later windows weigh more).

Kept: the **highest** scores over the whole pool (the code's ``mask[int(rate N):]`` of the ascending
sort), ties by index.

The trajectory. The original uses the full softmax after every one of the first ``T`` epochs
(``--trajectory_len``; the README's CIFAR-100 command uses 30, the code default is 10). The
per-epoch signals only hold the true-class and best-other probabilities, so the full softmax is
taken from the signal ``logits`` at the harness's checkpoints: the trajectory is every checkpoint
with epoch <= ``epochs`` (default 30), and ``window`` (default 10) counts checkpoints, not epochs.
When the profile records logits every epoch this is exactly the original. When fewer than
``window`` checkpoints are available the window shrinks to all of them (one window); at least two
checkpoints are needed, and when fewer than two lie within ``epochs`` the earliest two are used.
The training-loss rescaling by the score that the TDDS code applies during coreset training is a
training-recipe matter and is not part of selection.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from coreset_bench import hookimpl
from coreset_bench.kinds import Param, Selection, SelectionMethod, SelectionView
from coreset_bench.plugins.selection._lastlayer import softmax
from coreset_bench.plugins.selection._ranking import top_global
from coreset_bench.plugins.selection.el2n import checkpoint_logits

__all__ = ["TDDS", "tdds_contributions", "tdds_scores"]


def tdds_contributions(probs: Any) -> np.ndarray:
    """Per-step contributions ``c_t`` (T - 1, N) from a sequence of T softmax arrays (N, C).

    ``probs`` may be any iterable (e.g. a generator), so only two (N, C) arrays live at once.
    """
    out, prev = [], None
    for p in probs:
        p = np.asarray(p, dtype=np.float64)
        logp = np.log(p + 1e-8)
        if prev is not None:
            out.append(np.abs(p * (logp - prev)).sum(-1))
        prev = logp
    if not out:
        raise ValueError("TDDS needs at least two trajectory points")
    return np.stack(out)


def tdds_scores(contrib: np.ndarray, window: int, beta: float) -> np.ndarray:
    """TDDS scores from contributions (T - 1, N): windows of ``window`` trajectory points
    (``window - 1`` contributions), weights ``beta (1 - beta)^(T - window - j)``."""
    c = np.asarray(contrib, dtype=np.float64)
    t_len = c.shape[0] + 1
    w = int(window)
    if not 2 <= w <= t_len:
        raise ValueError(f"window must be in [2, {t_len}], got {w}")
    score = np.zeros(c.shape[1])
    for j in range(t_len - w + 1):  # windows over the trajectory
        win = c[j : j + w - 1]
        dev = np.sqrt(((win - win.mean(axis=0, keepdims=True)) ** 2).sum(axis=0))
        score += dev * beta * (1.0 - beta) ** (t_len - w - j)
    return score


class TDDS(SelectionMethod):
    name = "tdds"
    version = "1.0"
    summary = "Keep the samples whose per-step prediction changes vary most across windows of early training."
    citation = (
        "Zhang, Du, Li, Xie, Zhou. Spanning Training Progress: Temporal Dual-Depth Scoring (TDDS) for "
        "Enhanced Dataset Pruning. CVPR 2024. arXiv:2311.13613."
    )
    params = {"epochs": 30, "window": 10, "beta": 0.9}
    param_specs = {"epochs": Param(int, min=1, help="trajectory length T (first epochs used)"), "window": Param(int, min=2, help="moving-window length K"), "beta": Param(float, min=0, max=1, min_open=True, help="exponential-moving-average weight")}
    signals = frozenset({"logits", "checkpoint_epochs"})

    def select(self, view: SelectionView) -> Selection:
        logits = checkpoint_logits(view)
        ep = np.asarray(view.signals["checkpoint_epochs"]).reshape(-1)
        if ep.size != logits.shape[0]:
            raise ValueError(f"signal 'checkpoint_epochs' has {ep.size} entries for {logits.shape[0]} logit checkpoints")
        if ep.size < 2:
            raise ValueError("tdds needs logits at two or more checkpoints")
        order = np.argsort(ep, kind="stable")
        rows = order[ep[order] <= int(self.params["epochs"])]
        if rows.size < 2:
            rows = order[:2]
        beta = float(self.params["beta"])
        if not 0.0 < beta <= 1.0:
            raise ValueError(f"tdds: beta must be in (0, 1], got {beta}")
        window = min(int(self.params["window"]), rows.size)
        contrib = tdds_contributions(softmax(logits[r], axis=-1) for r in rows)
        score = tdds_scores(contrib, window, beta)
        idx = top_global(score, view.budget, descending=True)
        info = {"kept": "highest TDDS", "checkpoints": ep[rows].tolist(), "window": window}
        return Selection(indices=idx, scores=score, info=info)


@hookimpl
def register_methods(register: Any) -> None:
    register(TDDS())
