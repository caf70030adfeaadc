"""CRAIG: a weighted coreset whose gradients cover the class's gradients (facility location).

Formula (per class; ``g_i`` the last-layer gradient ``[p - y, (p - y) (x) e]`` of the final
proxy checkpoint, ``d_ij = ||g_i - g_j||_2``)::

    s_ij = max_{a,b} d_ab - d_ij + 1e-3                  (similarity, shifted positive as DeepCore)
    S    = greedy argmax_{|S| = budget_c} F(S),  F(S) = sum_i max_{j in S} s_ij   (facility location)
    w_j  = |{ i in class : j = argmax_{j' in S} s_ij' }|  (each pick counts itself)

What is kept: the ``budget_c`` medoid-like samples of each class, with weight ``w_j`` = the
number of class samples for which ``j`` is the nearest pick, so the weights of a class sum to
its size and the weighted coreset gradient approximates the class's full gradient. The coreset
is meant to be trained with a weighted loss (``Selection.weights``).

Citation: Baharan Mirzasoleiman, Jeff Bilmes and Jure Leskovec, "Coresets for Data-efficient
Training of Machine Learning Models", ICML 2020; DeepCore ``deepcore/methods/craig.py``.

Choices where the spec leaves a detail open:

- **Weights.** The paper's ``gamma_j = |C_j|`` (``weights="count"``, default; they sum to the
  class size). DeepCore's ``calc_weights`` starts every pick at 1 and adds the count, which
  counts each pick twice, so its weights are ``1 + |C_j|`` and sum to ``size + budget_c``;
  ``weights="deepcore"`` reproduces that. A pick is always assigned to itself (exact ties among
  picks, e.g. duplicate gradients, would otherwise leave a pick with weight 0).
- **Greedy.** ``greedy="lazy"`` (DeepCore's LazyGreedy, batched; same picks as the plain
  greedy for this submodular function), ``"naive"``, or ``"stochastic"`` / ``"stochastic:EPS"``:
  the stochastic greedy of Mirzasoleiman et al. (AAAI 2015; ``eps`` default 0.01), which
  evaluates ``n / budget ln(1 / eps)`` random candidates per step: faster at large budgets, not
  the exact greedy's picks (its draws are seeded by the cell's seed).
- **Kernel arithmetic.** Distances come from the factored Gram matrix of the last-layer
  gradients, ``<g_i, g_j> = <p_i - y_i, p_j - y_j> (1 + <e_i, e_j>)`` (``_greedy.ll_euclidean``),
  and the distance matrix of a class is computed once (its maximum gives the shift): 4,500
  samples per class cost ``C + D`` instead of ``C (D + 1)`` multiply-adds per pair, and half
  the pairs of before. Same function, float32 rounding aside.
  Version 0.2 (issue 26) changed only this arithmetic; since float32 rounding differs, a pick
  can differ from 0.1's where two candidates' gains tie to rounding, hence the bump.
- **Class balance.** ``class_balanced=True`` as DeepCore. ``False`` runs one facility location
  over the whole pool on gradient distances across classes (DeepCore instead zeroes the
  cross-class similarities); memory is then O(N^2) when the kernel fits in memory, else the
  kernel is recomputed block by block at every step (slow).
- The similarity matrix of a class is built in row blocks and held in memory (5,000 samples:
  100 MB in float32).
"""

from __future__ import annotations

import numpy as np
import torch

from coreset_bench import hookimpl
from coreset_bench.kinds import Param, Selection, SelectionMethod, SelectionView

from ._greedy import GREEDY_PARAM, FacilityLocation, Kernel, check_choice, final_packed, greedy_maximize, ll_euclidean, pairwise_max, parse_greedy, select_groups, stochastic_greedy


def craig_weights(kernel: Kernel, order: list[int]) -> np.ndarray:
    """Number of group members whose most similar pick is each pick (picks count themselves)."""
    picks = torch.as_tensor(order, dtype=torch.long, device=kernel.x.device)
    nearest = kernel.rows(picks).argmax(0)  # (k, n): the kernel is symmetric
    nearest[picks] = torch.arange(len(order), device=picks.device)
    return torch.bincount(nearest, minlength=len(order)).double().cpu().numpy()


class Craig(SelectionMethod):
    name = "craig"
    version = "0.2"
    summary = "CRAIG: facility location on last-layer gradient distances, per class, with cluster-size weights."
    citation = "Mirzasoleiman, Bilmes & Leskovec, Coresets for Data-efficient Training of Machine Learning Models, ICML 2020"
    params = {"class_balanced": True, "greedy": "lazy", "weights": "count"}
    param_specs = {"class_balanced": Param(bool, help="pick per class in proportion to class sizes"), "greedy": GREEDY_PARAM, "weights": Param(str, choices=("count", "deepcore"))}
    signals = frozenset({"embeddings", "logits"})
    weighted = True

    def select(self, view: SelectionView) -> Selection:
        greedy, eps = parse_greedy(self.name, self.params["greedy"])
        mode = check_choice(self.name, "weights", self.params["weights"], ("count", "deepcore"))

        def one(members: np.ndarray, budget: int) -> tuple[np.ndarray, np.ndarray]:
            x, c = final_packed(view, members)

            def dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
                return ll_euclidean(a, b, c)

            kernel = Kernel(x, dist)  # cached whole when it fits: one pass gives the max too
            shift = (float(kernel.full.max()) if kernel.full is not None else pairwise_max(x, dist)) + 1e-3
            kernel.map_(lambda d: torch.sub(shift, d))
            fl = FacilityLocation(kernel)
            if greedy == "stochastic":
                order = stochastic_greedy(fl, budget, epsilon=eps, generator=torch.Generator().manual_seed(view.seed))
            else:
                order = greedy_maximize(fl, budget, lazy=greedy == "lazy")
            w = craig_weights(kernel, order)
            if mode == "deepcore":
                w = w + 1.0
            return np.asarray(order, dtype=np.int64), w

        indices, weights = select_groups(view, bool(self.params["class_balanced"]), one)
        return Selection(indices=indices, weights=weights, info={"weights": mode})


@hookimpl
def register_methods(register):
    register(Craig())
