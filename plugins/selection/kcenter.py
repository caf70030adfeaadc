"""k-Center Greedy: max-min diverse subset of the proxy embeddings.

Formula (per class, Euclidean distance on embeddings ``e`` of the final proxy checkpoint)::

    S = {s_0},  s_0 drawn uniformly at random (view.rng)
    repeat:     s = argmax_{x not in S} min_{c in S} || e_x - e_c ||_2 ;  S = S + {s}

the greedy 2-approximation of the k-center problem (Gonzalez 1985). What is kept: the
``budget_c`` centers of each class, in pick order; they are diverse and include boundary and
outlier points.

Citation: Ozan Sener and Silvio Savarese, "Active Learning for Convolutional Neural Networks: A
Core-Set Approach", ICLR 2018; DeepCore ``deepcore/methods/kcentergreedy.py`` (Guo, Zhao & Bai,
DEXA 2022).

Choices where the spec leaves a detail open:

- **Embeddings.** DeepCore defaults to an ImageNet-pretrained ResNet-18 at 224 px; pretrained
  weights are not available offline, so we use the penultimate features of the benchmark's
  proxy run at its final checkpoint (``embeddings[-1]``).
- **First center.** Uniformly random within each class from the view's seeded ``rng`` (DeepCore
  seeds ``np.random`` with the run's seed), so the result is deterministic per cell.
- **Class balance.** Per class by default (``class_balanced=True``); ``False`` runs one greedy
  pass over the whole pool with ``view.budget`` centers.
- Each step computes the distances of all points to the new center in one vectorized call, so
  memory is O(n) per class.
"""

from __future__ import annotations

import numpy as np

from coreset_bench import hookimpl
from coreset_bench.kinds import Param, Selection, SelectionMethod, SelectionView

from ._greedy import euclidean, final_embeddings, kcenter_greedy, select_groups


class KCenterGreedy(SelectionMethod):
    name = "kcenter"
    version = "0.1"
    summary = "k-Center greedy (max-min Euclidean distance) on proxy embeddings, per class."
    citation = "Sener & Savarese, Active Learning for Convolutional Neural Networks: A Core-Set Approach, ICLR 2018"
    params = {"class_balanced": True}
    param_specs = {"class_balanced": Param(bool, help="pick per class in proportion to class sizes")}
    signals = frozenset({"embeddings"})

    def select(self, view: SelectionView) -> Selection:
        emb = final_embeddings(view)
        rng = view.rng

        def one(members: np.ndarray, budget: int) -> tuple[np.ndarray, None]:
            x = emb[members]
            first = int(rng.integers(len(members)))
            order = kcenter_greedy(len(members), budget, lambda j: euclidean(x, x[j : j + 1])[:, 0], first)
            return np.asarray(order, dtype=np.int64), None

        indices, _ = select_groups(view, bool(self.params["class_balanced"]), one)
        return Selection(indices=indices)


@hookimpl
def register_methods(register):
    register(KCenterGreedy())
