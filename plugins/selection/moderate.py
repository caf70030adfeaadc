"""Moderate-DS: moderate coreset (``moderate``).

Xiaobo Xia, Jiale Liu, Jun Yu, Xu Shen, Bo Han, Tongliang Liu. "Moderate Coreset: A Universal
Method of Data Selection for Real-world Data-efficient Deep Learning". ICLR 2023
(OpenReview 7D5EECbOaf9). Code: tmllab/2023_ICLR_Moderate-DS (``selection.py``).

Formula. With penultimate features ``e(x)`` of the proxy at its final checkpoint (signal
``embeddings``, the row of the largest ``checkpoint_epochs``) and the coordinate-wise median
feature ``m_c`` of each class::

    d(x) = || e(x) - m_{y(x)} ||_2

Kept: rank all samples **globally** by ``d`` (ascending, ties by index) and keep the central band
of exactly ``budget`` ranks, ``[floor((N - budget) / 2), floor((N - budget) / 2) + budget)``: the
samples of moderate distance, neither the most typical nor the outliers. The original keeps
``[round(N (0.5 - r/2)), round(N (0.5 + r/2)))`` for the kept ratio ``r``, which can be off by one
from the budget; the band here is the same interval with the size made exact.

Choices: the paper uses a ResNet-50 trained on the full data for the features; the benchmark
uses the shared proxy's final embeddings. No parameters.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from coreset_bench import hookimpl
from coreset_bench.kinds import Selection, SelectionMethod, SelectionView
from coreset_bench.plugins.selection._ranking import rank_order

__all__ = ["Moderate", "final_embeddings", "median_distances"]


def final_embeddings(view: SelectionView) -> np.ndarray:
    """The (N, D) embeddings at the last checkpoint (largest ``checkpoint_epochs``)."""
    emb = np.asarray(view.signals["embeddings"])
    if emb.ndim != 3 or emb.shape[1] != view.n:
        raise ValueError(f"signal 'embeddings' must have shape (K, {view.n}, D), got {emb.shape}")
    ep = np.asarray(view.signals["checkpoint_epochs"]).reshape(-1)
    if ep.size != emb.shape[0]:
        raise ValueError(f"signal 'checkpoint_epochs' has {ep.size} entries for {emb.shape[0]} embedding checkpoints")
    return np.asarray(emb[int(np.argmax(ep))], dtype=np.float64)


def median_distances(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Distance of each row of ``features`` to its class's coordinate-wise median, (N,)."""
    y = np.asarray(labels).astype(np.int64)
    proto = np.zeros_like(features)
    for c in np.unique(y):  # one median per class
        mask = y == c
        proto[mask] = np.median(features[mask], axis=0)
    return np.linalg.norm(features - proto, axis=1)


class Moderate(SelectionMethod):
    name = "moderate"
    version = "1.0"
    summary = "Keep the band of samples at moderate distance from their class's median feature."
    citation = (
        "Xia, Liu, Yu, Shen, Han, Liu. Moderate Coreset: A Universal Method of Data Selection for "
        "Real-world Data-efficient Deep Learning. ICLR 2023."
    )
    params: dict[str, Any] = {}
    signals = frozenset({"embeddings", "checkpoint_epochs"})

    def select(self, view: SelectionView) -> Selection:
        d = median_distances(final_embeddings(view), view.labels)
        order = rank_order(d, descending=False)
        start = (view.n - view.budget) // 2
        idx = order[start : start + view.budget]
        return Selection(indices=idx, scores=d, info={"kept": "central band of distance ranks", "band_start": int(start)})


@hookimpl
def register_methods(register: Any) -> None:
    register(Moderate())
