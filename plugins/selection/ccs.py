"""CCS: Coverage-centric Coreset Selection (``ccs``).

Haizhong Zheng, Rui Liu, Fan Lai, Atul Prakash. "Coverage-centric Coreset Selection for High
Pruning Rates". ICLR 2023. arXiv:2210.15809. Code: haizhongzheng/Coverage-centric-coreset-selection
(``CoresetSelection.mislabel_mask``, ``stratified_sampling``, ``bin_allocate``).

Algorithm, with the importance score AUM (``coreset_bench.plugins.selection.aum``: summed probability
margin ``p_y - max_{k != y} p_k`` over the proxy epochs):

1. Hard-prune the ``m = min(floor(beta * N), N - budget)`` samples of **lowest** AUM (mislabeled
   and hardest; ties by index). The cap keeps enough samples for the budget.
2. Split the remaining score range ``[min, max]`` into ``bins`` equal-width strata (the maximum
   falls into the last stratum; one stratum when all scores are equal).
3. Allocate the budget over the non-empty strata from the least to the most populated (ties by
   stratum position): each gets ``min(size, remaining // strata_left)``, so sparse strata are taken
   whole. Any shortfall left by the integer division is added one by one to the most populated
   strata that still have room (as D2-pruning's ``bin_allocate``), so exactly ``budget`` samples
   are chosen.
4. Sample uniformly at random without replacement inside each stratum (``view.rng``).

Selection is global, not class-balanced, as in CCS. Defaults: ``bins = 50`` and ``beta = "auto"``:
the hard-cutoff rate for the cell's budget, looked up by pruning rate ``1 - view.fraction`` in
``CCS_BETA_BY_PRUNING`` (the first row whose pruning rate is reached):

=============  =====  ============================================================================
pruning rate   beta   source
=============  =====  ============================================================================
>= 90 %        0.3    CCS README (CIFAR-10, AUM, 90 %) and the ImageNet setting at 90 %
>= 80 %        0.2    the ImageNet setting at 80 % (CCS README, see ``methods-selection.md``)
>= 70 %        0.1    interpolated (inference): the cutoff grows with the pruning rate
<  70 %        0.0    inference: at low pruning rates the hard samples are worth keeping
=============  =====  ============================================================================

The paper tunes beta per dataset and pruning rate; its table could not be read, so the rows
below 80 % are a documented reading, not the paper's numbers. A number (``--param beta=0.3``)
fixes beta at every budget; ``info["beta"]`` records the value a cell used. Version 1.0 (the
committed ``quick@1`` entries) used the fixed ``beta = 0.3``.
Equal-width strata are computed as ``floor((s - min) / (max - min) * bins)``, clipped to the last
stratum, in place of the code's ``max * 1.0001`` upper edge (which misbehaves for a negative
maximum).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from coreset_bench import hookimpl
from coreset_bench.kinds import Param, Selection, SelectionMethod, SelectionView
from coreset_bench.plugins.selection.aum import aum_scores
from coreset_bench.plugins.selection._ranking import rank_order

__all__ = ["CCS", "CCS_BETA_BY_PRUNING", "equal_width_strata", "allocate_budget", "stratified_sample", "rate_for_budget", "resolve_rate"]

#: (pruning rate reached, beta) rows for ``beta="auto"``, highest pruning rate first
CCS_BETA_BY_PRUNING: tuple[tuple[float, float], ...] = ((0.9, 0.3), (0.8, 0.2), (0.7, 0.1), (0.0, 0.0))


def rate_for_budget(table: tuple[tuple[float, float], ...], fraction: float) -> float:
    """The value of the first ``(pruning rate, value)`` row whose pruning rate ``1 - fraction``
    reaches it (``fraction``: the kept fraction of the pool); 0 when none does."""
    pruning = round(1.0 - float(fraction), 9)  # 1 - 0.1 must count as 90 %
    for at, value in table:
        if pruning >= at:
            return float(value)
    return 0.0


def resolve_rate(value: Any, table: tuple[tuple[float, float], ...], fraction: float, what: str) -> float:
    """``value`` as a rate in [0, 1): ``"auto"`` reads ``table`` at the budget, else a number."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return rate_for_budget(table, fraction)
    try:
        rate = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be 'auto' or a number in [0, 1), got {value!r}") from None
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"{what} must be 'auto' or a number in [0, 1), got {value!r}")
    return rate


