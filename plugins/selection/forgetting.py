"""Forgetting events (``forgetting``).

Mariya Toneva, Alessandro Sordoni, Remi Tachet des Combes, Adam Trischler, Yoshua Bengio,
Geoffrey J. Gordon. "An Empirical Study of Example Forgetting during Deep Neural Network
Learning". ICLR 2019. arXiv:1812.05159.

Formula. From the signal ``train_correct`` (E, N), whether the sample was classified correctly in
its training mini-batch in epoch e (one presentation per epoch), a forgetting event is a
correct -> incorrect transition between consecutive presentations::

    F(x) = sum_{e=1}^{E-1} [correct_{e-1}(x) and not correct_e(x)]

Never-learned samples (never correct in any epoch), by ``unlearned``:

* ``"inf"`` (default, the original paper): they count as infinitely forgotten and rank first;
  their score is ``inf``.
* ``"zero"``: they count 0, as DeepCore (``forgetting.py``) and CCS do.

The default follows the paper the method is named after; ``unlearned="zero"`` reproduces the
DeepCore/CCS baseline numbers.

Kept: the **highest** counts over the whole pool by default, or per class with
``view.class_budgets()`` when ``class_balanced=True`` (DeepCore's default). Counts tie often;
ties are broken at random with ``view.rng`` (deterministic for a fixed seed).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from coreset_bench import hookimpl
from coreset_bench.kinds import Param, Selection, SelectionMethod, SelectionView
from coreset_bench.plugins.selection._ranking import top_global, topk_per_class

__all__ = ["Forgetting", "forgetting_counts"]

_UNLEARNED = ("inf", "zero")


def forgetting_counts(train_correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(forgetting-event counts (N,) int64, never-learned mask (N,) bool) from (E, N) correctness."""
    c = np.asarray(train_correct).astype(bool)
    if c.ndim != 2:
        raise ValueError(f"signal 'train_correct' must have shape (E, N), got {c.shape}")
    counts = (c[:-1] & ~c[1:]).sum(axis=0).astype(np.int64)
    return counts, ~c.any(axis=0)


class Forgetting(SelectionMethod):
    name = "forgetting"
    version = "1.0"
    summary = "Keep the most forgotten samples (correct -> incorrect transitions during proxy training)."
    citation = (
        "Toneva, Sordoni, Tachet des Combes, Trischler, Bengio, Gordon. An Empirical Study of Example "
        "Forgetting during Deep Neural Network Learning. ICLR 2019. arXiv:1812.05159."
    )
    params = {"unlearned": "inf", "class_balanced": False}
    param_specs = {"unlearned": Param(str, choices=("inf", "zero"), help="score of a never-learned sample"), "class_balanced": Param(bool, help="pick per class in proportion to class sizes")}
    signals = frozenset({"train_correct"})

    def select(self, view: SelectionView) -> Selection:
        mode = self.params["unlearned"]
        if mode not in _UNLEARNED:
            raise ValueError(f"forgetting: unlearned must be one of {_UNLEARNED}, got {mode!r}")
        tc = view.signals["train_correct"]
        if np.shape(tc)[-1] != view.n:
            raise ValueError(f"signal 'train_correct' must have shape (E, {view.n}), got {np.shape(tc)}")
        counts, never = forgetting_counts(tc)
        score = counts.astype(np.float64)
        if mode == "inf":
            score[never] = np.inf
        tiebreak = view.rng.permutation(view.n)
        if self.params["class_balanced"]:
            idx = topk_per_class(score, view.labels, view.class_budgets(), descending=True, tiebreak=tiebreak)
        else:
            idx = top_global(score, view.budget, descending=True, tiebreak=tiebreak)
        return Selection(
            indices=idx,
            scores=score,
            info={"kept": "most forgotten", "never_learned": int(never.sum()), "unlearned": mode},
        )


@hookimpl
def register_methods(register: Any) -> None:
    register(Forgetting())
