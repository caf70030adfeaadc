"""Membership-inference and memorization metrics, as computed by the reference notebooks.

Curvature Clues (``conditonal_mia_aug_*.ipynb``) report, for a score vector (higher means
"member") against the true membership labels:

* AUROC (``sklearn.metrics.roc_auc_score``);
* balanced accuracy at the ROC threshold minimizing ``|FPR + TPR - 1|`` (the equal-error point),
  i.e. ``(TPR + 1 - FPR) / 2`` there;
* TPR at FPR = 1 %, 0.1 % (and 0.01 %) via ``np.interp(level, fpr, tpr)`` on the ROC curve.

The interpolated TPR at a level below the ROC's resolution (``1 / n_negatives``) is a straight
line from the origin's neighbour, not an operating point that exists; ``tpr_at_fpr`` therefore
also returns the *realized* FPR: the largest FPR of an actual threshold that does not exceed the
level (0.0 when no threshold reaches it), and that threshold's TPR.

Implemented here with numpy only (the test suite checks them against scikit-learn).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: the FPR levels the privacy track reports, with their metric-name suffixes
FPR_LEVELS: dict[str, float] = {"1pct": 1e-2, "0.1pct": 1e-3}


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"{len(y)} labels but {len(s)} scores")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    if y.all() or not y.any():
        raise ValueError("need both members (positives) and non-members (negatives)")
    return y, s


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC points at every distinct score (descending), starting at (0, 0) with threshold +inf.

    Same points as ``sklearn.metrics.roc_curve(labels, scores, drop_intermediate=False)``.
    Returns (fpr, tpr, thresholds); a sample is predicted "member" when score >= threshold.
    """
    y, s = _check(labels, scores)
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    # last index of each run of equal scores
    distinct = np.flatnonzero(np.diff(s_sorted)) if len(s_sorted) > 1 else np.array([], dtype=np.int64)
    ends = np.concatenate([distinct, [len(s_sorted) - 1]])
    tp = np.cumsum(y_sorted)[ends].astype(np.float64)
    fp = (ends + 1 - tp).astype(np.float64)
    tpr = np.concatenate([[0.0], tp / y.sum()])
    fpr = np.concatenate([[0.0], fp / (~y).sum()])
    thresholds = np.concatenate([[np.inf], s_sorted[ends]])
    return fpr, tpr, thresholds


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (trapezoid over all distinct thresholds; ties count one half)."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(np.trapezoid(tpr, fpr))


