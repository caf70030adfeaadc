"""Herding: greedily pick samples whose running mean embedding tracks the class mean.

Formula (per class c, embeddings ``e`` of the final proxy checkpoint, ``mu_c`` the class mean)::

    step t = 0, 1, ...:   s_t = argmin_{x not in S} || (t + 1) mu_c - sum_{s in S} e_s - e_x ||

so that ``(1 / (t + 1)) sum_{s in S} e_s`` stays close to ``mu_c`` (kernel herding with a linear
kernel). What is kept: the ``budget_c`` picks of each class, "representative / central" samples,
in pick order.

Citation: Max Welling, "Herding Dynamical Weights to Learn", ICML 2009; as a coreset baseline in
Chengcheng Guo, Bo Zhao and Yanbing Bai, "DeepCore: A Comprehensive Library for Coreset
Selection in Deep Learning", DEXA 2022 (``deepcore/methods/herding.py``).

Choices where the spec leaves a detail open:

- **Direction.** The paper and the spec minimize the distance above. DeepCore's code takes the
  ``argmax`` of that distance (the sample *farthest* from the residual target). We follow the
  paper (``pick="nearest"``); ``pick="farthest"`` reproduces DeepCore's code.
- **Embeddings.** Penultimate features of the benchmark's proxy run at its final checkpoint
  (``embeddings[-1]``), not a separately trained ResNet-18.
- **Class balance.** Per class with ``view.class_budgets()`` (``class_balanced=True``, as
  DeepCore's ``main.py``); ``class_balanced=False`` herds the whole pool towards the global mean.
- Ties go to the lowest index. No randomness: the seed does not change the result.
"""

from __future__ import annotations

import numpy as np

from coreset_bench import hookimpl
from coreset_bench.kinds import Param, Selection, SelectionMethod, SelectionView

from ._greedy import check_choice, final_embeddings, herding, select_groups


class Herding(SelectionMethod):
    name = "herding"
    version = "0.1"
    summary = "Greedy herding on proxy embeddings: the running mean of the picks tracks the class mean."
    citation = "Welling, Herding Dynamical Weights to Learn, ICML 2009"
    params = {"class_balanced": True, "pick": "nearest"}
    param_specs = {"class_balanced": Param(bool, help="pick per class in proportion to class sizes"), "pick": Param(str, choices=("nearest", "farthest"))}
    signals = frozenset({"embeddings"})

    def select(self, view: SelectionView) -> Selection:
        pick = check_choice(self.name, "pick", self.params["pick"], ("nearest", "farthest"))
        emb = final_embeddings(view)

        def one(members: np.ndarray, budget: int) -> tuple[np.ndarray, None]:
            x = emb[members]
            return np.asarray(herding(x, budget, pick=pick), dtype=np.int64), None

        indices, _ = select_groups(view, bool(self.params["class_balanced"]), one)
        return Selection(indices=indices, info={"pick": pick})


@hookimpl
def register_methods(register):
    register(Herding())
