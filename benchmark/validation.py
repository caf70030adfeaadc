"""The harness's checks of what a selection method returns (used at run time by the coreset
track, and re-exported by the plugin authors' kit ``coreset_bench.testing``).

A selection is valid when its indices form a 1-D array of unique integers in ``[0, n)`` with
exactly the budget of them (at most the budget, and at least one, for methods with
``exact_budget = False``), its optional weights are finite, non-negative, one per index and
not all zero, and its optional scores are numbers without NaN, one per pool sample (``inf`` is
allowed: e.g. forgetting scores never-learned samples as infinitely forgotten).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .kinds import Selection, SelectionMethod, SelectionView


class SelectionOutputError(ValueError):
    """A selection method returned an invalid subset."""


def validate_selection(out: Any, view: SelectionView, method: SelectionMethod) -> Selection:
    """The harness's check of a selection output; returns a normalized ``Selection``.

    Raises ``SelectionOutputError`` with a one-line message naming the method.
    """
    name = method.name or type(method).__name__
    if not isinstance(out, Selection):
        out = Selection(indices=out)
    try:
        idx = np.asarray(out.indices.detach().cpu() if hasattr(out.indices, "detach") else out.indices)
    except Exception as exc:  # pragma: no cover - defensive
        raise SelectionOutputError(f"{name}: selection indices are not an array ({exc})") from exc
    if idx.ndim != 1:
        raise SelectionOutputError(f"{name}: returned indices of shape {idx.shape}; expected a 1-D array of pool indices")
    if idx.size and not np.issubdtype(idx.dtype, np.integer):
        if np.issubdtype(idx.dtype, np.floating) and np.all(np.isfinite(idx)) and np.all(idx == np.round(idx)):
            idx = idx.astype(np.int64)
        else:
            raise SelectionOutputError(f"{name}: returned indices of dtype {idx.dtype}; expected integers")
    idx = idx.astype(np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= view.n):
        raise SelectionOutputError(f"{name}: returned index out of range [0, {view.n}) (min {idx.min()}, max {idx.max()})")
    if len(np.unique(idx)) != len(idx):
        raise SelectionOutputError(f"{name}: returned {len(idx) - len(np.unique(idx))} duplicate indices; each pool sample may be selected once")
    if method.exact_budget and len(idx) != view.budget:
        raise SelectionOutputError(f"{name}: returned {len(idx)} indices for a budget of {view.budget}; return exactly the budget")
    if not method.exact_budget and not (1 <= len(idx) <= view.budget):
        raise SelectionOutputError(f"{name}: returned {len(idx)} indices; expected between 1 and the budget {view.budget}")
    w = out.weights
    if w is not None:
        w = np.asarray(w.detach().cpu() if hasattr(w, "detach") else w, dtype=np.float64)
        if w.shape != idx.shape:
            raise SelectionOutputError(f"{name}: returned {w.shape} weights for {idx.shape} indices; one weight per index")
        if not np.all(np.isfinite(w)):
            raise SelectionOutputError(f"{name}: returned non-finite weights (NaN or inf)")
        if np.any(w < 0):
            raise SelectionOutputError(f"{name}: returned negative weights")
        if w.sum() <= 0:
            raise SelectionOutputError(f"{name}: returned weights that sum to zero")
    scores = out.scores
    if scores is not None:
        try:
            scores = np.asarray(scores.detach().cpu() if hasattr(scores, "detach") else scores, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise SelectionOutputError(f"{name}: returned scores that are not numbers ({exc}); return one float per pool sample") from None
        if scores.shape != (view.n,):
            raise SelectionOutputError(f"{name}: returned scores of shape {scores.shape}; expected one score per pool sample, shape ({view.n},)")
        if np.isnan(scores).any():
            raise SelectionOutputError(f"{name}: returned NaN in its scores ({int(np.isnan(scores).sum())} of {scores.size}); return numbers (or no scores)")
    return Selection(indices=idx, weights=w, scores=scores, info=dict(out.info))