def balanced_accuracy(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """Balanced accuracy at the ROC point minimizing ``|FPR + TPR - 1|`` and that threshold.

    Ties between points are broken by the first one (highest threshold), as ``np.argmin`` does
    in the reference notebooks.
    """
    fpr, tpr, thr = roc_curve(labels, scores)
    i = int(np.argmin(np.abs(fpr + tpr - 1.0)))
    return float((tpr[i] + 1.0 - fpr[i]) / 2.0), float(thr[i])


@dataclass(frozen=True)
class TprAtFpr:
    level: float
    tpr: float  # np.interp on the ROC curve (the reference's number)
    realized_fpr: float  # largest FPR of an actual threshold <= level
    realized_tpr: float  # TPR at that threshold


def tpr_at_fpr(labels: np.ndarray, scores: np.ndarray, level: float) -> TprAtFpr:
    fpr, tpr, _ = roc_curve(labels, scores)
    interp = float(np.interp(level, fpr, tpr))
    ok = np.flatnonzero(fpr <= level + 1e-15)
    j = int(ok[-1])  # fpr is non-decreasing; index 0 (the origin) always qualifies
    return TprAtFpr(float(level), interp, float(fpr[j]), float(tpr[j]))


def membership_metrics(labels: np.ndarray, scores: np.ndarray, levels: dict[str, float] | None = None) -> dict[str, float]:
    """All the track's numbers for one target model: ``auc``, ``balanced_acc``,
    ``tpr_at_{suffix}_fpr`` (interpolated), ``realized_fpr_{suffix}`` and
    ``realized_tpr_{suffix}`` for each FPR level."""
    out = {"auc": auc(labels, scores), "balanced_acc": balanced_accuracy(labels, scores)[0]}
    for suffix, lvl in (levels or FPR_LEVELS).items():
        r = tpr_at_fpr(labels, scores, lvl)
        out[f"tpr_at_{suffix}_fpr"] = r.tpr
        out[f"realized_fpr_{suffix}"] = r.realized_fpr
        out[f"realized_tpr_{suffix}"] = r.realized_tpr
    return out


# ---- correlations (memorization track) ---------------------------------------------------------


def _rank(a: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean rank), 1-based, like ``scipy.stats.rankdata``."""
    a = np.asarray(a, dtype=np.float64)
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    ranks = np.empty(len(a), dtype=np.float64)
    starts = np.concatenate([[0], np.flatnonzero(np.diff(sorted_a)) + 1])
    ends = np.concatenate([starts[1:], [len(a)]])
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + e + 1) / 2.0
    return ranks


def pearson(a: Sequence[float], b: Sequence[float]) -> float:
    """Pearson correlation; 0.0 when either vector is constant (no linear association)."""
    x = np.asarray(a, dtype=np.float64) - np.mean(a)
    y = np.asarray(b, dtype=np.float64) - np.mean(b)
    den = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / den) if den > 0 else 0.0


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation (Pearson of the average ranks)."""
    return pearson(_rank(np.asarray(a)), _rank(np.asarray(b)))


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity of the raw vectors (the measure the curvature-memorization paper names)."""
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    den = float(np.linalg.norm(x) * np.linalg.norm(y))
    return float(x @ y / den) if den > 0 else 0.0


def fz_memorization(correct: np.ndarray, member: np.ndarray) -> np.ndarray:
    """Feldman-Zhang subsampled estimate, per sample i over models k:

        mem_i = mean_{k: i in S_k} correct[k, i] - mean_{k: i not in S_k} correct[k, i]

    ``correct`` (K, N) is 0/1 (or a probability of the true label, the cheaper variant of
    ``calc_private_memorization.py``, here with proper in/out means); ``member`` (K, N) bool.
    A sample with no "in" or no "out" model gets NaN.
    """
    c = np.asarray(correct, dtype=np.float64)
    m = np.asarray(member, dtype=bool)
    n_in = m.sum(0)
    n_out = (~m).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_in = np.where(n_in > 0, (c * m).sum(0) / np.maximum(n_in, 1), np.nan)
        mean_out = np.where(n_out > 0, (c * ~m).sum(0) / np.maximum(n_out, 1), np.nan)
    return mean_in - mean_out


def fz_standard_error(correct: np.ndarray, member: np.ndarray) -> np.ndarray:
    """Standard error of the Feldman-Zhang estimate of each sample (a difference of two sample
    means over independent models):

        se_i = sqrt( var_in_i / n_in_i + var_out_i / n_out_i )

    with the unbiased (ddof 1) variance of ``correct`` over the "in" and the "out" models (for 0/1
    correctness, p(1 - p) n / (n - 1)). NaN where a side has fewer than 2 models."""
    c = np.asarray(correct, dtype=np.float64)
    m = np.asarray(member, dtype=bool)
    terms = []
    for side in (m, ~m):
        n = side.sum(0)
        mean = (c * side).sum(0) / np.maximum(n, 1)
        var = (((c - mean) ** 2) * side).sum(0) / np.maximum(n - 1, 1)
        terms.append(np.where(n >= 2, var / np.maximum(n, 1), np.nan))
    return np.sqrt(terms[0] + terms[1])


def fz_split_half(correct: np.ndarray, member: np.ndarray, seed: int = 0) -> float:
    """Split-half reliability of the Feldman-Zhang estimate: the models are split at random into
    two halves, each half gives its own estimate, and the result is the Spearman correlation of
    the two over the samples finite in both (NaN when fewer than 3). A proxy's correlation with
    the full estimate is attenuated by the estimate's own noise; this says how much."""
    c = np.asarray(correct, dtype=np.float64)
    m = np.asarray(member, dtype=bool)
    perm = np.random.default_rng(seed).permutation(len(c))
    h1, h2 = perm[: len(c) // 2], perm[len(c) // 2 :]
    a, b = fz_memorization(c[h1], m[h1]), fz_memorization(c[h2], m[h2])
    ok = np.isfinite(a) & np.isfinite(b)
    return spearman(a[ok], b[ok]) if ok.sum() >= 3 else float("nan")


def distribution(values: np.ndarray, prefix: str) -> dict[str, float]:
    """``{prefix}_mean``, ``_std``, ``_q10``, ``_q50``, ``_q90`` of the finite values (empty: {})."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not len(v):
        return {}
    q10, q50, q90 = np.quantile(v, [0.1, 0.5, 0.9])
    return {f"{prefix}_mean": float(v.mean()), f"{prefix}_std": float(v.std()), f"{prefix}_q10": float(q10), f"{prefix}_q50": float(q50), f"{prefix}_q90": float(q90)}
