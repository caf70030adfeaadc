"""Ranking and checkpoint helpers shared by the score-based selection plugins.

``rank_order`` orders a pool by score with deterministic tie-breaking; ``top_global`` and
``topk_per_class`` keep the best ``k`` overall or per class (vectorized, one lexicographic sort);
``prefix_length`` and ``checkpoint_rows`` pick the epochs of a per-epoch signal that a method's
``epochs_used`` / ``checkpoint_stride`` parameters ask for.
"""

from __future__ import annotations

import math

import numpy as np


def rank_order(scores: np.ndarray, *, descending: bool, tiebreak: np.ndarray | None = None) -> np.ndarray:
    """All indices ordered by score (highest first when ``descending``).

    Equal scores are ordered by ``tiebreak`` (ascending) when given, else by index. NaN scores
    come last in both directions.
    """
    s = np.asarray(scores, dtype=np.float64)
    key = -s if descending else s
    second = np.arange(len(s)) if tiebreak is None else np.asarray(tiebreak)
    return np.lexsort((np.arange(len(s)), second, key))


def top_global(scores: np.ndarray, k: int, *, descending: bool, tiebreak: np.ndarray | None = None) -> np.ndarray:
    """The ``k`` best indices over the whole pool (see ``rank_order``)."""
    return rank_order(scores, descending=descending, tiebreak=tiebreak)[: int(k)]


def topk_per_class(
    scores: np.ndarray,
    labels: np.ndarray,
    budgets: np.ndarray,
    *,
    descending: bool,
    tiebreak: np.ndarray | None = None,
) -> np.ndarray:
    """Per class ``c``, the ``budgets[c]`` best indices (ties by ``tiebreak`` then index).

    Vectorized: one lexicographic sort by (label, score, tiebreak, index) and a rank within class.
    Returns the union, grouped by class.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(np.int64)
    b = np.asarray(budgets).astype(np.int64)
    counts = np.bincount(y, minlength=len(b))
    if len(counts) > len(b) or np.any(b > counts[: len(b)]) or np.any(b < 0):
        raise ValueError(f"per-class budgets {b.tolist()} do not fit class sizes {counts.tolist()}")
    key = -s if descending else s
    second = np.arange(len(s)) if tiebreak is None else np.asarray(tiebreak)
    order = np.lexsort((np.arange(len(s)), second, key, y))
    sorted_y = y[order]
    first = np.searchsorted(sorted_y, sorted_y, side="left")
    rank = np.arange(len(order)) - first
    return order[rank < b[sorted_y]]


def prefix_length(total: int, fraction: float) -> int:
    """``ceil(fraction * total)`` clipped to [1, total] (robust to float round-off)."""
    fraction = float(fraction)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"epochs_used must be in (0, 1], got {fraction}")
    return int(min(total, max(1, math.ceil(round(fraction * total, 9)))))


def checkpoint_rows(total: int, epochs_used: float = 1.0, stride: int = 1) -> np.ndarray:
    """Rows of an (E, ...) signal to use: a prefix of the epochs, then every ``stride``-th epoch
    counted back from the prefix's last epoch (returned in increasing order)."""
    stride = int(stride)
    if stride < 1:
        raise ValueError(f"checkpoint_stride must be >= 1, got {stride}")
    n = prefix_length(total, epochs_used)
    return np.arange(n - 1, -1, -stride)[::-1].copy()