def equal_width_strata(scores: np.ndarray, bins: int) -> np.ndarray:
    """Stratum id in [0, bins) of each score for ``bins`` equal-width strata over [min, max]."""
    s = np.asarray(scores, dtype=np.float64)
    bins = int(bins)
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    if s.size == 0:
        return np.zeros(0, np.int64)
    lo, hi = float(s.min()), float(s.max())
    if not hi > lo:
        return np.zeros(len(s), np.int64)
    return np.clip(np.floor((s - lo) / (hi - lo) * bins).astype(np.int64), 0, bins - 1)


def allocate_budget(budget: int, sizes: np.ndarray) -> np.ndarray:
    """CCS's ``bin_allocate``: per-stratum counts summing to ``budget`` (needs sum(sizes) >= budget)."""
    sizes = np.asarray(sizes).astype(np.int64)
    budget = int(budget)
    if budget > int(sizes.sum()):
        raise ValueError(f"budget {budget} exceeds the {int(sizes.sum())} samples in the strata")
    out = np.zeros(len(sizes), np.int64)
    order = np.argsort(sizes, kind="stable")
    order = order[sizes[order] > 0]
    rest = budget
    for i, b in enumerate(order):  # greedy over strata, not samples
        take = min(int(sizes[b]), rest // (len(order) - i))
        out[b] = take
        rest -= take
    for b in order[::-1]:
        if rest == 0:
            break
        extra = min(rest, int(sizes[b] - out[b]))
        out[b] += extra
        rest -= extra
    return out


def stratified_sample(strata: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Positions drawn uniformly without replacement, ``counts[b]`` from each stratum ``b``."""
    strata = np.asarray(strata).astype(np.int64)
    key = rng.random(len(strata))
    order = np.lexsort((key, strata))
    sorted_b = strata[order]
    rank = np.arange(len(order)) - np.searchsorted(sorted_b, sorted_b, side="left")
    return order[rank < np.asarray(counts)[sorted_b]]


class CCS(SelectionMethod):
    name = "ccs"
    version = "1.1"
    summary = "Prune the lowest-AUM beta fraction (beta by budget), then sample the budget evenly over equal-width AUM strata."
    citation = (
        "Zheng, Liu, Lai, Prakash. Coverage-centric Coreset Selection for High Pruning Rates. "
        "ICLR 2023. arXiv:2210.15809."
    )
    params = {"beta": "auto", "bins": 50}
    param_specs = {"bins": Param(int, min=1, help="strata")}
    signals = frozenset({"prob_true", "prob_other_max"})

    def select(self, view: SelectionView) -> Selection:
        beta = resolve_rate(self.params["beta"], CCS_BETA_BY_PRUNING, view.fraction, "ccs: beta")
        score = aum_scores(view)
        n, budget = view.n, view.budget
        m = min(int(np.floor(beta * n)), n - budget)
        remaining = np.sort(rank_order(score, descending=False)[m:])
        strata = equal_width_strata(score[remaining], self.params["bins"])
        sizes = np.bincount(strata, minlength=int(self.params["bins"]))
        counts = allocate_budget(budget, sizes)
        idx = remaining[stratified_sample(strata, counts, view.rng)]
        info = {"kept": "stratified over AUM after pruning the lowest", "beta": beta, "pruned": m, "strata_sizes": sizes.tolist(), "strata_budgets": counts.tolist()}
        return Selection(indices=idx, scores=score, info=info)


@hookimpl
def register_methods(register: Any) -> None:
    register(CCS())
