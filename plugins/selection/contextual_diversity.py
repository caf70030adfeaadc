"""Contextual Diversity: k-Center greedy where the distance is the symmetric KL divergence
between the proxy's softmax outputs.

Formula (per class; ``p_x = softmax(logits[-1])_x`` from the final proxy checkpoint)::

    d(a, b) = 1/2 sum_k p_a,k log(p_a,k / p_b,k) + 1/2 sum_k p_b,k log(p_b,k / p_a,k)
    S = {s_0} (uniformly random);  repeat: s = argmax_{x not in S} min_{c in S} d(x, c)

What is kept: the ``budget_c`` greedy centers of each class, in pick order: samples whose
predicted class distributions ("context") differ most from those already picked.

Citation: Sharat Agarwal, Himanshu Arora, Saket Anand and Chetan Arora, "Contextual Diversity
for Active Learning", ECCV 2020; DeepCore ``deepcore/methods/contextualdiversity.py`` (Guo, Zhao
& Bai, DEXA 2022), which reuses its k-center greedy with this distance.

Choices where the spec leaves a detail open:

- The paper aggregates class-conditional softmax over the pixels of a segmentation map; for
  image classification (DeepCore, this benchmark) each sample's context is its softmax vector.
- Probabilities are clamped at 1e-12 inside the logarithms (DeepCore divides raw values).
- First center uniformly random from the view's seeded ``rng``; per class by default
  (``class_balanced=True``).
"""

from __future__ import annotations

import numpy as np

from coreset_bench import hookimpl
from coreset_bench.kinds import Param, Selection, SelectionMethod, SelectionView

from ._greedy import final_probs, kcenter_greedy, select_groups, sym_kl_to


class ContextualDiversity(SelectionMethod):
    name = "contextual-diversity"
    version = "0.1"
    summary = "k-Center greedy on proxy softmax outputs with the symmetric KL divergence, per class."
    citation = "Agarwal, Arora, Anand & Arora, Contextual Diversity for Active Learning, ECCV 2020"
    params = {"class_balanced": True}
    param_specs = {"class_balanced": Param(bool, help="pick per class in proportion to class sizes")}
    signals = frozenset({"logits"})

    def select(self, view: SelectionView) -> Selection:
        probs = final_probs(view)
        rng = view.rng

        def one(members: np.ndarray, budget: int) -> tuple[np.ndarray, None]:
            p = probs[members]
            first = int(rng.integers(len(members)))
            order = kcenter_greedy(len(members), budget, lambda j: sym_kl_to(p, p[j : j + 1]), first)
            return np.asarray(order, dtype=np.int64), None

        indices, _ = select_groups(view, bool(self.params["class_balanced"]), one)
        return Selection(indices=indices)


@hookimpl
def register_methods(register):
    register(ContextualDiversity())
